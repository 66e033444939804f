"""The whole stack under faults (issue 10), on ONE stack for the module (tests run in order and
each leaves the stack healthy): bad input on every subscribed topic, bank members dropping and
returning, broker restarts with and without persistence (reconnect, re-publish, QoS 1 queue),
SIGTERM/SIGKILL of every service, and finally the simulated inverter's record checked frame by
frame (never stale, never over the limits).

Per-reader faults (garbage, slow, silent devices, pty/TCP loss, BLE silence) are covered by
tests/integration (test_pylontech_reader_faults, test_am2_reader_e2e, test_daly_serial,
test_daly_ble, test_can_e2e); here their effect on the bank and the inverter is checked.
"""

from __future__ import annotations

import itertools
import json
import signal
import time
from collections.abc import Iterator

import pytest

from tests.faults.stack import (
    INTERVAL,
    FaultStack,
    discovery_devices,
    fault_stack,
    publish,
    retained,
)
from tools.stack import FrameCheck, check_frames, cycle_values, read_cycles, stats_lines

pytestmark = [pytest.mark.mqtt, pytest.mark.timeout(240)]

#: The processes of the 8-pack stack (tools.stack.start_load), in start order.
SERVICES = [
    "inverter-emulator",
    "hass-discovery",
    "bank-aggregator",
    "reader-pyl0",
    "reader-pace0",
    "reader-daly0",
    "reader-can0",
]

#: Every service (re)connects within this many seconds of the broker's return (issue 10).
RECONNECT_S = 5.0


@pytest.fixture(scope="module")
def fs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaultStack]:
    """The module's stack, healthy."""
    with fault_stack(tmp_path_factory.mktemp("stack")) as stack:
        yield stack


def _bank(fs: FaultStack) -> dict[str, object]:
    return json.loads(fs.rec.latest["bms/bank1/state"])


def test_stack_is_complete_and_announced_once(fs: FaultStack) -> None:
    assert [p.name for p in fs.stack.services()] == SERVICES
    fs.wait(
        lambda: sorted(_bank(fs).get("members_online") or []) == sorted(fs.load.pack_ids),
        30,
        "every pack counted in the bank",
    )
    _wait_announced(fs)
    devices = discovery_devices(retained(fs.port, ("homeassistant/#",)))
    assert not {d: t for d, t in devices.items() if len(t) > 1}
    assert {_device(d) for d in devices} == {*fs.load.pack_ids, "bank1", "inverter_soak_inv1"}


def _device(ident: str) -> str:
    """``bmslink_pyl0-2`` → ``pyl0-2`` (hass-discovery's object ids)."""
    return ident.removeprefix("bmslink_").removeprefix("bmslink-")


def _wait_announced(fs: FaultStack, timeout: float = 30.0) -> None:
    """Every pack and the bank have a retained discovery config (readers publish their info
    after the first complete poll, so this can lag the first state)."""

    def done() -> bool:
        configs = {t: p for t, p in fs.rec.latest.items() if t.startswith("homeassistant/") and p}
        ids = {_device(d) for d in discovery_devices(configs)}
        return {*fs.load.pack_ids, "bank1"} <= ids

    fs.wait(done, timeout, "every device announced")


# --- bad input -------------------------------------------------------------------------------

HUGE = b'{"id": "' + b"x" * 2_000_000 + b'"}'
BAD_PAYLOADS = [
    b"{not json",
    b"\xff\xfe\x00garbage",
    b"",
    b"[]",
    b"42",
    b'{"kind": "battery", "id": "pyl0-2", "ts": "yesterday", "voltage": "high"}',
    b'{"kind": "battery", "id": "pyl0-2", "ts": 1e300, "voltage": -5, "soc": 400}',
    b'{"kind": "bank", "id": "bank1", "ts": 1, "members": "all", "failsafe": 3}',
    b'{"charge_current_limit": "lots", "ttl": -1, "bogus": true}',
    b'{"charge_current_limit": 5, "unknown_field": 1}',
    b'{"voltage": NaN}',
    HUGE,
]


def test_bad_input_on_every_subscribed_topic_is_refused_and_survived(fs: FaultStack) -> None:
    # What each service subscribes to: the bank bms/+/state, +/availability, +/info and
    # bms/bank1/set; the emulator bms/bank1/state; hass-discovery bms/+/info and the HA birth
    # topic; readers with control their bms/<id>/set. Real members' topics are used too.
    topics = [
        "bms/pyl0-2/state",
        "bms/intruder/state",
        "bms/bank1/state",
        "bms/pace0-1/availability",
        "bms/pyl0-2/info",
        "bms/intruder/info",
        "bms/bank1/set",
        "bms/daly0-1/set",
        "homeassistant/status",
    ]
    before = time.time()
    results_before = len(fs.arrivals("bms/bank1/set/result"))
    publish(fs.port, [(t, p) for t in topics for p in BAD_PAYLOADS])
    # Every service keeps running and keeps publishing fresh, correct data.
    fs.wait_healthy(30, since=time.time() + 0.5)
    for proc in fs.stack.services():
        assert proc.alive(), f"{proc.name} died: {proc.log_text()[-2000:]}"
        assert "Traceback" not in proc.log_text(), proc.log_text()[-3000:]
    # Reported: every bad command gets a typed error on set/result; the others are logged.
    results = [json.loads(a.payload) for a in fs.arrivals("bms/bank1/set/result")]
    new = results[results_before:]
    assert len(new) >= len(BAD_PAYLOADS) - 1, new  # `{}`-like payloads may be valid: none here
    assert all(r["ok"] is False and r["error"] for r in new), new
    for name in ("bank-aggregator", "inverter-emulator", "hass-discovery"):
        text = fs.stack.procs[name].log_text()
        assert "WARNING" in text, f"{name} reported nothing: {text[-1500:]}"
    bank = _bank(fs)
    assert "intruder" not in (bank.get("members") or [])
    assert sorted(bank.get("members_online") or []) == sorted(fs.load.pack_ids)
    # No device appeared in Home Assistant from garbage.
    devices = discovery_devices(retained(fs.port, ("homeassistant/#",)))
    assert {_device(d) for d in devices} == {*fs.load.pack_ids, "bank1", "inverter_soak_inv1"}
    assert not {d: t for d, t in devices.items() if len(t) > 1}
    assert fs.arrivals("bms/bank1/state", since=before)


# --- adapter unplugged / bank members dropping under load ------------------------------------


def test_bank_members_drop_with_their_bus_and_return(fs: FaultStack) -> None:
    dropped = fs.load.packs["reader-pace0"]
    fs.stack.stop("sim-pace0")  # the TCP RS485 bridge goes away
    fs.wait(
        lambda: all(fs.availability(i) == "offline" for i in dropped),
        3 * INTERVAL + 10,
        "the bridge's packs offline",
    )
    fs.wait(
        lambda: (
            not set(dropped) & set(_bank(fs).get("members_online") or [])
            and bool(_bank(fs).get("degraded"))
        ),
        10,
        "bank degraded without them",
    )
    bank = _bank(fs)
    assert not bank["failsafe"]
    assert set(bank["members_online"]) == set(fs.load.pack_ids) - set(dropped)
    assert {f"member_missing@{i}" for i in dropped} <= set(bank["warnings"]) | set(bank["alarms"])
    fs.stack.restart("sim-pace0")
    fs.stack.wait_ready("sim-pace0")
    fs.wait(
        lambda: (
            sorted(_bank(fs).get("members_online") or []) == sorted(fs.load.pack_ids)
            and not _bank(fs).get("degraded")
        ),
        40,
        "the packs back in the bank",
    )
    assert all(fs.availability(i) == "online" for i in dropped)


# --- broker restarts -------------------------------------------------------------------------


def _republished_after(fs: FaultStack, back: float, live: bool) -> None:
    """Every service online within RECONNECT_S of ``back``, then info, availability and state
    of every pack and bank re-published, and discovery complete. ``live``: count only messages
    published to the recorder's restored session (with persistence the broker still holds the
    old retained copies); without persistence the broker came back empty, so anything after
    ``back`` — retained copies included — was published again."""
    fs.wait(
        lambda: all(fs.arrivals(t, since=back, live=live) for t in fs.status_topics()),
        RECONNECT_S + 1.0,  # + the recorder's own reconnect (1 s)
        "every service online again",
    )
    late = {
        t: fs.arrivals(t, since=back, live=live)[0].at - back
        for t in fs.status_topics()
        if fs.arrivals(t, since=back, live=live)[0].at - back > RECONNECT_S
    }
    assert not late, f"reconnected later than {RECONNECT_S} s: {late}"
    devices = [*fs.load.pack_ids, "bank1"]
    fs.wait(
        lambda: all(
            fs.arrivals(f"bms/{d}/{kind}", since=back, live=live)
            for d in devices
            for kind in ("info", "availability", "state")
        ),
        15,
        "info, availability and state re-published",
    )
    fs.wait_healthy(30, since=back)
    _wait_announced(fs)
    devices_seen = discovery_devices(retained(fs.port, ("homeassistant/#",)))
    assert not {d: t for d, t in devices_seen.items() if len(t) > 1}
    assert {_device(d) for d in devices_seen} == {*devices, "inverter_soak_inv1"}
    stored = retained(fs.port, ("bms/+/state", "bms/+/info", "bms/+/availability"))
    for d in devices:
        for kind in ("state", "info", "availability"):
            assert f"bms/{d}/{kind}" in stored, f"bms/{d}/{kind} not retained"


def test_broker_restart_with_persistence_loses_no_state(fs: FaultStack) -> None:
    fs.stack.stop_broker(signal.SIGTERM)  # saves the persistence file
    down = time.time()
    time.sleep(3.0)  # ~3 polls per pack published into the clients' QoS 1 queues
    fs.stack.persistence = True
    fs.stack.start_broker()
    back = time.time()
    _republished_after(fs, back, live=True)
    # QoS 1 on the state path: the states read while the broker was away arrive afterwards
    # (the recorder's persistent session was restored from the broker's persistence file).
    for pid in fs.load.pack_ids:
        seen = sorted(
            {json.loads(a.payload)["ts"] for a in fs.arrivals(f"bms/{pid}/state", down - 5)}
        )
        gaps = [b - a for a, b in itertools.pairwise(seen)]
        assert seen and seen[-1] > back, pid
        assert max(gaps) < 2.5 * INTERVAL + 1.0, f"{pid}: states lost, gap {max(gaps):.1f} s"


def test_broker_killed_without_persistence_everything_is_republished(fs: FaultStack) -> None:
    fs.stack.stop_broker(signal.SIGKILL)
    time.sleep(2.0)
    fs.stack.persistence = False
    (fs.stack.workdir / "mosquitto.db").unlink(missing_ok=True)
    fs.stack.start_broker()
    back = time.time()
    _republished_after(fs, back, live=False)


# --- SIGTERM / SIGKILL -----------------------------------------------------------------------


@pytest.mark.parametrize("name", SERVICES)
def test_sigterm_is_clean_and_sigkill_leaves_the_last_will(fs: FaultStack, name: str) -> None:
    status = fs.status_topic(name)
    proc = fs.stack.procs[name]
    published = [f"bms/{i}" for i in fs.load.packs.get(name, [])]
    if name == "bank-aggregator":
        published = ["bms/bank1"]
    states_before = {p: fs.rec.latest.get(f"{p}/state") for p in published}
    t0 = time.time()
    assert fs.stack.stop(name, signal.SIGTERM) == 0, proc.log_text()[-2000:]
    assert "Traceback" not in proc.log_text()
    assert stats_lines(proc), "no final stats line"
    fs.wait(lambda: fs.rec.latest.get(status) == b"offline", 5, f"{status} offline")
    for p in published:
        assert fs.availability(p.removeprefix("bms/")) == "offline", p
        # the last state stays retained: nothing is lost by stopping
        last = fs.rec.latest.get(f"{p}/state")
        assert last is not None
        assert retained(fs.port, (f"{p}/state",), settle=0.3).get(f"{p}/state") == last
    fs.stack.restart(name)
    fs.wait(
        lambda: (
            bool(fs.arrivals(status, since=t0, live=True))
            and fs.rec.latest.get(status) == b"online"
        ),
        20,
        f"{name} back online",
    )
    fs.wait_healthy(30, since=time.time())
    # Energy counters survive the restart (persisted in the state directory).
    for p in published[:1]:
        old = json.loads(states_before[p] or b"{}")
        new = json.loads(fs.rec.latest[f"{p}/state"])
        for key in ("energy_charged", "energy_discharged"):
            if old.get(key) is not None:
                assert new[key] >= old[key] - 1e-6, (p, key, old[key], new[key])
    # SIGKILL: no chance to say goodbye; the broker publishes the retained last will.
    t1 = time.time()
    fs.stack.stop(name, signal.SIGKILL)
    fs.wait(
        lambda: any(a.payload == b"offline" for a in fs.arrivals(status, since=t1)),
        10,
        f"last will on {status}",
    )
    assert retained(fs.port, (status,), settle=0.3).get(status) == b"offline"
    fs.stack.restart(name)
    fs.wait(lambda: fs.rec.latest.get(status) == b"online", 20, f"{name} online again")
    fs.wait_healthy(30, since=time.time())


# --- the inverter, frame by frame, over everything above --------------------------------------


def test_inverter_never_got_stale_or_over_limit_frames(fs: FaultStack) -> None:
    # Stop the producers so that the record is complete, then check every frame set.
    fs.stack.stop_services(["bank-aggregator", "inverter-emulator"])
    cycles = read_cycles(fs.load.record)
    assert len(cycles) > 30
    check = check_frames(cycles, list(fs.bank_states), max_current=100.0, window=60.0)
    assert not check.over_limit, [check.cycles[i].start for i in check.over_limit]
    assert not check.stale, [_explain(check, i) for i in check.stale]
    assert not check.unmatched, [check.cycles[i].start for i in check.unmatched]
    normal = [c for c in check.carried if c is not None]
    assert len(normal) > len(cycles) // 2
    # The last set (after every fault above) carries a real bank state again.
    assert check.carried[-1] is not None
    assert check.carried[-1].state["members_online"]


def _explain(check: FrameCheck, i: int) -> dict[str, object]:
    """What a flagged cycle carried and which newer bank states had arrived before it."""
    cycle, carried = check.cycles[i], check.carried[i]
    return {
        "cycle_start": cycle.start,
        "carried_ts": carried.state.get("ts") if carried else None,
        "carried_at": carried.at if carried else None,
        "values": cycle_values(cycle),
        "newer": [(b.state.get("ts"), b.at) for b in check.newer.get(i, [])][:5],
    }
