"""Values derived once for every reader: power, cell summary, temperature range, energy counters.

Readers fill a :class:`~bmslink.schema.BatteryState` with what their BMS reports and pass it
through :func:`complete`; no reader computes these itself, so they agree across brands.

Energy counters (kWh, monotonic) are integrated from power with the trapezoid rule and
persisted by :class:`EnergyStore` to a JSON file in the state directory, so they survive a restart
of the service (and, since the service holds them, of the broker).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import msgspec

from bmslink.schema import BatteryState

log = logging.getLogger(__name__)


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


class EnergyCounter:
    """Charged/discharged energy in kWh integrated from power samples (W, + = charging).

    Trapezoid rule between consecutive samples. A gap longer than ``max_gap`` s (an outage,
    a restart) is not integrated: the energy in it is unknown, not guessed. Samples going back
    in time are ignored.
    """

    __slots__ = ("charged", "discharged", "last_power", "last_ts", "max_gap")

    def __init__(self, charged: float = 0.0, discharged: float = 0.0, max_gap: float = 120.0):
        self.charged = charged
        self.discharged = discharged
        self.max_gap = max_gap
        self.last_ts: float | None = None
        self.last_power: float | None = None

    def add(self, ts: float, power: float) -> None:
        """Add a power sample (W) taken at Unix time ``ts`` (s)."""
        if self.last_ts is not None and self.last_power is not None:
            dt = ts - self.last_ts
            if dt <= 0:
                return
            if dt <= self.max_gap:
                self._integrate(self.last_power, power, dt)
        self.last_ts = ts
        self.last_power = power

    def _integrate(self, p0: float, p1: float, dt: float) -> None:
        # Split the trapezoid at the zero crossing so charge and discharge are kept apart.
        if p0 * p1 >= 0:
            wh = (p0 + p1) / 2 * dt / 3600
            if p0 + p1 >= 0:
                self.charged += wh / 1000
            else:
                self.discharged += -wh / 1000
            return
        t0 = dt * abs(p0) / (abs(p0) + abs(p1))
        first = p0 / 2 * t0 / 3600 / 1000
        second = p1 / 2 * (dt - t0) / 3600 / 1000
        for part in (first, second):
            if part >= 0:
                self.charged += part
            else:
                self.discharged += -part


class _Saved(msgspec.Struct):
    charged: float
    discharged: float


class EnergyStore:
    """Energy counters of the devices of one service instance, persisted as JSON.

    File: ``<state_dir>/energy-<instance>.json`` mapping device id → ``{charged, discharged}``
    (kWh). Written atomically (temp file + rename) at most every ``save_interval`` s and on
    :meth:`save`. A corrupt or unreadable file is logged and replaced, never fatal.
    """

    def __init__(self, state_dir: str | os.PathLike[str], instance: str, save_interval: float):
        self.path = Path(state_dir) / f"energy-{instance}.json"
        self.save_interval = save_interval
        self._counters: dict[str, EnergyCounter] = {}
        self._last_save = time.monotonic()
        self._lock = threading.Lock()
        self._loaded = self._load()

    def _load(self) -> dict[str, _Saved]:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return {}
        except OSError as exc:
            log.warning("cannot read %s: %s", self.path, exc)
            return {}
        try:
            return msgspec.json.decode(raw, type=dict[str, _Saved])
        except msgspec.DecodeError as exc:
            log.warning("ignoring corrupt energy file %s: %s", self.path, exc)
            return {}

    def counter(self, device_id: str) -> EnergyCounter:
        """The counter of ``device_id``, resumed from the file when it was saved before."""
        with self._lock:
            found = self._counters.get(device_id)
            if found is None:
                saved = self._loaded.get(device_id)
                found = EnergyCounter(saved.charged, saved.discharged) if saved else EnergyCounter()
                self._counters[device_id] = found
            return found

    def seed(self, device_id: str, charged: float, discharged: float) -> None:
        """Raise a counter to values found elsewhere (e.g. the broker's retained state)."""
        c = self.counter(device_id)
        with self._lock:
            c.charged = max(c.charged, charged)
            c.discharged = max(c.discharged, discharged)

    def maybe_save(self) -> None:
        """Save if ``save_interval`` s have passed since the last save."""
        if time.monotonic() - self._last_save >= self.save_interval:
            self.save()

    def save(self) -> None:
        """Write every counter now (atomically). Errors are logged, not raised."""
        with self._lock:
            data = {
                k: {"charged": c.charged, "discharged": c.discharged}
                for k, c in self._counters.items()
            }
            for k, saved in self._loaded.items():
                data.setdefault(k, {"charged": saved.charged, "discharged": saved.discharged})
            self._last_save = time.monotonic()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".energy-")
            with os.fdopen(fd, "w") as fh:
                json.dump(data, fh)
            os.replace(tmp, self.path)
        except OSError as exc:
            log.warning("cannot save energy counters to %s: %s", self.path, exc)
            with contextlib.suppress(OSError, UnboundLocalError):
                os.unlink(tmp)


def complete(state: BatteryState, energy: EnergyCounter | None = None) -> BatteryState:
    """Return ``state`` with the derived fields filled in.

    - ``power`` = ``voltage × current`` (W, + = charging) when both are known and the BMS gave none;
    - ``cell_min``/``cell_max``/``cell_avg``/``cell_delta`` (V) with 1-based indices;
    - ``temperature_min``/``temperature_max`` (°C) over ``temperatures``;
    - ``energy_charged``/``energy_discharged`` (kWh) after adding this sample to ``energy``.
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
            energy.add(state.ts, power)
        changes["energy_charged"] = round(energy.charged, 6)
        changes["energy_discharged"] = round(energy.discharged, 6)
    return msgspec.structs.replace(state, **changes) if changes else state
