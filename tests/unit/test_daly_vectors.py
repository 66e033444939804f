"""Every frame of ../shared/vectors/daly.json against the Daly codecs.

Valid frames decode to the values their sources state (``source_values``) and to the
independent ``reference_decode``; known-bad frames (bad checksum/CRC, truncated, garbage BLE
slots) are refused with the codec's own error. Requests with a verified checksum are rebuilt
byte for byte by the request builders.
"""

from __future__ import annotations

from typing import Any

import pytest

from bmslink.protocols import daly_81 as p81
from bmslink.protocols import daly_a5 as a5
from bmslink.protocols import daly_d2 as d2
from bmslink.protocols import daly_sinowealth as sino
from bmslink.protocols.daly_modbus import (
    CrcError,
    DalyModbusError,
    crc16_modbus,
    parse_frame,
    registers_from,
)
from tests.vectors import load_vectors

VECTORS: list[dict[str, Any]] = load_vectors("daly")["vectors"]


def _of(*protocols: str) -> list[dict[str, Any]]:
    return [v for v in VECTORS if v["protocol"] in protocols]


def _ids(vectors: list[dict[str, Any]]) -> list[str]:
    return [f"{v['vector_id']}-{i}" for i, v in enumerate(vectors)]


def _ok(v: dict[str, Any]) -> bool | None:
    check = v.get("check_response") or v.get("check") or {}
    ok = check.get("ok")
    return None if ok is None else bool(ok)


A5_RESPONSES = [v for v in _of("daly_a5") if v["response"]]
A5_VALID = [v for v in A5_RESPONSES if _ok(v)]
A5_BAD = [v for v in A5_RESPONSES if _ok(v) is False]
STATES = {"stationary": 0, "idle": 0, "charging": 1, "discharging": 2}


def test_vector_counts_cover_every_protocol() -> None:
    """The file holds what the tests below rely on (a truncated copy would pass silently)."""
    assert len(VECTORS) == 254
    assert len(A5_VALID) == 53 and len(A5_BAD) == 3
    assert len(_of("daly_sinowealth")) == 12
    assert len(_of("daly_p81_modbus")) == 80


@pytest.mark.parametrize("v", A5_VALID, ids=_ids(A5_VALID))
def test_a5_valid_frames_decode_to_the_stated_values(v: dict[str, Any]) -> None:
    frame = a5.parse_frame(bytes.fromhex(v["response"]))
    assert frame.address == 1
    ref = v.get("reference_decode") or {}
    stated = v.get("source_values") or {}
    cmd = frame.command
    if cmd == a5.Command.SOC:
        soc = a5.decode_soc(frame.data)
        assert soc.total_voltage == pytest.approx(ref["total_voltage_V"])
        assert soc.gather_voltage == pytest.approx(ref["gather_voltage_V"])
        assert soc.soc == pytest.approx(ref["soc_pct"])
        # reference = (raw - 30000)/10; bmslink's default is raw > 30000 = discharge (doc §9)
        assert -soc.current == pytest.approx(ref["current_A_raw_minus_30000_div10"])
        inverted = a5.decode_soc(frame.data, invert_current=True)
        assert inverted.current == pytest.approx(ref["current_A_raw_minus_30000_div10"])
        if "current_A" in stated:
            assert inverted.current == pytest.approx(stated["current_A"])
    elif cmd == a5.Command.CELL_EXTREMES:
        ext = a5.decode_cell_extremes(frame.data)
        assert (ext.max_voltage, ext.max_cell, ext.min_voltage, ext.min_cell) == (
            pytest.approx(ref["max_cell_V"]),
            ref["max_cell_no"],
            pytest.approx(ref["min_cell_V"]),
            ref["min_cell_no"],
        )
        if "highest_voltage" in stated:
            assert ext.max_voltage == pytest.approx(stated["highest_voltage"])
            assert ext.min_cell == stated["lowest_cell"]
    elif cmd == a5.Command.TEMPERATURE_EXTREMES:
        t = a5.decode_temperature_extremes(frame.data)
        assert (t.max_temperature, t.max_sensor, t.min_temperature, t.min_sensor) == (
            ref["max_temp_C"],
            ref["max_temp_no"],
            ref["min_temp_C"],
            ref["min_temp_no"],
        )
    elif cmd == a5.Command.MOSFET:
        m = a5.decode_mosfet(frame.data)
        assert m.state == STATES[ref["state"]]
        assert (m.charge_mosfet, m.discharge_mosfet) == (
            bool(ref["charge_mos"]),
            bool(ref["discharge_mos"]),
        )
        assert m.heartbeat == ref["byte3_heartbeat_or_life"]
        assert m.remaining_capacity == pytest.approx(ref["remaining_capacity_Ah"])
        if "capacity_ah" in stated:
            assert m.remaining_capacity == pytest.approx(stated["capacity_ah"])
            assert m.charge_mosfet is stated["charging_mosfet"]
    elif cmd == a5.Command.STATUS:
        s = a5.decode_status(frame.data)
        assert (s.cells, s.sensors, s.charger, s.load) == (
            ref["cells"],
            ref["temp_sensors"],
            bool(ref["charger"]),
            bool(ref["load"]),
        )
        assert s.dio == int(ref["dio_bits"], 2)
        assert (s.cycles, s.byte7) == (ref["cycles_bytes5_6"], ref["byte7"])
    elif cmd == a5.Command.CELL_VOLTAGES:
        number, mv = a5.decode_cell_frame(frame.data)
        assert number == ref["frame_no"]
        assert [x / 1000 for x in mv] == pytest.approx(ref["cells_V"])
    elif cmd == a5.Command.TEMPERATURES:
        number, temps = a5.decode_temperature_frame(frame.data)
        assert number == ref["frame_no"]
        assert list(temps) == ref["temps_C"]
        if "temperature_1" in stated:
            assert temps[0] == stated["temperature_1"]
    elif cmd == a5.Command.BALANCING:
        cells = a5.decode_balancing(frame.data, 16)
        assert frame.data.hex() == ref["raw_bits_hex"]
        expected = [1, 9] if "1 and 9" in stated["fork_interpretation_balancing"] else []
        assert cells == expected
    elif cmd == a5.Command.ALARMS:
        alarms = a5.decode_alarms(frame.data)
        assert [[a.byte, a.bit] for a in alarms.active] == ref["set_bits"]
        if stated["errors"]:  # "cell voltage is too high level 2 alarm"
            assert alarms.alarms == ["cell_overvoltage"] and alarms.warnings == []
            assert alarms.active[0].text == "cell voltage high L2"
        else:
            assert alarms.alarms == [] and alarms.warnings == []
    elif cmd in (a5.Command.DISCHARGE_MOSFET, a5.Command.CHARGE_MOSFET):
        assert frame.data[0] == ref["state_byte0"]
        assert frame.data[0] == (1 if stated["discharge_mos"] == "on" else 0)
    elif cmd == a5.Command.MODEL:
        assert a5.decode_text_frame(frame.data) == (ref["frame_no"], ref["ascii"])
    else:
        pytest.fail(f"vector with an untested command 0x{cmd:02X}")


def test_a5_model_frames_join_to_the_model_string() -> None:
    frames = [v for v in A5_VALID if v["command"].startswith("0x63")]
    data = {a5.parse_frame(bytes.fromhex(v["response"])).data[0]: v for v in frames}
    joined = a5.assemble_ascii(
        {k: a5.parse_frame(bytes.fromhex(v["response"])).data for k, v in data.items()}
    )
    assert joined == "DL-BMS-R32-01E"


@pytest.mark.parametrize("v", A5_BAD, ids=_ids(A5_BAD))
def test_a5_bad_frames_are_refused(v: dict[str, Any]) -> None:
    raw = bytes.fromhex(v["response"])
    with pytest.raises(a5.DalyA5Error):
        a5.parse_frame(raw)
    assert a5.FrameStream().feed(raw) == []


A5_REQUESTS = [v for v in _of("daly_a5", "daly_a5_probe") if v["request"]]


@pytest.mark.parametrize("v", A5_REQUESTS, ids=_ids(A5_REQUESTS))
def test_a5_requests_are_rebuilt_byte_for_byte(v: dict[str, Any]) -> None:
    raw = bytes.fromhex(v["request"])
    assert v["check_request"]["ok"]
    assert a5.sum8(raw[:12]) == raw[12]
    cmd, address, data = raw[2], raw[1], raw[4:12]
    if cmd in (a5.Command.CHARGE_MOSFET, a5.Command.DISCHARGE_MOSFET):
        assert a5.build_switch(cmd == a5.Command.CHARGE_MOSFET, bool(data[0]), address) == raw
    else:
        assert a5.build_request(cmd, address) == raw


A5_PAYLOADS = _of("daly_a5_payload_only")


@pytest.mark.parametrize("v", A5_PAYLOADS, ids=_ids(A5_PAYLOADS))
def test_a5_payload_only_vectors(v: dict[str, Any]) -> None:
    data = bytes.fromhex(v["payload"])
    command = v["command"][:4]
    if command == "0x93":
        m = a5.decode_mosfet(data)
        assert (m.state, m.charge_mosfet, m.discharge_mosfet) == (1, True, True)
        assert m.heartbeat == data[3]  # changes every read (a heartbeat, doc §4.4)
        assert 250 < m.remaining_capacity < 260
    elif command == "0x94":
        s = a5.decode_status(data)
        assert (s.cells, s.sensors, s.dio, s.cycles) == (8, 1, 0x02, 53)
    elif command == "0xd9":
        assert data[0] in (0, 1)
    elif command == "0x95":
        number, mv = a5.decode_cell_frame(data)
        assert 1 <= number <= 16
        assert all(v == 0 or 3900 < v < 4300 for v in mv)
    else:
        pytest.fail(f"untested payload {command}")


def test_a5_ble_burst_with_garbage_slots_is_resynchronised() -> None:
    """The 200-byte BLE notification of [KEV]: slots 1-10 valid, slot 11 corrupt, 15 short."""
    slots = sorted(
        (v for v in A5_RESPONSES if "200-byte BLE notification" in (v["note"] or "")),
        key=lambda v: int(v["note"].split()[1]),
    )
    burst = b"".join(bytes.fromhex(v["response"]) for v in slots)
    stream = a5.FrameStream(board=1, commands={0x95})
    frames = stream.feed(burst[:57]) + stream.feed(burst[57:])
    valid = [v for v in slots if _ok(v)]
    assert [f.data for f in frames] == [bytes.fromhex(v["response"])[4:12] for v in valid]
    assert stream.dropped > 0


SINOWEALTH = [v for v in _of("daly_sinowealth") if v["response"]]


@pytest.mark.parametrize("v", SINOWEALTH, ids=_ids(SINOWEALTH))
def test_sinowealth_replies_decode(v: dict[str, Any]) -> None:
    request = bytes.fromhex(v["request"])
    assert sino.build_request(request[1]) == request
    reading = sino.decode(request, bytes.fromhex(v["response"]))
    stated = v["source_values"]
    for key, value in stated.items():
        if key.endswith("_mV"):
            assert reading.raw == value
        elif key.endswith("_V"):
            assert reading.value == pytest.approx(value)
    bad = bytearray(bytes.fromhex(v["response"]))
    bad[-1] ^= 0x01
    with pytest.raises(sino.ChecksumError):
        sino.decode(request, bytes(bad))


def test_sinowealth_request_only_vectors_are_built() -> None:
    only = [v for v in _of("daly_sinowealth") if not v["response"]]
    assert only and all(
        sino.build_request(int(v["command"], 16)).hex() == v["request"] for v in only
    )


MODBUS_RESPONSES = [
    v for v in _of("daly_d2_modbus", "daly_p81_modbus", "daly_p81_probe_reply") if v["response"]
]


@pytest.mark.parametrize("v", MODBUS_RESPONSES, ids=_ids(MODBUS_RESPONSES))
def test_modbus_frames_are_accepted_or_refused_by_crc(v: dict[str, Any]) -> None:
    raw = bytes.fromhex(v["response"])
    if _ok(v):
        frame = parse_frame(raw)
        assert frame.address in (0xD2, 0x51)
    else:
        with pytest.raises(CrcError):
            parse_frame(raw)


MODBUS_REQUESTS = [
    v for v in _of("daly_d2_modbus", "daly_p81_modbus", "daly_p81_probe") if v["request"]
]


@pytest.mark.parametrize("v", MODBUS_REQUESTS, ids=_ids(MODBUS_REQUESTS))
def test_modbus_requests_have_valid_crcs_and_are_rebuilt(v: dict[str, Any]) -> None:
    raw = bytes.fromhex(v["request"])
    assert crc16_modbus(raw[:-2]) == raw[-2] | raw[-1] << 8
    if raw[1] == 0x03:
        from bmslink.protocols.daly_modbus import build_read

        assert build_read(raw[0], int.from_bytes(raw[2:4]), int.from_bytes(raw[4:6])) == raw
    elif raw[1] == 0x06 and raw[3] in (0xA5, 0xA6):
        assert d2.build_switch(raw[3] == 0xA5, bool(raw[5])) == raw


D2_STATUS = [
    v
    for v in _of("daly_d2_modbus")
    if v["response"] and _ok(v) and "cell_V" in (v.get("reference_decode") or {})
]


@pytest.mark.parametrize("v", D2_STATUS, ids=_ids(D2_STATUS))
def test_d2_status_blocks_decode_to_the_reference(v: dict[str, Any]) -> None:
    frame = parse_frame(bytes.fromhex(v["response"]), address=0xD2, function=0x03)
    regs = dict(enumerate(registers_from(frame)))
    s = d2.decode_status(regs)
    ref = v["reference_decode"]
    assert s.cell_voltages == pytest.approx(ref["cell_V"])
    assert s.temperatures == pytest.approx(ref["temps_C"])
    assert (s.voltage, s.current, s.soc) == (
        pytest.approx(ref["total_voltage_V"]),
        pytest.approx(ref["current_A"]),
        pytest.approx(ref["soc_pct"]),
    )
    assert (s.cell_max, s.cell_min) == (
        pytest.approx(ref["max_cell_V"]),
        pytest.approx(ref["min_cell_V"]),
    )
    assert (s.temperature_max, s.temperature_min) == (ref["max_temp_C"], ref["min_temp_C"])
    assert s.state == STATES[ref["status"]]
    assert s.remaining_capacity == pytest.approx(ref["remaining_Ah"])
    assert (s.cell_count, s.sensor_count, s.cycles) == (
        ref["cell_count"],
        ref["temp_sensor_count"],
        ref["cycles"],
    )
    assert (s.balancer, s.charge_mosfet, s.discharge_mosfet) == (
        ref["balancer"],
        bool(ref["charge_mos"]),
        bool(ref["discharge_mos"]),
    )
    assert (s.cell_avg, s.cell_delta) == (
        pytest.approx(ref["avg_cell_V"]),
        pytest.approx(ref["delta_cell_V"]),
    )
    assert s.power is not None and abs(s.power) == ref["power_W_raw_unsigned"]
    assert s.power <= 0 if s.current < 0 else s.power >= 0
    assert f"{s.alarm_raw:016x}" == "".join(ref["alarm_regs_0x3A_0x3D"])
    if "mos_temp_C" in ref:  # 80-register block
        assert s.mosfet_temperature == ref["mos_temp_C"]
        assert s.balancing_cells == []
        # raw 0 (= -40 °C in the reference) is "not supported" for bmslink (doc §6.3)
        assert ref["board_temp_C"] == -40 and s.bms_temperature is None
    stated = v.get("source_values") or {}
    if "cell_voltages" in stated:  # aiobmsble's asserted values
        assert s.cell_voltages == pytest.approx(stated["cell_voltages"])
        assert s.current == pytest.approx(stated["current"])
        assert s.charge_mosfet is stated["chrg_mosfet"]
        assert s.cycles == stated["cycles"] and s.remaining_capacity == stated["cycle_charge"]


def test_d2_80_register_current_is_negative_despite_the_source_comment() -> None:
    (v,) = [v for v in VECTORS if v["command"] == "STATUS_FRAME_80_REG_1"]
    assert "+0.7A" in v["source_values"]["stated_by_source_comment"]
    frame = parse_frame(bytes.fromhex(v["response"]))
    s = d2.decode_status(dict(enumerate(registers_from(frame))))
    assert s.current == -2.5 and s.state == 2


@pytest.mark.parametrize(
    ("command", "alarms", "warnings"),
    [
        ("STATUS_FRAME_62_REG_ALARM_WARN_CHARGING_CURRENT_HIGH", [], ["charge_overcurrent"]),
        ("STATUS_FRAME_62_REG_ALARM_AFE_FAILURE", ["bms_fault"], []),
        ("STATUS_FRAME_62_REG_ALARM_CHARGING_MOS_OVERTEMP", ["mosfet_overtemperature"], []),
        ("STATUS_FRAME_62_REG_ALARM_TEMP_DIFF_BOTH", ["temperature_imbalance"], []),
        ("STATUS_FRAME_62_REG_ALARM_TEMP_DIFF_WARNING", [], ["temperature_imbalance"]),
    ],
)
def test_d2_alarm_fixtures_map_to_stable_codes(
    command: str, alarms: list[str], warnings: list[str]
) -> None:
    (v,) = [v for v in VECTORS if v["command"] == command]
    frame = parse_frame(bytes.fromhex(v["response"]))
    s = d2.decode_status(dict(enumerate(registers_from(frame))))
    assert (s.alarms, s.warnings) == (alarms, warnings)


def test_d2_version_frames_split_on_nul_runs() -> None:
    versions = [
        v for v in _of("daly_d2_modbus") if "sw" in (v.get("reference_decode") or {}) and _ok(v)
    ]
    assert len(versions) >= 3
    for v in versions:
        frame = parse_frame(bytes.fromhex(v["response"]))
        pieces = d2.decode_version(frame.data)
        ref = v["reference_decode"]
        assert pieces[0] == ref["sw"]
        if ref["hw"]:
            assert pieces[1] == ref["hw"]
        else:
            # the reference used syssi's 32/32 layout; the app capture has 16-byte fields and
            # the hardware string of doc §7.5 (decision #12: split on NUL runs)
            assert pieces[1] == "E303-032DG-SMB"


def test_d2_mosfet_block_gives_the_stated_mosfet_temperature() -> None:
    (v,) = [v for v in VECTORS if v["command"] == "MOS_INFO"]
    assert bytes.fromhex(v["request"]) == d2.mosfet_request()
    frame = parse_frame(bytes.fromhex(v["response"]))
    (status_vector,) = [x for x in VECTORS if x["command"] == "CMD_INFO"]
    regs = dict(enumerate(registers_from(parse_frame(bytes.fromhex(status_vector["response"])))))
    regs.update({0x3E + i: r for i, r in enumerate(registers_from(frame))})
    s = d2.decode_status(regs)
    assert s.mosfet_temperature == v["source_values"]["mos_temperature_C"]
    assert s.bms_temperature is None  # 0xFFFF = not supported


def test_d2_balancer_switch_replies() -> None:
    for command, value in (("BALANCER_SWITCH_FRAME_ON", 1), ("BALANCER_SWITCH_FRAME_OFF", 0)):
        (v,) = [v for v in VECTORS if v["command"] == command]
        assert registers_from(parse_frame(bytes.fromhex(v["response"]))) == [value]


P81_FIRST = [v for v in _of("daly_p81_modbus") if v["command"] == "read 0x0000 x64"]
P81_SECOND = [v for v in _of("daly_p81_modbus") if v["command"] == "read 0x0041 x62"]


@pytest.mark.parametrize("k", range(8))
def test_p81_status_pairs_decode_to_the_reference(k: int) -> None:
    assert len(P81_FIRST) == len(P81_SECOND) == 8
    first, second = P81_FIRST[k], P81_SECOND[k]
    requests = p81.status_requests(1)
    assert [bytes.fromhex(first["request"]), bytes.fromhex(second["request"])] == requests
    regs: dict[int, int] = {}
    for v, start in ((first, 0x00), (second, 0x41)):
        frame = parse_frame(bytes.fromhex(v["response"]), address=0x51, function=0x03)
        regs.update({start + i: r for i, r in enumerate(registers_from(frame))})
    s = p81.decode_status(regs)
    a, b = first["reference_decode"], second["reference_decode"]
    assert s.cell_voltages == pytest.approx(a["cell_V"])
    assert s.temperatures == pytest.approx(a["temps_C"])
    assert (s.voltage, s.current, s.soc) == (
        pytest.approx(a["total_voltage_V"]),
        pytest.approx(a["current_A"]),
        pytest.approx(a["soc_pct"]),
    )
    assert s.extra is not None and s.extra["heartbeat"] == a["reg_0x3B"]
    assert (s.cell_count, s.sensor_count, s.cell_max) == (
        a["cell_count"],
        a["temp_sensor_count"],
        pytest.approx(a["max_cell_V"]),
    )
    assert (s.temperature_max, s.temperature_min) == (b["max_temp_C"], b["min_temp_C"])
    assert s.state == STATES[b["status"]] == 2
    assert s.remaining_capacity == pytest.approx(b["remaining_Ah"])
    assert (s.cycles, s.balancer) == (b["cycles"], b["balancer_state"])
    assert (s.charge_mosfet, s.discharge_mosfet) == (
        bool(b["charge_mos"]),
        bool(b["discharge_mos"]),
    )
    assert s.extra["precharge_mosfet"] == b["precharge_mos"]
    assert s.extra["energy_wh"] == b["energy_Wh"]
    assert (s.mosfet_temperature, s.bms_temperature) == (b["mos_temp_C"], b["board_temp_C"])
    # raw 0 = "not available" on the ESS-DL-BMS (doc §8.2); the reference prints -30.0 A
    assert b["balance_current_A"] == -30.0 and s.balance_current is None
    assert s.power is not None and s.power < 0  # discharging, register unsigned


def test_p81_probe_reply_of_a_d2_device() -> None:
    (reply,) = {v["response"] for v in _of("daly_p81_probe_reply")}
    frame = parse_frame(bytes.fromhex(reply))
    assert (frame.address, frame.function, frame.body.hex()) == (0x51, 0x10, "0f05aaaa")


def test_every_vector_is_exercised() -> None:
    """No protocol of the file is left without a test above."""
    covered = {
        "daly_a5",
        "daly_a5_payload_only",
        "daly_a5_probe",
        "daly_sinowealth",
        "daly_d2_modbus",
        "daly_p81_modbus",
        "daly_p81_probe",
        "daly_p81_probe_reply",
    }
    assert {v["protocol"] for v in VECTORS} <= covered
    with pytest.raises(DalyModbusError):
        parse_frame(b"\xd2\x03")
