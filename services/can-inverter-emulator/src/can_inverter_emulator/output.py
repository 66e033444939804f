"""The logic of one inverter output, without I/O: which frames to send now, and link state.

Safety rules (DESIGN.md "Inverter side", pylontech-can.md §6, §7, §7.1); unknown means stop:

- every frame set comes from ONE bank-state snapshot (0x351 limits and 0x35C enables agree);
- a bank state older than ``stale_after`` — by its own ``ts`` (Unix s) *or* by the time it was
  received (monotonic s), whichever is older — or no state at all, or a bank in ``failsafe``,
  sends the **fail-safe set**: limits 0, charge and discharge disabled, communication alarm.
  Never silence, never stale limits;
- a state stamped more than ``future_tolerance`` s ahead of this host's clock is refused, and
  order between states is judged on ``min(ts, arrival wall time)``: a state from the future
  never blocks the ones after it;
- a direction is allowed only when the bank says so explicitly (``charge_enabled`` True), its
  voltage limit is known and above 0 (CVL for charge, DVL for discharge), and the current
  limit as sent (bank limit × share, capped, rounded down to 0.1 A) is at least the output's
  ``current_limit_min``. Otherwise that direction's 0x35C bit is clear and its limit is the
  output's stop value (0 A by default): 0 A never goes out with the request bit set;
- the latest state wins: a new state replaces the old one and reaches the next cycle (no queue).

Times are passed in (``now`` monotonic s, ``wall`` Unix s) so tests drive a fake clock.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from typing import Literal

from bmslink.protocols import pylontech_can as pc
from bmslink.schema import BankState
from can_inverter_emulator.config import OutputConfig

Mode = Literal["normal", "failsafe"]

MIN_CURRENT = 0.1
"""A, the ``min_current`` stop value (Sofar-style: some inverters ignore 0 A, doc §6)."""

FAILSAFE_ALARMS: tuple[str, ...] = ("failsafe",)
FAILSAFE_WARNINGS: tuple[str, ...] = ("communication_lost",)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A bank state and the monotonic time (s) it was received."""

    state: BankState
    received: float


Verdict = Literal["accepted", "older", "future"]
"""What :meth:`BankFeed.put` did with a state: stored it, dropped it as older than the one held,
or refused it as stamped too far ahead of this host's clock."""


class BankFeed:
    """The latest bank state, shared by every output (written by the MQTT thread).

    :meth:`put` replaces the snapshot atomically; outputs read :attr:`latest` at their cycle.
    ``future_tolerance``: s a state's ``ts`` may be ahead of the wall clock at arrival.
    """

    def __init__(self, future_tolerance: float = 5.0) -> None:
        self.future_tolerance = future_tolerance
        self._latest: Snapshot | None = None
        self._order = -math.inf
        self._lock = threading.Lock()
        self.updates = 0

    def put(self, state: BankState, received: float, wall: float) -> Verdict:
        """Offer ``state`` received at monotonic ``received`` s, Unix ``wall`` s.

        Refused (``future``) when ``ts`` is more than ``future_tolerance`` s ahead of ``wall``;
        dropped (``older``) when older than the state held, compared on ``min(ts, wall)`` so a
        state stamped ahead within the tolerance orders as if it was stamped at arrival.
        """
        if state.ts - wall > self.future_tolerance:
            return "future"
        order = min(state.ts, wall)
        with self._lock:
            if order < self._order:
                return "older"
            self._latest = Snapshot(state, received)
            self._order = order
            self.updates += 1
        return "accepted"

    @property
    def latest(self) -> Snapshot | None:
        """The newest snapshot, or None before the first state."""
        return self._latest


def failsafe_values(cfg: OutputConfig) -> pc.BmsValues:
    """The fail-safe set's values: limits 0 (or the profile's stop value for currents),
    charge and discharge disabled, ``failsafe`` + ``communication_lost`` (0x359 system error and
    internal communication failure, 0x35A general/BMS internal), SoC 0, no modules."""
    stop = stop_current(cfg)
    return pc.BmsValues(
        charge_voltage_limit=0.0,
        discharge_voltage_limit=0.0,
        charge_current_limit=stop,
        discharge_current_limit=stop,
        soc=0.0,
        soh=0.0,
        voltage=0.0,
        current=0.0,
        temperature=0.0,
        charge_enable=False,
        discharge_enable=False,
        alarms=FAILSAFE_ALARMS,
        warnings=FAILSAFE_WARNINGS,
        module_count=0,
        manufacturer=cfg.manufacturer,
    )


def stop_current(cfg: OutputConfig) -> float:
    """A, the current limit a disabled direction sends (``stop_strategy``)."""
    return MIN_CURRENT if cfg.stop_strategy == "min_current" else 0.0


@dataclass(frozen=True, slots=True)
class Direction:
    """One direction as sent: ``allowed`` (the 0x35C bit) and ``limit`` (A, before the wire's
    rounding down, which cannot raise it above ``current_limit_min`` again)."""

    allowed: bool
    limit: float


def direction(
    enabled: bool | None,
    voltage_limit: float | None,
    current_limit: float | None,
    share: float,
    cap: float | None,
    cfg: OutputConfig,
) -> Direction:
    """Charge or discharge of one output from the bank's flag, voltage limit (V), current
    limit (A) and this output's ``share``/``cap`` (A). Allowed only with ``enabled`` True, a
    known voltage limit > 0, a known current limit, and the current as sent (rounded down to
    0.1 A) ≥ ``cfg.current_limit_min``; else the stop value."""
    limit = 0.0 if current_limit is None else max(0.0, current_limit) * share
    if cap is not None:
        limit = min(limit, cap)
    sent = pc.sent_limits(0.0, limit, 0.0).charge_current_limit
    allowed = (
        enabled is True
        and voltage_limit is not None
        and voltage_limit > 0
        and current_limit is not None
        and sent >= cfg.current_limit_min
    )
    return Direction(True, limit) if allowed else Direction(False, stop_current(cfg))


def bank_values(bank: BankState, cfg: OutputConfig, share: float = 1.0) -> pc.BmsValues:
    """Map a (fresh) bank state to the values of this output's frame set.

    CCL/DCL = bank limit × ``share`` (this output's part of the bank, ≤ 1), capped by the
    output maximum (A); each direction allowed or stopped by :func:`direction`. CVL/DVL from
    the bank (unknown → 0, which also stops that direction); with ``cvl_pack_voltage`` a
    stopped charge sends CVL = pack voltage (never above the bank's CVL). 0x356 temperature =
    the bank's highest temperature (°C, conservative for inverter derating). Unknown SoC → 0 %,
    unknown SoH → 100 %.
    """
    cvl = bank.charge_voltage_limit or 0.0
    dvl = bank.discharge_voltage_limit or 0.0
    charge = direction(
        bank.charge_enabled, cvl, bank.charge_current_limit, share, cfg.charge_current_max, cfg
    )
    discharge = direction(
        bank.discharge_enabled,
        dvl,
        bank.discharge_current_limit,
        share,
        cfg.discharge_current_max,
        cfg,
    )
    if not charge.allowed and cfg.stop_strategy == "cvl_pack_voltage" and bank.voltage:
        cvl = min(cvl, bank.voltage) if cvl > 0 else bank.voltage
    current = bank.current or 0.0
    online = len(bank.members_online)
    temperature = bank.temperature_max
    if temperature is None:
        temperature = bank.temperature_min or 0.0
    capacity = bank.full_capacity if bank.full_capacity is not None else bank.design_capacity
    return pc.BmsValues(
        charge_voltage_limit=cvl,
        discharge_voltage_limit=dvl,
        charge_current_limit=charge.limit,
        discharge_current_limit=discharge.limit,
        soc=bank.soc if bank.soc is not None else 0.0,
        soh=bank.soh if bank.soh is not None else 100.0,
        voltage=bank.voltage or 0.0,
        current=-current if cfg.invert_current else current,
        temperature=temperature,
        charge_enable=charge.allowed,
        discharge_enable=discharge.allowed,
        alarms=tuple(bank.alarms),
        warnings=tuple(bank.warnings),
        module_count=cfg.module_count if cfg.module_count is not None else online,
        modules_offline=max(0, len(bank.members) - online),
        manufacturer=cfg.manufacturer,
        cell_min=bank.cell_min,
        cell_max=bank.cell_max,
        temperature_min=bank.temperature_min,
        temperature_max=bank.temperature_max,
        capacity=capacity,
    )


@dataclass(slots=True)
class Cycle:
    """What one cycle sends: the frames, the mode, and the bank ``ts`` they carry (or None)."""

    frames: list[tuple[int, bytes]]
    mode: Mode
    bank_ts: float | None
    reason: str


class Output:
    """One inverter output: frame sets from a :class:`BankFeed` and the 0x305 link state.

    ``name`` is the output's slug; ``stale_after`` in s (from the instance config); ``share``
    this output's part of the bank's current limits (default: its ``current_scale``, else 1;
    the service passes the share resolved over the site file, :func:`~.config.resolve_shares`).
    """

    def __init__(
        self,
        name: str,
        cfg: OutputConfig,
        feed: BankFeed,
        stale_after: float,
        share: float | None = None,
    ) -> None:
        self.name = name
        self.cfg = cfg
        default = cfg.current_scale if cfg.current_scale is not None else 1.0
        self.share = default if share is None else share
        self.feed = feed
        self.stale_after = stale_after
        self.last_heartbeat: float | None = None
        self.heartbeats = 0
        self.mode: Mode | None = None
        self.link: bool | None = None

    def cycle(self, now: float, wall: float) -> Cycle:
        """The frame set to send at monotonic ``now`` / Unix ``wall`` s, and its mode.

        Raises nothing for a bad state: a value that cannot be encoded sends the fail-safe set.
        """
        snap = self.feed.latest
        reason = ""
        if snap is None:
            reason = "no bank state yet"
        else:
            age = max(now - snap.received, wall - snap.state.ts)
            if age > self.stale_after:
                reason = f"bank state is {age:.1f} s old (stale_after {self.stale_after} s)"
            elif snap.state.failsafe:
                reason = "the bank is in fail-safe"
        if not reason and snap is not None:
            try:
                frames = pc.build_frame_set(
                    bank_values(snap.state, self.cfg, self.share),
                    self.cfg.profile,
                    voltage_scale=self.cfg.voltage_scale,
                )
            except pc.PylontechCanError as exc:
                reason = f"bank state cannot be encoded: {exc}"
            else:
                self.mode = "normal"
                return Cycle(frames, "normal", snap.state.ts, "")
        self.mode = "failsafe"
        frames = pc.build_frame_set(
            failsafe_values(self.cfg), self.cfg.profile, voltage_scale=self.cfg.voltage_scale
        )
        return Cycle(frames, "failsafe", None, reason)

    def on_frame(self, can_id: int, extended: bool, now: float) -> bool:
        """Record a received frame; returns True when it is the inverter's 0x305 heartbeat
        (11- or 29-bit id, doc §3.7)."""
        if can_id == pc.ID_HEARTBEAT:
            self.last_heartbeat = now
            self.heartbeats += 1
            return True
        return False

    def link_up(self, now: float) -> bool:
        """True while a 0x305 arrived within ``heartbeat_timeout`` s before ``now``."""
        return (
            self.last_heartbeat is not None
            and now - self.last_heartbeat <= self.cfg.heartbeat_timeout
        )

    def link_change(self, now: float) -> bool | None:
        """The new link state if it changed since the last call (first call: always), else
        None."""
        up = self.link_up(now)
        if up is self.link:
            return None
        self.link = up
        return up
