"""Values derived once for every reader: power, cell summary, temperature range, energy counters.

Readers fill a :class:`~bmslink.schema.BatteryState` with what their BMS reports and pass it
through :func:`complete`; no reader computes these itself, so they agree across brands.

Energy counters (kWh, never decreasing) are integrated from power with the trapezoid rule and
persisted by :class:`~bmslink.energy.EnergyStore` (module :mod:`bmslink.energy`, re-exported here).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import msgspec

from bmslink.energy import EnergyCounter, EnergyStore
from bmslink.schema import BatteryState

__all__ = ["CellSummary", "EnergyCounter", "EnergyStore", "cell_summary", "complete"]


@dataclass(frozen=True, slots=True)
class CellSummary:
    """Cell statistics in V; indices are 1-based cell numbers (first occurrence wins)."""

    minimum: float
    maximum: float
    average: float
    delta: float
    min_index: int
    max_index: int


def cell_summary(cells: Sequence[float]) -> CellSummary | None:
    """Min/max/avg/delta (V) and 1-based min/max indices of ``cells``; None for no cells."""
    if not cells:
        return None
    lo = min(cells)
    hi = max(cells)
    return CellSummary(
        minimum=lo,
        maximum=hi,
        average=round(math.fsum(cells) / len(cells), 4),
        delta=round(hi - lo, 4),
        min_index=cells.index(lo) + 1,
        max_index=cells.index(hi) + 1,
    )


def complete(state: BatteryState, energy: EnergyCounter | None = None) -> BatteryState:
    """Return ``state`` with the derived fields filled in.

    - ``power`` = ``voltage × current`` (W, + = charging) when both are known and the BMS gave none;
    - ``cell_min``/``cell_max``/``cell_avg``/``cell_delta`` (V) with 1-based indices;
    - ``temperature_min``/``temperature_max`` (°C) over ``temperatures``;
    - ``energy_charged``/``energy_discharged`` (kWh) after adding this sample to ``energy``
      (timed by the counter's monotonic clock, not by ``state.ts``).
    """
    changes: dict[str, object] = {}
    power = state.power
    if power is None and state.voltage is not None and state.current is not None:
        power = round(state.voltage * state.current, 2)
        changes["power"] = power
    summary = cell_summary(state.cell_voltages)
    if summary is not None:
        changes.update(
            cell_min=summary.minimum,
            cell_max=summary.maximum,
            cell_avg=summary.average,
            cell_delta=summary.delta,
            cell_min_index=summary.min_index,
            cell_max_index=summary.max_index,
        )
    if state.temperatures:
        changes["temperature_min"] = min(state.temperatures)
        changes["temperature_max"] = max(state.temperatures)
    if energy is not None:
        if power is not None:
            energy.add(power)
        changes["energy_charged"] = round(energy.charged, 6)
        changes["energy_discharged"] = round(energy.discharged, 6)
    return msgspec.structs.replace(state, **changes) if changes else state
