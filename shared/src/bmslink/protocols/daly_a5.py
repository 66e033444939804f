"""Daly legacy **A5** protocol (13-byte frames over UART/RS485 and BLE): pure functions, no I/O.

Reference: ``shared/protocols/daly.md`` §4 (frame, sum8, addressing, commands 0x90-0x98, 0x50,
0x53, 0x63, 0xD9/0xDA), §9 (current sign), §11 (decisions). Wire frame (§4.1)::

    a5 | address | command | 08 | data (8 bytes) | sum8(bytes 0..11)

Requests carry the host address (0x40 serial/RS485 board 1, 0x41 board 2, ...; 0x80 over BLE);
responses carry the board number (0x01 for a single BMS). Multi-byte integers are big-endian and
decoded **unsigned** (§4.4: the peers' signed unpacking breaks above +276.7 A and 87 °C).

Everything this module raises derives from :class:`DalyA5Error` (a ``ValueError``).
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Final

from bmslink.protocols.fields import Field, decode_fields

__all__ = [
    "ALARM_BITS",
    "CURRENT_OFFSET",
    "FRAME_LEN",
    "HOST_BLE",
    "HOST_SERIAL",
    "START",
    "A5Frame",
    "AlarmBit",
    "Alarms",
    "CellExtremes",
    "ChargeState",
    "ChecksumError",
    "Command",
    "DalyA5Error",
    "FrameError",
    "FrameStream",
    "MosfetStatus",
    "MultiFrameError",
    "PayloadError",
    "Poll",
    "SocValues",
    "Status",
    "TemperatureExtremes",
    "alarm_codes",
    "assemble_ascii",
    "assemble_cells",
    "assemble_temperatures",
    "build_frame",
    "build_request",
    "build_switch",
    "burst_payloads",
    "decode_alarms",
    "decode_balancing",
    "decode_cell_extremes",
    "decode_cell_frame",
    "decode_mosfet",
    "decode_poll",
    "decode_rated",
    "decode_soc",
    "decode_status",
    "decode_temperature_extremes",
    "decode_temperature_frame",
    "decode_text_frame",
    "frames_needed",
    "host_address",
    "parse_frame",
    "sum8",
]

# ---------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------


class DalyA5Error(ValueError):
    """Base class of every error of the A5 codec."""


class FrameError(DalyA5Error):
    """Not an A5 frame: wrong length, start byte, length byte, or not the expected
    board/command (doc §4.1, §4.3 acceptance rule)."""


class ChecksumError(DalyA5Error):
    """The sum8 checksum (byte 12) does not match bytes 0..11 (doc §4.2)."""


class PayloadError(DalyA5Error):
    """The 8 data bytes do not decode (bad frame number, impossible counts, all-zero 0x90)."""


class MultiFrameError(DalyA5Error):
    """A multi-frame answer (0x95/0x96/0x57/0x63) lacks a needed frame (doc §4.6 rule 5)."""


# ---------------------------------------------------------------------------------------------
# Constants, framing
# ---------------------------------------------------------------------------------------------

START: Final = 0xA5
FRAME_LEN: Final = 13
DATA_LEN: Final = 8
HOST_SERIAL: Final = 0x40
"""Host address of the PC on UART/RS485 per protocol V1.2 (doc §4.3); board n → 0x40 + n − 1."""
HOST_BLE: Final = 0x80
"""Host address that BLE clients send and get answers to (doc §4.3, decision #1)."""
CURRENT_OFFSET: Final = 30000


class Command(IntEnum):
    """A5 data IDs (doc §4.4, §4.9)."""

    SOC = 0x90
    CELL_EXTREMES = 0x91
    TEMPERATURE_EXTREMES = 0x92
    MOSFET = 0x93
    STATUS = 0x94
    CELL_VOLTAGES = 0x95
    TEMPERATURES = 0x96
    BALANCING = 0x97
    ALARMS = 0x98
    RATED = 0x50
    PRODUCTION_DATE = 0x53
    BATTERY_CODE = 0x57
    MODEL = 0x63
    DISCHARGE_MOSFET = 0xD9
    CHARGE_MOSFET = 0xDA


MULTI_FRAME: Final = frozenset(
    {Command.CELL_VOLTAGES, Command.TEMPERATURES, Command.BATTERY_CODE, Command.MODEL}
)
"""Commands answered by a burst of 13-byte frames (doc §4.1, §4.6)."""

CELLS_PER_FRAME: Final = 3
TEMPERATURES_PER_FRAME: Final = 7
MAX_CELL_FRAMES: Final = 16  # 48 cells
MAX_TEMPERATURE_FRAMES: Final = 3  # 21 sensors


def sum8(data: bytes) -> int:
    """The A5 checksum: low byte of the sum of ``data`` (bytes 0..11 of a frame), doc §4.2."""
    return sum(data) & 0xFF


def host_address(board: int = 1, host: int = HOST_SERIAL) -> int:
    """Request address of ``board`` (1-based): ``host + board − 1`` (doc §4.3, RS485 numbering
    of dbus-serialbattery PR #78). Raises :class:`FrameError` outside 0..255."""
    address = host + board - 1
    if not 0 <= address <= 0xFF or board < 1:
        raise FrameError(f"board {board} with host 0x{host:02X} gives no valid address")
    return address


def build_frame(address: int, command: int, data: bytes = bytes(DATA_LEN)) -> bytes:
    """One 13-byte A5 frame (request or response) with its sum8 checksum.

    ``data`` is padded with zeros to 8 bytes. Raises :class:`FrameError` if it is longer or
    ``address``/``command`` are not bytes.
    """
    if len(data) > DATA_LEN or not 0 <= address <= 0xFF or not 0 <= command <= 0xFF:
        raise FrameError(f"cannot build A5 frame addr={address} cmd={command} data={data.hex()}")
    head = bytes((START, address, command, DATA_LEN)) + data.ljust(DATA_LEN, b"\x00")
    return head + bytes((sum8(head),))


def build_request(command: int, address: int = HOST_SERIAL, fill: int = 0x00) -> bytes:
    """A read request for ``command`` from host ``address``; ``fill`` 0x00 (default) or 0xAA
    (dbus-serialbattery's option for noisy UARTs, doc §11 #17). E.g. ``build_request(0x90, 0x80)``
    → ``a5 80 90 08 00×8 bd``."""
    return build_frame(address, command, bytes([fill]) * DATA_LEN)


def build_switch(charge: bool, on: bool, address: int = HOST_SERIAL) -> bytes:
    """The MOSFET write: 0xDA (charge) or 0xD9 (discharge) with d0 = 1 on / 0 off (doc §4.9).
    E.g. charge on from 0x40: ``a5 40 da 08 01 00…00 c8``."""
    cmd = Command.CHARGE_MOSFET if charge else Command.DISCHARGE_MOSFET
    return build_frame(address, cmd, bytes([1 if on else 0]))


@dataclass(frozen=True, slots=True)
class A5Frame:
    """A verified A5 frame: ``address`` (board number in a response), ``command``, 8 ``data``
    bytes."""

    address: int
    command: int
    data: bytes


def parse_frame(frame: bytes, *, board: int | None = None, command: int | None = None) -> A5Frame:
    """Verify one 13-byte frame (doc §4.3 acceptance rule) and return it.

    ``board``/``command``: when given, the frame must come from that board and echo that command.

    Raises:
        FrameError: length ≠ 13, byte 0 ≠ a5, byte 3 ≠ 08, or another board/command.
        ChecksumError: the sum8 does not match.
    """
    if len(frame) != FRAME_LEN:
        raise FrameError(f"A5 frame must be {FRAME_LEN} bytes, got {len(frame)}")
    if frame[0] != START:
        raise FrameError(f"A5 frame starts with 0x{frame[0]:02X}, expected 0xA5")
    if frame[3] != DATA_LEN:
        raise FrameError(f"A5 data length byte is 0x{frame[3]:02X}, expected 0x08")
    expected = sum8(frame[:12])
    if frame[12] != expected:
        raise ChecksumError(f"A5 checksum 0x{frame[12]:02X}, computed 0x{expected:02X}")
    if board is not None and frame[1] != board:
        raise FrameError(f"A5 frame from board {frame[1]}, expected {board}")
    if command is not None and frame[2] != command:
        raise FrameError(f"A5 frame answers 0x{frame[2]:02X}, expected 0x{command:02X}")
    return A5Frame(frame[1], frame[2], bytes(frame[4:12]))


class FrameStream:
    """Extracts verified A5 frames from a byte stream (BLE notifications or a serial read),
    resynchronising on garbage (doc §4.6 "Stream resynchroniser").

    ``board``: accept only frames whose byte 1 equals it (None: any). ``commands``: the set of
    commands currently expected (None: any). A candidate that fails a check costs one byte and the
    search restarts; the number of discarded bytes is in :attr:`dropped`.
    """

    def __init__(self, board: int | None = None, commands: Iterable[int] | None = None) -> None:
        self.board = board
        self.commands: frozenset[int] | None = None if commands is None else frozenset(commands)
        self._buf = bytearray()
        self.dropped = 0

    def expect(self, commands: Iterable[int] | None) -> None:
        """Change the expected commands (e.g. before a new request)."""
        self.commands = None if commands is None else frozenset(commands)

    def clear(self) -> None:
        """Forget buffered bytes (counted as dropped)."""
        self.dropped += len(self._buf)
        self._buf.clear()

    @property
    def pending(self) -> int:
        """Bytes buffered but not yet part of a frame."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[A5Frame]:
        """Add bytes; return every complete verified frame, in order."""
        buf = self._buf
        buf += data
        out: list[A5Frame] = []
        while True:
            start = buf.find(START)
            if start < 0:
                self.dropped += len(buf)
                buf.clear()
                return out
            if start:
                self.dropped += start
                del buf[:start]
            if len(buf) < FRAME_LEN:
                # keep waiting only if what we have can still become a valid frame
                if (
                    (len(buf) > 1 and self.board is not None and buf[1] != self.board)
                    or (len(buf) > 2 and self.commands is not None and buf[2] not in self.commands)
                    or (len(buf) > 3 and buf[3] != DATA_LEN)
                ):
                    self.dropped += 1
                    del buf[:1]
                    continue
                return out
            candidate = bytes(buf[:FRAME_LEN])
            if (
                candidate[3] == DATA_LEN
                and candidate[12] == sum8(candidate[:12])
                and (self.board is None or candidate[1] == self.board)
                and (self.commands is None or candidate[2] in self.commands)
            ):
                out.append(A5Frame(candidate[1], candidate[2], candidate[4:12]))
                del buf[:FRAME_LEN]
            else:
                self.dropped += 1
                del buf[:1]


# ---------------------------------------------------------------------------------------------
# Payloads (doc §4.4). Offsets are into the 8 data bytes.
# ---------------------------------------------------------------------------------------------


def _data(data: bytes) -> bytes:
    if len(data) != DATA_LEN:
        raise PayloadError(f"A5 payload must be {DATA_LEN} bytes, got {len(data)}")
    return data


_SOC_FIELDS: Final = (
    Field("total_voltage", 0, 2, scale=0.1, unit="V", description="cumulative total voltage"),
    Field("gather_voltage", 2, 2, scale=0.1, unit="V", description="acquisition total voltage"),
    Field("current_raw", 4, 2, description="current, raw (30000 = 0 A, 0.1 A/count)"),
    Field("soc", 6, 2, scale=0.1, unit="%", description="SoC"),
)


@dataclass(frozen=True, slots=True)
class SocValues:
    """0x90: ``total_voltage`` and ``gather_voltage`` in V, ``current`` in A (+ = charging,
    after the polarity rule, see :func:`decode_soc`), ``current_raw`` as sent, ``soc`` in %."""

    total_voltage: float
    gather_voltage: float
    current: float
    current_raw: int
    soc: float

    @property
    def asleep(self) -> bool:
        """True for the all-zero answer of a sleeping UART (doc §3.1): voltage 0 and raw 0."""
        return self.total_voltage == 0 and self.current_raw == 0


def decode_soc(data: bytes, *, invert_current: bool = False) -> SocValues:
    """Decode 0x90 (doc §4.4).

    Current: raw is u16 with offset 30000 at 0.1 A. bmslink's default (doc §9, decision #6) is
    that raw **above** 30000 means discharge, so ``current = (30000 − raw) × 0.1`` A with
    + = charging; ``invert_current=True`` gives ``(raw − 30000) × 0.1`` for the firmwares that
    report the opposite. Raises :class:`PayloadError` for a payload that is not 8 bytes.
    """
    v = decode_fields(_SOC_FIELDS, _data(data), error=PayloadError)
    raw = int(v["current_raw"])
    delta = raw - CURRENT_OFFSET if invert_current else CURRENT_OFFSET - raw
    return SocValues(
        total_voltage=float(v["total_voltage"]),
        gather_voltage=float(v["gather_voltage"]),
        current=delta / 10,
        current_raw=raw,
        soc=float(v["soc"]),
    )


@dataclass(frozen=True, slots=True)
class CellExtremes:
    """0x91: highest/lowest cell voltage in V and their 1-based cell numbers."""

    max_voltage: float
    max_cell: int
    min_voltage: float
    min_cell: int


_CELL_EXTREMES_FIELDS: Final = (
    Field("max_voltage", 0, 2, scale=0.001, unit="V"),
    Field("max_cell", 2, 1),
    Field("min_voltage", 3, 2, scale=0.001, unit="V"),
    Field("min_cell", 5, 1),
)


def decode_cell_extremes(data: bytes) -> CellExtremes:
    """Decode 0x91 (doc §4.4); bytes 6-7 (a stale SoC copy) are ignored."""
    v = decode_fields(_CELL_EXTREMES_FIELDS, _data(data), error=PayloadError)
    return CellExtremes(
        float(v["max_voltage"]), int(v["max_cell"]), float(v["min_voltage"]), int(v["min_cell"])
    )


@dataclass(frozen=True, slots=True)
class TemperatureExtremes:
    """0x92: highest/lowest temperature in °C and their sensor numbers."""

    max_temperature: float
    max_sensor: int
    min_temperature: float
    min_sensor: int


def decode_temperature_extremes(data: bytes) -> TemperatureExtremes:
    """Decode 0x92 (doc §4.4): u8 with offset 40 (°C = raw − 40)."""
    d = _data(data)
    return TemperatureExtremes(float(d[0] - 40), d[1], float(d[2] - 40), d[3])


class ChargeState(IntEnum):
    """0x93 byte 0 (doc §4.4)."""

    STATIONARY = 0
    CHARGING = 1
    DISCHARGING = 2


@dataclass(frozen=True, slots=True)
class MosfetStatus:
    """0x93: ``state`` (0 stationary, 1 charging, 2 discharging), MOSFET flags, ``heartbeat``
    (byte 3, the PDFs' "BMS life", changes on every read) and ``remaining_capacity`` in Ah."""

    state: int
    charge_mosfet: bool
    discharge_mosfet: bool
    heartbeat: int
    remaining_capacity: float


def decode_mosfet(data: bytes) -> MosfetStatus:
    """Decode 0x93 (doc §4.4): u32 remaining capacity in mAh → Ah."""
    d = _data(data)
    mah = int.from_bytes(d[4:8], "big")
    return MosfetStatus(d[0], bool(d[1]), bool(d[2]), d[3], mah / 1000)


@dataclass(frozen=True, slots=True)
class Status:
    """0x94: cell and sensor counts, charger/load connected, DIO bits (bit 0-3 DI1-4, bit 4-7
    DO1-4), ``cycles`` (bytes 5-6, doc §11 #2) and the reserved ``byte7``."""

    cells: int
    sensors: int
    charger: bool
    load: bool
    dio: int
    cycles: int
    byte7: int


def decode_status(data: bytes) -> Status:
    """Decode 0x94 (doc §4.4). Raises :class:`PayloadError` for more than 48 cells or 21
    sensors (the protocol's maxima, which the multi-frame answers cannot exceed)."""
    d = _data(data)
    if d[0] > MAX_CELL_FRAMES * CELLS_PER_FRAME:
        raise PayloadError(f"0x94 reports {d[0]} cells; the A5 protocol carries at most 48")
    if d[1] > MAX_TEMPERATURE_FRAMES * TEMPERATURES_PER_FRAME:
        raise PayloadError(f"0x94 reports {d[1]} sensors; the A5 protocol carries at most 21")
    return Status(d[0], d[1], bool(d[2]), bool(d[3]), d[4], int.from_bytes(d[5:7], "big"), d[7])


def _frame_number(data: bytes, limit: int) -> int:
    number = data[0]
    if number > limit:
        raise PayloadError(f"frame number {number} is beyond {limit}")
    return number


def decode_cell_frame(data: bytes) -> tuple[int, tuple[int, int, int]]:
    """Decode one 0x95 frame: ``(frame number, three cell voltages in mV)`` (doc §4.4). Frame
    numbers are 1-based in practice; 0 is tolerated (decision #3). Raises :class:`PayloadError`
    for a number above 16."""
    d = _data(data)
    number = _frame_number(d, MAX_CELL_FRAMES)
    mv = (
        int.from_bytes(d[1:3], "big"),
        int.from_bytes(d[3:5], "big"),
        int.from_bytes(d[5:7], "big"),
    )
    return number, mv


def decode_temperature_frame(data: bytes) -> tuple[int, tuple[int, ...]]:
    """Decode one 0x96 frame: ``(frame number, seven temperatures in °C)`` (raw − 40)."""
    d = _data(data)
    number = _frame_number(d, MAX_TEMPERATURE_FRAMES)
    return number, tuple(b - 40 for b in d[1:8])


def frames_needed(count: int, per_frame: int) -> int:
    """Frames that carry ``count`` values at ``per_frame`` per frame (doc §4.6)."""
    return math.ceil(count / per_frame) if count > 0 else 0


def _normalise(frames: Mapping[int, bytes]) -> dict[int, bytes]:
    """Frame number → data with the tolerated 0-based numbering shifted to 1-based."""
    if 0 in frames:
        return {n + 1: d for n, d in frames.items()}
    return dict(frames)


def assemble_cells(frames: Mapping[int, bytes], cells: int) -> list[float]:
    """Cell voltages in V (cell 1 first) from 0x95 frames keyed by frame number (doc §4.6).

    Raises :class:`MultiFrameError` when a needed frame is missing.
    """
    by_number = _normalise(frames)
    out: list[float] = []
    for k in range(1, frames_needed(cells, CELLS_PER_FRAME) + 1):
        if k not in by_number:
            raise MultiFrameError(f"0x95 frame {k} of {frames_needed(cells, 3)} missing")
        _, mv = decode_cell_frame(by_number[k])
        out.extend(v / 1000 for v in mv)
    return out[:cells]


def assemble_temperatures(frames: Mapping[int, bytes], sensors: int) -> list[float]:
    """Temperatures in °C (sensor 1 first) from 0x96 frames (doc §4.6); unused slots (raw 0 =
    −40 °C) beyond ``sensors`` are dropped. Raises :class:`MultiFrameError` on a gap."""
    by_number = _normalise(frames)
    out: list[float] = []
    for k in range(1, frames_needed(sensors, TEMPERATURES_PER_FRAME) + 1):
        if k not in by_number:
            raise MultiFrameError(f"0x96 frame {k} of {frames_needed(sensors, 7)} missing")
        _, temps = decode_temperature_frame(by_number[k])
        out.extend(float(t) for t in temps)
    return out[:sensors]


def decode_text_frame(data: bytes) -> tuple[int, str]:
    """One frame of 0x57/0x63: ``(frame number, 7 ASCII characters)`` (doc §4.9); NULs and
    non-printable bytes are removed."""
    d = _data(data)
    text = "".join(chr(b) for b in d[1:8] if 32 <= b < 127)
    return d[0], text


def assemble_ascii(frames: Mapping[int, bytes]) -> str:
    """Join 0x57/0x63 frames in frame order (e.g. ``DL-BMS-`` + ``R32-01E``)."""
    return "".join(decode_text_frame(frames[k])[1] for k in sorted(frames)).strip()


def decode_rated(data: bytes) -> tuple[float, float]:
    """0x50: ``(rated capacity in Ah, nominal cell voltage in V)`` (doc §4.9)."""
    d = _data(data)
    return int.from_bytes(d[0:4], "big") / 1000, int.from_bytes(d[4:8], "big") / 1000


def decode_balancing(data: bytes, cells: int = 48) -> list[int]:
    """0x97: 1-based numbers of the cells being balanced (doc §4.7, decision #5: data byte 0
    bit 0 = cell 1, byte (n−1)//8 bit (n−1)%8 = cell n; **unverified** by a capture)."""
    bits = int.from_bytes(_data(data), "little")  # byte 0 bit 0 = bit 0 = cell 1
    bits &= (1 << min(cells, 48)) - 1
    out = []
    while bits:
        low = bits & -bits
        out.append(low.bit_length())
        bits ^= low
    return out


# ---------------------------------------------------------------------------------------------
# Alarms (doc §4.8): byte, bit → stable code. Level 1 ("L1") → warning, level 2 → alarm,
# faults (bytes 4-6) → alarm.
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AlarmBit:
    """One alarm bit: data ``byte`` and ``bit`` of 0x98, the stable ``code`` (bmslink.alarms),
    whether it is an ``alarm`` (level 2 or fault) or a warning (level 1), and the PDF text."""

    byte: int
    bit: int
    code: str
    alarm: bool
    text: str


def _levels(byte: int, items: Sequence[tuple[str, str]]) -> list[AlarmBit]:
    out = []
    for i, (code, text) in enumerate(items):
        out.append(AlarmBit(byte, 2 * i, code, False, f"{text} L1"))
        out.append(AlarmBit(byte, 2 * i + 1, code, True, f"{text} L2"))
    return out


ALARM_BITS: Final[tuple[AlarmBit, ...]] = (
    *_levels(
        0,
        [
            ("cell_overvoltage", "cell voltage high"),
            ("cell_undervoltage", "cell voltage low"),
            ("pack_overvoltage", "total voltage high"),
            ("pack_undervoltage", "total voltage low"),
        ],
    ),
    *_levels(
        1,
        [
            ("charge_overtemperature", "charge temperature high"),
            ("charge_undertemperature", "charge temperature low"),
            ("discharge_overtemperature", "discharge temperature high"),
            ("discharge_undertemperature", "discharge temperature low"),
        ],
    ),
    *_levels(
        2,
        [
            ("charge_overcurrent", "charge over-current"),
            ("discharge_overcurrent", "discharge over-current"),
            ("soc_high", "SOC high"),
            ("soc_low", "SOC low"),
        ],
    ),
    *_levels(
        3,
        [("cell_imbalance", "voltage difference"), ("temperature_imbalance", "temp. difference")],
    ),
    AlarmBit(4, 0, "mosfet_overtemperature", True, "charge MOSFET over-temperature"),
    AlarmBit(4, 1, "mosfet_overtemperature", True, "discharge MOSFET over-temperature"),
    AlarmBit(4, 2, "temperature_sensor_fault", True, "charge MOSFET temperature sensor error"),
    AlarmBit(4, 3, "temperature_sensor_fault", True, "discharge MOSFET temperature sensor error"),
    AlarmBit(4, 4, "charge_mosfet_fault", True, "charge MOSFET adhesion"),
    AlarmBit(4, 5, "discharge_mosfet_fault", True, "discharge MOSFET adhesion"),
    AlarmBit(4, 6, "charge_mosfet_fault", True, "charge MOSFET open circuit"),
    AlarmBit(4, 7, "discharge_mosfet_fault", True, "discharge MOSFET open circuit"),
    AlarmBit(5, 0, "bms_fault", True, "AFE acquisition chip error"),
    AlarmBit(5, 1, "voltage_sensor_fault", True, "cell voltage acquisition dropped"),
    AlarmBit(5, 2, "temperature_sensor_fault", True, "cell temperature sensor error"),
    AlarmBit(5, 3, "bms_fault", True, "EEPROM error"),
    AlarmBit(5, 4, "bms_fault", True, "RTC error"),
    AlarmBit(5, 5, "precharge_fault", True, "pre-charge failure"),
    AlarmBit(5, 6, "external_communication_error", True, "(vehicle) communication failure"),
    AlarmBit(5, 7, "internal_communication_error", True, "internal communication failure"),
    AlarmBit(6, 0, "current_sensor_fault", True, "current module fault"),
    AlarmBit(6, 1, "voltage_sensor_fault", True, "total-voltage detection fault"),
    AlarmBit(6, 2, "short_circuit", True, "short-circuit protection fault"),
    AlarmBit(6, 3, "cell_undervoltage", True, "low-voltage charge-inhibit fault"),
)


@dataclass(frozen=True, slots=True)
class Alarms:
    """Decoded alarm bits: stable ``alarms`` and ``warnings`` codes (sorted, unique), the
    ``active`` bits with their PDF wording, the ``fault_code`` (0x98 byte 7, 0 = none) and the
    ``raw`` bytes."""

    alarms: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    active: list[AlarmBit] = field(default_factory=list)
    fault_code: int = 0
    raw: bytes = b""


def alarm_codes(bits: bytes, fault_code: int = 0) -> Alarms:
    """Map 7 alarm bytes (0x98 bytes 0..6 order) plus a fault code to codes (doc §4.8).

    A code reported both as warning and alarm is listed only as an alarm. A non-zero fault code
    adds ``bms_fault``. Raises :class:`PayloadError` if ``bits`` is shorter than 7 bytes.
    """
    if len(bits) < 7:
        raise PayloadError(f"alarm bitfield needs 7 bytes, got {len(bits)}")
    if not any(bits[:7]):
        return Alarms(["bms_fault"] if fault_code else [], [], [], fault_code, bytes(bits))
    active = [a for a in ALARM_BITS if bits[a.byte] >> a.bit & 1]
    alarms = {a.code for a in active if a.alarm}
    if fault_code:
        alarms.add("bms_fault")
    warnings = {a.code for a in active if not a.alarm} - alarms
    return Alarms(sorted(alarms), sorted(warnings), active, fault_code, bytes(bits))


def decode_alarms(data: bytes) -> Alarms:
    """Decode 0x98 (doc §4.8): bytes 0..6 bit fields, byte 7 fault code. Reserved bits (byte 3
    bits 4-7, byte 6 bits 4-7) are kept in ``raw`` only."""
    d = _data(data)
    return alarm_codes(d[:7], d[7])


# ---------------------------------------------------------------------------------------------
# Whole-poll decoding (fast path for bursts as received)
# ---------------------------------------------------------------------------------------------

_U16X4: Final = struct.Struct(">HHHH")
_EXTREMES: Final = struct.Struct(">HBHB2x")
_MOSFET: Final = struct.Struct(">BBBBI")
_STATUS: Final = struct.Struct(">BBBBBHB")
_burst_structs: dict[tuple[int, str], struct.Struct] = {}


def _burst_struct(n: int, frame_fmt: str) -> struct.Struct:
    key = (n, frame_fmt)
    found = _burst_structs.get(key)
    if found is None:
        found = _burst_structs[key] = struct.Struct(">" + frame_fmt * n)
    return found


def burst_payloads(raw: bytes, board: int, command: int) -> list[bytes]:
    """The data of every valid frame of ``command`` from ``board`` in ``raw`` (a reply as
    received: one frame, a burst, split or with garbage), in order.

    A well-formed burst is checked column-wise (start, address, command and length bytes of all
    frames with one comparison each) and by its checksums; anything else goes through
    :class:`FrameStream` (resynchronisation, doc §4.6)."""
    n, rest = divmod(len(raw), FRAME_LEN)
    if (
        n
        and not rest
        and raw[0::FRAME_LEN] == _START_COLUMN[:n]
        and raw[1::FRAME_LEN] == bytes((board,)) * n
        and raw[2::FRAME_LEN] == bytes((command,)) * n
        and raw[3::FRAME_LEN] == _LENGTH_COLUMN[:n]
        and _checksums_ok(raw)
    ):
        return [raw[i + 4 : i + 12] for i in range(0, len(raw), FRAME_LEN)]
    return [f.data for f in FrameStream(board=board, commands=(command,)).feed(raw)]


_START_COLUMN: Final = bytes((START,)) * 64
_LENGTH_COLUMN: Final = bytes((DATA_LEN,)) * 64


@dataclass(frozen=True, slots=True)
class Poll:
    """One full A5 poll decoded: 0x94 ``status``, 0x90 ``soc``, and (None when the reply was
    missing) 0x91/0x92 extremes, 0x93 ``mosfet``, cells (V) and temperatures (°C) from the
    0x95/0x96 bursts, 0x97 balancing cells and 0x98 alarms."""

    status: Status
    soc: SocValues
    cell_extremes: CellExtremes | None
    temperature_extremes: TemperatureExtremes | None
    mosfet: MosfetStatus | None
    cells: list[float]
    temperatures: list[float]
    balancing: list[int] | None
    alarms: Alarms | None


def _one(replies: Mapping[int, bytes], board: int, command: int) -> bytes | None:
    raw = replies.get(command)
    if raw is None:
        return None
    if (
        len(raw) == FRAME_LEN
        and raw[0] == START
        and raw[1] == board
        and raw[2] == command
        and raw[3] == DATA_LEN
        and sum(raw[:12]) & 0xFF == raw[12]
    ):
        return raw[4:12]
    payloads = burst_payloads(raw, board, command)
    return payloads[0] if payloads else None


def _checksums_ok(raw: bytes) -> bool:
    for i in range(0, len(raw), FRAME_LEN):  # noqa: SIM110 - a loop is faster than all()
        if sum(raw[i : i + 12]) & 0xFF != raw[i + 12]:
            return False
    return True


def decode_poll(
    replies: Mapping[int, bytes], board: int = 1, *, invert_current: bool = False
) -> Poll:
    """Decode the raw replies of one poll, ``{command: bytes as received}``, of ``board``.

    0x94 and 0x90 are required; the others may be absent. Raises :class:`PayloadError` when a
    required reply holds no valid frame, :class:`MultiFrameError` when a needed 0x95/0x96 frame
    is missing (doc §4.6), and the other :class:`DalyA5Error` of the single decoders.
    """
    status_data = _one(replies, board, Command.STATUS)
    soc_data = _one(replies, board, Command.SOC)
    if status_data is None or soc_data is None:
        raise PayloadError("a poll needs valid 0x94 and 0x90 replies")
    status = decode_status(status_data)
    volts, gather, raw_current, soc = _U16X4.unpack(soc_data)
    delta = raw_current - CURRENT_OFFSET if invert_current else CURRENT_OFFSET - raw_current
    soc_values = SocValues(volts / 10, gather / 10, delta / 10, raw_current, soc / 10)
    data = _one(replies, board, Command.CELL_EXTREMES)
    extremes = None
    if data is not None:
        hi, hi_cell, lo, lo_cell = _EXTREMES.unpack(data)
        extremes = CellExtremes(hi / 1000, hi_cell, lo / 1000, lo_cell)
    data = _one(replies, board, Command.TEMPERATURE_EXTREMES)
    temp_extremes = decode_temperature_extremes(data) if data is not None else None
    data = _one(replies, board, Command.MOSFET)
    mosfet = None
    if data is not None:
        state, chg, dsg, beat, mah = _MOSFET.unpack(data)
        mosfet = MosfetStatus(state, bool(chg), bool(dsg), beat, mah / 1000)
    cells = _burst_values(replies, board, Command.CELL_VOLTAGES, status.cells, CELLS_PER_FRAME)
    temps = _burst_values(
        replies, board, Command.TEMPERATURES, status.sensors, TEMPERATURES_PER_FRAME
    )
    data = _one(replies, board, Command.BALANCING)
    balancing = decode_balancing(data, status.cells) if data is not None else None
    data = _one(replies, board, Command.ALARMS)
    alarms = decode_alarms(data) if data is not None else None
    return Poll(
        status,
        soc_values,
        extremes,
        temp_extremes,
        mosfet,
        [v / 1000 for v in cells],
        [float(t - 40) for t in temps],
        balancing,
        alarms,
    )


def _burst_values(
    replies: Mapping[int, bytes], board: int, command: int, count: int, per_frame: int
) -> list[int]:
    """Raw values (mV or °C + 40) of the first ``count`` slots of a 0x95/0x96 burst."""
    need = frames_needed(count, per_frame)
    if need == 0:
        return []
    raw = replies.get(command, b"")
    fmt = "B3Hx" if per_frame == CELLS_PER_FRAME else "B7B"
    n = len(raw) // FRAME_LEN
    if n >= need and len(raw) % FRAME_LEN == 0:
        # fast path: frames 1..n in order, every header and checksum right
        payloads_ok = (
            raw[0::FRAME_LEN] == _START_COLUMN[:n]
            and raw[1::FRAME_LEN] == bytes((board,)) * n
            and raw[2::FRAME_LEN] == bytes((command,)) * n
            and raw[4::FRAME_LEN] == bytes(range(1, n + 1))
            and raw[3::FRAME_LEN] == _LENGTH_COLUMN[:n]
            and _checksums_ok(raw)
        )
        if payloads_ok:
            data = b"".join(raw[i + 4 : i + 12] for i in range(0, need * FRAME_LEN, FRAME_LEN))
            values = _burst_struct(need, fmt).unpack(data)
            step = per_frame + 1
            out: list[int] = []
            for k in range(need):
                out.extend(values[k * step + 1 : (k + 1) * step])
            return out[:count]
    frames: dict[int, bytes] = {}
    for payload in burst_payloads(raw, board, command):
        frames.setdefault(payload[0], payload)
    if per_frame == CELLS_PER_FRAME:
        return [round(v * 1000) for v in assemble_cells(frames, count)]
    return [round(t) + 40 for t in assemble_temperatures(frames, count)]
