"""End to end: member states published on a real Mosquitto → bank-aggregator process → bank."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from bmslink import schema
from bmslink.schema import BankState, BatteryState
from tests.broker import Broker, Received, Recorder, recorder
from tests.processes import stop

pytestmark = [pytest.mark.mqtt]


class Packs:
    """Publishes BatteryState JSON for some packs every 0.2 s, as a reader does."""

    def __init__(self, port: int) -> None:
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"packs-{id(self)}")
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self.states: dict[str, dict[str, object]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def set(self, member_id: str, **fields: object) -> None:
        with self._lock:
            self.states[member_id] = fields
        self.publish_now(member_id)

    def silence(self, member_id: str) -> None:
        with self._lock:
            self.states.pop(member_id, None)

    def availability(self, member_id: str, value: str) -> None:
        self.client.publish(f"bms/{member_id}/availability", value, qos=1, retain=True)

    def publish_now(self, member_id: str) -> None:
        with self._lock:
            fields = self.states.get(member_id)
        if fields is None:
            return
        state = BatteryState(id=member_id, ts=time.time(), **fields)  # type: ignore[arg-type]
        self.client.publish(f"bms/{member_id}/state", schema.encode(state), qos=1, retain=True)

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            for member_id in list(self.states):
                self.publish_now(member_id)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.client.disconnect()
        self.client.loop_stop()


def bank_state(rec: Recorder, predicate: object, after: int = 0, timeout: float = 10) -> BankState:
    def match(m: Received) -> bool:
        if m.topic != "bms/house/state" or not m.payload:
            return False
        s = schema.decode(schema.BANK_STATE_DECODER, m.payload)
        return bool(predicate(s))  # type: ignore[operator]

    got = rec.wait_for(match, timeout, after)
    return schema.decode(schema.BANK_STATE_DECODER, got.payload)  # type: ignore[no-any-return]


def result(rec: Recorder, after: int) -> schema.SetResult:
    got = rec.wait_topic("bms/house/set/result", timeout=5, after=after)
    return schema.decode(schema.RESULT_DECODER, got.payload)  # type: ignore[no-any-return]


@pytest.fixture
def aggregator(broker: Broker, tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    site = tmp_path / "site.toml"
    site.write_text(
        f'[mqtt]\nhost = "127.0.0.1"\nport = {broker.port}\nreconnect_max = 2\n'
        "[banks.house]\n"
        'members = ["pylon-1", "daly-1"]\n'
        "period = 0.5\nmin_interval = 0.0\nstale_after = 2.0\n"
        "max_discharge_current = 70.0\n"
        "[banks.house.packs.daly-1]\n"
        "capacity = 100.0\ncharge_current_limit = 50.0\ncell_count = 16\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "bank_aggregator", "--config", str(site), "--instance", "house"],
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    yield proc
    if proc.poll() is None:
        stop(proc)


def test_bank_follows_its_members(broker: Broker, aggregator: subprocess.Popen[bytes]) -> None:
    packs = Packs(broker.port)
    try:
        with recorder(broker.port, "bms/#", "bmslink/#") as rec:
            rec.wait_topic("bmslink/bank-aggregator/house/status", b"online", timeout=15)
            info = rec.wait_topic("bms/house/info", timeout=5)
            assert schema.decode(schema.INFO_DECODER, info.payload).members == [
                "pylon-1",
                "daly-1",
            ]
            # a Pylontech with limits and a Daly with none (its CCL comes from the config)
            packs.set(
                "pylon-1",
                voltage=50.0,
                current=10.0,
                soc=40.0,
                full_capacity=50.0,
                charge_current_limit=25.0,
                discharge_current_limit=50.0,
                charge_voltage_limit=53.2,
                discharge_voltage_limit=44.0,
            )
            # the Daly's CVL/DVL: 16 LFP cells (config) × the per-cell defaults
            packs.set("daly-1", voltage=51.0, current=-4.0, soc=70.0, charge_enabled=True)
            packs.availability("pylon-1", "online")
            both = bank_state(rec, lambda s: len(s.members_online) == 2)
            assert both.soc == 60.0 and both.current == 6.0 and not both.degraded
            # pylon: 25 A for a 1/3 share → 75 A, × 0.9 share margin
            assert both.charge_current_limit == 67.5 and both.charge_enabled
            assert both.charge_limited_by == "pylon-1"
            # daly's DCL: 0.5 C default of 100 Ah for a 2/3 share → 75 A × 0.9 (below the 70 A cap)
            assert both.discharge_current_limit == 67.5 and both.discharge_limit_source == "config"
            assert both.member_limit_sources == {"pylon-1": "bms", "daly-1": "default"}
            assert both.charge_voltage_limit == 53.2 and both.alarms == []
            rec.wait_topic("bms/house/availability", b"online", timeout=5)

            # a protection alarm on one pack stops charging through the whole bank
            mark = rec.mark()
            packs.set(
                "pylon-1",
                **{**packs.states["pylon-1"], "alarms": ["cell_overvoltage"]},  # type: ignore[arg-type]
            )
            alarmed = bank_state(rec, lambda s: s.alarms != [], after=mark)
            assert alarmed.alarms == ["cell_overvoltage@pylon-1"]
            assert not alarmed.charge_enabled and alarmed.charge_current_limit == 0.0
            assert alarmed.charge_limit_reason == "cell_overvoltage@pylon-1"
            assert alarmed.charge_limit_source == "alarm"
            assert alarmed.discharge_enabled and alarmed.discharge_current_limit == 67.5
            mark = rec.mark()
            packs.set("pylon-1", **{**packs.states["pylon-1"], "alarms": []})  # type: ignore[arg-type]
            bank_state(rec, lambda s: s.charge_current_limit == 67.5, after=mark)

            # one pack drops (offline) and returns
            mark = rec.mark()
            packs.availability("daly-1", "offline")
            one = bank_state(rec, lambda s: s.members_online == ["pylon-1"], after=mark)
            assert one.degraded and one.warnings == ["member_missing@daly-1"]
            assert one.soc == 40.0 and one.charge_current_limit == 25.0
            mark = rec.mark()
            packs.availability("daly-1", "online")
            bank_state(rec, lambda s: len(s.members_online) == 2 and not s.degraded, after=mark)

            # every pack goes silent: fail-safe, then back
            mark = rec.mark()
            packs.silence("pylon-1")
            packs.silence("daly-1")
            dead = bank_state(rec, lambda s: s.failsafe, after=mark)
            assert (dead.charge_current_limit, dead.discharge_current_limit) == (0.0, 0.0)
            assert dead.charge_enabled is False and dead.discharge_enabled is False
            rec.wait_topic("bms/house/availability", b"offline", timeout=5, after=mark)
            mark = rec.mark()
            packs.set("pylon-1", voltage=50.0, soc=41.0, charge_current_limit=25.0)
            back = bank_state(rec, lambda s: not s.failsafe, after=mark)
            assert back.members_online == ["pylon-1"] and back.soc == 41.0
        assert aggregator.poll() is None
    finally:
        packs.close()


def test_overrides_accepted_rejected_and_expired(
    broker: Broker, aggregator: subprocess.Popen[bytes]
) -> None:
    packs = Packs(broker.port)
    try:
        with recorder(broker.port, "bms/#") as rec:
            limits = {"charge_voltage_limit": 53.2, "discharge_voltage_limit": 44.0}
            packs.set("pylon-1", soc=50.0, full_capacity=50.0, charge_current_limit=30.0, **limits)
            packs.set("daly-1", soc=50.0, full_capacity=50.0, charge_current_limit=30.0, **limits)
            # daly-1 (100 Ah from the config) takes 2/3 of the bank current: 30 A · 3/2 · 0.9
            bank_state(rec, lambda s: s.charge_current_limit == 40.5, timeout=15)
            for bad, why in [
                (b'{"charge_current_limit": -5}', ">= 0"),
                (b'{"charge_current_limit": "lots"}', "Expected `float | null`"),
                (b'{"charge_current_limit": 5, "power": 1}', "unknown field"),
                (b'{"charge_current_limit": 5, "ttl": 86400}', "<= 3600"),
                (b"not json", "malformed"),
            ]:
                mark = rec.mark()
                packs.client.publish("bms/house/set", bad, qos=1)
                answer = result(rec, mark)
                assert not answer.ok and why in (answer.error or ""), (bad, answer)
            mark = rec.mark()
            packs.client.publish("bms/house/set", b'{"charge_current_limit": 12.5, "ttl": 1.5}')
            accepted = result(rec, mark)
            assert accepted.ok and accepted.expires is not None
            held = bank_state(rec, lambda s: s.limits_source == "override", after=mark)
            assert held.charge_current_limit == 12.5 and held.override_expires == accepted.expires
            # the lease ends by itself (no new command)
            expired = bank_state(rec, lambda s: s.override_expires is None, after=rec.mark())
            assert expired.charge_current_limit == 40.5 and expired.charge_limit_source == "bms"
            # the DCL comes from the chemistry default (no DCL reported, none configured)
            assert expired.limits_source == "config"
            # raising above the batteries is accepted but has no effect
            mark = rec.mark()
            packs.client.publish("bms/house/set", b'{"charge_current_limit": 500}')
            assert result(rec, mark).ok
            high = bank_state(rec, lambda s: s.override_expires is not None, after=mark)
            assert high.charge_current_limit == 40.5 and high.charge_limit_source == "bms"
        assert aggregator.poll() is None
        assert stop(aggregator, signal.SIGTERM) == 0
    finally:
        packs.close()


def test_sigterm_publishes_offline(broker: Broker, aggregator: subprocess.Popen[bytes]) -> None:
    with recorder(broker.port, "bms/#", "bmslink/#") as rec:
        rec.wait_topic("bmslink/bank-aggregator/house/status", b"online", timeout=15)
        first = bank_state(rec, lambda s: True)
        assert first.failsafe and first.members == ["pylon-1", "daly-1"]
        mark = rec.mark()
        assert stop(aggregator, signal.SIGTERM) == 0
        rec.wait_topic("bms/house/availability", b"offline", timeout=5, after=mark)
        rec.wait_topic("bmslink/bank-aggregator/house/status", b"offline", timeout=5, after=mark)
    assert first.warnings == ["member_missing@pylon-1", "member_missing@daly-1"]
