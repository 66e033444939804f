"""End to end over slcan across processes (no root: a pty, or slcan over TCP) and a real Mosquitto:

- simulated CAN battery (``bmslink-sim-can battery``) → can-reader → broker → subscriber;
- bank state published to the broker → can-inverter-emulator → simulated inverter
  (``bmslink-sim-can inverter``), which sends 0x305 and records the frames it receives.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from bmslink import schema
from bmslink.protocols import pylontech_can as pc
from tests.broker import Broker, recorder
from tests.processes import CAN_SIM, Simulator, line_args, service, simulator, write_site

pytestmark = [pytest.mark.mqtt, pytest.mark.serial]


def can_sim(*args: str) -> AbstractContextManager[Simulator]:
    """Run ``bmslink-sim-can ARGS`` until the end of the block; SIGTERM must exit 0."""
    return simulator(CAN_SIM, *args, check=True)


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


@pytest.mark.parametrize("link", ["pty", "tcp"])
def test_can_battery_reaches_the_broker(broker: Broker, tmp_path: Path, link: str) -> None:
    with can_sim("battery", *line_args(link, tmp_path / "ttyCAN"), "--period", "0.3") as sim:
        channel = sim.url
        site = write_site(
            tmp_path,
            broker.port,
            f'[can_reader.can1]\ninterface = "slcan"\nchannel = "{channel}"\n'
            "settle = 0.1\noffline_after = 1.5\n",
        )
        with (
            recorder(broker.port, "bms/#", "bmslink/#") as rec,
            service("can_reader", site, "can1") as reader,
        ):
            msg = rec.wait_topic("bms/can1/state", timeout=15)
            rec.wait_topic("bms/can1/availability", b"online", timeout=5)
            info = schema.decode(schema.INFO_DECODER, rec.wait_topic("bms/can1/info").payload)
            rec.wait_topic("bmslink/can-reader/can1/status", b"online", timeout=5)
            state = schema.decode(schema.STATE_DECODER, msg.payload)
            # the real 5-module stack frames (bms_gateway candump_stack.dump)
            assert isinstance(state, schema.BatteryState)
            assert (state.voltage, state.current, state.soc, state.soh) == (52.91, -80.1, 80, 100)
            assert state.charge_current_limit == 922.5
            assert state.discharge_voltage_limit == 46.9
            assert (state.cell_min, state.cell_max) == (3.288, 3.313)
            assert state.power == pytest.approx(-4238.09, abs=0.01)
            assert (info.manufacturer, info.protocol) == ("PYLON", "pylontech-can")
            assert reader.poll() is None


def test_battery_that_goes_quiet_becomes_offline(broker: Broker, tmp_path: Path) -> None:
    pty = tmp_path / "ttyCAN"
    site = write_site(
        tmp_path,
        broker.port,
        f'[can_reader.can1]\ninterface = "slcan"\nchannel = "{pty}"\n'
        "settle = 0.1\noffline_after = 1.0\nreopen_max = 0.5\n",
    )
    with recorder(broker.port, "bms/#") as rec, service("can_reader", site, "can1") as reader:
        with can_sim(
            "battery", "--pty-link", str(pty), "--period", "0.2", "--source", "us5000-v13"
        ):
            msg = rec.wait_topic("bms/can1/state", timeout=15)
            state = schema.decode(schema.STATE_DECODER, msg.payload)
            assert (state.soc, state.charge_enabled, state.voltage) == (84, True, 49.87)
            mark = rec.mark()
        rec.wait_topic("bms/can1/availability", b"offline", timeout=10, after=mark)
        mark = rec.mark()
        with can_sim("battery", "--pty-link", str(pty), "--period", "0.2"):
            rec.wait_topic("bms/can1/availability", b"online", timeout=15, after=mark)
        assert reader.poll() is None, "the reader must survive the adapter disappearing"


def read_record(path: Path) -> list[dict[str, object]]:
    if not path.exists():
        return []
    lines = path.read_text().splitlines()
    return [json.loads(line) for line in lines if line.endswith("}")]


def latest(records: list[dict[str, object]], can_id: int) -> bytes | None:
    for rec in reversed(records):
        if rec["id"] == can_id:
            return bytes.fromhex(str(rec["data"]))
    return None


def test_bank_state_reaches_the_inverter(broker: Broker, tmp_path: Path) -> None:
    pty = tmp_path / "ttyINV"
    record = tmp_path / "inverter.jsonl"
    site = write_site(
        tmp_path,
        broker.port,
        '[inverters.emu]\nbank = "bank1"\nstale_after = 3.0\n'
        f'[inverters.emu.outputs.inv1]\ninterface = "slcan"\nchannel = "{pty}"\n'
        "period = 0.2\nheartbeat_timeout = 1.0\ncharge_current_max = 80.0\n",
    )
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id="bank-publisher")
    client.connect("127.0.0.1", broker.port)
    client.loop_start()

    def publish_bank(**changes: object) -> None:
        values: dict[str, object] = {
            "id": "bank1",
            "ts": time.time(),
            "voltage": 52.0,
            "current": 12.5,
            "soc": 64.0,
            "soh": 98.0,
            "charge_enabled": True,
            "discharge_enabled": True,
            "charge_voltage_limit": 55.2,
            "discharge_voltage_limit": 46.0,
            "charge_current_limit": 100.0,
            "discharge_current_limit": 150.0,
            "members": ["a", "b"],
            "members_online": ["a", "b"],
            **changes,
        }
        state = schema.BankState(**values)  # type: ignore[arg-type]
        client.publish(
            "bms/bank1/state", schema.encode(state), qos=1, retain=True
        ).wait_for_publish(5)

    link = "bmslink/can-inverter-emulator/emu/inv1/link"
    mode = "bmslink/can-inverter-emulator/emu/inv1/mode"
    try:
        with (
            can_sim("inverter", "--pty-link", str(pty), "--period", "0.2", "--record", str(record)),
            recorder(broker.port, "bmslink/#") as rec,
            service("can_inverter_emulator", site, "emu"),
        ):
            rec.wait_topic("bmslink/can-inverter-emulator/emu/status", b"online", timeout=15)
            rec.wait_topic(link, b"up", timeout=10)  # the simulated inverter's 0x305 arrives
            publish_bank()

            def limits(records: list[dict[str, object]]) -> pc.Limits | None:
                data = latest(records, 0x351)
                frame = pc.decode_frame(0x351, data) if data else None
                return frame if isinstance(frame, pc.Limits) else None

            def wait_records(
                ok: Callable[[list[dict[str, object]]], bool], what: str
            ) -> list[dict[str, object]]:
                """The first snapshot of the record file that satisfies ``ok``."""
                found: list[list[dict[str, object]]] = []

                def check() -> bool:
                    records = read_record(record)
                    if ok(records):
                        found.append(records)
                        return True
                    return False

                wait_until(check, 10, what)
                return found[0]

            def soc_soh(records: list[dict[str, object]]) -> tuple[int, int | None] | None:
                frame = pc.decode_frame(0x355, latest(records, 0x355) or b"\0\0")
                return (frame.soc, frame.soh) if isinstance(frame, pc.SocSoh) else None

            # one cycle's frames arrive one by one: wait for a snapshot holding all of them
            records = wait_records(
                lambda r: (
                    limits(r) == pc.Limits(55.2, 80.0, 150.0, 46.0)  # CCL capped at 80 A
                    and soc_soh(r) == (64, 98)
                ),
                "the bank's limits and SoC at the inverter",
            )
            ids = {r["id"] for r in records}
            assert {0x351, 0x355, 0x356, 0x359, 0x35C, 0x35E} <= ids
            rec.wait_topic(mode, b"normal", timeout=5)

            # the bank goes silent: after stale_after the fail-safe set, never silence
            mark = rec.mark()
            rec.wait_topic(mode, b"failsafe", timeout=10, after=mark)
            records = wait_records(
                lambda r: latest(r, 0x351) == bytes(8) and (latest(r, 0x35C) or b"?")[:1] == b"\0",
                "zero limits, charge and discharge disabled",
            )
            protection = pc.decode_frame(0x359, latest(records, 0x359) or b"")
            assert isinstance(protection, pc.ProtectionAlarms)
            assert "internal_communication_error" in protection.warnings

            # discharge disabled by the bank: DCL 0, CCL still capped
            mark = rec.mark()
            publish_bank(discharge_enabled=False)
            rec.wait_topic(mode, b"normal", timeout=5, after=mark)
            wait_records(
                lambda r: limits(r) == pc.Limits(55.2, 80.0, 0.0, 46.0), "DCL 0, CCL still capped"
            )
    finally:
        client.loop_stop()
        client.disconnect()
