"""Every Pylontech LV RS485 command beyond 0x42 (issue 3): 0x44, 0x47, 0x4F, 0x51, 0x92, 0x93,
0x96, typed RTN errors, the Maple Leaf Beaver dialect, alarm codes, property round trips and a
1e5 mutated-frame robustness run.

Reference: /work/shared/protocols/pylontech-rs485.md (section numbers are that doc's).
"""

from __future__ import annotations

import functools
import random
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bmslink import alarms as alarm_registry
from bmslink.protocols import pylontech_rs485 as pylon
from tools.fuzz import mutate_ascii_frame

try:
    from tests.vectors import load_vectors
except ImportError:  # pragma: no cover
    from vectors import load_vectors  # type: ignore[import-not-found,no-redef]

VECTORS: list[dict[str, Any]] = load_vectors("pylontech_rs485")["vectors"]


def _by_id(vector_id: str) -> dict[str, Any]:
    return next(v for v in VECTORS if v["vector_id"] == vector_id)


def _reply(vector_id: str) -> pylon.Frame:
    v = _by_id(vector_id)
    request = pylon.parse_frame(v["request"].encode()) if v.get("request") else None
    return pylon.parse_response(v["response"].encode(), request)


def _valid(command: str) -> list[dict[str, Any]]:
    return [
        v
        for v in VECTORS
        if v["command"] == command
        and v.get("response")
        and "dialect" not in v
        and v["checksum_ok"] is not False
        and v["lchksum_ok"]
        and v["lenid_ok"]
    ]


# ------------------------------------------------------------------------------------------
# Real vectors, per command (values from the sources / doc tables)
# ------------------------------------------------------------------------------------------


def test_vector_inventory_per_command() -> None:
    counts = {c: len(_valid(c)) for c in ("0x44", "0x47", "0x4F", "0x51", "0x92", "0x93", "0x96")}
    assert all(n >= 2 for n in counts.values()), counts


@pytest.mark.parametrize("v", _valid("0x44"), ids=lambda v: v["vector_id"])
def test_0x44_vectors(v: dict[str, Any]) -> None:
    frame = pylon.parse_response(v["response"].encode())
    alarm = pylon.decode_alarm(frame.info)
    (module,) = alarm.modules
    assert alarm.command_value == frame.adr
    assert module.cell_states == (0,) * 15
    assert module.temperature_states == (0,) * 5
    assert module.status1 == 0
    assert module.status2 == 0x0E  # battery power, DFET on, CFET on (doc §8.5)
    assert module.charge_mosfet_on
    assert module.discharge_mosfet_on
    assert pylon.alarm_codes(module) == ([], [])
    # 32 bytes on US2KBPL, 33 (one trailing 0x00) on US2000C/US3000C (doc §8.5, §15)
    assert alarm.trailing in (b"", b"\x00")
    assert len(frame.info) == 32 + len(alarm.trailing)
    assert (
        pylon.encode_alarm(alarm.data_flag, alarm.command_value, alarm.modules, alarm.trailing)
        == frame.info
    )


def test_0x44_status3_worked_decode() -> None:
    """Doc §8.5 worked decode (US2KBPL): Status3 0x80 = charging at that moment."""
    frame = _reply("pylontech_rs485-83437719")
    (module,) = pylon.decode_alarm(frame.info).modules
    assert (module.status2, module.status3) == (0x0E, 0x80)
    assert module.raw_status()["status3"] == 0x80


# Doc §8.6 table: the real 0x47 answers.
PARAMETERS = {
    "pylontech_rs485-81000868": ("US2000C", 43.5, 90.0),
    "pylontech_rs485-85315900": ("US3000C", 43.0, 90.0),
    "pylontech_rs485-59020500": ("US5000", 43.0, 100.0),
    "pylontech_rs485-13388651": ("US5000", 43.0, 100.0),
    "pylontech_rs485-62137889": ("US3000C", 43.0, 90.0),
}


@pytest.mark.parametrize("vector_id", sorted(PARAMETERS))
def test_0x47_vectors(vector_id: str) -> None:
    _, under, limit = PARAMETERS[vector_id]
    p = pylon.decode_system_parameters(_reply(vector_id).info)
    assert p.info_flag in (0x10, 0x11)
    assert (p.cell_high_voltage, p.cell_low_voltage, p.cell_under_voltage) == (3.65, 3.05, 2.8)
    assert (p.charge_high_temperature, p.charge_low_temperature) == (60.0, -10.0)
    assert (p.discharge_high_temperature, p.discharge_low_temperature) == (60.0, -10.0)
    assert (p.module_high_voltage, p.module_low_voltage) == (54.0, 46.0)  # unsigned mV
    assert p.module_under_voltage == under
    assert (p.charge_current_limit, p.discharge_current_limit) == (limit, -limit)  # 0.1 A LSB
    assert pylon.encode_system_parameters(p) == _reply(vector_id).info


def test_0x47_covers_every_valid_vector() -> None:
    assert {v["vector_id"] for v in _valid("0x47")} == set(PARAMETERS)


MANAGEMENT = {
    # vector: (CVL, DVL, CCL, DCL, status) -- doc §8.7 "observed"
    "pylontech_rs485-89434533": (28.4, 23.2, 55.5, -55.5, 0xC0),  # UP2500
    "pylontech_rs485-72574718": (53.25, 45.0, 0.0, -80.0, 0x40),  # US5000, charge disabled
    "pylontech_rs485-80408693": (53.25, 47.0, 25.0, -25.0, 0xC0),  # US2KBPL
    "pylontech_rs485-72756672": (53.25, 47.0, 25.0, -25.0, 0xC0),
}


@pytest.mark.parametrize("v", _valid("0x92"), ids=lambda v: v["vector_id"])
def test_0x92_vectors(v: dict[str, Any]) -> None:
    frame = pylon.parse_response(v["response"].encode())
    m = pylon.decode_management_info(frame.info)
    assert m.command_value == frame.adr
    if v["vector_id"] in MANAGEMENT:
        cvl, dvl, ccl, dcl, status = MANAGEMENT[v["vector_id"]]
        assert (m.charge_voltage_limit, m.discharge_voltage_limit) == (cvl, dvl)
        assert (m.charge_current_limit, m.discharge_current_limit) == (ccl, dcl)
        assert m.status == status
    assert m.discharge_enable
    assert m.charge_enable == bool(m.status & 0x80)
    assert pylon.encode_management_info(m) == frame.info
    sv = v.get("source_values") or {}
    if "ChargeVoltageLimit" in sv:  # UP2500, python-pylontech's stated values
        assert m.charge_voltage_limit == sv["ChargeVoltageLimit"]
        assert m.discharge_current_limit == sv["DischargeCurrentLimit"]
        assert m.charge_enable is sv["status.ChargeEnable"]


def test_0x92_status_bits_follow_v33() -> None:
    """Bit 5 = charge immediately 1, bit 4 = 2 (V3.3; python-pylontech swaps them, §14)."""
    m = pylon.ManagementInfo(2, 53.25, 45.0, 25.0, -25.0, 0x20)
    assert m.charge_immediately_1
    assert not m.charge_immediately_2
    m2 = pylon.ManagementInfo(2, 53.25, 45.0, 25.0, -25.0, 0x18)
    assert (m2.charge_immediately_2, m2.full_charge_request) == (True, True)


SERIALS = {
    "pylontech_rs485-55668992": (3, "HPTBH02240A01235"),
    "pylontech_rs485-44108158": (2, "HPTCR03171112590"),
    "pylontech_rs485-62869573": (2, "H222003C32220459"),
}


@pytest.mark.parametrize("vector_id", sorted(SERIALS))
def test_0x93_vectors(vector_id: str) -> None:
    frame = _reply(vector_id)
    sn = pylon.decode_serial_number(frame.info)
    assert (sn.command_value, sn.serial) == SERIALS[vector_id]
    assert pylon.encode_serial_number(sn) == frame.info
    sv = _by_id(vector_id).get("source_values") or {}
    if "serial" in sv:
        assert sn.serial == sv["serial"]


@pytest.mark.parametrize("v", _valid("0x51"), ids=lambda v: v["vector_id"])
def test_0x51_vectors(v: dict[str, Any]) -> None:
    frame = pylon.parse_response(v["response"].encode())
    info = pylon.decode_manufacturer_info(frame.info)
    assert info.device_name in {"US2000C", "US3000C", "US2KBPL"}
    assert info.manufacturer == "Pylon"
    assert pylon.encode_manufacturer_info(info) == frame.info
    text = str((v.get("source_values") or {}).get("martiby_dict", ""))
    if text:
        assert f"'device': '{info.device_name}'" in text
        assert f"'version': '{info.software}'" in text
    if "DeviceName" in (v.get("source_values") or {}):
        assert info.device_name == v["source_values"]["DeviceName"]


def test_0x51_is_the_masters_identity_at_adr3() -> None:
    """Doc §7.4: ADR 3 answers with the master's identity (identical apart from ADR/CHKSUM)."""
    at2 = _reply("pylontech_rs485-29373868")
    at3 = _reply("pylontech_rs485-84075373")
    assert (at2.adr, at3.adr) == (2, 3)
    assert at2.info == at3.info
    assert pylon.decode_manufacturer_info(at3.info).device_name == "US2000C"


@pytest.mark.parametrize("v", _valid("0x96"), ids=lambda v: v["vector_id"])
def test_0x96_vectors(v: dict[str, Any]) -> None:
    frame = pylon.parse_response(v["response"].encode())
    fw = pylon.decode_firmware_version(frame.info)
    assert (fw.command_value, fw.manufacture_version, fw.mainline_version) == (2, (2, 3), (0, 6, 5))
    assert fw.text == "V2.3 (mainline V0.6.5)"
    assert pylon.encode_firmware_version(fw) == frame.info


@pytest.mark.parametrize("v", _valid("0x4F"), ids=lambda v: v["vector_id"])
def test_0x4f_vectors(v: dict[str, Any]) -> None:
    frame = pylon.parse_response(v["response"].encode(), pylon.parse_frame(v["request"].encode()))
    assert pylon.protocol_version(frame) == (2, 0)
    with pytest.raises(pylon.PayloadError, match="must be empty"):
        pylon.protocol_version(pylon.Frame(0x20, 2, 0x46, 0, b"\x00"))


# ------------------------------------------------------------------------------------------
# Dialects: PACE, Seplos, V3.5 are never mis-decoded as Pylontech or Beaver
# ------------------------------------------------------------------------------------------

ALL_DECODERS: list[Callable[[bytes], object]] = [
    functools.partial(pylon.decode_analog, stack=False),
    functools.partial(pylon.decode_analog, stack=True),
    pylon.decode_analog,
    pylon.decode_alarm,
    functools.partial(pylon.decode_alarm, stack=True),
    pylon.decode_system_parameters,
    pylon.decode_management_info,
    pylon.decode_manufacturer_info,
    pylon.decode_serial_number,
    pylon.decode_firmware_version,
    pylon.decode_beaver_analog,
    pylon.decode_beaver_system_parameters,
]


@pytest.mark.parametrize("v", [v for v in VECTORS if "dialect" in v], ids=lambda v: v["vector_id"])
def test_dialect_frames_are_refused_or_recognised(v: dict[str, Any]) -> None:
    raw = v["response"].encode()
    frame = pylon.parse_frame(raw)
    if frame.cid2 != 0:  # Seplos: a typed RTN error
        with pytest.raises(pylon.UnsupportedCommandError):
            pylon.parse_response(raw)
        return
    if frame.ver == 0x25:  # PACE: refused against a Pylontech or Beaver request
        for ver in (pylon.DEFAULT_VER, pylon.BEAVER_VER):
            request = pylon.Frame(ver, frame.adr, 0x46, 0x42, bytes([frame.adr]))
            with pytest.raises(pylon.FrameError, match="VER 0x25"):
                pylon.parse_response(raw, request)
    assert not pylon.is_beaver(frame)
    for decode in ALL_DECODERS:  # no layout fits
        with pytest.raises(pylon.PayloadError):
            decode(frame.info)


# ------------------------------------------------------------------------------------------
# Typed RTN errors (doc §5)
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("rtn", "cls"), sorted(pylon.RTN_ERRORS.items()))
def test_every_rtn_is_a_typed_error(rtn: int, cls: type[pylon.RtnError]) -> None:
    raw = pylon.build_response(2, b"", rtn=rtn)
    with pytest.raises(cls) as exc_info:
        pylon.parse_response(raw)
    err = exc_info.value
    assert isinstance(err, pylon.RtnError)
    assert err.rtn == rtn
    assert err.retryable == (rtn in (0x02, 0x03, 0x91))
    assert type(pylon.rtn_error(rtn)) is cls


# ------------------------------------------------------------------------------------------
# Alarm codes (doc §8.5 -> bmslink.alarms)
# ------------------------------------------------------------------------------------------


def _alarm(**kw: Any) -> pylon.ModuleAlarm:
    base: dict[str, Any] = {
        "cell_states": (0,) * 15,
        "temperature_states": (0,) * 6,
        "charge_current_state": 0,
        "module_voltage_state": 0,
        "discharge_current_state": 0,
        "status1": 0,
        "status2": 0x0E,
        "status3": 0,
        "status4": 0,
        "status5": 0,
    }
    return pylon.ModuleAlarm(**(base | kw))


def test_alarm_codes_mapping() -> None:
    alarms, warnings = pylon.alarm_codes(_alarm(status1=0xFF))
    assert alarms == sorted(
        {
            "pack_undervoltage",
            "charge_overtemperature",
            "discharge_overtemperature",
            "discharge_overcurrent",
            "charge_overcurrent",
            "cell_undervoltage",
            "pack_overvoltage",
        }
    )
    assert warnings == []
    cells = (0, 1, 2, 0xF0) + (0,) * 11
    temps = (2, 1, 2, 0xF0, 0, 2)
    alarms, warnings = pylon.alarm_codes(
        _alarm(cell_states=cells, temperature_states=temps, module_voltage_state=1, status4=0x08)
    )
    assert alarms == ["cell_fault"]
    assert warnings == [
        "bms_overtemperature",
        "cell_overtemperature",
        "cell_overvoltage",
        "cell_undertemperature",
        "cell_undervoltage",
        "mosfet_overtemperature",
        "pack_undervoltage",
        "temperature_sensor_fault",
        "voltage_sensor_fault",
    ]
    # an alarm is not repeated as a warning
    assert pylon.alarm_codes(_alarm(status1=0x80, module_voltage_state=1)) == (
        ["pack_undervoltage"],
        [],
    )
    raw = _alarm(cell_states=cells).raw_status()
    assert raw["cell_states_abnormal"] == 0b1110


@given(
    st.builds(
        _alarm,
        cell_states=st.lists(st.sampled_from([0, 1, 2, 0xF0, 7]), max_size=16).map(tuple),
        temperature_states=st.lists(st.sampled_from([0, 1, 2, 0xF0]), max_size=7).map(tuple),
        charge_current_state=st.sampled_from([0, 1, 2, 0xF0]),
        module_voltage_state=st.sampled_from([0, 1, 2, 0xF0]),
        discharge_current_state=st.sampled_from([0, 1, 2, 0xF0]),
        status1=st.integers(0, 255),
        status4=st.integers(0, 255),
        status5=st.integers(0, 255),
    )
)
def test_alarm_codes_are_registered(module: pylon.ModuleAlarm) -> None:
    alarms, warnings = pylon.alarm_codes(module)
    for code in alarms + warnings:
        assert alarm_registry.check(code) == code
    assert not set(alarms) & set(warnings)


# ------------------------------------------------------------------------------------------
# Maple Leaf Beaver (doc §12)
# ------------------------------------------------------------------------------------------


def _beaver_readme() -> pylon.BeaverAnalog:
    """The library README's pack 0: 16 cells 3.45-3.48 V, 7 temps 12.4-14.4 °C, 0 A, 55.41 V,
    100.0 of 100.0 Ah, 24 cycles, SOC/SOH 100 %."""
    cells = tuple(round(3.45 + 0.002 * i, 3) for i in range(16))
    return pylon.BeaverAnalog(
        lead=0,
        cell_voltages=cells,
        temperatures=(12.4, 13.0, 13.5, 14.4, 12.9, 13.3, 14.0),
        current=0.0,
        voltage=55.41,
        remaining_capacity=100.0,
        full_capacity=100.0,
        capacity_indicator=4,
        cycles=24,
        soc=100,
        soh=100,
    )


def test_beaver_requests_and_reply() -> None:
    assert pylon.build_beaver_request(0, 0x42) == b"~21004642E00200FD36\r"
    assert pylon.build_beaver_request(3, 0x42) == b"~21034642E00200FD33\r"
    assert pylon.build_beaver_request(0, 0x47) == b"~21004647E00200FD31\r"  # library literal
    value = _beaver_readme()
    info = pylon.encode_beaver_analog(value)
    assert len(info) == 62  # LENID 0x07C (doc §12)
    raw = pylon.build_response(0, info, ver=pylon.BEAVER_VER)
    assert raw[9:13] == b"D07C"
    assert len(raw) == 142
    frame = pylon.parse_response(raw, pylon.parse_frame(pylon.build_beaver_request(0, 0x42)))
    assert pylon.is_beaver(frame)
    assert pylon.decode_beaver_analog(frame.info) == value
    # against a Pylontech request the VER mismatch is refused; as Pylontech 0x42 it never walks
    with pytest.raises(pylon.FrameError, match="VER 0x21"):
        pylon.parse_response(raw, pylon.parse_frame(pylon.build_request(0, 0x42)))
    for stack in (None, True, False):
        with pytest.raises(pylon.PayloadError):
            pylon.decode_analog(frame.info, stack=stack)


def test_beaver_length_and_range_checks() -> None:
    info = pylon.encode_beaver_analog(_beaver_readme())
    with pytest.raises(pylon.PayloadError, match="INFO has 63"):
        pylon.decode_beaver_analog(info + b"\x00")
    with pytest.raises(pylon.PayloadError):
        pylon.decode_beaver_analog(info[:-1])
    with pytest.raises(pylon.PayloadError, match="SOC 101"):
        pylon.decode_beaver_analog(info[:-2] + b"\x65\x64")


def test_beaver_system_parameters_readme_values() -> None:
    """Doc §12: the README values fit the V3.3 order from INFO offset 0 (no INFOFLAG)."""
    p = pylon.SystemParameters(
        info_flag=0,
        cell_high_voltage=3.65,
        cell_low_voltage=2.95,
        cell_under_voltage=2.7,
        charge_high_temperature=62.0,
        charge_low_temperature=-11.0,
        charge_current_limit=120.0,
        module_high_voltage=57.6,
        module_low_voltage=49.0,
        module_under_voltage=44.8,
        discharge_high_temperature=65.0,
        discharge_low_temperature=-20.0,
        discharge_current_limit=120.0,
    )
    info = pylon.encode_beaver_system_parameters(p)
    assert len(info) == 24  # LENID 0x030 (doc §12)
    assert info[10:12] == (12000).to_bytes(2, "big")  # 10 mA
    assert info[12:14] == (5760).to_bytes(2, "big")  # 10 mV
    assert pylon.decode_beaver_system_parameters(info) == p
    with pytest.raises(pylon.PayloadError, match="24 bytes"):
        pylon.decode_beaver_system_parameters(bytes(25))


# ------------------------------------------------------------------------------------------
# Lengths and errors of the fixed layouts
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("decode", "size"),
    [
        (pylon.decode_system_parameters, 25),
        (pylon.decode_management_info, 10),
        (pylon.decode_manufacturer_info, 32),
        (pylon.decode_serial_number, 17),
        (pylon.decode_firmware_version, 6),
    ],
)
def test_fixed_layouts_need_their_exact_length(
    decode: Callable[[bytes], object], size: int
) -> None:
    ok = b"A" * size
    decode(ok)
    for bad in (ok[:-1], ok + b"A", b""):
        with pytest.raises(pylon.PayloadError, match=str(size)):
            decode(bad)


def test_alarm_lengths() -> None:
    one = pylon.encode_alarm(0, 2, [_alarm()])
    assert len(one) == 12 + 15 + 6
    assert pylon.decode_alarm(one).trailing == b""
    assert pylon.decode_alarm(one + b"\x00\x00").trailing == b"\x00\x00"
    with pytest.raises(pylon.PayloadError, match="3 trailing bytes"):
        pylon.decode_alarm(one + b"\x00" * 3)
    with pytest.raises(pylon.PayloadError, match="truncated"):
        pylon.decode_alarm(one[:-1])
    two = pylon.encode_alarm(0, 2, [_alarm(), _alarm(cell_states=(0,) * 8)], b"\x00")
    decoded = pylon.decode_alarm(two, stack=True)
    assert [len(m.cell_states) for m in decoded.modules] == [15, 8]
    with pytest.raises(pylon.PayloadError):
        pylon.decode_alarm(b"\x00")


def test_serial_and_names_refuse_control_characters() -> None:
    with pytest.raises(pylon.PayloadError, match="non-printable"):
        pylon.decode_serial_number(b"\x02" + b"ABC\x07" + b"\x00" * 12)
    with pytest.raises(pylon.PayloadError):
        pylon.encode_serial_number(pylon.SerialNumber(2, "X" * 17))


# ------------------------------------------------------------------------------------------
# Property-based round trips (every command)
# ------------------------------------------------------------------------------------------

byte = st.integers(0, 255)
state = st.sampled_from([0, 1, 2, 0xF0])
printable = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=16)


@settings(max_examples=300, deadline=None)
@given(
    flag=byte,
    adr=byte,
    mods=st.lists(
        st.builds(
            pylon.ModuleAlarm,
            cell_states=st.lists(state, max_size=24).map(tuple),
            temperature_states=st.lists(state, max_size=8).map(tuple),
            charge_current_state=state,
            module_voltage_state=state,
            discharge_current_state=state,
            status1=byte,
            status2=byte,
            status3=byte,
            status4=byte,
            status5=byte,
        ),
        min_size=1,
        max_size=4,
    ),
    trailing=st.binary(max_size=2),
)
def test_alarm_roundtrip(
    flag: int, adr: int, mods: list[pylon.ModuleAlarm], trailing: bytes
) -> None:
    stack = len(mods) > 1
    info = pylon.encode_alarm(flag, len(mods) if stack else adr, mods, trailing)
    got = pylon.decode_alarm(info, stack=stack)
    assert got.modules == tuple(mods)
    assert got.trailing == trailing
    frame = pylon.parse_response(pylon.build_response(adr, info))
    assert pylon.decode_alarm(frame.info, stack=stack) == got


def _raw(n: int, signed: bool = False) -> st.SearchStrategy[int]:
    bits = 8 * n
    return (
        st.integers(-(1 << (bits - 1)), (1 << (bits - 1)) - 1)
        if signed
        else st.integers(0, (1 << bits) - 1)
    )


@settings(max_examples=300, deadline=None)
@given(flag=byte, raws=st.tuples(*(_raw(2, f.signed) for f in pylon.SYSTEM_PARAMETER_FIELDS)))
def test_system_parameters_roundtrip(flag: int, raws: tuple[int, ...]) -> None:
    info = bytes([flag]) + b"".join(
        r.to_bytes(2, "big", signed=f.signed)
        for r, f in zip(raws, pylon.SYSTEM_PARAMETER_FIELDS, strict=True)
    )
    value = pylon.decode_system_parameters(info)
    assert pylon.encode_system_parameters(value) == info
    beaver = pylon.decode_beaver_system_parameters(info[1:])
    assert pylon.encode_beaver_system_parameters(beaver) == info[1:]


@settings(max_examples=300, deadline=None)
@given(info=st.binary(min_size=10, max_size=10))
def test_management_roundtrip(info: bytes) -> None:
    value = pylon.decode_management_info(info)
    assert pylon.encode_management_info(value) == info


@settings(max_examples=200, deadline=None)
@given(adr=byte, serial=printable, fw=st.tuples(byte, byte, byte, byte, byte))
def test_identity_roundtrips(adr: int, serial: str, fw: tuple[int, ...]) -> None:
    sn = pylon.SerialNumber(adr, serial)
    assert pylon.decode_serial_number(pylon.encode_serial_number(sn)) == sn
    version = pylon.FirmwareVersion(adr, (fw[0], fw[1]), (fw[2], fw[3], fw[4]))
    assert pylon.decode_firmware_version(pylon.encode_firmware_version(version)) == version
    maker = pylon.ManufacturerInfo(serial[:10], (fw[0], fw[1]), serial.replace("-", "")[:20])
    assert pylon.decode_manufacturer_info(pylon.encode_manufacturer_info(maker)) == maker


@settings(max_examples=300, deadline=None)
@given(
    lead=byte,
    cells=st.lists(st.integers(0, 0xFFFF), max_size=24),
    temps=st.lists(st.integers(-0x8000, 0x7FFF), max_size=8),
    tail=st.tuples(_raw(2, True), _raw(2), _raw(2), byte, _raw(2), _raw(2)),
    soc=st.integers(0, 100),
    soh=st.integers(0, 100),
)
def test_beaver_analog_roundtrip(
    lead: int,
    cells: list[int],
    temps: list[int],
    tail: tuple[int, int, int, int, int, int],
    soc: int,
    soh: int,
) -> None:
    info = (
        bytes([lead, len(cells)])
        + b"".join(c.to_bytes(2, "big") for c in cells)
        + bytes([len(temps)])
        + b"".join(t.to_bytes(2, "big", signed=True) for t in temps)
        + tail[0].to_bytes(2, "big", signed=True)
        + b"".join(x.to_bytes(2, "big") for x in tail[1:3])
        + bytes([tail[3]])
        + b"".join(x.to_bytes(2, "big") for x in tail[4:])
        + bytes([soc, soh])
    )
    value = pylon.decode_beaver_analog(info)
    assert pylon.encode_beaver_analog(value) == info


# ------------------------------------------------------------------------------------------
# Robustness: 100 000 mutated real frames raise only PylontechError (about 2 s)
# ------------------------------------------------------------------------------------------

REAL = [v["response"].encode() for v in VECTORS if v.get("response")]


def test_1e5_mutated_real_frames_raise_only_codec_errors() -> None:
    """1e5 mutations (seeded): half on the wire bytes, half on INFO with the framing re-made
    valid (LENGTH and CHKSUM recomputed) so that every decoder sees the mutated payload."""
    rng = random.Random(20240805)
    parsed = [pylon.parse_frame(f) for f in REAL if _ok(f)]
    decoded_some = 0
    for n in range(100_000):
        if n % 2:
            raw = mutate_ascii_frame(rng, rng.choice(REAL))
            try:
                frame = pylon.parse_response(raw)
            except pylon.PylontechError:
                continue
        else:
            base = rng.choice(parsed)
            info = mutate_ascii_frame(rng, base.info)
            frame = pylon.parse_frame(pylon.build_frame(base.ver, base.adr, 0x46, 0, info))
        for decode in ALL_DECODERS:
            try:
                decode(frame.info)
                decoded_some += 1
            except pylon.PylontechError:
                pass
    assert decoded_some > 1000  # the run exercised the decoders, not only the framing


def _ok(raw: bytes) -> bool:
    try:
        pylon.parse_frame(raw)
    except pylon.PylontechError:
        return False
    return True
