"""Simulated Daly boards: A5 (legacy, several boards on one bus), D2 and 0x81 (Modbus-style).

A :class:`DalyPack` is a small battery model (SoC follows the current, LFP cells around 3.3 V,
switchable MOSFETs). :class:`A5Responder` and :class:`ModbusResponder` answer requests exactly as
``shared/protocols/daly.md`` describes the boards (§4 and §6-§8), using the project's codecs to
build the frames. :class:`Faults` injects what real links do (garbage, bad checksums, silence,
split/merged BLE notifications, disconnects). The framers cut requests out of the byte stream for
:class:`battery_simulator.line.Line`.
"""

from __future__ import annotations

import math
import random
import threading
import time
from dataclasses import dataclass, field

from bmslink.protocols import daly_a5 as a5
from bmslink.protocols import daly_d2 as d2
from bmslink.protocols.daly_modbus import (
    FC_READ,
    FC_WRITE_MULTIPLE,
    FC_WRITE_SINGLE,
    ModbusStream,
    build_frame,
    build_read_response,
    crc16_modbus,
)

__all__ = [
    "A5Framer",
    "A5Responder",
    "DalyPack",
    "Faults",
    "ModbusFramer",
    "ModbusResponder",
]


@dataclass
class Faults:
    """Fault injection (all off by default).

    - ``garbage``: bytes sent before every reply (resynchronisation test).
    - ``bad_checksum_every``: corrupt the checksum/CRC of every n-th reply (0 = never).
    - ``silent``: answer nothing.
    - ``split``: BLE: cut every reply into notifications of at most this many bytes (0 = one
      notification per frame).
    - ``merge``: BLE: send all frames of a reply in one notification.
    - ``require_write_response``: BLE: ignore writes without response (tests the fallback).
    """

    garbage: bytes = b""
    bad_checksum_every: int = 0
    silent: bool = False
    split: int = 0
    merge: bool = True
    require_write_response: bool = False


@dataclass
class DalyPack:
    """A simulated pack: ``cells`` in series, ``sensors`` temperature sensors, ``capacity`` in
    Ah, ``soc`` in %, a constant ``current`` in A (+ = charging; None: a sine of
    ``amplitude`` A over ``period`` s), switchable MOSFETs, ``alarm_bits`` (A5 0x98 bytes 0..6
    as an int, byte 0 in the top byte) and ``fault_code``."""

    cells: int = 16
    sensors: int = 2
    capacity: float = 280.0
    soc: float = 80.0
    current: float | None = -12.5
    amplitude: float = 20.0
    period: float = 600.0
    cycles: int = 42
    charge_mosfet: bool = True
    discharge_mosfet: bool = True
    alarm_bits: int = 0
    fault_code: int = 0
    seed: int = 1
    _t0: float = field(default_factory=time.monotonic)
    _last: float = field(default_factory=time.monotonic)
    _heartbeat: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        rng = random.Random(self.seed)
        self._offsets = [rng.randint(-6, 6) for _ in range(self.cells)]

    def now_current(self) -> float:
        """The current now, A (+ = charging), 0 when the matching MOSFET is off."""
        if self.current is not None:
            i = self.current
        else:
            t = time.monotonic() - self._t0
            i = self.amplitude * math.sin(2 * math.pi * t / self.period)
        if (i > 0 and not self.charge_mosfet) or (i < 0 and not self.discharge_mosfet):
            return 0.0
        return round(i, 1)

    def step(self) -> None:
        """Advance SoC by the current since the last call (coulomb counting)."""
        with self._lock:
            now = time.monotonic()
            dt, self._last = now - self._last, now
            self.soc = min(
                100.0, max(0.0, self.soc + self.now_current() * dt / 3600 / self.capacity * 100)
            )
            self._heartbeat = (self._heartbeat + 1) & 0xFF

    def cell_mv(self) -> list[int]:
        """Cell voltages, mV."""
        base = 3200 + 2.0 * self.soc + 0.8 * self.now_current()
        return [int(base + o) for o in self._offsets]

    def temperatures(self) -> list[int]:
        """Sensor temperatures, °C."""
        return [24 + k for k in range(self.sensors)]

    @property
    def remaining(self) -> float:
        """Remaining capacity, Ah."""
        return self.capacity * self.soc / 100

    @property
    def state(self) -> int:
        """0 idle, 1 charging, 2 discharging."""
        i = self.now_current()
        return 1 if i > 0 else 2 if i < 0 else 0

    # --- registers (D2 §7.2 / 0x81 §8.2) ---------------------------------------------------

    def d2_registers(self) -> dict[int, int]:
        """The D2 status registers 0x00-0x4F and the MOSFET switches 0xA5/0xA6."""
        mv = self.cell_mv()
        temps = self.temperatures()
        i = self.now_current()
        regs = dict.fromkeys(range(0x50), 0)
        for k, v in enumerate(mv[:32]):
            regs[k] = v
        for k, t in enumerate(temps[:8]):
            regs[0x20 + k] = t + 40
        volts = sum(mv) / 1000
        regs.update(
            {
                0x28: round(volts * 10),
                0x29: 30000 + round(i * 10),
                0x2A: round(self.soc * 10),
                0x2B: max(mv),
                0x2C: min(mv),
                0x2D: max(temps) + 40,
                0x2E: min(temps) + 40,
                0x2F: self.state,
                0x30: round(self.remaining * 10),
                0x31: self.cells,
                0x32: self.sensors,
                0x33: self.cycles,
                0x34: 1,
                0x35: int(self.charge_mosfet),
                0x36: int(self.discharge_mosfet),
                0x37: round(sum(mv) / len(mv)),
                0x38: max(mv) - min(mv),
                0x39: round(abs(volts * i)),
                0x40: 30000,
                0x42: 31 + 40,
                0x43: 0xFFFF,
            }
        )
        b = self.alarm_bits.to_bytes(7, "big")  # A5 bytes 0..6
        regs[0x3A] = b[1] << 8 | b[0]
        regs[0x3B] = b[3] << 8 | b[2]
        regs[0x3C] = b[5] << 8 | b[4]
        regs[0xA5] = int(self.charge_mosfet)
        regs[0xA6] = int(self.discharge_mosfet)
        version = b"SIM-D2-1.0".ljust(32, b"\0") + b"H2.0_SIM".ljust(32, b"\0")
        for k in range(32):
            regs[0xA9 + k] = version[2 * k] << 8 | version[2 * k + 1]
        return regs

    def p81_registers(self) -> dict[int, int]:
        """The 0x81 status registers 0x00-0x7E (doc §8.2)."""
        mv = self.cell_mv()
        temps = self.temperatures()
        i = self.now_current()
        volts = sum(mv) / 1000
        regs = dict.fromkeys(range(0x7F), 0)
        for k, v in enumerate(mv[:48]):
            regs[k] = v
        for k, t in enumerate(temps[:8]):
            regs[0x30 + k] = t + 40
        regs.update(
            {
                0x38: round(volts * 10),
                0x39: 30000 + round(i * 10),
                0x3A: round(self.soc * 10),
                0x3B: self._heartbeat,
                0x3C: self.cells,
                0x3D: self.sensors,
                0x3E: max(mv),
                0x3F: mv.index(max(mv)) + 1,
                0x40: min(mv),
                0x41: mv.index(min(mv)) + 1,
                0x42: max(mv) - min(mv),
                0x43: max(temps) + 40,
                0x44: 1,
                0x45: min(temps) + 40,
                0x46: 1,
                0x48: self.state,
                0x4B: round(self.remaining * 10),
                0x4C: self.cycles,
                0x52: int(self.charge_mosfet),
                0x53: int(self.discharge_mosfet),
                0x58: round(abs(volts * i)),
                0x5A: 30 + 40,
                0x5B: 28 + 40,
            }
        )
        return regs


def _corrupt(frame: bytes) -> bytes:
    return frame[:-1] + bytes(((frame[-1] ^ 0x5A) or 1,))


class _Counted:
    def __init__(self, faults: Faults | None) -> None:
        self.faults = faults or Faults()
        self.replies = 0
        self.requests: list[bytes] = []

    @property
    def extra_delay_s(self) -> float:
        """No extra delay (the line paces the bytes)."""
        return 0.0

    def _finish(self, frames: list[bytes]) -> list[bytes]:
        """Apply the checksum fault to a reply's frames."""
        self.replies += 1
        every = self.faults.bad_checksum_every
        if every and self.replies % every == 0:
            frames = [_corrupt(f) for f in frames]
        return frames

    def respond(self, request: bytes) -> bytes | None:
        """The reply as one byte string (garbage prefix included), or None for silence."""
        frames = self.respond_frames(request)
        if frames is None:
            return None
        return self.faults.garbage + b"".join(frames)

    def respond_frames(self, request: bytes) -> list[bytes] | None:
        """The reply as a list of frames (before garbage), or None for silence."""
        raise NotImplementedError


class A5Responder(_Counted):
    """A5 boards on one bus (doc §4): board ``n`` answers request address 0x40 + n − 1 (RS485
    host) or 0x80 + n − 1 (UART/BLE host), from address ``n``. ``all_frames``: 0x95/0x96 send all
    16/3 frames (as BLE modules do) instead of only those with data."""

    def __init__(
        self,
        boards: dict[int, DalyPack],
        *,
        all_frames: bool = False,
        faults: Faults | None = None,
        model: str = "DL-BMS-SIM-A5",
    ) -> None:
        super().__init__(faults)
        self.boards = boards
        self.all_frames = all_frames
        self.model = model

    def _board(self, address: int) -> int | None:
        for host in (a5.HOST_SERIAL, a5.HOST_BLE):
            board = address - host + 1
            if 1 <= board <= 16 and board in self.boards:
                return board
        return None

    def respond_frames(self, request: bytes) -> list[bytes] | None:
        self.requests.append(bytes(request))
        if self.faults.silent:
            return None
        try:
            frame = a5.parse_frame(request)
        except a5.DalyA5Error:
            return None
        board = self._board(frame.address)
        if board is None:
            return None
        pack = self.boards[board]
        pack.step()
        payloads = self._payloads(pack, frame.command, frame.data)
        if payloads is None:
            return None
        return self._finish([a5.build_frame(board, frame.command, p) for p in payloads])

    def _payloads(self, pack: DalyPack, command: int, data: bytes) -> list[bytes] | None:
        mv = pack.cell_mv()
        temps = pack.temperatures()
        i = pack.now_current()
        c = a5.Command
        if command == c.SOC:
            raw = 30000 - round(i * 10)  # raw > 30000 = discharge (doc §9)
            v = round(sum(mv) / 100)
            return [
                v.to_bytes(2, "big")
                + bytes(2)
                + raw.to_bytes(2, "big")
                + round(pack.soc * 10).to_bytes(2, "big")
            ]
        if command == c.CELL_EXTREMES:
            hi, lo = max(mv), min(mv)
            return [
                hi.to_bytes(2, "big")
                + bytes((mv.index(hi) + 1,))
                + lo.to_bytes(2, "big")
                + bytes((mv.index(lo) + 1,))
                + round(pack.soc * 10).to_bytes(2, "big")
            ]
        if command == c.TEMPERATURE_EXTREMES:
            return [bytes((max(temps) + 40, 1, min(temps) + 40, 1)) + bytes(4)]
        if command == c.MOSFET:
            mah = round(pack.remaining * 1000)
            return [
                bytes((pack.state, pack.charge_mosfet, pack.discharge_mosfet, pack._heartbeat))
                + mah.to_bytes(4, "big")
            ]
        if command == c.STATUS:
            return [
                bytes((pack.cells, pack.sensors, int(i > 0), int(i < 0), 0x02))
                + pack.cycles.to_bytes(2, "big")
                + b"\x9b"
            ]
        if command == c.CELL_VOLTAGES:
            n = 16 if self.all_frames else a5.frames_needed(pack.cells, 3)
            out = []
            for k in range(1, n + 1):
                chunk = [*mv[3 * (k - 1) : 3 * k], 0, 0, 0][:3]
                out.append(bytes((k,)) + b"".join(v.to_bytes(2, "big") for v in chunk) + b"\x9b")
            return out
        if command == c.TEMPERATURES:
            n = 3 if self.all_frames else a5.frames_needed(pack.sensors, 7)
            out = []
            for k in range(1, n + 1):
                chunk = ([t + 40 for t in temps[7 * (k - 1) : 7 * k]] + [0] * 7)[:7]
                out.append(bytes((k, *chunk)))
            return out
        if command == c.BALANCING:
            return [bytes((0x01,)) + bytes(7)]  # cell 1 balancing
        if command == c.ALARMS:
            return [pack.alarm_bits.to_bytes(7, "big") + bytes((pack.fault_code,))]
        if command == c.RATED:
            return [round(pack.capacity * 1000).to_bytes(4, "big") + (3200).to_bytes(4, "big")]
        if command == c.MODEL:
            text = self.model.encode().ljust(14, b" ")[:14]
            return [bytes((1,)) + text[:7], bytes((2,)) + text[7:14]]
        if command in (c.CHARGE_MOSFET, c.DISCHARGE_MOSFET):
            on = bool(data[0])
            if command == c.CHARGE_MOSFET:
                pack.charge_mosfet = on
            else:
                pack.discharge_mosfet = on
            return [bytes((int(on),)) + bytes((0x0D, 0x13, 0x0D, 0x21, 0x0D, 0x17, 0xC0))]
        return None


class ModbusResponder(_Counted):
    """A D2 (``protocol="d2"``, address 0xD2) or 0x81 (``"p81"``, request 0x80 + board, reply
    0x50 + board) board: FC 03 reads of its register image, FC 06 writes of the MOSFET switches
    (D2 0xA5/0xA6) answered by the exact echo, the app's short FC 0x10 echoed (doc §6.1)."""

    def __init__(
        self,
        pack: DalyPack,
        *,
        protocol: str = "d2",
        board: int = 1,
        faults: Faults | None = None,
    ) -> None:
        super().__init__(faults)
        if protocol not in ("d2", "p81"):
            raise ValueError(f"unknown Modbus-style Daly protocol {protocol!r}")
        self.pack = pack
        self.protocol = protocol
        self.address = d2.ADDRESS if protocol == "d2" else 0x80 + board
        self.reply_address = d2.ADDRESS if protocol == "d2" else 0x50 + board

    def respond_frames(self, request: bytes) -> list[bytes] | None:
        self.requests.append(bytes(request))
        if self.faults.silent or len(request) < 8 or request[0] != self.address:
            return None
        if crc16_modbus(request[:-2]) != request[-2] | request[-1] << 8:
            return None
        self.pack.step()
        function = request[1]
        register = int.from_bytes(request[2:4], "big")
        value = int.from_bytes(request[4:6], "big")
        regs = self.pack.d2_registers() if self.protocol == "d2" else self.pack.p81_registers()
        if function == FC_READ:
            if not all(r in regs for r in range(register, register + value)):
                return self._finish([build_frame(bytes((self.reply_address, 0x83, 0x02)))])
            values = [regs[r] for r in range(register, register + value)]
            return self._finish([build_read_response(self.reply_address, values)])
        if function == FC_WRITE_SINGLE and self.protocol == "d2":
            if register == d2.CHARGE_MOSFET_REGISTER:
                self.pack.charge_mosfet = bool(value)
            elif register == d2.DISCHARGE_MOSFET_REGISTER:
                self.pack.discharge_mosfet = bool(value)
            elif register != d2.BALANCER_REGISTER:
                return self._finish([build_frame(bytes((self.reply_address, 0x86, 0x02)))])
            return self._finish([bytes(request)])
        if function == FC_WRITE_MULTIPLE:
            return self._finish([build_frame(bytes((self.reply_address,)) + request[1:6])])
        return None


class A5Framer:
    """Cuts 13-byte A5 requests out of the byte stream (:class:`battery_simulator.line.Framer`),
    resynchronising on garbage like the reader does (doc §4.6)."""

    def __init__(self) -> None:
        self._stream = a5.FrameStream()

    def reset(self) -> None:
        """Forget a partial request."""
        self._stream.clear()

    def feed(self, data: bytes, now: float) -> list[tuple[bytes, float]]:
        """Complete requests with their start times."""
        return [
            (a5.build_frame(f.address, f.command, f.data), now) for f in self._stream.feed(data)
        ]


class ModbusFramer:
    """Cuts Modbus-style requests (FC 03/06 and the short FC 0x10) addressed to ``addresses``
    out of the byte stream."""

    def __init__(self, addresses: set[int]) -> None:
        self._stream = ModbusStream(addresses, requests=True)

    def reset(self) -> None:
        """Forget a partial request."""
        self._stream.clear()

    def feed(self, data: bytes, now: float) -> list[tuple[bytes, float]]:
        """Complete requests with their start times."""
        return [(f, now) for f in self._stream.feed(data)]
