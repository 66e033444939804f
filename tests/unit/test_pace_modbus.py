"""PACE BMS Modbus codec (bmslink.protocols.pace_modbus + modbus_rtu): vectors, every register,
signedness, strings, bitfields, and property tests."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bmslink import alarms as alarm_codes
from bmslink.protocols import modbus_rtu as rtu
from bmslink.protocols import pace_modbus as pace
from tests.vectors import load_vectors

VECTORS: list[dict[str, Any]] = load_vectors("pace_modbus")["vectors"]
SYNTHETIC = next(v for v in VECTORS if v["kind"] == "synthetic")
OBSERVATION = next(v for v in VECTORS if v["kind"] == "observation_no_frame")


# --- CRC and frames (§4, §5) -----------------------------------------------------------------


def test_crc16_modbus_check_value_and_worked_example() -> None:
    assert rtu.crc16(b"123456789") == 0x4B37
    assert rtu.crc16(bytes.fromhex("010300000025")) == 0x1184
    assert rtu.build_read_request(1, 0, 37).hex() == "0103000000258411"


@pytest.mark.parametrize(
    "vector", [v for v in VECTORS if v["request"]], ids=lambda v: v["vector_id"]
)
def test_every_vector_request_is_what_we_build(vector: dict[str, Any]) -> None:
    raw = bytes.fromhex(vector["request"])
    req = rtu.parse_request(raw)
    assert rtu.build_read_request(req.slave, req.start, req.count, req.function) == raw


@pytest.mark.parametrize(
    ("slave", "start", "count", "wire"),
    [
        (1, 60, 55, "0103003c0037c410"),
        (1, 150, 30, "01030096001e25ee"),
        (2, 0, 37, "0203000000258422"),
        (3, 0, 37, "03030000002585f3"),
        (4, 0, 37, "0403000000258444"),
        (15, 0, 37, "0f03000000258" + "53f"),
    ],
)
def test_block_requests_match_the_reference(slave: int, start: int, count: int, wire: str) -> None:
    assert rtu.build_read_request(slave, start, count).hex() == wire


def test_real_exception_reply_is_a_typed_error_with_its_code() -> None:
    vector = next(v for v in VECTORS if v["response"] == "018302c0f1")
    with pytest.raises(rtu.ExceptionReplyError) as info:
        rtu.parse_read_response(bytes.fromhex(vector["response"]), slave=1, count=8)
    assert (info.value.slave, info.value.function, info.value.code) == (1, 3, 2)
    assert info.value.name == "ILLEGAL_DATA_ADDRESS"
    assert rtu.build_exception(1, 3, 2).hex() == "018302c0f1"


def test_real_zero_flag_reply_decodes_to_no_alarms() -> None:
    vector = next(v for v in VECTORS if v["response"] == "010308000000000000000095d7")
    regs = rtu.parse_read_response(bytes.fromhex(vector["response"]), slave=1, count=4)
    assert list(regs) == vector["reference_decode"]
    values = pace.decode_block(9, regs)
    assert values == {
        "warning_flags": 0,
        "protection_flags": 0,
        "status_flags": 0,
        "balance_flags": 0,
    }
    assert pace.decode_alarms(0, 0, 0) == ([], [])


def test_synthetic_live_block_values_come_out_as_stated() -> None:
    raw = bytes.fromhex(SYNTHETIC["response"])
    regs = rtu.parse_read_response(raw, slave=1, count=37)
    assert list(regs) == SYNTHETIC["reference_decode"]
    live = pace.decode_live(regs)
    sv = SYNTHETIC["source_values"]
    assert live.current == sv["Current_A"] == 4.67  # + = charging
    assert live.voltage == sv["Voltage_V(assumed)"]
    assert (live.soc, live.soh) == (sv["SoC"], sv["SoH"])
    assert live.remaining_capacity == sv["Capacity_Remain_Ah"]
    assert live.full_capacity == sv["Capacity_Full_Ah"]
    assert live.design_capacity == 105.0
    assert live.cycles == sv["Cycles"]
    assert live.cells(13) == [mv / 1000 for mv in sv["Vcell_mV"]]
    assert live.cell_voltages[13:] == (0.0, 0.0, 0.0)
    assert round(sum(live.cells(13)), 3) == 51.751
    assert list(live.cell_temperatures) == sv["Tcell_C"]
    assert live.mosfet_temperature == sv["T_MOSFET_C"]
    assert live.ambient_temperature == sv["T_ENV_C"]
    assert live.status_flags == 0x0D00
    assert (live.charging, live.discharging) == (True, False)
    assert (live.charge_mosfet, live.discharge_mosfet) == (True, True)
    assert live.alarms() == ([], [])
    assert pace.balancing_cells(live.balance_flags, 13) == []


def test_observation_library_cell_average_bug_is_not_ours() -> None:
    cells = OBSERVATION["source_values"]["Vcell_01_13"]
    encoded = pace.encode_block(
        0, 37, {f"cell_voltage_{i}": v for i, v in enumerate(cells, 1)} | {"current": -2.88}
    )
    live = pace.decode_live(encoded)
    assert live.current == -2.88  # discharging is negative
    assert live.cells(13) == cells
    assert round(sum(live.cells(13)) / 13, 4) == 3.8347  # all 13 cells, not 12 (§8.3)


@pytest.mark.parametrize(
    ("frame", "error"),
    [
        ("01034a01d314", rtu.FrameError),  # truncated: byte count says 74
        ("010308000000000000000095d8", rtu.CrcError),
        ("0183", rtu.FrameError),
        ("018302c0f0", rtu.CrcError),
        ("020308000000000000000095e4", rtu.CrcError),
    ],
)
def test_bad_replies_raise_typed_errors(frame: str, error: type[Exception]) -> None:
    with pytest.raises(error):
        rtu.parse_read_response(bytes.fromhex(frame), slave=1, count=4)


def test_reply_from_another_slave_or_with_other_count_is_refused() -> None:
    reply = rtu.build_read_response(2, [0, 0, 0, 0])
    with pytest.raises(rtu.FrameError, match="slave 2"):
        rtu.parse_read_response(reply, slave=1, count=4)
    with pytest.raises(rtu.FrameError, match="4 registers, 5"):
        rtu.parse_read_response(reply, slave=2, count=5)
    with pytest.raises(rtu.FrameError, match="function"):
        rtu.parse_read_response(reply, slave=2, function=4)


def test_write_frames_match_the_reference() -> None:
    assert rtu.build_write_request(1, 112, [20]).hex() == "011000700001020014ad6f"
    assert rtu.build_write_response(1, 112, 1).hex() == "0110007000010012"
    req = rtu.parse_request(bytes.fromhex("011000700001020014ad6f"))
    assert (req.function, req.start, req.count, req.values) == (0x10, 112, 1, (20,))


# --- every register of the map, table-driven -------------------------------------------------


def _example(reg: pace.Register) -> pace.Value:
    """A value that exercises the register: negative for signed, max-ish for unsigned."""
    if reg.kind == "ascii":
        return f"R{reg.reg}-x"
    if reg.kind == "s16":
        raw = -1234
    elif reg.kind == "u8":
        raw = 200
    elif reg.kind == "bits":
        raw = 0xA5C3
    else:
        raw = 54321
    return (
        raw if reg.scale == 1 else raw / round(1 / reg.scale) if reg.scale < 1 else raw * reg.scale
    )


def _expected_raw(reg: pace.Register) -> int:
    return {"s16": -1234 & 0xFFFF, "u8": 200, "bits": 0xA5C3, "u16": 54321}[reg.kind]


@pytest.mark.parametrize(
    "reg", [r for r in pace.REGISTER_MAP if r.kind != "ascii"], ids=lambda r: r.name
)
def test_every_numeric_register_decodes_from_its_own_address(reg: pace.Register) -> None:
    image = [0] * pace.MAP_END
    image[reg.reg] = _expected_raw(reg)
    values = pace.decode_block(0, image[:125]) | pace.decode_block(125, image[125:])
    assert values[reg.name] == pytest.approx(_example(reg))
    others = {
        k: v for k, v in values.items() if k != reg.name and not isinstance(v, str) and v != 0
    }
    assert others == {}  # nothing else moved
    # and back: the encoder puts the raw value at the same register
    assert pace.encode_block(reg.reg, 1, {reg.name: _example(reg)}) == [_expected_raw(reg)]
    # a single-register read of it decodes the same (the seed reads one register at a time)
    assert pace.decode_block(reg.reg, [_expected_raw(reg)]) == {reg.name: values[reg.name]}


@pytest.mark.parametrize(
    "reg", [r for r in pace.REGISTER_MAP if r.kind == "ascii"], ids=lambda r: r.name
)
def test_every_string_register_decodes(reg: pace.Register) -> None:
    regs = pace.encode_ascii("P13S120A-12290-2.05T")
    assert pace.decode_block(reg.reg, regs) == {reg.name: "P13S120A-12290-2.05T"}
    assert regs[:5] == [0x5031, 0x3353, 0x3132, 0x3041, 0x2D31]  # §6.7 worked example


def test_map_is_in_document_order_without_overlaps() -> None:
    ends = 0
    for reg in pace.REGISTER_MAP:
        assert reg.reg >= ends
        ends = reg.end
    assert ends == pace.MAP_END
    assert {r.reg for r in pace.REGISTER_MAP if r.kind != "ascii"} == (
        set(range(8)) | set(range(9, 13)) | set(range(15, 37)) | set(range(60, 115))
    )


def test_map_agrees_with_the_machine_readable_reference() -> None:
    reference = load_vectors("register_maps")["pace_modbus_v1_3"]["registers"]
    ours = {r.reg: r for r in pace.REGISTER_MAP}
    checked = 0
    for entry in reference:
        if not isinstance(entry["reg"], int) or entry["reg"] not in ours:
            continue
        reg = ours[entry["reg"]]
        if entry["reg"] >= 60 and "name" in entry:
            assert reg.name.split("_")[0] == entry["name"].split("_")[0], entry
        if entry.get("type") == "int16":
            assert reg.kind == "s16", entry
        checked += 1
    assert checked >= 60


# --- signedness, u8, strings -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "celsius"), [(0xFFCE, -5.0), (0xFF9C, -10.0), (0x8000, -3276.8), (0x00DF, 22.3)]
)
def test_temperatures_are_signed(raw: int, celsius: float) -> None:
    regs = [0] * 37
    regs[31] = regs[35] = regs[36] = raw
    live = pace.decode_live(regs)
    assert live.cell_temperatures[0] == celsius
    assert live.mosfet_temperature == celsius
    assert live.ambient_temperature == celsius
    settings = pace.decode_settings([0] * 24 + [raw] + [0] * 30)
    assert settings.values["charge_ot_alarm"] == celsius


def test_negative_current_is_discharging() -> None:
    regs = [0] * 37
    regs[0] = 0xFEE0  # -288 → -2.88 A
    assert pace.decode_live(regs).current == -2.88


def test_u8_with_a_high_byte_is_invalid() -> None:
    regs = [0] * 37
    regs[2] = 0x0156  # SOC with high byte 0x01
    regs[3] = 0x0064
    live = pace.decode_live(regs)
    assert live.soc is None
    assert live.soh == 100


@pytest.mark.parametrize(
    ("raw", "text"),
    [
        (b"P13S120A-12290-2.05T", "P13S120A-12290-2.05T"),
        (b"ABC" + b"\x00" * 17, "ABC"),  # odd length, 0x00 padding
        (b"ABCDE" + b"\xff" * 15, "ABCDE"),  # 0xFF padding
        (b"Jun 23 2021  " + b" " * 7, "Jun 23 2021"),  # space padding
        (b"AB\x00CD" + b"\x00" * 15, "AB"),  # cut at the first 0x00
        (b"X\xffYZ" + b"\x00" * 16, "X"),  # cut at the first 0xFF
        (b"\x00" * 20, ""),
        (b"\xff" * 20, ""),
        (b"A\x01B" + b"\x00" * 17, "A\ufffdB"),  # a control byte is visible, not dropped
    ],
)
def test_strings_with_odd_padding(raw: bytes, text: str) -> None:
    regs = list(rtu.registers_from_bytes(raw))
    assert pace.decode_ascii(regs) == text
    ident = pace.decode_identity(regs + regs + regs)
    assert ident == pace.Identity(text, text, text)


def test_short_string_run_from_older_firmware() -> None:
    regs = pace.encode_ascii("P16S100A-12720-4.05G") + pace.encode_ascii("SN1", pad=0xFF)
    ident = pace.decode_identity(regs)
    assert ident == pace.Identity("P16S100A-12720-4.05G", "SN1", "")
    assert pace.parse_version(ident.version) == (16, 100)
    assert pace.parse_version("garbage") is None


def test_encode_ascii_refuses_what_cannot_be_stored() -> None:
    with pytest.raises(pace.PaceError):
        pace.encode_ascii("x" * 21)
    with pytest.raises(pace.PaceError):
        pace.encode_ascii("é")


# --- bitfields -> codes -------------------------------------------------------------------------


@pytest.mark.parametrize("bit", range(16))
def test_each_warning_bit(bit: int) -> None:
    alarms, warnings = pace.decode_alarms(1 << bit, 0, 0)
    assert alarms == []
    assert warnings == [pace.WARNING_BITS.get(bit, "other")]
    alarm_codes.check(warnings[0])


@pytest.mark.parametrize("bit", range(16))
def test_each_protection_bit(bit: int) -> None:
    alarms, warnings = pace.decode_alarms(0, 1 << bit, 0)
    if bit == 15:
        assert (alarms, warnings) == ([], ["battery_full"])
    else:
        assert (alarms, warnings) == ([pace.PROTECTION_BITS[bit]], [])
    for code in alarms + warnings:
        alarm_codes.check(code)


@pytest.mark.parametrize("bit", range(16))
def test_each_status_bit(bit: int) -> None:
    alarms, warnings = pace.decode_alarms(0, 0, 1 << bit)
    assert warnings == []
    assert alarms == ([pace.FAULT_BITS[bit]] if bit in pace.FAULT_BITS else [])
    for code in alarms:
        alarm_codes.check(code)


def test_duplicate_codes_appear_once() -> None:
    alarms, warnings = pace.decode_alarms(0b11, 0b11, 0)
    assert alarms == ["cell_overvoltage", "cell_undervoltage"]
    assert warnings == ["cell_overvoltage", "cell_undervoltage"]


def test_balancing_cells_are_numbered_from_one() -> None:
    assert pace.balancing_cells(0b1000000000101, 13) == [1, 3, 13]
    assert pace.balancing_cells(0xFFFF, 13) == list(range(1, 14))
    assert pace.balancing_cells(0x8000) == [16]


def test_settings_become_limits() -> None:
    values = {
        "pack_ov_alarm": 54.6,
        "pack_uv_alarm": 41.6,
        "charge_oc_alarm": 100,
        "discharge_oc_alarm": 120,
        "cell_ov_alarm": 4.2,
        "cell_uv_alarm": 3.2,
        "pack_full_charge_voltage": 53.3,
        "short_circuit_delay": 300,
        "charge_oc2_delay": 0.1,
    }
    settings = pace.decode_settings(pace.encode_block(60, 55, values))
    assert settings.charge_voltage_limit == 53.3
    assert settings.discharge_voltage_limit == 41.6
    assert (settings.charge_current_limit, settings.discharge_current_limit) == (100.0, 120.0)
    assert (settings.cell_overvoltage, settings.cell_undervoltage) == (4.2, 3.2)
    assert settings.values["short_circuit_delay"] == 300
    assert settings.values["charge_oc2_delay"] == 0.1
    older = pace.decode_settings(pace.encode_block(60, 47, {"pack_ov_alarm": 54.6}))
    assert older.charge_voltage_limit == 54.6  # no reg 107 on V1.1: falls back to the OV alarm
    assert "charge_oc2_protect" not in older.values
    assert pace.Settings().charge_current_limit is None


def test_live_needs_the_whole_block() -> None:
    with pytest.raises(pace.RegisterRangeError):
        pace.decode_live([0] * 36)
    with pytest.raises(pace.RegisterRangeError):
        pace.decode_live([0] * 37, start=1)
    assert pace.decode_live([0] * 40, start=0).cycles == 0


# --- property tests --------------------------------------------------------------------------

u16 = st.integers(0, 0xFFFF)


@given(st.integers(0, 179), st.lists(u16, min_size=1, max_size=125))
def test_any_block_decodes_and_reencodes_to_the_same_registers(
    start: int, registers: list[int]
) -> None:
    registers = registers[: pace.MAP_END - start] or [0]
    values = {
        k: v for k, v in pace.decode_block(start, registers).items() if not isinstance(v, str)
    }
    again = pace.encode_block(start, len(registers), values)
    for i, (a, b) in enumerate(zip(registers, again, strict=True)):
        reg = start + i
        entry = next((r for r in pace.REGISTER_MAP if r.reg <= reg < r.end), None)
        if entry is None:
            assert b == 0  # reserved
        elif entry.kind == "u8":
            assert b == (a if a <= 0xFF else 0)  # invalid u8 → None → 0
        elif entry.kind != "ascii":
            assert b == a


@given(st.lists(u16, min_size=37, max_size=37))
def test_live_block_fields_follow_the_raw_registers(registers: list[int]) -> None:
    live = pace.decode_live(registers)
    signed = registers[0] - 0x10000 if registers[0] >= 0x8000 else registers[0]
    assert live.current == signed / 100
    assert live.voltage == registers[1] / 100
    assert live.cycles == registers[7]
    assert all(-3276.8 <= t <= 3276.7 for t in live.cell_temperatures)
    alarms, warnings = live.alarms()
    for code in alarms + warnings:
        alarm_codes.check(code)
    assert pace.balancing_cells(live.balance_flags, 16) == [
        b + 1 for b in range(16) if registers[12] >> b & 1
    ]


@given(st.binary(max_size=300))
def test_random_replies_only_raise_typed_errors(data: bytes) -> None:
    try:
        regs = rtu.parse_read_response(data, slave=1, count=37)
    except rtu.ModbusError:
        return
    assert len(regs) == 37


@given(st.integers(1, 247), st.lists(u16, min_size=1, max_size=125))
def test_responses_round_trip(slave: int, registers: list[int]) -> None:
    frame = rtu.build_read_response(slave, registers)
    assert list(rtu.parse_read_response(frame, slave=slave, count=len(registers))) == registers
    flipped = bytearray(frame)
    flipped[len(frame) // 2] ^= 0x10
    with pytest.raises((rtu.CrcError, rtu.FrameError)):
        rtu.parse_read_response(bytes(flipped), slave=slave, count=len(registers))
