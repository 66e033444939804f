"""`bmslink demo` end to end: everything in compose.yaml's demo profile starts, real capture data
reaches the broker, every bank of config/demo.toml is published with its members and sensible
limits, bank1 follows a pack that stops answering, and Ctrl-C (SIGINT, even twice) leaves no
process behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path
from typing import Any

import pytest

from bmslink import schema
from tests.broker import Received, free_port, recorder

pytestmark = pytest.mark.mqtt
ROOT = Path(__file__).resolve().parents[2]
with (ROOT / "config" / "demo.toml").open("rb") as _fh:
    BANKS: dict[str, Any] = tomllib.load(_fh)["banks"]


def processes_with_env(var: str, value: str) -> list[int]:
    """Pids whose environment has ``var=value`` (the demo marks its children)."""
    needle = f"{var}={value}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if needle in (entry / "environ").read_bytes().split(b"\0"):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def test_demo_shows_the_capture_and_stops_cleanly(tmp_path: Path) -> None:
    port = free_port()

    demo = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bmslink.cli",
            "demo",
            "--port",
            str(port),
            "--workdir",
            str(tmp_path),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert demo.stdout is not None
        deadline = time.monotonic() + 60
        line = ""
        while time.monotonic() < deadline and "first state" not in line:
            line = demo.stdout.readline()
            assert line, "the demo ended before the first state"
        with recorder(port, "bms/#") as rec:
            state = rec.wait_topic("bms/rack-2/state", timeout=10)
            rec.wait_topic("bms/model-4/state", timeout=10)
            full = {
                name: rec.wait_for(
                    lambda m, name=name: (
                        m.topic == f"bms/{name}/state"
                        and _bank(m).members_online
                        and len(_bank(m).members_online) == len(_bank(m).members)
                    ),
                    timeout=30,
                )
                for name in BANKS
            }
            for name, message in full.items():
                bank_state = _bank(message)
                assert bank_state.members == BANKS[name]["members"], name
                _assert_sensible_limits(bank_state, BANKS[name])
                for member in bank_state.members:
                    _assert_declared_cells(rec.wait_topic(f"bms/{member}/state", timeout=10), name)
            assert "model-3" in _bank(full["bank1"]).members_online
            # a simulated pack stops answering (README: the faults file the simulator re-reads)
            faults = tmp_path / "state" / "faults-model.json"
            faults.write_text('{"silence": true, "addresses": [3]}')
            mark = rec.mark()
            rec.wait_topic("bms/model-3/availability", b"offline", timeout=30, after=mark)
            degraded = rec.wait_for(
                lambda m: m.topic == "bms/bank1/state" and "model-3" not in _bank(m).members_online,
                timeout=10,
                after=mark,
            )
            bank = _bank(degraded)
            assert bank.degraded is True
            assert "member_missing@model-3" in bank.warnings
            _assert_sensible_limits(bank, BANKS["bank1"])
            faults.unlink()
            mark = rec.mark()
            rec.wait_for(
                lambda m: m.topic == "bms/bank1/state" and "model-3" in _bank(m).members_online,
                timeout=30,
                after=mark,
            )
        rack = schema.decode(schema.STATE_DECODER, state.payload)
        assert rack.cycles == 99  # the real capture's first pack
        assert len(rack.cell_voltages) == 15
        children = processes_with_env("BMSLINK_DEMO", str(tmp_path))
        assert len(children) >= 4  # two simulators, two readers
        demo.send_signal(signal.SIGINT)
        time.sleep(0.1)
        demo.send_signal(signal.SIGINT)  # uv forwards Ctrl-C once more
        assert demo.wait(20) == 0
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and processes_with_env("BMSLINK_DEMO", str(tmp_path)):
            time.sleep(0.1)
        assert processes_with_env("BMSLINK_DEMO", str(tmp_path)) == []
        broker_left = [
            p
            for p in Path("/proc").iterdir()
            if p.name.isdigit() and str(tmp_path).encode() in _cmdline(p)
        ]
        assert broker_left == []
    finally:
        if demo.poll() is None:  # a failed assertion: let the demo stop its children first
            demo.terminate()
            try:
                demo.wait(15)
            except subprocess.TimeoutExpired:
                demo.kill()
        for pid in processes_with_env("BMSLINK_DEMO", str(tmp_path)):
            os.kill(pid, signal.SIGKILL)


def _assert_sensible_limits(state: schema.BankState, table: dict[str, Any]) -> None:
    """A healthy bank lets current flow both ways, never above its configured caps (A)."""
    assert not state.failsafe, state.id
    assert state.charge_current_limit is not None and state.discharge_current_limit is not None
    assert 0 < state.charge_current_limit <= table["max_charge_current"], state.id
    assert 0 < state.discharge_current_limit <= table["max_discharge_current"], state.id
    assert state.charge_voltage_limit is not None and state.discharge_voltage_limit is not None
    assert state.discharge_voltage_limit < state.charge_voltage_limit, state.id


def _assert_declared_cells(message: Received, bank: str) -> None:
    """A member that reports its cells has exactly the cell count its bank declares."""
    state = schema.decode(schema.STATE_DECODER, message.payload)
    assert isinstance(state, schema.BatteryState)
    declared = BANKS[bank]["packs"][state.id]["cell_count"]
    if state.cell_voltages:
        assert len(state.cell_voltages) == declared, state.id


def _bank(message: Received) -> schema.BankState:
    state = schema.decode(schema.STATE_DECODER, message.payload)
    assert isinstance(state, schema.BankState)
    return state


def _cmdline(proc: Path) -> bytes:
    try:
        return (proc / "cmdline").read_bytes()
    except OSError:
        return b""
