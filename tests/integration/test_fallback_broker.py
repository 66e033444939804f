"""The demo's fallback broker (amqtt, used when Mosquitto cannot be installed) carries the same
traffic: last will, retained state, re-publish, retained commands refused on subscribe. amqtt
speaks MQTT 3.1.1 only, so the demo runs the services with ``[mqtt] protocol = "3.1.1"`` on it.
Marked so it can be re-run against Mosquitto."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import pytest
from paho.mqtt import publish

from bmslink.config import MqttConfig
from bmslink.mqtt import MqttRuntime
from tests.broker import free_port, recorder

pytestmark = pytest.mark.mqtt


@pytest.fixture
def amqtt_port() -> Iterator[int]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "bmslink.cli.fallback_broker", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            break
        assert proc.poll() is None, "amqtt exited at start"
        time.sleep(0.05)
    yield port
    proc.terminate()
    proc.wait(10)


def test_runtime_works_against_the_fallback_broker(amqtt_port: int) -> None:
    config = MqttConfig(host="127.0.0.1", port=amqtt_port, protocol="3.1.1")
    rt = MqttRuntime(config, "demo-svc", "x")
    rt.start()
    assert rt.wait_connected(10)
    rt.publish("bms/p1/state", b'{"v":1}', retain=True, sticky=True)
    with recorder(amqtt_port, "bms/#") as first:  # live or retained: the broker has it now
        first.wait_topic("bms/p1/state", timeout=10)
    with recorder(amqtt_port, "bms/#", "bmslink/#") as rec:
        got = rec.wait_topic("bms/p1/state", timeout=10)
        assert (got.payload, got.retain) == (b'{"v":1}', True)
        rec.wait_topic("bmslink/demo-svc/x/status", b"online", timeout=10)
        rt.stop()
        rec.wait_topic("bmslink/demo-svc/x/status", b"offline", timeout=10)


def test_retained_command_refused_on_subscribe_and_no_mqtt5(amqtt_port: int) -> None:
    publish.single("bms/b1/set", b'{"ttl": 5}', qos=1, retain=True, port=amqtt_port)
    handled: list[bytes] = []
    refused: list[str] = []
    done = threading.Event()
    rt = MqttRuntime(
        MqttConfig(host="127.0.0.1", port=amqtt_port, protocol="3.1.1"), "demo-svc", "c"
    )
    rt.subscribe_commands(
        "bms/+/set",
        lambda _t, p: (handled.append(p), done.set()),
        lambda t: (refused.append(t), done.set()),
    )
    rt.start()
    try:
        assert rt.wait_connected(10)
        assert done.wait(10)
        assert (refused, handled) == (["bms/b1/set"], [])
    finally:
        rt.stop()
    # amqtt 0.12 does not speak MQTT 5 (it does not even answer a v5 CONNECT with a will)
    v5 = MqttRuntime(MqttConfig(host="127.0.0.1", port=amqtt_port), "demo-svc", "v5")
    v5.start()
    try:
        assert not v5.wait_connected(3)
    finally:
        v5.stop()
