"""Bank-side safety rules (issue 13) as hypothesis properties over arbitrary members.

Members draw any mix of capacities, limits, allow flags, switch states, alarms, warnings, ages
and timestamps; the properties are the issue's (a)–(d), (g), (h), checked on the bank state the
inverter emulator would send (rules: docs/bank-rules.md, the module docstring of
``bank_aggregator.rules``).
"""

from __future__ import annotations

import math
from dataclasses import replace

import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bank_aggregator.config import BankConfig, PackConfig
from bank_aggregator.rules import (
    Member,
    Override,
    Resolved,
    aggregate,
    counts,
    incompatible,
    resolve,
)
from bmslink import schema
from bmslink.alarms import BLOCKS_CHARGE, BLOCKS_DISCHARGE
from bmslink.schema import BankState, BatteryState

NOW = 1_700_000_000.0
EPS = 1e-9
CODES = ["cell_overvoltage", "cell_undervoltage", "charge_overtemperature", "soc_low", "other"]
maybe = st.one_of


@st.composite
def battery(draw: st.DrawFn, member_id: str) -> Member:
    """A member of a 16S LFP bank with any limits, flags, switches, alarms, age and ts."""
    age = draw(st.floats(0, 12))
    ahead = draw(st.sampled_from([0.0, 0.0, 0.0, 4.0, 15.0]))  # some stamped in the future
    cells = draw(st.sampled_from([0, 16]))
    cell = draw(st.floats(3.0, 3.6))
    state = BatteryState(
        id=member_id,
        ts=NOW - age + ahead,
        voltage=draw(maybe(st.none(), st.floats(51, 52.5))),
        soc=draw(maybe(st.none(), st.floats(0, 100))),
        full_capacity=draw(maybe(st.none(), st.floats(0, 400))),
        design_capacity=draw(maybe(st.none(), st.floats(5, 400))),
        cell_voltages=[cell] * cells,
        cell_min=cell if cells else None,
        cell_max=cell if cells else None,
        charge_enabled=draw(maybe(st.none(), st.booleans())),
        discharge_enabled=draw(maybe(st.none(), st.booleans())),
        charge_switch=draw(maybe(st.none(), st.booleans())),
        discharge_switch=draw(maybe(st.none(), st.booleans())),
        charge_voltage_limit=draw(maybe(st.none(), st.floats(54, 57))),
        discharge_voltage_limit=draw(maybe(st.none(), st.floats(44, 48))),
        charge_current_limit=draw(maybe(st.none(), st.floats(0, 300))),
        discharge_current_limit=draw(maybe(st.none(), st.floats(0, 300))),
        alarms=draw(st.lists(st.sampled_from(CODES), unique=True, max_size=2)),
        warnings=draw(st.lists(st.sampled_from(CODES), unique=True, max_size=2)),
    )
    interval = draw(maybe(st.none(), st.floats(0.2, 5)))
    return Member(
        state, received=NOW - age, online=draw(maybe(st.none(), st.booleans())), interval=interval
    )


@st.composite
def member_sets(draw: st.DrawFn, max_size: int = 6) -> dict[str, Member]:
    n = draw(st.integers(0, max_size))
    return {f"m{i}": draw(battery(f"m{i}")) for i in range(n)}


banks = st.builds(
    BankConfig,
    taper=maybe(st.none(), st.booleans()),
    current_share_margin=st.sampled_from([0.9, 1.0, 0.5]),
    warning_derate=st.sampled_from([0.5, 0.0, 1.0]),
    limits_stale_after=maybe(st.none(), st.floats(0.5, 10)),
    max_charge_current=maybe(st.none(), st.floats(0, 1000)),
    max_discharge_current=maybe(st.none(), st.floats(0, 1000)),
    packs=st.just({"m1": PackConfig(capacity=100.0, charge_current_limit=20.0)}),
)


def takers(
    members: dict[str, Member], bank: BankConfig, direction: str, *, fresh_only: bool = False
) -> list[Resolved]:
    """Counted, compatible members whose switch for ``direction`` is not known open."""
    found = [
        resolve(i, m, bank.packs.get(i), bank)
        for i, m in members.items()
        if counts(m, NOW, bank.stale_after, None, bank.future_tolerance)
    ]
    flagged = incompatible(found, bank)
    return [
        m
        for m in found
        if m.id not in flagged and getattr(m.state, f"{direction}_switch") is not False
    ]


def own_limit(m: Resolved, direction: str, bank: BankConfig) -> float:
    blocking = BLOCKS_CHARGE if direction == "charge" else BLOCKS_DISCHARGE
    if any(code in blocking for code in m.state.alarms):
        return 0.0
    limit: float = m.ccl if direction == "charge" else m.dcl
    if any(code in blocking for code in m.state.warnings):
        limit *= bank.warning_derate
    return limit


def run(members: dict[str, Member], bank: BankConfig, **kw: object) -> BankState:
    return aggregate("bank", list(members), members, bank, NOW, **kw).state  # type: ignore[arg-type]


DIRECTIONS = (
    ("charge", "allows_charge", "charge_current_limit", "charge_enabled"),
    ("discharge", "allows_discharge", "discharge_current_limit", "discharge_enabled"),
)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(members=member_sets(), bank=banks)
def test_no_member_gets_more_than_its_own_limit(
    members: dict[str, Member], bank: BankConfig
) -> None:
    """(a) a taker's capacity share of the sent limit never exceeds its own limit (alarm 0,
    warning derated); the margin can only lower it."""
    state = run(members, bank)
    schema.validate(state)
    for direction, _allows, limit_field, enabled_field in DIRECTIONS:
        sent = getattr(state, limit_field)
        assert getattr(state, enabled_field) is (sent > 0)  # never 0 A enabled
        group = takers(members, bank, direction)
        total = math.fsum(m.capacity for m in group)
        for m in group:
            share = m.capacity / total
            assert share * sent <= own_limit(m, direction, bank) * (1 + EPS) + EPS, (
                direction,
                m.id,
            )


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(members=member_sets(), bank=banks)
def test_voltage_limits_and_unknowns(members: dict[str, Member], bank: BankConfig) -> None:
    """(b) CVL ≤ every taker's CVL; charging is never allowed with an unknown CVL (nor
    discharging with an unknown DVL)."""
    state = run(members, bank)
    if state.charge_enabled:
        assert state.charge_voltage_limit is not None and state.charge_voltage_limit > 0
        for m in takers(members, bank, "charge"):
            assert m.cvl is not None and state.charge_voltage_limit <= m.cvl
    if state.discharge_enabled:
        assert state.discharge_voltage_limit is not None
        for m in takers(members, bank, "discharge"):
            assert m.dvl is not None and state.discharge_voltage_limit >= m.dvl


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(members=member_sets(), bank=banks)
def test_one_member_saying_stop_stops_the_direction(
    members: dict[str, Member], bank: BankConfig
) -> None:
    """(c) a taker disallowing a direction, (d) or raising an alarm that blocks it: 0 A and
    disabled in that direction."""
    state = run(members, bank)
    for direction, allows, limit_field, enabled_field in DIRECTIONS:
        blocking = BLOCKS_CHARGE if direction == "charge" else BLOCKS_DISCHARGE
        group = takers(members, bank, direction)
        says_stop = any(not getattr(m, allows) for m in group)
        alarmed = any(set(m.state.alarms) & blocking for m in group)
        if not group or says_stop or alarmed:
            assert getattr(state, limit_field) == 0.0, direction
            assert getattr(state, enabled_field) is False, direction


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(
    members=member_sets(),
    bank=banks,
    ccl=maybe(st.none(), st.floats(0, 500)),
    dcl=maybe(st.none(), st.floats(0, 500)),
    cvl=maybe(st.none(), st.floats(40, 60)),
    ttl=st.floats(0.5, 3600),
)
def test_overrides_never_raise_and_expire(
    members: dict[str, Member],
    bank: BankConfig,
    ccl: float | None,
    dcl: float | None,
    cvl: float | None,
    ttl: float,
) -> None:
    """(g) an override only lowers (and never enables what the rules stopped), and expires."""
    base = run(members, bank)
    held = run(members, bank, override=Override(ccl, dcl, cvl, expires=NOW + ttl))
    for name in ("charge_current_limit", "discharge_current_limit"):
        assert getattr(held, name) <= getattr(base, name), name
    if base.charge_voltage_limit is not None:
        assert held.charge_voltage_limit is not None
        assert held.charge_voltage_limit <= base.charge_voltage_limit
    assert held.charge_enabled <= base.charge_enabled
    assert held.discharge_enabled <= base.discharge_enabled
    lease = Override(ccl, dcl, cvl, expires=NOW)
    assert run(members, bank, override=lease) == base  # expired at NOW


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(members=member_sets(max_size=4), bank=banks, extra=battery("zz"), ahead=st.floats(5.01, 1e6))
def test_future_states_never_count(
    members: dict[str, Member], bank: BankConfig, extra: Member, ahead: float
) -> None:
    """(h) a state stamped further than ``future_tolerance`` ahead never counts: the bank is
    as if it had not arrived (the member is missing)."""
    future = replace(extra, state=msgspec.structs.replace(extra.state, ts=NOW + ahead))
    ids = [*members, "zz"]
    with_future = aggregate("bank", ids, {**members, "zz": future}, bank, NOW).state
    without = aggregate("bank", ids, members, bank, NOW).state
    ignore = {"energy_charged": None, "energy_discharged": None}
    assert msgspec.structs.replace(with_future, **ignore) == msgspec.structs.replace(
        without, **ignore
    )
    assert "zz" not in with_future.members_online


def _fresh(member: Member) -> Member:
    return replace(member, received=NOW, state=msgspec.structs.replace(member.state, ts=NOW))


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(members=member_sets(max_size=5), bank=banks, silent=battery("zz"))
def test_a_silent_member_gives_the_lower_of_both_cases(
    members: dict[str, Member], bank: BankConfig, silent: Member
) -> None:
    """A member older than its ``limits_stale_after`` but still counted may be disconnected or
    not: the sent limits are at most what either case allows."""
    bank = msgspec.structs.replace(bank, limits_stale_after=1.0)
    others = {i: _fresh(m) for i, m in members.items()}
    old = 5.0  # counted (stale_after 10 s) but silent for limits
    silent = replace(
        silent,
        online=True,
        state=msgspec.structs.replace(silent.state, ts=NOW - old),
        received=NOW - old,
    )
    got = run({**others, "zz": silent}, bank)
    assert "zz" in got.members_online
    there = run({**others, "zz": _fresh(silent)}, bank)
    gone = aggregate("bank", [*others, "zz"], others, bank, NOW).state
    for direction in ("charge", "discharge"):
        name = f"{direction}_current_limit"
        assert getattr(got, name) <= getattr(there, name) + EPS, name
        # "disconnected" with no other member taking that direction leaves no battery to push
        # current into: nothing to compare with
        nobody = (getattr(gone, f"{direction}_limit_reason") or "").startswith("switch_open")
        if gone.members_online and not nobody:
            assert getattr(got, name) <= getattr(gone, name) + EPS, name
