"""A reader whose adapter stays gone longer than ``exit_after_link_lost`` exits with status 3
(after reporting its packs offline), so a container's restart policy can re-map the adapter."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.broker import Broker, recorder

pytestmark = pytest.mark.mqtt

ROOT = Path(__file__).resolve().parents[2]
CAPTURE = ROOT / "services" / "battery-simulator" / "captures" / "pylontech_rs485_capture.json"


def test_reader_exits_3_when_the_port_stays_lost(broker: Broker, tmp_path: Path) -> None:
    link = tmp_path / "ttyBMS"
    sim = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "battery_simulator.app",
            "--pty-link",
            str(link),
            "--replay",
            str(CAPTURE),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert sim.stdout is not None
    assert sim.stdout.readline().startswith("READY")
    site = tmp_path / "site.toml"
    site.write_text(
        f'[mqtt]\nhost = "127.0.0.1"\nport = {broker.port}\n'
        f'[storage]\nstate_dir = "{tmp_path}"\n'
        f'[pylontech_rs485.bus]\nport = "{link}"\nstack_query = "ff"\npoll_interval = 0.3\n'
        'command_gap = 0.0\ntimeout = 0.3\nretries = 0\nid_prefix = "t"\n'
        "exit_after_link_lost = 2.0\n"
    )
    with recorder(broker.port, "bms/#") as rec:
        reader = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "pylontech_rs485_reader",
                "--config",
                str(site),
                "--instance",
                "bus",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            rec.wait_topic("bms/t-2/availability", b"online", timeout=15)
            mark = rec.mark()
            sim.terminate()  # the adapter is unplugged and does not come back
            sim.wait(10)
            rec.wait_topic("bms/t-2/availability", b"offline", timeout=10, after=mark)
            assert reader.wait(20) == 3
            assert reader.stderr is not None
            assert "exiting so that the restart policy re-opens the adapter" in reader.stderr.read()
        finally:
            if reader.poll() is None:
                reader.kill()
            if sim.poll() is None:
                sim.kill()
