"""Schema size bounds: list, string and map lengths, payload size and JSON nesting are refused
with :class:`bmslink.schema.MessageError` naming the bound, never a ``RecursionError``."""

from __future__ import annotations

import contextlib
import json
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bmslink import schema

BATTERY: dict[str, Any] = {"kind": "battery", "id": "p1", "ts": 1700000000.0}
BANK: dict[str, Any] = {"kind": "bank", "id": "bank1", "ts": 1700000000.0}
INFO: dict[str, Any] = {"id": "p1"}

DECODERS = {
    "state": schema.STATE_DECODER,
    "battery_state": schema.BATTERY_STATE_DECODER,
    "bank_state": schema.BANK_STATE_DECODER,
    "info": schema.INFO_DECODER,
    "override": schema.OVERRIDE_DECODER,
    "result": schema.RESULT_DECODER,
    "switch": schema.SWITCH_DECODER,
}


def member(i: int) -> str:
    return f"m{i:04d}"


# (decoder, base payload, field, a value at the bound, a value one past it)
CASES: list[tuple[str, dict[str, Any], str, Any, Any]] = [
    ("state", BATTERY, "cell_voltages", [3.3] * 1024, [3.3] * 1025),
    ("state", BATTERY, "temperatures", [20.0] * 256, [20.0] * 257),
    ("state", BATTERY, "alarms", ["cell_overvoltage"] * 2048, ["cell_overvoltage"] * 2049),
    ("state", BATTERY, "warnings", ["high_temperature"] * 2048, ["high_temperature"] * 2049),
    ("state", BATTERY, "balancing_cells", list(range(1, 1025)), [*range(1, 1025), 1]),
    (
        "state",
        BATTERY,
        "raw_status",
        {f"s{i}": i for i in range(256)},
        {f"s{i}": i for i in range(257)},
    ),
    ("state", BATTERY, "raw_status", {"s" * 64: 1}, {"s" * 65: 1}),
    ("state", BANK, "members", [member(i) for i in range(1024)], [member(i) for i in range(1025)]),
    (
        "state",
        BANK,
        "members_online",
        [member(i) for i in range(1024)],
        [member(i) for i in range(1025)],
    ),
    (
        "state",
        BANK,
        "members_ts",
        {member(i): 1.0 for i in range(1024)},
        {member(i): 1.0 for i in range(1025)},
    ),
    (
        "state",
        BANK,
        "member_limit_sources",
        {member(i): "bms" for i in range(1024)},
        {member(i): "bms" for i in range(1025)},
    ),
    ("state", BANK, "alarms", ["x@" + member(i % 1024) for i in range(2048)], ["x"] * 2049),
    ("info", INFO, "members", [member(i) for i in range(1024)], [member(i) for i in range(1025)]),
    *(
        ("info", INFO, name, "x" * 256, "x" * 257)
        for name in (
            "name",
            "manufacturer",
            "model",
            "serial",
            "firmware",
            "hardware",
            "protocol",
            "transport",
            "service",
            "instance",
        )
    ),
    ("result", {"ok": False, "ts": 1.0}, "error", "e" * 4096, "e" * 4097),
]


@pytest.mark.parametrize(("decoder", "base", "field", "at", "past"), CASES)
def test_lengths_up_to_the_bound_pass_and_beyond_are_refused_naming_the_field(
    decoder: str, base: dict[str, Any], field: str, at: Any, past: Any
) -> None:
    dec = DECODERS[decoder]
    ok = schema.decode(dec, json.dumps({**base, field: at}))
    assert getattr(ok, field) == at
    with pytest.raises(schema.MessageError) as err:
        schema.decode(dec, json.dumps({**base, field: past}))
    assert f"$.{field}" in str(err.value)
    assert "length <=" in str(err.value)


def test_bounds_are_the_documented_constants() -> None:
    assert (schema.MAX_CELLS, schema.MAX_TEMPERATURES, schema.MAX_CODES) == (1024, 256, 2048)
    assert (schema.MAX_MEMBERS, schema.MAX_RAW_STATUS, schema.MAX_KEY) == (1024, 256, 64)
    assert (schema.MAX_TEXT, schema.MAX_ERROR) == (256, 4096)
    assert (schema.MAX_DEPTH, schema.MAX_PAYLOAD) == (32, 1 << 20)
    for name in ("MAX_CELLS", "MAX_DEPTH", "MAX_PAYLOAD", "MAX_CODES", "MAX_TEXT"):
        assert name in (schema.__doc__ or "")


def nested(depth: int, inner: str = "0") -> str:
    return "[" * depth + inner + "]" * depth


@pytest.mark.parametrize("name", sorted(DECODERS))
@pytest.mark.parametrize("as_text", [False, True])
def test_1000_deep_json_is_a_message_error_for_every_decoder(name: str, as_text: bool) -> None:
    dec = DECODERS[name]
    unclosed = '{"deep": ' + "[" * 1000
    for text in (nested(1000), '{"deep": ' + nested(1000) + "}", "{" * 1000, unclosed):
        payload: bytes | str = text if as_text else text.encode()
        with pytest.raises(schema.MessageError, match="nested deeper than 32 levels"):
            schema.decode(dec, payload)


def test_nesting_up_to_32_levels_is_parsed() -> None:
    # the object is level 1, so an unknown field may nest 31 more levels
    ok = json.dumps({**BATTERY, "future": json.loads(nested(31))})
    assert schema.decode(schema.STATE_DECODER, ok).id == "p1"
    deep = json.dumps({**BATTERY, "future": json.loads(nested(32))})
    with pytest.raises(schema.MessageError, match="32"):
        schema.decode(schema.STATE_DECODER, deep)


def test_brackets_inside_strings_do_not_count_as_nesting() -> None:
    payload = json.dumps({**BATTERY, "note": "[" * 500 + '\\"{' * 100})
    assert schema.decode(schema.STATE_DECODER, payload).id == "p1"
    assert not schema.nesting_exceeds(payload.encode())


def test_payload_over_one_mib_is_refused_before_parsing() -> None:
    big = json.dumps({**BATTERY, "pad": "x" * schema.MAX_PAYLOAD}).encode()
    with pytest.raises(schema.MessageError, match=f"{len(big)} bytes is larger than 1048576"):
        schema.decode(schema.STATE_DECODER, big)


def test_a_million_cells_is_refused() -> None:
    payload = b'{"kind":"battery","id":"p1","ts":1,"cell_voltages":[' + b"3.3," * 200_000 + b"3]}"
    with pytest.raises(schema.MessageError, match=r"length <= 1024 - at `\$.cell_voltages`"):
        schema.decode(schema.STATE_DECODER, payload)


def test_the_largest_message_the_bounds_allow_fits_the_payload_bound() -> None:
    members = [f"{i:04d}" + "m" * 44 for i in range(schema.MAX_MEMBERS)]
    codes = [f"{'a' * 60}{i:04d}@{members[i % len(members)]}" for i in range(schema.MAX_CODES)]
    bank = schema.BankState(
        id="b" * 48,
        ts=1700000000.123456,
        alarms=codes,
        warnings=codes,
        members=members,
        members_online=members,
        members_ts=dict.fromkeys(members, 1700000000.123456),
        member_limit_sources=dict.fromkeys(members, "default"),
    )
    battery = schema.BatteryState(
        id="p" * 48,
        ts=1700000000.123456,
        alarms=codes,
        warnings=codes,
        cell_voltages=[3.3123456789012345] * schema.MAX_CELLS,
        balancing_cells=list(range(1, schema.MAX_CELLS + 1)),
        temperatures=[-12.345678901234567] * schema.MAX_TEMPERATURES,
        raw_status={f"{i:03d}" + "k" * 61: -(2**63) for i in range(schema.MAX_RAW_STATUS)},
    )
    for message in (bank, battery):
        encoded = schema.encode(message)
        assert len(encoded) < schema.MAX_PAYLOAD, len(encoded)
        assert schema.decode(schema.STATE_DECODER, encoded) == message


@settings(max_examples=200, deadline=None)
@given(
    shape=st.lists(st.sampled_from(["[", "{"]), min_size=1, max_size=80),
    decoder=st.sampled_from(sorted(DECODERS)),
)
def test_nesting_property(shape: list[str], decoder: str) -> None:
    """Any nesting: refused with MessageError iff deeper than MAX_DEPTH; never another error."""
    inner = "0"
    for opener in reversed(shape):
        inner = f"[{inner}]" if opener == "[" else f'{{"k": {inner}}}'
    payload = '{"id": "p1", "kind": "battery", "ts": 1, "x": ' + inner + "}"
    depth = len(shape) + 1
    assert schema.nesting_exceeds(payload.encode()) == (depth > schema.MAX_DEPTH)
    if depth > schema.MAX_DEPTH:
        with pytest.raises(schema.MessageError, match="nested deeper than 32 levels"):
            schema.decode(DECODERS[decoder], payload)
    else:
        with contextlib.suppress(schema.MessageError):  # a type error, never a RecursionError
            schema.decode(DECODERS[decoder], payload)


@settings(max_examples=100, deadline=None)
@given(
    field=st.sampled_from(["cell_voltages", "temperatures", "alarms", "balancing_cells"]),
    extra=st.integers(min_value=-3, max_value=3),
)
def test_list_length_property(field: str, extra: int) -> None:
    bound = {
        "cell_voltages": schema.MAX_CELLS,
        "temperatures": schema.MAX_TEMPERATURES,
        "alarms": schema.MAX_CODES,
        "balancing_cells": schema.MAX_CELLS,
    }[field]
    item: Any = {"cell_voltages": 3.3, "temperatures": 20.0, "alarms": "a", "balancing_cells": 1}[
        field
    ]
    n = bound + extra
    payload = msgspec.json.encode({**BATTERY, field: [item] * n})
    if n <= bound:
        assert len(getattr(schema.decode(schema.STATE_DECODER, payload), field)) == n
    else:
        with pytest.raises(schema.MessageError, match=f"length <= {bound}"):
            schema.decode(schema.STATE_DECODER, payload)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400) | st.text(max_size=400))
def test_any_bytes_give_a_message_or_a_message_error(payload: bytes | str) -> None:
    for dec in DECODERS.values():
        with contextlib.suppress(schema.MessageError):
            schema.decode(dec, payload)
