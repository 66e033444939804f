"""Daly **D2** protocol (Modbus-style over BLE, H/K/M/S "smart" series): pure functions, no I/O.

Reference: ``shared/protocols/daly.md`` §6 (framing, see :mod:`bmslink.protocols.daly_modbus`),
§7.1 (requests), §7.2 (status block), §7.3 (alarm bits), §7.5 (version strings), §7.6 (writes),
§9 (current: positive = charging as decoded). Address 0xD2 in requests and responses.

Everything raised derives from :class:`~bmslink.protocols.daly_modbus.DalyModbusError`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Final

from bmslink.protocols import daly_a5
from bmslink.protocols.daly_modbus import (
    DalyModbusStatus,
    FrameError,
    bits_to_cells,
    build_read,
    build_write_single,
    signed_power,
)

__all__ = [
    "ADDRESS",
    "BALANCER_REGISTER",
    "CHARGE_MOSFET_REGISTER",
    "DISCHARGE_MOSFET_REGISTER",
    "MOSFET_BLOCK",
    "STATUS_REGISTERS",
    "STATUS_REGISTERS_80",
    "VERSION_BLOCK",
    "alarm_codes",
    "build_switch",
    "decode_status",
    "decode_version",
    "mosfet_request",
    "status_request",
    "version_request",
]

ADDRESS: Final = 0xD2
STATUS_REGISTERS: Final = 62
"""Default status read: registers 0x00-0x3D (``d2 03 00 00 00 3e d7 b9``), doc §7.1."""
STATUS_REGISTERS_80: Final = 80
"""The "blue series" status read 0x00-0x4F (``d2 03 00 00 00 50 56 55``)."""
MOSFET_BLOCK: Final = (0x3E, 9)
"""Registers 0x3E-0x46 (balancing bits, balance current, MOSFET/board temperature)."""
VERSION_BLOCK: Final = (0xA9, 32)
CHARGE_MOSFET_REGISTER: Final = 0xA5
DISCHARGE_MOSFET_REGISTER: Final = 0xA6
BALANCER_REGISTER: Final = 0xCF
CURRENT_OFFSET: Final = 30000
MAX_CELLS: Final = 32
MAX_SENSORS: Final = 8

_UNSUPPORTED_TEMPERATURE: Final = frozenset({0x0000, 0xFFFF})


def status_request(registers: int = STATUS_REGISTERS) -> bytes:
    """The status read of ``registers`` (62 or 80) from 0x0000 (doc §7.1)."""
    return build_read(ADDRESS, 0, registers)


def mosfet_request() -> bytes:
    """Read of 0x3E x 9 (``d2 03 00 3e 00 09 f7 a3``), for 62-register devices (doc §7.2)."""
    return build_read(ADDRESS, *MOSFET_BLOCK)


def version_request() -> bytes:
    """Read of the version strings, 32 registers from 0x00A9 (``d2 03 00 a9 00 20 87 91``)."""
    return build_read(ADDRESS, *VERSION_BLOCK)


def build_switch(charge: bool, on: bool) -> bytes:
    """FC 06 MOSFET write (doc §7.6): register 0xA5 (charge) or 0xA6 (discharge), 1 on / 0 off;
    e.g. discharge off ``d2 06 00 a6 00 00 7a 4a``. The reply is the exact echo."""
    register = CHARGE_MOSFET_REGISTER if charge else DISCHARGE_MOSFET_REGISTER
    return build_write_single(ADDRESS, register, 1 if on else 0)


def _temperature(raw: int) -> float:
    return float(raw - 40)


def alarm_codes(words: Sequence[int]) -> daly_a5.Alarms:
    """Registers 0x3A-0x3D → alarm codes (doc §7.3).

    The bytes of 0x3A-0x3C carry the A5 0x98 bytes pairwise swapped (0x3A = A5 byte 1, byte 0;
    0x3B = bytes 3, 2; 0x3C = bytes 5, 4), so the A5 table applies. Register 0x3D is not named
    by any source: it stays in the raw value only. Raises ``FrameError`` for fewer than 4 words.
    """
    if len(words) < 4:
        raise FrameError(f"alarm block needs 4 registers, got {len(words)}")
    b = b"".join((w & 0xFFFF).to_bytes(2, "big") for w in words[:4])
    a5_order = bytes((b[1], b[0], b[3], b[2], b[5], b[4], 0))
    return daly_a5.alarm_codes(a5_order)


def decode_status(registers: Mapping[int, int]) -> DalyModbusStatus:
    """Decode the D2 status block from ``{register: value}`` (doc §7.2).

    Needs registers 0x00-0x3D (the 62-register read); 0x3E-0x43 (80-register read or the
    separate 0x3E x 9 read) add balancing cells, balance current and the MOSFET/board
    temperatures (0x0000/0xFFFF = not supported → None).

    Raises ``FrameError`` when a needed register is missing.
    """
    missing = [r for r in range(STATUS_REGISTERS) if r not in registers]
    if missing:
        raise FrameError(f"D2 status needs registers 0x00-0x3D; missing 0x{missing[0]:02X}")
    r = registers
    cell_count = min(r[0x31], MAX_CELLS)
    sensor_count = min(r[0x32], MAX_SENSORS)
    current = (r[0x29] - CURRENT_OFFSET) / 10
    state = r[0x2F]
    alarms = alarm_codes([r[0x3A], r[0x3B], r[0x3C], r[0x3D]])
    alarm_raw = int.from_bytes(b"".join(r[x].to_bytes(2, "big") for x in range(0x3A, 0x3E)), "big")
    balancing: list[int] | None = None
    if 0x3E in r and 0x3F in r:
        balancing = bits_to_cells((r[0x3E], r[0x3F]), cell_count)
    balance_current = None
    if 0x40 in r and r[0x40] not in (0, 0xFFFF):
        balance_current = (r[0x40] - CURRENT_OFFSET) / 1000
    mosfet = r.get(0x42)
    board = r.get(0x43)
    return DalyModbusStatus(
        cell_voltages=[r[i] / 1000 for i in range(cell_count)],
        temperatures=[_temperature(r[0x20 + i]) for i in range(sensor_count)],
        voltage=r[0x28] / 10,
        current=current,
        soc=r[0x2A] / 10,
        cell_count=cell_count,
        sensor_count=sensor_count,
        state=state,
        remaining_capacity=r[0x30] / 10,
        cycles=r[0x33],
        balancer=r[0x34],
        charge_mosfet=bool(r[0x35]),
        discharge_mosfet=bool(r[0x36]),
        cell_max=r[0x2B] / 1000,
        cell_min=r[0x2C] / 1000,
        temperature_max=_temperature(r[0x2D]),
        temperature_min=_temperature(r[0x2E]),
        cell_avg=r[0x37] / 1000,
        cell_delta=r[0x38] / 1000,
        power=signed_power(r[0x39], current, state),
        alarms=alarms.alarms,
        warnings=alarms.warnings,
        alarm_raw=alarm_raw,
        balancing_cells=balancing,
        balance_current=balance_current,
        mosfet_temperature=None
        if mosfet is None or mosfet in _UNSUPPORTED_TEMPERATURE
        else _temperature(mosfet),
        bms_temperature=None
        if board is None or board in _UNSUPPORTED_TEMPERATURE
        else _temperature(board),
    )


def decode_version(data: bytes) -> list[str]:
    """The version block (64 ASCII bytes from 0x00A9) → its non-empty NUL-separated strings in
    order (software, hardware, date), doc §7.5 decision #12. Non-printable bytes are dropped."""
    pieces = bytes(data).split(b"\x00")
    out = []
    for piece in pieces:
        text = "".join(chr(c) for c in piece if 32 <= c < 127).strip()
        if text:
            out.append(text)
    return out
