"""Tests of the Pylontech LV RS485 codec against the reference doc and the real frames.

Reference: /work/shared/protocols/pylontech-rs485.md (section numbers below are that doc's).
Vectors: pylontech_rs485.json and pylontech_rs485_capture.json (see tests/vectors.py).
"""

from __future__ import annotations

import contextlib
import itertools
import math
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bmslink.protocols.pylontech_rs485 import (
    CID1_BATTERY,
    MODULE_TAIL_FIELDS,
    AnalogValues,
    ChecksumError,
    Cid2,
    EchoError,
    Frame,
    FrameError,
    LengthChecksumError,
    LengthError,
    ModuleAnalog,
    PayloadError,
    PylontechError,
    Rtn,
    RtnError,
    build_frame,
    build_request,
    build_response,
    decode_analog,
    encode_analog,
    frame_checksum,
    length_checksum,
    parse_frame,
    parse_response,
)

try:  # tests/ is a rootdir package or on sys.path depending on how pytest was started
    from tests.vectors import load_vectors
except ImportError:  # pragma: no cover
    from vectors import load_vectors  # type: ignore[import-not-found,no-redef]

VECTORS: list[dict[str, Any]] = load_vectors("pylontech_rs485")["vectors"]
CAPTURE: list[dict[str, Any]] = load_vectors("pylontech_rs485_capture")["frames"]

# Wire resolutions of 0x42 (doc §8.4): 1 mV, 0.1 K, 100 mA, 1 mAh.
V_RES, T_RES, I_RES, AH_RES = 0.001, 0.1, 0.1, 0.001


def _b(s: str) -> bytes:
    return s.encode("ascii")


def _vid(v: dict[str, Any]) -> str:
    return f"{v['vector_id']}-{v['command']}"


def _close(a: float, b: float, res: float) -> bool:
    return abs(a - b) <= res / 2 + 1e-9


def _refab(body: str) -> bytes:
    """Wire frame from a body (text between ~ and CHKSUM) with a correct CHKSUM."""
    raw = _b(body)
    return b"~%s%04X\r" % (raw, frame_checksum(raw))


# ------------------------------------------------------------------------------------------
# §3 LENGTH / LCHKSUM, §4 CHKSUM, §6 canonical requests
# ------------------------------------------------------------------------------------------

LCHKSUM_TABLE = [
    (0x000, 0x0, "0000"),
    (0x002, 0xE, "E002"),
    (0x012, 0xD, "D012"),
    (0x014, 0xB, "B014"),
    (0x022, 0xC, "C022"),
    (0x032, 0xB, "B032"),
    (0x040, 0xC, "C040"),
    (0x042, 0xA, "A042"),
    (0x06E, 0xC, "C06E"),
    (0x07A, 0xF, "F07A"),
    (0x07C, 0xD, "D07C"),
    (0x0D8, 0xB, "B0D8"),
    (0x0F0, 0x1, "10F0"),
    (0x0F1, 0x0, "00F1"),  # digit sum 16: must mask to 0, never 16 (5-char LENGTH)
]


@pytest.mark.parametrize(("lenid", "lchksum", "field"), LCHKSUM_TABLE)
def test_length_checksum_table(lenid: int, lchksum: int, field: str) -> None:
    assert length_checksum(lenid) == lchksum
    assert f"{(length_checksum(lenid) << 12) | lenid:04X}" == field
    if lenid % 2 == 0:
        frame = build_frame(0x20, 2, 0x46, 0, bytes(lenid // 2))
        assert frame[9:13] == _b(field)
        assert len(frame) == 18 + lenid


def test_length_checksum_range() -> None:
    assert length_checksum(0xFFF) == (-(15 * 3)) & 0xF
    for bad in (-1, 0x1000):
        with pytest.raises(LengthError, match=r"0\.\.0xFFF"):
            length_checksum(bad)


def test_frame_checksum_worked_examples() -> None:
    body = b"20024642E00202"
    assert sum(body) == 0x02CD
    assert frame_checksum(body) == 0xFD33
    assert frame_checksum(b"200246000000") == 0xFDB2
    # V3.3 errata (§4): generic example states FC72, the arithmetic gives FC71.
    assert frame_checksum(b"1203400456ABCEFE") == 0xFC71
    # sum ≡ 0 mod 65536 must give 0, not 0x10000.
    assert frame_checksum(b"\x00") == 0
    assert frame_checksum(bytes([0xFF]) * 257 + bytes([0x01])) == 0


def test_frame_checksum_errata_frames_are_refused() -> None:
    # The generic V3.3 example is not a consistent frame (LENID 0x456 vs 4 INFO characters):
    # it fails the LENID check too, and the error is both a LengthError and a ChecksumError.
    with pytest.raises(ChecksumError, match="expected FC71, got FC72") as exc_info:
        parse_frame(_b("~1203400456ABCEFEFC72\r"))
    assert isinstance(exc_info.value, LengthError)
    with pytest.raises(LengthError) as exc_info2:
        parse_frame(_b("~1203400456ABCEFEFC71\r"))
    assert not isinstance(exc_info2.value, ChecksumError)


CANONICAL_REQUESTS = [
    # (adr, cid2, info, frame) -- doc §6 table, every row
    (0x02, 0x4F, None, "~2002464F0000FD98\r"),
    (0x02, 0x51, None, "~200246510000FDAC\r"),
    (0x02, 0x42, None, "~20024642E00202FD33\r"),
    (0x02, 0x42, b"\xff", "~20024642E002FFFD09\r"),
    (0x02, 0x44, None, "~20024644E00202FD31\r"),
    (0x02, 0x47, None, "~200246470000FDA7\r"),
    (0x02, 0x47, b"\x02", "~20024647E00202FD2E\r"),
    (0x02, 0x92, None, "~20024692E00202FD2E\r"),
    (0x02, 0x93, None, "~20024693E00202FD2D\r"),
    (0x02, 0x96, None, "~20024696E00202FD2A\r"),
    (0x03, 0x42, None, "~20034642E00203FD31\r"),
    (0x03, 0x93, None, "~20034693E00203FD2B\r"),
    (0x03, 0x44, None, "~20034644E00203FD2F\r"),
    (0x03, 0x92, None, "~20034692E00203FD2C\r"),
    (0x03, 0x96, None, "~20034696E00203FD28\r"),
    (0x12, 0x42, None, "~20124642E00212FD31\r"),
    (0x12, 0x42, b"\xff", "~20124642E002FFFD08\r"),
    (0x37, 0x42, None, "~20374642E00237FD23\r"),
]


@pytest.mark.parametrize(("adr", "cid2", "info", "expected"), CANONICAL_REQUESTS)
def test_canonical_requests(adr: int, cid2: int, info: bytes | None, expected: str) -> None:
    frame = build_request(adr, cid2, info)
    assert frame == _b(expected)
    parsed = parse_frame(frame)
    assert (parsed.ver, parsed.adr, parsed.cid1, parsed.cid2) == (0x20, adr, 0x46, cid2)


def test_other_worked_frames() -> None:
    # console baud switch (§1), Beaver (§12) and PACE (§13.1) requests
    assert build_frame(0x20, 0x01, 0x46, 0x82, bytes.fromhex("8520")) == _b(
        "~20014682C0048520FCC3\r"
    )
    assert build_request(0x00, 0x42, b"\x00", ver=0x21) == _b("~21004642E00200FD36\r")
    assert build_request(0x03, 0x42, b"\x00", ver=0x21) == _b("~21034642E00200FD33\r")
    assert build_request(0x00, 0x47, b"\x00", ver=0x21) == _b("~21004647E00200FD31\r")
    assert build_request(0x01, 0x42, ver=0x25) == _b("~25014642E00201FD30\r")
    assert build_request(0x01, 0xC1, b"\x01", ver=0x25) == _b("~250146C1E00201FD22\r")
    # §4: the 0x4F reply and the §5 error reply
    assert build_response(0x02, b"") == _b("~200246000000FDB2\r")
    assert build_response(0x02, b"", rtn=Rtn.CID2_INVALID) == _b("~200246040000FDAE\r")


def test_enums_and_constants() -> None:
    assert CID1_BATTERY == 0x46
    assert {c.name: int(c) for c in Cid2}.items() >= {
        "ANALOG": 0x42,
        "ALARM": 0x44,
        "SYSTEM_PARAMETERS": 0x47,
        "PROTOCOL_VERSION": 0x4F,
        "MANUFACTURER_INFO": 0x51,
        "CHARGE_DISCHARGE_MANAGEMENT": 0x92,
        "SERIAL_NUMBER": 0x93,
        "FIRMWARE_VERSION": 0x96,
    }.items()
    assert sorted(int(r) for r in Rtn) == [0, 1, 2, 3, 4, 5, 6, 0x90, 0x91]


def test_build_errors() -> None:
    with pytest.raises(FrameError, match="ADR must be a byte"):
        build_frame(0x20, 256, 0x46, 0x42)
    with pytest.raises(FrameError, match="VER"):
        build_frame(-1, 2, 0x46, 0x42)
    with pytest.raises(LengthError, match="at most 2047 bytes, got 2048"):
        build_frame(0x20, 2, 0x46, 0x42, bytes(2048))
    assert len(build_frame(0x20, 2, 0x46, 0x42, bytes(2047))) == 18 + 4094
    with pytest.raises(PylontechError, match="no default request INFO"):
        build_request(2, 0x94)
    assert build_request(2, 0x94, bytes(9)).startswith(b"~20024694")


def test_errors_are_value_errors() -> None:
    for cls in (FrameError, EchoError, LengthChecksumError, LengthError, ChecksumError):
        assert issubclass(cls, PylontechError)
    assert issubclass(RtnError, PylontechError)
    assert issubclass(PayloadError, PylontechError)
    assert issubclass(PylontechError, ValueError)
    assert issubclass(EchoError, FrameError)


# ------------------------------------------------------------------------------------------
# Real vectors
# ------------------------------------------------------------------------------------------


def _integrity_ok(v: dict[str, Any]) -> bool:
    # checksum_ok None = reconstructed frame whose CHKSUM was computed, i.e. it verifies.
    return v["checksum_ok"] is not False and v["lchksum_ok"] and v["lenid_ok"]


WITH_RESPONSE = [v for v in VECTORS if v.get("response")]
PYLON_VALID = [v for v in WITH_RESPONSE if "dialect" not in v and _integrity_ok(v)]
BAD_INTEGRITY = [v for v in WITH_RESPONSE if not _integrity_ok(v)]
ANALOG_OK = [v for v in PYLON_VALID if v["command"] == "0x42"]
DIALECTS = [v for v in WITH_RESPONSE if "dialect" in v]


def test_vector_inventory() -> None:
    """Guards the parametrizations below against an empty or reshaped vector file."""
    assert len(VECTORS) >= 50
    assert len(ANALOG_OK) >= 15
    assert len(BAD_INTEGRITY) >= 1
    assert {v["dialect"].split()[0] for v in DIALECTS} >= {"PACE", "Seplos", "Pylontech"}
    assert len(CAPTURE) >= 900


@pytest.mark.parametrize("v", PYLON_VALID, ids=_vid)
def test_vector_valid_frames_parse(v: dict[str, Any]) -> None:
    frame = parse_frame(_b(v["response"]))
    ref = v.get("reference_decode") or {}
    if ref.get("frame"):
        rf = ref["frame"]
        assert frame.ver == int(rf["ver"], 16)
        assert frame.adr == int(rf["adr"], 16)
        assert frame.cid1 == int(rf["cid1"], 16)
        assert frame.cid2 == int(rf["cid2"], 16)
        assert 2 * len(frame.info) == rf["lenid"]
    # the wire form is reproduced byte for byte (all real frames are uppercase)
    assert frame.to_bytes() == _b(v["response"])
    request = parse_frame(_b(v["request"])) if v.get("request") else None
    if frame.cid2 == 0:
        assert parse_response(_b(v["response"]), request) == frame
    else:
        with pytest.raises(RtnError) as exc_info:
            parse_response(_b(v["response"]), request)
        assert exc_info.value.rtn == frame.cid2


@pytest.mark.parametrize("v", [v for v in VECTORS if v.get("request")], ids=_vid)
def test_vector_requests(v: dict[str, Any]) -> None:
    raw = _b(v["request"])
    req = parse_frame(raw)  # every recorded request is a valid frame
    assert v.get("request_checksum_ok") is not False
    # an echo of the request is not a reply
    with pytest.raises(EchoError, match="not a return code"):
        parse_response(raw, req)
    assert build_frame(req.ver, req.adr, req.cid1, req.cid2, req.info) == raw
    # requests carrying the V3.3-defined INFO are exactly what build_request produces
    v33_default = {0x47: b"", 0x4F: b"", 0x51: b""}.get(req.cid2, bytes((req.adr,)))
    if req.cid1 == CID1_BATTERY and req.cid2 in set(Cid2) and req.info == v33_default:
        assert build_request(req.adr, req.cid2, ver=req.ver) == raw
    assert build_request(req.adr, req.cid2, req.info, ver=req.ver) == raw


@pytest.mark.parametrize("v", BAD_INTEGRITY, ids=_vid)
def test_vector_bad_integrity_refused(v: dict[str, Any]) -> None:
    with pytest.raises(PylontechError) as exc_info:
        parse_frame(_b(v["response"]))
    err = exc_info.value
    if v["checksum_ok"] is False:
        assert isinstance(err, ChecksumError)
        assert v["checksum_computed"] in str(err)
    if not v["lchksum_ok"]:
        assert isinstance(err, LengthChecksumError)
    if not v["lenid_ok"]:
        assert isinstance(err, LengthError)
    with pytest.raises(type(err)):
        parse_response(_b(v["response"]))


def test_v33_74ah_example_checksum_erratum() -> None:
    """§4: the V3.3 0x42 example states E1A2; with E27A it decodes to the stated values."""
    v = next(v for v in VECTORS if v["vector_id"] == "pylontech_rs485-34114622")
    bad = _b(v["response"])
    with pytest.raises(ChecksumError, match="expected E27A, got E1A2"):
        parse_frame(bad)
    fixed = bad[:-5] + b"E27A\r"
    values = decode_analog(parse_frame(fixed).info)
    (mod,) = values.modules
    assert (values.info_flag, values.command_value) == (0x11, 2)
    assert mod.cell_voltages[0] == 3.397
    assert mod.cell_voltages[1] == 3.396
    assert mod.cell_voltages[-1] == 3.402
    assert mod.temperatures[0] == 28.0
    assert mod.temperatures[-1] == 29.0
    assert mod.current == 0.0
    assert mod.voltage == 50.981
    assert mod.user_defined == 4
    assert mod.cycles == 2
    assert mod.full_capacity == 74.0


def _assert_module_matches(mod: ModuleAnalog, ref: dict[str, Any]) -> None:
    assert len(mod.cell_voltages) == ref["cell_count"]
    assert [round(c * 1000) for c in mod.cell_voltages] == ref["cell_mV"]
    assert len(mod.temperatures) == ref["temp_count"]
    for got, want in zip(mod.temperatures, ref["temps_C"], strict=True):
        assert _close(got, want, T_RES)
    assert _close(mod.current, ref["current_A"], I_RES)
    assert _close(mod.voltage, ref["voltage_V"], V_RES)
    assert mod.user_defined == ref["user_defined_items"]
    assert mod.cycles == ref["cycles"]
    assert _close(mod.remaining_capacity, ref["remain_Ah"], AH_RES)
    assert _close(mod.full_capacity, ref["total_Ah"], AH_RES)
    if mod.user_defined == 4:
        assert round(mod.remaining_capacity * 1000) == ref["remain_capacity_2_raw"]
        assert round(mod.full_capacity * 1000) == ref["total_capacity_2_raw"]
        assert ref["remain_capacity_1_raw"] == ref["total_capacity_1_raw"] == 0xFFFF
    else:
        assert round(mod.remaining_capacity * 1000) == ref["remain_capacity_1_raw"]
        assert round(mod.full_capacity * 1000) == ref["total_capacity_1_raw"]
    soc = mod.soc
    assert soc is not None
    assert math.isclose(soc, ref["remain_Ah"] / ref["total_Ah"] * 100, rel_tol=1e-6)


@pytest.mark.parametrize("v", ANALOG_OK, ids=_vid)
def test_vector_analog_matches_reference_decode(v: dict[str, Any]) -> None:
    frame = parse_response(_b(v["response"]), parse_frame(_b(v["request"])))
    request_info = parse_frame(_b(v["request"])).info
    is_stack = request_info[:1] == b"\xff"
    values = decode_analog(frame.info)
    assert values == decode_analog(frame.info, stack=is_stack)
    info = v["reference_decode"]["info"]
    assert info["trailing_bytes"] == 0
    assert values.info_flag == info["infoflag"]
    if is_stack:
        assert values.command_value == info["module_count"] == len(values.modules)
    else:
        assert values.command_value == info["command_value"] == frame.adr
        assert len(values.modules) == 1
    assert len(values.modules) == len(info["modules"])
    for mod, ref in zip(values.modules, info["modules"], strict=True):
        _assert_module_matches(mod, ref)
    # exact re-encoding of the real INFO
    assert encode_analog(values.info_flag, values.command_value, values.modules) == frame.info


def test_vector_source_values_up2500() -> None:
    """python-pylontech's stated decode of the UP2500 frame (§8.4 "other verified decodes")."""
    v = next(v for v in VECTORS if v["vector_id"] == "pylontech_rs485-25237099")
    sv = v["source_values"]
    (mod,) = decode_analog(parse_frame(_b(v["response"])).info).modules
    assert list(mod.cell_voltages) == sv["CellVoltages"]
    assert mod.temperatures[0] == sv["AverageBMSTemperature"]  # really T1 = BMS board
    assert list(mod.temperatures[1:]) == sv["GroupedCellsTemperatures"]
    assert mod.current == sv["Current"]
    assert mod.voltage == sv["Voltage"]
    assert mod.cycles == sv["CycleNumber"]
    assert mod.remaining_capacity == sv["RemainingCapacity"]
    assert mod.full_capacity == sv["TotalCapacity"]
    assert mod.soc is not None
    assert round(mod.soc / 100, 2) == sv["StateOfCharge"]


def test_vector_source_values_us3000c_worked_decode() -> None:
    """Doc §8.4 worked decode, US3000C [PP #42]."""
    v = next(v for v in VECTORS if v["vector_id"] == "pylontech_rs485-64090838")
    sv = v["source_values"]
    values = decode_analog(parse_frame(_b(v["response"])).info)
    (mod,) = values.modules
    assert (values.info_flag, values.command_value) == (0x11, 2)
    assert list(mod.cell_voltages) == sv["CellVoltages"]
    assert mod.cell_voltages == (3.293,) * 6 + (3.292,) + (3.293,) * 8
    assert mod.temperatures == (28.0, 26.0, 25.5, 26.0, 27.3)
    assert mod.current == 0.0
    assert mod.voltage == 49.394
    assert (mod.user_defined, mod.cycles) == (4, 0)
    assert (mod.remaining_capacity, mod.full_capacity) == (36.26, 74.0)
    assert mod.soc is not None
    assert round(mod.soc) == 49


def test_vector_us3000a_current_is_100ma_lsb() -> None:
    """§15: 0x00BE is +19.0 A (100 mA LSB), not 1.9 A as the Go package decodes."""
    v = next(v for v in VECTORS if v["vector_id"] == "pylontech_rs485-02924374")
    values = decode_analog(parse_frame(_b(v["response"])).info, stack=True)
    assert [m.current for m in values.modules] == [19.0, 18.9]
    assert values.modules[0].full_capacity == v["source_values"]["Status[0].TotalCapacity"]


def test_vector_remaining_above_full_is_decoded_as_sent() -> None:
    """2 x US3000: remaining 75.48 Ah > full 74 Ah on the wire; decoded as sent, SOC > 100."""
    v = next(v for v in VECTORS if v["vector_id"] == "pylontech_rs485-34074016")
    values = decode_analog(parse_frame(_b(v["response"])).info)
    assert [m.remaining_capacity for m in values.modules] == [75.48, 75.48]
    assert all(m.current < 0 for m in values.modules)  # source: "Status[0].Current < 0"
    soc = values.modules[0].soc
    assert soc is not None
    assert soc > 100


def test_vector_ff_reply_with_one_module() -> None:
    v = next(v for v in VECTORS if v["vector_id"] == "pylontech_rs485-43259045")
    info = parse_frame(_b(v["response"])).info
    for stack in (None, True, False):
        values = decode_analog(info, stack=stack)
        assert values.command_value == 1
        assert len(values.modules) == 1


def test_vector_error_reply_rtn() -> None:
    v = next(v for v in VECTORS if v["command"] == "error-RTN")
    with pytest.raises(RtnError) as exc_info:
        parse_response(_b(v["response"]))
    err = exc_info.value
    assert err.rtn == 0x04
    assert err.rtn is Rtn.CID2_INVALID or Rtn(err.rtn) is Rtn.CID2_INVALID
    assert err.name == "CID2_INVALID"
    assert err.retryable is False
    assert "0x04" in str(err)


# ---- related dialects (§13): refused or at least not mis-decoded ------------------------


def _dialect(vector_id: str) -> dict[str, Any]:
    return next(v for v in DIALECTS if v["vector_id"] == vector_id)


def test_dialect_pace_0x42_not_misdecoded() -> None:
    v = _dialect("pylontech_rs485-85035719")
    frame = parse_frame(_b(v["response"]))  # the framing is the same
    assert (frame.ver, frame.adr, len(frame.info)) == (0x25, 0x01, 62)
    # against a Pylontech request (VER 0x20) the reply is refused outright
    with pytest.raises(FrameError, match="VER 0x25, expected 0x20"):
        parse_response(_b(v["response"]), parse_frame(build_request(0x01, Cid2.ANALOG)))
    # as a PACE exchange it parses, but the payload does not walk as a V3.3 0x42
    assert parse_response(_b(v["response"]), parse_frame(_b(v["request"]))) == frame
    for stack in (None, True, False):
        with pytest.raises(PayloadError, match="trailing bytes"):
            decode_analog(frame.info, stack=stack)


def test_dialect_pace_0xc1_frame_only() -> None:
    v = _dialect("pylontech_rs485-18290819")
    frame = parse_response(_b(v["response"]), parse_frame(_b(v["request"])))
    assert frame.ver == 0x25
    assert b"16S100A" in frame.info
    with pytest.raises(PayloadError):
        decode_analog(frame.info)


def test_dialect_seplos_error_reply() -> None:
    v = _dialect("pylontech_rs485-65346287")
    with pytest.raises(RtnError) as exc_info:
        parse_response(_b(v["response"]), parse_frame(_b(v["request"])))
    assert exc_info.value.rtn == Rtn.CID2_INVALID
    assert exc_info.value.frame is not None
    assert exc_info.value.frame.adr == 0x00


def test_dialect_v35_system_analog_not_misdecoded() -> None:
    v = _dialect("pylontech_rs485-32092918")
    frame = parse_response(_b(v["response"]), parse_frame(_b(v["request"])))
    assert len(frame.info) == 49
    with pytest.raises(PayloadError, match="P=100"):
        decode_analog(frame.info)


# ------------------------------------------------------------------------------------------
# Capture (2-pack stack, INFO=FF)
# ------------------------------------------------------------------------------------------

CAPTURE_REQUEST = _b("~20024642E002FFFD09\r")


def test_capture_alternates_and_requests_are_canonical() -> None:
    requests = CAPTURE[0::2]
    responses = CAPTURE[1::2]
    assert len(requests) == len(responses) == len(CAPTURE) // 2
    assert all(_b(r["frame"]) == CAPTURE_REQUEST for r in requests)
    assert build_request(2, Cid2.ANALOG, b"\xff") == CAPTURE_REQUEST
    assert all(a["ts"] < b["ts"] for a, b in itertools.pairwise(CAPTURE))


def test_capture_every_response_decodes() -> None:
    request = parse_frame(CAPTURE_REQUEST)
    count = 0
    for entry in CAPTURE[1::2]:
        frame = parse_response(_b(entry["frame"]), request)
        values = decode_analog(frame.info, stack=True)
        assert values == decode_analog(frame.info)
        assert values.command_value == 2
        assert len(values.modules) == 2
        for mod in values.modules:
            assert len(mod.cell_voltages) == 15
            assert all(3.0 <= c <= 3.65 for c in mod.cell_voltages)
            assert len(mod.temperatures) == 5
            assert all(10.0 <= t <= 45.0 for t in mod.temperatures)
            assert -10.0 <= mod.current <= 10.0
            assert 45.0 <= mod.voltage <= 54.0
            assert abs(mod.voltage - sum(mod.cell_voltages)) < 0.1
            assert mod.user_defined == 2
            assert mod.full_capacity == 50.0
            assert 0 < mod.remaining_capacity <= mod.full_capacity
            assert 0 < mod.cycles < 1000
        assert encode_analog(values.info_flag, 2, values.modules) == frame.info
        count += 1
    assert count == len(CAPTURE) // 2


def test_capture_first_response_exact() -> None:
    frame = parse_response(_b(CAPTURE[1]["frame"]), parse_frame(CAPTURE_REQUEST))
    assert (frame.ver, frame.adr, frame.cid1, frame.cid2, len(frame.info)) == (
        0x20,
        0x02,
        0x46,
        0x00,
        108,
    )
    values = decode_analog(frame.info)
    assert values.info_flag == 0x11
    assert values.command_value == 2
    m1, m2 = values.modules
    # hand-decoded from the hex (doc §8.4 offsets)
    assert m1 == ModuleAnalog(
        cell_voltages=tuple(
            mv / 1000
            for mv in (
                *(3315, 3316, 3317, 3316, 3317, 3316, 3316, 3315),
                *(3314, 3314, 3314, 3315, 3314, 3315, 3315),
            )
        ),
        temperatures=(30.0, 27.0, 27.0, 27.0, 26.0),
        current=1.2,
        voltage=49.729,
        remaining_capacity=23.5,
        full_capacity=50.0,
        cycles=99,
        user_defined=2,
    )
    assert m2 == ModuleAnalog(
        cell_voltages=tuple(
            mv / 1000
            for mv in (
                *(3315, 3314, 3315, 3314, 3315, 3314, 3315, 3315),
                *(3316, 3316, 3315, 3316, 3314, 3317, 3315),
            )
        ),
        temperatures=(30.0, 26.0, 26.0, 26.0, 26.0),
        current=1.1,
        voltage=49.726,
        remaining_capacity=23.0,
        full_capacity=50.0,
        cycles=147,
        user_defined=2,
    )
    assert m1.soc == 47.0
    assert m2.soc == 46.0


# ------------------------------------------------------------------------------------------
# Corrupt frames -> the specific typed error
# ------------------------------------------------------------------------------------------

GOOD = _b(
    "~20024600F07A11020F0CDD0CDD0CDD0CDD0CDD0CDD0CDC0CDD0CDD0CDD0CDD0CDD0CDD0CDD0CDD"
    "050BC30BAF0BAA0BAF0BBC0000C0F2FFFF04FFFF0000008DA4012110E0F7\r"
)


def test_good_frame_baseline() -> None:
    frame = parse_frame(GOOD)
    assert frame.cid2 == 0
    assert len(frame.info) == 0x7A // 2


def test_bad_chksum() -> None:
    flipped = GOOD[:20] + (b"1" if GOOD[20:21] != b"1" else b"2") + GOOD[21:]
    with pytest.raises(ChecksumError, match=r"CHKSUM mismatch: expected .*, got E0F7"):
        parse_frame(flipped)
    wrong = GOOD[:-5] + b"E0F8\r"
    with pytest.raises(ChecksumError, match="expected E0F7, got E0F8") as exc_info:
        parse_frame(wrong)
    assert not isinstance(exc_info.value, (LengthError, LengthChecksumError))


def test_bad_lchksum() -> None:
    # altered LCHKSUM with a recomputed CHKSUM: only the length checksum fails
    body = GOOD[1:-5].replace(b"F07A", b"A07A", 1)
    with pytest.raises(LengthChecksumError, match="expected 0xF, got 0xA") as exc_info:
        parse_frame(_refab(body.decode()))
    assert not isinstance(exc_info.value, ChecksumError)
    # altered LCHKSUM alone also breaks CHKSUM: the error is both, the message says both
    raw = GOOD.replace(b"F07A", b"A07A", 1)
    with pytest.raises(LengthChecksumError) as exc_info2:
        parse_frame(raw)
    assert isinstance(exc_info2.value, ChecksumError)
    assert "LCHKSUM" in str(exc_info2.value)
    assert "CHKSUM mismatch" in str(exc_info2.value)


def test_lenid_mismatch() -> None:
    # two INFO characters dropped, LENGTH and CHKSUM consistent with the header -> LENID error
    body = GOOD[1:-5].decode()
    short = body[:-2]
    with pytest.raises(LengthError, match="LENID says 122 INFO characters, frame holds 120"):
        parse_frame(_refab(short))
    longer = body + "00"
    with pytest.raises(LengthError, match="frame holds 124"):
        parse_frame(_refab(longer))
    # odd LENID (with a matching LCHKSUM)
    odd = "20024600" + f"{(length_checksum(3) << 12) | 3:04X}" + "ABC"
    with pytest.raises(FrameError, match="odd number"):
        parse_frame(_refab(odd))
    odd_even = "20024600" + f"{(length_checksum(3) << 12) | 3:04X}" + "ABCD"
    with pytest.raises(LengthError, match="odd"):
        parse_frame(_refab(odd_even))


def test_truncated() -> None:
    for cut in (1, 2, 5, 40, len(GOOD) - 1):
        with pytest.raises(FrameError, match="EOI"):
            parse_frame(GOOD[:-cut])
    with pytest.raises(FrameError, match="at least 18"):
        parse_frame(b"~20024600FDB2\r")
    with pytest.raises(FrameError, match="empty"):
        parse_frame(b"")


def test_missing_soi_eoi_and_lf() -> None:
    with pytest.raises(FrameError, match="SOI"):
        parse_frame(GOOD[1:])
    with pytest.raises(FrameError, match="EOI"):
        parse_frame(GOOD[:-1])
    with pytest.raises(FrameError, match="trailing LF"):
        parse_frame(GOOD + b"\n")
    with pytest.raises(FrameError, match="EOI"):
        parse_frame(GOOD[:-1] + b"\n")


def test_non_hex() -> None:
    for bad in (b"G", b" ", b"~", b"\r", b"\x00", b"\xff"):
        raw = GOOD[:30] + bad + GOOD[31:]
        with pytest.raises(FrameError, match="non-hex character"):
            parse_frame(raw)
    # bytes.fromhex would skip whitespace: it must not be accepted
    with pytest.raises(FrameError, match="non-hex"):
        parse_frame(b"~20 0246000000FDB2\r"[:-1] + b"\r")


def test_lowercase_hex_checksum_over_received_chars() -> None:
    body = b"20024642e00202"
    raw = b"~%s%04x\r" % (body, frame_checksum(body))
    frame = parse_frame(raw)
    assert frame == Frame(0x20, 0x02, 0x46, 0x42, b"\x02")
    # the uppercase checksum (Go package style, normalised case) is wrong for these chars
    with pytest.raises(ChecksumError):
        parse_frame(b"~20024642e00202FD33\r")
    # lowercase CHKSUM digits are fine too
    assert parse_frame(b"~20024642E00202fd33\r") == frame


@pytest.mark.parametrize("rtn", [r for r in Rtn if r != Rtn.NORMAL])
def test_rtn_errors(rtn: Rtn) -> None:
    raw = build_response(0x02, b"", rtn=rtn)
    assert parse_frame(raw).cid2 == rtn  # parse_frame does not interpret RTN
    with pytest.raises(RtnError) as exc_info:
        parse_response(raw, parse_frame(build_request(0x02, Cid2.ANALOG)))
    err = exc_info.value
    assert err.rtn == rtn
    assert err.name == rtn.name
    assert err.retryable is (
        rtn in (Rtn.CHKSUM_ERROR, Rtn.LCHKSUM_ERROR, Rtn.INTERNAL_COMMUNICATION_ERROR)
    )
    assert f"0x{int(rtn):02X}" in str(err)


def test_rtn_not_in_table_is_echo() -> None:
    request = build_request(0x02, Cid2.ANALOG)
    with pytest.raises(EchoError, match="echo of the request"):
        parse_response(request, parse_frame(request))
    with pytest.raises(EchoError, match=r"RTN 0x07 is not a return code"):
        parse_response(build_response(0x02, b"", rtn=0x07))
    with pytest.raises(FrameError):  # EchoError is a FrameError
        parse_response(build_response(0x02, b"", rtn=0x92))


def test_response_addressing() -> None:
    reply = build_response(0x03, b"")
    with pytest.raises(FrameError, match="ADR 0x03, expected ADR 0x02"):
        parse_response(reply, parse_frame(build_request(0x02, Cid2.ANALOG)))
    assert parse_response(reply, parse_frame(build_request(0x03, Cid2.ANALOG))).adr == 3
    with pytest.raises(FrameError, match="CID1 0x4A, expected 0x46"):
        parse_response(build_frame(0x20, 0x02, 0x4A, 0x00))
    # 0x4F: "battery ignores VER" -> any reply VER is accepted
    req_4f = parse_frame(build_request(0x02, Cid2.PROTOCOL_VERSION, ver=0x00))
    assert parse_response(_b("~200246000000FDB2\r"), req_4f).ver == 0x20
    with pytest.raises(FrameError, match="VER 0x20, expected 0x21"):
        parse_response(_b("~200246000000FDB2\r"), parse_frame(build_request(2, 0x47, ver=0x21)))
    # RTN errors win over the VER check (a VER error reply carries the pack's own VER)
    with pytest.raises(RtnError):
        parse_response(
            build_response(2, b"", rtn=Rtn.VER_ERROR),
            parse_frame(build_request(2, 0x42, ver=0x21)),
        )


# ------------------------------------------------------------------------------------------
# 0x42 decode rules (§8.4, §10.4, §11 step 7)
# ------------------------------------------------------------------------------------------


def _module(
    *,
    cells: int = 15,
    temps: int = 5,
    p: int = 2,
    remaining: float = 23.5,
    full: float = 50.0,
    current: float = -2.9,
) -> ModuleAnalog:
    return ModuleAnalog(
        cell_voltages=tuple(3.3 + i / 1000 for i in range(cells)),
        temperatures=tuple(20.0 + i / 10 for i in range(temps)),
        current=current,
        voltage=49.5,
        remaining_capacity=remaining,
        full_capacity=full,
        cycles=12,
        user_defined=p,
    )


def test_block_lengths() -> None:
    assert len(encode_analog(0, 2, [_module()])) == 2 + 53
    assert len(encode_analog(0, 2, [_module(p=4)])) == 2 + 59
    assert len(encode_analog(0, 2, [_module(temps=6, p=4)])) == 2 + 61  # US5000 inference
    assert len(encode_analog(0, 2, [_module(cells=8, p=4)])) == 47  # UP2500, LENID 0x05E
    assert [f.name for f in MODULE_TAIL_FIELDS] == [
        "current",
        "voltage",
        "remaining_capacity_1",
        "user_defined",
        "full_capacity_1",
        "cycles",
        "remaining_capacity_2",
        "full_capacity_2",
    ]


def test_mixed_stack_decided_per_block() -> None:
    mods = [
        _module(p=4, remaining=60.0, full=74.0),
        _module(p=2, temps=6),
        _module(cells=8, p=4, remaining=95.46, full=111.0, current=0.0),
        _module(p=4, remaining=40.0, full=50.0),  # 50 Ah pack sending P=4 (§8.4)
    ]
    info = encode_analog(0x11, len(mods), mods)
    values = decode_analog(info)
    assert values == AnalogValues(0x11, 4, tuple(values.modules))
    assert [m.user_defined for m in values.modules] == [4, 2, 4, 4]
    assert [len(m.temperatures) for m in values.modules] == [5, 6, 5, 5]
    assert [m.full_capacity for m in values.modules] == [74.0, 50.0, 111.0, 50.0]
    assert values.modules[1].temperatures[5] == 20.5  # 6th = MOSFET
    assert decode_analog(info, stack=True) == values


def test_per_address_reply_at_adr2_is_one_module() -> None:
    info = encode_analog(0x11, 2, [_module()])
    values = decode_analog(info)
    assert len(values.modules) == 1
    assert values.command_value == 2
    assert decode_analog(info, stack=False) == values
    with pytest.raises(PayloadError, match="module 2 at INFO offset 55: truncated"):
        decode_analog(info, stack=True)


def test_stack_reply_forced_single_is_refused() -> None:
    info = encode_analog(0x11, 2, [_module(), _module()])
    with pytest.raises(PayloadError, match="53 trailing bytes after 1 module block"):
        decode_analog(info, stack=False)


def test_module_count_mismatch() -> None:
    three_claimed = encode_analog(0x11, 3, [_module(), _module()])
    with pytest.raises(PayloadError, match=r"module 3 .* truncated"):
        decode_analog(three_claimed)
    one_claimed = encode_analog(0x11, 1, [_module(), _module()])
    with pytest.raises(PayloadError, match="trailing bytes after the only module block"):
        decode_analog(one_claimed)
    with pytest.raises(PayloadError, match="trailing bytes after 2 module block"):
        decode_analog(encode_analog(0x11, 2, [_module(), _module()]) + b"\x00")


def test_trailing_bytes_refused() -> None:
    info = encode_analog(0x00, 2, [_module()])
    for extra in (b"\x00", b"\x63", b"\x00\x00\x00"):
        with pytest.raises(PayloadError, match="trailing"):
            decode_analog(info + extra)


def test_bad_user_defined_count() -> None:
    info = bytearray(encode_analog(0x00, 2, [_module()]))
    p_at = 2 + 1 + 30 + 1 + 10 + 6
    assert info[p_at] == 2
    for p in (0, 1, 3, 5, 0xFF):
        info[p_at] = p
        with pytest.raises(PayloadError, match=f"P={p}, expected 2 or 4"):
            decode_analog(bytes(info))


def test_truncated_payloads() -> None:
    info = encode_analog(0x00, 2, [_module(p=4)])
    for cut in range(1, len(info) - 1):
        with pytest.raises(PayloadError):
            decode_analog(info[:-cut])
    with pytest.raises(PayloadError, match="at least 2 bytes"):
        decode_analog(b"\x00")
    with pytest.raises(PayloadError, match="no module block"):
        decode_analog(b"\x00\x02")


def test_empty_stack() -> None:
    assert decode_analog(b"\x10\x00", stack=True) == AnalogValues(0x10, 0, ())


def test_soc() -> None:
    assert _module(remaining=23.5, full=50.0).soc == 47.0
    assert _module(remaining=0.0, full=0.0).soc is None
    assert _module().power == pytest.approx(49.5 * -2.9)


def test_encode_analog_p4_when_capacity_exceeds_16_bits() -> None:
    info = encode_analog(0, 2, [_module(p=2, remaining=65.536, full=100.0)])
    (mod,) = decode_analog(info).modules
    assert mod.user_defined == 4
    assert (mod.remaining_capacity, mod.full_capacity) == (65.536, 100.0)
    assert info[2 + 53 - 11 + 4 : 2 + 53 - 11 + 6] == b"\xff\xff"  # remaining 1 sentinel
    assert (
        decode_analog(encode_analog(0, 2, [_module(p=2, full=65.535)])).modules[0].user_defined == 2
    )


def test_encode_analog_errors() -> None:
    with pytest.raises(PayloadError, match="cycles"):
        encode_analog(0, 2, [ModuleAnalog((3.3,), (20.0,), 0.0, 50.0, 1.0, 2.0, 70000)])
    with pytest.raises(PayloadError, match="current"):
        encode_analog(0, 2, [_module(current=4000.0)])
    with pytest.raises(PayloadError, match="user_defined must be 2 or 4"):
        encode_analog(0, 2, [_module(p=3)])
    with pytest.raises(PayloadError, match="full_capacity_2"):
        encode_analog(0, 2, [_module(full=20000.0)])
    with pytest.raises(PayloadError, match="cell voltage or temperature"):
        encode_analog(0, 2, [ModuleAnalog((70.0,), (20.0,), 0.0, 50.0, 1.0, 2.0, 1)])
    with pytest.raises(PayloadError, match="must be bytes"):
        encode_analog(256, 2, [_module()])
    with pytest.raises(PayloadError, match="exceeds 2047"):
        encode_analog(0, 40, [_module(p=4)] * 40)


# ------------------------------------------------------------------------------------------
# Property-based: round trips and fuzzing
# ------------------------------------------------------------------------------------------

byte = st.integers(0, 0xFF)


@settings(max_examples=500, deadline=None)
@given(ver=byte, adr=byte, cid1=byte, cid2=byte, info=st.binary(max_size=300))
def test_build_parse_roundtrip(ver: int, adr: int, cid1: int, cid2: int, info: bytes) -> None:
    raw = build_frame(ver, adr, cid1, cid2, info)
    assert raw[:1] == b"~"
    assert raw[-1:] == b"\r"
    assert raw[1:-1] == raw[1:-1].upper()
    assert len(raw) == 18 + 2 * len(info)
    assert parse_frame(raw) == Frame(ver, adr, cid1, cid2, info)
    # lowercase on the wire with its own checksum parses to the same frame
    body = raw[1:-5].lower()
    assert parse_frame(b"~%s%04x\r" % (body, frame_checksum(body))) == Frame(
        ver, adr, cid1, cid2, info
    )


@st.composite
def modules(draw: st.DrawFn) -> ModuleAnalog:
    p = draw(st.sampled_from([2, 4]))
    cap_max = 0xFFFF if p == 2 else 0xFFFFFE
    n_cells = draw(st.integers(0, 24))
    n_temps = draw(st.integers(0, 8))
    return ModuleAnalog(
        cell_voltages=tuple(
            draw(st.lists(st.floats(0, 65.535), min_size=n_cells, max_size=n_cells))
        ),
        temperatures=tuple(
            draw(st.lists(st.floats(-273.1, 300.0), min_size=n_temps, max_size=n_temps))
        ),
        current=draw(st.floats(-3276.8, 3276.7)),
        voltage=draw(st.floats(0, 65.535)),
        remaining_capacity=draw(st.integers(0, cap_max)) / 1000,
        full_capacity=draw(st.integers(0, cap_max)) / 1000,
        cycles=draw(st.integers(0, 0xFFFF)),
        user_defined=p,
    )


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(flag=byte, mods=st.lists(modules(), min_size=1, max_size=6), adr=st.integers(2, 0xFE))
def test_encode_decode_analog_roundtrip(flag: int, mods: list[ModuleAnalog], adr: int) -> None:
    stack = len(mods) > 1
    command_value = len(mods) if stack else adr
    info = encode_analog(flag, command_value, mods)
    values = decode_analog(info, stack=stack)
    assert values.info_flag == flag
    assert values.command_value == command_value
    assert len(values.modules) == len(mods)
    for got, want in zip(values.modules, mods, strict=True):
        assert len(got.cell_voltages) == len(want.cell_voltages)
        assert all(
            _close(a, b, V_RES) for a, b in zip(got.cell_voltages, want.cell_voltages, strict=True)
        )
        assert all(
            _close(a, b, T_RES) for a, b in zip(got.temperatures, want.temperatures, strict=True)
        )
        assert len(got.temperatures) == len(want.temperatures)
        assert _close(got.current, want.current, I_RES)
        assert _close(got.voltage, want.voltage, V_RES)
        assert got.remaining_capacity == want.remaining_capacity
        assert got.full_capacity == want.full_capacity
        assert got.cycles == want.cycles
        assert got.user_defined == want.user_defined
    # auto-detection agrees whenever the command value is unambiguous
    if stack or adr >= 2:
        assert decode_analog(info) == values
    # decode -> encode is exact
    assert encode_analog(flag, command_value, values.modules) == info


def _only_pylontech_errors(raw: bytes) -> None:
    try:
        frame = parse_response(raw)
    except PylontechError:
        try:
            frame = parse_frame(raw)
        except PylontechError:
            return
    for stack in (None, True, False):
        with contextlib.suppress(PylontechError):
            decode_analog(frame.info, stack=stack)


REAL_FRAMES = sorted(
    {_b(v["response"]) for v in WITH_RESPONSE} | {_b(CAPTURE[1]["frame"]), GOOD}, key=len
)


@settings(max_examples=2000, deadline=None)
@given(st.binary(max_size=300))
def test_fuzz_random_bytes(data: bytes) -> None:
    _only_pylontech_errors(data)
    _only_pylontech_errors(b"~" + data + b"\r")
    with contextlib.suppress(PylontechError):
        decode_analog(data)


@settings(max_examples=3000, deadline=None)
@given(
    frame=st.sampled_from(REAL_FRAMES),
    ops=st.lists(
        st.tuples(st.sampled_from(["flip", "insert", "delete", "set"]), st.integers(0), byte),
        min_size=1,
        max_size=4,
    ),
)
def test_fuzz_mutated_real_frames(frame: bytes, ops: list[tuple[str, int, int]]) -> None:
    buf = bytearray(frame)
    for op, where, value in ops:
        i = where % (len(buf) + 1)
        if op == "insert":
            buf.insert(i, value)
        elif buf:
            i %= len(buf)
            if op == "delete":
                del buf[i]
            elif op == "flip":
                buf[i] ^= 1 << (value % 8)
            else:
                buf[i] = value
    _only_pylontech_errors(bytes(buf))


@settings(max_examples=1000, deadline=None)
@given(info=st.binary(max_size=200), stack=st.sampled_from([None, True, False]))
def test_fuzz_valid_frames_with_random_info(info: bytes, stack: bool | None) -> None:
    """Valid framing around garbage INFO: decode_analog raises only PayloadError."""
    frame = parse_response(build_response(2, info))
    try:
        values = decode_analog(frame.info, stack=stack)
    except PayloadError:
        return
    again = encode_analog(values.info_flag, values.command_value, values.modules)
    assert decode_analog(again, stack=stack) == values
