"""pylontech-rs485-reader: polls Pylontech LV packs on one RS485 bus and publishes them.

Publishes ``bms/<id>/state``, ``bms/<id>/info`` and ``bms/<id>/availability`` per pack (see
``bmslink.topics``) and ``bmslink/pylontech-rs485-reader/<instance>/status``.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

from bmslink.energy import EnergyStore
from bmslink.polling import run_polling
from bmslink.publisher import DevicePublisher
from bmslink.service import base_parser, start_service
from pylontech_rs485_reader.config import BusConfig, device_ids
from pylontech_rs485_reader.poller import Poller
from pylontech_rs485_reader.transport import CaptureWriter, SerialTransport

SERVICE = "pylontech-rs485-reader"
log = logging.getLogger(SERVICE)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the reader until SIGTERM/SIGINT; returns the exit status (2 for a bad config)."""
    parser = base_parser("Poll Pylontech LV packs on RS485 and publish them to MQTT.")
    parser.add_argument(
        "--capture", default=None, help="append every frame to this JSON-lines file"
    )
    ctx = start_service(SERVICE, "pylontech_rs485", BusConfig, parser, argv, device_ids=device_ids)
    bus: BusConfig = ctx.loaded.section
    capture_path = ctx.args.capture or bus.capture
    capture = CaptureWriter(capture_path) if capture_path else None
    transport = SerialTransport(bus.port, bus.baudrate, capture)
    storage = ctx.loaded.storage
    energy = EnergyStore(storage.state_dir, f"{SERVICE}-{ctx.instance}", storage.save_interval)
    energy.seed_from_broker(ctx.mqtt, device_ids(bus, ctx.instance))
    poller = Poller(bus, transport, DevicePublisher(ctx.mqtt), energy, ctx.instance, ctx.stop)
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
    return run_polling(ctx, poller.poll_once, bus.poll_interval, poller.stats)


if __name__ == "__main__":
    sys.exit(main())
