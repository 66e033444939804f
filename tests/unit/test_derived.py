"""Derived values: power, cell summary, energy counters and their persistence."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bmslink.derived import EnergyCounter, EnergyStore, cell_summary, complete
from bmslink.schema import BatteryState


def test_cell_summary_with_one_based_indices() -> None:
    s = cell_summary([3.30, 3.28, 3.35, 3.28])
    assert s is not None
    assert (s.minimum, s.maximum, s.min_index, s.max_index) == (3.28, 3.35, 2, 3)
    assert s.delta == pytest.approx(0.07)
    assert s.average == pytest.approx(3.3025)
    assert cell_summary([]) is None


class FakeClock:
    """A monotonic clock the test moves (s)."""

    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_complete_fills_power_cells_temperatures_and_energy() -> None:
    clock = FakeClock(1000.0)
    counter = EnergyCounter(max_gap=7200, clock=clock)
    first = complete(
        BatteryState(
            id="p",
            ts=1000.0,
            voltage=50.0,
            current=10.0,
            cell_voltages=[3.3, 3.4],
            temperatures=[20.0, 25.0],
        ),
        counter,
    )
    assert first.power == 500.0
    assert (first.cell_min, first.cell_max, first.cell_min_index, first.cell_max_index) == (
        3.3,
        3.4,
        1,
        2,
    )
    assert (first.temperature_min, first.temperature_max) == (20.0, 25.0)
    assert first.energy_charged == 0.0
    clock.now += 3600
    second = complete(BatteryState(id="p", ts=1000.0 + 3600, voltage=50.0, current=10.0), counter)
    assert second.energy_charged == pytest.approx(0.5)  # 500 W for 1 h
    assert second.energy_discharged == 0.0
    assert second.ts == 1000.0 + 3600  # ts stays the reader's Unix time


def test_energy_splits_a_sign_change_at_zero() -> None:
    c = EnergyCounter(max_gap=10_000)
    c.add(1000.0, at=0.0)
    c.add(-1000.0, at=3600.0)  # linear from +1 kW to -1 kW: half an hour each way
    assert c.charged == pytest.approx(0.25)
    assert c.discharged == pytest.approx(0.25)


def test_energy_skips_gaps_and_time_going_backwards() -> None:
    c = EnergyCounter(max_gap=60)
    c.add(1000.0, at=0.0)
    c.add(1000.0, at=600.0)  # 10 min gap: unknown, not integrated
    c.add(1000.0, at=500.0)
    c.add(1000.0, at=636.0)  # 36 s at 1 kW = 0.01 kWh
    assert c.charged == pytest.approx(0.01)
    c.add(float("nan"), at=640.0)  # not a power: ignored, the counter stays a number
    c.add(1000.0, at=672.0)
    assert c.charged == pytest.approx(0.02)


@given(st.lists(st.tuples(st.floats(0.1, 30), st.floats(-5000, 5000)), max_size=50))
def test_energy_counters_are_monotonic(samples: list[tuple[float, float]]) -> None:
    c = EnergyCounter()
    at = 0.0
    previous = (0.0, 0.0)
    for dt, power in samples:
        at += dt
        c.add(power, at=at)
        assert c.charged >= previous[0] and c.discharged >= previous[1]
        previous = (c.charged, c.discharged)


def test_store_survives_a_restart_and_a_corrupt_file(tmp_path: Path) -> None:
    store = EnergyStore(tmp_path, "reader-a", save_interval=60)
    counter = store.counter("p1")
    counter.max_gap = 3600
    counter.add(2000.0, at=0.0)
    counter.add(2000.0, at=1800.0)
    store.save()
    saved = json.loads((tmp_path / "energy-reader-a.json").read_text())
    assert saved["p1"]["charged"] == pytest.approx(1.0)
    again = EnergyStore(tmp_path, "reader-a", save_interval=60).counter("p1")
    assert again.charged == pytest.approx(1.0)
    (tmp_path / "energy-reader-a.json").write_text("{not json")
    assert EnergyStore(tmp_path, "reader-a", save_interval=60).counter("p1").charged == 0.0


def test_seed_only_raises() -> None:
    store = EnergyStore("/nonexistent-dir-for-test", "x", save_interval=60)
    store.seed("p", 5.0, 1.0)
    store.seed("p", 4.0, 2.0)
    c = store.counter("p")
    assert (c.charged, c.discharged) == (5.0, 2.0)
