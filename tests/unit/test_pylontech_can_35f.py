"""0x35F firmware version bytes are binary (major, minor in decimal), not BCD: the held-out BYD
frame ``0x35F 4C69011769000000`` is firmware 1.23, not the reference's 1.17 (see
:class:`bmslink.protocols.pylontech_can.BatteryInfoFrame` for the sources)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from bmslink.protocols import pylontech_can as pc
from can_reader.assembler import Assembler
from can_reader.config import ReaderConfig

BYD = bytes.fromhex("4C69011769000000")  # BYD Battery-Box Premium LVS via Victron (held out)
BYD_VICTRON_229 = bytes.fromhex("4C69040F32001117")  # victronenergy/venus#229: "v4.15"


@pytest.mark.parametrize(
    ("data", "version", "capacity", "hardware"),
    [(BYD, (1, 23), 105, 0), (BYD_VICTRON_229, (4, 15), 50, 0x1711)],
)
def test_byd_battery_info_decodes_binary_version_bytes(
    data: bytes, version: tuple[int, int], capacity: int, hardware: int
) -> None:
    frame = pc.decode_frame(pc.ID_BATTERY_INFO, data)
    assert isinstance(frame, pc.BatteryInfoFrame)
    assert frame.product_text == "Li"
    assert frame.version == version
    assert frame.capacity == capacity
    assert frame.hardware == hardware


def test_the_reader_publishes_firmware_1_23_for_the_byd_frame() -> None:
    cfg = ReaderConfig(channel="vcan0")
    asm = Assembler("byd1", cfg, "socketcan://vcan0", "test")
    asm.feed(pc.ID_MANUFACTURER, b"BYD" + bytes(5), False, 1.0)
    asm.feed(pc.ID_BATTERY_INFO, BYD, False, 1.0)
    info = asm.info(1.5)
    assert info.firmware == "1.23"


def test_bmslink_decode_prints_version_1_23() -> None:
    proc = subprocess.run(
        [
            *(sys.executable, "-m", "bmslink.cli", "decode", "pylontech-can"),
            *("--id", "0x35F", "4C69011769000000"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["frame"] == "BatteryInfoFrame"
    assert doc["version"] == [1, 23] and doc["capacity"] == 105 and doc["product_text"] == "Li"


def test_encoder_writes_the_same_binary_bytes() -> None:
    assert pc.encode_battery_info(105, product=b"Li", version=(1, 23)).hex().upper() == (
        "4C69011769000000"
    )
