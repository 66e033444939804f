"""Energy counters that never go backwards: monotonic dt, atomic saves, stale temp files,
unwritable state directories, seeding from retained states, ``storage.save_interval``."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

import pytest

from bmslink import config
from bmslink.derived import complete
from bmslink.energy import EnergyCounter, EnergyStore, published_counters
from bmslink.schema import BatteryState


class FakeClock:
    """A monotonic clock the test moves (s)."""

    def __init__(self, now: float = 100.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def state(ts: float, power: float) -> BatteryState:
    return BatteryState(id="p", ts=ts, power=power)


def test_a_wall_clock_step_neither_stops_nor_inflates_the_integration() -> None:
    mono = FakeClock()
    counter = EnergyCounter(clock=mono)
    wall = 1_700_000_000.0
    published = []
    # 1 kW for 10 samples 10 s apart (monotonic); the wall clock jumps back 1 h after the
    # third sample and forward 1 day after the sixth
    for i in range(10):
        if i == 3:
            wall -= 3600
        if i == 6:
            wall += 86400
        out = complete(state(wall, 1000.0), counter)
        assert out.ts == wall  # ts stays the Unix time the reader gave
        published.append(out.energy_charged)
        mono.now += 10
        wall += 10
    # 9 intervals x 10 s x 1 kW = 90 kJ = 0.025 kWh: not stopped by the step back, not
    # inflated by the step forward (a day at 1 kW would be 24 kWh, or a gap)
    assert counter.charged == pytest.approx(0.025)
    assert published == sorted(published)


def test_a_monotonic_gap_is_not_integrated() -> None:
    mono = FakeClock()
    counter = EnergyCounter(max_gap=120, clock=mono)
    counter.add(1000.0)
    mono.now += 121
    counter.add(1000.0)
    assert counter.charged == 0.0
    mono.now += 36
    counter.add(1000.0)
    assert counter.charged == pytest.approx(0.01)


def test_saves_follow_the_monotonic_save_interval(tmp_path: Path) -> None:
    mono = FakeClock()
    store = EnergyStore(tmp_path, "r", save_interval=10, clock=mono)
    counter = store.counter("p")
    counter.add(3600.0)
    mono.now += 1
    counter.add(3600.0)  # 1 Wh
    store.maybe_save()
    assert not store.path.exists() and store.saves == 0
    mono.now += 9
    store.maybe_save()
    assert store.saves == 1
    assert json.loads(store.path.read_text()) == {
        "p": {"charged": pytest.approx(0.001), "discharged": 0.0}
    }
    assert sorted(os.listdir(tmp_path)) == ["energy-r.json"]  # no temp file left behind


def test_stale_temp_files_are_removed_at_start(tmp_path: Path) -> None:
    (tmp_path / "energy-r.json").write_text('{"p": {"charged": 2.5, "discharged": 1.0}}')
    mine = tmp_path / ".energy-r.json.k2j4h1x9.tmp"
    legacy = tmp_path / ".energy-ab12cd34"
    other = tmp_path / ".energy-other.json.k2j4h1x9.tmp"  # another instance's save in progress
    for path in (mine, legacy, other):
        path.write_text('{"p": {"charged": 0.1')  # torn by a crash
    store = EnergyStore(tmp_path, "r", save_interval=10)
    assert not mine.exists() and not legacy.exists()
    assert other.exists()
    assert store.counter("p").charged == 2.5


def test_an_unwritable_state_dir_is_logged_once_and_never_lowers_a_counter(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    mono = FakeClock()
    store = EnergyStore(blocker / "state", "r", save_interval=1, clock=mono)
    store.seed("p", 5.0, 2.0)
    counter = store.counter("p")
    caplog.set_level(logging.INFO, logger="bmslink.energy")
    for _ in range(5):
        counter.add(1800.0)
        mono.now += 2
        store.maybe_save()
    assert store.saves == 0 and store.save_failures == 5
    assert counter.charged == pytest.approx(5.0 + 4 * 1800 * 2 / 3600 / 1000)
    assert counter.discharged == 2.0
    warnings = [r for r in caplog.records if "cannot save" in r.getMessage()]
    assert len(warnings) == 1 and warnings[0].levelno == logging.WARNING
    # the directory becomes usable: saving works again (logged), the value is the live one
    blocker.unlink()
    mono.now += 1
    store.maybe_save()
    assert store.saves == 1
    assert json.loads(store.path.read_text())["p"]["charged"] == pytest.approx(counter.charged)
    assert any("saved to" in r.getMessage() and "again" in r.getMessage() for r in caplog.records)


class FakeBroker:
    """A :class:`~bmslink.energy.RetainedReader` with fixed retained states."""

    def __init__(self, retained: dict[str, bytes]) -> None:
        self.retained = retained
        self.asked: list[list[str]] = []

    def read_retained(self, topics: Iterable[str], timeout: float) -> dict[str, bytes]:
        wanted = list(topics)
        self.asked.append(wanted)
        return {t: p for t, p in self.retained.items() if t in wanted}


def test_the_larger_of_file_and_retained_state_wins(tmp_path: Path) -> None:
    (tmp_path / "energy-r.json").write_text(
        json.dumps(
            {"a": {"charged": 3.0, "discharged": 1.0}, "old": {"charged": 1, "discharged": 1}}
        )
    )
    broker = FakeBroker(
        {
            "bms/a/state": b'{"id": "a", "energy_charged": 2.0, "energy_discharged": 1.5}',
            "bms/b/state": b'{"id": "b", "energy_charged": 7.25, "energy_discharged": 0.5}',
            "bms/late/state": b'{"id": "late", "energy_charged": 9.0, "energy_discharged": 4.0}',
            "bms/old/state": b"not json",
        }
    )
    store = EnergyStore(tmp_path, "r", save_interval=10)
    assert store.seed_from_broker(broker, ["a", "b"]) == 2
    assert broker.asked == [["bms/a/state", "bms/b/state", "bms/old/state"]]
    a, b = store.counter("a"), store.counter("b")
    assert (a.charged, a.discharged) == (3.0, 1.5)
    assert (b.charged, b.discharged) == (7.25, 0.5)
    assert (store.counter("old").charged, store.counter("old").discharged) == (1, 1)
    assert len(broker.asked) == 1  # devices read at start are not read again
    late = store.counter("late")  # first seen after the start (e.g. a stacked pack)
    assert broker.asked[-1] == ["bms/late/state"]
    assert (late.charged, late.discharged) == (9.0, 4.0)


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (b'{"energy_charged": 1.5, "energy_discharged": 0.25}', (1.5, 0.25)),
        (b'{"id": "x", "voltage": 50}', (0.0, 0.0)),
        (b'{"energy_charged": -3, "energy_discharged": null}', (0.0, 0.0)),
        (b'{"energy_charged": 1e400}', None),  # not a finite number: unusable
        (b'{"energy_charged": "lots"}', None),
        (b"\xff\xfe", None),
        (b"[1, 2]", None),
    ],
)
def test_published_counters(payload: bytes, expected: tuple[float, float] | None) -> None:
    assert published_counters(payload) == expected


@pytest.mark.parametrize("value", ["-5", "0", "0.5", "nan", "inf"])
def test_save_interval_below_one_second_is_refused(tmp_path: Path, value: str) -> None:
    path = tmp_path / "site.toml"
    path.write_text(f"[storage]\nsave_interval = {value}\n")
    with pytest.raises(config.ConfigError) as err:
        config.load("can_reader", config.LogConfig, instance=None, path=path, env={})
    assert "storage.save_interval" in str(err.value)


def test_save_interval_default_and_minimum(tmp_path: Path) -> None:
    assert config.StorageConfig().save_interval == 10.0
    path = tmp_path / "site.toml"
    path.write_text("[storage]\nsave_interval = 1\n")
    loaded = config.load("can_reader", config.LogConfig, instance=None, path=path, env={})
    assert loaded.storage.save_interval == 1.0


def test_a_reader_exits_2_naming_storage_save_interval(tmp_path: Path) -> None:
    path = tmp_path / "site.toml"
    path.write_text('[storage]\nsave_interval = -5\n[pylontech_rs485.r]\nport = "/dev/x"\n')
    proc = subprocess.run(
        [sys.executable, "-m", "pylontech_rs485_reader", "--config", str(path), "--instance", "r"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 2
    assert "storage.save_interval" in proc.stderr
