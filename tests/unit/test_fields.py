"""Tests of the generic field-table decoder (bmslink.protocols.fields)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bmslink.protocols.fields import Field, decode_fields, encode_fields, table_size


class ShortError(ValueError):
    pass


TABLE = (
    Field("current", 0, 2, True, 0.1, "A", "100 mA, positive = charging"),
    Field("voltage", 2, 2, False, 0.001, "V", "mV"),
    Field("p", 4, 1),
    Field("capacity", 5, 3, False, 0.001, "Ah", "u24 mAh"),
    Field("temperature", 8, 2, True, 0.1, "°C", "0.1 K", bias=2731),
)


def test_table_size() -> None:
    assert table_size(TABLE) == 10
    assert table_size(()) == 0
    assert table_size((Field("x", 4, 1), Field("y", 0, 2))) == 5


def test_decode_big_endian_signed_scaled() -> None:
    data = bytes.fromhex("FFD8C0F2040121100BC3")
    out = decode_fields(TABLE, data)
    assert out == {
        "current": -4.0,
        "voltage": 49.394,
        "p": 4,
        "capacity": 74.0,
        "temperature": 28.0,
    }
    assert isinstance(out["p"], int)
    assert isinstance(out["voltage"], float)
    assert list(out) == [f.name for f in TABLE]


def test_decimal_scales_are_correctly_rounded() -> None:
    # raw * 0.001 would give 3.2930000000000001-style artefacts; raw / 1000 does not.
    table = (Field("v", 0, 2, scale=0.001), Field("i", 2, 2, True, 0.1))
    out = decode_fields(table, bytes.fromhex("0CDDFFFA"))
    assert out["v"] == 3.293
    assert out["i"] == -0.6
    assert str(out["i"]) == "-0.6"


def test_base_offset() -> None:
    data = b"\xaa\xbb" + bytes.fromhex("00010002030000040AAB")
    out = decode_fields(TABLE, data, base=2)
    assert out["current"] == 0.1
    assert out["voltage"] == 0.002
    assert out["p"] == 3
    assert out["capacity"] == 0.004
    assert out["temperature"] == 0.0


def test_too_short_raises_given_error_with_lengths() -> None:
    with pytest.raises(ShortError, match=r"needs 10 bytes.*got 9"):
        decode_fields(TABLE, bytes(9), error=ShortError)
    with pytest.raises(ShortError, match=r"needs 12 bytes.*got 11"):
        decode_fields(TABLE, bytes(11), base=2, error=ShortError)
    with pytest.raises(ValueError, match="needs"):
        decode_fields(TABLE, b"")


def test_encode_inverse() -> None:
    values = {"current": -4.0, "voltage": 49.394, "p": 4, "capacity": 74.0, "temperature": 28.0}
    data = encode_fields(TABLE, values)
    assert data == bytes.fromhex("FFD8C0F2040121100BC3")
    assert decode_fields(TABLE, data) == values


def test_encode_gaps_and_size() -> None:
    table = (Field("a", 1, 1), Field("b", 4, 2))
    assert encode_fields(table, {"a": 1, "b": 0x0203}, fill=0xEE) == bytes.fromhex("EE01EEEE0203")
    assert encode_fields(table, {"a": 1, "b": 2}, size=8) == bytes.fromhex("0001000000020000")
    with pytest.raises(ShortError, match="smaller"):
        encode_fields(table, {"a": 1, "b": 2}, size=3, error=ShortError)


def test_encode_errors() -> None:
    with pytest.raises(ShortError, match="no value for field 'voltage'"):
        encode_fields(TABLE, {"current": 0}, error=ShortError)
    with pytest.raises(ShortError, match=r"'p'.*range \[0, 255\]"):
        encode_fields(
            TABLE,
            {"current": 0, "voltage": 0, "p": 256, "capacity": 0, "temperature": 0},
            error=ShortError,
        )
    with pytest.raises(ShortError, match=r"'current'.*s16"):
        encode_fields(
            TABLE,
            {"current": 3276.8, "voltage": 0, "p": 0, "capacity": 0, "temperature": 0},
            error=ShortError,
        )


def test_field_validation_and_helpers() -> None:
    with pytest.raises(ValueError, match="size"):
        Field("x", 0, 0)
    with pytest.raises(ValueError, match="scale"):
        Field("x", 0, 1, scale=0)
    f = Field("x", 3, 3, signed=True)
    assert f.end == 6
    assert f.raw_range() == (-(1 << 23), (1 << 23) - 1)
    assert Field("t", 0, 2, True, 0.1, bias=2731).to_value(2731) == 0.0
    assert Field("w", 0, 2, scale=2.5).to_value(4) == 10.0  # non-decimal scale: multiply
    assert Field("w", 0, 2, scale=2.5).to_raw(10.0) == 4
    assert Field("x", 0, 1) == Field("x", 0, 1)
    assert hash(Field("x", 0, 1)) == hash(Field("x", 0, 1))


@settings(max_examples=300, deadline=None)
@given(
    current=st.integers(-32768, 32767),
    voltage=st.integers(0, 0xFFFF),
    p=st.integers(0, 0xFF),
    capacity=st.integers(0, 0xFFFFFF),
    temperature=st.integers(-32768, 32767),
)
def test_roundtrip_raw(current: int, voltage: int, p: int, capacity: int, temperature: int) -> None:
    data = (
        current.to_bytes(2, "big", signed=True)
        + voltage.to_bytes(2, "big")
        + bytes((p,))
        + capacity.to_bytes(3, "big")
        + temperature.to_bytes(2, "big", signed=True)
    )
    decoded = decode_fields(TABLE, data)
    assert encode_fields(TABLE, decoded) == data
