"""Retained commands are refused (bank-aggregator process, real Mosquitto), under MQTT 5 (the
default, "retain as published" on the command topic) and MQTT 3.1.1 (``[mqtt] protocol``).

Under MQTT 5 a retained ``bms/<bank>/set`` is refused whether it is published while the service
runs or was there before it started. Under 3.1.1 the broker clears the retain flag on live
delivery (MQTT 3.1.1 §3.3.1.3), so only the retained copy delivered on a (re)subscribe is
recognised and refused (at start-up, and after any reconnect); the README documents that limit
and these tests pin it.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from paho.mqtt import publish

from bmslink import schema
from bmslink.mqtt import RETAINED_COMMAND_REFUSED
from bmslink.schema import BankState
from tests.broker import Broker, Received, Recorder, recorder
from tests.integration.test_bank_e2e import Packs
from tests.processes import start_service, stop_reading_stderr, write_site

pytestmark = [pytest.mark.mqtt]

SET = "bms/house/set"
BANK = '[banks.house]\nmembers = ["pylon-1"]\nperiod = 0.5\nmin_interval = 0.0\nstale_after = 5.0\n'
NATURAL_CCL = 30.0
"""A: the member's own CCL, the bank's limit without an override."""


LIMITS = {"charge_voltage_limit": 53.2, "discharge_voltage_limit": 44.0}
"""The member's voltage limits (without them the bank stops both directions: unknown means stop)."""


def start_aggregator(broker: Broker, tmp_path: Path, protocol: str) -> subprocess.Popen[bytes]:
    site = write_site(tmp_path, broker.port, BANK)
    env = {} if protocol == "5" else {"BMSLINK_MQTT_PROTOCOL": protocol}
    return start_service("bank_aggregator", site, "house", env=env)


def stop_and_stats(proc: subprocess.Popen[bytes]) -> dict[str, object]:
    """SIGTERM (must exit 0 without a traceback); the final ``stats`` log line."""
    status, err = stop_reading_stderr(proc)
    assert status == 0 and "Traceback" not in err, err[-2000:]
    lines = re.findall(r"stats (\{.*\})", err)
    assert lines, err[-2000:]
    return json.loads(lines[-1])  # type: ignore[no-any-return]


def bank_state(rec: Recorder, predicate: Callable[[BankState], bool], after: int) -> BankState:
    def match(m: Received) -> bool:
        if m.topic != "bms/house/state" or not m.payload:
            return False
        return predicate(schema.decode(schema.BANK_STATE_DECODER, m.payload))

    got = rec.wait_for(match, 15, after)
    return schema.decode(schema.BANK_STATE_DECODER, got.payload)  # type: ignore[no-any-return]


def result(rec: Recorder, after: int) -> schema.SetResult:
    got = rec.wait_topic("bms/house/set/result", timeout=15, after=after)
    return schema.decode(schema.RESULT_DECODER, got.payload)  # type: ignore[no-any-return]


def command(broker: Broker, payload: bytes, *, retain: bool) -> None:
    publish.single(SET, payload, qos=1, retain=retain, port=broker.port)


def assert_not_applied(rec: Recorder, after: int) -> None:
    """Two bank states (with the member counted) published after ``after`` still carry the
    member's own limit."""
    for _ in range(2):
        state = bank_state(rec, lambda s: s.members_online == ["pylon-1"], after)
        assert state.charge_current_limit == NATURAL_CCL
        assert state.limits_source != "override" and state.override_expires is None
        after = rec.mark()


def assert_refused(answer: schema.SetResult) -> None:
    assert answer.ok is False and answer.expires is None
    assert answer.error == RETAINED_COMMAND_REFUSED
    assert "retained commands are refused" in answer.error


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_normal_command_applied_and_retained_command_refused_live(
    broker: Broker, tmp_path: Path, protocol: str
) -> None:
    packs = Packs(broker.port)
    proc = start_aggregator(broker, tmp_path, protocol)
    try:
        with recorder(broker.port, "bms/#") as rec:
            packs.set(
                "pylon-1", soc=50.0, full_capacity=50.0, charge_current_limit=NATURAL_CCL, **LIMITS
            )
            bank_state(rec, lambda s: s.charge_current_limit == NATURAL_CCL, 0)
            # a normal command is applied (this also proves the command subscription is up)
            mark = rec.mark()
            command(broker, b'{"charge_current_limit": 12.5, "ttl": 600}', retain=False)
            accepted = result(rec, mark)
            assert accepted.ok is True and accepted.error is None and accepted.expires
            held = bank_state(rec, lambda s: s.limits_source == "override", mark)
            assert held.charge_current_limit == 12.5
            mark = rec.mark()
            command(broker, b"{}", retain=False)  # clears the lease
            assert result(rec, mark).ok is True
            bank_state(rec, lambda s: s.charge_current_limit == NATURAL_CCL, mark)

            mark = rec.mark()
            command(broker, b'{"charge_current_limit": 5, "ttl": 600}', retain=True)
            answer = result(rec, mark)
            if protocol == "5":
                # retain as published: the flag arrives with the live message
                assert_refused(answer)
                assert_not_applied(rec, mark)
            else:
                # 3.1.1: the broker cleared the flag on live delivery; it cannot be told apart
                assert answer.ok is True
                bank_state(rec, lambda s: s.charge_current_limit == 5.0, mark)
        stats = stop_and_stats(proc)
        assert stats["overrides"] == (
            {"accepted": 1, "cleared": 1, "retained": 1}
            if protocol == "5"
            else {"accepted": 2, "cleared": 1}
        )
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        packs.close()


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_retained_command_present_before_start_is_refused(
    broker: Broker, tmp_path: Path, protocol: str
) -> None:
    command(broker, b'{"charge_current_limit": 5, "ttl": 600}', retain=True)
    packs = Packs(broker.port)
    try:
        with recorder(broker.port, "bms/#") as rec:
            packs.set(
                "pylon-1", soc=50.0, full_capacity=50.0, charge_current_limit=NATURAL_CCL, **LIMITS
            )
            mark = rec.mark()
            proc = start_aggregator(broker, tmp_path, protocol)
            try:
                assert_refused(result(rec, mark))
                assert_not_applied(rec, mark)
                # clearing the retained command (an empty retained message) is not answered;
                # the next normal command is applied
                mark = rec.mark()
                command(broker, b"", retain=True)
                command(broker, b'{"charge_current_limit": 20, "ttl": 600}', retain=False)
                accepted = result(rec, mark)
                assert accepted.ok is True and accepted.expires
                bank_state(rec, lambda s: s.charge_current_limit == 20.0, mark)
                results = [m for m in rec.messages[mark:] if m.topic.endswith("/set/result")]
                assert len(results) == 1
                stats = stop_and_stats(proc)
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
        assert stats["overrides"] == {"retained": 1, "accepted": 1}
    finally:
        packs.close()
