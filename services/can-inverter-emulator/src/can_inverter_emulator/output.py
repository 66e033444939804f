"""The logic of one inverter output, without I/O: which frames to send now, and link state.

Safety rules (DESIGN.md "Inverter side", pylontech-can.md §7.1):

- every frame set comes from ONE bank-state snapshot (0x351 limits and 0x35C enables agree);
- a bank state older than ``stale_after`` — by its own ``ts`` (Unix s) *or* by the time it was
  received (monotonic s), whichever is older — or no state at all, or a bank in ``failsafe``,
  sends the **fail-safe set**: limits 0, charge and discharge disabled, communication alarm.
  Never silence, never stale limits;
- a disabled direction (``charge_enabled``/``discharge_enabled`` false) sends the output's stop
  value for that current limit (0 A by default);
- the latest state wins: a new state replaces the old one and reaches the next cycle (no queue).

Times are passed in (``now`` monotonic s, ``wall`` Unix s) so tests drive a fake clock.
"""

from __future__ import annotations

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


class BankFeed:
    """The latest bank state, shared by every output (written by the MQTT thread).

    :meth:`put` replaces the snapshot atomically; outputs read :attr:`latest` at their cycle.
    """

    def __init__(self) -> None:
        self._latest: Snapshot | None = None
        self._lock = threading.Lock()
        self.updates = 0

    def put(self, state: BankState, received: float) -> None:
        """Store ``state`` received at monotonic ``received`` s (an older ``ts`` is ignored)."""
        with self._lock:
            if self._latest is not None and state.ts < self._latest.state.ts:
                return
            self._latest = Snapshot(state, received)
            self.updates += 1

    @property
    def latest(self) -> Snapshot | None:
        """The newest snapshot, or None before the first state."""
        return self._latest


def failsafe_values(cfg: OutputConfig) -> pc.BmsValues:
    """The fail-safe set's values: limits 0 (or the profile's stop value for currents),
    charge and discharge disabled, ``failsafe`` + ``communication_lost`` (0x359 system error and
    internal communication failure, 0x35A general/BMS internal), SoC 0, no modules."""
    stop = MIN_CURRENT if cfg.stop_strategy == "min_current" else 0.0
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


def _scaled(limit: float | None, scale: float, cap: float | None) -> float:
    value = 0.0 if limit is None else limit * scale
    return value if cap is None else min(value, cap)


def bank_values(bank: BankState, cfg: OutputConfig) -> pc.BmsValues:
    """Map a (fresh) bank state to the values of this output's frame set.

    CCL/DCL = bank limit × ``current_scale``, capped by the output maximum (A); an unknown
    limit is 0. A direction whose enable flag is false gets the stop value. CVL/DVL from the
    bank (unknown → 0). 0x356 temperature = the bank's highest temperature (°C, conservative
    for inverter derating). Unknown SoC → 0 %, unknown SoH → 100 %.
    """
    charge_on = bank.charge_enabled is not False
    discharge_on = bank.discharge_enabled is not False
    ccl = _scaled(bank.charge_current_limit, cfg.current_scale, cfg.charge_current_max)
    dcl = _scaled(bank.discharge_current_limit, cfg.current_scale, cfg.discharge_current_max)
    cvl = bank.charge_voltage_limit or 0.0
    stop = MIN_CURRENT if cfg.stop_strategy == "min_current" else 0.0
    if not charge_on:
        ccl = stop
        if cfg.stop_strategy == "cvl_pack_voltage" and bank.voltage is not None:
            cvl = bank.voltage
    if not discharge_on:
        dcl = stop
    current = bank.current or 0.0
    online = len(bank.members_online)
    temperature = bank.temperature_max
    if temperature is None:
        temperature = bank.temperature_min or 0.0
    capacity = bank.full_capacity if bank.full_capacity is not None else bank.design_capacity
    return pc.BmsValues(
        charge_voltage_limit=cvl,
        discharge_voltage_limit=bank.discharge_voltage_limit or 0.0,
        charge_current_limit=ccl,
        discharge_current_limit=dcl,
        soc=bank.soc if bank.soc is not None else 0.0,
        soh=bank.soh if bank.soh is not None else 100.0,
        voltage=bank.voltage or 0.0,
        current=-current if cfg.invert_current else current,
        temperature=temperature,
        charge_enable=charge_on,
        discharge_enable=discharge_on,
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

    ``name`` is the output's slug; ``stale_after`` in s (from the instance config).
    """

    def __init__(self, name: str, cfg: OutputConfig, feed: BankFeed, stale_after: float) -> None:
        self.name = name
        self.cfg = cfg
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
                    bank_values(snap.state, self.cfg),
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
