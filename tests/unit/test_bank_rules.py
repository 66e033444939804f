"""Bank rules (bank_aggregator.rules): properties over arbitrary member sets, and scenarios."""

from __future__ import annotations

import math
from dataclasses import replace

import msgspec
import pytest
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
    taper_factor,
    weakest_link,
)
from bmslink import schema
from bmslink.alarms import BLOCKS_CHARGE, BLOCKS_DISCHARGE
from bmslink.schema import BankState, BatteryInfo, BatteryState

NOW = 1_700_000_000.0
EPS = 1e-9

# --- strategies ---------------------------------------------------------------------------------

maybe = st.one_of


@st.composite
def battery(draw: st.DrawFn, member_id: str) -> Member:
    """A member with any mix of reported fields, fresh or stale, online or not."""
    fresh = draw(st.booleans())
    age = draw(st.floats(0, 9.9)) if fresh else draw(st.floats(10.01, 10_000))
    cells = draw(st.sampled_from([0, 1, 15, 16]))
    lo, hi = sorted(draw(st.tuples(st.floats(2.8, 3.65), st.floats(2.8, 3.65))))
    cell_values = [lo] + [hi] * (cells - 1) if cells else []
    state = BatteryState(
        id=member_id,
        ts=NOW - age,
        voltage=draw(maybe(st.none(), st.floats(40, 58))),
        current=draw(maybe(st.none(), st.floats(-200, 200))),
        soc=draw(maybe(st.none(), st.floats(0, 100))),
        soh=draw(maybe(st.none(), st.floats(50, 100))),
        full_capacity=draw(maybe(st.none(), st.floats(0, 400))),
        design_capacity=draw(maybe(st.none(), st.floats(5, 400))),
        remaining_capacity=draw(maybe(st.none(), st.floats(0, 400))),
        cycles=draw(maybe(st.none(), st.integers(0, 9000))),
        cell_voltages=cell_values,
        cell_min=min(cell_values) if cell_values else None,
        cell_max=max(cell_values) if cell_values else None,
        cell_avg=sum(cell_values) / len(cell_values) if cell_values else None,
        temperature_min=draw(maybe(st.none(), st.floats(-20, 30))),
        temperature_max=draw(maybe(st.none(), st.floats(30, 60))),
        charge_enabled=draw(maybe(st.none(), st.booleans())),
        discharge_enabled=draw(maybe(st.none(), st.booleans())),
        charge_voltage_limit=draw(maybe(st.none(), st.floats(50, 58))),
        discharge_voltage_limit=draw(maybe(st.none(), st.floats(40, 48))),
        charge_current_limit=draw(maybe(st.none(), st.floats(0, 300))),
        discharge_current_limit=draw(maybe(st.none(), st.floats(0, 300))),
        alarms=draw(st.lists(st.sampled_from(["cell_overvoltage", "soc_low"]), unique=True)),
        energy_charged=draw(maybe(st.none(), st.floats(0, 1000))),
        energy_discharged=draw(maybe(st.none(), st.floats(0, 1000))),
    )
    info = draw(
        maybe(
            st.none(),
            st.builds(
                BatteryInfo,
                id=st.just(member_id),
                cell_count=maybe(st.none(), st.integers(1, 16)),
                design_capacity=maybe(st.none(), st.floats(5, 400)),
            ),
        )
    )
    return Member(
        state, received=NOW - age, online=draw(maybe(st.none(), st.booleans())), info=info
    )


@st.composite
def member_sets(draw: st.DrawFn, max_size: int = 8) -> dict[str, Member]:
    n = draw(st.integers(0, max_size))
    return {f"m{i}": draw(battery(f"m{i}")) for i in range(n)}


banks = st.builds(
    BankConfig,
    taper=maybe(st.none(), st.booleans()),
    max_voltage_spread=st.sampled_from([2.0, 1000.0]),
    max_charge_current=maybe(st.none(), st.floats(0, 1000)),
    max_discharge_current=maybe(st.none(), st.floats(0, 1000)),
    packs=st.just({"m1": PackConfig(capacity=100.0, charge_current_limit=20.0)}),
)


def counted(
    members: dict[str, Member], bank: BankConfig, compatible: bool = True
) -> list[Resolved]:
    """The counted members; ``compatible``: only those the limits are computed over."""
    found = [
        resolve(i, m, bank.packs.get(i), bank)
        for i, m in members.items()
        if counts(m, NOW, bank.stale_after)
    ]
    flagged = incompatible(found, bank) if compatible else set()
    return [m for m in found if m.id not in flagged]


def run(members: dict[str, Member], bank: BankConfig, **kw: object) -> BankState:
    return aggregate("bank", list(members), members, bank, NOW, **kw).state  # type: ignore[arg-type]


# --- properties ---------------------------------------------------------------------------------


def own_limit(m: Resolved, direction: str, bank: BankConfig) -> float:
    """A member's limit in a direction as the rules must see it: 0 with a blocking alarm."""
    blocking = BLOCKS_CHARGE if direction == "charge" else BLOCKS_DISCHARGE
    if any(code in blocking for code in m.state.alarms):
        return 0.0
    limit: float = m.ccl if direction == "charge" else m.dcl
    if any(code in blocking for code in m.state.warnings):
        limit *= bank.warning_derate
    return limit


def check_shares(state: BankState, resolved: list[Resolved], bank: BankConfig) -> None:
    """For each direction: every taker's capacity share of the bank limit ≤ its own limit, and
    one taker that disallows the direction (or blocks it by alarm) stops it."""
    schema.validate(state)
    for direction, allows, bank_limit, enabled in (
        ("charge", "allows_charge", state.charge_current_limit, state.charge_enabled),
        ("discharge", "allows_discharge", state.discharge_current_limit, state.discharge_enabled),
    ):
        assert bank_limit is not None and bank_limit >= 0
        assert enabled is (bank_limit > 0)
        takers = [m for m in resolved if getattr(m.state, f"{direction}_switch") is not False]
        total = math.fsum(m.capacity for m in takers)
        for m in takers:
            share = m.capacity / total
            limit = own_limit(m, direction, bank)
            assert share * bank_limit <= limit * (1 + EPS) + EPS, (direction, m.id)
        if not takers or any(not getattr(m, allows) for m in takers):
            assert bank_limit == 0 and not enabled


def check_voltage_limits_and_soc(
    state: BankState, resolved: list[Resolved], everyone: list[Resolved]
) -> None:
    """Bank CVL ≤ every member's, DVL ≥ every member's (of those that take part in the limits),
    SoC within every counted member's min..max."""
    for m in resolved:
        if m.cvl is not None:
            assert state.charge_voltage_limit is not None
            assert state.charge_voltage_limit <= m.cvl
        if m.dvl is not None:
            assert state.discharge_voltage_limit is not None
            assert state.discharge_voltage_limit >= m.dvl
    socs = [m.state.soc for m in everyone if m.state.soc is not None]
    if socs:
        assert state.soc is not None
        # the SoC hold (on for LFP) may report 99 % while every member says 100 %
        assert min(*socs, 99.0) - 0.01 <= state.soc <= max(socs) + 0.01
    else:
        assert state.soc is None


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(members=member_sets(), bank=banks)
def test_bank_invariants(members: dict[str, Member], bank: BankConfig) -> None:
    state = run(members, bank)
    resolved = counted(members, bank)
    check_shares(state, resolved, bank)
    check_voltage_limits_and_soc(state, resolved, counted(members, bank, compatible=False))
    if state.charge_enabled:
        assert state.charge_voltage_limit is not None and state.charge_voltage_limit > 0
    if state.discharge_enabled:
        assert state.discharge_voltage_limit is not None
    takers = [m for m in resolved if m.state.charge_switch is not False]
    plain = (
        takers
        and all(m.allows_charge and m.cvl is not None for m in takers)
        and not any(m.state.alarms or m.state.warnings for m in takers)
        and bank.taper is False
        and all(NOW - members[m.id].state.ts <= 3.0 for m in takers)  # none limits-stale
    )
    if plain:  # nothing but the weakest link, the margin and the cap: the exact value
        found = weakest_link([(m.id, m.capacity, m.ccl) for m in takers])
        assert found is not None
        margin = bank.current_share_margin if len(takers) >= 2 else 1.0
        cap = bank.max_charge_current
        best = min(found[0] * margin, math.inf if cap is None else cap, 10000.0)
        assert state.charge_current_limit == pytest.approx(best, abs=1.5e-3)


@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow])
@given(members=member_sets(max_size=8), bank=banks, stale=battery("zz"))
def test_a_stale_member_is_ignored(
    members: dict[str, Member], bank: BankConfig, stale: Member
) -> None:
    stale = replace(stale, state=msgspec.structs.replace(stale.state, ts=NOW - 60), received=NOW)
    with_stale = aggregate("bank", [*members, "zz"], {**members, "zz": stale}, bank, NOW).state
    without = aggregate("bank", [*members, "zz"], members, bank, NOW).state
    # energy counters are the exception: every member's last counter stays in the sums
    ignore = {"energy_charged": None, "energy_discharged": None}
    assert msgspec.structs.replace(with_stale, **ignore) == msgspec.structs.replace(
        without, **ignore
    )
    assert with_stale.degraded and "member_missing@zz" in with_stale.warnings
    alone = aggregate("bank", list(members), members, bank, NOW).state
    differ = {"members", "degraded", "warnings", "energy_charged", "energy_discharged"}
    for name in BankState.__struct_fields__:
        if name not in differ:
            assert getattr(alone, name) == getattr(with_stale, name), name
    assert "member_missing@zz" not in alone.warnings


@settings(max_examples=25, suppress_health_check=[HealthCheck.too_slow])
@given(members=member_sets(), bank=banks)
def test_no_counted_member_is_failsafe(members: dict[str, Member], bank: BankConfig) -> None:
    gone = {i: replace(m, online=False) for i, m in members.items()}
    state = run(gone, bank)
    assert state.failsafe and state.limits_source == "failsafe"
    assert (state.charge_current_limit, state.discharge_current_limit) == (0, 0)
    assert (state.charge_enabled, state.discharge_enabled) == (False, False)
    assert state.members_online == [] and "failsafe" in state.alarms
    assert state.degraded is bool(members)
    schema.validate(state)


@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow])
@given(
    members=member_sets(),
    bank=banks,
    ccl=maybe(st.none(), st.floats(0, 500)),
    dcl=maybe(st.none(), st.floats(0, 500)),
    cvl=maybe(st.none(), st.floats(40, 60)),
    ttl=st.floats(0.5, 3600),
)
def test_an_override_never_raises_a_limit_and_expires(
    members: dict[str, Member],
    bank: BankConfig,
    ccl: float | None,
    dcl: float | None,
    cvl: float | None,
    ttl: float,
) -> None:
    base = run(members, bank)
    lease = Override(ccl, dcl, cvl, expires=NOW + ttl)
    held = run(members, bank, override=lease)
    for name in ("charge_current_limit", "discharge_current_limit", "charge_voltage_limit"):
        before, after = getattr(base, name), getattr(held, name)
        if before is not None:
            assert after is not None and after <= before, name
    assert held.discharge_voltage_limit == base.discharge_voltage_limit
    assert held.override_expires == NOW + ttl
    if not held.failsafe and ccl is not None and ccl < (base.charge_current_limit or 0):
        assert held.charge_limit_source == "override" and held.limits_source == "override"
        assert held.charge_current_limit == pytest.approx(ccl, abs=1e-3)
    expired = aggregate(
        "bank", list(members), members, bank, NOW + ttl, override=lease
    ).state  # the lease has ended: as if there had been none
    plain = aggregate("bank", list(members), members, bank, NOW + ttl).state
    assert expired == plain and expired.override_expires is None


# --- examples and scenarios ---------------------------------------------------------------------


def pack(
    member_id: str,
    capacity: float = 50.0,
    ccl: float | None = 25.0,
    dcl: float | None = 25.0,
    soc: float = 50.0,
    **kw: object,
) -> Member:
    fields: dict[str, object] = {
        "id": member_id,
        "ts": NOW - 1,
        "voltage": 50.0,
        "current": 2.0,
        "soc": soc,
        "soh": 100.0,
        "full_capacity": capacity,
        "charge_current_limit": ccl,
        "discharge_current_limit": dcl,
        "charge_voltage_limit": 53.2,
        "discharge_voltage_limit": 44.5,
        "charge_enabled": True,
        "discharge_enabled": True,
        **kw,
    }
    return Member(BatteryState(**fields), received=NOW - 1, online=True)  # type: ignore[arg-type]


def test_weakest_link_for_unequal_packs() -> None:
    # 50 Ah @ 25 A and 100 Ah @ 100 A: the 50 Ah pack takes 1/3 and limits the bank to 75 A
    assert weakest_link([("a", 50, 25), ("b", 100, 100)]) == (75.0, "a")
    members = {"a": pack("a", 50, 25), "b": pack("b", 100, 100)}
    state = run(members, BankConfig())
    # × 0.9: packs in parallel do not split exactly by capacity
    assert (state.charge_current_limit, state.charge_limited_by) == (67.5, "a")
    assert state.soc == 50.0 and state.current == 4.0 and state.limits_source == "bms"


def test_soc_and_soh_are_capacity_weighted_not_a_plain_mean() -> None:
    members = {"a": pack("a", 50, soc=20.0), "b": pack("b", 150, soc=100.0, soh=80.0)}
    state = run(members, BankConfig())
    assert state.soc == 80.0  # (50·20 + 150·100) / 200, where a plain mean gives 60
    assert state.soh == 85.0


def test_one_pack_drops_and_returns() -> None:
    members = {"a": pack("a"), "b": pack("b"), "c": pack("c")}
    full = run(members, BankConfig())
    assert full.members_online == ["a", "b", "c"] and not full.degraded
    assert full.charge_current_limit == 67.5  # 3 × 25 A × 0.9
    members["b"] = replace(members["b"], online=False)
    dropped = run(members, BankConfig())
    assert dropped.members_online == ["a", "c"] and dropped.degraded
    assert dropped.warnings == ["member_missing@b"] and not dropped.failsafe
    assert dropped.charge_current_limit == 45.0 and dropped.current == 4.0
    members["b"] = replace(members["b"], online=True)
    assert run(members, BankConfig()) == full


def test_every_pack_drops() -> None:
    members = {"a": pack("a"), "b": pack("b")}
    stale = {i: replace(m, received=NOW - 30) for i, m in members.items()}
    state = run(stale, BankConfig())
    assert state.failsafe and state.warnings == ["member_missing@a", "member_missing@b"]
    assert state.voltage is None and state.soc is None


def test_a_pack_that_disallows_charging_stops_the_bank() -> None:
    members = {"a": pack("a", 50, 25), "b": pack("b", 50, 25, charge_enabled=False)}
    state = run(members, BankConfig())
    # b's relay may still be closed: it would take its share while asking for none
    assert not state.charge_enabled and state.charge_current_limit == 0.0
    assert state.charge_limited_by == "b" and state.charge_limit_reason == "charge_disabled@b"
    assert state.discharge_enabled and state.discharge_current_limit == 45.0


def test_a_pack_whose_switch_is_open_leaves_the_share_set() -> None:
    members = {
        "a": pack("a", 50, 25),
        "b": pack("b", 50, 25, charge_enabled=False, charge_switch=False),
    }
    state = run(members, BankConfig())
    # b's charge FET is open: it takes no charge current, a alone sets the limit (no margin)
    assert state.charge_enabled and state.charge_current_limit == 25.0
    assert state.charge_limited_by == "a" and state.discharge_current_limit == 45.0


def test_a_pack_with_discharge_blocked_is_left_out_of_soc() -> None:
    members = {"a": pack("a", soc=80.0), "b": pack("b", soc=2.0, discharge_enabled=False)}
    assert run(members, BankConfig()).soc == 80.0


def test_mixed_brands_with_missing_fields() -> None:
    # a Pylontech on RS485 (no limits, no enables), a Daly (limits, no capacity), a CAN pack
    pylon = Member(
        BatteryState(
            id="pylon",
            ts=NOW,
            voltage=49.9,
            current=-3.0,
            soc=60,
            full_capacity=74.0,
            cell_voltages=[3.33] * 15,
            cell_min=3.33,
            cell_max=3.33,
            cell_avg=3.33,
        ),
        received=NOW,
    )
    daly = Member(
        BatteryState(
            id="daly",
            ts=NOW,
            voltage=53.0,
            soc=80,
            charge_current_limit=100.0,
            discharge_current_limit=100.0,
            charge_enabled=True,
            cell_max=3.45,
            cell_min=3.2,
        ),
        received=NOW,
        online=True,
    )
    can = Member(BatteryState(id="can", ts=NOW, soc=50, charge_voltage_limit=53.5), received=NOW)
    bank = BankConfig(
        packs={"daly": PackConfig(capacity=280.0, cell_count=15), "can": PackConfig(capacity=100)}
    )
    state = run({"pylon": pylon, "daly": daly, "can": can}, bank)
    schema.validate(state)
    assert state.member_limit_sources == {"pylon": "default", "daly": "bms", "can": "default"}
    # pylon: 0.3 C of 74 Ah = 22.2 A with share 74/454 → 136.2 A, × 0.9 margin
    assert state.charge_current_limit == pytest.approx(22.2 * 454 / 74 * 0.9, abs=1e-3)
    assert state.charge_limited_by == "pylon" and state.charge_limit_source == "config"
    assert state.limits_source == "config"
    assert state.charge_voltage_limit == 52.5  # 15 LFP cells × 3.50 V default < 53.5 V
    # the CAN pack reports no DVL and no cells: unknown means stop
    assert not state.discharge_enabled and state.discharge_current_limit == 0
    assert state.discharge_limit_reason == "discharge_voltage_limit_unknown@can"
    assert state.current == -3.0 and state.voltage == pytest.approx(
        (74 * 49.9 + 280 * 53.0) / 354, abs=1e-3
    )
    assert (state.cell_min_member, state.cell_max_member) == ("daly", "daly")
    assert state.soc == pytest.approx((74 * 60 + 280 * 80 + 100 * 50) / 454, abs=0.01)


def test_bank_maximums_from_config() -> None:
    members = {"a": pack("a", ccl=100, dcl=100), "b": pack("b", ccl=100, dcl=100)}
    bank = BankConfig(max_charge_current=60, max_discharge_current=150, max_charge_voltage=52)
    state = run(members, bank)
    assert (state.charge_current_limit, state.charge_limit_source) == (60.0, "config")
    assert (state.discharge_current_limit, state.discharge_limit_source) == (150.0, "config")
    assert state.charge_voltage_limit == 52 and state.limits_source == "config"


def test_alarms_carry_the_member_id() -> None:
    members = {
        "a": pack("a", alarms=["cell_overvoltage"], warnings=["soc_low"]),
        "b": pack("b", alarms=["cell_overvoltage", "short_circuit"]),
    }
    state = run(members, BankConfig())
    assert state.alarms == ["cell_overvoltage@a", "cell_overvoltage@b", "short_circuit@b"]
    assert state.warnings == ["soc_low@a"]
    schema.validate(state)


def test_taper_by_highest_cell() -> None:
    assert taper_factor(3.40, 3.45, 3.55) == 1.0
    assert taper_factor(3.50, 3.45, 3.55) == pytest.approx(0.5)
    assert taper_factor(3.60, 3.45, 3.55) == 0.0
    members = {"a": pack("a", ccl=50, cell_max=3.50, cell_min=3.3), "b": pack("b", ccl=50)}
    off = run(members, BankConfig(taper=False))
    on = run(members, BankConfig())  # on by default for LFP members
    assert off.charge_current_limit == 90.0
    assert on.charge_current_limit == pytest.approx(45.0, abs=1e-3)
    assert on.charge_limit_source == "taper" and on.limits_source == "taper"
    assert on.discharge_current_limit == off.discharge_current_limit


def test_soc_hold_until_full() -> None:
    bank = BankConfig(soc_hold=True)
    charging = {"a": pack("a", soc=100.0, cell_max=3.40, cell_min=3.3)}
    first = aggregate("bank", ["a"], charging, bank, NOW)
    assert first.state.soc == 99.0 and first.state.soc_raw == 100.0 and not first.full
    top = {"a": pack("a", soc=100.0, cell_max=3.46, cell_min=3.3)}
    reached = aggregate("bank", ["a"], top, bank, NOW, full=first.full)
    assert reached.state.soc == 100.0 and reached.full
    # cells relax after the charge stops: still full while the BMS says 100 %
    relaxed = aggregate("bank", ["a"], charging, bank, NOW, full=reached.full)
    assert relaxed.state.soc == 100.0 and relaxed.full
    below = {"a": pack("a", soc=99.5)}
    left = aggregate("bank", ["a"], below, bank, NOW, full=relaxed.full)
    assert left.state.soc == 99.0 and not left.full
    assert aggregate("bank", ["a"], charging, BankConfig(soc_hold=False), NOW).state.soc == 100.0
    nmc = BankConfig(chemistry="nmc")  # the hold is on by default for LFP only
    assert aggregate("bank", ["a"], charging, nmc, NOW).state.soc == 100.0


def test_staleness_uses_the_older_of_ts_and_arrival() -> None:
    old = pack("a")
    retained = replace(old, state=msgspec.structs.replace(old.state, ts=NOW - 3600), received=NOW)
    assert not counts(retained, NOW, 10.0)
    assert counts(old, NOW, 10.0)
    assert not counts(replace(old, online=False), NOW, 10.0)
    assert counts(replace(old, online=None), NOW, 10.0)


def test_the_bank_never_includes_itself_and_ignores_unconfigured() -> None:
    members = {"a": pack("a"), "bank": pack("bank"), "x": pack("x", ccl=1)}
    result = aggregate("bank", ["a", "bank"], members, BankConfig(), NOW).state
    assert result.members == ["a"] and result.charge_current_limit == 25.0


def test_energy_sums_every_member_latest_counter() -> None:
    members = {
        "a": pack("a", energy_charged=1.5, energy_discharged=0.5),
        "b": replace(pack("b", energy_charged=2.0, energy_discharged=1.0), online=False),
    }
    state = run(members, BankConfig())
    assert (state.energy_charged, state.energy_discharged) == (3.5, 1.5)


def test_sums_are_clamped_to_the_schema_ranges() -> None:
    members = {f"p{i}": pack(f"p{i}", ccl=200, dcl=200, current=150.0) for i in range(100)}
    state = run(members, BankConfig())
    assert state.charge_current_limit == 10000.0 and state.current == 10000.0
    schema.validate(state)


def test_resolve_prefers_bms_then_config_then_default() -> None:
    m = pack("a", ccl=None, dcl=40.0)
    r = resolve("a", m, PackConfig(charge_current_limit=10.0, capacity=200.0), BankConfig())
    assert (r.ccl, r.ccl_source, r.dcl, r.dcl_source, r.capacity) == (
        10.0,
        "config",
        40.0,
        "bms",
        200,
    )
    assert r.limit_source == "config"
    d = resolve("a", pack("a", ccl=None, dcl=None), None, BankConfig(chemistry="nmc"))
    assert (d.ccl, d.dcl, d.limit_source) == (10.0, 25.0, "default")  # 0.2 C, 0.5 C of 50 Ah
