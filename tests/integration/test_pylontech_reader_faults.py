"""End to end with every command and injected faults: simulator process (``--faults-file``,
pty / TCP) → pylontech-rs485-reader process → real Mosquitto → subscriber.

A mixed stack (US2000C at ADR 2, US3000C at ADR 3, a Maple Leaf Beaver at ADR 0) is read with
``dialect = "auto"``; each fault (silence, garbage, wrong checksum, RTN errors, slow answers,
RTN 0x04 for one command) is switched on and off while the reader runs: availability follows,
the published values stay right, and the reader process never dies.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bmslink import schema
from tests.broker import Broker, Received, Recorder, recorder
from tests.processes import (
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

STACK = "US2000C:60,US3000C:55,BEAVER:80"


def site(tmp_path: Path, port: int, serial_url: str) -> Path:
    options: dict[str, Any] = {
        "port": serial_url,
        "addresses": [2, 3, 0],
        "dialect": "auto",
        "poll_interval": 0.2,
        "command_gap": 0.0,
        "timeout": 0.25,
        "retries": 0,
        "offline_after": 2,
        "management_interval": 0.5,
        "parameters_interval": 1.0,
        "id_prefix": "f",
    }
    return write_site(tmp_path, port, site_section("pylontech_rs485.bus", options))


def set_faults(path: Path, **faults: Any) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(faults))
    tmp.replace(path)  # atomic: the simulator never reads half a file


def state(rec: Recorder, device: str, after: int, timeout: float = 10.0) -> schema.BatteryState:
    """The next state of ``device`` that carries limits (the very first reading of a pack goes
    out before its 0x92/0x47 are read)."""

    def with_limits(m: Received) -> bool:
        if m.topic != f"bms/{device}/state":
            return False
        return schema.decode(schema.STATE_DECODER, m.payload).charge_current_limit is not None

    msg = rec.wait_for(with_limits, timeout=timeout, after=after)
    decoded = schema.decode(schema.STATE_DECODER, msg.payload)
    assert isinstance(decoded, schema.BatteryState)
    return decoded


def check_pylontech(s: schema.BatteryState, capacity: float, limit: float) -> None:
    assert len(s.cell_voltages) == 15
    assert s.voltage == pytest.approx(sum(s.cell_voltages), abs=0.02)
    assert s.full_capacity == capacity
    assert s.soc is not None
    assert 40 <= s.soc <= 70
    assert s.charge_voltage_limit == pytest.approx(53.25)  # 0x92 (simulator: 3.55 V × 15)
    assert s.discharge_voltage_limit == pytest.approx(45.0)
    assert (s.charge_current_limit, s.discharge_current_limit) == (limit, limit)
    assert s.charge_enabled is True
    assert s.discharge_enabled is True
    assert s.raw_status["status2"] & 0x06 == 0x06  # 0x44: both MOSFETs on
    assert s.charge_switch is True and s.discharge_switch is True  # the same bits
    assert s.alarms == []


def check_beaver(s: schema.BatteryState) -> None:
    assert len(s.cell_voltages) == 16
    assert len(s.temperatures) == 7
    assert s.soh == 100.0
    assert s.soc is not None
    assert 75 <= s.soc <= 85
    assert s.charge_current_limit == 120.0  # Beaver 0x47 (10 mA units)


def run_faults(tmp_path: Path, broker: Broker, link: str, faults: list[dict[str, Any]]) -> None:
    faults_file = tmp_path / "faults.json"
    where = line_args(link, tmp_path / "ttyBMS")
    args = ["--model", STACK, "--no-ff", "--faults-file", str(faults_file), "--seed", "5"]
    sim = start_simulator(PYLONTECH_SIM, *where, *args)
    url = sim.url
    reader = start_service(READER, site(tmp_path, broker.port, url), "bus")
    try:
        with recorder(broker.port, "bms/#") as rec:
            for device in ("f-2", "f-3", "f-0"):
                rec.wait_topic(f"bms/{device}/availability", b"online", timeout=20)
            mark = rec.mark()
            check_pylontech(state(rec, "f-2", mark), 50.0, 25.0)
            check_pylontech(state(rec, "f-3", mark), 74.0, 37.0)
            check_beaver(state(rec, "f-0", mark))
            # the first info goes out with the first state, the identity (0x93/0x96/0x51) next
            identified = rec.wait_for(
                lambda m: m.topic == "bms/f-2/info" and b'"serial":"SIM' in m.payload
            )
            info2 = schema.decode(schema.INFO_DECODER, identified.payload)
            assert (info2.model, info2.serial) == ("US2000C", "SIMUS2000C002050")
            assert info2.firmware == "V1.3 (mainline V0.6.9)"
            info0 = schema.decode(schema.INFO_DECODER, rec.wait_topic("bms/f-0/info").payload)
            assert (info0.manufacturer, info0.model, info0.cell_count) == (
                "Maple Leaf",
                "Beaver",
                16,
            )

            for fault in faults:
                target = fault.get("addresses", [2])[0]
                device = f"f-{target}"
                # the pack polled after the faulty one may be hit too by a slow reply that
                # occupies the half-duplex bus: watch the one polled before it
                other = {2: "f-0", 3: "f-2", 0: "f-3"}[target]
                mark = rec.mark()
                set_faults(faults_file, **fault)
                if fault.get("commands"):  # RTN 04 for 0x44 only: online, no alarm data

                    def without_0x44(m: Received, device: str = device) -> bool:
                        if m.topic != f"bms/{device}/state":
                            return False
                        s = schema.decode(schema.STATE_DECODER, m.payload)
                        return "status2" not in s.raw_status

                    got = rec.wait_for(without_0x44, after=mark)
                    s = schema.decode(schema.STATE_DECODER, got.payload)
                    assert s.voltage == pytest.approx(sum(s.cell_voltages), abs=0.02)
                    assert s.charge_voltage_limit == pytest.approx(53.25)
                    faults_file.unlink()
                else:
                    rec.wait_topic(f"bms/{device}/availability", b"offline", after=mark)
                    if not fault.get("slow"):  # a slow pack holds the half-duplex bus: the
                        state(rec, other, rec.mark())  # others may suffer; else they are read
                    mark = rec.mark()
                    faults_file.unlink()
                    rec.wait_topic(f"bms/{device}/availability", b"online", after=mark)
                    print("recovered", fault, flush=True)
                    s = state(rec, device, rec.mark())
                    if target == 0:
                        check_beaver(s)
                    else:
                        check_pylontech(s, *((50.0, 25.0) if target == 2 else (74.0, 37.0)))
                assert reader.poll() is None, f"reader died during {fault}"
    finally:
        assert stop(reader) == 0
        sim.stop()


TCP_FAULTS: list[dict[str, Any]] = [
    {"silence": True, "addresses": [3]},
    {"garbage": True, "addresses": [2]},
    {"bad_checksum": True, "addresses": [2]},
    {"rtn": 0x91, "addresses": [3]},  # internal communication error (retryable)
    {"rtn": 0x90, "addresses": [2]},  # ADR error (not retryable)
    {"slow": 0.6, "addresses": [0]},  # slower than the 0.25 s deadline: the Beaver
    {"rtn": 0x04, "addresses": [2], "commands": [0x44]},  # firmware without 0x44
]


def test_every_fault_over_tcp(broker: Broker, tmp_path: Path) -> None:
    run_faults(tmp_path, broker, "tcp", TCP_FAULTS)


def test_faults_on_a_pty(broker: Broker, tmp_path: Path) -> None:
    run_faults(
        tmp_path,
        broker,
        "pty",
        [{"silence": True, "addresses": [0]}, {"garbage": True, "addresses": [3]}],
    )
