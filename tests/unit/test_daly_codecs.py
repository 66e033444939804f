"""Daly codecs: check values, hypothesis round trips, stream reassembly, and mutated frames.

Mutation runs: ``BMSLINK_FUZZ_RUNS`` mutated frames per codec (default 3000, so the suite stays
fast); ``BMSLINK_FUZZ_RUNS=100000 uv run pytest tests/unit/test_daly_codecs.py -k mutated`` is the
full 1e5 run of the issue. Every mutated frame must either decode or raise the codec's own error.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bmslink import alarms as alarm_vocabulary
from bmslink.protocols import daly_81 as p81
from bmslink.protocols import daly_a5 as a5
from bmslink.protocols import daly_d2 as d2
from bmslink.protocols import daly_sinowealth as sino
from bmslink.protocols.daly_modbus import (
    DalyModbusError,
    ModbusStream,
    build_read,
    build_read_response,
    build_write_single,
    crc16_modbus,
    parse_frame,
    registers_from,
)
from tests.vectors import load_vectors

RUNS = int(os.environ.get("BMSLINK_FUZZ_RUNS", "3000"))
VECTORS = load_vectors("daly")["vectors"]
byte = st.integers(0, 255)


def test_check_values() -> None:
    assert crc16_modbus(b"123456789") == 0x4B37
    assert sino.crc8_smbus(b"123456789") == 0xF4
    assert a5.build_request(0x90, 0x80).hex() == "a58090080000000000000000bd"
    assert a5.build_request(0x90, 0x40, fill=0xAA).hex() == "a54090080000000000000000cd".replace(
        "0000000000000000cd", "aaaaaaaaaaaaaaaacd"
    )
    assert a5.build_request(0x90, a5.host_address(2)).hex() == "a54190080000000000000000" + "7e"
    assert a5.build_switch(True, True, 0x40).hex() == "a540da080100000000000000c8"
    assert a5.build_switch(True, False, 0x80).hex() == "a580da08000000000000000007"
    assert d2.status_request().hex() == "d2030000003ed7b9"
    assert d2.status_request(80).hex() == "d203000000505655"
    assert d2.version_request().hex() == "d20300a900208791"
    assert d2.build_switch(False, False).hex() == "d20600a600007a4a"
    assert [r.hex() for r in p81.status_requests(1)] == ["8103000000405bfa", "81030041003e8bce"]
    assert sino.build_request(0x10).hex() == "0a1004"


def test_every_alarm_code_is_in_the_vocabulary() -> None:
    codes = {a.code for a in a5.ALARM_BITS} | {c for _, c in sino.BATTERY_STATUS_BITS.values()}
    assert codes <= set(alarm_vocabulary.CODES)
    # every bit of bytes 0-2 and 4-5 is named, levels alternate warning/alarm in bytes 0-3
    assert len({(a.byte, a.bit) for a in a5.ALARM_BITS}) == len(a5.ALARM_BITS) == 8 * 3 + 4 + 16 + 4


def test_a5_current_polarity_options() -> None:
    data = (530).to_bytes(2, "big") + bytes(2) + (30063).to_bytes(2, "big") + (956).to_bytes(2)
    assert a5.decode_soc(data).current == -6.3
    assert a5.decode_soc(data, invert_current=True).current == 6.3
    high = (530).to_bytes(2, "big") + bytes(2) + (40000).to_bytes(2, "big") + (956).to_bytes(2)
    assert a5.decode_soc(high, invert_current=True).current == 1000.0  # unsigned (doc §4.4)
    assert a5.decode_soc(bytes(8)).asleep


def test_a5_temperatures_above_87_c_are_unsigned() -> None:
    t = a5.decode_temperature_extremes(bytes((130, 1, 128, 2, 0, 0, 0, 0)))
    assert (t.max_temperature, t.min_temperature) == (90.0, 88.0)


def test_a5_multi_frame_assembly_tolerates_zero_based_and_reports_gaps() -> None:
    f1 = bytes((1,)) + (3300).to_bytes(2, "big") * 3 + b"\x00"
    f2 = bytes((2,)) + (3310).to_bytes(2, "big") * 3 + b"\x00"
    assert a5.assemble_cells({1: f1, 2: f2}, 4) == [3.3, 3.3, 3.3, 3.31]
    zero = {0: bytes((0,)) + f1[1:], 1: bytes((1,)) + f2[1:]}
    assert a5.assemble_cells(zero, 6) == [3.3] * 3 + [3.31] * 3
    with pytest.raises(a5.MultiFrameError):
        a5.assemble_cells({1: f1}, 4)
    temps = {1: bytes((1, 61, 62, 0, 0, 0, 0, 0))}
    assert a5.assemble_temperatures(temps, 2) == [21.0, 22.0]


@settings(max_examples=300, deadline=None)
@given(address=byte, command=byte, data=st.binary(min_size=8, max_size=8))
def test_a5_frame_round_trip(address: int, command: int, data: bytes) -> None:
    frame = a5.build_frame(address, command, data)
    parsed = a5.parse_frame(frame)
    assert (parsed.address, parsed.command, parsed.data) == (address, command, data)


@settings(max_examples=200, deadline=None)
@given(
    frames=st.lists(
        st.tuples(st.integers(1, 16), st.binary(min_size=8, max_size=8)), min_size=1, max_size=6
    ),
    garbage=st.binary(max_size=20).filter(lambda b: 0xA5 not in b),
    cuts=st.lists(st.integers(1, 40), max_size=8),
)
def test_a5_stream_reassembles_split_and_merged_frames(
    frames: list[tuple[int, bytes]], garbage: bytes, cuts: list[int]
) -> None:
    wire = garbage + b"".join(a5.build_frame(1, 0x95, bytes((n,)) + d[1:]) for n, d in frames)
    stream = a5.FrameStream(board=1, commands={0x95})
    got: list[a5.A5Frame] = []
    pos = 0
    for cut in cuts:
        got += stream.feed(wire[pos : pos + cut])
        pos += cut
    got += stream.feed(wire[pos:])
    assert [f.data for f in got] == [bytes((n,)) + d[1:] for n, d in frames]


@settings(max_examples=300, deadline=None)
@given(
    volts=st.integers(0, 0xFFFF),
    raw=st.integers(0, 0xFFFF),
    soc=st.integers(0, 1000),
)
def test_a5_soc_round_trip(volts: int, raw: int, soc: int) -> None:
    data = volts.to_bytes(2, "big") + bytes(2) + raw.to_bytes(2, "big") + soc.to_bytes(2, "big")
    values = a5.decode_soc(data)
    assert values.total_voltage == volts / 10
    assert round(30000 - values.current * 10) == raw
    assert values.soc == soc / 10


@settings(max_examples=300, deadline=None)
@given(address=byte, registers=st.lists(st.integers(0, 0xFFFF), min_size=1, max_size=125))
def test_modbus_read_response_round_trip(address: int, registers: list[int]) -> None:
    frame = parse_frame(build_read_response(address, registers), address=address, function=3)
    assert registers_from(frame, len(registers)) == registers


@settings(max_examples=200, deadline=None)
@given(
    count=st.integers(1, 80),
    garbage=st.binary(max_size=30),
    cuts=st.lists(st.integers(1, 60), max_size=10),
)
def test_modbus_stream_reassembles_across_notifications(
    count: int, garbage: bytes, cuts: list[int]
) -> None:
    replies = [build_read_response(0xD2, list(range(count))), build_write_single(0xD2, 0xA5, 1)]
    wire = garbage + replies[0] + replies[1]
    stream = ModbusStream({0xD2})
    got: list[bytes] = []
    pos = 0
    for cut in cuts:
        got += stream.feed(wire[pos : pos + cut])
        pos += cut
    got += stream.feed(wire[pos:])
    assert got[-2:] == replies


@settings(max_examples=200, deadline=None)
@given(regs=st.lists(st.integers(0, 0xFFFF), min_size=80, max_size=80))
def test_d2_and_p81_decode_any_register_values(regs: list[int]) -> None:
    status = d2.decode_status(dict(enumerate(regs)))
    assert len(status.cell_voltages) <= 32 and len(status.temperatures) <= 8
    p81_regs = dict(enumerate(regs + regs[:47]))
    s81 = p81.decode_status(p81_regs)
    assert len(s81.cell_voltages) <= 48


@settings(max_examples=300, deadline=None)
@given(command=st.integers(1, 0x18), data=st.binary(min_size=4, max_size=4))
def test_sinowealth_round_trip(command: int, data: bytes) -> None:
    request = sino.build_request(command)
    payload = data[: request[2]]
    response = payload + bytes((sino.crc8_smbus(request + payload),))
    assert sino.parse_response(request, response) == payload
    assert sino.decode(request, response).raw == int.from_bytes(
        payload, "big", signed=command == 0x10
    )


# --- mutated frames ------------------------------------------------------------------------


def _mutate(rng: random.Random, frame: bytes) -> bytes:
    data = bytearray(frame)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(6)
        if op == 0 and data:
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        elif op == 1 and data:
            data[rng.randrange(len(data))] = rng.randrange(256)
        elif op == 2:
            data.insert(rng.randint(0, len(data)), rng.randrange(256))
        elif op == 3 and data:
            del data[rng.randrange(len(data))]
        elif op == 4:
            del data[rng.randint(0, len(data)) :]
        else:
            data += bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
    return bytes(data)


def _a5(frame: bytes) -> Any:
    f = a5.parse_frame(frame)
    for decode in (
        a5.decode_soc,
        a5.decode_cell_extremes,
        a5.decode_temperature_extremes,
        a5.decode_mosfet,
        a5.decode_status,
        a5.decode_cell_frame,
        a5.decode_temperature_frame,
        a5.decode_alarms,
        a5.decode_balancing,
        a5.decode_text_frame,
        a5.decode_rated,
    ):
        decode(f.data)
    a5.FrameStream(board=1).feed(frame)
    return f


def _modbus(frame: bytes) -> Any:
    ModbusStream({0xD2, 0x51}).feed(frame)
    f = parse_frame(frame)
    regs = registers_from(f)
    d2.decode_status(dict(enumerate(regs)))
    return f


def _sinowealth(frame: bytes) -> Any:
    request, response = frame[:3], frame[3:]
    return sino.decode(request, response)


CODECS: dict[str, tuple[Callable[[bytes], Any], type[Exception], list[bytes]]] = {
    "a5": (
        _a5,
        a5.DalyA5Error,
        [
            bytes.fromhex(v["response"])
            for v in VECTORS
            if v["protocol"] == "daly_a5" and v["response"]
        ],
    ),
    "modbus": (
        _modbus,
        DalyModbusError,
        [
            bytes.fromhex(v["response"])
            for v in VECTORS
            if v["protocol"] in ("daly_d2_modbus", "daly_p81_modbus") and v["response"]
        ]
        + [build_read(0xD2, 0, 62)],
    ),
    "sinowealth": (
        _sinowealth,
        sino.DalySinowealthError,
        [
            bytes.fromhex(v["request"] + v["response"])
            for v in VECTORS
            if v["protocol"] == "daly_sinowealth" and v["response"]
        ],
    ),
}


@pytest.mark.parametrize("codec", sorted(CODECS))
def test_mutated_frames_raise_only_the_codecs_error(codec: str) -> None:
    decode, error, seeds = CODECS[codec]
    assert seeds
    rng = random.Random(f"daly-{codec}")
    accepted = refused = 0
    for _ in range(RUNS):
        frame = _mutate(rng, rng.choice(seeds))
        try:
            decode(frame)
        except error:
            refused += 1
        else:
            accepted += 1
    assert accepted + refused == RUNS
    assert refused > RUNS // 2  # most mutations break the checksum
