"""bleak's real BlueZ backend end to end, against python-dbusmock's bluez5 on a private D-Bus.

The simulated Daly boards (:mod:`battery_simulator.daly_ble`) answer through the mocked BlueZ: a
D2 board (service fff0) and an A5 board (service ff00, all 16 cell frames in one notification).
The reader's poller (real :class:`~daly_ble_reader.transport.BleLink`) scans, connects one device
at a time, detects each protocol, reads full states, and survives split notifications, a
disconnect from the device side and a silent (connected but mute) link. ``bmslink scan
daly-ble`` lists both with RSSI and protocol.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from battery_simulator.daly import A5Framer, A5Responder, DalyPack, ModbusFramer, ModbusResponder
from battery_simulator.daly_ble import BleBoard
from bmslink.derived import EnergyStore
from bmslink.schema import BatteryInfo, BatteryState, SetResult
from daly_ble_reader.config import DalyConfig, DeviceConfig
from daly_ble_reader.poller import DeviceStore, Poller
from tests.bluez_mock import PeripheralThread, PrivateBlueZ, bluez_with

pytestmark = pytest.mark.timeout(90)

D2_MAC = "AA:BB:CC:00:D2:01"
A5_MAC = "AA:BB:CC:00:A5:01"


@dataclass
class Sink:
    """Records what the poller publishes (thread-safe enough for polling from the test)."""

    states: list[BatteryState] = field(default_factory=list)
    infos: list[BatteryInfo] = field(default_factory=list)
    online: dict[str, list[bool]] = field(default_factory=dict)
    results: list[tuple[str, SetResult]] = field(default_factory=list)

    def state(self, state: BatteryState) -> None:
        self.states.append(state)

    def availability(self, device_id: str, online: bool) -> None:
        self.online.setdefault(device_id, []).append(online)

    def info(self, info: BatteryInfo) -> None:
        self.infos.append(info)

    def result(self, device_id: str, result: SetResult) -> None:
        self.results.append((device_id, result))


def wait(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


@dataclass
class Rig:
    bus: PrivateBlueZ
    peripheral: PeripheralThread
    d2: BleBoard
    a5: BleBoard


@pytest.fixture
def rig(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Rig]:
    d2 = BleBoard(
        D2_MAC,
        "DL-SIMD2000001",
        ModbusResponder(DalyPack(current=-12.5, cells=16, sensors=2)),
        ModbusFramer({0xD2, 0x81}),
    )
    a5 = BleBoard(
        A5_MAC,
        "A5-SIM-BOARD",
        A5Responder({1: DalyPack(current=5.0, cells=8, sensors=1, seed=2)}, all_frames=True),
        A5Framer(),
        variant="ff00",
        manufacturer_data=bytes.fromhex("0150181201a3b34a4842"),
    )
    with bluez_with(tmp_path, [d2, a5]) as (bus, peripheral):
        monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", bus.address)
        yield Rig(bus, peripheral, d2, a5)


class Running:
    """The poller running on its own loop in a thread."""

    def __init__(self, poller: Poller) -> None:
        self.poller = poller
        self.loop = asyncio.new_event_loop()
        self.stop_event: asyncio.Event | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.error: BaseException | None = None

    def _run(self) -> None:
        async def main() -> None:
            self.stop_event = asyncio.Event()
            await self.poller.run(self.stop_event)

        try:
            self.loop.run_until_complete(main())
        except BaseException as exc:  # surfaced by stop()
            self.error = exc

    def __enter__(self) -> Running:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        wait(lambda: self.stop_event is not None, 5, "poller start")
        assert self.stop_event is not None
        self.loop.call_soon_threadsafe(self.stop_event.set)
        self.thread.join(20)
        assert not self.thread.is_alive()
        if self.error is not None:
            raise self.error


def make_poller(tmp_path: Path, sink: Sink, **options: object) -> Poller:
    cfg = DalyConfig(
        transport="ble",
        devices=[
            DeviceConfig(id="d2", address=D2_MAC),
            DeviceConfig(id="a5", name="A5-SIM-BOARD"),
        ],
        poll_interval=0.2,
        retries=1,
        offline_after=2,
        connect_timeout=5.0,
        reconnect_max=1.0,
        **options,  # type: ignore[arg-type]
    )
    state_dir = tmp_path / "state"
    return Poller(
        cfg,
        sink,
        EnergyStore(state_dir, "daly-test", 60.0),
        "test",
        DeviceStore(state_dir, "daly-test"),
    )


def _states(sink: Sink, device_id: str) -> list[BatteryState]:
    return [s for s in sink.states if s.id == device_id]


def test_scan_connect_detect_read_and_survive_faults(rig: Rig, tmp_path: Path) -> None:
    sink = Sink()
    poller = make_poller(tmp_path, sink, stale_after=1.0, timeout=0.6)
    with Running(poller):
        wait(lambda: _states(sink, "d2") and _states(sink, "a5"), 40, "both states")
        d2_state = _states(sink, "d2")[0]
        a5_state = _states(sink, "a5")[0]
        assert len(d2_state.cell_voltages) == 16 and d2_state.current == pytest.approx(-12.5)
        assert d2_state.temperatures == [24.0, 25.0] and d2_state.charge_switch is True
        assert d2_state.mosfet_temperature is None and d2_state.soc == pytest.approx(80, abs=0.2)
        assert len(a5_state.cell_voltages) == 8 and a5_state.current == pytest.approx(5.0)
        assert a5_state.temperatures == [24.0] and a5_state.balancing_cells == [1]
        protocols = {i.id: (i.protocol, i.transport) for i in sink.infos}
        assert protocols["d2"] == ("daly-d2", f"ble://{D2_MAC}")
        assert protocols["a5"] == ("daly-a5", f"ble://{A5_MAC}")
        assert rig.a5.notifications >= 1 and rig.d2.writes[0] == bytes.fromhex("d2030000003ed7b9")

        # split notifications (20 bytes each) and garbage before the reply
        faults = rig.d2.responder.faults
        faults.split = 20
        faults.garbage = b"\x00\xd2"
        seen = len(_states(sink, "d2"))
        wait(lambda: len(_states(sink, "d2")) >= seen + 2, 20, "states over split notifications")
        assert _states(sink, "d2")[-1].cell_voltages == pytest.approx(
            d2_state.cell_voltages, abs=0.01
        )
        faults.split = 0
        faults.garbage = b""

        # the device drops the connection: the reader reconnects and goes on
        reconnects = poller.stats.reconnects
        rig.peripheral.run(rig.peripheral.peripheral.disconnect(rig.d2))
        seen = len(_states(sink, "d2"))
        wait(lambda: len(_states(sink, "d2")) >= seen + 2, 30, "states after a disconnect")
        assert poller.stats.reconnects > reconnects

        # connected but silent: offline, the stale link is torn down, then back online
        faults.silent = True
        wait(lambda: sink.online.get("d2", [])[-1:] == [False], 30, "d2 offline while silent")
        wait(
            lambda: poller.stats.stale_links >= 1 or poller.stats.reconnects > reconnects + 1,
            30,
            "stale link torn down",
        )
        faults.silent = False
        wait(lambda: sink.online["d2"][-1:] == [True], 30, "d2 back online")
    remembered = DeviceStore(tmp_path / "state", "daly-test").data
    assert remembered["d2"]["protocol"] == "d2" and remembered["d2"]["write_response"] is False
    assert remembered["a5"] == {"protocol": "a5", "host": 0x80, "write_response": False}
    assert sink.online["a5"][-1] is False  # shutdown reports offline


def test_write_with_response_fallback_is_remembered(rig: Rig, tmp_path: Path) -> None:
    rig.d2.responder.faults.require_write_response = True
    sink = Sink()
    poller = make_poller(tmp_path, sink, timeout=0.5)
    poller.cfg.devices.pop()  # the D2 board only
    poller.devices.pop("a5")
    with Running(poller):
        wait(lambda: bool(_states(sink, "d2")), 40, "a state with write-with-response")
    assert DeviceStore(tmp_path / "state", "daly-test").data["d2"]["write_response"] is True


def test_scan_lists_daly_devices_with_rssi_and_protocol(
    rig: Rig, capsys: pytest.CaptureFixture[str]
) -> None:
    from bmslink.cli import main

    status = main(["scan", "daly-ble", "--timeout", "2"])
    out = capsys.readouterr().out
    assert status == 0
    lines = [line for line in out.splitlines() if "address" in line]
    by_mac = {mac: next(line for line in lines if mac in line) for mac in (D2_MAC, A5_MAC)}
    assert 'protocol = "d2"' in by_mac[D2_MAC] and "RSSI -6" in by_mac[D2_MAC]
    assert 'protocol = "a5"' in by_mac[A5_MAC]  # matched by its JHB manufacturer data
