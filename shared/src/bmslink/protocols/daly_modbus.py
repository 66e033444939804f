"""Modbus-style framing shared by the Daly **D2** and **0x81/0x51** protocols: pure, no I/O.

Reference: ``shared/protocols/daly.md`` §6 (frames, CRC-16/MODBUS, reassembly). Frames are
Modbus RTU PDUs followed by the CRC-16/MODBUS, low byte first::

    read request   <addr> 03 <reg hi lo> <count hi lo> <crc lo hi>
    read response  <addr'> 03 <bytecount> <data ...> <crc lo hi>
    write single   <addr> 06 <reg> <value> <crc>           (the reply is an echo)
    exception      <addr'> 83|86|90 <code> <crc>

D2 uses address 0xD2 both ways; 0x81 sends 0x80 + board and answers from 0x50 + board (§6.1).
The official app also sends a non-standard FC 0x10 **without** the byte-count field, answered by
an 8-byte echo of address/register/count.

The CRC is the shared one of :mod:`bmslink.protocols.modbus_rtu`. Everything raised derives
from :class:`DalyModbusError` (a ``ValueError``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from bmslink.protocols.modbus_rtu import crc16

__all__ = [
    "FC_READ",
    "FC_WRITE_MULTIPLE",
    "FC_WRITE_SINGLE",
    "CrcError",
    "DalyModbusError",
    "DalyModbusStatus",
    "FrameError",
    "ModbusExceptionError",
    "ModbusFrame",
    "ModbusStream",
    "bits_to_cells",
    "build_frame",
    "build_read",
    "build_read_response",
    "build_write_single",
    "crc16_modbus",
    "parse_frame",
    "registers_from",
    "response_length",
    "signed_power",
]


class DalyModbusError(ValueError):
    """Base class of every error of the Daly Modbus-style framing (and the D2/0x81 codecs)."""


class FrameError(DalyModbusError):
    """Not a frame of the expected shape: too short, byte count mismatch, wrong address or
    function, or a payload that does not fit the register map."""


class CrcError(DalyModbusError):
    """The CRC-16/MODBUS does not match (doc §6.2); the BMS itself sometimes sends these (§6.3):
    drop and retry, never repair."""


class ModbusExceptionError(DalyModbusError):
    """A well-formed Modbus exception reply (function | 0x80) with its ``code``."""

    def __init__(self, address: int, function: int, code: int) -> None:
        self.address = address
        self.function = function
        self.code = code
        super().__init__(f"Modbus exception 0x{code:02X} to function 0x{function & 0x7F:02X}")


FC_READ: Final = 0x03
FC_WRITE_SINGLE: Final = 0x06
FC_WRITE_MULTIPLE: Final = 0x10
MAX_REGISTERS: Final = 125


def crc16_modbus(data: bytes) -> int:
    """CRC-16/MODBUS (reflected poly 0xA001, init 0xFFFF, no final XOR), doc §6.2 — the shared
    :func:`bmslink.protocols.modbus_rtu.crc16`. Sent low byte first. Check value:
    ``crc16_modbus(b"123456789") == 0x4B37``."""
    return crc16(data)


def build_frame(pdu: bytes) -> bytes:
    """``pdu`` + its CRC (low byte first)."""
    crc = crc16_modbus(pdu)
    return bytes(pdu) + bytes((crc & 0xFF, crc >> 8))


def build_read(address: int, register: int, count: int) -> bytes:
    """FC 03 read of ``count`` holding registers from ``register``; e.g. the D2 status request
    ``build_read(0xD2, 0, 62)`` → ``d2 03 00 00 00 3e d7 b9``. Raises :class:`FrameError` for
    out-of-range arguments."""
    if not (0 <= address <= 0xFF and 0 <= register <= 0xFFFF and 1 <= count <= MAX_REGISTERS):
        raise FrameError(f"bad read address={address} register={register} count={count}")
    return build_frame(bytes((address, FC_READ)) + register.to_bytes(2, "big") + count.to_bytes(2))


def build_write_single(address: int, register: int, value: int) -> bytes:
    """FC 06 write of one register; e.g. D2 charge MOSFET on ``d2 06 00 a5 00 01 4b 8a``."""
    if not (0 <= address <= 0xFF and 0 <= register <= 0xFFFF and 0 <= value <= 0xFFFF):
        raise FrameError(f"bad write address={address} register={register} value={value}")
    return build_frame(
        bytes((address, FC_WRITE_SINGLE)) + register.to_bytes(2, "big") + value.to_bytes(2, "big")
    )


def build_read_response(address: int, registers: Iterable[int]) -> bytes:
    """FC 03 response carrying ``registers`` (u16 each); used by the simulator."""
    data = b"".join((r & 0xFFFF).to_bytes(2, "big") for r in registers)
    if len(data) > 250:
        raise FrameError(f"{len(data) // 2} registers do not fit one response")
    return build_frame(bytes((address, FC_READ, len(data))) + data)


@dataclass(frozen=True, slots=True)
class ModbusFrame:
    """A verified frame: ``address``, ``function`` and ``body`` (after the function code, before
    the CRC: byte count + data for FC 03 responses, register + value for FC 06)."""

    address: int
    function: int
    body: bytes

    @property
    def data(self) -> bytes:
        """The data bytes of an FC 03 response (without the byte count)."""
        return self.body[1:] if self.function == FC_READ else self.body


def response_length(head: bytes, *, request: bool = False) -> int | None:
    """Length of the frame starting with ``head`` (≥ 2 bytes, 3 for FC 03 responses), or None
    if it cannot be known yet / the function code is not one of the Daly set (doc §6.3)."""
    if len(head) < 2:
        return None
    function = head[1]
    if function & 0x80:
        return 5
    if function == FC_READ:
        if request:
            return 8
        if len(head) < 3:
            return None
        return 5 + head[2]
    if function in (FC_WRITE_SINGLE, FC_WRITE_MULTIPLE):
        return 8
    return None


def parse_frame(
    frame: bytes,
    *,
    address: int | None = None,
    function: int | None = None,
) -> ModbusFrame:
    """Verify one complete response frame.

    Raises:
        FrameError: too short, length does not match the byte count, wrong address/function.
        CrcError: bad CRC.
        ModbusExceptionError: an exception reply (after its CRC was verified).
    """
    if len(frame) < 5:
        raise FrameError(f"frame too short ({len(frame)} bytes)")
    expected = response_length(frame)
    if expected is None:
        raise FrameError(f"unknown function code 0x{frame[1]:02X}")
    if len(frame) != expected:
        raise FrameError(f"frame is {len(frame)} bytes, its header says {expected}")
    crc = crc16_modbus(frame[:-2])
    got = frame[-2] | frame[-1] << 8
    if crc != got:
        raise CrcError(f"CRC 0x{got:04X} on the wire, computed 0x{crc:04X}")
    if address is not None and frame[0] != address:
        raise FrameError(f"frame from address 0x{frame[0]:02X}, expected 0x{address:02X}")
    if frame[1] & 0x80:
        raise ModbusExceptionError(frame[0], frame[1], frame[2])
    if function is not None and frame[1] != function:
        raise FrameError(f"function 0x{frame[1]:02X}, expected 0x{function:02X}")
    return ModbusFrame(frame[0], frame[1], bytes(frame[2:-2]))


def registers_from(frame: ModbusFrame, count: int | None = None) -> list[int]:
    """The u16 registers of an FC 03 response. Raises :class:`FrameError` if it is not an FC 03
    response or carries another number of registers than ``count``."""
    if frame.function != FC_READ:
        raise FrameError(f"not a read response (function 0x{frame.function:02X})")
    data = frame.data
    if len(data) % 2:
        raise FrameError(f"odd byte count {len(data)}")
    if count is not None and len(data) != 2 * count:
        raise FrameError(f"{len(data) // 2} registers, expected {count}")
    return [int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2)]


class ModbusStream:
    """Extracts CRC-valid frames from a byte stream (BLE notifications or serial reads): one
    notification may hold several frames and a frame may span notifications (doc §3.3, §6.3).

    ``addresses``: accepted first bytes (e.g. ``{0xD2}`` or ``{0x51}``); ``requests=True`` cuts
    requests instead of responses (the simulator's side). A candidate with a bad
    CRC costs one byte (counted in :attr:`crc_errors` once per candidate of full length) and the
    search restarts; skipped bytes are counted in :attr:`dropped`.
    """

    def __init__(self, addresses: Iterable[int], *, requests: bool = False) -> None:
        self.addresses = frozenset(addresses)
        self.requests = requests
        self._buf = bytearray()
        self.dropped = 0
        self.crc_errors = 0
        #: longest frame accepted (set it to the expected reply length so that a garbage header
        #: announcing a long frame cannot hold back the real reply)
        self.max_length: int | None = None

    def clear(self) -> None:
        """Forget buffered bytes."""
        self.dropped += len(self._buf)
        self._buf.clear()

    @property
    def pending(self) -> int:
        """Bytes buffered but not yet part of a frame."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[bytes]:
        """Add bytes; return every complete CRC-valid raw frame, in order."""
        buf = self._buf
        buf += data
        out: list[bytes] = []
        while buf:
            if buf[0] not in self.addresses:
                self.dropped += 1
                del buf[:1]
                continue
            length = response_length(bytes(buf[:3]), request=self.requests)
            if length is None:
                if len(buf) < 2 or (len(buf) == 2 and buf[1] == FC_READ):
                    return out
                self.dropped += 1
                del buf[:1]
                continue
            if self.requests and buf[1] == FC_WRITE_MULTIPLE:
                if len(buf) < 6:
                    return out
                length = 8 + 2 * int.from_bytes(buf[4:6], "big")  # non-standard: no byte count
            if self.max_length is not None and length > self.max_length:
                self.dropped += 1
                del buf[:1]
                continue
            if len(buf) < length:
                return out
            candidate = bytes(buf[:length])
            if crc16_modbus(candidate[:-2]) == candidate[-2] | candidate[-1] << 8:
                out.append(candidate)
                del buf[:length]
            else:
                self.crc_errors += 1
                self.dropped += 1
                del buf[:1]
        return out


@dataclass(frozen=True, slots=True)
class DalyModbusStatus:
    """A decoded status block of a Daly H/K/M/S board (D2 §7.2 or 0x81 §8.2), schema units.

    ``cell_voltages`` V (cell 1 first, ``cell_count`` of them); ``temperatures`` °C
    (``sensor_count`` of them, unavailable slots dropped); ``voltage`` V; ``current`` A,
    + = charging (doc §9);
    ``soc`` %; ``remaining_capacity`` Ah; ``state`` 0 idle / 1 charging / 2 discharging;
    ``power`` W signed like the current (the register is unsigned, the sign comes from the
    current or the state); ``cell_max``/``cell_min``/``cell_avg``/``cell_delta`` V as reported;
    ``temperature_max``/``temperature_min`` °C; ``balancer`` raw balancer state;
    ``balancing_cells`` 1-based (None when not read); ``balance_current`` A;
    ``mosfet_temperature``/``bms_temperature`` °C or None when unsupported; ``alarms`` and
    ``warnings`` are stable codes (bmslink.alarms) and ``alarm_raw`` the raw alarm bits;
    ``extra`` holds protocol-specific raw registers (heartbeat counter, pre-charge MOSFET ...).
    A value the block did not contain is None.
    """

    cell_voltages: list[float]
    temperatures: list[float]
    voltage: float
    current: float
    soc: float
    cell_count: int
    sensor_count: int
    state: int | None = None
    remaining_capacity: float | None = None
    cycles: int | None = None
    charge_mosfet: bool | None = None
    discharge_mosfet: bool | None = None
    power: float | None = None
    cell_max: float | None = None
    cell_min: float | None = None
    cell_avg: float | None = None
    cell_delta: float | None = None
    temperature_max: float | None = None
    temperature_min: float | None = None
    balancer: int | None = None
    balancing_cells: list[int] | None = None
    balance_current: float | None = None
    mosfet_temperature: float | None = None
    bms_temperature: float | None = None
    alarms: list[str] | None = None
    warnings: list[str] | None = None
    alarm_raw: int | None = None
    extra: dict[str, int] | None = None


def signed_power(power: int, current: float, state: int | None) -> float:
    """An unsigned power register (W) signed like the current; when the current is 0 the state
    register decides (2 = discharging → negative), doc §7.2 0x39 / §8.2 0x58."""
    if current < 0 or (current == 0 and state == 2):
        return -float(power)
    return float(power)


def bits_to_cells(words: Iterable[int], limit: int) -> list[int]:
    """Balancing bit registers → 1-based cell numbers: register k bit b = cell 16·k + b + 1
    (bit 0 of the first register = cell 1), at most ``limit`` cells."""
    out = []
    for k, word in enumerate(words):
        for b in range(16):
            n = 16 * k + b + 1
            if n <= limit and word >> b & 1:
                out.append(n)
    return out
