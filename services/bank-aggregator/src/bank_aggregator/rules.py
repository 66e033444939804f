"""The bank maths: pure functions from member states to one :class:`~bmslink.schema.BankState`.

No I/O and no clock: the caller passes ``now`` (Unix s), optionally ``monotonic`` (the clock of
the arrival times) and everything it has received. Every rule, with a worked example and its
reason, is in docs/bank-rules.md and the service README; in short:

- a member **counts** (summary, ``members_online``, ``degraded``) when it is configured, not
  ``offline`` and fresh: its reading's ``ts`` and its arrival both no older than
  ``stale_after``; a reading stamped more than ``future_tolerance`` ahead never counts;
- members whose voltage windows (cells × chemistry) or pack voltages cannot share one bus bar
  are ``member_incompatible`` and are left out of the limits;
- per direction, a member whose switch for it is known **open** takes no current and leaves that
  direction's share set; every other counted member must **allow** the direction (its
  ``charge_enabled``/``discharge_enabled`` is not false), must know its voltage limit, and its
  limit is 0 while it raises an alarm that blocks the direction (× ``warning_derate`` for such a
  warning) — one member saying stop stops the bank in that direction;
- CCL (DCL) is the weakest link ``min_i(limit_i · Σcap / cap_i)`` over the share set,
  × ``current_share_margin`` when two or more members share; a member older than its
  ``limits_stale_after`` may be disconnected or not, so the limit is the lower of the two cases;
  then the bank caps, the taper (CCL, LFP by default) and the leased override, each of which can
  only lower it; a direction whose limit is 0 is disabled (never "0 A, enabled");
- CVL: min over the members, DVL: max; an unknown CVL (DVL) disables charge (discharge);
- voltage: capacity-weighted mean; current, power: sums; SoC/SoH: capacity-weighted (SoC leaves
  out members whose discharge is blocked, unless that leaves none — BatteryAggregator #120);
  capacities: sums; cycles: max; temperatures and cells: min/max with the member of the extreme;
- alarms/warnings: union as ``code@member``; ``member_missing@<id>`` for each configured member
  that does not count; no counted member → ``failsafe`` (limits 0, both directions disabled).

Members that report no current limit get one from the config (:class:`PackConfig`) or from a
conservative per-chemistry C-rate (:data:`CHEMISTRY_DEFAULTS`); ``member_limit_sources`` says
which, and a bank limit set by such a member has source ``config``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Literal

from bank_aggregator.config import (
    CHEMISTRY_DEFAULTS,
    BankConfig,
    Chemistry,
    PackConfig,
    window,
    windows_compatible,
)
from bmslink.alarms import BLOCKS_CHARGE, BLOCKS_DISCHARGE
from bmslink.schema import BankState, BatteryInfo, BatteryState, LimitsSource, MemberLimitSource

CURRENT_MAX = 10000.0
"""A; the schema's range of currents and current limits (sums are clamped to it)."""
POWER_MAX = 1e7
"""W; the schema's range of power."""
FULL_SOC = 100.0 - 1e-6
"""%; a raw SoC at or above this is 100 %."""
LIMITS_STALE_MIN = 3.0
"""s; shortest default ``limits_stale_after`` (also used while a member's interval is unknown)."""
LIMITS_STALE_INTERVALS = 3.0
"""Default ``limits_stale_after`` in poll intervals of the member (when longer than 3 s)."""

_SOURCE_RANK: dict[str, int] = {
    "bms": 0,
    "config": 1,
    "taper": 2,
    "alarm": 3,
    "override": 4,
    "failsafe": 5,
}
_MEMBER_RANK: dict[str, int] = {"bms": 0, "config": 1, "default": 2}

Direction = Literal["charge", "discharge"]


@dataclass(frozen=True, slots=True)
class Member:
    """What the aggregator holds of one battery.

    ``received``: when its latest state arrived, on the clock of ``aggregate``'s ``monotonic``
    (or Unix s when that is not given); ``online``: its availability (None when it never said);
    ``info``: its latest ``bms/<id>/info``, if any; ``interval`` (s): its typical time between
    two states (None until known).
    """

    state: BatteryState
    received: float
    online: bool | None = None
    info: BatteryInfo | None = None
    interval: float | None = None


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
    None if unknown) its limits with ``ccl_source``/``dcl_source`` telling where they came from;
    ``chemistry`` from config, else inferred from the BMS's CVL per cell, else LFP; ``age`` (s)
    of its state; ``limits_stale``: older than its ``limits_stale_after``.
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
    chemistry: Chemistry = "lfp"
    age: float = 0.0
    limits_stale: bool = False

    @property
    def limit_source(self) -> MemberLimitSource:
        """The less direct of the two current-limit sources (``default`` > ``config`` > ``bms``)."""
        return max(self.ccl_source, self.dcl_source, key=_MEMBER_RANK.__getitem__)


@dataclass(frozen=True, slots=True)
class Result:
    """The bank state, and whether the bank is (latched) full for the SoC hold."""

    state: BankState
    full: bool


def age(member: Member, now: float, monotonic: float | None = None) -> float:
    """Age of a member's state in s: the larger of ``now − ts`` (Unix s) and the time since
    its arrival (``monotonic − received``; ``now − received`` without ``monotonic``)."""
    since_arrival = (now if monotonic is None else monotonic) - member.received
    return max(now - member.state.ts, since_arrival)


def counts(
    member: Member,
    now: float,
    stale_after: float,
    monotonic: float | None = None,
    future_tolerance: float = math.inf,
) -> bool:
    """Whether ``member`` counts at ``now``: not ``offline``, no older than ``stale_after`` s and
    not stamped more than ``future_tolerance`` s ahead of ``now``."""
    if member.online is False or member.state.ts > now + future_tolerance:
        return False
    return age(member, now, monotonic) <= stale_after


def limits_stale_after(member: Member, bank: BankConfig) -> float:
    """Seconds after which a member may be disconnected as far as the current limits go: the
    configured ``limits_stale_after``, else 3 s or 3 of its poll intervals, whichever is larger;
    never above ``stale_after``."""
    if bank.limits_stale_after is not None:
        value = bank.limits_stale_after
    else:
        value = max(LIMITS_STALE_MIN, LIMITS_STALE_INTERVALS * (member.interval or 0.0))
    return min(value, bank.stale_after)


MIN_CAPACITY = 0.1
"""Ah; a reported capacity below this is treated as unknown (a BMS saying 0 Ah)."""


def _positive(*values: float | None) -> float | None:
    for v in values:
        if v is not None and v >= MIN_CAPACITY:
            return v
    return None


def infer_chemistry(cvl: float | None, cell_count: int | None) -> Chemistry | None:
    """The chemistry a BMS's charge voltage limit per cell points to (V/cell: < 2.9 LTO,
    ≤ 3.8 LFP, ≤ 4.45 NMC), or None when either is unknown or the value fits none."""
    if cvl is None or not cell_count or cvl <= 0:
        return None
    per_cell = cvl / cell_count
    if per_cell < 2.9:
        return "lto"
    if per_cell <= 3.8:
        return "lfp"
    if per_cell <= 4.45:
        return "nmc"
    return None


def resolve(member_id: str, member: Member, pack: PackConfig | None, bank: BankConfig) -> Resolved:
    """Fill a member's capacity and limits: the BMS's value, else ``pack`` config, else defaults.

    Capacity (Ah): config, else the BMS's design capacity (state, then info), else its full
    capacity, else ``bank.default_capacity``. Current limits (A): BMS, config, else the chemistry's
    C-rate × capacity. Voltage limits (V): BMS, config, else per-cell default × cell count (None
    when the cell count is unknown too). Chemistry: pack config, bank config, inferred from the
    BMS's CVL per cell (:func:`infer_chemistry`), else LFP (the lowest per-cell voltages).
    """
    s = member.state
    info = member.info
    pack = pack or PackConfig()
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
    chemistry: Chemistry = (
        pack.chemistry
        or bank.chemistry
        or infer_chemistry(s.charge_voltage_limit, cell_count)
        or "lfp"
    )
    defaults = CHEMISTRY_DEFAULTS[chemistry]

    def current(
        bms: float | None, configured: float | None, c_rate: float
    ) -> tuple[float, MemberLimitSource]:
        if bms is not None:
            return bms, "bms"
        if configured is not None:
            return configured, "config"
        return c_rate * capacity, "default"

    def voltage(bms: float | None, configured: float | None, per_cell: float) -> float | None:
        if bms is not None and bms > 0:
            return bms
        if configured is not None and configured > 0:
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
        chemistry=chemistry,
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


@dataclass(frozen=True, slots=True)
class Limit:
    """One direction's outcome: ``enabled``, ``current`` (A, ≥ 0), where it came from
    (``source``), the member whose share sets it (``by``) and why (``reason``, ``code@member``:
    an alarm or warning code, ``charge_disabled``/``discharge_disabled``, ``switch_open``,
    ``charge_voltage_limit_unknown``/``discharge_voltage_limit_unknown`` or
    ``member_incompatible``)."""

    enabled: bool
    current: float
    source: LimitsSource
    by: str | None = None
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class _Share:
    member: Resolved
    limit: float
    source: LimitsSource
    reason: str | None


def _first_code(codes: Iterable[str], blocking: frozenset[str]) -> str | None:
    for code in codes:
        base = code.split("@", 1)[0]
        if base in blocking:
            return base
    return None


def _member_share(m: Resolved, direction: Direction, bank: BankConfig) -> _Share:
    """A member's limit in ``direction``: its own (BMS/config/default), 0 while it raises an
    alarm blocking that direction, × ``warning_derate`` while it raises such a warning."""
    charge = direction == "charge"
    limit = m.ccl if charge else m.dcl
    source: LimitsSource = (
        "bms" if (m.ccl_source if charge else m.dcl_source) == "bms" else "config"
    )
    blocking = BLOCKS_CHARGE if charge else BLOCKS_DISCHARGE
    alarm = _first_code(m.state.alarms, blocking)
    if alarm is not None:
        return _Share(m, 0.0, "alarm", f"{alarm}@{m.id}")
    warning = _first_code(m.state.warnings, blocking)
    if warning is not None and bank.warning_derate < 1.0:
        return _Share(m, limit * bank.warning_derate, "alarm", f"{warning}@{m.id}")
    return _Share(m, limit, source, None)


def _weakest(shares: Sequence[_Share], margin: float) -> tuple[float, _Share]:
    found = weakest_link([(s.member.id, s.member.capacity, s.limit) for s in shares])
    assert found is not None
    limit, by = found
    if len(shares) >= 2:
        limit *= margin
    return limit, next(s for s in shares if s.member.id == by)


def direction_limit(
    direction: Direction, members: Sequence[Resolved], bank: BankConfig, cap: float | None
) -> Limit:
    """The limit of one direction over ``members`` (counted and compatible), before the taper
    and the override (rules: module docstring; docs/bank-rules.md)."""
    charge = direction == "charge"
    share = [m for m in members if getattr(m.state, f"{direction}_switch") is not False]
    if not share:
        open_by = members[0].id if members else None
        return Limit(False, 0.0, "bms", open_by, f"switch_open@{open_by}" if open_by else None)
    for m in share:
        if not (m.allows_charge if charge else m.allows_discharge):
            return Limit(False, 0.0, "bms", m.id, f"{direction}_disabled@{m.id}")
        if (m.cvl if charge else m.dvl) is None:
            return Limit(False, 0.0, "bms", m.id, f"{direction}_voltage_limit_unknown@{m.id}")
    shares = [_member_share(m, direction, bank) for m in share]
    limit, by = _weakest(shares, bank.current_share_margin)
    # a member silent for longer than its limits_stale_after may have been disconnected (the
    # others then carry its share) or not (it still takes its share): take the lower of both
    fresh = [s for s in shares if not s.member.limits_stale]
    if fresh and len(fresh) < len(shares):
        without = _weakest(fresh, bank.current_share_margin)
        if without[0] < limit:
            limit, by = without
    if cap is not None and cap < limit:
        return Limit(cap > 0, cap, "config")
    return Limit(limit > 0, limit, by.source, by.member.id, by.reason)


def incompatible(members: Sequence[Resolved], bank: BankConfig) -> set[str]:
    """Members that clash with more than half of the others: voltage windows (cells ×
    chemistry) overlapping too little, or pack voltages further apart than
    ``max_voltage_spread``. With two clashing members both are flagged (no way to tell)."""

    def clash(a: Resolved, b: Resolved) -> bool:
        if a.cell_count and b.cell_count:
            wa, wb = window(a.chemistry, a.cell_count), window(b.chemistry, b.cell_count)
            if not windows_compatible(wa, wb, bank.min_window_overlap):
                return True
        va, vb = a.state.voltage, b.state.voltage
        return va is not None and vb is not None and abs(va - vb) > bank.max_voltage_spread

    others = len(members) - 1
    return {
        a.id
        for a in members
        if others > 0 and 2 * sum(clash(a, b) for b in members if b is not a) > others
    }


def _taper(members: Sequence[Resolved], bank: BankConfig) -> float:
    """The taper's CCL factor (1 → 0): over LFP members by default, every member with
    ``taper = true``, none with ``taper = false``."""
    if bank.taper is False:
        return 1.0
    factors = [
        taper_factor(m.state.cell_max, bank.taper_start_cell_voltage, bank.taper_end_cell_voltage)
        for m in members
        if m.state.cell_max is not None and (bank.taper or m.chemistry == "lfp")
    ]
    return min(factors, default=1.0)


def _lower(limit: Limit, value: float | None, source: LimitsSource) -> Limit:
    """``limit`` lowered to ``value`` (taper, override), which can never raise it."""
    if value is None or value >= limit.current:
        return limit
    return Limit(limit.enabled and value > 0, max(0.0, value), source)


def aggregate(
    bank_id: str,
    configured: Sequence[str],
    members: Mapping[str, Member],
    bank: BankConfig,
    now: float,
    override: Override | None = None,
    full: bool = False,
    *,
    monotonic: float | None = None,
) -> Result:
    """The bank state at ``now`` (Unix s) from ``members`` (id → :class:`Member`).

    ``configured`` are the member ids (in order; the bank's own id and unknown ids are allowed,
    the former is ignored); ``members`` may hold more batteries than configured. ``override`` is
    the current lease (ignored once expired); ``full`` is the SoC-hold latch returned by the
    previous call; ``monotonic`` is now on the clock of ``Member.received`` (default: ``now``).
    Never raises for any member data that passed the schema.
    """
    configured = [m for m in configured if m != bank_id]
    counted: list[Resolved] = []
    for member_id in configured:
        member = members.get(member_id)
        if member is None or not counts(
            member, now, bank.stale_after, monotonic, bank.future_tolerance
        ):
            continue
        resolved = resolve(member_id, member, bank.packs.get(member_id), bank)
        member_age = age(member, now, monotonic)
        counted.append(
            replace(
                resolved,
                age=member_age,
                limits_stale=member_age > limits_stale_after(member, bank),
            )
        )
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

    flagged = incompatible(counted, bank)
    compatible = [m for m in counted if m.id not in flagged]
    if compatible:
        charge = direction_limit("charge", compatible, bank, bank.max_charge_current)
        discharge = direction_limit("discharge", compatible, bank, bank.max_discharge_current)
    else:
        first = f"member_incompatible@{counted[0].id}"
        charge = discharge = Limit(False, 0.0, "alarm", None, first)

    # cells and temperatures: extremes with the member holding them
    with_min = [(m.state.cell_min, m.id) for m in counted if m.state.cell_min is not None]
    with_max = [(m.state.cell_max, m.id) for m in counted if m.state.cell_max is not None]
    cell_min = min(with_min, key=lambda p: p[0]) if with_min else None
    cell_max = max(with_max, key=lambda p: p[0]) if with_max else None
    cell_avg = _weighted((float(m.cell_count or 1), m.state.cell_avg) for m in counted)

    if charge.enabled:
        charge = _lower(charge, charge.current * _taper(compatible, bank), "taper")
    if active is not None:
        charge = _lower(charge, active.charge_current_limit, "override")
        discharge = _lower(discharge, active.discharge_current_limit, "override")

    cvls = [m.cvl for m in compatible if m.cvl is not None]
    cvl = min(cvls) if cvls else None
    cvl_source: LimitsSource = "bms"
    if bank.max_charge_voltage is not None and (cvl is None or bank.max_charge_voltage < cvl):
        cvl, cvl_source = bank.max_charge_voltage, "config"
    override_cvl = active.charge_voltage_limit if active is not None else None
    if override_cvl is not None and (cvl is None or override_cvl < cvl):
        cvl, cvl_source = override_cvl, "override"
    if charge.enabled and (cvl is None or cvl <= 0):
        charge = Limit(False, 0.0, "bms", None, "charge_voltage_limit_unknown@" + bank_id)
    dvls = [m.dvl for m in compatible if m.dvl is not None]
    dvl = max(dvls) if dvls else None
    if discharge.enabled and dvl is None:
        discharge = Limit(False, 0.0, "bms", None, "discharge_voltage_limit_unknown@" + bank_id)

    # a limit that floors to 0 A disables its direction: never "0 A, enabled"
    ccl = _floor(min(charge.current, CURRENT_MAX)) if charge.enabled else 0.0
    dcl = _floor(min(discharge.current, CURRENT_MAX)) if discharge.enabled else 0.0

    # SoC: members with discharge blocked are left out (their SoC is not available to the bank)
    with_soc = [m for m in counted if m.state.soc is not None]
    soc_members = [m for m in with_soc if m.allows_discharge] or with_soc
    soc_raw = _weighted((m.capacity, m.state.soc) for m in soc_members)
    soc = soc_raw
    full_now = False
    soc_hold = (
        bank.soc_hold if bank.soc_hold is not None else all(m.chemistry == "lfp" for m in counted)
    )
    if soc_hold and soc_raw is not None:
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
    sources = [charge.source, discharge.source, cvl_source]
    warnings = [*_codes(counted, "warnings"), *warnings]
    alarms = [*_codes(counted, "alarms"), *(f"member_incompatible@{m}" for m in sorted(flagged))]

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
        charge_enabled=ccl > 0,
        discharge_enabled=dcl > 0,
        charge_voltage_limit=cvl,
        discharge_voltage_limit=dvl,
        charge_current_limit=ccl,
        discharge_current_limit=dcl,
        limits_source=max(sources, key=_SOURCE_RANK.__getitem__),
        charge_limit_source=charge.source,
        discharge_limit_source=discharge.source,
        charge_limited_by=charge.by,
        discharge_limited_by=discharge.by,
        charge_limit_reason=charge.reason,
        discharge_limit_reason=discharge.reason,
        member_limit_sources={m.id: m.limit_source for m in counted},
        members_ts={m.id: m.state.ts for m in counted},
        alarms=alarms,
        warnings=warnings,
    )
    return Result(state, full_now)
