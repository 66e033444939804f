"""The reader's poller and the simulator for every command (issue 3), in process over a real TCP
line: mixed stacks, groups, INFO=FF with 0x44, Beaver detection, unsupported commands, cadence;
plus ``bmslink scan`` / ``bmslink decode`` against the simulator.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from battery_simulator.line import TcpLine
from battery_simulator.pylontech import Faults, ModelStack, parse_model_spec
from bmslink.derived import EnergyStore
from bmslink.protocols import pylontech_rs485 as pylon
from bmslink.schema import BatteryInfo, BatteryState
from pylontech_rs485_reader.config import BusConfig
from pylontech_rs485_reader.poller import Poller
from pylontech_rs485_reader.transport import SerialTransport

pytestmark = [pytest.mark.serial]


class Sink:
    """Collects what the poller reports."""

    def __init__(self) -> None:
        self.states: dict[str, BatteryState] = {}
        self.infos: dict[str, BatteryInfo] = {}
        self.online: dict[str, bool] = {}

    def state(self, state: BatteryState) -> None:
        self.states[state.id] = state

    def info(self, info: BatteryInfo) -> None:
        self.infos[info.id] = info

    def availability(self, device_id: str, online: bool) -> None:
        self.online[device_id] = online


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def served() -> Iterator[tuple[ModelStack, TcpLine]]:
    stack = ModelStack(parse_model_spec("US2000C,US3000C,US5000,BEAVER"), seed=2, answer_ff=False)
    with TcpLine(stack, port=0, turnaround_s=0.0) as line:
        yield stack, line


def poller(line: TcpLine, clock: Clock | None = None, **options: object) -> tuple[Poller, Sink]:
    bus = BusConfig(
        port=f"socket://127.0.0.1:{line.port}",
        command_gap=0.0,
        timeout=0.3,
        retries=0,
        id_prefix="p",
        **options,  # type: ignore[arg-type]
    )
    sink = Sink()
    energy = EnergyStore(tempfile.mkdtemp(), "test", 60)
    kwargs = {"clock": clock} if clock is not None else {}
    return Poller(bus, SerialTransport(bus.port, 115200), sink, energy, "t", **kwargs), sink


def test_mixed_stack_with_beaver_every_command(served: tuple[ModelStack, TcpLine]) -> None:
    stack, line = served
    stack.set_protection(3, status1=0x01, cell_states={4: 2})
    p, sink = poller(line, addresses=[2, 3, 4, 0])
    p.poll_once()  # the first states go out before 0x92/0x47 are read
    assert sink.states["p-2"].charge_current_limit is None
    p.poll_once()
    assert sink.online == {"p-2": True, "p-3": True, "p-4": True, "p-0": True}
    s2, s3, s4, s0 = (sink.states[f"p-{a}"] for a in (2, 3, 4, 0))
    assert (s2.full_capacity, s3.full_capacity, s4.full_capacity) == (50.0, 74.0, 100.0)
    assert s4.mosfet_temperature is not None  # US5000: 6th sensor (§8.4)
    assert (s3.alarms, s3.warnings) == (["pack_overvoltage"], ["cell_overvoltage"])
    assert s3.raw_status["cell_states_abnormal"] == 0b1000
    assert (s2.charge_current_limit, s3.charge_current_limit, s4.charge_current_limit) == (
        25.0,
        37.0,
        100.0,
    )
    assert s2.raw_status["management_status"] == 0xC0
    assert s0.soh == 100.0 and len(s0.cell_voltages) == 16 and len(s0.temperatures) == 7
    assert s0.charge_current_limit == 120.0
    i2, i3, i0 = sink.infos["p-2"], sink.infos["p-3"], sink.infos["p-0"]
    assert (i2.model, i2.serial) == ("US2000C", stack.serial(2))
    assert i3.model is None  # 0x51 at a slave is the master's identity (§7.4): not used
    assert i3.serial == stack.serial(3)
    assert (i0.model, i0.protocol, i0.cell_count) == ("Beaver", "pylontech-rs485/beaver", 16)
    assert p.stats.timeouts == 0
    assert dict(p.stats.refused) == {}


def test_beaver_detected_at_adr_2_by_its_ver(served: tuple[ModelStack, TcpLine]) -> None:
    stack = ModelStack(parse_model_spec("BEAVER@2,US2000C@3"), seed=1)
    with TcpLine(stack, port=0, turnaround_s=0.0) as line:
        p, sink = poller(line, addresses=[2, 3])
        p.poll_once()
        assert p.packs[2].dialect == "beaver"
        assert p.packs[3].dialect == "pylontech"
        assert len(sink.states["p-2"].cell_voltages) == 16
        assert len(sink.states["p-3"].cell_voltages) == 15
        assert p.stats.refused["dialect_switch"] == 1
        assert p.stats.refused["VerRtnError"] == 1  # the Beaver's RTN 01 told the dialect
        # explicit dialect: no detection, the Beaver is not read as Pylontech
        p2, sink2 = poller(line, addresses=[2], dialect="pylontech", offline_after=1)
        p2.poll_once()
        assert sink2.online == {"p-2": False}


def test_groups_and_ff_with_alarms() -> None:
    stack = ModelStack(parse_model_spec("US2000,US2000,US3000@0x12,US3000@0x13"), seed=3)
    with TcpLine(stack, port=0, turnaround_s=0.0) as line:
        p, sink = poller(line, addresses=[0x12], stack_query="ff")
        p.poll_once()
        assert set(sink.states) == {"p-18", "p-19"}
        assert all(s.full_capacity == 74.0 for s in sink.states.values())
        assert all("status2" in s.raw_status for s in sink.states.values())  # 0x44 FF
        p2, sink2 = poller(line, addresses=[2, 3, 0x12, 0x13])
        p2.poll_once()
        assert len(sink2.states) == 4
        assert sink2.infos["p-18"].model == "US3000"  # group 1's own master (§7.4)
        assert sink2.infos["p-2"].model == "US2000"


def test_unsupported_and_silent_commands_are_dropped(served: tuple[ModelStack, TcpLine]) -> None:
    stack, line = served
    p, sink = poller(line, addresses=[2])
    stack.faults = Faults(rtn=0x04, commands=frozenset({0x44, 0x96}))
    p.poll_once()
    assert p.packs[2].unsupported == {0x44, 0x96}
    assert sink.infos["p-2"].firmware is None
    stack.faults = Faults(silence=True, commands=frozenset({0x92}), addresses=frozenset({2}))
    before = p.stats.requests
    for _ in range(3):
        p.packs[2].next_management = 0.0
        p.poll_once()
    assert 0x92 in p.packs[2].unsupported  # silent twice in a row: not asked again
    assert sink.online["p-2"] is True
    assert p.stats.requests - before == 3 + 2  # 0x42 per cycle + two 0x92 attempts
    assert p.stats.timeouts == 2  # silence on an optional command is not retried


def test_cadence_of_identity_limits_and_parameters(served: tuple[ModelStack, TcpLine]) -> None:
    stack, line = served
    clock = Clock()
    p, _ = poller(line, clock, addresses=[2], management_interval=30, parameters_interval=3600)
    sent: list[int] = []
    exchange = p.transport.exchange

    def spy(request: bytes, timeout: float) -> bytes | None:
        sent.append(pylon.parse_frame(request).cid2)
        return exchange(request, timeout)

    p.transport.exchange = spy  # type: ignore[method-assign]
    p.poll_once()
    assert sent == [0x42, 0x44, 0x4F, 0x93, 0x96, 0x51, 0x92, 0x47]
    sent.clear()
    clock.now += 10
    p.poll_once()
    assert sent == [0x42, 0x44]
    clock.now += 30
    p.poll_once()
    assert sent == [0x42, 0x44, 0x42, 0x44, 0x92]
    # the pack goes away and comes back: identity is read again
    stack.faults.silence = True
    for _ in range(3):
        p.poll_once()
    stack.faults.silence = False
    sent.clear()
    p.poll_once()
    assert sent[:6] == [0x42, 0x44, 0x4F, 0x93, 0x96, 0x51]


def bmslink(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bmslink.cli", *args], capture_output=True, text=True, timeout=60
    )


def test_scan_finds_the_stack_and_prints_config(served: tuple[ModelStack, TcpLine]) -> None:
    stack, line = served
    url = f"socket://127.0.0.1:{line.port}"
    proc = bmslink("scan", "pylontech-rs485", "--port", url, "--timeout", "0.2", "--gap", "0")
    assert proc.returncode == 0, proc.stderr
    assert "addresses = [0, 2, 3, 4]" in proc.stdout
    assert 'dialect = "auto"' in proc.stdout
    assert f"serial {stack.serial(3)}" in proc.stdout
    assert "model US2000C" in proc.stdout
    assert "16 cells" in proc.stdout  # the Beaver
    assert "ADR" in proc.stderr  # progress
    full = bmslink(
        "scan", "pylontech-rs485", "--port", url, "--full", "--timeout", "0.02", "--gap", "0"
    )
    assert full.returncode == 0, full.stderr
    assert "addresses = [0, 2, 3, 4]" in full.stdout
    assert "[256/256]" in full.stderr


def test_scan_nothing_answers(served: tuple[ModelStack, TcpLine]) -> None:
    stack, line = served
    stack.faults.silence = True
    url = f"socket://127.0.0.1:{line.port}"
    proc = bmslink("scan", "pylontech-rs485", "--port", url, "--timeout", "0.05", "--gap", "0")
    assert proc.returncode == 1
    assert "no pack answered" in proc.stderr


@pytest.mark.parametrize("cid2", [0x42, 0x44, 0x47, 0x4F, 0x51, 0x92, 0x93, 0x96])
def test_decode_every_command_from_the_simulator(cid2: int) -> None:
    stack = ModelStack(parse_model_spec("US3000C,BEAVER"), seed=4)
    reply = stack.respond(pylon.build_request(2, cid2))
    assert reply is not None
    proc = bmslink("decode", "pylontech-rs485", "--command", hex(cid2), reply.decode())
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["command"] == f"0x{cid2:02X}"
    if cid2 in (0x42, 0x47):
        beaver = stack.respond(pylon.build_beaver_request(0, cid2))
        assert beaver is not None
        proc = bmslink("decode", "pylontech-rs485", "--command", hex(cid2), beaver.decode())
        assert json.loads(proc.stdout)["dialect"] == "beaver"


def test_decode_refuses_other_dialects_and_wrong_commands() -> None:
    pace = (
        "~25014600D07C0001100D8B0D280D2A0D290D2C0D260D290D2B0D2B0D5A0D280D2E0D320D290D280D2C"
        "060B7C0B7B0B7B0B7D0B8C0B940000D38728DA0228E60063271063E26D"
    )
    proc = bmslink("decode", "pylontech-rs485", pace)
    assert proc.returncode == 1
    assert "VER 0x25" in proc.stderr
    ser = "~20024600C0220248505443523033313731313132353930F6D2"
    assert bmslink("decode", "pylontech-rs485", "--command", "0x93", ser).returncode == 0
    wrong = bmslink("decode", "pylontech-rs485", "--command", "0x92", ser)
    assert wrong.returncode == 1
    assert "0x92 INFO must be 10 bytes" in wrong.stderr
    assert bmslink("decode", "pylontech-rs485", "--command", "0x95", ser).returncode == 2


def test_simulator_faults_file_and_model_spec(tmp_path: Path) -> None:
    packs = parse_model_spec("US2000C,BEAVER,US3000C@0x12,BEAVER:20")
    assert [(p.model, p.address) for p in packs] == [
        ("US2000C", 2),
        ("BEAVER", 0),
        ("US3000C", 0x12),
        ("BEAVER", 1),
    ]
    for bad in ("BEAVER@5", "US2000C@2,US3000C@2", "US2000C@x"):
        with pytest.raises(ValueError, match="ADR"):
            parse_model_spec(bad)
    faults = Faults()
    faults.update({"rtn": 0x91, "addresses": [3], "commands": [0x44]})
    assert (faults.rtn, faults.addresses, faults.commands) == (0x91, {3}, {0x44})
    assert faults.applies_to(3, 0x44)
    assert not faults.applies_to(3, 0x42)
    assert not faults.applies_to(2, 0x44)
    for bad in ({"rtn": 0}, {"slow": -1}, {"nope": 1}, {"addresses": "3"}):
        with pytest.raises(ValueError, match=r"rtn|slow|unknown|addresses"):
            faults.update(bad)  # type: ignore[arg-type]
