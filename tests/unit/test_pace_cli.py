"""``bmslink decode pace-modbus`` and ``bmslink scan pace-modbus`` (simulator on TCP)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from battery_simulator.line import TcpLine
from battery_simulator.pace import ModbusRtuFramer, PaceFaults, build_bus, parse_pack_spec
from bmslink.cli import main as bmslink_main
from bmslink.protocols import modbus_rtu as rtu
from bmslink.protocols import pace_modbus as pace
from tests.vectors import load_vectors

SYNTHETIC = next(v for v in load_vectors("pace_modbus")["vectors"] if v["kind"] == "synthetic")


def bmslink(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bmslink.cli", *args], capture_output=True, text=True, timeout=60
    )


def test_decode_live_block_exception_and_settings() -> None:
    settings = rtu.build_read_response(
        1, pace.encode_block(60, 55, {"pack_ov_alarm": 54.6, "charge_oc_alarm": 100})
    )
    proc = bmslink(
        "decode",
        "pace-modbus",
        SYNTHETIC["response"],
        "01 83 02 c0 f1",
        "--start",
        "0",
    )
    assert proc.returncode == 0, proc.stderr
    live, exception = (json.loads(x) for x in proc.stdout.splitlines())
    regs = live["registers"]
    assert (regs["current"], regs["voltage"], regs["soc"], regs["cycles"]) == (4.67, 51.75, 86, 403)
    assert regs["cell_voltage_13"] == 3.94
    assert regs["cell_temperature_1"] == 22.3
    assert (live["alarms"], live["warnings"], live["cell_sum"]) == ([], [], 51.751)
    assert exception["exception"] == {"code": 2, "name": "illegal_data_address"}
    proc = bmslink("decode", "pace-modbus", "--start", "60", settings.hex())
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["limits"]["charge_voltage_limit"] == 54.6
    assert doc["limits"]["charge_current_limit"] == 100.0
    assert doc["registers"]["pack_ov_alarm"] == 54.6


def test_decode_partial_block_with_a_start_register() -> None:
    frame = rtu.build_read_response(1, [0xFFCE, 0x00DF])  # registers 35, 36
    proc = bmslink("decode", "pace-modbus", "--start", "35", frame.hex())
    assert proc.returncode == 0, proc.stderr
    regs = json.loads(proc.stdout)["registers"]
    assert regs == {"mosfet_temperature": -5.0, "ambient_temperature": 22.3}


@pytest.mark.parametrize(
    ("frame", "error"),
    [
        ("010308000000000000000095d8", "CrcError"),
        ("01034a01d314", "FrameError"),
        ("zz", "FrameError"),
        ("0106000100010000", "FrameError"),
    ],
)
def test_decode_bad_frames_exit_1_naming_the_error(frame: str, error: str) -> None:
    proc = bmslink("decode", "pace-modbus", frame)
    assert proc.returncode == 1
    assert error in proc.stderr


def test_scan_finds_answering_slaves_and_prints_config(
    capsys: pytest.CaptureFixture[str],
) -> None:
    bus = build_bus(parse_pack_spec("1:AM2:86,2:AM2:60,3,4"), seed=3, faults=PaceFaults(silent={3}))
    bus.faults.exception[4] = 2
    with TcpLine(bus, baud=115200, turnaround_s=0.001, framer=ModbusRtuFramer()) as line:
        status = bmslink_main(
            [
                "scan",
                "pace-modbus",
                "--port",
                f"socket://{line.address}",
                "--addresses",
                "1-5",
                "--timeout",
                "0.2",
                "--gap",
                "0",
                "--instance",
                "rack",
            ]
        )
    out, err = capsys.readouterr()
    assert status == 0
    assert out.splitlines() == [
        "[pace_modbus.rack]",
        f'port = "socket://{line.address}"',
        "baudrate = 9600",
        "addresses = [1, 2, 4]",
        "cells = 13",
    ]
    assert "slave 1: P13S120A-12290-2.05T (BMS SN PACE13S-0001" in err
    assert "CVL 53.3 V" in err
    assert "slave 3: no answer" in err
    assert "exception 2" in err


def test_scan_of_an_empty_bus_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    bus = build_bus(parse_pack_spec("1"), seed=3)
    with TcpLine(bus, baud=115200, framer=ModbusRtuFramer()) as line:
        status = bmslink_main(
            [
                "scan",
                "pace-modbus",
                "--port",
                f"socket://{line.address}",
                "--addresses",
                "7",
                "--timeout",
                "0.1",
            ]
        )
    assert status == 1
    assert "no PACE pack answered" in capsys.readouterr().err
