"""pylontech-rs485-reader: polls Pylontech LV packs on one RS485 bus and publishes them.

Publishes ``bms/<id>/state``, ``bms/<id>/info`` and ``bms/<id>/availability`` per pack (see
``bmslink.topics``) and ``bmslink/pylontech-rs485-reader/<instance>/status``.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Sequence

from bmslink import schema, topics
from bmslink.derived import EnergyStore
from bmslink.mqtt import MqttRuntime
from bmslink.service import base_parser, start_service
from pylontech_rs485_reader.config import BusConfig
from pylontech_rs485_reader.poller import Poller
from pylontech_rs485_reader.transport import CaptureWriter, SerialTransport

SERVICE = "pylontech-rs485-reader"
STATS_PERIOD = 60.0
log = logging.getLogger(SERVICE)


class MqttSink:
    """Publishes the poller's results; state, info and availability are sticky (re-published
    after a reconnect)."""

    def __init__(self, mqtt: MqttRuntime) -> None:
        self.mqtt = mqtt

    def state(self, state: schema.BatteryState) -> None:
        """Publish ``bms/<id>/state`` (retained, QoS 1)."""
        t = topics.STATE
        self.mqtt.publish(
            t.format(id=state.id), schema.encode(state), retain=t.retained, qos=t.qos, sticky=True
        )

    def availability(self, device_id: str, online: bool) -> None:
        """Publish ``bms/<id>/availability`` (retained)."""
        t = topics.AVAILABILITY
        value = topics.ONLINE if online else topics.OFFLINE
        self.mqtt.publish(t.format(id=device_id), value, retain=t.retained, qos=t.qos, sticky=True)

    def info(self, info: schema.BatteryInfo) -> None:
        """Publish ``bms/<id>/info`` (retained)."""
        t = topics.INFO
        self.mqtt.publish(
            t.format(id=info.id), schema.encode(info), retain=t.retained, qos=t.qos, sticky=True
        )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the reader until SIGTERM/SIGINT; returns the exit status (2 for a bad config)."""
    parser = base_parser("Poll Pylontech LV packs on RS485 and publish them to MQTT.")
    parser.add_argument(
        "--capture", default=None, help="append every frame to this JSON-lines file"
    )
    ctx = start_service(SERVICE, "pylontech_rs485", BusConfig, parser, argv)
    bus: BusConfig = ctx.loaded.section
    capture_path = ctx.args.capture or bus.capture
    capture = CaptureWriter(capture_path) if capture_path else None
    transport = SerialTransport(bus.port, bus.baudrate, capture)
    storage = ctx.loaded.storage
    energy = EnergyStore(storage.state_dir, f"{SERVICE}-{ctx.instance}", storage.save_interval)
    poller = Poller(bus, transport, MqttSink(ctx.mqtt), energy, ctx.instance, ctx.stop)
    ctx.on_close(poller.shutdown)
    if capture:
        ctx.on_close(capture.close)
    log.info(
        "polling %s at %d Bd, addresses %s (%s)",
        bus.port,
        bus.baudrate,
        bus.addresses,
        bus.stack_query,
    )
    next_stats = time.monotonic() + STATS_PERIOD
    while not ctx.stop.is_set():
        started = time.monotonic()
        try:
            poller.poll_once()
        except Exception:
            # A bug must not take the bus down with it: log, count, keep polling.
            poller.stats.refused["internal_error"] += 1
            log.exception("poll cycle failed")
        if started >= next_stats:
            log.info("stats %s", json.dumps(poller.stats.as_dict()))
            next_stats = started + STATS_PERIOD
        ctx.stop.wait(max(0.0, bus.poll_interval - (time.monotonic() - started)))
    log.info("stats %s", json.dumps(poller.stats.as_dict()))
    ctx.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
