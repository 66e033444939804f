"""End to end: simulator (pty / TCP) → pylontech-rs485-reader → real Mosquitto → subscriber."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from bmslink import schema
from tests.broker import Broker, recorder
from tests.processes import (
    CAPTURE,
    PYLONTECH_SIM,
    line_args,
    site_section,
    start_service,
    start_simulator,
    stop,
    write_site,
)

READER = "pylontech_rs485_reader"

pytestmark = [pytest.mark.mqtt, pytest.mark.serial]


def site(tmp_path: Path, port: int, serial_url: str, **extra: object) -> Path:
    options = {
        "port": serial_url,
        "stack_query": "ff",
        "addresses": [2],
        "poll_interval": 0.3,
        "command_gap": 0.0,
        "timeout": 0.4,
        "retries": 0,
        "offline_after": 2,
        "id_prefix": "t",
        **extra,
    }
    return write_site(tmp_path, port, site_section("pylontech_rs485.bus", options))


@pytest.mark.parametrize("link", ["pty", "tcp"])
def test_capture_values_reach_the_broker(broker: Broker, tmp_path: Path, link: str) -> None:
    where = line_args(link, tmp_path / "ttyBMS")
    sim = start_simulator(PYLONTECH_SIM, *where, "--replay", str(CAPTURE))
    url = sim.url
    try:
        with recorder(broker.port, "bms/#", "bmslink/#") as rec:
            reader = start_service(READER, site(tmp_path, broker.port, url), "bus")
            try:
                first = rec.wait_topic("bms/t-2/state", timeout=15)
                second = rec.wait_topic("bms/t-3/state", timeout=5)
                info = rec.wait_topic("bms/t-2/info", timeout=5)
                rec.wait_topic("bms/t-2/availability", b"online", timeout=5)
                rec.wait_topic("bmslink/pylontech-rs485-reader/bus/status", b"online", timeout=5)
            finally:
                assert stop(reader) == 0
        s2 = schema.decode(schema.STATE_DECODER, first.payload)
        s3 = schema.decode(schema.STATE_DECODER, second.payload)
        # first response of the capture (hand-checked: module 1 current 0x000C, voltage 0xC241,
        # remaining 0x5BCC of 0xC350 mAh, 0x0063 cycles; module 2 0x000B, 0x59D8, 0x0093)
        assert s2.current == pytest.approx(1.2)
        assert s2.voltage == pytest.approx(49.729)
        assert s2.remaining_capacity == pytest.approx(23.5)
        assert s2.full_capacity == pytest.approx(50.0)
        assert s2.soc == pytest.approx(47.0)
        assert s2.cycles == 99
        assert len(s2.cell_voltages) == 15
        assert s2.voltage == pytest.approx(sum(s2.cell_voltages), abs=0.05)
        assert s2.power == pytest.approx(s2.voltage * s2.current, abs=0.01)
        assert s2.cell_min == min(s2.cell_voltages)
        assert s3.cycles == 147
        assert s3.remaining_capacity == pytest.approx(23.0)
        assert s3.current == pytest.approx(1.1)
        ident = schema.decode(schema.INFO_DECODER, info.payload)
        assert (ident.cell_count, ident.protocol, ident.address) == (15, "pylontech-rs485", 2)
    finally:
        sim.stop()


def test_availability_follows_the_simulator_and_recovers(broker: Broker, tmp_path: Path) -> None:
    link = tmp_path / "ttyBMS"
    sim = start_simulator(PYLONTECH_SIM, "--pty-link", str(link), "--replay", str(CAPTURE))
    reader = start_service(READER, site(tmp_path, broker.port, str(link)), "bus")
    try:
        with recorder(broker.port, "bms/#") as rec:
            rec.wait_topic("bms/t-2/availability", b"online", timeout=15)
            mark = rec.mark()
            sim.stop()  # the "adapter" disappears: the pty is gone
            rec.wait_topic("bms/t-2/availability", b"offline", timeout=10, after=mark)
            rec.wait_topic("bms/t-3/availability", b"offline", timeout=5, after=mark)
            mark = rec.mark()
            sim = start_simulator(PYLONTECH_SIM, "--pty-link", str(link), "--replay", str(CAPTURE))
            rec.wait_topic("bms/t-2/availability", b"online", timeout=20, after=mark)
            rec.wait_topic("bms/t-2/state", timeout=5, after=mark)
        assert reader.poll() is None, "the reader must survive the port disappearing"
    finally:
        assert stop(reader) == 0
        sim.stop()


def test_sigkill_leaves_the_last_will_and_sigterm_is_clean(broker: Broker, tmp_path: Path) -> None:
    sim = start_simulator(PYLONTECH_SIM, "--tcp", "127.0.0.1:0", "--replay", str(CAPTURE))
    config = site(tmp_path, broker.port, f"socket://{sim.tcp}")
    status = "bmslink/pylontech-rs485-reader/bus/status"
    try:
        with recorder(broker.port, "bms/#", "bmslink/#") as rec:
            reader = start_service(READER, config, "bus")
            rec.wait_topic(status, b"online", timeout=15)
            rec.wait_topic("bms/t-2/state", timeout=10)
            mark = rec.mark()
            stop(reader, signal.SIGKILL)
            will = rec.wait_topic(status, b"offline", timeout=5, after=mark)
            assert will.payload == b"offline"

            reader = start_service(READER, config, "bus")
            mark = rec.mark()
            rec.wait_topic(status, b"online", timeout=15, after=mark)
            for _ in range(3):  # a few samples, so the energy counter integrates something
                got = rec.wait_topic("bms/t-2/state", timeout=10, after=mark)
                mark = rec.messages.index(got) + 1
            mark = rec.mark()
            assert stop(reader, signal.SIGTERM) == 0
            rec.wait_topic(status, b"offline", timeout=5, after=mark)
            rec.wait_topic("bms/t-2/availability", b"offline", timeout=5, after=mark)
        saved = json.loads(
            (tmp_path / "state" / "energy-pylontech-rs485-reader-bus.json").read_text()
        )
        assert saved["t-2"]["charged"] > 0  # the capture starts charging at 1.2 A
    finally:
        sim.stop()
