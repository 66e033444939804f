"""bank-aggregator: publishes one bank as a virtual BMS from the states of its members.

Subscribes to ``bms/+/state``, ``bms/+/availability``, ``bms/+/info`` and ``bms/<bank>/set``;
publishes ``bms/<bank>/state`` (``BankState``), ``bms/<bank>/info``, ``bms/<bank>/availability``
and ``bms/<bank>/set/result``, plus ``bmslink/bank-aggregator/<instance>/status``.

The bank state is published every ``period`` s and promptly after a member update (or an
override, or its expiry), but never more often than every ``min_interval`` s. The maths is in
:mod:`bank_aggregator.rules`; this module holds the received data and does the MQTT wiring.
MQTT handlers run on paho's network thread and only store; the publishing loop runs on the main
thread.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import statistics
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence

import msgspec

from bank_aggregator import rules
from bank_aggregator.config import BankConfig, bank_id, device_ids
from bmslink import schema, topics
from bmslink.config import EXIT_CONFIG
from bmslink.mqtt import RETAINED_COMMAND_REFUSED, MqttRuntime
from bmslink.publisher import DevicePublisher
from bmslink.service import base_parser, start_service

SERVICE = "bank-aggregator"
STATS_PERIOD = 60.0
_WAKE_MAX = 0.2
"""s; longest sleep of the loop, so a stop request is seen promptly."""
_INTERVALS = 5
"""How many of a member's recent arrival gaps give its poll interval (their median)."""

log = logging.getLogger(SERVICE)


class Aggregator:
    """The received member data of one bank, the override lease, and the publishing loop.

    ``clock`` gives Unix time (s) for ``ts``; ``monotonic`` (s) times arrivals, the loop and the
    lease, so a wall-clock step can neither make a dead member count again nor extend an
    override. A state stamped more than ``future_tolerance`` ahead of ``clock`` is refused
    (counted as ``refused.future``) and never stored, so it cannot block the states after it.
    Thread-safe: the ``on_*`` handlers may be called from any thread while :meth:`run` publishes.
    """

    def __init__(
        self,
        bank_id: str,
        bank: BankConfig,
        publisher: DevicePublisher | None,
        *,
        instance: str | None = None,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.bank_id = bank_id
        self.bank = bank
        self.publisher = publisher
        self.instance = instance or bank_id
        self.clock = clock
        self.monotonic = monotonic
        self.members: dict[str, rules.Member] = {}
        self.availability: dict[str, bool] = {}
        self.infos: dict[str, schema.BatteryInfo] = {}
        self.override: rules.Override | None = None
        self._override_deadline: float | None = None
        self.full = False
        self.refused: Counter[str] = Counter()
        self.overrides: Counter[str] = Counter()
        self.published = 0
        self.last_state: schema.BankState | None = None
        self._configured = set(bank.members)
        self._energy = (0.0, 0.0)
        self._online: bool | None = None
        self._info_members: list[str] | None = None
        self._cond = threading.Condition()
        self._dirty = False
        self._warned: set[tuple[str, str]] = set()
        self._gaps: dict[str, deque[float]] = {}

    # --- membership --------------------------------------------------------------------------

    def is_member(self, device_id: str) -> bool:
        """Whether ``device_id`` may be a member (configured, or any battery if none are)."""
        if device_id == self.bank_id:
            return False
        return device_id in self._configured if self._configured else True

    def configured(self) -> list[str]:
        """The member ids: the configured list, else every battery seen (sorted). Call locked."""
        if self.bank.members:
            return [m for m in self.bank.members if m != self.bank_id]
        return sorted(self.members)

    # --- MQTT handlers (network thread) ------------------------------------------------------

    def _refuse(self, kind: str, device_id: str, detail: str) -> None:
        self.refused[kind] += 1
        level = logging.DEBUG if (kind, device_id) in self._warned else logging.WARNING
        self._warned.add((kind, device_id))
        log.log(level, "refused %s from %s: %s", kind, device_id, detail)

    def _touch(self) -> None:
        with self._cond:
            self._dirty = True
            self._cond.notify()

    def on_state(self, topic: str, payload: bytes) -> None:
        """``bms/<id>/state``: store a member's BatteryState (banks' states are ignored)."""
        found = topics.STATE.match(topic)
        if found is None or not self.is_member(found["id"]):
            return
        device_id = found["id"]
        if not payload:  # retained state cleared: the battery is gone for good
            with self._cond:
                self.members.pop(device_id, None)
            self._touch()
            return
        try:
            state = schema.decode(schema.STATE_DECODER, payload)
        except schema.MessageError as exc:
            self._refuse("bad_state", device_id, str(exc))
            return
        if isinstance(state, schema.BankState):
            return  # a bank is never a member
        if state.id != device_id:
            self._refuse("id_mismatch", device_id, f"state id {state.id!r}")
            return
        ahead = state.ts - self.clock()
        if ahead > self.bank.future_tolerance:
            self._refuse("future", device_id, f"ts {ahead:.1f} s ahead of this clock")
            return
        received = self.monotonic()
        with self._cond:
            previous = self.members.get(device_id)
            gaps = self._gaps.setdefault(device_id, deque(maxlen=_INTERVALS))
            if previous is not None and received > previous.received:
                gaps.append(received - previous.received)
            self.members[device_id] = rules.Member(
                state=state,
                received=received,
                online=self.availability.get(device_id),
                info=self.infos.get(device_id),
                interval=statistics.median(gaps) if gaps else None,
            )
        self._touch()

    def on_availability(self, topic: str, payload: bytes) -> None:
        """``bms/<id>/availability``: ``online``/``offline`` of a member."""
        found = topics.AVAILABILITY.match(topic)
        if found is None or not self.is_member(found["id"]):
            return
        device_id = found["id"]
        text = payload.decode(errors="replace")
        if text not in (topics.ONLINE, topics.OFFLINE, ""):
            self._refuse("bad_availability", device_id, repr(text[:40]))
            return
        online = None if text == "" else text == topics.ONLINE
        with self._cond:
            if online is None:
                self.availability.pop(device_id, None)
            else:
                self.availability[device_id] = online
            member = self.members.get(device_id)
            if member is not None:
                self.members[device_id] = dataclasses.replace(member, online=online)
        self._touch()

    def on_info(self, topic: str, payload: bytes) -> None:
        """``bms/<id>/info``: a member's identity (design capacity, cell count)."""
        found = topics.INFO.match(topic)
        if found is None or not self.is_member(found["id"]) or not payload:
            return
        device_id = found["id"]
        try:
            info = schema.decode(schema.INFO_DECODER, payload)
        except schema.MessageError as exc:
            self._refuse("bad_info", device_id, str(exc))
            return
        if info.kind != "battery":
            return
        with self._cond:
            self.infos[device_id] = info
            member = self.members.get(device_id)
            if member is not None:
                self.members[device_id] = dataclasses.replace(member, info=info)

    def on_set(self, _topic: str, payload: bytes) -> None:
        """``bms/<bank>/set`` handler: :meth:`command`."""
        self.command(payload)

    def on_retained_set(self, _topic: str) -> None:
        """A retained ``bms/<bank>/set`` (never applied): counted as ``overrides.retained`` and
        answered ``ok: false`` on ``bms/<bank>/set/result``; the current lease stays."""
        self.overrides["retained"] += 1
        if self.publisher is not None:
            self.publisher.result(
                self.bank_id,
                schema.SetResult(ok=False, ts=self.clock(), error=RETAINED_COMMAND_REFUSED),
            )

    def command(self, payload: bytes) -> schema.SetResult:
        """Accept or reject a ``LimitsOverride`` payload; answer on ``bms/<bank>/set/result``.

        A command with no limit clears the lease. Rejections (bad JSON, wrong type, negative,
        non-finite, unknown field, ``ttl`` above 3600 s or ``max_override_ttl``) leave the current
        lease as it is. Returns the :class:`~bmslink.schema.SetResult` it published.
        """
        now = self.clock()
        result: schema.SetResult
        try:
            command: schema.LimitsOverride = schema.decode(schema.OVERRIDE_DECODER, payload)
            if command.ttl > self.bank.max_override_ttl:
                raise schema.MessageError(
                    f"ttl {command.ttl} s is above max_override_ttl "
                    f"{self.bank.max_override_ttl} s - at `$.ttl`"
                )
        except schema.MessageError as exc:
            self.overrides["rejected"] += 1
            log.warning("rejected override for %s: %s", self.bank_id, exc)
            result = schema.SetResult(ok=False, ts=now, error=str(exc))
        else:
            limits = (
                command.charge_current_limit,
                command.discharge_current_limit,
                command.charge_voltage_limit,
            )
            with self._cond:
                if all(v is None for v in limits):
                    self.override = None
                    self._override_deadline = None
                    expires = None
                    self.overrides["cleared"] += 1
                else:
                    expires = now + command.ttl
                    self.override = rules.Override(*limits, expires=expires)
                    self._override_deadline = self.monotonic() + command.ttl
                    self.overrides["accepted"] += 1
            log.info(
                "override for %s: CCL %s A, DCL %s A, CVL %s V, ttl %s s",
                self.bank_id,
                *limits,
                command.ttl if expires else "-",
            )
            result = schema.SetResult(ok=True, ts=now, expires=expires)
            self._touch()
        if self.publisher is not None:
            self.publisher.result(self.bank_id, result)
        return result

    # --- computing and publishing ------------------------------------------------------------

    def compute(self) -> schema.BankState:
        """The bank state now (drops an expired lease first). Thread-safe."""
        with self._cond:
            if self._override_deadline is not None and self.monotonic() >= self._override_deadline:
                log.info("override for %s expired", self.bank_id)
                self.override = None
                self._override_deadline = None
            members = dict(self.members)
            configured = self.configured()
            override = self.override
            full = self.full
        result = rules.aggregate(
            self.bank_id,
            configured,
            members,
            self.bank,
            self.clock(),
            override,
            full,
            monotonic=self.monotonic(),
        )
        state = result.state
        # Energy counters are monotonic: a member whose retained state vanished must not make
        # the bank's counters go down.
        charged = max(self._energy[0], state.energy_charged or 0.0)
        discharged = max(self._energy[1], state.energy_discharged or 0.0)
        if (charged, discharged) != (0.0, 0.0):
            state = msgspec.structs.replace(
                state, energy_charged=charged, energy_discharged=discharged
            )
        self._energy = (charged, discharged)
        self.full = result.full
        return state

    def publish(self) -> schema.BankState:
        """Compute and publish the bank state (and info/availability when they change)."""
        state = self.compute()
        if self.publisher is not None:
            if state.members != self._info_members:
                self._info_members = list(state.members)
                self.publisher.info(
                    schema.BatteryInfo(
                        id=self.bank_id,
                        kind="bank",
                        name=self.bank.name or self.bank_id,
                        manufacturer="bmslink",
                        model="virtual bank",
                        service=SERVICE,
                        instance=self.instance,
                        members=list(state.members),
                    )
                )
            self.publisher.state(state)
            online = not state.failsafe
            if online is not self._online:
                self._online = online
                self.publisher.availability(self.bank_id, online)
        self.last_state = state
        self.published += 1
        return state

    def run(self, stop: threading.Event) -> None:
        """Publish every ``period`` s and ``min_interval`` s after an update, until ``stop``."""
        last = float("-inf")
        next_stats = self.monotonic() + STATS_PERIOD
        while not stop.is_set():
            with self._cond:
                now = self.monotonic()
                due = last + self.bank.period
                if self._dirty:
                    due = min(due, last + self.bank.min_interval)
                if self._override_deadline is not None:
                    due = min(due, max(self._override_deadline, last + self.bank.min_interval))
                if now < due:
                    self._cond.wait(min(due - now, _WAKE_MAX))
                    continue
                self._dirty = False
            last = self.monotonic()
            try:
                self.publish()
            except Exception:
                # A bug must not stop the bank: count it and publish again next period.
                self.refused["internal_error"] += 1
                log.exception("bank computation failed")
            if last >= next_stats:
                log.info("stats %s", json.dumps(self.stats()))
                next_stats = last + STATS_PERIOD

    def wake(self) -> None:
        """Wake the loop (used at shutdown)."""
        with self._cond:
            self._cond.notify_all()

    def stats(self) -> dict[str, object]:
        """Counters for the periodic ``stats`` log line."""
        return {
            "published": self.published,
            "members": len(self.members),
            "refused": dict(self.refused),
            "overrides": dict(self.overrides),
        }

    def attach(self, mqtt: MqttRuntime) -> None:
        """Subscribe the handlers (now and after every reconnect)."""
        mqtt.subscribe(topics.STATE.subscription, self.on_state)
        mqtt.subscribe(topics.AVAILABILITY.subscription, self.on_availability)
        mqtt.subscribe(topics.INFO.subscription, self.on_info)
        mqtt.subscribe_commands(
            topics.SET.format(id=self.bank_id), self.on_set, self.on_retained_set
        )

    def shutdown(self) -> None:
        """Publish ``offline`` as the bank's availability (the process is going away)."""
        if self.publisher is not None:
            self.publisher.availability(self.bank_id, False)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one bank until SIGTERM/SIGINT; returns the exit status (2 for a bad config)."""
    parser = base_parser("Aggregate the batteries of a bank into one virtual BMS on MQTT.")
    ctx = start_service(SERVICE, "banks", BankConfig, parser, argv, device_ids=device_ids)
    bank: BankConfig = ctx.loaded.section
    bid = bank_id(bank, ctx.instance)
    if not re.match(schema.ID_PATTERN, bid):
        print(
            f"bmslink: configuration error: bank id {bid!r} is not a slug; "
            f"set `banks.{ctx.instance}.id`",
            file=sys.stderr,
        )
        ctx.close()
        return EXIT_CONFIG
    if bid in bank.members:
        log.warning("bank %s lists itself as a member; ignored", bid)
    aggregator = Aggregator(bid, bank, DevicePublisher(ctx.mqtt), instance=ctx.instance)
    aggregator.attach(ctx.mqtt)
    ctx.on_close(aggregator.shutdown)
    log.info(
        "bank %s: members %s, period %s s, min_interval %s s, stale_after %s s",
        bid,
        bank.members or "every battery",
        bank.period,
        bank.min_interval,
        bank.stale_after,
    )
    aggregator.run(ctx.stop)
    log.info("stats %s", json.dumps(aggregator.stats()))
    ctx.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
