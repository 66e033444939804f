"""The bank-aggregator's service layer without a broker: handlers, overrides, the loop, config."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from bank_aggregator.app import Aggregator
from bank_aggregator.config import BankConfig
from bmslink import schema
from bmslink.schema import BankState


class FakePublisher:
    """Records what the aggregator publishes (same methods as DevicePublisher)."""

    def __init__(self) -> None:
        self.states: list[BankState] = []
        self.infos: list[schema.BatteryInfo] = []
        self.availabilities: list[tuple[str, bool]] = []
        self.results: list[tuple[str, schema.SetResult]] = []

    def state(self, state: BankState) -> None:
        self.states.append(state)

    def info(self, info: schema.BatteryInfo) -> None:
        self.infos.append(info)

    def availability(self, device_id: str, online: bool) -> None:
        self.availabilities.append((device_id, online))

    def result(self, device_id: str, result: schema.SetResult) -> None:
        self.results.append((device_id, result))


class Clock:
    def __init__(self) -> None:
        self.wall = 1_700_000_000.0
        self.mono = 1000.0

    def advance(self, seconds: float) -> None:
        self.wall += seconds
        self.mono += seconds


def make(bank: BankConfig | None = None) -> tuple[Aggregator, FakePublisher, Clock]:
    clock = Clock()
    pub = FakePublisher()
    agg = Aggregator(
        "bank",
        bank or BankConfig(members=["a", "b"]),
        pub,  # type: ignore[arg-type]
        clock=lambda: clock.wall,
        monotonic=lambda: clock.mono,
    )
    return agg, pub, clock


def state_json(member_id: str, ts: float, **fields: object) -> bytes:
    body = {
        "kind": "battery",
        "id": member_id,
        "ts": ts,
        "voltage": 50.0,
        "current": 5.0,
        "soc": 60.0,
        "full_capacity": 50.0,
        "charge_current_limit": 25.0,
        "discharge_current_limit": 25.0,
        "charge_voltage_limit": 56.0,
        "discharge_voltage_limit": 46.0,
        **fields,
    }
    return json.dumps(body).encode()


def test_members_in_bank_out_and_a_member_dropping() -> None:
    agg, pub, clock = make()
    agg.on_state("bms/a/state", state_json("a", clock.wall))
    agg.on_state("bms/b/state", state_json("b", clock.wall, soc=80.0))
    agg.on_availability("bms/a/availability", b"online")
    state = agg.publish()
    assert state.members_online == ["a", "b"] and state.soc == 70.0 and state.current == 10.0
    assert pub.availabilities == [("bank", True)]
    assert pub.infos[0].kind == "bank" and pub.infos[0].members == ["a", "b"]
    agg.on_availability("bms/b/availability", b"offline")
    dropped = agg.publish()
    assert dropped.members_online == ["a"] and dropped.degraded and dropped.soc == 60.0
    clock.advance(11)  # a goes stale too
    lost = agg.publish()
    assert lost.failsafe and pub.availabilities[-1] == ("bank", False)
    agg.on_state("bms/a/state", state_json("a", clock.wall))
    back = agg.publish()
    assert back.members_online == ["a"] and pub.availabilities[-1] == ("bank", True)
    assert len(pub.infos) == 1  # the member list did not change


def test_bad_member_payloads_are_counted_not_fatal() -> None:
    agg, _pub, clock = make()
    agg.on_state("bms/a/state", b"{not json")
    agg.on_state("bms/a/state", state_json("a", clock.wall, soc=170))
    agg.on_state("bms/a/state", state_json("zz", clock.wall))
    agg.on_availability("bms/a/availability", b"maybe")
    agg.on_info("bms/a/info", b'{"id": 5}')
    assert dict(agg.refused) == {
        "bad_state": 2,
        "id_mismatch": 1,
        "bad_availability": 1,
        "bad_info": 1,
    }
    bank_state = BankState(id="a", ts=clock.wall)  # a bank's state is never a member
    agg.on_state("bms/a/state", schema.encode(bank_state))
    agg.on_state("bms/x/state", state_json("x", clock.wall))  # not configured
    assert agg.publish().failsafe


def test_a_bank_without_a_member_list_takes_every_battery_but_itself() -> None:
    agg, pub, clock = make(BankConfig())
    for member_id in ("p1", "p2", "bank"):
        agg.on_state(f"bms/{member_id}/state", state_json(member_id, clock.wall))
    agg.on_info(
        "bms/p1/info",
        schema.encode(schema.BatteryInfo(id="p1", cell_count=15, design_capacity=100)),
    )
    state = agg.publish()
    assert state.members == ["p1", "p2"] and state.design_capacity == 100.0
    agg.on_state("bms/p3/state", state_json("p3", clock.wall))
    agg.on_state("bms/p2/state", b"")  # retained state cleared: p2 is gone for good
    assert agg.publish().members == ["p1", "p3"]
    assert [i.members for i in pub.infos] == [["p1", "p2"], ["p1", "p3"]]


@pytest.mark.parametrize(
    ("payload", "error"),
    [
        (b'{"charge_current_limit": "ten"}', "Expected `float | null`"),
        (b'{"charge_current_limit": -1}', "Expected `float` >= 0"),
        (b'{"charge_current_limit": NaN}', "malformed"),
        (b'{"charge_current_limit": 1e999}', "out of range"),
        (b'{"charge_curent_limit": 10}', "unknown field `charge_curent_limit`"),
        (b'{"charge_current_limit": 10, "ttl": 7200}', "<= 3600"),
        (b'{"charge_current_limit": 10, "ttl": 0}', "> 0"),
        (b"", "truncated"),
        (b"[]", "Expected `object`"),
    ],
)
def test_bad_overrides_are_rejected_with_a_reason(payload: bytes, error: str) -> None:
    agg, pub, clock = make()
    agg.on_state("bms/a/state", state_json("a", clock.wall))
    result = agg.command(payload)
    assert not result.ok and result.error is not None and error.lower() in result.error.lower()
    assert pub.results == [("bank", result)]
    assert agg.override is None and agg.publish().limits_source == "bms"


def test_override_ttl_above_the_configured_maximum() -> None:
    agg, _pub, _clock = make(BankConfig(members=["a"], max_override_ttl=300))
    result = agg.command(b'{"charge_current_limit": 10, "ttl": 301}')
    assert not result.ok and "max_override_ttl" in (result.error or "")


def test_override_lowers_then_expires_and_an_empty_command_clears() -> None:
    agg, pub, clock = make()
    agg.on_state("bms/a/state", state_json("a", clock.wall))
    agg.on_state("bms/b/state", state_json("b", clock.wall))
    assert agg.publish().charge_current_limit == 45.0  # 2 × 25 A × 0.9 margin
    ok = agg.command(b'{"charge_current_limit": 10, "discharge_current_limit": 500, "ttl": 30}')
    assert ok.ok and ok.expires == clock.wall + 30
    held = agg.publish()
    assert (held.charge_current_limit, held.discharge_current_limit) == (10.0, 45.0)
    assert held.limits_source == "override" and held.override_expires == clock.wall + 30
    clock.advance(29.9)
    agg.on_state("bms/a/state", state_json("a", clock.wall))
    agg.on_state("bms/b/state", state_json("b", clock.wall))
    assert agg.publish().charge_current_limit == 10.0
    clock.advance(0.2)
    after = agg.publish()
    assert after.charge_current_limit == 45.0 and after.override_expires is None
    assert after.limits_source == "bms" and agg.override is None
    agg.command(b'{"charge_voltage_limit": 50.0, "ttl": 60}')
    assert agg.publish().charge_voltage_limit == 50.0
    cleared = agg.command(b"{}")
    assert cleared.ok and cleared.expires is None and agg.override is None
    assert [r.ok for _, r in pub.results] == [True, True, True]


def test_bank_energy_counters_never_go_down() -> None:
    agg, _pub, clock = make()
    agg.on_state("bms/a/state", state_json("a", clock.wall, energy_charged=2.0))
    agg.on_state("bms/b/state", state_json("b", clock.wall, energy_charged=3.0))
    assert agg.publish().energy_charged == 5.0
    agg.on_state("bms/b/state", b"")  # b's retained state removed
    assert agg.publish().energy_charged == 5.0
    agg.on_state("bms/a/state", state_json("a", clock.wall, energy_charged=2.5))
    assert agg.publish().energy_charged == 5.0


def test_a_flood_of_updates_from_64_packs() -> None:
    ids = [f"p{i}" for i in range(64)]
    bank = BankConfig(members=ids, min_interval=0.02, period=1.0)
    pub = FakePublisher()
    agg = Aggregator("bank", bank, pub)  # type: ignore[arg-type]
    stop = threading.Event()
    loop = threading.Thread(target=agg.run, args=(stop,))
    loop.start()
    started = time.monotonic()
    try:
        for round_ in range(30):
            for member_id in ids:
                agg.on_state(
                    f"bms/{member_id}/state",
                    state_json(member_id, time.time(), soc=float(round_), current=1.0),
                )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            last = pub.states[-1] if pub.states else None
            if last is not None and last.soc == 29.0 and len(last.members_online) == 64:
                break
            time.sleep(0.01)
    finally:
        stop.set()
        agg.wake()
        loop.join(5)
    elapsed = time.monotonic() - started
    last = pub.states[-1]
    assert last.soc == 29.0 and last.current == 64.0 and last.members_online == ids
    assert last.charge_current_limit == 64 * 25.0 * 0.9
    # updates are coalesced: never more than one bank state per min_interval
    assert len(pub.states) <= elapsed / bank.min_interval + 2
    stamps = [s.ts for s in pub.states]
    assert all(b - a >= bank.min_interval * 0.9 for a, b in itertools.pairwise(stamps))


def test_loop_publishes_promptly_after_an_update_and_at_the_period() -> None:
    bank = BankConfig(members=["a"], period=0.3, min_interval=0.0)
    pub = FakePublisher()
    agg = Aggregator("bank", bank, pub)  # type: ignore[arg-type]
    stop = threading.Event()
    loop = threading.Thread(target=agg.run, args=(stop,))
    loop.start()
    try:
        deadline = time.monotonic() + 5
        while len(pub.states) < 3 and time.monotonic() < deadline:  # periodic, with no member
            time.sleep(0.01)
        assert len(pub.states) >= 3 and all(s.failsafe for s in pub.states)
        agg.on_state("bms/a/state", state_json("a", time.time(), soc=42.0))
        while time.monotonic() < deadline and pub.states[-1].soc != 42.0:
            time.sleep(0.005)
        assert pub.states[-1].soc == 42.0
    finally:
        stop.set()
        agg.wake()
        loop.join(5)
    assert not loop.is_alive()


def main_argv(site: Path, instance: str = "main") -> list[str]:
    return [sys.executable, "-m", "bank_aggregator", "--config", str(site), "--instance", instance]


def run_main(tmp_path: Path, body: str, instance: str = "main") -> subprocess.CompletedProcess[str]:
    site = tmp_path / "site.toml"
    site.write_text(body)
    return subprocess.run(
        main_argv(site, instance),
        capture_output=True,
        text=True,
        timeout=30,
    )


@pytest.mark.parametrize(
    ("body", "key"),
    [
        ("[banks.main]\nmembrs = ['a']\n", "membrs"),
        ("[banks.main]\ntaper_start_cell_voltage = 3.6\n", "banks.main.taper_end_cell_voltage"),
        ("[banks.main]\nstale_after = -1\n", "banks.main.stale_after"),
        ("[banks.main]\nmembers = ['Not A Slug']\n", "banks.main.members"),
        ("[banks.main.packs.a]\ncapacity = 0\n", "banks.main.packs[...].capacity"),
        ("[banks.main]\nmin_interval = 5\n", "banks.main.min_interval"),
        ("[banks.main]\ncurrent_share_margin = 1.5\n", "banks.main.current_share_margin"),
        # 15S and 16S LFP cannot share one bus bar: both keys are named
        (
            "[banks.main.packs.a]\ncell_count = 15\n[banks.main.packs.b]\ncell_count = 16\n",
            "banks.main.packs.a` and `banks.main.packs.b",
        ),
        (
            "[banks.main]\nchemistry = 'lfp'\n[banks.main.packs.a]\ncell_count = 13\n"
            "chemistry = 'nmc'\n[banks.main.packs.b]\ncell_count = 15\n",
            "banks.main.packs.a` and `banks.main.packs.b",
        ),
    ],
)
def test_a_bad_config_exits_2_naming_the_key(tmp_path: Path, body: str, key: str) -> None:
    done = run_main(tmp_path, body)
    assert done.returncode == 2, done.stderr
    assert key in done.stderr


def test_print_device_ids(tmp_path: Path) -> None:
    site = tmp_path / "site.toml"
    site.write_text('[banks.main]\nid = "house"\n')
    out = subprocess.run(
        [*main_argv(site), "--print-device-ids"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 0 and json.loads(out.stdout) == ["house"]


def test_watch_shows_the_bank_view() -> None:
    from rich.console import Console

    from bmslink.cli.watch import Board, render_banks, view

    agg, _pub, clock = make()
    agg.on_state("bms/a/state", state_json("a", clock.wall))
    agg.command(b'{"charge_current_limit": 5, "ttl": 60}')
    board = Board()
    board.handle("bms/a/state", state_json("a", clock.wall))
    assert render_banks(board) is None
    board.handle("bms/bank/state", schema.encode(agg.publish()))
    console = Console(width=200, record=True)
    console.print(view(board, "t"))
    text = console.export_text()
    row = [line for line in text.splitlines() if line.startswith("│ bank ")][-1]  # banks table
    assert "1/2" in row and "degraded" in row and "5.0 (override)" in row
    assert row.rstrip("│ ").endswith("│ b")  # the missing member


def test_a_future_state_is_refused_counted_and_never_blocks() -> None:
    agg, _pub, clock = make()
    agg.on_state("bms/a/state", state_json("a", clock.wall + 15))
    assert agg.refused["future"] == 1 and "a" not in agg.members
    agg.on_state("bms/a/state", state_json("a", clock.wall + 4))  # within the 5 s tolerance
    assert "a" in agg.members
    agg.on_state("bms/a/state", state_json("a", clock.wall))
    assert agg.publish().members_online == ["a"]


def test_a_backward_wall_clock_step_does_not_revive_a_dead_member() -> None:
    agg, _pub, clock = make()
    agg.on_state("bms/a/state", state_json("a", clock.wall))
    agg.on_state("bms/b/state", state_json("b", clock.wall))
    clock.advance(30)  # both silent for 30 s: not counted
    assert agg.publish().failsafe
    clock.wall -= 3600  # the wall clock jumps back an hour; arrival age stays 30 s
    assert agg.publish().failsafe


def test_a_member_silent_for_3_poll_intervals_leaves_the_share_set() -> None:
    bank = BankConfig(members=["a", "b"])
    agg, _pub, clock = make(bank)
    for _ in range(4):  # both poll every 0.5 s
        agg.on_state("bms/a/state", state_json("a", clock.wall, full_capacity=50.0))
        agg.on_state(
            "bms/b/state",
            state_json("b", clock.wall, full_capacity=150.0, charge_current_limit=150.0),
        )
        clock.advance(0.5)
    assert agg.members["b"].interval == pytest.approx(0.5)
    # a: 25 A for a 1/4 share → 100 A; b: 150 A for 3/4 → 200 A; × 0.9
    assert agg.publish().charge_current_limit == 90.0
    for _ in range(8):  # b goes silent; a carries on
        clock.advance(0.5)
        agg.on_state("bms/a/state", state_json("a", clock.wall, full_capacity=50.0))
    # b silent 4.5 s > max(3 s, 3 × 0.5 s): if b is gone, a alone may take only 25 A
    silent = agg.publish()
    assert silent.members_online == ["a", "b"] and silent.charge_current_limit == 25.0
