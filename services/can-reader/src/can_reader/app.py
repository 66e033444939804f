"""can-reader: reads one Pylontech LV CAN BMS on one CAN interface and publishes it.

Publishes ``bms/<id>/state``, ``bms/<id>/info``, ``bms/<id>/availability`` (see
``bmslink.topics``) and ``bmslink/can-reader/<instance>/status``.
"""

from __future__ import annotations

import collections
import json
import logging
import sys
import threading
import time
from collections.abc import Callable, Sequence

import can

from bmslink.canbus import BusOpenError, open_bus
from bmslink.derived import complete
from bmslink.energy import EnergyStore
from bmslink.protocols import pylontech_can as pc
from bmslink.publisher import DevicePublisher
from bmslink.service import base_parser, start_service
from can_reader.assembler import Assembler
from can_reader.config import ReaderConfig, device_ids

SERVICE = "can-reader"
STATS_PERIOD = 60.0
_RECV_SLICE = 0.05
log = logging.getLogger(SERVICE)


class Reader:
    """The reader loop without process concerns (testable on a ``virtual`` bus).

    ``sink`` is a :class:`~bmslink.publisher.DevicePublisher` (or a fake with ``state``,
    ``availability`` and ``info``). ``run`` blocks until ``stop`` is set; a bus that fails is
    reopened with back-off; every battery goes ``offline`` while its bus is down.
    """

    def __init__(
        self,
        cfg: ReaderConfig,
        instance: str,
        sink: DevicePublisher,
        energy: EnergyStore,
        stop: threading.Event,
        *,
        bus_factory: Callable[[], can.BusABC] | None = None,
    ) -> None:
        self.cfg = cfg
        self.sink = sink
        self.energy = energy
        self.stop = stop
        device_id = device_ids(cfg, instance)[0]
        self.assembler = Assembler(device_id, cfg, f"{cfg.interface}:{cfg.channel}", instance)
        self.online: bool | None = None
        self.info_sent: object = None
        self.frames = 0
        self.states = 0
        self.heartbeats_sent = 0
        self.refused: collections.Counter[str] = collections.Counter()
        self._bus_factory = bus_factory or (
            lambda: open_bus(
                cfg.interface,
                cfg.channel,
                cfg.bitrate,
                open_delay=cfg.open_delay,
                listen_only=cfg.mode == "listen_only",
            )
        )

    def stats(self) -> dict[str, object]:
        """Counters: frames, states published, heartbeats sent, refused frames by error."""
        return {
            "frames": self.frames,
            "states": self.states,
            "heartbeats_sent": self.heartbeats_sent,
            "refused": dict(self.refused),
        }

    def _set_online(self, online: bool) -> None:
        if online is not self.online:
            if self.online is not None or online:
                log.info("%s is %s", self.assembler.device_id, "online" if online else "offline")
            self.online = online
            self.sink.availability(self.assembler.device_id, online)

    def run(self) -> None:
        """Read until ``stop``; reopen the bus with back-off after failures."""
        backoff = 0.5
        while not self.stop.is_set():
            try:
                bus = self._bus_factory()
            except BusOpenError as exc:
                self.refused["open"] += 1
                log.warning("%s; retrying in %.1f s", exc, backoff)
                self._set_online(False)
                self.stop.wait(backoff)
                backoff = min(backoff * 2, self.cfg.reopen_max)
                continue
            backoff = 0.5
            log.info("reading %s %s (%s)", self.cfg.interface, self.cfg.channel, self.cfg.mode)
            try:
                self._serve(bus)
            except Exception as exc:  # a failing adapter must not end the service
                self.refused[type(exc).__name__] += 1
                log.warning("bus failed (%s); reopening", exc)
                self._set_online(False)
            finally:
                try:
                    bus.shutdown()
                except Exception as exc:
                    log.debug("shutdown: %s", exc)
            self.stop.wait(backoff)

    def _serve(self, bus: can.BusABC) -> None:
        next_heartbeat = time.monotonic()
        while not self.stop.is_set():
            if self.cfg.mode == "heartbeat" and time.monotonic() >= next_heartbeat:
                self._send_heartbeat(bus)
                next_heartbeat += self.cfg.heartbeat_period
            msg = bus.recv(timeout=_RECV_SLICE)
            now = time.monotonic()
            if msg is not None and not msg.is_error_frame and not msg.is_remote_frame:
                self.frames += 1
                try:
                    self.assembler.feed(
                        msg.arbitration_id, bytes(msg.data), msg.is_extended_id, now
                    )
                except pc.PylontechCanError as exc:
                    self.refused[type(exc).__name__] += 1
                    log.warning("refused frame 0x%03X: %s", msg.arbitration_id, exc)
            self.poll(now)

    def poll(self, now: float) -> None:
        """Publish a completed cycle; go offline after ``offline_after`` s of silence."""
        if self.assembler.due(now):
            state = self.assembler.take_state(now, time.time())
            if state is not None:
                info = self.assembler.info(now)
                if info != self.info_sent:
                    self.sink.info(info)
                    self.info_sent = info
                self._set_online(True)
                self.sink.state(complete(state, self.energy.counter(state.id)))
                self.states += 1
                self.energy.maybe_save()
        if self.online and not self.assembler.online(now):
            self._set_online(False)

    def _send_heartbeat(self, bus: can.BusABC) -> None:
        msg = can.Message(
            arbitration_id=pc.ID_HEARTBEAT, data=pc.encode_heartbeat(), is_extended_id=False
        )
        try:
            bus.send(msg, timeout=0.05)
            self.heartbeats_sent += 1
        except can.CanError as exc:
            self.refused["heartbeat_send"] += 1
            log.debug("0x305 not sent: %s", exc)

    def shutdown(self) -> None:
        """Report the battery offline and save the energy counters."""
        if self.online:
            self._set_online(False)
        self.energy.save()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the reader until SIGTERM/SIGINT; returns the exit status (2 for a bad config)."""
    parser = base_parser("Read a Pylontech LV CAN BMS and publish it to MQTT.")
    ctx = start_service(SERVICE, "can_reader", ReaderConfig, parser, argv, device_ids=device_ids)
    cfg: ReaderConfig = ctx.loaded.section
    storage = ctx.loaded.storage
    energy = EnergyStore(storage.state_dir, f"{SERVICE}-{ctx.instance}", storage.save_interval)
    energy.seed_from_broker(ctx.mqtt, device_ids(cfg, ctx.instance))
    reader = Reader(cfg, ctx.instance, DevicePublisher(ctx.mqtt), energy, ctx.stop)
    ctx.on_close(reader.shutdown)
    thread = threading.Thread(target=reader.run, name="reader", daemon=True)
    thread.start()
    while not ctx.stop.wait(STATS_PERIOD):
        log.info("stats %s", json.dumps(reader.stats()))
    thread.join(5)
    log.info("stats %s", json.dumps(reader.stats()))
    ctx.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
