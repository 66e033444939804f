"""The PACE simulator (battery_simulator.pace) and the am2-modbus-reader's transport and poller
against it on a real pty (minimalmodbus + pyserial), in-process with a fake sink."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from am2_modbus_reader.config import BusConfig
from am2_modbus_reader.poller import Poller
from am2_modbus_reader.transport import CaptureWriter, ModbusTransport, NoAnswer
from battery_simulator.line import PtyLine
from battery_simulator.pace import (
    ModbusRtuFramer,
    PaceBus,
    PaceFaults,
    build_bus,
    nmc_ocv,
    parse_pack_spec,
)
from battery_simulator.pylontech import CurrentProfile
from bmslink.derived import EnergyStore
from bmslink.protocols import modbus_rtu as rtu
from bmslink.protocols import pace_modbus as pace
from bmslink.schema import BatteryInfo, BatteryState

pytestmark = pytest.mark.serial


def make_bus(faults: PaceFaults | None = None, **kw: object) -> PaceBus:
    specs = parse_pack_spec("1:AM2:86,2:PACE16:50,3,4,5")
    return build_bus(specs, CurrentProfile(constant_a=-5.0), seed=7, faults=faults, **kw)  # type: ignore[arg-type]


def ask(bus: PaceBus, request: bytes) -> bytes | None:
    return bus.respond(request)


# --- the responder, no I/O -------------------------------------------------------------------


def test_each_pack_serves_its_model() -> None:
    bus = make_bus()
    for slave, cells, version in ((1, 13, "P13S120A-12290-2.05T"), (2, 16, "P16S100A-12720-4.05G")):
        reply = ask(bus, rtu.build_read_request(slave, 0, 37))
        assert reply is not None
        live = pace.decode_live(rtu.parse_read_response(reply, slave=slave, count=37))
        assert sum(1 for v in live.cell_voltages if v) == cells
        assert live.voltage == pytest.approx(sum(live.cell_voltages), abs=0.02)
        assert live.current < 0 and live.discharging and not live.charging
        strings = ask(bus, rtu.build_read_request(slave, 150, 30))
        assert strings is not None
        assert pace.decode_identity(rtu.parse_read_response(strings)).version == version
    first = pace.decode_live(rtu.parse_read_response(ask(bus, rtu.build_read_request(1, 0, 37))))  # type: ignore[arg-type]
    assert first.soc == 86
    assert first.cells(13)[0] == pytest.approx(nmc_ocv(86) - 5 * 0.0015, abs=0.01)


def test_mosfets_open_when_full_and_when_empty() -> None:
    """Register 11 bits 10/11 (§6.4): charge MOSFET off at 100 %, discharge MOSFET off at 0 %."""
    for soc, charge_on, discharge_on in ((100, False, True), (0, True, False), (50, True, True)):
        bus = build_bus(parse_pack_spec(f"1:AM2:{soc}"), CurrentProfile(constant_a=0.0), seed=1)
        reply = ask(bus, rtu.build_read_request(1, 0, 37))
        assert reply is not None
        live = pace.decode_live(rtu.parse_read_response(reply, slave=1, count=37))
        assert (live.charge_mosfet, live.discharge_mosfet) == (charge_on, discharge_on)


@pytest.mark.parametrize(
    ("request_", "code"),
    [
        (rtu.build_read_request(1, 170, 20), 2),  # past register 179
        (rtu.append_crc(bytes.fromhex("0103000000") + b"\x00"), 3),  # count 0
        (rtu.append_crc(bytes.fromhex("010300000080")), 3),  # count 128
        (rtu.append_crc(bytes.fromhex("010600700014")), 1),  # FC 0x06 is not PACE
        (rtu.build_write_request(1, 112, [20]), 2),  # writes disabled
    ],
)
def test_illegal_requests_get_exceptions(request_: bytes, code: int) -> None:
    reply = ask(make_bus(), request_)
    assert reply is not None
    with pytest.raises(rtu.ExceptionReplyError) as info:
        rtu.parse_read_response(reply, slave=1, function=request_[1])
    assert info.value.code == code


def test_writes_to_the_settings_when_allowed() -> None:
    bus = make_bus(allow_writes=True)
    assert ask(bus, rtu.build_write_request(1, 112, [20])) == bytes.fromhex("0110007000010012")
    reply = ask(bus, rtu.build_read_request(1, 60, 55))
    assert reply is not None
    assert pace.decode_settings(rtu.parse_read_response(reply)).values["soc_alarm_threshold"] == 20


def test_silence_where_a_real_bus_is_silent() -> None:
    bus = make_bus(PaceFaults(silent={3}))
    assert ask(bus, rtu.build_read_request(3, 0, 37)) is None  # silent pack
    assert ask(bus, rtu.build_read_request(9, 0, 37)) is None  # nobody there
    assert ask(bus, rtu.build_read_request(0, 0, 37)) is None  # broadcast read
    assert ask(bus, rtu.build_read_request(1, 0, 37)[:-1] + b"\x00") is None  # bad CRC
    assert bus.bad_requests == 1
    assert bus.requests == {3: 1, 9: 1, 0: 1}


def test_faults_per_address() -> None:
    faults = PaceFaults(exception={4: 4}, bad_crc={5}, slow={2: 0.7})
    bus = make_bus(faults)
    assert ask(bus, rtu.build_read_request(4, 0, 37)) == rtu.build_exception(4, 3, 4)
    with pytest.raises(rtu.CrcError):
        rtu.parse_read_response(ask(bus, rtu.build_read_request(5, 0, 37)) or b"")
    assert ask(bus, rtu.build_read_request(2, 0, 37)) is not None
    assert bus.extra_delay_s == 0.7
    assert ask(bus, rtu.build_read_request(1, 0, 37)) is not None
    assert bus.extra_delay_s == 0.0
    faults.clear()
    assert ask(bus, rtu.build_read_request(4, 0, 37)) is not None


def test_framer_cuts_resyncs_and_forgets_stale_bytes() -> None:
    framer = ModbusRtuFramer(idle_reset_s=0.05)
    a = rtu.build_read_request(1, 0, 37)
    b = rtu.build_write_request(2, 60, [1, 2, 3])
    assert framer.feed(b"\xff\x00\x13" + a + b[:4], 1.0) == [(a, 1.0)]
    assert framer.feed(b[4:], 1.01) == [(b, 1.0)]
    assert framer.feed(a[:5], 2.0) == []
    assert framer.feed(a, 2.2) == [(a, 2.2)]  # the stale half was dropped after the pause
    assert framer.dropped == 3 + 5


# --- transport and poller on a real pty ------------------------------------------------------


@pytest.fixture
def line() -> Iterator[tuple[PtyLine, PaceBus]]:
    faults = PaceFaults(silent={3}, exception={4: 2}, bad_crc={5})
    bus = make_bus(faults)
    with PtyLine(bus, baud=115200, turnaround_s=0.001, framer=ModbusRtuFramer()) as ln:
        yield ln, bus


def test_transport_turns_every_failure_into_a_typed_error(
    line: tuple[PtyLine, PaceBus], tmp_path: Path
) -> None:
    pty, bus = line
    capture = CaptureWriter(str(tmp_path / "cap.jsonl"))
    t = ModbusTransport(pty.device_path, 115200, 0.3, capture)
    try:
        regs = t.read_registers(1, 0, 37)
        assert pace.decode_live(regs).soc == 86
        with pytest.raises(NoAnswer):
            t.read_registers(3, 0, 37)
        with pytest.raises(rtu.ExceptionReplyError) as exc:
            t.read_registers(4, 0, 37)
        assert exc.value.code == 2
        with pytest.raises(rtu.CrcError):
            t.read_registers(5, 0, 37)
        with pytest.raises(rtu.ExceptionReplyError):
            t.read_registers(1, 170, 20)
        bus.faults.truncate.add(1)
        with pytest.raises(rtu.FrameError, match="truncated"):
            t.read_registers(1, 0, 37)
        assert t.transactions == 6
    finally:
        t.close()
        capture.close()
    records = [json.loads(x) for x in (tmp_path / "cap.jsonl").read_text().splitlines()]
    assert records[0]["dir"] == "tx" and records[0]["frame"] == "0103000000258411"
    assert records[1]["dir"] == "rx" and records[1]["frame"].startswith("01034a")
    assert "048302d0f0" in {r["frame"] for r in records if r["dir"] == "rx"}
    assert sum(r["dir"] == "tx" for r in records) == 6


class FakeSink:
    def __init__(self) -> None:
        self.states: list[BatteryState] = []
        self.infos: dict[str, BatteryInfo] = {}
        self.available: dict[str, list[bool]] = {}

    def state(self, state: BatteryState) -> None:
        self.states.append(state)

    def info(self, info: BatteryInfo) -> None:
        self.infos[info.id] = info

    def availability(self, device_id: str, online: bool) -> None:
        self.available.setdefault(device_id, []).append(online)


def poller_for(pty: PtyLine, tmp_path: Path, **kw: object) -> tuple[Poller, FakeSink]:
    options: dict[str, object] = {
        "port": pty.device_path,
        "baudrate": 115200,
        "addresses": [1, 2, 3, 4, 5],
        "timeout": 0.2,
        "frame_gap": 0.0,
        "retries": 1,
        "retry_delay": 0.0,
        "offline_after": 2,
        "id_prefix": "p",
        **kw,
    }
    cfg = BusConfig(**options)  # type: ignore[arg-type]
    sink = FakeSink()
    transport = ModbusTransport(cfg.port, cfg.baudrate, cfg.timeout)
    return Poller(cfg, transport, sink, EnergyStore(tmp_path, "t", 60), "t"), sink


def test_poller_reads_three_blocks_then_only_the_live_one(
    line: tuple[PtyLine, PaceBus], tmp_path: Path
) -> None:
    pty, bus = line
    bus.faults.clear()
    poller, sink = poller_for(pty, tmp_path, addresses=[1, 2], cells=16)
    poller.poll_once()
    assert bus.requests == {1: 3, 2: 3}  # live + strings + settings
    poller.poll_once()
    assert bus.requests == {1: 4, 2: 4}  # live only
    poller.transport.close()
    s2 = sink.states[1]
    assert s2.id == "p-2"
    assert len(s2.cell_voltages) == 16
    assert s2.charge_voltage_limit == pytest.approx(56.0)  # 16 × 3.50 V full-charge voltage
    assert (s2.charge_current_limit, s2.discharge_current_limit) == (100.0, 120.0)
    assert s2.discharge_voltage_limit == pytest.approx(44.8)
    info = sink.infos["p-1"]
    assert (info.firmware, info.model, info.protocol) == (
        "P13S120A-12290-2.05T",
        "P13S120A",
        "pace-modbus",
    )
    assert (info.address, info.cell_count, info.design_capacity) == (1, 16, 105.0)
    assert sink.infos["p-2"].serial == "Jun 23 2021,14:46:02"


def test_poller_availability_per_pack_and_typed_errors_counted(
    line: tuple[PtyLine, PaceBus], tmp_path: Path
) -> None:
    pty, _bus = line
    poller, sink = poller_for(pty, tmp_path)
    for _ in range(3):
        poller.poll_once()
    poller.shutdown()
    assert sink.available == {
        "p-1": [True, False],
        "p-2": [True, False],
        "p-3": [False],
        "p-4": [False],
        "p-5": [False],
    }
    stats = poller.stats.as_dict()
    # silent pack: 1 retry per poll until it is offline (after 2 polls), then a single try
    assert stats["timeouts"] == 2 + 2 + 1
    refused = stats["refused"]
    assert isinstance(refused, dict)
    assert refused["ExceptionReplyError:2"] == 3  # exceptions are never retried
    assert refused["CrcError"] == 2 + 2 + 1
    ids = {s.id for s in sink.states}
    assert ids == {"p-1", "p-2"}
    one = next(s for s in sink.states if s.id == "p-1")
    assert len(one.cell_voltages) == 13
    assert one.current == pytest.approx(-5.0 * 0.97, abs=0.01)
    assert one.power == pytest.approx(one.voltage * one.current, abs=0.05)  # type: ignore[operator]
    assert one.alarms == [] and one.charge_switch is True and one.discharge_switch is True


def test_poller_publishes_alarms_negative_temperatures_and_flags_implausible_values(
    tmp_path: Path,
) -> None:
    bus = build_bus(
        parse_pack_spec("1:AM2:50"),
        CurrentProfile(constant_a=1.0),
        seed=1,
        overrides={
            1: {
                "cell_voltage_13": 0.0,
                "cell_temperature_2": -12.5,
                "ambient_temperature": -40.5,
                "warning_flags": 1 << 10,
                "protection_flags": (1 << 15) | (1 << 6),
                "balance_flags": 0b101,
                "soh": None,
            }
        },
    )
    bus.packs[1].overrides["current"] = 250.0  # beyond max_current
    with PtyLine(bus, baud=115200, turnaround_s=0.001, framer=ModbusRtuFramer()) as pty:
        poller, sink = poller_for(pty, tmp_path, addresses=[1])
        poller.poll_once()
        poller.transport.close()
    (state,) = sink.states
    assert state.cell_voltages[12] == 0.0
    assert "cell_fault" in state.alarms and "short_circuit" in state.alarms
    assert set(state.warnings) == {"charge_undertemperature", "battery_full"}
    assert state.temperatures[1] == -12.5
    assert state.temperature_min == -12.5
    assert state.ambient_temperature is None  # below −40 °C: implausible
    assert state.current is None and state.power is None
    assert state.balancing_cells == [1, 3]
    assert state.raw_status["protection_flags"] == 0x8040
    assert poller.stats.implausible["current"] == 1
    assert poller.stats.implausible["ambient_temperature"] == 1
