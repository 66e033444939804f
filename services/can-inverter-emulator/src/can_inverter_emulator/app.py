"""can-inverter-emulator: presents one bank to its inverters as a Pylontech LV CAN BMS.

Subscribes to ``bms/<bank>/state``; every output sends the frame set of the latest fresh state
each ``period`` (or the fail-safe set) on its own CAN interface and watches the inverter's 0x305.

Publishes ``bmslink/can-inverter-emulator/<instance>/status`` (runtime) and, per output,
:data:`LINK_TOPIC` (``up``/``down``, retained) and :data:`MODE_TOPIC` (``normal``/``failsafe``,
retained).
"""

from __future__ import annotations

import argparse
import collections
import json
import logging
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import can

from bmslink import config as cfgmod
from bmslink import schema, topics
from bmslink.canbus import BusOpenError, open_bus
from bmslink.service import base_parser, start_service
from can_inverter_emulator.config import EmulatorConfig, resolve_shares, site_shares
from can_inverter_emulator.output import BankFeed, Output

SERVICE = "can-inverter-emulator"
LINK_TOPIC = topics.INVERTER_LINK.pattern
"""Retained ``up``/``down``: whether the inverter's 0x305 arrived within ``heartbeat_timeout``."""
MODE_TOPIC = topics.INVERTER_MODE.pattern
"""Retained ``normal``/``failsafe``: which frame set the output sends now."""
STATS_PERIOD = 60.0
HEALTH_PERIOD = 5.0
"""s between two liveness checks (heartbeat for the container health check)."""
_RECV_SLICE = 0.1
_FAILED_CYCLES_BEFORE_REOPEN = 3

log = logging.getLogger(SERVICE)


@dataclass
class OutputStats:
    """Counters of one output."""

    cycles: int = 0
    failsafe_cycles: int = 0
    frames_sent: int = 0
    send_errors: int = 0
    heartbeats: int = 0
    reopens: int = 0
    errors: collections.Counter[str] = field(default_factory=collections.Counter)

    def as_dict(self) -> dict[str, object]:
        """JSON-ready view."""
        return {
            "cycles": self.cycles,
            "failsafe_cycles": self.failsafe_cycles,
            "frames_sent": self.frames_sent,
            "send_errors": self.send_errors,
            "heartbeats": self.heartbeats,
            "reopens": self.reopens,
            "errors": dict(self.errors),
        }


Notify = Callable[[str, str], None]
"""``notify(kind, value)``: ``link`` (``up``/``down``) or ``mode`` (``normal``/``failsafe``)."""


class OutputRunner:
    """Runs one :class:`Output` on its CAN interface in a daemon thread.

    Cycles are scheduled on period boundaries of the monotonic clock (``start + k·period``; a
    missed boundary is skipped, never sent twice). Between boundaries it receives frames (0x305)
    in slices of at most 0.1 s. A send failure (no ACK: ENOBUFS, adapter gone) is counted and
    logged, never fatal; after 3 cycles in which every send failed, or a receive error, the bus
    is closed and reopened with back-off up to ``reopen_max`` s.
    """

    def __init__(
        self,
        output: Output,
        stop: threading.Event,
        notify: Notify,
        *,
        bus_factory: Callable[[], can.BusABC] | None = None,
    ) -> None:
        self.output = output
        self.stop = stop
        self.notify = notify
        self.stats = OutputStats()
        self.last_cycle_at: float | None = None
        cfg = output.cfg
        self._bus_factory = bus_factory or (
            lambda: open_bus(cfg.interface, cfg.channel, cfg.bitrate, open_delay=cfg.open_delay)
        )
        self._thread = threading.Thread(target=self._run, name=f"output {output.name}", daemon=True)
        self._reported_mode: str | None = None

    def start(self) -> None:
        """Start the thread."""
        self._thread.start()

    def join(self, timeout: float = 5.0) -> None:
        """Wait for the thread (after ``stop`` is set)."""
        self._thread.join(timeout)

    def _check_link(self, now: float) -> None:
        change = self.output.link_change(now)
        if change is not None:
            log.info("%s: inverter link %s", self.output.name, "up" if change else "down")
            self.notify("link", "up" if change else "down")

    def _run(self) -> None:
        backoff = 0.5
        self._check_link(time.monotonic())
        while not self.stop.is_set():
            try:
                bus = self._bus_factory()
            except BusOpenError as exc:
                self.stats.errors["open"] += 1
                log.warning("%s: %s; retrying in %.1f s", self.output.name, exc, backoff)
                self._check_link(time.monotonic())
                self.stop.wait(backoff)
                backoff = min(backoff * 2, self.output.cfg.reopen_max)
                continue
            backoff = 0.5
            cfg = self.output.cfg
            log.info("%s: sending on %s %s", self.output.name, cfg.interface, cfg.channel)
            try:
                self._serve(bus)
            except Exception as exc:  # a broken bus must not end the output: reopen it
                self.stats.errors[type(exc).__name__] += 1
                log.warning("%s: bus failed (%s); reopening", self.output.name, exc)
            finally:
                try:
                    bus.shutdown()
                except Exception as exc:
                    log.debug("%s: shutdown: %s", self.output.name, exc)
            if not self.stop.is_set():
                self.stats.reopens += 1
                self.stop.wait(backoff)

    def _serve(self, bus: can.BusABC) -> None:
        period = self.output.cfg.period
        next_at = time.monotonic()
        failed_cycles = 0
        while not self.stop.is_set():
            now = time.monotonic()
            if now >= next_at:
                if self._send_cycle(bus, now):
                    failed_cycles = 0
                else:
                    failed_cycles += 1
                    if failed_cycles >= _FAILED_CYCLES_BEFORE_REOPEN:
                        raise can.CanOperationError("every send failed for 3 cycles")
                next_at += period
                while next_at <= now:  # we fell behind (suspend, GC): skip, never burst
                    next_at += period
            self._check_link(time.monotonic())
            msg = bus.recv(timeout=max(0.0, min(_RECV_SLICE, next_at - time.monotonic())))
            if (
                msg is not None
                and not msg.is_error_frame
                and self.output.on_frame(msg.arbitration_id, msg.is_extended_id, time.monotonic())
            ):
                self.stats.heartbeats += 1

    def _send_cycle(self, bus: can.BusABC, now: float) -> bool:
        """Send one frame set; returns False when every frame failed."""
        cycle = self.output.cycle(now, time.time())
        self.stats.cycles += 1
        self.last_cycle_at = now
        if cycle.mode == "failsafe":
            self.stats.failsafe_cycles += 1
        if cycle.mode != self._reported_mode:
            if cycle.mode == "failsafe":
                log.warning("%s: sending the fail-safe set: %s", self.output.name, cycle.reason)
            else:
                log.info("%s: sending the bank's frames", self.output.name)
            self._reported_mode = cycle.mode
            self.notify("mode", cycle.mode)
        sent = 0
        for can_id, data in cycle.frames:
            msg = can.Message(arbitration_id=can_id, data=data, is_extended_id=False)
            try:
                bus.send(msg, timeout=0.05)
                sent += 1
            except can.CanError as exc:
                self.stats.send_errors += 1
                if self.stats.send_errors in (1, 10, 100) or self.stats.send_errors % 1000 == 0:
                    log.warning(
                        "%s: send 0x%03X failed (%s); %d send errors so far",
                        self.output.name,
                        can_id,
                        exc,
                        self.stats.send_errors,
                    )
        self.stats.frames_sent += sent
        return sent > 0 or not cycle.frames


class Emulator:
    """The service without process concerns: bank feed, outputs and their runners."""

    def __init__(
        self,
        config: EmulatorConfig,
        instance: str,
        publish: Callable[[str, str], None],
        stop: threading.Event,
        *,
        bus_factories: dict[str, Callable[[], can.BusABC]] | None = None,
        shares: dict[str, float] | None = None,
    ) -> None:
        self.config = config
        self.instance = instance
        self.feed = BankFeed(config.future_tolerance)
        self.rejected: collections.Counter[str] = collections.Counter()
        self.runners: dict[str, OutputRunner] = {}
        if shares is None:  # this instance alone
            shares = {o: s for (_i, o), s in resolve_shares({instance: config}).items()}
        for name, out_cfg in config.outputs.items():
            output = Output(name, out_cfg, self.feed, config.stale_after, shares[name])

            def notify(kind: str, value: str, name: str = name) -> None:
                pattern = LINK_TOPIC if kind == "link" else MODE_TOPIC
                publish(pattern.format(instance=instance, output=name), value)

            factory = (bus_factories or {}).get(name)
            self.runners[name] = OutputRunner(output, stop, notify, bus_factory=factory)

    def sending(self) -> bool:
        """Whether every output completed a frame cycle within 3 periods (at least 5 s)."""
        now = time.monotonic()
        for runner in self.runners.values():
            last = runner.last_cycle_at
            if last is None or now - last > max(5.0, 3 * runner.output.cfg.period):
                return False
        return True

    @property
    def state_topic(self) -> str:
        """``bms/<bank>/state``."""
        return topics.STATE.format(id=self.config.bank)

    def on_state(self, _topic: str, payload: bytes) -> None:
        """MQTT handler of ``bms/<bank>/state``: keep the newest valid BankState.

        A payload that is not a BankState of this bank, or one stamped more than
        ``future_tolerance`` s ahead, is refused, counted and logged; one older than the state
        held is dropped and counted (``older``)."""
        if not payload:
            return
        try:
            state = schema.decode(schema.BANK_STATE_DECODER, payload)
        except schema.MessageError as exc:
            self.rejected["invalid"] += 1
            log.warning("refused bank state on %s: %s", self.state_topic, exc)
            return
        if state.id != self.config.bank:
            self.rejected["wrong_id"] += 1
            log.warning("refused bank state of %r on %s", state.id, self.state_topic)
            return
        wall = time.time()
        verdict = self.feed.put(state, time.monotonic(), wall)
        if verdict == "future":
            self.rejected["future"] += 1
            log.warning(
                "refused bank state stamped %.1f s ahead (future_tolerance %.1f s)",
                state.ts - wall,
                self.config.future_tolerance,
            )
        elif verdict == "older":
            self.rejected["older"] += 1

    def start(self) -> None:
        """Start every output."""
        for runner in self.runners.values():
            runner.start()

    def join(self) -> None:
        """Wait for the outputs to stop."""
        for runner in self.runners.values():
            runner.join()

    def stats(self) -> dict[str, object]:
        """Counters of every output and of refused states."""
        return {
            "bank_updates": self.feed.updates,
            "rejected": dict(self.rejected),
            "outputs": {n: r.stats.as_dict() for n, r in self.runners.items()},
        }


def _shares_or_exit(
    parser: argparse.ArgumentParser, argv: Sequence[str] | None
) -> dict[str, float]:
    """This instance's output shares over the whole site file (:func:`site_shares`), checked
    before the service connects: a bad instance or shares exit 2 naming the keys. Without
    ``--instance`` it returns {} and ``start_service`` reports the missing argument."""
    args, _rest = parser.parse_known_args(argv)
    if not args.instance:
        return {}
    path = args.config if args.config else cfgmod.default_path()
    try:
        own = cfgmod.load("inverters", EmulatorConfig, instance=args.instance, path=path)
        return site_shares(args.instance, own.section, path)
    except cfgmod.ConfigError as exc:
        print(f"bmslink: configuration error: {exc}", file=sys.stderr)
        raise SystemExit(cfgmod.EXIT_CONFIG) from exc


def main(argv: Sequence[str] | None = None) -> int:
    """Run the emulator until SIGTERM/SIGINT; returns the exit status (2 for a bad config)."""
    parser = base_parser("Present a bank to inverters as a Pylontech LV CAN BMS.")
    shares = _shares_or_exit(parser, argv)
    ctx = start_service(SERVICE, "inverters", EmulatorConfig, parser, argv)
    config: EmulatorConfig = ctx.loaded.section

    def publish(topic: str, value: str) -> None:
        ctx.mqtt.publish(topic, value, retain=True, qos=1, sticky=True)

    emulator = Emulator(config, ctx.instance, publish, ctx.stop, shares=shares)
    ctx.mqtt.subscribe(emulator.state_topic, emulator.on_state)
    emulator.start()
    log.info(
        "bank %s -> outputs %s (stale_after %.1f s)",
        config.bank,
        ", ".join(f"{n}={o.interface}:{o.channel}" for n, o in config.outputs.items()),
        config.stale_after,
    )
    next_stats = time.monotonic() + STATS_PERIOD
    while not ctx.stop.wait(HEALTH_PERIOD):
        # Health for the emulator means "every output is sending frames" (bmslink.health):
        # its MQTT publishes happen only on changes.
        if emulator.sending():
            ctx.mqtt.heartbeat.beat()
        if time.monotonic() >= next_stats:
            log.info("stats %s", json.dumps(emulator.stats()))
            next_stats = time.monotonic() + STATS_PERIOD
    emulator.join()
    log.info("stats %s", json.dumps(emulator.stats()))
    ctx.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
