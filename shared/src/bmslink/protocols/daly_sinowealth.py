"""Daly **Sinowealth** protocol (small "BMStool" boards, UART only): pure functions, no I/O.

Reference: ``shared/protocols/daly.md`` §5. A request is 3 bytes ``0a <cmd> <len>``; the reply is
``len`` big-endian data bytes and one check byte = CRC-8/SMBus (poly 0x07, init 0, no reflection)
over the **3 request bytes followed by the data bytes** (§5.1, established empirically). Replies do
not carry the command, so decoding needs the request.

Everything raised derives from :class:`DalySinowealthError` (a ``ValueError``).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Final

__all__ = [
    "BATTERY_STATUS_BITS",
    "PACK_CHGMOS",
    "PACK_DSGMOS",
    "PACK_STATUS_BITS",
    "ChecksumError",
    "Command",
    "DalySinowealthError",
    "FrameError",
    "Reading",
    "build_request",
    "crc8_smbus",
    "decode",
    "decode_value",
    "length_of",
    "parse_response",
    "status_codes",
]


class DalySinowealthError(ValueError):
    """Base class of every error of the Sinowealth codec."""


class FrameError(DalySinowealthError):
    """Wrong request/response shape (length, lead byte 0x0A, unknown command)."""


class ChecksumError(DalySinowealthError):
    """The CRC-8 check byte does not match (doc §5.1)."""


LEAD: Final = 0x0A


class Command(IntEnum):
    """Sinowealth commands (doc §5.2); 0x01-0x0A are cells 1..10."""

    CELL_1 = 0x01
    TOTAL_VOLTAGE = 0x0B
    EXTERNAL_TEMPERATURE_1 = 0x0C
    EXTERNAL_TEMPERATURE_2 = 0x0D
    IC_TEMPERATURE_1 = 0x0E
    IC_TEMPERATURE_2 = 0x0F
    CURRENT = 0x10
    FULL_CAPACITY = 0x11
    REMAINING_CAPACITY = 0x12
    RSOC = 0x13
    CYCLES = 0x14
    PACK_STATUS = 0x15
    BATTERY_STATUS = 0x16
    PACK_CONFIG = 0x17
    MANUFACTURE_ACCESS = 0x18


_LONG: Final = frozenset({Command.CURRENT, Command.FULL_CAPACITY, Command.REMAINING_CAPACITY})


def crc8_smbus(data: bytes) -> int:
    """CRC-8/SMBus: poly 0x07, init 0, no reflection, no final XOR (doc §5.1). Check value:
    ``crc8_smbus(b"123456789") == 0xF4``."""
    crc = 0
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = ((crc << 1) ^ 0x07) & 0xFF if crc & 0x80 else (crc << 1) & 0xFF
    return crc


def length_of(command: int) -> int:
    """Data length of ``command``: 4 for 0x10-0x12, else 2 (doc §5.2, following the captures).
    Raises :class:`FrameError` for an unknown command."""
    if not 0x01 <= command <= 0x18:
        raise FrameError(f"unknown Sinowealth command 0x{command:02X}")
    return 4 if command in _LONG else 2


def build_request(command: int) -> bytes:
    """``0a <cmd> <len>``, e.g. ``build_request(0x01)`` → ``0a 01 02``."""
    return bytes((LEAD, command, length_of(command)))


def parse_response(request: bytes, response: bytes) -> bytes:
    """Verify ``response`` (data + check byte) to ``request``; return the data bytes.

    Raises:
        FrameError: the request is not ``0a cmd len`` or the response has the wrong length.
        ChecksumError: the CRC-8 does not match.
    """
    if len(request) != 3 or request[0] != LEAD or request[2] not in (2, 4):
        raise FrameError(f"not a Sinowealth request: {request.hex()}")
    size = request[2]
    if len(response) != size + 1:
        raise FrameError(f"response must be {size + 1} bytes, got {len(response)}")
    expected = crc8_smbus(bytes(request) + bytes(response[:size]))
    if response[size] != expected:
        raise ChecksumError(f"check byte 0x{response[size]:02X}, computed 0x{expected:02X}")
    return bytes(response[:size])


@dataclass(frozen=True, slots=True)
class Reading:
    """One decoded value: ``name``, ``value`` in ``unit`` (V, A, °C, Ah, %, "" for counts and
    bit fields) and the ``raw`` integer."""

    name: str
    value: float | int
    unit: str
    raw: int


def decode_value(command: int, data: bytes) -> Reading:
    """Decode the data bytes of ``command`` (doc §5.2).

    Cells and total voltage mV → V; temperatures 0.1 K → °C (273.15, decision #10); current s32
    mA → A (sign as decoded, doc §9); capacities mAh → Ah. Raises :class:`FrameError` for a data
    length that does not fit the command.
    """
    size = length_of(command)
    if len(data) != size:
        raise FrameError(f"command 0x{command:02X} carries {size} bytes, got {len(data)}")
    signed = command == Command.CURRENT
    raw = int.from_bytes(data, "big", signed=signed)
    if 0x01 <= command <= 0x0A:
        return Reading(f"cell_{command}", raw / 1000, "V", raw)
    if command == Command.TOTAL_VOLTAGE:
        return Reading("total_voltage", raw / 1000, "V", raw)
    if Command.EXTERNAL_TEMPERATURE_1 <= command <= Command.IC_TEMPERATURE_2:
        names = {0x0C: "external_1", 0x0D: "external_2", 0x0E: "ic_1", 0x0F: "ic_2"}
        return Reading(f"temperature_{names[command]}", round(raw / 10 - 273.15, 2), "°C", raw)
    if command == Command.CURRENT:
        return Reading("current", raw / 1000, "A", raw)
    if command == Command.FULL_CAPACITY:
        return Reading("full_capacity", raw / 1000, "Ah", raw)
    if command == Command.REMAINING_CAPACITY:
        return Reading("remaining_capacity", raw / 1000, "Ah", raw)
    if command == Command.RSOC:
        return Reading("soc", raw, "%", raw)
    if command == Command.CYCLES:
        return Reading("cycles", raw, "", raw)
    if command == Command.PACK_STATUS:
        return Reading("pack_status", raw, "", raw)
    if command == Command.BATTERY_STATUS:
        return Reading("battery_status", raw, "", raw)
    if command == Command.PACK_CONFIG:
        return Reading("cell_count", (raw & 0x07) + 3, "", raw)
    return Reading("manufacture_access", raw, "", raw)


def decode(request: bytes, response: bytes) -> Reading:
    """:func:`parse_response` then :func:`decode_value`."""
    data = parse_response(request, response)
    return decode_value(request[1], data)


PACK_STATUS_BITS: Final = {
    15: "CAL",
    10: "VDQ",
    9: "FD",
    8: "FC",
    6: "FAST_DSG",
    5: "MID_DSG",
    4: "SLOW_DSG",
    3: "DSGING",
    2: "CHGING",
    1: "DSGMOS",
    0: "CHGMOS",
}
"""0x15 pack status bits (doc §5.2)."""

PACK_CHGMOS: Final = 1 << 0
"""0x15 bit 0 CHGMOS: the charge MOSFET is on (closed), doc §5.2."""
PACK_DSGMOS: Final = 1 << 1
"""0x15 bit 1 DSGMOS: the discharge MOSFET is on (closed), doc §5.2."""

BATTERY_STATUS_BITS: Final = {
    14: ("CTO", "other"),
    13: ("AFE_SC", "short_circuit"),
    12: ("AFE_OV", "cell_overvoltage"),
    11: ("UTD", "discharge_undertemperature"),
    10: ("UTC", "charge_undertemperature"),
    9: ("OTD", "discharge_overtemperature"),
    8: ("OTC", "charge_overtemperature"),
    3: ("OCD", "discharge_overcurrent"),
    2: ("OCC", "charge_overcurrent"),
    1: ("UV", "cell_undervoltage"),
    0: ("OV", "cell_overvoltage"),
}
"""0x16 battery status (protection) bits → (name, stable alarm code), doc §5.2."""


def status_codes(battery_status: int) -> list[str]:
    """Active protection bits of 0x16 as sorted unique alarm codes."""
    return sorted(
        {code for bit, (_, code) in BATTERY_STATUS_BITS.items() if battery_status >> bit & 1}
    )
