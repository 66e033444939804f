"""The demo's fallback broker (amqtt, used when Mosquitto cannot be installed) carries the same
traffic: last will, retained state, re-publish. Marked so it can be re-run against Mosquitto."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

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
    rt = MqttRuntime(MqttConfig(host="127.0.0.1", port=amqtt_port), "demo-svc", "x")
    rt.start()
    assert rt.wait_connected(10)
    rt.publish("bms/p1/state", b'{"v":1}', retain=True, sticky=True)
    with recorder(amqtt_port, "bms/#", "bmslink/#") as rec:
        got = rec.wait_topic("bms/p1/state", timeout=10)
        assert (got.payload, got.retain) == (b'{"v":1}', True)
        rec.wait_topic("bmslink/demo-svc/x/status", b"online", timeout=10)
        rt.stop()
        rec.wait_topic("bmslink/demo-svc/x/status", b"offline", timeout=10)
