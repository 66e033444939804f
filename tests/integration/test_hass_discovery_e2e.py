"""hass-discovery as a real process against a real Mosquitto.

Readers and the bank aggregator are stood in for by their retained ``bms/<id>/info`` messages
(what hass-discovery reads); Home Assistant by its birth message and by publishing what a
number entity's ``command_template`` renders.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from bmslink import schema
from bmslink.schema import BatteryInfo
from tests.broker import Broker, Received, Recorder, recorder
from tests.processes import start_service, stop_reading_stderr
from tests.unit.test_hass_checker import check_device_config

pytestmark = pytest.mark.mqtt

PREFIX = "homeassistant"
INDEX = "bmslink/hass-discovery/hass/index"
RACK = f"{PREFIX}/device/bmslink_rack-2/config"
SHELF = f"{PREFIX}/device/bmslink_shelf-2/config"
BANK = f"{PREFIX}/device/bmslink_house/config"
OUTPUT = f"{PREFIX}/device/bmslink-inverter_inv_deye/config"
ALL = (RACK, SHELF, BANK, OUTPUT)

SITE = """
[hass]
birth_delay_min = 0.0
birth_delay_max = 0.2
override_ttl = 120

[pylontech_rs485.rack]
port = "socket://127.0.0.1:9"

[pylontech_rs485.shelf]
port = "socket://127.0.0.1:9"

[banks.house]
members = ["rack-2", "shelf-2"]
max_charge_current = 100
[banks.house.packs.rack-2]
cell_count = 15
chemistry = "lfp"
[banks.house.packs.shelf-2]
cell_count = 15
chemistry = "lfp"

[inverters.inv]
bank = "house"
[inverters.inv.outputs.deye]
interface = "vcan0"
"""


def infos() -> dict[str, bytes]:
    def pack(device: str, instance: str) -> bytes:
        return schema.encode(
            BatteryInfo(
                id=device,
                manufacturer="Pylontech",
                model="US3000C",
                serial=f"SN-{device}",
                firmware="V2.4",
                cell_count=15,
                service="pylontech-rs485-reader",
                instance=instance,
            )
        )

    return {
        "rack-2": pack("rack-2", "rack"),
        "shelf-2": pack("shelf-2", "shelf"),
        "house": schema.encode(
            BatteryInfo(
                id="house",
                kind="bank",
                name="House bank",
                service="bank-aggregator",
                instance="house",
                members=["rack-2", "shelf-2"],
            )
        ),
    }


def publish(port: int, messages: list[tuple[str, bytes | str, bool]]) -> None:
    """Publish ``(topic, payload, retain)`` at QoS 1 and wait until the broker has them."""
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"pub-{os.getpid()}-{id(messages)}")
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        for topic, payload, retain in messages:
            client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(5)
    finally:
        client.disconnect()
        client.loop_stop()


def publish_infos(port: int) -> None:
    publish(port, [(f"bms/{i}/info", p, True) for i, p in infos().items()])


def start(config: Path, port: int) -> subprocess.Popen[bytes]:
    env = {"BMSLINK_MQTT_HOST": "127.0.0.1", "BMSLINK_MQTT_PORT": str(port)}
    return start_service("hass_discovery", config, env=env)


@pytest.fixture
def site(tmp_path: Path) -> Path:
    path = tmp_path / "site.toml"
    path.write_text(SITE)
    return path


@pytest.fixture
def service(site: Path, broker: Broker) -> Iterator[subprocess.Popen[bytes]]:
    publish_infos(broker.port)
    proc = start(site, broker.port)
    yield proc
    if proc.poll() is None:
        stop_reading_stderr(proc)


def retained(port: int, *subs: str) -> dict[str, bytes]:
    """What a new subscriber receives as retained, read up to a marker published after it."""
    with recorder(port, *subs, "test/marker") as rec:
        publish(port, [("test/marker", b"end", False)])
        rec.wait_topic("test/marker")
        return {m.topic: m.payload for m in rec.messages if m.retain}


def wait_configs(rec: Recorder, topics: tuple[str, ...], after: int = 0) -> dict[str, Any]:
    """The first non-empty config on each of ``topics`` from message ``after`` on, decoded."""

    def config_on(topic: str) -> Callable[[Received], bool]:
        return lambda m: m.topic == topic and m.payload != b""

    return {t: json.loads(rec.wait_for(config_on(t), 15, after).payload) for t in topics}


def test_announces_every_device_and_republishes_on_birth_and_broker_restart(
    broker: Broker, service: subprocess.Popen[bytes]
) -> None:
    with recorder(broker.port, f"{PREFIX}/#", INDEX) as rec:
        configs = wait_configs(rec, ALL)
        rec.wait_topic(INDEX)
        seen: set[str] = set()
        for topic, payload in configs.items():
            assert check_device_config(topic, payload, seen_unique_ids=seen) == [], topic
        rack = configs[RACK]
        assert rack["device"]["serial_number"] == "SN-rack-2"
        assert rack["device"]["via_device"] == "bmslink_house"
        assert rack["availability"] == [
            {"topic": "bmslink/pylontech-rs485-reader/rack/status"},
            {"topic": "bms/rack-2/availability"},
        ]
        assert sum(1 for k in rack["components"] if k.startswith("cell_") and k[5:].isdigit()) == 15
        assert configs[OUTPUT]["components"]["link"]["state_topic"] == (
            "bmslink/can-inverter-emulator/inv/deye/link"
        )

        # Home Assistant (re)starts: its birth message brings every config again.
        mark = rec.mark()
        publish(broker.port, [(f"{PREFIX}/status", b"online", False)])
        again = wait_configs(rec, ALL, after=mark)
        assert again == configs

    # The broker restarts without persistence: every retained message is lost, no reader is
    # there to re-publish its info — hass-discovery re-publishes from memory.
    broker.restart()
    assert retained(broker.port, "bms/#") == {}
    with recorder(broker.port, f"{PREFIX}/#") as rec:
        wait_configs(rec, ALL)
    kept = retained(broker.port, f"{PREFIX}/#", INDEX)
    assert set(ALL) <= set(kept)
    assert all(kept[t] for t in ALL)
    assert set(json.loads(kept[INDEX])["devices"]) == {
        "bmslink_rack-2",
        "bmslink_shelf-2",
        "bmslink_house",
        "bmslink-inverter_inv_deye",
    }
    code, err = stop_reading_stderr(service)
    assert code == 0, err


def test_override_number_command_reaches_the_bank(
    broker: Broker, service: subprocess.Popen[bytes]
) -> None:
    with recorder(broker.port, f"{PREFIX}/#", "bms/+/set") as rec:
        bank = wait_configs(rec, (BANK,))[BANK]
        number = bank["components"]["charge_current_limit_override"]
        assert number["max"] == 100  # [banks.house] max_charge_current
        # What Home Assistant does when the user enters 42 A: render the command template
        # (an integral value renders as an int) and publish it, QoS 1, not retained.
        payload = number["command_template"].replace("{{ value }}", "42")
        publish(broker.port, [(number["command_topic"], payload, number["retain"])])
        msg = rec.wait_topic("bms/house/set")
        command = schema.decode(schema.OVERRIDE_DECODER, msg.payload)
        assert command.charge_current_limit == 42
        assert command.discharge_current_limit is None
        assert command.ttl == 120
        assert not msg.retain


def test_removed_devices_are_cleared_and_offline_ones_kept(
    broker: Broker, site: Path, service: subprocess.Popen[bytes]
) -> None:
    with recorder(broker.port, f"{PREFIX}/#", INDEX) as rec:
        wait_configs(rec, ALL)
        rec.wait_topic(INDEX)
        # rack-2 goes offline, and so does its reader: it stays announced.
        publish(
            broker.port,
            [
                ("bms/rack-2/availability", b"offline", True),
                ("bmslink/pylontech-rs485-reader/rack/status", b"offline", True),
            ],
        )
        code, err = stop_reading_stderr(service)
        assert code == 0, err

        # The user removes the shelf bus and the inverter from the site file; the old
        # shelf reader's retained info is still on the broker.
        text = SITE.replace('[pylontech_rs485.shelf]\nport = "socket://127.0.0.1:9"\n', "")
        site.write_text(text.split("[inverters.inv]")[0])
        mark = rec.mark()
        proc = start(site, broker.port)
        try:
            rec.wait_topic(SHELF, b"", after=mark)
            rec.wait_topic(OUTPUT, b"", after=mark)
            rec.wait_topic(INDEX, after=mark)
            state = retained(broker.port, f"{PREFIX}/#")
            assert set(state) == {RACK, BANK}
            assert not any(m.topic == RACK and m.payload == b"" for m in rec.messages)

            # A reader clears a device's info (empty retained payload): it goes at once.
            mark = rec.mark()
            publish(broker.port, [("bms/rack-2/info", b"", True)])
            rec.wait_topic(RACK, b"", after=mark)
            assert set(retained(broker.port, f"{PREFIX}/#")) == {BANK}
        finally:
            code, err = stop_reading_stderr(proc)
        assert code == 0, err


def test_bad_config_exits_2_naming_the_key(tmp_path: Path, broker: Broker) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('[hass]\ndiscovery_prefix = "a/+/b"\n')
    proc = start(path, broker.port)
    assert proc.wait(20) == 2
    assert proc.stderr is not None
    err = proc.stderr.read().decode()
    proc.stderr.close()
    assert "hass.discovery_prefix" in err
