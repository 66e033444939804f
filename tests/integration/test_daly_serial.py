"""End to end over serial: ``bmslink-sim-daly`` (pty / TCP) → daly-ble-reader → Mosquitto.

Covers A5 with two boards on one bus (detection, multi-frame cells, identity), D2 with garbage
and bad CRCs on the line, 0x81, the MOSFET command topic (refused when disabled, acknowledged by
the next state when enabled), ``--capture``, and a bad configuration (exit 2 naming the key).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from paho.mqtt import publish

from bmslink import schema
from bmslink.mqtt import RETAINED_COMMAND_REFUSED
from tests.broker import Broker, recorder
from tests.processes import (
    DALY_SIM,
    run_service,
    simulator,
    start_service,
    stop,
    stop_reading_stderr,
    write_site,
)

pytestmark = [pytest.mark.mqtt, pytest.mark.serial]


READER = "daly_ble_reader"


def site(tmp_path: Path, port: int, body: str) -> Path:
    return write_site(tmp_path, port, f"[daly.bus]\n{body}\n")


COMMON = 'transport = "serial"\npoll_interval = 0.5\ncommand_gap = 0.0\nretries = 2\n'


def test_a5_two_boards_over_tcp(broker: Broker, tmp_path: Path) -> None:
    with simulator(DALY_SIM, "--tcp", "127.0.0.1:0", "--boards", "2", "--current", "-12.5") as sim:
        body = (
            COMMON + f'port = "socket://{sim.tcp}"\n'
            'devices = [{id = "a5-1", board = 1}, {id = "a5-2", board = 2, protocol = "a5"}]\n'
        )
        capture = tmp_path / "capture.jsonl"
        with recorder(broker.port, "bms/#", "bmslink/#") as rec:
            reader = start_service(
                READER, site(tmp_path, broker.port, body), "bus", "--capture", str(capture)
            )
            try:
                first = rec.wait_topic("bms/a5-1/state", timeout=20)
                second = rec.wait_topic("bms/a5-2/state", timeout=20)
                info = rec.wait_topic("bms/a5-1/info", timeout=5)
                rec.wait_topic("bms/a5-2/availability", b"online", timeout=5)
                rec.wait_topic("bmslink/daly-ble-reader/bus/status", b"online", timeout=5)
            finally:
                assert stop(reader) == 0
    s1 = schema.decode(schema.STATE_DECODER, first.payload)
    s2 = schema.decode(schema.STATE_DECODER, second.payload)
    for s in (s1, s2):
        assert s.current == pytest.approx(-12.5)  # simulator discharging at 12.5 A
        assert len(s.cell_voltages) == 16 and all(3.3 < v < 3.4 for v in s.cell_voltages)
        assert s.voltage == pytest.approx(sum(s.cell_voltages), abs=0.1)
        assert s.temperatures == [24.0, 25.0]
        assert s.cycles == 42 and s.charge_switch is True and s.discharge_switch is True
        assert s.charge_enabled is None and s.discharge_enabled is None  # no allow flag
        assert 79 < (s.soc or 0) <= 80
        assert s.balancing_cells == [1]
        assert s.power == pytest.approx(s.voltage * s.current, abs=0.5)
    ident = schema.decode(schema.INFO_DECODER, info.payload)
    assert (ident.protocol, ident.cell_count, ident.model) == ("daly-a5", 16, "DL-BMS-SIM-A5")
    assert ident.design_capacity == 280.0
    remembered = json.loads((tmp_path / "state" / "daly-ble-reader-bus-devices.json").read_text())
    assert remembered["a5-1"] == {"protocol": "a5", "host": 0x40}
    records = [json.loads(line) for line in capture.read_text().splitlines()]
    assert {r["dir"] for r in records} == {"tx", "rx"}
    assert any(r["data"].startswith("a54190") for r in records)  # board 2 from host 0x40


def test_d2_over_pty_survives_garbage_and_bad_crc_and_switches(
    broker: Broker, tmp_path: Path
) -> None:
    link = tmp_path / "ttyDALY"
    with simulator(
        DALY_SIM,
        "--pty-link",
        str(link),
        "--protocol",
        "d2",
        "--current",
        "-12.5",
        "--garbage",
        "00ffd203",
        "--bad-crc-every",
        "3",
    ):
        body = (
            COMMON
            + f'port = "{link}"\ncontrol = true\ndevices = [{{id = "d2", protocol = "d2"}}]\n'
        )
        with recorder(broker.port, "bms/#") as rec:
            reader = start_service(READER, site(tmp_path, broker.port, body), "bus")
            try:
                state = rec.wait_topic("bms/d2/state", timeout=20)
                mark = rec.mark()
                publish.single("bms/d2/set", b'{"charge_enabled": false}', qos=1, port=broker.port)
                result = rec.wait_topic("bms/d2/set/result", timeout=15, after=mark)
                after = rec.wait_for(
                    lambda m: (
                        m.topic == "bms/d2/state"
                        and schema.decode(schema.STATE_DECODER, m.payload).charge_switch is False
                    ),
                    timeout=10,
                    after=mark,
                )
                mark = rec.mark()
                publish.single("bms/d2/set", b'{"charge": 1}', qos=1, port=broker.port)
                bad = rec.wait_topic("bms/d2/set/result", timeout=10, after=mark)
            finally:
                assert stop(reader) == 0
    s = schema.decode(schema.STATE_DECODER, state.payload)
    assert len(s.cell_voltages) == 16 and s.mosfet_temperature is None
    assert s.charge_switch is True and s.current == pytest.approx(-12.5)
    ok = schema.decode(schema.RESULT_DECODER, result.payload)
    assert ok.ok is True and ok.error is None
    switched = schema.decode(schema.STATE_DECODER, after.payload)
    assert (switched.charge_switch, switched.discharge_switch) == (False, True)
    assert switched.charge_enabled is None
    refused = schema.decode(schema.RESULT_DECODER, bad.payload)
    assert refused.ok is False and "charge" in (refused.error or "")


def test_control_disabled_is_refused_with_a_result(broker: Broker, tmp_path: Path) -> None:
    with simulator(DALY_SIM, "--tcp", "127.0.0.1:0", "--protocol", "p81") as sim:
        body = COMMON + f'port = "socket://{sim.tcp}"\ndevices = [{{id = "k1"}}]\n'
        with recorder(broker.port, "bms/#") as rec:
            reader = start_service(READER, site(tmp_path, broker.port, body), "bus")
            try:
                state = rec.wait_topic("bms/k1/state", timeout=20)
                info = rec.wait_topic("bms/k1/info", timeout=5)
                mark = rec.mark()
                publish.single("bms/k1/set", b'{"discharge_enabled": false}', port=broker.port)
                result = rec.wait_topic("bms/k1/set/result", timeout=10, after=mark)
            finally:
                assert stop(reader) == 0
    s = schema.decode(schema.STATE_DECODER, state.payload)
    assert schema.decode(schema.INFO_DECODER, info.payload).protocol == "daly-81"
    assert len(s.cell_voltages) == 16 and s.discharge_switch is True
    assert (s.mosfet_temperature, s.bms_temperature) == (30.0, 28.0)
    r = schema.decode(schema.RESULT_DECODER, result.payload)
    assert r.ok is False and "control = true" in (r.error or "")


def test_retained_switch_command_is_refused_with_a_result(broker: Broker, tmp_path: Path) -> None:
    """MQTT 5 (default): a retained ``bms/<id>/set`` published live never switches a MOSFET."""
    with simulator(DALY_SIM, "--tcp", "127.0.0.1:0") as sim:
        body = COMMON + f'port = "socket://{sim.tcp}"\ncontrol = true\ndevices = [{{id = "r1"}}]\n'
        with recorder(broker.port, "bms/#") as rec:
            reader = start_service(READER, site(tmp_path, broker.port, body), "bus")
            try:
                rec.wait_topic("bms/r1/state", timeout=20)
                mark = rec.mark()
                publish.single(
                    "bms/r1/set", b'{"charge_enabled": false}', qos=1, retain=True, port=broker.port
                )
                result = rec.wait_topic("bms/r1/set/result", timeout=10, after=mark)
                later = [rec.wait_for(lambda m: m.topic == "bms/r1/state", timeout=10, after=mark)]
                mark = rec.mark()
                later.append(
                    rec.wait_for(lambda m: m.topic == "bms/r1/state", timeout=10, after=mark)
                )
                publish.single("bms/r1/set", b"", qos=1, retain=True, port=broker.port)
            finally:
                status, err = stop_reading_stderr(reader)
    assert status == 0, err[-2000:]
    r = schema.decode(schema.RESULT_DECODER, result.payload)
    assert r.ok is False and r.error == RETAINED_COMMAND_REFUSED
    for m in later:
        assert schema.decode(schema.STATE_DECODER, m.payload).charge_switch is True  # not switched
    assert '"retained_command": 1' in err, err[-2000:]


def test_bad_config_exits_2_naming_the_key(tmp_path: Path) -> None:
    path = tmp_path / "site.toml"
    path.write_text('[daly.bus]\ntransport = "ble"\ndevices = [{id = "x"}]\n')
    proc = run_service(READER, path, "bus")
    assert proc.returncode == 2
    assert "daly.bus.devices[0].address" in proc.stderr
