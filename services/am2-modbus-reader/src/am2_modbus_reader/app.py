"""am2-modbus-reader: polls Hubble Lithium AM2 / PACE BMS packs on one Modbus RTU bus.

Publishes ``bms/<id>/state``, ``bms/<id>/info`` and ``bms/<id>/availability`` per pack (see
``bmslink.topics``) and ``bmslink/am2-modbus-reader/<instance>/status``.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

from am2_modbus_reader.config import BusConfig, device_ids
from am2_modbus_reader.poller import SERVICE, Poller
from am2_modbus_reader.transport import CaptureWriter, ModbusTransport
from bmslink.energy import EnergyStore
from bmslink.polling import run_polling
from bmslink.publisher import DevicePublisher
from bmslink.service import base_parser, start_service

log = logging.getLogger(SERVICE)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the reader until SIGTERM/SIGINT; returns the exit status (2 for a bad config)."""
    parser = base_parser("Poll PACE BMS packs (Hubble AM2, ...) over Modbus RTU; publish to MQTT.")
    parser.add_argument(
        "--capture", default=None, help="append every frame to this JSON-lines file (hex)"
    )
    ctx = start_service(SERVICE, "pace_modbus", BusConfig, parser, argv, device_ids=device_ids)
    bus: BusConfig = ctx.loaded.section
    capture_path = ctx.args.capture or bus.capture
    capture = CaptureWriter(capture_path) if capture_path else None
    transport = ModbusTransport(bus.port, bus.baudrate, bus.timeout, capture)
    storage = ctx.loaded.storage
    energy = EnergyStore(storage.state_dir, f"{SERVICE}-{ctx.instance}", storage.save_interval)
    energy.seed_from_broker(ctx.mqtt, device_ids(bus, ctx.instance))
    poller = Poller(bus, transport, DevicePublisher(ctx.mqtt), energy, ctx.instance, ctx.stop)
    ctx.on_close(poller.shutdown)
    if capture:
        ctx.on_close(capture.close)
    log.info(
        "polling %s at %d Bd, slaves %s, %d cells", bus.port, bus.baudrate, bus.addresses, bus.cells
    )
    return run_polling(ctx, poller.poll_once, bus.poll_interval, poller.stats)


if __name__ == "__main__":
    sys.exit(main())
