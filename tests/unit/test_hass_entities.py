"""hass-discovery's generated configs: snapshots, the reference's rules, and the overlay kept in
agreement with the schema.

Snapshots live in tests/snapshots/hass/; after an intended change, regenerate them with
``BMSLINK_UPDATE_SNAPSHOTS=1 uv run pytest tests/unit/test_hass_entities.py`` and review the diff.
"""

from __future__ import annotations

import json
import os
import typing
from pathlib import Path
from typing import Any

import pytest

from bmslink import schema
from bmslink.schema import BankState, BatteryInfo, BatteryState, LimitsOverride
from hass_discovery import entities
from hass_discovery.entities import OVERLAY, OVERRIDE_OVERLAY, Options
from hass_discovery.inverter import InverterOutput
from tests.unit.test_hass_checker import check_device_config, check_entity_config

SNAPSHOTS = Path(__file__).resolve().parents[1] / "snapshots" / "hass"
OPTS = Options(version="0.1.0")

PYLONTECH = BatteryInfo(
    id="rack-2",
    manufacturer="Pylontech",
    model="US5000",
    serial="PPTAP0220C123456",
    firmware="V1.3",
    cell_count=15,
    design_capacity=100.0,
    protocol="pylontech-rs485",
    transport="socket://192.0.2.10:8888",
    address=2,
    service="pylontech-rs485-reader",
    instance="rack",
)
AM2 = BatteryInfo(
    id="am2-1",
    manufacturer="Hubble Lithium",
    model="AM2",
    serial="AM2H5120230400123",
    firmware="P16S100A-1B470-3.05",
    hardware="P16S100A-1B470",
    cell_count=16,
    design_capacity=100.0,
    protocol="pace-modbus",
    transport="/dev/serial/by-id/usb-FTDI-if00-port0",
    address=1,
    service="am2-modbus-reader",
    instance="hubble",
)
DALY = BatteryInfo(
    id="shed",
    name="Shed DIY pack",
    manufacturer="Daly",
    model="Smart BMS 8S",
    firmware="20210222-1.01",
    cell_count=8,
    design_capacity=280.0,
    protocol="daly-ble",
    transport="ble:C8:47:8C:00:11:22",
    service="daly-ble-reader",
    instance="shed",
)
CAN_PACK = BatteryInfo(
    id="can-master",
    manufacturer="PYLON",
    firmware="2.3",
    design_capacity=74.0,
    protocol="pylontech-can",
    transport="can0",
    service="can-reader",
    instance="can0",
)
BANK = BatteryInfo(
    id="house",
    kind="bank",
    name="House bank",
    manufacturer="bmslink",
    model="virtual bank",
    service="bank-aggregator",
    instance="house",
    members=["rack-2", "am2-1", "shed", "can-master"],
)
OUTPUT = InverterOutput("house", "deye", bank="house")


def generated() -> dict[str, tuple[dict[str, Any], set[str]]]:
    """name → (device payload, fields its templates may read)."""
    battery_fields = set(BatteryState.__struct_fields__)
    bank_fields = set(BankState.__struct_fields__)
    return {
        "pylontech_pack": (
            entities.device_payload(PYLONTECH, OPTS, via_bank="house"),
            battery_fields,
        ),
        "am2_pack": (entities.device_payload(AM2, OPTS, via_bank="house"), battery_fields),
        "daly_pack": (
            entities.device_payload(DALY, Options(version="0.1.0", cells_enabled=True)),
            battery_fields,
        ),
        "can_pack": (entities.device_payload(CAN_PACK, OPTS, via_bank="house"), battery_fields),
        "bank": (
            entities.device_payload(BANK, OPTS, caps={"charge_current_limit": 200.0}),
            bank_fields,
        ),
        "inverter_output": (entities.inverter_payload(OUTPUT, OPTS), set()),
    }


@pytest.mark.parametrize("name", list(generated()))
def test_snapshot(name: str) -> None:
    payload, _fields = generated()[name]
    path = SNAPSHOTS / f"{name}.json"
    text = json.dumps(payload, indent=2, ensure_ascii=False) + "\n"
    if os.environ.get("BMSLINK_UPDATE_SNAPSHOTS"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    assert path.exists(), f"missing snapshot {path}: run with BMSLINK_UPDATE_SNAPSHOTS=1"
    assert json.loads(path.read_text(encoding="utf-8")) == payload


@pytest.mark.parametrize("name", list(generated()))
def test_every_config_passes_the_reference_rules(name: str) -> None:
    payload, fields = generated()[name]
    obj = payload["device"]["identifiers"][0]
    topic = entities.device_topic("homeassistant", obj)
    wire = json.loads(entities.encode(payload))
    assert check_device_config(topic, wire, fields=fields) == []
    for etopic, config in entities.per_entity("homeassistant", obj, payload).items():
        assert check_entity_config(etopic, config, fields=fields) == [], etopic


def test_unique_ids_are_unique_across_the_site() -> None:
    seen: set[str] = set()
    for name, (payload, fields) in generated().items():
        topic = entities.device_topic("homeassistant", payload["device"]["identifiers"][0])
        assert check_device_config(topic, payload, fields=fields, seen_unique_ids=seen) == [], name
    assert len(seen) > 150


# --- classes and units (issue 8: "correct classes") -------------------------------------------


def comps(name: str) -> dict[str, dict[str, Any]]:
    components: dict[str, dict[str, Any]] = generated()[name][0]["components"]
    return components


def test_primary_sensors_have_the_right_classes() -> None:
    c = comps("pylontech_pack")
    expected = {
        "voltage": ("voltage", "V", "measurement"),
        "current": ("current", "A", "measurement"),
        "power": ("power", "W", "measurement"),
        "temperature_max": ("temperature", "°C", "measurement"),
        "soc": ("battery", "%", "measurement"),
        "energy_charged": ("energy", "kWh", "total_increasing"),
        "energy_discharged": ("energy", "kWh", "total_increasing"),
    }
    for key, (dc, unit, sc) in expected.items():
        got = (c[key].get("device_class"), c[key]["unit_of_measurement"], c[key]["state_class"])
        assert got == (dc, unit, sc), key
        assert "entity_category" not in c[key], key


def test_capacities_in_ah_have_no_device_class_and_cycles_count_up() -> None:
    c = comps("am2_pack")
    for key in ("remaining_capacity", "full_capacity", "design_capacity"):
        assert c[key]["unit_of_measurement"] == "Ah"
        assert "device_class" not in c[key]
    assert c["cycles"]["state_class"] == "total_increasing"
    assert "unit_of_measurement" not in c["cycles"]
    assert c["cycles"]["entity_category"] == "diagnostic"
    assert c["soh"]["unit_of_measurement"] == "%" and "device_class" not in c["soh"]


def test_binary_sensors_and_alarm_text() -> None:
    c = comps("pylontech_pack")
    for key in ("charge_enabled", "discharge_enabled", "balancing", "alarm"):
        assert c[key]["platform"] == "binary_sensor", key
    assert c["balancing"]["device_class"] == "running"
    assert c["alarm"]["device_class"] == "problem"
    assert c["alarms"]["platform"] == "sensor"
    assert c["alarms"]["entity_category"] == "diagnostic"
    assert "unit_of_measurement" not in c["alarms"] and "state_class" not in c["alarms"]
    assert "value_json.alarms" in c["alarms"]["value_template"]


def test_per_cell_entities_follow_the_cell_count_and_the_enable_option() -> None:
    pylontech = comps("pylontech_pack")
    cells = sorted(k for k in pylontech if k.startswith("cell_") and k[5:].isdigit())
    assert cells == [f"cell_{i:02d}" for i in range(1, 16)]
    cell = pylontech["cell_07"]
    assert cell["name"] == "Cell 7"
    assert cell["value_template"] == (
        "{{ (value_json.cell_voltages | default([], true))[6] | default(none) }}"
    )
    assert (cell["device_class"], cell["unit_of_measurement"]) == ("voltage", "V")
    assert cell["entity_category"] == "diagnostic"
    assert cell["enabled_by_default"] is False
    assert cell["suggested_display_precision"] == 3
    daly = comps("daly_pack")
    assert sum(1 for k in daly if k[5:].isdigit() and k.startswith("cell_")) == 8
    assert "enabled_by_default" not in daly["cell_01"]
    assert not any(k.startswith("cell_0") for k in comps("can_pack"))  # no cell count: none
    for key in ("cell_min", "cell_max", "cell_delta"):
        assert pylontech[key]["unit_of_measurement"] == "V"
    assert "unit_of_measurement" not in pylontech["cell_min_index"]


def test_device_identity_availability_and_bank_link() -> None:
    payload = generated()["am2_pack"][0]
    assert payload["device"] == {
        "identifiers": ["bmslink_am2-1"],
        "name": "am2-1",
        "manufacturer": "Hubble Lithium",
        "model": "AM2",
        "serial_number": "AM2H5120230400123",
        "sw_version": "P16S100A-1B470-3.05",
        "hw_version": "P16S100A-1B470",
        "via_device": "bmslink_house",
    }
    assert payload["availability"] == [
        {"topic": "bmslink/am2-modbus-reader/hubble/status"},
        {"topic": "bms/am2-1/availability"},
    ]
    assert payload["availability_mode"] == "all"
    assert payload["state_topic"] == "bms/am2-1/state"
    assert payload["origin"]["name"] == "bmslink"
    assert all(
        c.get("expire_after") == 60
        for c in payload["components"].values()
        if c["platform"] in ("sensor", "binary_sensor")
    )


def test_bank_override_numbers_publish_limits_override() -> None:
    c = comps("bank")
    charge = c["charge_current_limit_override"]
    assert charge["platform"] == "number"
    assert charge["command_topic"] == "bms/house/set"
    assert charge["entity_category"] == "config"
    assert charge["retain"] is False
    assert (charge["min"], charge["max"], charge["step"]) == (0, 200, 1)  # bank cap 200 A
    assert c["discharge_current_limit_override"]["max"] == 1000  # override_max_current
    for key, field in (
        ("charge_current_limit_override", "charge_current_limit"),
        ("discharge_current_limit_override", "discharge_current_limit"),
    ):
        for value in (42, 12.5):  # HA renders an integral value as an int
            rendered = c[key]["command_template"].replace("{{ value }}", str(value))
            command = schema.decode(schema.OVERRIDE_DECODER, rendered)
            assert getattr(command, field) == value
            assert command.ttl == 300
    assert not any(k.startswith("cell_0") for k in c)
    assert set(c["limits_source"]["options"]) == set(typing.get_args(schema.LimitsSource))
    assert c["degraded"]["device_class"] == "problem"


def test_inverter_output_has_link_status() -> None:
    payload = generated()["inverter_output"][0]
    link = payload["components"]["link"]
    assert link["device_class"] == "connectivity"
    assert link["state_topic"] == "bmslink/can-inverter-emulator/house/deye/link"
    assert (link["payload_on"], link["payload_off"]) == ("up", "down")
    assert "expire_after" not in link  # published on change only
    assert payload["availability"] == [{"topic": "bmslink/can-inverter-emulator/house/status"}]
    assert payload["device"]["via_device"] == "bmslink_house"


def test_inverter_topics_match_the_emulator() -> None:
    from can_inverter_emulator import app as emulator
    from hass_discovery import inverter

    assert inverter.LINK_TOPIC.replace("{service}", emulator.SERVICE) == emulator.LINK_TOPIC
    assert inverter.MODE_TOPIC.replace("{service}", emulator.SERVICE) == emulator.MODE_TOPIC


# --- the overlay is presentation only, and covers the schema ---------------------------------


def test_overlay_covers_exactly_the_state_fields() -> None:
    fields = set(BatteryState.__struct_fields__) | set(BankState.__struct_fields__)
    assert set(OVERLAY) == fields
    assert set(OVERRIDE_OVERLAY) <= set(LimitsOverride.__struct_fields__)


def test_overlay_never_restates_schema_metadata() -> None:
    meta = {**schema.field_meta(BankState), **schema.field_meta(BatteryState)}
    for name, look in OVERLAY.items():
        m = meta[name]
        if look.device_class is not None:
            assert m["type"] == "bool" and "device_class" not in m, name
        if look.kind == "cells":
            assert m["type"] == "list" and "unit" in m, name
        if look.kind in ("text", "count"):
            assert m["type"] in ("list", "str"), name
        if look.kind == "skip":
            assert look.why, name
        if look.precision is not None:
            assert m["type"] in ("float", "list"), name


def test_every_field_gets_an_entity_unless_skipped() -> None:
    battery = comps("pylontech_pack")
    bank = comps("bank")
    for name, look in OVERLAY.items():
        if look.kind in ("skip", "cells"):
            continue
        target = battery if name in BatteryState.__struct_fields__ else bank
        assert name in target, name
        assert target[name]["name"] == look.name


def test_per_entity_mode_splits_components() -> None:
    payload = generated()["bank"][0]
    configs = entities.per_entity("ha", "bmslink_house", payload)
    assert len(configs) == len(payload["components"])
    soc = configs["ha/sensor/bmslink_house/soc/config"]
    assert soc["state_topic"] == "bms/house/state"
    assert soc["device"] == payload["device"] and "platform" not in soc
    number = configs["ha/number/bmslink_house/charge_current_limit_override/config"]
    assert number["command_topic"] == "bms/house/set"
