"""Bank safety rules (issue 13) end to end, one scenario per rule.

A real Mosquitto, the real bank-aggregator process (bank ``bank1``, every battery seen is a
member) and the real can-inverter-emulator process sending ``bank1`` to a simulated inverter on
slcan over TCP, which records every frame. The member BatteryStates are published by this
test's own MQTT client (:class:`Members`, every 0.2 s as a reader does); the frames are decoded
by the test with ``struct`` (tests/can_inverter.py). The rules are those of
services/bank-aggregator/src/bank_aggregator/rules.py (module docstring).

One stack serves every scenario; each scenario starts a new *phase*: every member is replaced
(the ones left out are cleared with an empty retained state) and the last member of the phase
carries a new temperature as its tag. The bank's temperature is the highest of its members',
and the emulator sends it in 0x356, so the first frame set with the tag is the first computed
from the whole phase (the members arrive in order, the tagged one last).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from bmslink import schema
from bmslink.schema import BankState, BatteryState
from tests.broker import Broker, Received, Recorder, recorder
from tests.can_inverter import Inverter, Sent, inverter_sim, output_section
from tests.processes import run_service, service, write_site

pytestmark = [pytest.mark.mqtt, pytest.mark.serial]

STALE_AFTER = 8.0
"""s; the bank's ``stale_after``: a silent member still counts this long."""
LIMITS_STALE_AFTER = 3.0
"""s; the default ``limits_stale_after`` for members publishing every 0.2 s."""
REPUBLISH = 0.2
"""s; how often :class:`Members` re-publishes every member's state."""
BASE_TEMPERATURE = 20.0
"""°C; every member's temperature but the tagged one's."""


def pack(capacity: float = 100.0, ccl: float = 50.0, dcl: float = 100.0, **changes: Any) -> Any:
    """A healthy 16S LFP member (fields of a BatteryState): ``capacity`` Ah, CCL/DCL (A),
    CVL 56.0 V, DVL 48.0 V, 53.0 V, highest cell 3.35 V (below the taper); ``changes`` win."""
    return {
        "voltage": 53.0,
        "current": 0.0,
        "soc": 60.0,
        "design_capacity": capacity,
        "charge_current_limit": ccl,
        "discharge_current_limit": dcl,
        "charge_voltage_limit": 56.0,
        "discharge_voltage_limit": 48.0,
        "charge_enabled": True,
        "discharge_enabled": True,
        "cell_min": 3.30,
        "cell_max": 3.35,
        **changes,
    }


class Members:
    """The test's own MQTT client: publishes member BatteryStates (retained, QoS 1) now and
    every :data:`REPUBLISH` s, as readers do."""

    def __init__(self, port: int) -> None:
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id="safety-bank-members")
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self.states: dict[str, dict[str, Any]] = {}
        self._retained: set[str] = set()  # ids whose retained state is on the broker
        self.tag = 250  # 0.1 °C
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def phase(self, **members: dict[str, Any]) -> float:
        """Make ``members`` (id → BatteryState fields) the bank, in that order: members not
        named (silenced ones too) are cleared, the last one carries the new tag as its
        temperature. Returns the tag (°C)."""
        with self._lock:
            self.tag += 1
            tag = self.tag / 10
            for gone in sorted(self._retained - set(members)):
                self._send(f"bms/{gone}/state", b"")
            self._retained = set(members)
            ids = list(members)
            last = ids[-1] if ids else None
            self.states = {
                m: {"temperature_max": tag if m == last else BASE_TEMPERATURE, **members[m]}
                for m in ids
            }
            for m in ids:
                self._publish(m)
        return tag

    def once(self, member_id: str, ts_ahead: float, **fields: Any) -> None:
        """Publish one state of ``member_id`` stamped ``ts_ahead`` s ahead of now (not kept)."""
        state = BatteryState(id=member_id, ts=time.time() + ts_ahead, **fields)
        with self._lock:
            self._send(f"bms/{member_id}/state", schema.encode(state))

    def silence(self, member_id: str) -> float:
        """Stop publishing ``member_id`` (its retained state stays until the next phase);
        returns when (monotonic s), after its last state was sent."""
        with self._lock:
            self.states.pop(member_id, None)
            return time.monotonic()

    def _send(self, topic: str, payload: bytes) -> None:
        self.client.publish(topic, payload, qos=1, retain=True).wait_for_publish(5)

    def _publish(self, member_id: str) -> None:  # call locked
        state = BatteryState(id=member_id, ts=time.time(), **self.states[member_id])
        self._send(f"bms/{member_id}/state", schema.encode(state))

    def _run(self) -> None:
        while not self._stop.wait(REPUBLISH):
            with self._lock:
                for member_id in list(self.states):
                    self._publish(member_id)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.client.disconnect()
        self.client.loop_stop()


@dataclass
class Stack:
    inverter: Inverter
    members: Members
    banks: Recorder

    def frames(self, tag: float, after: int, timeout: float = 20) -> Sent:
        """The first frame set from record line ``after`` on computed from phase ``tag``."""
        return self.inverter.wait(
            lambda s: math.isclose(s.temperature, tag, abs_tol=0.01),
            after,
            f"the frames of phase {tag} °C",
            timeout,
        )

    def bank(
        self, ok: Callable[[BankState], bool], after: int = 0, timeout: float = 20
    ) -> BankState:
        """The first ``bms/bank1/state`` from recorder index ``after`` on satisfying ``ok``."""

        def match(m: Received) -> bool:
            if m.topic != "bms/bank1/state" or not m.payload:
                return False
            return ok(schema.decode(schema.BANK_STATE_DECODER, m.payload))

        got = self.banks.wait_for(match, timeout, after)
        return schema.decode(schema.BANK_STATE_DECODER, got.payload)  # type: ignore[no-any-return]

    def tagged_bank(self, tag: float, after: int = 0) -> BankState:
        """The first bank state from ``after`` on computed from phase ``tag``."""
        return self.bank(lambda s: s.temperature_max == tag, after)


def frames_are_safe(sent: list[Sent]) -> None:
    """No frame set ever asks for current with a 0 A limit, or with an unknown (0 V) voltage
    limit, in either direction."""
    for s in sent:
        assert not (s.charge_bit and (s.ccl < 1.0 or s.cvl <= 0)), s
        assert not (s.discharge_bit and (s.dcl < 1.0 or s.dvl <= 0)), s


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Broker, simulated inverter, emulator and aggregator; reset to no members at the end."""
    tmp = tmp_path_factory.mktemp("safety-bank-e2e")
    broker = Broker(tmp)
    broker.start()
    record = tmp / "inverter.jsonl"
    try:
        with inverter_sim(record) as channel:
            site = write_site(
                tmp,
                broker.port,
                f"[banks.bank1]\nperiod = 0.5\nstale_after = {STALE_AFTER}\n",
                '[inverters.emu]\nbank = "bank1"\nstale_after = 3.0\n',
                output_section("emu", "inv1", channel),
            )
            members = Members(broker.port)
            try:
                with (
                    recorder(broker.port, "bms/bank1/state", "bmslink/#") as rec,
                    service("bank_aggregator", site, "bank1"),
                    service("can_inverter_emulator", site, "emu"),
                ):
                    for status in ("bank-aggregator/bank1", "can-inverter-emulator/emu"):
                        rec.wait_topic(f"bmslink/{status}/status", b"online", timeout=30)
                    inverter = Inverter(record)
                    inverter.wait(lambda _s: True, 0, "the first frame set", timeout=30)
                    yield Stack(inverter, members, rec)
                    members.phase()
            finally:
                members.close()
    finally:
        broker.stop()


# --- 1, 2: a member disallowing a direction; an open switch ----------------------------------


@pytest.mark.parametrize("direction", ["charge", "discharge"])
def test_one_member_disallowing_a_direction_stops_it_the_other_continues(
    stack: Stack, direction: str
) -> None:
    """``<direction>_enabled = false`` with the switch unknown: the bank stops that direction
    (0 A, bit clear); the other direction keeps the three members' weakest link × 0.9."""
    mark = stack.inverter.mark()
    tag = stack.members.phase(
        a=pack(ccl=30.0, dcl=60.0),
        b=pack(ccl=40.0, dcl=80.0),
        c=pack(**{f"{direction}_enabled": False}),
    )
    sent = stack.frames(tag, mark)
    if direction == "charge":
        assert (sent.ccl, sent.charge_bit) == (0.0, False)
        # DCL: a's 60 A for a 1/3 share → 180 A, × 0.9
        assert (sent.dcl, sent.discharge_bit) == (162.0, True)
    else:
        assert (sent.dcl, sent.discharge_bit) == (0.0, False)
        assert (sent.ccl, sent.charge_bit) == (81.0, True)  # 30 A × 3 × 0.9
    assert (sent.cvl, sent.dvl) == (56.0, 48.0)
    bank = stack.tagged_bank(tag)
    assert getattr(bank, f"{direction}_limit_reason") == f"{direction}_disabled@c"
    frames_are_safe(stack.inverter.sent(mark))


@pytest.mark.parametrize("direction", ["charge", "discharge"])
def test_an_open_switch_leaves_the_share_set(stack: Stack, direction: str) -> None:
    """The same member with its switch known open takes no current: the limit is the others'
    weakest link (a: 30 A charge / 60 A discharge for a 1/2 share → 60 / 120 A, × 0.9), bit set."""
    mark = stack.inverter.mark()
    tag = stack.members.phase(
        a=pack(ccl=30.0, dcl=60.0),
        b=pack(ccl=40.0, dcl=80.0),
        c=pack(**{f"{direction}_enabled": False, f"{direction}_switch": False}),
    )
    sent = stack.frames(tag, mark)
    assert (sent.ccl, sent.charge_bit) == ((54.0 if direction == "charge" else 81.0), True)
    assert (sent.dcl, sent.discharge_bit) == ((108.0 if direction == "discharge" else 162.0), True)
    assert getattr(stack.tagged_bank(tag), f"{direction}_limited_by") == "a"

    # the only member left with its switch closed: no margin (it alone carries the current)
    mark = stack.inverter.mark()
    tag = stack.members.phase(
        a=pack(ccl=30.0, dcl=60.0),
        c=pack(**{f"{direction}_enabled": False, f"{direction}_switch": False}),
    )
    sent = stack.frames(tag, mark)
    assert (sent.ccl if direction == "charge" else sent.dcl) == (
        30.0 if direction == "charge" else 60.0
    )
    frames_are_safe(stack.inverter.sent(mark))


# --- 3: blocking alarms and warnings ---------------------------------------------------------


def test_a_blocking_alarm_stops_the_direction_a_warning_derates(stack: Stack) -> None:
    mark = stack.inverter.mark()
    tag = stack.members.phase(
        a=pack(ccl=40.0, dcl=80.0), b=pack(ccl=40.0, dcl=80.0, alarms=["cell_overvoltage"])
    )
    sent = stack.frames(tag, mark)
    assert (sent.ccl, sent.charge_bit) == (0.0, False)
    assert (sent.dcl, sent.discharge_bit) == (144.0, True)  # 80 A × 2 × 0.9: unaffected
    bank = stack.tagged_bank(tag)
    assert bank.alarms == ["cell_overvoltage@b"]
    assert bank.charge_limit_reason == "cell_overvoltage@b"

    # as a warning: b's 40 A × 0.5 = 20 A for a 1/2 share → 40 A, × 0.9
    mark = stack.inverter.mark()
    tag = stack.members.phase(
        a=pack(ccl=40.0, dcl=80.0), b=pack(ccl=40.0, dcl=80.0, warnings=["cell_overvoltage"])
    )
    sent = stack.frames(tag, mark)
    assert (sent.ccl, sent.charge_bit) == (36.0, True)
    assert (sent.dcl, sent.discharge_bit) == (144.0, True)
    assert stack.tagged_bank(tag).charge_limit_reason == "cell_overvoltage@b"
    frames_are_safe(stack.inverter.sent(mark))


# --- 4: unknowns stop -------------------------------------------------------------------------


def test_unknown_voltage_limits_stop(stack: Stack) -> None:
    """A member with no CVL/DVL, no cell count and no config: both directions stop, alone or
    next to a member that knows its limits, and CVL/DVL 0 never goes out with its bit set."""
    unknown = pack(charge_voltage_limit=None, discharge_voltage_limit=None)
    mark = stack.inverter.mark()
    tag = stack.members.phase(u=unknown)
    sent = stack.frames(tag, mark)
    assert (sent.ccl, sent.charge_bit, sent.dcl, sent.discharge_bit) == (0.0, False, 0.0, False)
    assert (sent.cvl, sent.dvl) == (0.0, 0.0)  # unknown: sent as 0, never with a bit set

    tag = stack.members.phase(a=pack(), u=unknown)
    sent = stack.frames(tag, mark)
    assert (sent.ccl, sent.charge_bit, sent.dcl, sent.discharge_bit) == (0.0, False, 0.0, False)
    bank = stack.tagged_bank(tag)
    assert bank.charge_limit_reason == "charge_voltage_limit_unknown@u"
    assert bank.discharge_limit_reason == "discharge_voltage_limit_unknown@u"
    frames_are_safe(stack.inverter.sent(mark))


# --- 5, 6: taper and margin -------------------------------------------------------------------


def test_taper_halves_the_ccl_midway(stack: Stack) -> None:
    """LFP (the default), highest cell 3.50 V, midway from 3.45 V to 3.55 V: CCL × 0.5."""
    mark = stack.inverter.mark()
    tag = stack.members.phase(a=pack(ccl=50.1))
    assert stack.frames(tag, mark).ccl == 50.1
    tag = stack.members.phase(a=pack(ccl=50.1, cell_max=3.50))
    sent = stack.frames(tag, mark)
    assert (sent.ccl, sent.charge_bit) == (25.0, True)  # 25.05 floored to 0.1 A
    assert sent.dcl == 100.0  # discharge is not tapered
    assert stack.tagged_bank(tag).charge_limit_source == "taper"


def test_two_equal_members_share_with_a_margin(stack: Stack) -> None:
    """25 A + 25 A (equal capacities): 50 A × 0.9 = 45.0 A on the wire, not 50."""
    mark = stack.inverter.mark()
    tag = stack.members.phase(a=pack(ccl=25.0), b=pack(ccl=25.0))
    sent = stack.frames(tag, mark)
    assert (sent.ccl, sent.charge_bit) == (45.0, True)


# --- 7: a silent member ----------------------------------------------------------------------


def test_a_silent_member_is_excluded_from_the_limits_first(stack: Stack) -> None:
    """Small weak ``a`` (50 Ah, 10/20 A) and big strong ``b`` (200 Ah, 100/200 A): with both,
    a's share sets 50 A × 0.9 = 45 A charge (90 A discharge); without b, a alone takes 10 A
    (20 A). b goes silent: within limits_stale_after (3 s) the lower case goes out, while b
    still counts (modules online 2) until stale_after (8 s)."""
    mark = stack.inverter.mark()
    tag = stack.members.phase(
        b=pack(capacity=200.0, ccl=100.0, dcl=200.0), a=pack(capacity=50.0, ccl=10.0, dcl=20.0)
    )
    sent = stack.frames(tag, mark)
    assert (sent.ccl, sent.dcl, sent.modules) == (45.0, 90.0, 2)

    mark, bank_mark = stack.inverter.mark(), stack.banks.mark()
    silent = stack.members.silence("b")
    lower = stack.inverter.wait(lambda s: s.ccl < 45.0, mark, "the limits without b")
    seen = time.monotonic() - silent
    assert (lower.ccl, lower.charge_bit, lower.dcl, lower.discharge_bit) == (10.0, True, 20.0, True)
    assert lower.modules == 2  # b still counts
    assert seen < LIMITS_STALE_AFTER + 4.0, f"limits without b only after {seen:.1f} s"
    before = stack.inverter.sent(mark)
    # until then the limits with b: it was not dropped at its first missed state
    assert {(s.ccl, s.dcl) for s in before[: before.index(lower)]} == {(45.0, 90.0)}

    gone = stack.inverter.wait(lambda s: s.modules == 1, mark, "b no longer counted")
    assert time.monotonic() - silent > STALE_AFTER - 0.5
    assert (gone.ccl, gone.dcl) == (10.0, 20.0)
    after = stack.inverter.sent(mark)
    # from the first lower set on, never the 45 A of "b still there"
    assert all(s.ccl == 10.0 for s in after[after.index(lower) :])
    bank = stack.bank(lambda s: s.members_online == ["a"], bank_mark)
    assert bank.warnings == ["member_missing@b"] and bank.degraded


# --- 8: a state from the future --------------------------------------------------------------


def test_a_future_stamped_member_state_is_refused(stack: Stack) -> None:
    mark = stack.inverter.mark()
    tag = stack.members.phase(a=pack(ccl=30.0), b=pack(ccl=30.0))
    assert stack.frames(tag, mark).ccl == 54.0
    mark = stack.inverter.mark()
    future = tag + 5.0  # a tag no phase uses
    # b's honest states pause, so a future state, if stored, would stay b's latest (and b
    # would no longer count: a alone, 30 A, one module)
    stack.members.silence("b")
    for _ in range(3):
        # 15 s ahead (future_tolerance 5 s), with an alarm and a tag: none may reach the wire
        stack.members.once(
            "b", 15.0, **pack(ccl=1000.0, alarms=["cell_overvoltage"], temperature_max=future)
        )
    sets = len(stack.inverter.cycles(mark))
    stack.inverter.wait(
        lambda _s: len(stack.inverter.cycles(mark)) >= sets + 5, mark, "five more frame sets"
    )
    assert all(
        (s.ccl, s.temperature, s.modules) == (54.0, tag, 2) for s in stack.inverter.sent(mark)
    )
    published = time.monotonic()
    honest = stack.members.phase(a=pack(ccl=30.0), b=pack(ccl=20.0))
    sent = stack.frames(honest, mark, timeout=10)
    assert time.monotonic() - published < 10.0  # at once, not after the refused ts
    assert (sent.ccl, sent.charge_bit) == (36.0, True)  # b's 20 A × 2 × 0.9
    assert all(not math.isclose(s.temperature, future) for s in stack.inverter.sent(mark))


# --- 9: members that cannot share a bus bar --------------------------------------------------


def test_15s_and_16s_members_exit_2_naming_both(tmp_path: Path) -> None:
    site = write_site(
        tmp_path,
        1,
        '[banks.mixed]\nmembers = ["p15", "p16"]\n',
        '[banks.mixed.packs.p15]\ncell_count = 15\nchemistry = "lfp"\n',
        '[banks.mixed.packs.p16]\ncell_count = 16\nchemistry = "lfp"\n',
    )
    result = run_service("bank_aggregator", site, "mixed")
    assert result.returncode == 2, result.stderr
    assert "banks.mixed.packs.p15" in result.stderr
    assert "banks.mixed.packs.p16" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_member_far_from_the_others_voltage_is_left_out(stack: Stack) -> None:
    """c at 55.5 V next to a and b at 52.0/52.3 V (more than max_voltage_spread 2 V from both):
    member_incompatible@c, and the limits are a and b's (30 A × 2 × 0.9 = 54 A), not c's 5 A
    share (which would give 13.5 A)."""
    mark = stack.inverter.mark()
    tag = stack.members.phase(
        a=pack(ccl=30.0, voltage=52.0),
        b=pack(ccl=30.0, voltage=52.3),
        c=pack(ccl=5.0, voltage=55.5),
    )
    sent = stack.frames(tag, mark)
    assert (sent.ccl, sent.charge_bit) == (54.0, True)
    bank = stack.tagged_bank(tag)
    assert "member_incompatible@c" in bank.alarms
    assert bank.members_online == ["a", "b", "c"]
    assert bank.charge_limited_by == "a"


# --- 10: 0 A never with the bit set ----------------------------------------------------------


def test_a_member_at_0_a_stops_the_bank_with_the_bit_clear(stack: Stack) -> None:
    mark = stack.inverter.mark()
    tag = stack.members.phase(a=pack(ccl=40.0), b=pack(ccl=0.0))
    sent = stack.frames(tag, mark)
    assert (sent.ccl, sent.charge_bit) == (0.0, False)
    assert (sent.dcl, sent.discharge_bit) == (180.0, True)
    bank = stack.tagged_bank(tag)
    assert (bank.charge_current_limit, bank.charge_enabled) == (0.0, False)
    frames_are_safe(stack.inverter.sent(mark))
