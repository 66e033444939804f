"""Daly **0x81/0x51** protocol (Modbus-style, wired H/K/M/S and some BLE models): pure, no I/O.

Reference: ``shared/protocols/daly.md`` §6 (framing, see :mod:`bmslink.protocols.daly_modbus`),
§8.1 (addressing: request 0x80 + board, response 0x50 + board), §8.2 (register map), §8.3
(worked decode), §9 (current: positive = charging as decoded).

The status is read with the two requests the official software sends, ``81 03 00 00 00 40``
(0x00-0x3F) and ``81 03 00 41 00 3e`` (0x41-0x7E); register 0x40 (min cell voltage) is in
neither, so the minimum comes from the cell list. The alarm fields 0x66-0x73 use a per-item level
layout the reference does not reproduce: they are kept raw. MOSFET writes (0x0121/0x0122) are
not specified by the reference and are not implemented.

Everything raised derives from :class:`~bmslink.protocols.daly_modbus.DalyModbusError`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from bmslink.protocols.daly_modbus import (
    DalyModbusStatus,
    FrameError,
    bits_to_cells,
    build_read,
    signed_power,
)

__all__ = [
    "BLOCKS",
    "PROBE_REQUEST",
    "VERSION_BLOCK",
    "decode_status",
    "request_address",
    "response_address",
    "status_requests",
]

BLOCKS: Final = ((0x00, 0x40), (0x41, 0x3E))
"""(first register, count) of the two status reads (doc §8.1)."""
VERSION_BLOCK: Final = (0x0178, 0x4A)
PROBE_REQUEST: Final = bytes.fromhex("8103003800025a06")
"""Serial detection read of voltage + current (doc §2, serial step 2)."""
CURRENT_OFFSET: Final = 30000
MAX_CELLS: Final = 48
MAX_SENSORS: Final = 8
_NOT_AVAILABLE: Final = 0x00FF
_ALARM_REGISTERS: Final = (*range(0x66, 0x6A), *range(0x6D, 0x74))


def request_address(board: int = 1) -> int:
    """0x80 + board (board 1 → 0x81). Raises ``FrameError`` for a board outside 1..15."""
    if not 1 <= board <= 15:
        raise FrameError(f"0x81 board number {board} is outside 1..15")
    return 0x80 + board


def response_address(board: int = 1) -> int:
    """0x50 + board (board 1 → 0x51)."""
    return 0x50 + board


def status_requests(board: int = 1) -> list[bytes]:
    """The two status reads for ``board`` (``81 03 00 00 00 40 5b fa`` and
    ``81 03 00 41 00 3e 8b ce`` for board 1)."""
    return [build_read(request_address(board), reg, count) for reg, count in BLOCKS]


def _temperature(raw: int) -> float:
    return float(raw - 40)


def decode_status(registers: Mapping[int, int]) -> DalyModbusStatus:
    """Decode the 0x81 status from ``{register: value}`` (doc §8.2).

    Needs 0x00-0x3F and 0x41-0x5B. ``extra`` carries the heartbeat counter 0x3B (**not** SoH,
    decision #14), the pre-charge/heating/fan MOSFETs, energy (Wh) and the raw alarm registers.
    Temperature slots reading 0x00FF (not available) are dropped; a balance current of raw 0
    means "not available" (ESS-DL-BMS) → None.

    Raises ``FrameError`` when a needed register is missing.
    """
    need = [*range(0x00, 0x40), *range(0x41, 0x5C)]
    missing = [reg for reg in need if reg not in registers]
    if missing:
        raise FrameError(f"0x81 status needs registers 0x00-0x5B; missing 0x{missing[0]:02X}")
    r = registers
    cell_count = min(r[0x3C], MAX_CELLS)
    sensor_count = min(r[0x3D], MAX_SENSORS)
    current = (r[0x39] - CURRENT_OFFSET) / 10
    state = r[0x48]
    temps = [
        _temperature(r[0x30 + i]) for i in range(sensor_count) if r[0x30 + i] != _NOT_AVAILABLE
    ]
    extra = {
        "heartbeat": r[0x3B],
        "precharge_mosfet": r[0x54],
        "heating_mosfet": r[0x55],
        "fan_mosfet": r[0x56],
        "energy_wh": r[0x59],
        "temperature_difference": r[0x47],
    }
    alarm_raw = 0
    for reg in _ALARM_REGISTERS:
        if reg in r:
            extra[f"alarm_0x{reg:02x}"] = r[reg]
            alarm_raw |= r[reg]
    cells = [r[i] / 1000 for i in range(cell_count)]
    return DalyModbusStatus(
        cell_voltages=cells,
        temperatures=temps,
        voltage=r[0x38] / 10,
        current=current,
        soc=r[0x3A] / 10,
        cell_count=cell_count,
        sensor_count=sensor_count,
        state=state,
        remaining_capacity=r[0x4B] / 10,
        cycles=r[0x4C],
        balancer=r[0x4D],
        balancing_cells=bits_to_cells((r[0x4F], r[0x50], r[0x51]), cell_count),
        balance_current=None if r[0x4E] == 0 else (r[0x4E] - CURRENT_OFFSET) / 1000,
        charge_mosfet=bool(r[0x52]),
        discharge_mosfet=bool(r[0x53]),
        cell_max=r[0x3E] / 1000,
        cell_min=(r[0x40] / 1000) if 0x40 in r else (min(cells) if cells else None),
        cell_delta=r[0x42] / 1000,
        temperature_max=_temperature(r[0x43]),
        temperature_min=_temperature(r[0x45]),
        power=signed_power(r[0x58], current, state),
        mosfet_temperature=None if r[0x5A] == _NOT_AVAILABLE else _temperature(r[0x5A]),
        bms_temperature=None if r[0x5B] == _NOT_AVAILABLE else _temperature(r[0x5B]),
        alarms=[],
        warnings=["other"] if alarm_raw else [],
        alarm_raw=alarm_raw if any(reg in r for reg in _ALARM_REGISTERS) else None,
        extra=extra,
    )
