"""The MQTT runtime against a real Mosquitto: status, last will, reconnect and re-publish, and
retained commands refused (MQTT 5 and 3.1.1)."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Literal

import pytest

from bmslink.config import MqttConfig
from bmslink.mqtt import REPUBLISH_DELAY, MqttRuntime
from tests.broker import Broker, recorder

pytestmark = pytest.mark.mqtt


def runtime(port: int, instance: str = "t1", protocol: Literal["5", "3.1.1"] = "5") -> MqttRuntime:
    return MqttRuntime(
        MqttConfig(
            host="127.0.0.1", port=port, reconnect_min=0.5, reconnect_max=2, protocol=protocol
        ),
        "test-svc",
        instance,
    )


def test_online_on_connect_and_offline_on_clean_stop(broker: Broker) -> None:
    with recorder(broker.port, "bmslink/#") as rec:
        rt = runtime(broker.port)
        rt.start()
        assert rt.wait_connected(5)
        rec.wait_topic("bmslink/test-svc/t1/status", b"online")
        rt.stop()
        msg = rec.wait_topic("bmslink/test-svc/t1/status", b"offline")
        assert msg.payload == b"offline"
    with recorder(broker.port, "bmslink/#") as late:
        retained = late.wait_topic("bmslink/test-svc/t1/status")
        assert (retained.payload, retained.retain) == (b"offline", True)


def test_reconnect_republishes_status_and_sticky_messages(broker: Broker) -> None:
    rt = runtime(broker.port)
    rt.start()
    assert rt.wait_connected(5)
    rt.publish("bms/p1/info", b'{"id":"p1"}', retain=True, sticky=True)
    rt.publish("bms/p1/state", b'{"v":1}', retain=True, sticky=True)
    rt.publish("bms/p1/state", b'{"v":2}', retain=True, sticky=True)
    broker.restart()  # no persistence: the broker forgets every retained message
    with recorder(broker.port, "bms/#", "bmslink/#") as rec:
        rec.wait_topic("bms/p1/state", b'{"v":2}', timeout=10)
        rec.wait_topic("bms/p1/info", b'{"id":"p1"}', timeout=5)
        rec.wait_topic("bmslink/test-svc/t1/status", b"online", timeout=5)
        time.sleep(REPUBLISH_DELAY + 0.5)  # the second re-publish after paho's own re-sends
        # paho may also re-send messages that were in flight when the broker died, in order;
        # what the broker keeps (the last one) must be the latest state
        assert [m.payload for m in rec.messages if m.topic == "bms/p1/state"][-1] == b'{"v":2}'
    assert rt.connect_count >= 2
    rt.stop()


def test_connects_when_the_broker_comes_up_later(tmp_path: Path) -> None:
    broker = Broker(tmp_path)
    rt = runtime(broker.port, "late")
    rt.start()
    assert not rt.wait_connected(0.5)
    broker.start()
    try:
        assert rt.wait_connected(10)
        rt.stop()
    finally:
        broker.stop()


def test_resubscribes_and_survives_a_failing_handler(broker: Broker) -> None:
    got: list[bytes] = []

    def handler(_topic: str, payload: bytes) -> None:
        if payload == b"boom":
            raise RuntimeError("handler bug")
        got.append(payload)

    rt = runtime(broker.port, "sub")
    rt.subscribe("bms/+/set", handler)
    rt.start()
    assert rt.wait_connected(5)
    with recorder(broker.port) as pub:
        pub.client.publish("bms/b1/set", b"boom", qos=1).wait_for_publish(5)
        pub.client.publish("bms/b1/set", b"one", qos=1).wait_for_publish(5)
        broker.restart()
        assert rt.connected.wait(10)
    # wait until resubscribed (the on_connect path subscribes before setting `connected`)
    with recorder(broker.port) as pub2:
        pub2.client.publish("bms/b1/set", b"two", qos=1).wait_for_publish(5)
        rt_deadline_wait(lambda: b"two" in got)
    assert got[:1] == [b"one"] and b"two" in got
    assert rt.handler_errors == 1
    rt.stop()


def rt_deadline_wait(cond: object, timeout: float = 5.0) -> None:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():  # type: ignore[operator]
            return
        time.sleep(0.01)
    raise AssertionError("condition not met in time")


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_retained_commands_never_reach_the_handler(
    tmp_path: Path, protocol: Literal["5", "3.1.1"]
) -> None:
    """Retained before the subscribe → refused (both protocols); retained live → refused under
    MQTT 5 (retain as published), handled under 3.1.1 (flag cleared by the broker); after a
    reconnect the retained one is refused again; empty messages (clearing) are dropped; data
    subscriptions still get retained messages."""
    events: list[tuple[str, bytes]] = []
    cond = threading.Condition()

    def record(kind: str, payload: bytes) -> None:
        with cond:
            events.append((kind, payload))
            cond.notify_all()

    def wait_events(n: int) -> list[tuple[str, bytes]]:
        with cond:
            assert cond.wait_for(lambda: len(events) >= n, 10), events
            return list(events)

    broker = Broker(tmp_path, persistence=True)  # retained messages survive the restart
    broker.start()
    with recorder(broker.port) as pub:
        pub.client.publish("bms/b1/set", b"old", qos=1, retain=True).wait_for_publish(5)
        pub.client.publish("bms/b1/state", b"s", qos=1, retain=True).wait_for_publish(5)
    rt = runtime(broker.port, "cmd", protocol)
    rt.subscribe_commands(
        "bms/+/set",
        lambda _t, p: record("handled", p),
        lambda t: record("refused", t.encode()),
    )
    rt.subscribe("bms/+/state", lambda _t, p: record("state", p))
    rt.start()
    try:
        assert rt.wait_connected(10)
        assert sorted(wait_events(2)) == [("refused", b"bms/b1/set"), ("state", b"s")]
        with recorder(broker.port) as pub:
            pub.client.publish("bms/b1/set", b"live", qos=1, retain=True).wait_for_publish(5)
            pub.client.publish("bms/b1/set", b"normal", qos=1).wait_for_publish(5)
        got = wait_events(4)[2:]
        if protocol == "5":
            assert got == [("refused", b"bms/b1/set"), ("handled", b"normal")]
        else:
            assert got == [("handled", b"live"), ("handled", b"normal")]
        # a reconnect re-subscribes: the retained command ("live") is refused again
        broker.restart()
        assert sorted(wait_events(6)[4:]) == [("refused", b"bms/b1/set"), ("state", b"s")]
        assert rt.wait_connected(10)
        with recorder(broker.port) as pub:
            pub.client.publish("bms/b1/set", b"", qos=1, retain=True).wait_for_publish(5)
            pub.client.publish("bms/b1/set", b"after", qos=1).wait_for_publish(5)
        assert wait_events(7)[6:] == [("handled", b"after")]
        assert rt.handler_errors == 0
    finally:
        rt.stop()
        broker.stop()
