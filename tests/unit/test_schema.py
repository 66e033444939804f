"""The message schema: round trips, golden wire format, constraints, non-finite floats."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bmslink import schema
from bmslink.schema import BankState, BatteryInfo, BatteryState, LimitsOverride, SetResult

GOLDEN = Path(__file__).resolve().parents[1] / "golden"

EXAMPLES: dict[str, msgspec.Struct] = {
    "battery_state": BatteryState(
        id="rack1-2",
        ts=1700000000.5,
        voltage=49.394,
        current=-2.9,
        power=-143.24,
        soc=47.0,
        soh=98.0,
        remaining_capacity=23.5,
        full_capacity=50.0,
        cycles=99,
        cell_voltages=[3.315, 3.316, 3.317],
        cell_min=3.315,
        cell_max=3.317,
        cell_avg=3.316,
        cell_delta=0.002,
        cell_min_index=1,
        cell_max_index=3,
        temperatures=[24.2, 24.2, 24.2],
        bms_temperature=30.4,
        temperature_min=24.2,
        temperature_max=24.2,
        balancing_cells=[3],
        charge_enabled=True,
        discharge_enabled=True,
        alarms=["cell_overvoltage"],
        raw_status={"info_flag": 17},
        energy_charged=1.25,
        energy_discharged=0.75,
    ),
    "bank_state": BankState(
        id="bank1",
        ts=1700000001.0,
        voltage=49.4,
        current=-5.5,
        soc=46.5,
        charge_voltage_limit=53.2,
        discharge_voltage_limit=44.5,
        charge_current_limit=50.0,
        discharge_current_limit=100.0,
        members=["rack1-2", "rack1-3"],
        members_online=["rack1-2"],
        degraded=True,
        cell_min_member="rack1-2",
        cell_max_member="rack1-2",
        limits_source="override",
        override_expires=1700000060.0,
        warnings=["member_missing@rack1-3"],
    ),
    "battery_info": BatteryInfo(
        id="rack1-2",
        manufacturer="Pylontech",
        model="US2000C",
        serial="PPTAP01234567890",
        firmware="1.7",
        cell_count=15,
        design_capacity=50.0,
        protocol="pylontech-rs485",
        transport="/dev/serial/by-id/usb-FTDI-if00-port0",
        address=2,
        service="pylontech-rs485-reader",
        instance="rack1",
    ),
    "limits_override": LimitsOverride(charge_current_limit=20.0, ttl=300.0),
    "set_result": SetResult(ok=False, ts=1700000002.0, error="ttl: Expected `float` <= 3600.0"),
}


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_golden_wire_format(name: str) -> None:
    """A change of the wire format (a renamed or re-ordered field) must fail here."""
    encoded = schema.encode(EXAMPLES[name])
    path = GOLDEN / f"{name}.json"
    if os.environ.get("BMSLINK_UPDATE_GOLDEN"):
        path.write_bytes(encoded + b"\n")
    assert path.read_bytes().rstrip(b"\n") == encoded
    assert msgspec.json.decode(path.read_bytes(), type=type(EXAMPLES[name])) == EXAMPLES[name]


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_round_trip_and_constraints(name: str) -> None:
    message = EXAMPLES[name]
    schema.validate(message)
    assert msgspec.json.decode(schema.encode(message), type=type(message)) == message


def test_state_topic_decodes_battery_and_bank_by_kind() -> None:
    battery = schema.decode(schema.STATE_DECODER, schema.encode(EXAMPLES["battery_state"]))
    bank = schema.decode(schema.STATE_DECODER, schema.encode(EXAMPLES["bank_state"]))
    assert isinstance(battery, BatteryState)
    assert isinstance(bank, BankState)
    assert json.loads(schema.encode(bank))["kind"] == "bank"


def test_unknown_fields_accepted_on_the_bus_but_not_in_commands() -> None:
    doc = json.loads(schema.encode(EXAMPLES["battery_state"]))
    doc["added_in_v2"] = 42
    state = schema.decode(schema.STATE_DECODER, json.dumps(doc))
    assert state.voltage == 49.394
    with pytest.raises(schema.MessageError, match="unknown field `chrage_current_limit`"):
        schema.decode(schema.OVERRIDE_DECODER, b'{"chrage_current_limit": 5}')


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        (b'{"kind":"battery","id":"x","ts":1,"soc":100.5}', "$.soc"),
        (b'{"kind":"battery","id":"x","ts":1,"cell_voltages":[3.3,45.0]}', "$.cell_voltages[1]"),
        (b'{"kind":"battery","id":"Bad Id","ts":1}', "$.id"),
        (b'{"kind":"battery","id":"x","ts":1,"cell_min_index":0}', "$.cell_min_index"),
        (b'{"kind":"battery","id":"x","ts":1,"voltage":"48"}', "$.voltage"),
        (b'{"kind":"bank","id":"b","ts":1,"limits_source":"magic"}', "$.limits_source"),
    ],
)
def test_out_of_range_or_wrong_type_is_refused_naming_the_field(payload: bytes, field: str) -> None:
    with pytest.raises(schema.MessageError) as err:
        schema.decode(schema.STATE_DECODER, payload)
    assert field in str(err.value)


@pytest.mark.parametrize(
    "payload", [b'{"ttl": 0}', b'{"ttl": 3601}', b'{"charge_current_limit": -1}']
)
def test_override_bounds(payload: bytes) -> None:
    with pytest.raises(schema.MessageError):
        schema.decode(schema.OVERRIDE_DECODER, payload)


def test_override_default_ttl_is_60_s() -> None:
    assert schema.decode(schema.OVERRIDE_DECODER, b'{"discharge_current_limit": 10}').ttl == 60.0


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_floats_refused_when_built(bad: float) -> None:
    with pytest.raises(ValueError, match="non-finite"):
        BatteryState(id="x", ts=1.0, current=bad)
    with pytest.raises(ValueError, match=r"cell_voltages\[1\]"):
        BatteryState(id="x", ts=1.0, cell_voltages=[3.3, bad])


def test_non_finite_json_literals_refused_when_decoded() -> None:
    for literal in (b"NaN", b"Infinity", b"1e999"):
        with pytest.raises(schema.MessageError):
            schema.decode(
                schema.STATE_DECODER,
                b'{"kind":"battery","id":"x","ts":1,"voltage":' + literal + b"}",
            )


def test_field_metadata_gives_units_once() -> None:
    meta = schema.field_meta(BatteryState)
    assert meta["voltage"]["unit"] == "V"
    assert meta["current"]["unit"] == "A"
    assert "charging" in meta["current"]["description"]
    assert meta["energy_charged"] == meta["energy_charged"] | {
        "unit": "kWh",
        "device_class": "energy",
        "state_class": "total_increasing",
    }
    assert meta["soc"]["le"] == 100
    assert "device_class" not in meta["remaining_capacity"]  # Ah has no HA device class
    assert meta["remaining_capacity"]["unit"] == "Ah"


finite = st.floats(allow_nan=False, allow_infinity=False)


@given(
    voltage=st.none() | st.floats(0, 1000),
    current=st.none() | st.floats(-10000, 10000),
    soc=st.none() | st.floats(0, 100),
    cells=st.lists(st.floats(0, 10), max_size=32),
    alarms=st.lists(st.from_regex(r"\A[a-z][a-z0-9_]{0,20}\Z"), max_size=4),
)
def test_battery_state_round_trip_property(
    voltage: float | None,
    current: float | None,
    soc: float | None,
    cells: list[float],
    alarms: list[str],
) -> None:
    state = BatteryState(
        id="p1",
        ts=1.0,
        voltage=voltage,
        current=current,
        soc=soc,
        cell_voltages=cells,
        alarms=alarms,
    )
    assert schema.decode(schema.STATE_DECODER, schema.encode(state)) == state
