"""Battery simulator, Pylontech LV RS485 behaviour (no I/O): replay, model, faults."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from battery_simulator.pylontech import (
    CurrentProfile,
    Exchange,
    Faults,
    ModelStack,
    PackConfig,
    ReplayStack,
    lfp_ocv,
    load_capture,
    parse_capture,
    parse_model_spec,
)
from bmslink.protocols.pylontech_rs485 import (
    ChecksumError,
    Frame,
    PylontechError,
    build_frame,
    decode_alarm,
    decode_analog,
    decode_management_info,
    encode_analog,
    frame_checksum,
    parse_frame,
)
from tests.vectors import vectors_dir

pytestmark = pytest.mark.timeout(30)

REQ_FF = b"~20024642E002FFFD09\r"  # 0x42, whole group 0 (doc §6)
REQ_ADR2 = b"~20024642E00202FD33\r"
REQ_ADR3 = b"~20034642E00203FD31\r"
REQ_4F = b"~2002464F0000FD98\r"


def req(adr: int, cid2: int, info: bytes = b"", ver: int = 0x20) -> bytes:
    return build_frame(ver, adr, 0x46, cid2, info)


def capture_path() -> Path:
    path = vectors_dir() / "pylontech_rs485_capture.json"
    assert path.is_file(), f"capture vector missing: {path}"
    return path


def capture_responses() -> list[bytes]:
    doc = json.loads(capture_path().read_text())
    frames = [f["frame"].encode() for f in doc["frames"]]
    return frames[1::2]


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def ok(raw: bytes | None) -> Frame:
    assert raw is not None, "expected a reply, got silence"
    frame = parse_frame(raw)
    assert frame.ver == 0x20
    assert frame.cid1 == 0x46
    return frame


# ---------------------------------------------------------------------------------- replay


def test_capture_parses_into_request_response_pairs() -> None:
    exchanges = load_capture(capture_path())
    assert len(exchanges) == 470
    assert all(ex.request == REQ_FF for ex in exchanges)
    assert [ex.response for ex in exchanges] == capture_responses()


def test_replay_answers_in_capture_order_and_loops() -> None:
    responses = capture_responses()
    stack = ReplayStack.from_file(capture_path())
    got = [stack.respond(REQ_FF) for _ in range(len(responses) + 2)]
    assert got[: len(responses)] == responses
    assert got[len(responses) :] == responses[:2]  # loops


def test_replay_matches_lowercase_request_by_content() -> None:
    # pylontech 0.1.3 sends lowercase hex (doc §2): same (ADR, CID2, INFO) key
    body = b"20024642e002ff"
    lower = b"~" + body + f"{frame_checksum(body):04X}".encode() + b"\r"
    stack = ReplayStack.from_file(capture_path())
    assert stack.respond(lower) == capture_responses()[0]


def test_replay_derives_per_address_from_next_ff_reply() -> None:
    responses = capture_responses()
    stack = ReplayStack.from_file(capture_path())
    r2 = ok(stack.respond(REQ_ADR2))
    r3 = ok(stack.respond(REQ_ADR3))
    for frame, adr, ff_raw, index in ((r2, 2, responses[0], 0), (r3, 3, responses[1], 1)):
        assert frame.adr == adr
        assert frame.cid2 == 0
        single = decode_analog(frame.info, stack=False)
        ff = decode_analog(parse_frame(ff_raw).info, stack=True)
        assert single.command_value == adr
        assert single.modules == (ff.modules[index],)
    # the FF cursor is shared: the next FF request gets the third recorded reply
    assert stack.respond(REQ_FF) == responses[2]


def test_replay_derived_bytes_equal_capture_block() -> None:
    """Re-encoding is lossless: the single-module INFO is the FF block, byte for byte."""
    ff_info = parse_frame(capture_responses()[0]).info
    stack = ReplayStack.from_file(capture_path())
    info = ok(stack.respond(REQ_ADR2)).info
    assert info[0] == ff_info[0]
    assert info[1] == 2
    assert ff_info[2:].startswith(info[2:])


def test_replay_silent_for_unknown_requests() -> None:
    stack = ReplayStack.from_file(capture_path())
    assert stack.respond(req(4, 0x42, b"\x04")) is None  # only 2 modules in the capture
    assert stack.respond(REQ_4F) is None
    assert stack.respond(req(2, 0x44, b"\x02")) is None
    no_derive = ReplayStack.from_file(capture_path(), derive_per_address=False)
    assert no_derive.respond(REQ_ADR2) is None


def test_replay_jsonlines_format_autodetected(tmp_path: Path) -> None:
    r1, r2 = capture_responses()[:2]
    lines = [
        {"ts": 1.0, "dir": "tx", "frame": REQ_FF.decode()},
        {"ts": 1.1, "dir": "rx", "frame": r1.decode()},
        {"ts": 2.0, "dir": "tx", "frame": REQ_FF.decode()},  # no answer recorded
        {"ts": 3.0, "dir": "tx", "frame": REQ_FF.decode()},
        {"ts": 3.1, "dir": "rx", "frame": r2.decode()},
        {"ts": 4.0, "dir": "tx", "frame": REQ_4F.decode()},
        {"ts": 4.1, "dir": "rx", "frame": "~200246000000FDB2\r"},
    ]
    path = tmp_path / "cap.jsonl"
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    stack = ReplayStack.from_file(path)
    assert [stack.respond(REQ_FF) for _ in range(4)] == [r1, None, r2, r1]
    assert stack.respond(REQ_4F) == b"~200246000000FDB2\r"


def test_parse_capture_rejects_junk() -> None:
    with pytest.raises(ValueError, match="line 1"):
        parse_capture("not json\n")
    with pytest.raises(ValueError, match="no request"):
        parse_capture('{"meta": {}, "frames": []}')
    assert parse_capture(json.dumps({"frames": [{"ts": 0, "frame": REQ_FF.decode()}]})) == [
        Exchange(REQ_FF, None)
    ]


# ---------------------------------------------------------------------------------- model


def model(spec: str = "US2000C,US3000C,US5000", **kw: object) -> ModelStack:
    return ModelStack(parse_model_spec(spec), seed=7, **kw)  # type: ignore[arg-type]


def test_model_per_address_replies_decode_consistently() -> None:
    clock = FakeClock()
    stack = model(profile=CurrentProfile(constant_a=-20.0), clock=clock)
    clock.t += 60.0
    expect = {2: (15, 5, 50.0, 2), 3: (15, 5, 74.0, 4), 4: (15, 6, 100.0, 4)}
    for adr, (cells, temps, full, p) in expect.items():
        frame = ok(stack.respond(req(adr, 0x42, bytes([adr]))))
        assert frame.adr == adr
        assert frame.cid2 == 0
        values = decode_analog(frame.info, stack=False)
        assert values.command_value == adr
        (mod,) = values.modules
        assert len(mod.cell_voltages) == cells
        assert len(mod.temperatures) == temps
        assert mod.user_defined == p
        assert mod.full_capacity == pytest.approx(full)
        assert mod.soc == pytest.approx(stack.soc(adr), abs=0.01)
        assert sum(mod.cell_voltages) == pytest.approx(mod.voltage, rel=0.01)
        assert all(2.5 < v < 3.65 for v in mod.cell_voltages)
        assert all(10.0 < t < 45.0 for t in mod.temperatures)
        assert mod.current < 0  # discharging


def test_model_soc_follows_current_sign() -> None:
    clock = FakeClock()
    charging = model("US2000C:50", profile=CurrentProfile(constant_a=25.0), clock=clock)
    discharging = model("US2000C:50", profile=CurrentProfile(constant_a=-25.0), clock=clock)
    clock.t += 3600.0  # 25 Ah into / out of a 50 Ah pack: ±50 % (±3 % per-pack spread)
    up = decode_analog(ok(charging.respond(REQ_ADR2)).info).modules[0]
    down = decode_analog(ok(discharging.respond(REQ_ADR2)).info).modules[0]
    assert up.current > 0
    assert down.current < 0
    assert up.soc is not None
    assert down.soc is not None
    assert up.soc > 95.0
    assert down.soc < 5.0
    assert down.cycles == 0  # half a cycle
    assert up.voltage > down.voltage


def test_model_clamps_soc_and_counts_cycles() -> None:
    clock = FakeClock()
    stack = model("US2000C:99", profile=CurrentProfile(constant_a=10.0), clock=clock)
    clock.t += 7200.0
    full = decode_analog(ok(stack.respond(REQ_ADR2)).info).modules[0]
    assert full.soc == pytest.approx(100.0)
    assert full.current == 0.0  # a full pack takes no charge
    stack.profile = CurrentProfile(constant_a=-50.0)
    clock.t += 3 * 3600.0  # 150 Ah out of a 50 Ah pack, with clamping: ≥ 1 cycle
    empty = decode_analog(ok(stack.respond(REQ_ADR2)).info).modules[0]
    assert empty.soc == pytest.approx(0.0)
    assert empty.cycles >= 1


def test_model_mosfet_bits_open_with_the_0x92_request_flags() -> None:
    """0x44 Status2 (§8.5): the charge MOSFET opens when full, the discharge MOSFET when
    empty, exactly when 0x92 stops requesting that direction (§8.7)."""
    clock = FakeClock()
    stack = model("US2000C:50", profile=CurrentProfile(constant_a=0.0), clock=clock)

    def status() -> tuple[int, int]:
        alarm = decode_alarm(ok(stack.respond(req(2, 0x44, b"\x02"))).info).modules[0]
        management = decode_management_info(ok(stack.respond(req(2, 0x92, b"\x02"))).info)
        return alarm.status2 & 0x06, management.status & 0xC0

    assert status() == (0x06, 0xC0)  # both MOSFETs on, both directions requested
    stack.profile = CurrentProfile(constant_a=30.0)
    clock.t += 7200.0
    assert stack.soc(2) == pytest.approx(100.0)
    assert status() == (0x04, 0x40)  # full: charge MOSFET off, charge not requested
    stack.profile = CurrentProfile(constant_a=-60.0)
    clock.t += 7200.0
    assert stack.soc(2) == pytest.approx(0.0)
    assert status() == (0x02, 0x80)  # empty: discharge MOSFET off, discharge not requested


def test_model_sine_current_changes_sign() -> None:
    clock = FakeClock()
    stack = model("US3000C", profile=CurrentProfile(amplitude_a=10.0, period_s=100.0), clock=clock)
    currents = []
    for _ in range(4):
        clock.t += 25.0
        currents.append(decode_analog(ok(stack.respond(REQ_ADR2)).info).modules[0].current)
    assert max(currents) > 5.0
    assert min(currents) < -5.0


def test_model_ff_reply_has_one_block_per_pack() -> None:
    stack = model()
    values = decode_analog(ok(stack.respond(REQ_FF)).info, stack=True)
    assert values.command_value == 3
    assert [len(m.temperatures) for m in values.modules] == [5, 5, 6]
    assert [m.full_capacity for m in values.modules] == pytest.approx([50.0, 74.0, 100.0])
    assert stack.respond(req(3, 0x42, b"\xff")) is None  # FF only via the master
    assert model(answer_ff=False).respond(REQ_FF) is None  # C-series firmware


def test_model_other_commands() -> None:
    stack = model()
    assert stack.respond(REQ_4F) == b"~200246000000FDB2\r"  # doc §8.2
    assert ok(stack.respond(req(3, 0x4F, ver=0x00))).cid2 == 0  # "battery ignores VER"
    # an idle US2000C's 0x44 is byte for byte the real one (martiby, doc §8.5)
    assert stack.respond(req(2, 0x44, b"\x02")) == (
        b"~20024600A04210020F000000000000000000000000000000050000000000000000000E00000000F108\r"
    )
    assert stack.respond(req(2, 0x94, bytes(9))) == b"~200246040000FDAE\r"  # RTN 04 (doc §5)
    assert ok(stack.respond(req(2, 0x42, b"\x03"))).cid2 == 0x06  # INFO names another pack
    assert ok(stack.respond(req(2, 0x42, b"\x02", ver=0x21))).cid2 == 0x01  # VER error
    two_byte = decode_analog(ok(stack.respond(req(2, 0x42, b"\x02\x01"))).info)
    assert two_byte.command_value == 2  # second INFO byte ignored (doc §6)


def test_model_unknown_address_is_silent() -> None:
    stack = model("US2000C")
    assert stack.respond(REQ_ADR3) is None
    assert stack.respond(req(0, 0x4F)) is None
    assert stack.respond(req(0x12, 0x42, b"\x12")) is None


def test_model_malformed_requests() -> None:
    stack = model()
    bad_chk = REQ_ADR2[:-5] + b"FD34\r"
    assert ok(stack.respond(bad_chk)).cid2 == 0x02  # RTN CHKSUM error
    bad_lchk = b"~20024642F00202" + b"FD32\r"
    assert ok(stack.respond(bad_lchk)).cid2 == 0x03  # RTN LCHKSUM error
    assert stack.respond(b"~20094642E00209FD33\r") is None  # bad checksum, absent ADR 9
    assert stack.respond(b"~hello\r") is None
    assert stack.respond(b"") is None
    assert stack.respond(b"~200246000000FDB2\r") is None  # a response (echo): ignored


def test_parse_model_spec() -> None:
    packs = parse_model_spec("US2000C, us3000c:80 ,US5000")
    assert [p.model for p in packs] == ["US2000C", "US3000C", "US5000"]
    assert [p.capacity_ah for p in packs] == [50.0, 74.0, 100.0]
    assert [p.temperatures for p in packs] == [5, 5, 6]
    assert packs[1].initial_soc == 80.0
    for bad, msg in (("US9000", "unknown model"), ("US2000C,", "empty"), ("US2000C:120", "SOC")):
        with pytest.raises(ValueError, match=msg):
            parse_model_spec(bad)
    with pytest.raises(ValueError, match="12"):
        parse_model_spec(",".join(["US2000C"] * 13))


def test_custom_pack_and_ocv_curve() -> None:
    stack = ModelStack([PackConfig("DIY", cells=16, temperatures=4, capacity_ah=280.0)], seed=1)
    mod = decode_analog(ok(stack.respond(REQ_ADR2)).info).modules[0]
    assert len(mod.cell_voltages) == 16
    assert mod.full_capacity == pytest.approx(280.0)
    socs = [i * 2.5 for i in range(41)]
    ocv = [lfp_ocv(s) for s in socs]
    assert ocv == sorted(ocv)
    assert lfp_ocv(-5) == lfp_ocv(0) == pytest.approx(2.90)
    assert lfp_ocv(100) == pytest.approx(3.45)


def test_encode_matches_codec() -> None:
    """The model's module goes through the shared encoder: re-encoding is stable."""
    stack = model("US3000C")
    info = ok(stack.respond(REQ_ADR2)).info
    values = decode_analog(info)
    assert encode_analog(values.info_flag, values.command_value, values.modules) == info


# ---------------------------------------------------------------------------------- faults


@pytest.fixture(params=["model", "replay"])
def stack(request: pytest.FixtureRequest) -> ModelStack | ReplayStack:
    if request.param == "model":
        return model("US2000C,US2000C")
    return ReplayStack.from_file(capture_path())


def test_fault_silence(stack: ModelStack | ReplayStack) -> None:
    stack.faults.silence = True
    assert stack.respond(REQ_ADR2) is None
    stack.faults.clear()
    assert ok(stack.respond(REQ_ADR2)).cid2 == 0


def test_fault_garbage(stack: ModelStack | ReplayStack) -> None:
    normal = stack.respond(REQ_ADR2)
    assert normal is not None
    stack.faults.garbage = True
    junk = stack.respond(REQ_ADR2)
    assert junk is not None
    assert len(junk) == len(normal)
    with pytest.raises(PylontechError):
        parse_frame(junk)


def test_fault_bad_checksum(stack: ModelStack | ReplayStack) -> None:
    stack.faults.bad_checksum = True
    raw = stack.respond(REQ_ADR2)
    assert raw is not None
    with pytest.raises(ChecksumError):
        parse_frame(raw)
    stack.faults.bad_checksum = False
    ok(stack.respond(REQ_ADR2))


def test_fault_rtn(stack: ModelStack | ReplayStack) -> None:
    stack.faults.rtn = 0x91
    frame = ok(stack.respond(REQ_ADR2))
    assert frame.adr == 2
    assert frame.cid2 == 0x91
    assert frame.info == b""


def test_fault_slow(stack: ModelStack | ReplayStack) -> None:
    assert stack.extra_delay_s == 0.0
    stack.faults.slow = 0.25
    assert stack.extra_delay_s == 0.25
    ok(stack.respond(REQ_ADR2))  # the reply itself is unchanged; the line adds the delay


def test_faults_restricted_to_addresses(stack: ModelStack | ReplayStack) -> None:
    stack.faults = Faults(silence=True, addresses=frozenset({3}))
    assert ok(stack.respond(REQ_ADR2)).adr == 2
    assert stack.respond(REQ_ADR3) is None


def test_faults_do_not_invent_replies() -> None:
    stack = model("US2000C")
    stack.faults.rtn = 0x90
    stack.faults.garbage = True
    assert stack.respond(REQ_ADR3) is None  # absent pack stays silent
