"""Generic Modbus RTU framing: CRC-16/MODBUS, requests, responses, exceptions. Pure, no I/O.

Shared by every Modbus RTU codec of bmslink (PACE, Daly...). Facts from the *MODBUS over Serial
Line Specification and Implementation Guide V1.02* and the *MODBUS Application Protocol
Specification V1.1b3*, as summarised in ``shared/protocols/pace-modbus-am2.md`` §4-§5:

* frame = slave address (1 byte) + function code (1) + data + CRC (2, **low byte first**);
* CRC-16/MODBUS: reflected polynomial 0xA001, init 0xFFFF, no final XOR (check value of
  ``b"123456789"`` is 0x4B37), over every byte before the CRC;
* read holding/input registers (FC 0x03/0x04): request ``addr fc start(2) count(2) crc``; reply
  ``addr fc bytecount data(2n) crc``, registers big-endian;
* write multiple registers (FC 0x10): request ``addr 0x10 start count bytecount data crc``; reply
  ``addr 0x10 start count crc``;
* exception reply: ``addr fc|0x80 code crc`` (5 bytes).

Every error raised here derives from :class:`ModbusError` (a ``ValueError``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Final

__all__ = [
    "FC_READ_HOLDING",
    "FC_READ_INPUT",
    "FC_WRITE_MULTIPLE",
    "MAX_READ_REGISTERS",
    "MAX_WRITE_REGISTERS",
    "CrcError",
    "ExceptionCode",
    "ExceptionReplyError",
    "FrameError",
    "ModbusError",
    "Request",
    "append_crc",
    "build_exception",
    "build_read_request",
    "build_read_response",
    "build_write_request",
    "build_write_response",
    "check_crc",
    "crc16",
    "parse_read_response",
    "parse_request",
    "registers_from_bytes",
    "registers_to_bytes",
    "request_length",
    "response_length",
]

FC_READ_HOLDING: Final = 0x03
FC_READ_INPUT: Final = 0x04
FC_WRITE_SINGLE: Final = 0x06
FC_WRITE_MULTIPLE: Final = 0x10
MAX_READ_REGISTERS: Final = 125  # 0x7D: a reply's byte count must fit in one byte (250)
MAX_WRITE_REGISTERS: Final = 123  # 0x7B
EXCEPTION_BIT: Final = 0x80
EXCEPTION_LENGTH: Final = 5


class ModbusError(ValueError):
    """Base class of every error of the Modbus RTU codec (a ``ValueError``)."""


class FrameError(ModbusError):
    """Malformed frame: too short, wrong length or byte count, or not the reply to the request
    (other slave address, function code, register count)."""


class CrcError(ModbusError):
    """The CRC-16/MODBUS of the frame does not match its last two bytes (a corrupted frame).

    Attributes:
        expected: CRC computed over the received bytes.
        received: CRC carried by the frame (low byte first on the wire).
    """

    def __init__(self, expected: int, received: int, frame: bytes) -> None:
        self.expected = expected
        self.received = received
        self.frame = frame
        super().__init__(
            f"CRC mismatch: computed 0x{expected:04X}, frame carries 0x{received:04X} "
            f"(frame {frame.hex()})"
        )

    def __reduce__(self) -> tuple[type[CrcError], tuple[int, int, bytes]]:
        return (type(self), (self.expected, self.received, self.frame))


class ExceptionCode(IntEnum):
    """Modbus exception codes (Application Protocol V1.1b3 §7; PACE V1.3 lists 1-3)."""

    ILLEGAL_FUNCTION = 1
    ILLEGAL_DATA_ADDRESS = 2
    ILLEGAL_DATA_VALUE = 3
    SLAVE_DEVICE_FAILURE = 4
    ACKNOWLEDGE = 5
    SLAVE_DEVICE_BUSY = 6
    MEMORY_PARITY_ERROR = 8
    GATEWAY_PATH_UNAVAILABLE = 10
    GATEWAY_TARGET_FAILED = 11


class ExceptionReplyError(ModbusError):
    """A well-formed exception reply (function code | 0x80) from a slave.

    Attributes:
        slave: address of the slave that answered.
        function: the function code of the request (without the 0x80 bit).
        code: the exception code (1 illegal function, 2 illegal data address, 3 illegal data
            value / operation, ...).
        name: the :class:`ExceptionCode` member name, or ``"UNKNOWN"``.
    """

    def __init__(self, slave: int, function: int, code: int) -> None:
        self.slave = slave
        self.function = function
        self.code = code
        try:
            self.name = ExceptionCode(code).name
        except ValueError:
            self.name = "UNKNOWN"
        super().__init__(
            f"slave {slave} answered function 0x{function:02X} with exception {code} "
            f"({self.name.lower().replace('_', ' ')})"
        )

    def __reduce__(self) -> tuple[type[ExceptionReplyError], tuple[int, int, int]]:
        return (type(self), (self.slave, self.function, self.code))


def _crc_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


_CRC_TABLE: Final = _crc_table()


def crc16(data: bytes) -> int:
    """CRC-16/MODBUS of ``data`` (poly 0xA001 reflected, init 0xFFFF, no final XOR).

    Returns the CRC as an integer; on the wire it is sent **low byte first**
    (:func:`append_crc`). ``crc16(b"123456789") == 0x4B37``; ``crc16(bytes.fromhex(
    "010300000025")) == 0x1184`` (pace-modbus-am2.md §5).
    """
    crc = 0xFFFF
    table = _CRC_TABLE
    for b in data:
        crc = (crc >> 8) ^ table[(crc ^ b) & 0xFF]
    return crc


def append_crc(body: bytes) -> bytes:
    """``body`` followed by its CRC-16/MODBUS, low byte first."""
    return bytes(body) + crc16(body).to_bytes(2, "little")


def check_crc(frame: bytes) -> bytes:
    """Verify the CRC of a whole frame and return the frame without its CRC.

    Raises:
        FrameError: fewer than 3 bytes.
        CrcError: the CRC does not match.
    """
    if len(frame) < 3:
        raise FrameError(f"frame too short for a CRC: {len(frame)} bytes ({frame.hex()})")
    body = frame[:-2]
    expected = crc16(body)
    received = int.from_bytes(frame[-2:], "little")
    if expected != received:
        raise CrcError(expected, received, bytes(frame))
    return bytes(body)


def registers_to_bytes(registers: Sequence[int]) -> bytes:
    """16-bit registers (0..0xFFFF) as big-endian bytes.

    Raises:
        FrameError: a register value outside 0..0xFFFF.
    """
    out = bytearray()
    for i, value in enumerate(registers):
        if not 0 <= value <= 0xFFFF:
            raise FrameError(f"register #{i} value {value} is not a u16")
        out += value.to_bytes(2, "big")
    return bytes(out)


def registers_from_bytes(data: bytes) -> tuple[int, ...]:
    """Big-endian bytes as unsigned 16-bit registers.

    Raises:
        FrameError: an odd number of bytes.
    """
    if len(data) % 2:
        raise FrameError(f"odd number of register bytes: {len(data)}")
    return tuple(int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2))


def _check_slave(slave: int) -> None:
    if not 0 <= slave <= 247:
        raise FrameError(f"slave address must be 0..247, got {slave}")


def _check_range(start: int, count: int, limit: int) -> None:
    if not 0 <= start <= 0xFFFF:
        raise FrameError(f"start register must be 0..65535, got {start}")
    if not 1 <= count <= limit:
        raise FrameError(f"register count must be 1..{limit}, got {count}")
    if start + count > 0x10000:
        raise FrameError(f"registers {start}..{start + count - 1} run past 65535")


def build_read_request(
    slave: int, start: int, count: int, function: int = FC_READ_HOLDING
) -> bytes:
    """Read-registers request (FC 0x03 holding, or 0x04 input) with its CRC.

    ``build_read_request(1, 0, 37) == bytes.fromhex("010300000025" "8411")``.

    Raises:
        FrameError: slave, start or count out of range (count 1..125).
    """
    _check_slave(slave)
    _check_range(start, count, MAX_READ_REGISTERS)
    return append_crc(
        bytes((slave, function)) + start.to_bytes(2, "big") + count.to_bytes(2, "big")
    )


def build_read_response(
    slave: int, registers: Sequence[int], function: int = FC_READ_HOLDING
) -> bytes:
    """Reply to a read-registers request: ``addr fc bytecount data crc`` (simulator side).

    Raises:
        FrameError: more than 125 registers or a value that is not a u16.
    """
    _check_slave(slave)
    if not 1 <= len(registers) <= MAX_READ_REGISTERS:
        raise FrameError(f"a reply carries 1..{MAX_READ_REGISTERS} registers, got {len(registers)}")
    data = registers_to_bytes(registers)
    return append_crc(bytes((slave, function, len(data))) + data)


def build_exception(slave: int, function: int, code: int) -> bytes:
    """Exception reply ``addr fc|0x80 code crc`` (5 bytes), e.g. ``01 83 02 c0 f1``."""
    _check_slave(slave)
    return append_crc(bytes((slave, (function | EXCEPTION_BIT) & 0xFF, code & 0xFF)))


def build_write_request(slave: int, start: int, registers: Sequence[int]) -> bytes:
    """Write-multiple-registers request (FC 0x10), the only write PACE lists (§4.2).

    Raises:
        FrameError: slave/start out of range, 0 or more than 123 registers, a non-u16 value.
    """
    _check_slave(slave)
    _check_range(start, len(registers), MAX_WRITE_REGISTERS)
    data = registers_to_bytes(registers)
    head = bytes((slave, FC_WRITE_MULTIPLE)) + start.to_bytes(2, "big")
    return append_crc(head + len(registers).to_bytes(2, "big") + bytes((len(data),)) + data)


def build_write_response(slave: int, start: int, count: int) -> bytes:
    """Success reply to FC 0x10: ``addr 0x10 start count crc`` (8 bytes)."""
    _check_slave(slave)
    body = bytes((slave, FC_WRITE_MULTIPLE)) + start.to_bytes(2, "big") + count.to_bytes(2, "big")
    return append_crc(body)


@dataclass(frozen=True, slots=True)
class Request:
    """A parsed request (what a slave receives).

    Attributes:
        slave: slave address (0 = broadcast).
        function: function code.
        start: first register (FC 0x03/0x04/0x06/0x10), else 0.
        count: number of registers (1 for FC 0x06), else 0.
        values: the register values written (FC 0x06/0x10), else empty.
        data: the PDU data after the function code, without CRC.
    """

    slave: int
    function: int
    start: int = 0
    count: int = 0
    values: tuple[int, ...] = ()
    data: bytes = b""


def request_length(prefix: bytes) -> int | None:
    """Length of the request frame that starts with ``prefix`` (for a slave's framer).

    Returns the full frame length in bytes once enough of it is known (2 bytes for FC 0x03/
    0x04/0x06 and others of fixed size, 7 for FC 0x10), None when more bytes are needed. Unknown
    function codes are assumed to be 8-byte frames (the common fixed size), so a slave can
    answer them with exception 1.
    """
    if len(prefix) < 2:
        return None
    function = prefix[1]
    if function == FC_WRITE_MULTIPLE:
        if len(prefix) < 7:
            return None
        return 9 + prefix[6]
    return 8


def response_length(function: int, count: int) -> int:
    """Length in bytes of the normal reply to a request (FC 0x03/0x04: 5 + 2·count; FC 0x06 and
    0x10: 8). An exception reply is always 5 bytes."""
    if function in (FC_READ_HOLDING, FC_READ_INPUT):
        return 5 + 2 * count
    return 8


def parse_request(frame: bytes) -> Request:
    """Parse and verify a request frame (slave side).

    Raises:
        CrcError: bad CRC.
        FrameError: truncated, or a byte count that does not match the register count.
    """
    body = check_crc(frame)
    if len(body) < 2:
        raise FrameError(f"request too short: {frame.hex()}")
    slave, function, data = body[0], body[1], body[2:]
    if function in (FC_READ_HOLDING, FC_READ_INPUT):
        if len(data) != 4:
            raise FrameError(f"read request must carry 4 data bytes, got {len(data)}")
        start = int.from_bytes(data[0:2], "big")
        count = int.from_bytes(data[2:4], "big")
        return Request(slave, function, start, count, (), data)
    if function == FC_WRITE_SINGLE:
        if len(data) != 4:
            raise FrameError(f"FC 0x06 request must carry 4 data bytes, got {len(data)}")
        start = int.from_bytes(data[0:2], "big")
        return Request(slave, function, start, 1, (int.from_bytes(data[2:4], "big"),), data)
    if function == FC_WRITE_MULTIPLE:
        if len(data) < 5:
            raise FrameError(f"FC 0x10 request too short: {frame.hex()}")
        start = int.from_bytes(data[0:2], "big")
        count = int.from_bytes(data[2:4], "big")
        nbytes = data[4]
        if nbytes != 2 * count or len(data) != 5 + nbytes:
            raise FrameError(
                f"FC 0x10 byte count {nbytes} does not match {count} registers / "
                f"{len(data) - 5} data bytes"
            )
        return Request(slave, function, start, count, registers_from_bytes(data[5:]), data)
    return Request(slave, function, data=data)


def parse_read_response(
    frame: bytes,
    *,
    slave: int | None = None,
    function: int = FC_READ_HOLDING,
    count: int | None = None,
) -> tuple[int, ...]:
    """Verify a read-registers reply and return its registers (unsigned 16-bit).

    Checks (pace-modbus-am2.md §10.1-2): CRC; slave address and function code equal the
    request's (when given); byte count = 2 × the requested count and frame length = 5 + byte
    count.

    Raises:
        CrcError: bad CRC (checked before the content: a corrupted frame says nothing
            reliable; only a reply shorter than its own byte count is reported as truncated
            first, as a :class:`FrameError`).
        ExceptionReplyError: an exception reply (function | 0x80) for this function.
        FrameError: truncated/oversized frame, other slave or function, wrong byte count.
    """
    frame = bytes(frame)
    if len(frame) < EXCEPTION_LENGTH:
        raise FrameError(f"reply too short: {len(frame)} bytes ({frame.hex()})")
    if frame[1] == function and len(frame) < 5 + frame[2]:
        raise FrameError(
            f"truncated reply: byte count {frame[2]} needs {5 + frame[2]} bytes, got {len(frame)}"
        )
    body = check_crc(frame)
    got_slave, got_function = body[0], body[1]
    if slave is not None and got_slave != slave:
        raise FrameError(f"reply from slave {got_slave}, expected {slave}")
    if got_function == function | EXCEPTION_BIT:
        if len(body) != 3:
            raise FrameError(f"exception reply must be 5 bytes, got {len(frame)}")
        raise ExceptionReplyError(got_slave, function, body[2])
    if got_function != function:
        raise FrameError(f"reply with function 0x{got_function:02X}, expected 0x{function:02X}")
    nbytes = body[2]
    if nbytes % 2 or len(body) != 3 + nbytes:
        raise FrameError(
            f"byte count {nbytes} does not match the {len(body) - 3} data bytes received"
        )
    if count is not None and nbytes != 2 * count:
        raise FrameError(f"reply carries {nbytes // 2} registers, {count} were requested")
    return registers_from_bytes(body[3:])
