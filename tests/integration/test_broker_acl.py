"""`bmslink credentials` output loaded into a real Mosquitto: each user can do what its service
needs and nothing else; anonymous clients are refused. (Publishes the ACL forbids are dropped
silently by Mosquitto, so the checks look at what a subscriber receives.)"""

from __future__ import annotations

import time
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from bmslink.cli import credentials
from tests.broker import Broker, Recorder

pytestmark = pytest.mark.mqtt

ROOT = Path(__file__).resolve().parents[2]


def client(port: int, user: str | None, password: str | None) -> tuple[paho.Client, int]:
    c = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"t-{user}-{time.monotonic_ns()}")
    if user:
        c.username_pw_set(user, password)
    result: list[int] = []
    c.on_connect = lambda _c, _u, _f, rc, _p: result.append(rc.value)
    c.connect("127.0.0.1", port)
    deadline = time.monotonic() + 5
    while not result and time.monotonic() < deadline:
        c.loop(0.05)
    return c, result[0] if result else -1


@pytest.fixture
def secured(tmp_path: Path) -> tuple[Broker, dict[str, str], str]:
    users = credentials.generate(
        ROOT / "compose.yaml", ROOT / "config" / "demo.toml", tmp_path, tmp_path / ".env", {"demo"}
    )
    env = credentials.read_env(tmp_path / ".env")
    passwords = {u.name: env[u.env_var] for u in users if u.env_var}
    acl = (tmp_path / "acl").read_text()
    broker = Broker(
        tmp_path,
        extra_conf=(
            f"password_file {tmp_path / 'passwd'}\n"
            f"acl_file {tmp_path / 'acl'}\n"
            "allow_anonymous false"
        ),
    )
    broker.start()
    yield broker, passwords, acl
    broker.stop()


def publish(port: int, user: str, password: str, topic: str) -> None:
    c, rc = client(port, user, password)
    assert rc == 0, f"{user} could not connect"
    info = c.publish(topic, b"x", qos=1)
    deadline = time.monotonic() + 5
    while not info.is_published() and time.monotonic() < deadline:
        c.loop(0.05)
    c.disconnect()


def test_each_service_gets_exactly_its_topics(secured: tuple[Broker, dict[str, str], str]) -> None:
    broker, pw, acl = secured
    assert "user demo-rack-reader" in acl
    assert "topic readwrite bms/rack-2/state" in acl
    watcher = Recorder(broker.port)
    watcher.client.username_pw_set("homeassistant", pw["homeassistant"])
    watcher.start()
    try:
        publish(broker.port, "demo-rack-reader", pw["demo-rack-reader"], "bms/rack-2/state")
        watcher.wait_topic("bms/rack-2/state", timeout=5)
        # a reader cannot publish another reader's devices or a bank command
        publish(broker.port, "demo-rack-reader", pw["demo-rack-reader"], "bms/model-2/state")
        publish(broker.port, "demo-rack-reader", pw["demo-rack-reader"], "bms/bank1/set")
        # Home Assistant may command, not impersonate a battery
        publish(broker.port, "homeassistant", pw["homeassistant"], "bms/bank1/set")
        publish(broker.port, "homeassistant", pw["homeassistant"], "bms/rack-2/info")
        publish(broker.port, "demo-model-reader", pw["demo-model-reader"], "bms/model-2/state")
        watcher.wait_topic("bms/model-2/state", timeout=5)
        topics = [m.topic for m in watcher.messages]
        assert topics.count("bms/bank1/set") == 1  # only Home Assistant's
        assert topics.count("bms/model-2/state") == 1  # only the model reader's
        assert "bms/rack-2/info" not in topics
    finally:
        watcher.stop()


def test_anonymous_and_wrong_passwords_are_refused(
    secured: tuple[Broker, dict[str, str], str],
) -> None:
    broker, pw, _acl = secured
    _c, rc = client(broker.port, None, None)
    assert rc == 135  # not authorized (paho reports MQTT 3.1.1 code 5 as reason 135)
    _c, rc = client(broker.port, "demo-rack-reader", "wrong")
    assert rc in (134, 135)
    c, rc = client(broker.port, "demo-rack-reader", pw["demo-rack-reader"])
    assert rc == 0
    c.disconnect()


def test_passwords_survive_a_rerun_and_match_mosquitto_passwd_format(tmp_path: Path) -> None:
    first = credentials.generate(
        ROOT / "compose.yaml", ROOT / "config" / "demo.toml", tmp_path, tmp_path / ".env", {"demo"}
    )
    env1 = credentials.read_env(tmp_path / ".env")
    credentials.generate(
        ROOT / "compose.yaml", ROOT / "config" / "demo.toml", tmp_path, tmp_path / ".env", {"demo"}
    )
    assert credentials.read_env(tmp_path / ".env") == env1
    assert (tmp_path / ".env").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "passwd").stat().st_mode & 0o777 == 0o600
    assert {u.name for u in first} >= {
        "demo-rack-reader",
        "demo-model-reader",
        "homeassistant",
        "healthcheck",
    }
    line = (tmp_path / "passwd").read_text().splitlines()[0]
    assert line.split(":", 1)[1].startswith("$7$101$")


def test_hardware_profiles_resolve_against_the_example_site(tmp_path: Path) -> None:
    """Every hardware service's compose command runs (``--print-device-ids``) with the example
    site file, so a typo in a command, an instance name or the example config fails here."""
    users = credentials.generate(
        ROOT / "compose.yaml",
        ROOT / "config" / "site.example.toml",
        tmp_path,
        tmp_path / ".env",
        {"rs485", "modbus", "ble", "can"},
    )
    names = {u.name for u in users}
    assert {
        "rack1-reader",
        "am2-reader",
        "daly-ble-reader",
        "can-reader",
        "inverter-emulator",
    } <= names
    assert {"bank-aggregator", "hass-discovery"} <= names
    acl = (tmp_path / "acl").read_text()
    for device in ("rack1-2", "rack1-3", "am2-1", "am2-2", "daly-1", "daly-2", "can1", "bank1"):
        assert f"bms/{device}/state" in acl, device
