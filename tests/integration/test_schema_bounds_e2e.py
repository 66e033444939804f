"""A bank-aggregator process fed oversize and deeply nested payloads on a real Mosquitto keeps
running, keeps its bank, counts every refusal and never logs a traceback (issue 14 item 6)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from bmslink import schema
from tests.broker import Broker, Received, Recorder, recorder
from tests.processes import start_service, stop_reading_stderr, write_site

pytestmark = [pytest.mark.mqtt]

STATE = {
    "kind": "battery",
    "id": "p1",
    "voltage": 50.0,
    "current": 5.0,
    "full_capacity": 50.0,
    "charge_current_limit": 25.0,
    "discharge_current_limit": 50.0,
    "charge_voltage_limit": 53.2,
    "discharge_voltage_limit": 44.0,
}

BAD_STATES: dict[str, bytes] = {
    "1000-deep unknown field": json.dumps({**STATE, "ts": 1.0})[:-1].encode()
    + b', "x": '
    + b"[" * 1000
    + b"]" * 1000
    + b"}",
    "1000-deep, top level": b"[" * 1000 + b"]" * 1000,
    "1000 unclosed": b"{" * 1000,
    "a million cells (4 MB)": b'{"kind":"battery","id":"p1","ts":1,"cell_voltages":['
    + b"3.3," * 999_999
    + b"3.3]}",
    "1025 cells": json.dumps({**STATE, "ts": 1.0, "cell_voltages": [3.3] * 1025}).encode(),
    "257 raw_status entries": json.dumps(
        {**STATE, "ts": 1.0, "raw_status": {f"s{i}": i for i in range(257)}}
    ).encode(),
    "3000 alarms": json.dumps({**STATE, "ts": 1.0, "alarms": ["x"] * 3000}).encode(),
}
BAD_INFOS: dict[str, bytes] = {
    "1000-deep info": b'{"id": "p1", "x": ' + b"[" * 1000 + b"]" * 1000 + b"}",
    "serial of 10 000 characters": json.dumps({"id": "p1", "serial": "s" * 10_000}).encode(),
}
BAD_COMMANDS = [b"[" * 1000 + b"]" * 1000, b'{"ttl": 60, "x": ' + b"{" * 5000]


def bank_soc(rec: Recorder, soc: float, after: int, timeout: float = 20) -> schema.BankState:
    def match(m: Received) -> bool:
        if m.topic != "bms/bank1/state" or not m.payload:
            return False
        s = schema.decode(schema.BANK_STATE_DECODER, m.payload)
        return s.members_online == ["p1"] and s.soc == soc

    got = rec.wait_for(match, timeout, after)
    return schema.decode(schema.BANK_STATE_DECODER, got.payload)  # type: ignore[no-any-return]


def test_aggregator_counts_oversize_and_deep_payloads_and_keeps_its_bank(
    broker: Broker, tmp_path: Path
) -> None:
    site = write_site(
        tmp_path,
        broker.port,
        '[banks.bank1]\nmembers = ["p1"]\nperiod = 0.5\nmin_interval = 0.0\nstale_after = 30.0\n',
    )
    proc = start_service("bank_aggregator", site, "bank1")
    pub = paho.Client(CallbackAPIVersion.VERSION2, client_id="bounds-attacker")
    pub.connect("127.0.0.1", broker.port)
    pub.loop_start()
    try:
        with recorder(broker.port, "bms/#", "bmslink/#") as rec:
            rec.wait_topic("bmslink/bank-aggregator/bank1/status", b"online", timeout=20)
            # a valid retained state proves the aggregator is subscribed
            good = {**STATE, "ts": time.time(), "soc": 40.0}
            pub.publish("bms/p1/state", json.dumps(good), qos=1, retain=True).wait_for_publish(10)
            bank_soc(rec, 40.0, after=0)

            mark = rec.mark()
            for payload in BAD_STATES.values():
                pub.publish("bms/p1/state", payload, qos=1).wait_for_publish(10)
            for payload in BAD_INFOS.values():
                pub.publish("bms/p1/info", payload, qos=1).wait_for_publish(10)
            for payload in BAD_COMMANDS:
                pub.publish("bms/bank1/set", payload, qos=1).wait_for_publish(10)
            # in order on each topic: once this state counts, every bad one was handled
            good = {**STATE, "ts": time.time(), "soc": 55.0}
            pub.publish("bms/p1/state", json.dumps(good), qos=1, retain=True).wait_for_publish(10)
            after = bank_soc(rec, 55.0, after=mark)
            assert after.charge_current_limit == 25.0 and not after.failsafe
            rec.wait_for(
                lambda m: (
                    m.topic == "bms/bank1/set/result"
                    and sum(x.topic == m.topic for x in rec.messages[mark:]) >= len(BAD_COMMANDS)
                ),
                timeout=10,
                after=mark,
            )
            results = [
                schema.decode(schema.RESULT_DECODER, m.payload)
                for m in rec.messages[mark:]
                if m.topic == "bms/bank1/set/result"
            ]
            assert [r.ok for r in results] == [False, False]
            assert all("nested deeper than 32 levels" in (r.error or "") for r in results)
            assert proc.poll() is None, "the aggregator died"
    finally:
        pub.disconnect()
        pub.loop_stop()
        status, err = stop_reading_stderr(proc, timeout=20)
    assert status == 0, err[-3000:]
    assert "Traceback" not in err and "RecursionError" not in err, err[-3000:]
    stats = json.loads(
        [line for line in err.splitlines() if " stats {" in line][-1].split(" stats ", 1)[1]
    )
    assert stats["refused"] == {"bad_state": len(BAD_STATES), "bad_info": len(BAD_INFOS)}
    assert stats["overrides"]["rejected"] == len(BAD_COMMANDS)
    # one WARNING per kind and device (the rest at DEBUG): the first bad state, the first bad info
    assert "refused bad_state from p1: JSON nested deeper than 32 levels" in err
    assert "refused bad_info from p1: JSON nested deeper than 32 levels" in err
