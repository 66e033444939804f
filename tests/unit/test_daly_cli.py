"""``bmslink decode daly-*``, the Daly simulator's responders, the reader's config and the
advertisement matching rule of ``bmslink scan daly-ble``."""

from __future__ import annotations

import json
from pathlib import Path

import msgspec
import pytest

from battery_simulator.daly import A5Responder, DalyPack, Faults, ModbusFramer, ModbusResponder
from bmslink import config as cfg
from bmslink.cli import main
from bmslink.cli.scanners.daly import is_daly
from bmslink.protocols import daly_a5 as a5
from bmslink.protocols import daly_d2 as d2
from bmslink.protocols.daly_modbus import parse_frame, registers_from
from daly_ble_reader.config import DalyConfig
from tests.vectors import load_vectors

VECTORS = load_vectors("daly")["vectors"]


def _decode(
    capsys: pytest.CaptureFixture[str], *args: str
) -> tuple[int, list[dict[str, object]], str]:
    status = main(["decode", *args])
    captured = capsys.readouterr()
    return status, [json.loads(line) for line in captured.out.splitlines()], captured.err


def test_decode_a5_frames_and_bursts(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = _decode(capsys, "daly-a5", "a5 01 90 08 02 12 00 00 74 f5 03 9a 58")
    assert status == 0
    assert out[0]["total_voltage"] == 53.0 and out[0]["current"] == 5.9 and out[0]["soc"] == 92.2
    burst = "a50195080b" + "a5019508010d370d360d349ba7" + "a5019608013d00000000000082"
    status, out, _ = _decode(capsys, "daly-a5", burst)
    assert status == 0
    frames = out[0]["frames"]
    assert isinstance(frames, list) and len(frames) == 2
    assert frames[0]["cell_voltages"] == [3.383, 3.382, 3.38] and frames[1]["temperatures"][0] == 21


def test_decode_a5_refuses_bad_frames(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = _decode(capsys, "daly-a5", "a5a8004000702440000d300000")
    assert status == 1 and out == [] and "data length byte is 0x40" in err


def test_decode_sinowealth_needs_the_command(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = _decode(capsys, "daly-sinowealth", "--command", "0x0b", "340d0f")
    assert status == 0 and out[0]["total_voltage"] == 13.325
    status, _, err = _decode(capsys, "daly-sinowealth", "340d0f")
    assert status == 2 and "--command" in err


def test_decode_d2_status_and_version(capsys: pytest.CaptureFixture[str]) -> None:
    (status_vector,) = [v for v in VECTORS if v["command"] == "CMD_INFO"]
    status, out, _ = _decode(capsys, "daly-d2", status_vector["response"])
    assert status == 0
    assert out[0]["cell_voltages"] == [4.127, 4.137, 4.147, 4.157] and out[0]["current"] == 3.0
    (mos,) = [v for v in VECTORS if v["command"] == "MOS_INFO"]
    status, out, _ = _decode(capsys, "daly-d2", "--start", "0x3e", mos["response"])
    assert status == 0 and out[0]["mosfet_temperature"] == 38


def test_decode_81_blocks(capsys: pytest.CaptureFixture[str]) -> None:
    first = next(v for v in VECTORS if v["command"] == "read 0x0000 x64")
    second = next(v for v in VECTORS if v["command"] == "read 0x0041 x62")
    status, out, _ = _decode(capsys, "daly-81", first["response"])
    assert status == 0 and out[0]["voltage"] == 53.0 and out[0]["current"] == -8.9
    assert out[0]["temperatures"] == [22, 22, 22, 22] and len(out[0]["cell_voltages"]) == 16
    status, out, _ = _decode(capsys, "daly-81", "--start", "0x41", second["response"])
    assert status == 0 and out[0]["state"] == 2 and out[0]["remaining_capacity"] == 271.2


def test_decode_rejects_a_bad_crc(capsys: pytest.CaptureFixture[str]) -> None:
    status, _, err = _decode(capsys, "daly-d2", "d20600cf00011c8a")
    assert status == 1 and "CrcError" in err


def test_a5_responder_addresses_boards_and_host_addresses() -> None:
    responder = A5Responder({1: DalyPack(current=-10.0), 2: DalyPack(cells=4, current=3.0)})
    reply = responder.respond(a5.build_request(0x94, a5.host_address(2)))
    assert reply is not None
    status = a5.decode_status(a5.parse_frame(reply, board=2, command=0x94).data)
    assert (status.cells, status.sensors, status.load) == (4, 2, False)
    assert responder.respond(a5.build_request(0x94, a5.host_address(3))) is None  # no board 3
    cells = responder.respond(a5.build_request(0x95, 0x80))
    assert cells is not None and len(cells) == 6 * 13  # ceil(16/3) frames on serial
    soc = a5.decode_soc(a5.parse_frame(responder.respond(a5.build_request(0x90)) or b"").data)
    assert soc.current == -10.0


def test_modbus_responder_faults_and_writes() -> None:
    faults = Faults(garbage=b"\x00", bad_checksum_every=2)
    responder = ModbusResponder(DalyPack(), faults=faults)
    first = responder.respond(d2.status_request())
    second = responder.respond(d2.status_request())
    assert first is not None and second is not None
    assert first[0] == 0 and parse_frame(first[1:]).address == 0xD2
    with pytest.raises(ValueError, match="CRC"):
        parse_frame(second[1:])
    faults.bad_checksum_every = 0
    echo = responder.respond(d2.build_switch(True, False))
    assert echo is not None and echo[1:] == d2.build_switch(True, False)
    regs = registers_from(parse_frame((responder.respond(d2.status_request()) or b"")[1:]))
    assert regs[0x35] == 0  # charge MOSFET off now
    framer = ModbusFramer({0xD2})
    wire = b"\x07" + d2.status_request() + d2.build_switch(False, True)[:3]
    assert [f for f, _ in framer.feed(wire, 0.0)] == [d2.status_request()]


@pytest.mark.parametrize(
    ("name", "uuids", "data", "expected"),
    [
        ("DL-46640102XXXX", [], {0x6446: bytes.fromhex("010209ac")}, True),
        ("BT270-2", [], {0x0302: bytes.fromhex("16401712011197444c")}, True),
        ("Randomname", [], {0x0104: bytes.fromhex("0150181201a4944a4842")}, True),
        ("MyThing", ["0000fff0-0000-1000-8000-00805f9b34fb"], {}, True),
        ("JK-BMS", ["0000ffe0-0000-1000-8000-00805f9b34fb"], {0x0B: b"\x01"}, False),
    ],
)
def test_advertisement_matching(
    name: str, uuids: list[str], data: dict[int, bytes], expected: bool
) -> None:
    assert is_daly(name, uuids, data) is expected


def test_config_errors_name_the_key(tmp_path: Path) -> None:
    path = tmp_path / "site.toml"
    cases = {
        '[daly.x]\ntransport = "serial"\ndevices = [{id = "a"}]\n': "daly.x.port",
        '[daly.x]\ndevices = [{id = "a", address = "nope"}]\n': "daly.x.devices[0].address",
        '[daly.x]\ndevices = [{id = "a", name = "DL-1"}, {id = "a", name = "DL-2"}]\n': (
            "daly.x.devices[1].id"
        ),
        '[daly.x]\ndevices = [{id = "a", name = "n", protocol = "sinowealth"}]\n': (
            "daly.x.devices[0].protocol"
        ),
        '[daly.x]\ndevices = [{id = "a", name = "n", bogus = 1}]\n': "bogus",
    }
    for text, key in cases.items():
        path.write_text(text)
        with pytest.raises(cfg.ConfigError, match=key.replace("[", r"\[").replace("]", r"\]")):
            cfg.load("daly", DalyConfig, instance="x", path=path, env={})


def test_config_defaults() -> None:
    c = msgspec.convert({"devices": [{"id": "a", "name": "DL-1"}]}, DalyConfig)
    assert (c.transport, c.reply_timeout, c.control, c.devices[0].status_registers) == (
        "ble",
        1.5,
        False,
        62,
    )
