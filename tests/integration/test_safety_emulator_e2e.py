"""Inverter-side safety rules (issue 13) end to end, one scenario per rule.

A real Mosquitto, the real can-inverter-emulator process, an independent MQTT client publishing
bank states and a simulated inverter on slcan over TCP (``bmslink-sim-can inverter``) that
records every frame it receives. The frames are decoded by the test with ``struct``
(tests/can_inverter.py, from the byte layouts of pylontech-can.md), not with the codec under
test.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from bmslink import schema
from tests.bank_states import bank_state
from tests.broker import Broker, recorder
from tests.can_inverter import Inverter, Sent, inverter_sim, is_failsafe, output_section
from tests.processes import run_service, service, write_site

pytestmark = [pytest.mark.mqtt, pytest.mark.serial]

STALE_AFTER = 2.0
STATUS = "bmslink/can-inverter-emulator"


class BankPublisher:
    """An independent MQTT client publishing ``bms/bank1/state``."""

    def __init__(self, port: int) -> None:
        self.tag = 0
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id="safety-bank-publisher")
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def publish(self, **changes: object) -> int:
        """Publish a bank state (defaults overridden by ``changes``); returns its tag, a SoC
        (1..99 %) no recent state had, to find its frame set."""
        self.tag = self.tag % 99 + 1
        ts = changes.pop("ts", time.time())
        assert isinstance(ts, float)
        state = bank_state(ts, **{"soc": float(self.tag), **changes})
        # retained: a state published while the emulator (re)subscribes still reaches it
        payload = schema.encode(state)
        self.client.publish("bms/bank1/state", payload, qos=1, retain=True).wait_for_publish(5)
        return self.tag

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@dataclass
class Stack:
    inverter: Inverter
    bank: BankPublisher


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Broker, one simulated inverter and one emulator (one output, the whole bank)."""
    tmp = tmp_path_factory.mktemp("safety-e2e")
    broker = Broker(tmp)
    broker.start()
    record = tmp / "inverter.jsonl"
    try:
        with inverter_sim(record) as channel:
            site = write_site(
                tmp,
                broker.port,
                f'[inverters.emu]\nbank = "bank1"\nstale_after = {STALE_AFTER}\n',
                output_section("emu", "inv1", channel),
            )
            publisher = BankPublisher(broker.port)
            try:
                with (
                    recorder(broker.port, "bmslink/#") as rec,
                    service("can_inverter_emulator", site, "emu"),
                ):
                    rec.wait_topic(f"{STATUS}/emu/status", b"online", timeout=30)
                    inverter = Inverter(record)
                    inverter.wait(is_failsafe, 0, "the first frame set", timeout=30)
                    yield Stack(inverter, publisher)
            finally:
                publisher.close()
    finally:
        broker.stop()


def test_limits_are_rounded_toward_safe_on_the_wire(stack: Stack) -> None:
    """CVL/CCL/DCL floored, DVL ceiled to 0.1 (never a wider window than the bank's)."""
    mark = stack.inverter.mark()
    tag = stack.bank.publish(
        charge_voltage_limit=56.29,
        charge_current_limit=99.99,
        discharge_current_limit=150.06,
        discharge_voltage_limit=46.01,
    )
    sent = stack.inverter.tagged(tag, mark)
    assert (sent.cvl, sent.ccl, sent.dcl, sent.dvl) == (56.2, 99.9, 150.0, 46.1)
    assert (sent.charge_bit, sent.discharge_bit) == (True, True)


def test_a_limit_below_1_a_clears_the_request_bit(stack: Stack) -> None:
    """0.9 A (or 0 A) would keep some inverters charging with the bit set: bit clear, 0 A."""
    mark = stack.inverter.mark()
    tag = stack.bank.publish(charge_current_limit=0.9, discharge_current_limit=0.0)
    sent = stack.inverter.tagged(tag, mark)
    assert (sent.ccl, sent.charge_bit) == (0.0, False)
    assert (sent.dcl, sent.discharge_bit) == (0.0, False)
    for cycle in stack.inverter.cycles(mark):  # no frame set ever had 0 A with its bit set
        s = Sent.of(cycle)
        assert not (s.charge_bit and s.ccl < 1.0) and not (s.discharge_bit and s.dcl < 1.0)


@pytest.mark.parametrize(
    ("changes", "stopped"),
    [
        ({"charge_voltage_limit": None}, "charge"),  # unknown CVL
        ({"charge_voltage_limit": 0.0}, "charge"),  # CVL 0
        ({"charge_enabled": None}, "charge"),  # the bank did not say charging is allowed
        ({"discharge_voltage_limit": None}, "discharge"),
        ({"discharge_enabled": False}, "discharge"),
    ],
)
def test_unknown_means_stop(stack: Stack, changes: dict[str, object], stopped: str) -> None:
    mark = stack.inverter.mark()
    sent = stack.inverter.tagged(stack.bank.publish(**changes), mark)
    if stopped == "charge":
        assert (sent.charge_bit, sent.ccl) == (False, 0.0)
        assert (sent.discharge_bit, sent.dcl) == (True, 150.0)
    else:
        assert (sent.discharge_bit, sent.dcl) == (False, 0.0)
        assert (sent.charge_bit, sent.ccl) == (True, 100.0)


def test_a_future_stamped_state_is_refused_and_never_blocks(stack: Stack) -> None:
    """An hour ahead: refused. The real state after it reaches the wire (it would be locked
    out for an hour if the future one counted)."""
    mark = stack.inverter.mark()
    future = stack.bank.publish(ts=time.time() + 3600, charge_current_limit=300.0)
    sent = stack.inverter.tagged(stack.bank.publish(charge_current_limit=42.0), mark)
    assert (sent.ccl, sent.charge_bit) == (42.0, True)
    assert all(Sent.of(c).soc != future for c in stack.inverter.cycles(mark))


def test_a_stale_bank_gets_the_failsafe_set_never_silence(stack: Stack) -> None:
    mark = stack.inverter.mark()
    assert stack.inverter.tagged(stack.bank.publish(charge_current_limit=77.0), mark).ccl == 77.0
    stack.inverter.wait(is_failsafe, mark, f"the fail-safe set after stale_after {STALE_AFTER} s")
    mark = stack.inverter.mark()
    stack.inverter.wait(  # still sent every period while stale: never silence
        lambda _s: len(stack.inverter.cycles(mark)) >= 5,
        mark,
        "five more frame sets",
    )
    assert all(is_failsafe(Sent.of(c)) for c in stack.inverter.cycles(mark))


def test_a_failsafe_bank_gets_the_failsafe_set(stack: Stack) -> None:
    """Kept fresh (re-published faster than stale_after), so staleness cannot explain it."""
    mark = stack.inverter.mark()
    assert stack.inverter.tagged(stack.bank.publish(charge_current_limit=66.0), mark).ccl == 66.0
    mark = stack.inverter.mark()
    tags = set()
    for _ in range(5):
        seen = len(stack.inverter.cycles(mark))
        tags.add(stack.bank.publish(failsafe=True, limits_source="failsafe"))
        stack.inverter.wait(
            lambda _s, seen=seen: len(stack.inverter.cycles(mark)) >= seen + 2,  # type: ignore[misc]
            mark,
            "two more frame sets",
        )
    sent = [Sent.of(c) for c in stack.inverter.cycles(mark)]
    assert all(s.soc not in tags for s in sent), "a fail-safe bank's values never go out"
    first = next(i for i, s in enumerate(sent) if is_failsafe(s))
    assert all(is_failsafe(s) for s in sent[first:])
    assert all(s.ccl == 66.0 for s in sent[:first])  # before it: the last normal state


# --- outputs of one bank over the site file -------------------------------------------------


def test_outputs_of_one_bank_share_its_limits_across_instances(
    broker: Broker, tmp_path: Path
) -> None:
    """Instance ``a`` (inverter 1, no scale) and ``b`` (inverter 2, 0.3) both feed bank1:
    inverter 1 gets the 0.7 that is left; together they never exceed the bank."""
    with ExitStack() as stack:
        channels = [stack.enter_context(inverter_sim(tmp_path / f"inv{n}.jsonl")) for n in (1, 2)]
        publisher = BankPublisher(broker.port)
        stack.callback(publisher.close)
        site = write_site(
            tmp_path,
            broker.port,
            '[inverters.a]\nbank = "bank1"\n',
            output_section("a", "one", channels[0]),
            '[inverters.b]\nbank = "bank1"\n',
            output_section("b", "two", channels[1], current_scale=0.3),
        )
        inverters = [Inverter(tmp_path / f"inv{n}.jsonl") for n in (1, 2)]
        with (
            recorder(broker.port, "bmslink/#") as rec,
            service("can_inverter_emulator", site, "a"),
            service("can_inverter_emulator", site, "b"),
        ):
            for name in "ab":
                rec.wait_topic(f"{STATUS}/{name}/status", b"online", timeout=30)
            tag = publisher.publish(charge_current_limit=100.0, discharge_current_limit=33.3)
            one = inverters[0].tagged(tag, 0)
            two = inverters[1].tagged(tag, 0)
        assert (one.ccl, one.dcl) == (70.0, 23.3)  # 0.7 × 33.3 = 23.31, floored
        assert (two.ccl, two.dcl) == (30.0, 9.9)  # 0.3 × 33.3 = 9.99, floored
        assert one.ccl + two.ccl <= 100.0 and one.dcl + two.dcl <= 33.3


def test_shares_above_the_bank_exit_2_naming_the_keys(tmp_path: Path) -> None:
    site = write_site(
        tmp_path,
        1,
        '[inverters.a]\nbank = "bank1"\n',
        output_section("a", "one", "socket://127.0.0.1:9", current_scale=0.6),
        '[inverters.b]\nbank = "bank1"\n',
        output_section("b", "two", "socket://127.0.0.1:9", current_scale=0.5),
    )
    result = run_service("can_inverter_emulator", site, "a")
    assert result.returncode == 2, result.stderr
    assert "`inverters.a.outputs.one.current_scale`" in result.stderr
    assert "`inverters.b.outputs.two.current_scale`" in result.stderr
    assert "Traceback" not in result.stderr
