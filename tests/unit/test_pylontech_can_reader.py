"""can-reader: cycle assembly on a fake clock, the reader on a python-can ``virtual`` bus, and
``bmslink decode pylontech-can``. Reader rules: pylontech-can.md §5, §7.2.
"""

from __future__ import annotations

import argparse
import threading
import time
from collections.abc import Callable
from pathlib import Path

import can
import pytest

from battery_simulator.can_devices import CAPTURE_STACK, CAPTURE_US5000_V13
from bmslink.cli.decode import registry
from bmslink.derived import EnergyStore
from bmslink.protocols import pylontech_can as pc
from bmslink.schema import BatteryInfo, BatteryState
from can_reader.app import Reader
from can_reader.assembler import Assembler
from can_reader.config import ReaderConfig


def assembler(**cfg: object) -> Assembler:
    return Assembler("can1", ReaderConfig(channel="x", **cfg), "virtual:x", "can1")  # type: ignore[arg-type]


def feed_all(a: Assembler, frames: tuple[tuple[int, bytes], ...], at: float) -> None:
    for i, (can_id, data) in enumerate(frames):
        a.feed(can_id, data, False, at + i * 0.001)


def test_capture_cycle_becomes_a_state() -> None:
    a = assembler()
    feed_all(a, CAPTURE_STACK, 10.0)
    assert not a.due(10.1)
    assert a.due(10.3)  # 0.2 s of quiet after the burst
    state = a.take_state(10.3, 1e9)
    assert state is not None
    assert (state.voltage, state.current, state.soc, state.soh) == (52.91, -80.1, 80.0, 100.0)
    assert (state.charge_voltage_limit, state.discharge_voltage_limit) == (56.3, 46.9)
    assert (state.charge_current_limit, state.discharge_current_limit) == (922.5, 922.5)
    assert (state.charge_enabled, state.discharge_enabled) == (True, True)
    assert (state.cell_min, state.cell_max, state.cell_delta) == (3.288, 3.313, 0.025)
    assert (state.temperature_min, state.temperature_max) == (16.85, 24.85)
    assert state.alarms == [] and state.raw_status["module_count"] == 5
    assert a.info(10.3).manufacturer == "PYLON"
    assert not a.due(10.4)


def test_new_firmware_without_0x359_0x35c_derives_enables() -> None:
    a = assembler()
    feed_all(a, CAPTURE_US5000_V13, 0.0)
    state = a.take_state(0.5, 1e9)
    assert state is not None
    assert (state.soc, state.soh) == (84.0, 96.0)  # DLC 6 0x355
    assert (state.voltage, state.current, state.temperatures) == (49.87, -27.9, [36.3])
    assert (state.charge_enabled, state.discharge_enabled) == (True, True)  # CCL/DCL > 0
    assert state.raw_status["alarm_pairs"] == 0
    info = a.info(0.5)
    assert (info.firmware, info.design_capacity) == ("1.3", 572.0)


def test_repeated_id_completes_a_round_robin_cycle_and_frames_expire() -> None:
    a = assembler(invert_current=True)
    a.feed(0x356, bytes.fromhex("A6144EFCD2000000"), False, 0.0)
    a.feed(0x351, bytes.fromhex("1402B0044006C201"), False, 0.1)
    assert not a.due(0.15)
    a.feed(0x356, bytes.fromhex("A6144EFCD2000000"), False, 0.2)
    assert a.due(0.2)
    state = a.take_state(0.2, 1e9)
    assert state is not None and state.current == pytest.approx(94.6)  # inverted
    assert state.charge_current_limit == 120.0
    # 6 s later only a fresh 0x356 arrives: the 0x351 has expired (frame_expiry 5 s)
    a.feed(0x356, bytes.fromhex("A6144EFCD2000000"), False, 6.2)
    later = a.take_state(6.5, 1e9)
    assert later is not None and later.charge_current_limit is None
    assert later.charge_enabled is None


def test_online_follows_frames_and_bad_frames_are_typed() -> None:
    a = assembler(offline_after=3.0)
    assert not a.online(0.0)
    a.feed(0x356, bytes.fromhex("021300004A01"), False, 1.0)
    assert a.online(3.9) and not a.online(4.1)
    with pytest.raises(pc.FrameLengthError):
        a.feed(0x351, b"\x01\x02", False, 5.0)
    assert a.take_state(6.5, 1e9) is None  # 0x356 expired (5 s), nothing to publish
    # an inverter's heartbeat on a tapped bus is not a battery frame
    a.feed(0x305, bytes(8), False, 5.0)
    assert 0x305 not in a.frames


# --- the reader on a virtual bus ----------------------------------------------------------


class Sink:
    def __init__(self) -> None:
        self.states: list[BatteryState] = []
        self.avail: list[tuple[str, bool]] = []
        self.infos: list[BatteryInfo] = []

    def state(self, state: BatteryState) -> None:
        self.states.append(state)

    def availability(self, device_id: str, online: bool) -> None:
        self.avail.append((device_id, online))

    def info(self, info: BatteryInfo) -> None:
        self.infos.append(info)


def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


@pytest.mark.parametrize("mode", ["passive", "heartbeat"])
def test_reader_on_a_virtual_bus(tmp_path: Path, mode: str, request: pytest.FixtureRequest) -> None:
    channel = f"reader-{request.node.name}"
    cfg = ReaderConfig(
        interface="virtual",
        channel=channel,
        id="pack1",
        mode=mode,  # type: ignore[arg-type]
        settle=0.05,
        offline_after=0.4,
        heartbeat_period=0.1,
    )
    sink = Sink()
    stop = threading.Event()
    reader = Reader(cfg, "inst", sink, EnergyStore(str(tmp_path), "t", 60), stop)  # type: ignore[arg-type]
    thread = threading.Thread(target=reader.run, daemon=True)
    thread.start()
    battery = can.Bus(interface="virtual", channel=channel)
    try:
        for _ in range(3):
            for can_id, data in CAPTURE_STACK:
                battery.send(can.Message(arbitration_id=can_id, data=data, is_extended_id=False))
            time.sleep(0.1)
        battery.send(can.Message(arbitration_id=0x351, data=b"\x01", is_extended_id=False))
        wait_until(lambda: len(sink.states) >= 2)
        assert sink.states[0].id == "pack1" and sink.states[0].voltage == 52.91
        assert sink.states[0].power == pytest.approx(52.91 * -80.1, abs=0.01)
        assert sink.avail[0] == ("pack1", True)
        assert sink.infos[0].protocol == "pylontech-can"
        wait_until(lambda: reader.refused["FrameLengthError"] == 1)
        wait_until(lambda: sink.avail[-1] == ("pack1", False))  # silence: offline
        heard = []
        deadline = time.monotonic() + 0.5
        while time.monotonic() < deadline:
            msg = battery.recv(0.05)
            if msg is not None:
                heard.append(msg.arbitration_id)
        if mode == "heartbeat":
            assert reader.heartbeats_sent > 0 and pc.ID_HEARTBEAT in heard
        else:
            assert heard == [] and reader.heartbeats_sent == 0  # passive: never transmits
    finally:
        stop.set()
        thread.join(3)
        battery.shutdown()


def test_bad_channel_is_retried_not_fatal(tmp_path: Path) -> None:
    cfg = ReaderConfig(interface="slcan", channel=str(tmp_path / "missing"), reopen_max=0.1)
    sink = Sink()
    stop = threading.Event()
    reader = Reader(cfg, "inst", sink, EnergyStore(str(tmp_path), "t", 60), stop)  # type: ignore[arg-type]
    thread = threading.Thread(target=reader.run, daemon=True)
    thread.start()
    wait_until(lambda: reader.refused["open"] >= 2)
    stop.set()
    thread.join(3)
    assert not thread.is_alive()
    assert sink.avail == [("inst", False)]


# --- bmslink decode pylontech-can -------------------------------------------------------------


def test_decode_cli_every_frame_type() -> None:
    decoder = registry()["pylontech-can"]
    cases = {
        0x351: ("330209240924D501", "discharge_voltage_limit", 46.9),
        0x355: ("5000640000000000", "soc", 80),
        0x356: ("AB14DFFCCC000000", "current", -80.1),
        0x359: ("0200000005504E00", "alarms", ["cell_overvoltage"]),
        0x35A: ("AAAAAAAAAAAAAAAA", "alarms", []),
        0x35C: ("C000", "charge_enable", True),
        0x35E: ("5059544553", "name", "PYTES"),
        0x35F: ("01006E013200", "capacity", 50),
        0x372: ("0200010001000200", "offline", 2),
        0x373: ("D80CF10C22012A01", "cell_max", 3.313),
        0x374: ("3200000000000000", "text", "2"),
        0x378: ("400800002B070000", "charged", 211.2),
        0x379: ("6400", "capacity", 100),
        0x382: ("5052454D49554D00", "text", "PREMIUM"),
        0x305: ("0000000000000000", "keepalive", True),
        0x307: ("1234567856494300", "victron", True),
        0x35B: ("0000000000000000", "data", "0000000000000000"),
    }
    for can_id, (data, key, want) in cases.items():
        out = decoder.decode(data, argparse.Namespace(can_id=can_id))
        assert out[key] == want, (hex(can_id), out)
        assert out["id"] == f"0x{can_id:03X}"
    with pytest.raises(pc.FrameLengthError):
        decoder.decode("7A", argparse.Namespace(can_id=0x356))
    with pytest.raises(pc.PylontechCanError):
        decoder.decode("zz", argparse.Namespace(can_id=0x356))


# --- the simulator's slcan side -----------------------------------------------------------------


def test_slcan_lines_and_inverter_summary() -> None:
    from battery_simulator.can_devices import (
        CanBattery,
        CanInverter,
        ModelBattery,
        SlcanFramer,
        slcan_encode,
        slcan_parse,
    )

    assert slcan_encode(0x351, bytes.fromhex("330209240924D501")) == b"t3518330209240924D501\r"
    assert slcan_encode(0x305, bytes(8), extended=True) == b"T0000030580000000000000000\r"
    assert slcan_parse(b"t35C2C000\r") == (0x35C, False, b"\xc0\x00")
    assert slcan_parse(b"T0000030580000000000000000\r") == (0x305, True, bytes(8))
    for bad in (b"O\r", b"S6\r", b"t35C3C000\r", b"tXYZ0\r", b"\r"):
        assert slcan_parse(bad) is None
    framer = SlcanFramer()
    assert framer.feed(b"C\rS6\rO\rt30", 1.0) == [(b"C\r", 1.0), (b"S6\r", 1.0), (b"O\r", 1.0)]
    assert framer.feed(b"580000000000000000\r", 2.0) == [(b"t30580000000000000000\r", 2.0)]

    inverter = CanInverter()
    assert not inverter.opened.is_set() and inverter.summary() == "received 0 frames"
    inverter.respond(b"O\r")
    assert inverter.opened.is_set()
    inverter.respond(slcan_encode(0x351, bytes.fromhex("330209240924D501")))
    assert "CCL 922.5 A" in inverter.summary()
    assert inverter.frames(0.0) == [(0x305, bytes(8))]
    inverter.respond(b"C\r")
    assert not inverter.opened.is_set()

    clock = iter([0.0, 3600.0])
    model = ModelBattery(capacity=100, soc=50, current=-10, modules=1, clock=lambda: next(clock))
    battery = CanBattery(model)
    first = dict(battery.frames(0.0))
    second = dict(battery.frames(0.0))
    assert first[0x355][0] == 50 and second[0x355][0] == 40  # 10 A for 1 h of 100 Ah
    battery.silence.set()
    assert battery.frames(0.0) == []
