"""The ``bmslink`` command: decode exit statuses and output, demo description from compose.yaml."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from bmslink.cli import demo

ROOT = Path(__file__).resolve().parents[2]
FRAME = (
    "~20024600B0D811020F0CF30CF40CF50CF40CF50CF40CF40CF30CF20CF20CF20CF30CF20CF30CF3050BD7"
    "0BB90BB90BB90BAF000CC2415BCC02C35000630F0CF30CF20CF30CF20CF30CF20CF30CF30CF40CF40CF30CF4"
    "0CF20CF50CF3050BD70BAF0BAF0BAF0BAF000BC23E59D802C3500093CC7D"
)


def bmslink(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bmslink.cli", *args], capture_output=True, text=True, timeout=60
    )


def test_decode_prints_one_json_object_per_frame_in_schema_units() -> None:
    proc = bmslink("decode", "pylontech-rs485", FRAME, FRAME + "\\r")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 2
    doc = json.loads(lines[0])
    assert doc["command_value"] == 2
    first, second = doc["modules"]
    assert (first["current"], first["voltage"], first["cycles"]) == (1.2, 49.729, 99)
    assert (first["remaining_capacity"], first["full_capacity"], first["soc"]) == (23.5, 50.0, 47.0)
    assert first["temperatures"] == [30.0, 27.0, 27.0, 27.0, 26.0]
    assert second["cycles"] == 147


def test_decode_bad_frame_exits_1_naming_the_problem() -> None:
    bad = FRAME[:-4] + "0000"
    proc = bmslink("decode", "pylontech-rs485", FRAME, bad)
    assert proc.returncode == 1
    assert len(proc.stdout.splitlines()) == 1  # the good frame still decoded
    assert "frame 2" in proc.stderr
    assert "ChecksumError" in proc.stderr


def test_decode_unknown_protocol_is_a_usage_error() -> None:
    proc = bmslink("decode", "no-such-protocol", "00")
    assert proc.returncode == 2
    assert "no-such-protocol" in proc.stderr


def test_topics_subcommand_prints_the_registry() -> None:
    proc = bmslink("topics")
    assert proc.returncode == 0
    assert "`bms/<id>/state`" in proc.stdout


def test_interpolation_follows_compose_rules() -> None:
    env = {"A": "1", "EMPTY": ""}
    assert demo.interpolate("${A}-${B:-x}-${EMPTY:-d}-${EMPTY-d}-$A-$$", env) == "1-x-d--1-$"


def test_demo_runs_the_demo_profile_of_compose_yaml_with_installed_commands(tmp_path: Path) -> None:
    env = demo.demo_env(1999, tmp_path, iter(range(4000, 4012)))
    specs = {s.name: s for s in demo.load_services(ROOT / "compose.yaml", env)}
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    expected = {
        name
        for name, svc in compose["services"].items()
        if svc.get("command") and (not svc.get("profiles") or "demo" in svc["profiles"])
    }
    assert set(specs) == expected
    assert "demo-rack-reader" in specs
    assert "battery-simulator" in specs
    bindir = Path(sys.executable).parent
    for spec in specs.values():
        assert shutil.which(spec.argv[0], path=str(bindir)), f"{spec.argv[0]} is not installed"
        assert not any("${" in a for a in spec.argv), spec.argv
    reader = specs["demo-rack-reader"]
    assert reader.env["BMSLINK_MQTT_HOST"] == "127.0.0.1"
    assert reader.env["BMSLINK_MQTT_PORT"] == "1999"
    assert reader.env["BMSLINK_PORT"] == "socket://127.0.0.1:4000"
    assert reader.env["BMSLINK_CONFIG"] == str(ROOT / "config" / "demo.toml")
    assert reader.env["BMSLINK_STATE_DIR"] == str(tmp_path)
    sim = specs["battery-simulator"]
    capture = sim.argv[sim.argv.index("--replay") + 1]
    assert Path(capture).is_file()
    assert sim.argv[sim.argv.index("--tcp") + 1] == "127.0.0.1:4000"


@pytest.mark.parametrize("instance", ["demo-rack", "demo-model"])
def test_demo_site_file_is_valid_for_each_reader_instance(instance: str) -> None:
    from bmslink import config
    from pylontech_rs485_reader.config import BusConfig

    loaded = config.load(
        "pylontech_rs485", BusConfig, instance=instance, path=ROOT / "config" / "demo.toml", env={}
    )
    assert loaded.section.port.startswith("socket://")


def test_example_site_file_is_valid() -> None:
    from bmslink import config
    from pylontech_rs485_reader.config import BusConfig

    loaded = config.load(
        "pylontech_rs485",
        BusConfig,
        instance="rack1",
        path=ROOT / "config" / "site.example.toml",
        env={},
    )
    assert loaded.section.addresses == [2, 3]
    assert loaded.mqtt.host == "mosquitto"


def test_watch_shows_batteries_and_inverter_outputs() -> None:
    from rich.console import Console

    from bmslink.cli.watch import Board, view
    from bmslink.schema import BatteryState, encode

    board = Board()
    board.handle(
        "bms/rack-2/state", encode(BatteryState(id="rack-2", ts=1.0, voltage=49.73, soc=47.0))
    )
    board.handle("bms/rack-2/availability", b"online")
    board.handle("bmslink/can-inverter-emulator/demo/inv1/link", b"up")
    board.handle("bmslink/can-inverter-emulator/demo/inv1/mode", b"failsafe")
    board.handle("bms/bad/state", b"{not json")
    console = Console(width=200, record=True)
    console.print(view(board, "t"))
    text = console.export_text()
    assert "rack-2" in text
    assert "49.73" in text
    assert "inv1" in text
    assert "failsafe" in text
    assert "1 malformed message(s) ignored" in text
    assert board.outputs[("demo", "inv1")] == {"link": "up", "mode": "failsafe"}
