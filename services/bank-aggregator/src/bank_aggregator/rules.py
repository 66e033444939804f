"""The bank maths: pure functions from member states to one :class:`~bmslink.schema.BankState`.

No I/O and no clock: the caller passes ``now`` (Unix s) and everything it has received. The rules
are ../shared/DESIGN.md "Bank rules" and ../shared/protocols/pylontech-can.md §8.1 and §9:

- a member **counts** when it is configured, not ``offline`` (an unknown availability counts) and
  its state is fresh: ``now − min(ts, received) ≤ stale_after`` (the older of the reading's own
  time and its arrival, so a retained state from yesterday never counts; clocks must be synced);
- voltage: capacity-weighted mean; current, power: sums; SoC/SoH: capacity-weighted (SoC leaves
  out members whose discharge is blocked, unless that leaves none — BatteryAggregator #120);
  capacities: sums; cycles: max; temperatures and cells: min/max with the member of the extreme;
- CVL: min over counted members; DVL: max; both capped/lowered by config and override;
- CCL (DCL): the weakest link over the counted members that allow charging (discharging),
  ``min_i(limit_i / share_i)`` with ``share_i = cap_i / Σcap`` over those members — so no member's
  capacity share of the bank current exceeds its own limit — then the configured bank maximum,
  the optional taper (CCL only) and the leased override, each of which can only lower it;
- charging (discharging) is enabled while at least one counted member allows it (``strict_enable``:
  while every counted member does); a disabled direction has limit 0;
- alarms/warnings: union as ``code@member``; ``member_missing@<id>`` for each configured member
  that does not count; ``degraded`` while one is missing;
- no counted member → ``failsafe``: CCL = DCL = 0, charge and discharge disabled, alarm
  ``failsafe``.

Members that report no current limit get one from the config (:class:`PackConfig`) or from a
conservative per-chemistry C-rate (:data:`CHEMISTRY_DEFAULTS`); ``member_limit_sources`` says
which, and a bank limit set by such a member has source ``config``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from bank_aggregator.config import CHEMISTRY_DEFAULTS, BankConfig, PackConfig
from bmslink.schema import BankState, BatteryInfo, BatteryState, LimitsSource, MemberLimitSource

CURRENT_MAX = 10000.0
"""A; the schema's range of currents and current limits (sums are clamped to it)."""
POWER_MAX = 1e7
"""W; the schema's range of power."""
FULL_SOC = 100.0 - 1e-6
"""%; a raw SoC at or above this is 100 %."""

_SOURCE_RANK: dict[str, int] = {"bms": 0, "config": 1, "taper": 2, "override": 3, "failsafe": 4}
_MEMBER_RANK: dict[str, int] = {"bms": 0, "config": 1, "default": 2}


@dataclass(frozen=True, slots=True)
class Member:
    """What the aggregator holds of one battery.

    ``received``: Unix s when its latest state arrived; ``online``: its availability (None when
    it never said); ``info``: its latest ``bms/<id>/info``, if any.
    """

    state: BatteryState
    received: float
    online: bool | None = None
    info: BatteryInfo | None = None


@dataclass(frozen=True, slots=True)
class Override:
    """An accepted ``LimitsOverride`` lease: limits (A, A, V; None = not overridden) and its end,
    ``expires`` (Unix s)."""

    charge_current_limit: float | None
    discharge_current_limit: float | None
    charge_voltage_limit: float | None
    expires: float

    def active(self, now: float) -> bool:
        """Whether the lease still holds at ``now`` (Unix s)."""
        return now < self.expires


@dataclass(frozen=True, slots=True)
class Resolved:
    """A counted member with every value the rules need, gaps filled from config or defaults.

    ``capacity`` (Ah, > 0) is the member's weight and ``design_capacity`` (Ah) its nominal
    capacity if config or BMS gives one; ``ccl``/``dcl`` (A) and ``cvl``/``dvl`` (V,
    None if unknown) its limits with ``ccl_source``/``dcl_source`` telling where they came from.
    """

    id: str
    state: BatteryState
    capacity: float
    ccl: float
    ccl_source: MemberLimitSource
    dcl: float
    dcl_source: MemberLimitSource
    cvl: float | None
    dvl: float | None
    cell_count: int | None
    design_capacity: float | None
    allows_charge: bool
    allows_discharge: bool

    @property
    def limit_source(self) -> MemberLimitSource:
        """The less direct of the two current-limit sources (``default`` > ``config`` > ``bms``)."""
        return max(self.ccl_source, self.dcl_source, key=_MEMBER_RANK.__getitem__)


@dataclass(frozen=True, slots=True)
class Result:
    """The bank state, and whether the bank is (latched) full for the SoC hold."""

    state: BankState
    full: bool


def age(member: Member, now: float) -> float:
    """Age of a member's state in s: ``now`` minus the older of its ``ts`` and its arrival."""
    return now - min(member.state.ts, member.received)


def counts(member: Member, now: float, stale_after: float) -> bool:
    """Whether ``member`` counts at ``now``: not ``offline`` and no older than ``stale_after`` s."""
    return member.online is not False and age(member, now) <= stale_after


MIN_CAPACITY = 0.1
"""Ah; a reported capacity below this is treated as unknown (a BMS saying 0 Ah)."""


def _positive(*values: float | None) -> float | None:
    for v in values:
        if v is not None and v >= MIN_CAPACITY:
            return v
    return None


def resolve(member_id: str, member: Member, pack: PackConfig | None, bank: BankConfig) -> Resolved:
    """Fill a member's capacity and limits: the BMS's value, else ``pack`` config, else defaults.

    Capacity (Ah): config, else the BMS's design capacity (state, then info), else its full
    capacity, else ``bank.default_capacity``. Current limits (A): BMS, config, else the chemistry's
    C-rate × capacity. Voltage limits (V): BMS, config, else per-cell default × cell count (None
    when the cell count is unknown too).
    """
    s = member.state
    info = member.info
    pack = pack or PackConfig()
    defaults = CHEMISTRY_DEFAULTS[pack.chemistry or bank.chemistry]
    capacity = (
        _positive(
            pack.capacity,
            s.design_capacity,
            info.design_capacity if info else None,
            s.full_capacity,
        )
        or bank.default_capacity
    )
    cell_count = len(s.cell_voltages) or (info.cell_count if info else None) or pack.cell_count

    def current(
        bms: float | None, configured: float | None, c_rate: float
    ) -> tuple[float, MemberLimitSource]:
        if bms is not None:
            return bms, "bms"
        if configured is not None:
            return configured, "config"
        return c_rate * capacity, "default"

    def voltage(bms: float | None, configured: float | None, per_cell: float) -> float | None:
        if bms is not None:
            return bms
        if configured is not None:
            return configured
        return round(per_cell * cell_count, 3) if cell_count else None

    ccl, ccl_source = current(s.charge_current_limit, pack.charge_current_limit, defaults.charge_c)
    dcl, dcl_source = current(
        s.discharge_current_limit, pack.discharge_current_limit, defaults.discharge_c
    )
    return Resolved(
        id=member_id,
        state=s,
        capacity=capacity,
        ccl=ccl,
        ccl_source=ccl_source,
        dcl=dcl,
        dcl_source=dcl_source,
        cvl=voltage(s.charge_voltage_limit, pack.charge_voltage_limit, defaults.cell_cvl),
        dvl=voltage(s.discharge_voltage_limit, pack.discharge_voltage_limit, defaults.cell_dvl),
        cell_count=cell_count or None,
        design_capacity=_positive(
            pack.capacity, s.design_capacity, info.design_capacity if info else None
        ),
        allows_charge=s.charge_enabled is not False,
        allows_discharge=s.discharge_enabled is not False,
    )


def weakest_link(members: Sequence[tuple[str, float, float]]) -> tuple[float, str] | None:
    """The largest bank current (A) for which no member's capacity share exceeds its limit.

    ``members`` are ``(id, capacity Ah > 0, limit A ≥ 0)``; member *i* takes the share
    ``cap_i / Σcap`` of a bank current *I*, so *I* = ``min_i(limit_i · Σcap / cap_i)``. Returns
    that current and the id of the member that sets it, or None for no members.
    """
    total = math.fsum(cap for _id, cap, _lim in members)
    best: tuple[float, str] | None = None
    for member_id, cap, limit in members:
        bound = limit * total / cap
        if best is None or bound < best[0]:
            best = (bound, member_id)
    return best


def taper_factor(cell_max: float, start: float, end: float) -> float:
    """CCL factor, 1 → 0 as the highest cell voltage ``cell_max`` (V) goes ``start`` → ``end``."""
    if cell_max <= start:
        return 1.0
    if cell_max >= end:
        return 0.0
    return (end - cell_max) / (end - start)


def _floor(value: float, digits: int = 3) -> float:
    """Round a limit DOWN to ``digits`` decimals (a limit is never rounded up)."""
    scale = 10**digits
    return float(math.floor(value * scale) / scale)


def _weighted(pairs: Iterable[tuple[float, float | None]]) -> float | None:
    known = [(w, v) for w, v in pairs if v is not None]
    total = math.fsum(w for w, _ in known)
    if not known or total <= 0:
        return None
    mean = math.fsum(w * v for w, v in known) / total
    # rounding must not take a mean outside the values it averages
    return min(max(mean, min(v for _, v in known)), max(v for _, v in known))


def _sum(values: Iterable[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return math.fsum(known) if known else None


def _clamp(value: float | None, bound: float) -> float | None:
    return None if value is None else max(-bound, min(bound, value))


def _codes(members: Iterable[Resolved], attr: str) -> list[str]:
    out: dict[str, None] = {}
    for m in members:
        for code in getattr(m.state, attr):
            out[f"{code.split('@', 1)[0]}@{m.id}"] = None
    return list(out)


def _direction(
    allowing: list[Resolved],
    blocking: list[Resolved],
    limit_of: str,
    source_of: str,
    strict: bool,
    cap: float | None,
) -> tuple[bool, float, LimitsSource, str | None]:
    """Enable, limit (A), source and limiting member of one direction (before taper/override)."""
    enabled = bool(allowing) and not (strict and blocking)
    if not enabled:
        return False, 0.0, "bms", blocking[0].id if blocking else None
    found = weakest_link([(m.id, m.capacity, getattr(m, limit_of)) for m in allowing])
    assert found is not None
    limit, by = found
    member = next(m for m in allowing if m.id == by)
    source: LimitsSource = "bms" if getattr(member, source_of) == "bms" else "config"
    if cap is not None and cap < limit:
        return True, cap, "config", None
    return True, limit, source, by


def aggregate(
    bank_id: str,
    configured: Sequence[str],
    members: Mapping[str, Member],
    bank: BankConfig,
    now: float,
    override: Override | None = None,
    full: bool = False,
) -> Result:
    """The bank state at ``now`` (Unix s) from ``members`` (id → :class:`Member`).

    ``configured`` are the member ids (in order; the bank's own id and unknown ids are allowed,
    the former is ignored); ``members`` may hold more batteries than configured. ``override`` is
    the current lease (ignored once expired); ``full`` is the SoC-hold latch returned by the
    previous call. Never raises for any member data that passed the schema.
    """
    configured = [m for m in configured if m != bank_id]
    counted: list[Resolved] = []
    for member_id in configured:
        member = members.get(member_id)
        if member is not None and counts(member, now, bank.stale_after):
            counted.append(resolve(member_id, member, bank.packs.get(member_id), bank))
    counted_ids = {m.id for m in counted}
    missing = [m for m in configured if m not in counted_ids]
    active = override if override is not None and override.active(now) else None

    # Energy: every configured member's latest counter, counted or not, so the sums stay monotonic
    # while a member is away (its counter does not vanish with it).
    known = [members[m].state for m in configured if m in members]
    energy_in = _sum(s.energy_charged for s in known)
    energy_out = _sum(s.energy_discharged for s in known)
    warnings = [f"member_missing@{m}" for m in missing]
    common = {
        "id": bank_id,
        "ts": now,
        "members": list(configured),
        "members_online": [m.id for m in counted],
        "degraded": bool(missing),
        "energy_charged": None if energy_in is None else round(energy_in, 6),
        "energy_discharged": None if energy_out is None else round(energy_out, 6),
        "override_expires": active.expires if active else None,
    }
    if not counted:
        return Result(
            BankState(
                **common,  # type: ignore[arg-type]
                failsafe=True,
                charge_enabled=False,
                discharge_enabled=False,
                charge_current_limit=0.0,
                discharge_current_limit=0.0,
                limits_source="failsafe",
                charge_limit_source="failsafe",
                discharge_limit_source="failsafe",
                alarms=["failsafe"],
                warnings=warnings,
            ),
            False,
        )

    charge_ok = [m for m in counted if m.allows_charge]
    discharge_ok = [m for m in counted if m.allows_discharge]
    charge_enabled, ccl, ccl_source, ccl_by = _direction(
        charge_ok,
        [m for m in counted if not m.allows_charge],
        "ccl",
        "ccl_source",
        bank.strict_enable,
        bank.max_charge_current,
    )
    discharge_enabled, dcl, dcl_source, dcl_by = _direction(
        discharge_ok,
        [m for m in counted if not m.allows_discharge],
        "dcl",
        "dcl_source",
        bank.strict_enable,
        bank.max_discharge_current,
    )

    # cells and temperatures: extremes with the member holding them
    with_min = [(m.state.cell_min, m.id) for m in counted if m.state.cell_min is not None]
    with_max = [(m.state.cell_max, m.id) for m in counted if m.state.cell_max is not None]
    cell_min = min(with_min, key=lambda p: p[0]) if with_min else None
    cell_max = max(with_max, key=lambda p: p[0]) if with_max else None
    cell_avg = _weighted((float(m.cell_count or 1), m.state.cell_avg) for m in counted)

    if charge_enabled and bank.taper and cell_max is not None:
        tapered = ccl * taper_factor(
            cell_max[0], bank.taper_start_cell_voltage, bank.taper_end_cell_voltage
        )
        if tapered < ccl:
            ccl, ccl_source, ccl_by = tapered, "taper", None
    if active is not None:
        if active.charge_current_limit is not None and active.charge_current_limit < ccl:
            ccl, ccl_source, ccl_by = active.charge_current_limit, "override", None
        if active.discharge_current_limit is not None and active.discharge_current_limit < dcl:
            dcl, dcl_source, dcl_by = active.discharge_current_limit, "override", None

    cvls = [m.cvl for m in counted if m.cvl is not None]
    cvl = min(cvls) if cvls else None
    cvl_source: LimitsSource = "bms"
    if bank.max_charge_voltage is not None and (cvl is None or bank.max_charge_voltage < cvl):
        cvl, cvl_source = bank.max_charge_voltage, "config"
    override_cvl = active.charge_voltage_limit if active is not None else None
    if override_cvl is not None and (cvl is None or override_cvl < cvl):
        cvl, cvl_source = override_cvl, "override"
    dvls = [m.dvl for m in counted if m.dvl is not None]

    # SoC: members with discharge blocked are left out (their SoC is not available to the bank)
    with_soc = [m for m in counted if m.state.soc is not None]
    soc_members = [m for m in with_soc if m.allows_discharge] or with_soc
    soc_raw = _weighted((m.capacity, m.state.soc) for m in soc_members)
    soc = soc_raw
    full_now = False
    if bank.soc_hold and soc_raw is not None:
        at_100 = soc_raw >= FULL_SOC
        reached = cell_max is None or cell_max[0] >= bank.soc_full_cell_voltage
        full_now = at_100 and (full or reached)
        soc = soc_raw if full_now else min(soc_raw, bank.soc_hold_value)

    voltage = _weighted((m.capacity, m.state.voltage) for m in counted)
    current = _sum(m.state.current for m in counted)
    power = _sum(
        m.state.power
        if m.state.power is not None
        else (
            m.state.voltage * m.state.current
            if m.state.voltage is not None and m.state.current is not None
            else None
        )
        for m in counted
    )
    temps_min = [m.state.temperature_min for m in counted if m.state.temperature_min is not None]
    temps_max = [m.state.temperature_max for m in counted if m.state.temperature_max is not None]
    cycles = [m.state.cycles for m in counted if m.state.cycles is not None]
    design = _sum(m.design_capacity for m in counted)
    sources = [ccl_source, dcl_source, cvl_source]
    warnings = [*_codes(counted, "warnings"), *warnings]

    def rnd(value: float | None, digits: int) -> float | None:
        return None if value is None else round(value, digits)

    state = BankState(
        **common,  # type: ignore[arg-type]
        voltage=rnd(voltage, 3),
        current=rnd(_clamp(current, CURRENT_MAX), 3),
        power=rnd(_clamp(power, POWER_MAX), 2),
        soc=rnd(soc, 2),
        soc_raw=rnd(soc_raw, 2),
        soh=rnd(_weighted((m.capacity, m.state.soh) for m in counted), 2),
        remaining_capacity=rnd(_sum(m.state.remaining_capacity for m in counted), 3),
        full_capacity=rnd(_sum(m.state.full_capacity for m in counted), 3),
        design_capacity=rnd(design, 3),
        cycles=max(cycles) if cycles else None,
        cell_min=cell_min[0] if cell_min else None,
        cell_max=cell_max[0] if cell_max else None,
        cell_avg=rnd(cell_avg, 4),
        cell_delta=round(cell_max[0] - cell_min[0], 4) if cell_min and cell_max else None,
        cell_min_member=cell_min[1] if cell_min else None,
        cell_max_member=cell_max[1] if cell_max else None,
        temperature_min=min(temps_min) if temps_min else None,
        temperature_max=max(temps_max) if temps_max else None,
        charge_enabled=charge_enabled,
        discharge_enabled=discharge_enabled,
        charge_voltage_limit=cvl,
        discharge_voltage_limit=max(dvls) if dvls else None,
        charge_current_limit=_floor(min(ccl, CURRENT_MAX)),
        discharge_current_limit=_floor(min(dcl, CURRENT_MAX)),
        limits_source=max(sources, key=_SOURCE_RANK.__getitem__),
        charge_limit_source=ccl_source,
        discharge_limit_source=dcl_source,
        charge_limited_by=ccl_by,
        discharge_limited_by=dcl_by,
        member_limit_sources={m.id: m.limit_source for m in counted},
        members_ts={m.id: m.state.ts for m in counted},
        alarms=_codes(counted, "alarms"),
        warnings=warnings,
    )
    return Result(state, full_now)
