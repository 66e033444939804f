"""can-inverter-emulator: frame sets, fail-safe, caps and link state on a fake clock, and the
output runner on python-can ``virtual`` buses (in-process).

Rules under test: DESIGN.md "Inverter side"; pylontech-can.md §6, §7.1.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import can
import pytest

from bmslink import config as cfgmod
from bmslink import schema
from bmslink.protocols import pylontech_can as pc
from can_inverter_emulator.app import LINK_TOPIC, MODE_TOPIC, Emulator
from can_inverter_emulator.config import EmulatorConfig, OutputConfig
from can_inverter_emulator.output import BankFeed, Output

WALL0 = 1_700_000_000.0
PERIOD = 1.0
STALE = 10.0


def bank(**changes: Any) -> schema.BankState:
    """A known two-member bank state (the golden input)."""
    values: dict[str, Any] = {
        "id": "bank1",
        "ts": WALL0,
        "voltage": 52.91,
        "current": -80.1,
        "soc": 80.0,
        "soh": 99.0,
        "full_capacity": 148.0,
        "cell_min": 3.288,
        "cell_max": 3.313,
        "temperature_min": 16.85,
        "temperature_max": 20.4,
        "charge_enabled": True,
        "discharge_enabled": True,
        "charge_voltage_limit": 56.3,
        "discharge_voltage_limit": 46.9,
        "charge_current_limit": 150.0,
        "discharge_current_limit": 200.0,
        "members": ["rack-2", "rack-3", "can1"],
        "members_online": ["rack-2", "rack-3"],
        "degraded": True,
        "warnings": ["member_missing"],
    }
    values.update(changes)
    return schema.BankState(**values)


def output(feed: BankFeed, **cfg: Any) -> Output:
    return Output("inv1", OutputConfig(channel="x", **cfg), feed, STALE)


def frames(out: Output, now: float, wall: float) -> dict[int, bytes]:
    return dict(out.cycle(now, wall).frames)


class Clock:
    """A fake clock: monotonic ``now`` and Unix ``wall`` advance together."""

    def __init__(self) -> None:
        self.now = 100.0

    @property
    def wall(self) -> float:
        return WALL0 + (self.now - 100.0)

    def advance(self, seconds: float) -> None:
        self.now += seconds


def test_normal_cycle_golden_bytes() -> None:
    clock = Clock()
    feed = BankFeed()
    feed.put(bank(), clock.now, clock.wall)
    out = output(feed)
    cycle = out.cycle(clock.now, clock.wall)
    assert cycle.mode == "normal" and cycle.bank_ts == WALL0
    assert [(f"{i:03X}", d.hex().upper()) for i, d in cycle.frames] == [
        ("351", "3302DC05D007D501"),  # 56.3 V, 150.0 A, 200.0 A, 46.9 V (DVL always sent)
        ("355", "5000630000000000"),  # SoC 80 %, SoH 99 %
        ("356", "AB14DFFCCC000000"),  # 52.91 V, -80.1 A, 20.4 °C (temperature_max)
        ("359", "0000000002504E00"),  # no bits, 2 online members, "PN"
        ("35C", "C000000000000000"),
        ("35E", "50594C4F4E202020"),
    ]


def test_stale_bank_sends_failsafe_within_stale_after_plus_one_period() -> None:
    clock = Clock()
    feed = BankFeed()
    received = clock.now
    feed.put(bank(), received, clock.wall)
    out = output(feed)
    first_failsafe = None
    for _ in range(30):
        cycle = out.cycle(clock.now, clock.wall)
        assert len(cycle.frames) == 6, "never silence"
        if cycle.mode == "failsafe":
            first_failsafe = clock.now
            break
        clock.advance(PERIOD)
    assert first_failsafe is not None
    assert first_failsafe - received <= STALE + PERIOD
    fs = dict(cycle.frames)
    assert fs[0x351] == bytes(8)  # CVL, CCL, DCL, DVL all 0
    assert fs[0x35C][0] == 0x00  # charge and discharge disabled
    assert fs[0x359][:4] == bytes((0, 0x08, 0, 0x08))  # system error + communication failure
    assert fs[0x35E] == b"PYLON   "


def test_bank_returns_to_normal_frames() -> None:
    clock = Clock()
    feed = BankFeed()
    feed.put(bank(), clock.now, clock.wall)
    out = output(feed)
    clock.advance(STALE + 0.5)
    assert out.cycle(clock.now, clock.wall).mode == "failsafe"
    feed.put(bank(ts=clock.wall, soc=55.0), clock.now, clock.wall)
    cycle = out.cycle(clock.now + PERIOD, clock.wall + PERIOD)
    assert cycle.mode == "normal"
    assert dict(cycle.frames)[0x355][0] == 55


def test_no_state_and_bank_failsafe_send_the_failsafe_set() -> None:
    clock = Clock()
    feed = BankFeed()
    out = output(feed)
    cycle = out.cycle(clock.now, clock.wall)
    assert cycle.mode == "failsafe" and cycle.reason == "no bank state yet"
    feed.put(bank(failsafe=True, limits_source="failsafe"), clock.now, clock.wall)
    assert out.cycle(clock.now, clock.wall).mode == "failsafe"


def test_a_retained_old_state_is_stale_although_just_received() -> None:
    clock = Clock()
    feed = BankFeed()
    feed.put(bank(ts=clock.wall - 3600), clock.now, clock.wall)  # delivered now, read an hour ago
    assert output(feed).cycle(clock.now, clock.wall).mode == "failsafe"


def test_latest_state_wins_and_older_ts_is_ignored() -> None:
    clock = Clock()
    feed = BankFeed()
    feed.put(bank(soc=10.0), clock.now, clock.wall)
    feed.put(bank(ts=WALL0 + 0.5, soc=20.0), clock.now, clock.wall)
    feed.put(bank(ts=WALL0 - 5, soc=30.0), clock.now, clock.wall)  # out of order: ignored
    assert frames(output(feed), clock.now, clock.wall)[0x355][0] == 20


def test_heartbeat_stops_link_down_after_5_s() -> None:
    clock = Clock()
    out = output(BankFeed())
    assert out.link_change(clock.now) is False  # nothing heard yet: down
    assert out.on_frame(0x305, False, clock.now)
    assert out.link_change(clock.now) is True
    clock.advance(4.9)
    assert out.link_up(clock.now) and out.link_change(clock.now) is None
    clock.advance(0.2)
    assert out.link_change(clock.now) is False
    assert not out.on_frame(0x351, False, clock.now)
    assert out.on_frame(0x305, True, clock.now)  # 29-bit heartbeat counts too (doc §3.7)
    assert out.link_change(clock.now) is True


def test_two_outputs_with_different_caps_get_different_limits() -> None:
    clock = Clock()
    feed = BankFeed()
    feed.put(bank(), clock.now, clock.wall)
    deye = output(feed, current_scale=0.5, charge_current_max=60.0)
    sma = output(feed, current_scale=0.5, discharge_current_max=80.0, profile="sma")
    a = pc.decode_frame(0x351, frames(deye, clock.now, clock.wall)[0x351])
    b = pc.decode_frame(0x351, frames(sma, clock.now, clock.wall)[0x351])
    assert isinstance(a, pc.Limits) and isinstance(b, pc.Limits)
    assert (a.charge_current_limit, a.discharge_current_limit) == (60.0, 100.0)
    assert (b.charge_current_limit, b.discharge_current_limit) == (75.0, 80.0)
    assert a.charge_voltage_limit == b.charge_voltage_limit == 56.3


@pytest.mark.parametrize(
    ("strategy", "ccl", "cvl"),
    [("zero", 0.0, 56.3), ("min_current", 0.1, 56.3), ("cvl_pack_voltage", 0.0, 52.9)],
)
def test_charge_enable_off_zeroes_that_limit(strategy: str, ccl: float, cvl: float) -> None:
    clock = Clock()
    feed = BankFeed()
    feed.put(bank(charge_enabled=False), clock.now, clock.wall)
    sent = frames(output(feed, stop_strategy=strategy), clock.now, clock.wall)
    limits = pc.decode_frame(0x351, sent[0x351])
    flags = pc.decode_frame(0x35C, sent[0x35C])
    assert isinstance(limits, pc.Limits) and isinstance(flags, pc.RequestFlags)
    assert limits.charge_current_limit == ccl
    assert limits.discharge_current_limit == 200.0
    assert limits.charge_voltage_limit == cvl
    assert (flags.charge_enable, flags.discharge_enable) == (False, True)


def test_discharge_enable_off_zeroes_dcl() -> None:
    clock = Clock()
    feed = BankFeed()
    feed.put(bank(discharge_enabled=False), clock.now, clock.wall)
    limits = pc.decode_frame(0x351, frames(output(feed), clock.now, clock.wall)[0x351])
    assert isinstance(limits, pc.Limits)
    assert (limits.charge_current_limit, limits.discharge_current_limit) == (150.0, 0.0)


def test_profile_options_reach_the_frames() -> None:
    clock = Clock()
    feed = BankFeed()
    feed.put(bank(alarms=["cell_overvoltage@rack-2"]), clock.now, clock.wall)
    out = output(feed, profile="pylon_v2", voltage_scale=0.1, invert_current=True, module_count=4)
    sent = frames(out, clock.now, clock.wall)
    assert sorted(sent) == [0x351, 0x355, 0x356, 0x359, 0x35A, 0x35C, 0x35E, 0x372, 0x373, 0x379]
    meas = pc.decode_frame(0x356, sent[0x356], voltage_scale=0.1)
    assert isinstance(meas, pc.Measurements)
    assert (meas.voltage, meas.current) == (pytest.approx(52.9), pytest.approx(80.1))
    prot = pc.decode_frame(0x359, sent[0x359])
    assert isinstance(prot, pc.ProtectionAlarms)
    assert prot.module_count == 4 and prot.alarms == ("cell_overvoltage",)
    counts = pc.decode_frame(0x372, sent[0x372])
    assert counts == pc.ModuleCounts(4, 0, 0, 1)


# --- config ---------------------------------------------------------------------------------


def test_config_errors_name_the_key(tmp_path: Path) -> None:
    path = tmp_path / "site.toml"
    path.write_text(
        '[inverters.e]\nbank = "bank1"\n[inverters.e.outputs.inv1]\nchannel = "can0"\nprofil = 1\n'
    )
    with pytest.raises(cfgmod.ConfigError, match=r"inverters\.e\.outputs\.inv1.*profil|profil"):
        cfgmod.load("inverters", EmulatorConfig, instance="e", path=path, env={})
    path.write_text(
        '[inverters.e]\nbank = "bank1"\n[inverters.e.outputs.inv1]\nchannel = "c"\n'
        "voltage_scale = 0.5\n"
    )
    with pytest.raises(cfgmod.ConfigError, match="voltage_scale"):
        cfgmod.load("inverters", EmulatorConfig, instance="e", path=path, env={})
    path.write_text('[inverters.e]\nbank = "bank1"\noutputs = {}\n')
    with pytest.raises(cfgmod.ConfigError, match="outputs"):
        cfgmod.load("inverters", EmulatorConfig, instance="e", path=path, env={})


# --- the runner on virtual buses (in-process) -------------------------------------------------


def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


class Inverter:
    """A virtual-bus inverter: records frames, sends 0x305 while ``beating``."""

    def __init__(self, channel: str) -> None:
        self.bus = can.Bus(interface="virtual", channel=channel)
        self.received: list[can.Message] = []
        self.beating = threading.Event()
        self.beating.set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        next_beat = 0.0
        while not self._stop.is_set():
            if self.beating.is_set() and time.monotonic() >= next_beat:
                self.bus.send(
                    can.Message(arbitration_id=0x305, data=bytes(8), is_extended_id=False)
                )
                next_beat = time.monotonic() + 0.05
            msg = self.bus.recv(0.01)
            if msg is not None:
                self.received.append(msg)

    def latest(self, can_id: int) -> bytes | None:
        for msg in reversed(self.received):
            if msg.arbitration_id == can_id:
                return bytes(msg.data)
        return None

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.bus.shutdown()


@pytest.fixture
def emulator_setup(
    request: pytest.FixtureRequest,
) -> Iterator[tuple[Emulator, dict[str, Inverter], list[tuple[str, str]]]]:
    tag = request.node.name
    outputs = {
        "deye": OutputConfig(
            interface="virtual",
            channel=f"{tag}-a",
            period=0.05,
            charge_current_max=60.0,
            heartbeat_timeout=0.3,
        ),
        "sma": OutputConfig(
            interface="virtual",
            channel=f"{tag}-b",
            period=0.05,
            current_scale=0.5,
            profile="sma",
            heartbeat_timeout=0.3,
        ),
    }
    config = EmulatorConfig(bank="bank1", stale_after=0.5, outputs=outputs)
    published: list[tuple[str, str]] = []
    stop = threading.Event()
    inverters = {"deye": Inverter(f"{tag}-a"), "sma": Inverter(f"{tag}-b")}
    emulator = Emulator(config, "test", lambda t, v: published.append((t, v)), stop)
    emulator.start()
    try:
        yield emulator, inverters, published
    finally:
        stop.set()
        emulator.join()
        for inv in inverters.values():
            inv.close()


def test_runner_sends_bank_frames_and_follows_the_heartbeat(
    emulator_setup: tuple[Emulator, dict[str, Inverter], list[tuple[str, str]]],
) -> None:
    emulator, inverters, published = emulator_setup
    link = LINK_TOPIC.format(instance="test", output="deye")
    mode = MODE_TOPIC.format(instance="test", output="deye")
    # before any state: the fail-safe set, never silence
    wait_until(lambda: inverters["deye"].latest(0x35C) is not None)
    assert inverters["deye"].latest(0x351) == bytes(8)
    assert (mode, "failsafe") in published
    wait_until(lambda: (link, "up") in published)

    emulator.on_state("bms/bank1/state", schema.encode(bank(ts=time.time())))
    wait_until(lambda: inverters["deye"].latest(0x351) not in (None, bytes(8)))
    deye = pc.decode_frame(0x351, inverters["deye"].latest(0x351) or b"")
    wait_until(lambda: inverters["sma"].latest(0x351) not in (None, bytes(8)))
    sma = pc.decode_frame(0x351, inverters["sma"].latest(0x351) or b"")
    assert isinstance(deye, pc.Limits) and isinstance(sma, pc.Limits)
    # deye has no current_scale: it gets what sma (0.5) leaves of the bank, capped at 60 A
    assert (deye.charge_current_limit, deye.discharge_current_limit) == (60.0, 100.0)
    assert (sma.charge_current_limit, sma.discharge_current_limit) == (75.0, 100.0)
    assert all(len(m.data) == 8 for m in inverters["deye"].received if m.arbitration_id != 0x305)
    assert (mode, "normal") in published

    def last(topic: str) -> str | None:
        return next((v for t, v in reversed(published) if t == topic), None)

    inverters["deye"].beating.clear()  # the inverter stops its 0x305
    wait_until(lambda: last(link) == "down")
    assert last(LINK_TOPIC.format(instance="test", output="sma")) == "up"

    # no new bank state: after stale_after (0.5 s) the fail-safe set, still sent every period
    wait_until(lambda: last(mode) == "failsafe")
    mark = len(inverters["deye"].received)
    wait_until(lambda: inverters["deye"].latest(0x351) == bytes(8))
    wait_until(lambda: len(inverters["deye"].received) > mark + 12)


def test_bad_payloads_are_refused_and_counted(
    emulator_setup: tuple[Emulator, dict[str, Inverter], list[tuple[str, str]]],
) -> None:
    emulator, _inverters, _published = emulator_setup
    emulator.on_state("bms/bank1/state", b"{not json")
    emulator.on_state("bms/bank1/state", schema.encode(bank(id="bank2")))
    battery = schema.BatteryState(id="bank1", ts=time.time(), voltage=50.0)
    emulator.on_state("bms/bank1/state", schema.encode(battery))
    emulator.on_state("bms/bank1/state", b"")
    assert emulator.rejected == {"invalid": 2, "wrong_id": 1}
    assert emulator.feed.latest is None


def test_future_and_older_states_are_refused_and_counted(
    emulator_setup: tuple[Emulator, dict[str, Inverter], list[tuple[str, str]]],
) -> None:
    emulator, _inverters, _published = emulator_setup
    now = time.time()
    emulator.on_state("bms/bank1/state", schema.encode(bank(ts=now + 15)))  # 15 s ahead
    assert emulator.feed.latest is None
    emulator.on_state("bms/bank1/state", schema.encode(bank(ts=now, soc=50.0)))
    emulator.on_state("bms/bank1/state", schema.encode(bank(ts=now - 1, soc=40.0)))
    assert emulator.rejected == {"future": 1, "older": 1}
    snap = emulator.feed.latest
    assert snap is not None and snap.state.soc == 50.0
    assert emulator.stats()["rejected"] == {"future": 1, "older": 1}


def test_sending_is_the_emulators_liveness(
    emulator_setup: tuple[Emulator, dict[str, Inverter], list[tuple[str, str]]],
) -> None:
    emulator, inverters, _published = emulator_setup
    wait_until(emulator.sending)
    # frames really went out (the inverter's receiver thread may still be catching up)
    wait_until(lambda: inverters["deye"].latest(0x351) is not None)
    runner = emulator.runners["sma"]
    runner.stop.set()  # every output stops (shared stop event) ...
    emulator.join()
    runner.last_cycle_at = time.monotonic() - 60  # ... and this one's last cycle is old
    assert not emulator.sending()
