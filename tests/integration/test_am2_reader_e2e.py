"""End to end: bmslink-sim-pace (pty / TCP, 9600 Bd paced) → am2-modbus-reader → Mosquitto.

Four slaves on one line: two AM2 packs, one silent, one answering every read with a Modbus
exception. Real processes, a real broker (the ``broker`` fixture), a real subscriber.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from bmslink import schema
from tests.broker import Broker, recorder
from tests.processes import (
    PACE_SIM,
    line_args,
    run_service,
    site_section,
    start_service,
    start_simulator,
    stop,
    write_site,
)

pytestmark = [pytest.mark.mqtt, pytest.mark.serial]

READER = "am2_modbus_reader"
PACKS = ("--packs", "1:AM2:86,2:AM2:60,3,4", "--silent", "3", "--exception", "4:2")


def site(tmp_path: Path, port: int, url: str, **extra: object) -> Path:
    options: dict[str, object] = {
        "port": url,
        "baudrate": 9600,
        "addresses": [1, 2, 3, 4],
        "poll_interval": 0.5,
        "timeout": 0.3,
        "frame_gap": 0.05,
        "retries": 1,
        "retry_delay": 0.05,
        "offline_after": 2,
        "id_prefix": "am2",
        "manufacturer": "Hubble Lithium",
        "model": "AM2",
        **extra,
    }
    return write_site(tmp_path, port, site_section("pace_modbus.bus", options))


@pytest.mark.parametrize("link", ["pty", "tcp"])
def test_two_packs_a_silent_one_and_an_exception_one(
    broker: Broker, tmp_path: Path, link: str
) -> None:
    sim = start_simulator(PACE_SIM, *line_args(link, tmp_path / "ttyAM2"), *PACKS, "--seed", "1")
    url = sim.url
    capture = tmp_path / "capture.jsonl"
    try:
        with recorder(broker.port, "bms/#", "bmslink/#") as rec:
            reader = start_service(
                READER, site(tmp_path, broker.port, url), "bus", "--capture", str(capture)
            )
            try:
                first = rec.wait_topic("bms/am2-1/state", timeout=15)
                second = rec.wait_topic("bms/am2-2/state", timeout=5)
                info = rec.wait_topic("bms/am2-1/info", timeout=5)
                rec.wait_topic("bms/am2-1/availability", b"online", timeout=5)
                rec.wait_topic("bms/am2-2/availability", b"online", timeout=5)
                rec.wait_topic("bms/am2-3/availability", b"offline", timeout=10)
                rec.wait_topic("bms/am2-4/availability", b"offline", timeout=5)
                rec.wait_topic("bmslink/am2-modbus-reader/bus/status", b"online", timeout=5)
                mark = rec.mark()
                rec.wait_topic("bms/am2-1/state", timeout=5, after=mark)  # still polling
                assert reader.poll() is None
            finally:
                assert stop(reader) == 0
            topics = {m.topic for m in rec.messages}
        assert "bms/am2-3/state" not in topics
        assert "bms/am2-4/state" not in topics
        s1 = schema.decode(schema.STATE_DECODER, first.payload)
        s2 = schema.decode(schema.STATE_DECODER, second.payload)
        assert s1.soc == 86 and s2.soc == 60
        assert len(s1.cell_voltages) == 13
        assert s1.voltage == pytest.approx(sum(s1.cell_voltages), abs=0.02)
        assert s1.soh == 100 and s1.full_capacity == 105.0 and s1.design_capacity == 105.0
        assert s1.charge_voltage_limit == pytest.approx(53.3)  # 13 × 4.10 V full-charge
        assert s1.discharge_current_limit == 120.0
        assert s1.charge_switch is True and s1.discharge_switch is True  # reg 11 bits 10/11
        assert s1.charge_enabled is None and s1.discharge_enabled is None
        assert s1.power == pytest.approx(s1.voltage * s1.current, abs=0.05)
        assert 15 < s1.temperature_min <= s1.temperature_max < 30
        assert set(s1.raw_status) == {
            "warning_flags",
            "protection_flags",
            "status_flags",
            "balance_flags",
        }
        ident = schema.decode(schema.INFO_DECODER, info.payload)
        assert (ident.manufacturer, ident.model, ident.firmware) == (
            "Hubble Lithium",
            "AM2",
            "P13S120A-12290-2.05T",
        )
        assert (ident.protocol, ident.address, ident.cell_count) == ("pace-modbus", 1, 13)
        assert ident.transport == url
        records = [json.loads(x) for x in capture.read_text().splitlines()]
        frames = {(r["dir"], r["frame"]) for r in records}
        assert ("tx", "0103000000258411") in frames
        assert ("tx", "01030096001e25ee") in frames  # strings, once
        assert ("tx", "0103003c0037c410") in frames  # settings
        assert ("rx", "048302d0f0") in frames  # the exception reply, recorded as received
        assert sum(1 for r in records if r["frame"] == "01030096001e25ee") == 1
    finally:
        sim.stop()


def test_packs_go_offline_with_the_bridge_and_come_back(broker: Broker, tmp_path: Path) -> None:
    sim = start_simulator(PACE_SIM, "--tcp", "127.0.0.1:0", "--packs", "1,2")
    address = sim.tcp
    assert address is not None
    config = site(tmp_path, broker.port, f"socket://{address}", addresses=[1, 2])
    reader = start_service(READER, config, "bus")
    try:
        with recorder(broker.port, "bms/#") as rec:
            rec.wait_topic("bms/am2-2/availability", b"online", timeout=15)
            mark = rec.mark()
            sim.stop()  # the bridge disappears
            rec.wait_topic("bms/am2-1/availability", b"offline", timeout=10, after=mark)
            rec.wait_topic("bms/am2-2/availability", b"offline", timeout=5, after=mark)
            mark = rec.mark()
            sim = start_simulator(PACE_SIM, "--tcp", address, "--packs", "1,2")
            rec.wait_topic("bms/am2-1/availability", b"online", timeout=20, after=mark)
            rec.wait_topic("bms/am2-2/state", timeout=5, after=mark)
        assert reader.poll() is None, "the reader must survive the bridge going away"
    finally:
        assert stop(reader, signal.SIGTERM) == 0
        sim.stop()


def test_bad_config_exits_2_naming_the_key(tmp_path: Path) -> None:
    config = site(tmp_path, 1883, "socket://127.0.0.1:9", addresses=[1, 16])
    proc = run_service(READER, config, "bus")
    assert proc.returncode == 2
    assert "pace_modbus.bus.addresses" in proc.stderr
