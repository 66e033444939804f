"""daly-ble-reader: polls the Daly BMSes of one adapter (BLE or serial) and publishes them.

Publishes ``bms/<id>/state``, ``bms/<id>/info`` and ``bms/<id>/availability`` per device and
``bmslink/daly-ble-reader/<instance>/status``; listens on ``bms/<id>/set`` for MOSFET commands
(:class:`bmslink.schema.SwitchCommand`) and answers on ``bms/<id>/set/result``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import threading
from collections.abc import Callable, Sequence

from bmslink import topics
from bmslink.energy import EnergyStore
from bmslink.publisher import DevicePublisher
from bmslink.service import ServiceContext, base_parser, start_service
from daly_ble_reader.config import DalyConfig, device_ids
from daly_ble_reader.poller import SERVICE, DeviceStore, Poller
from daly_ble_reader.transport import CaptureWriter

STATS_PERIOD = 60.0
log = logging.getLogger(SERVICE)


async def _serve(ctx: ServiceContext, poller: Poller) -> None:
    stop = asyncio.Event()

    async def watch(flag: threading.Event) -> None:
        while not flag.is_set():
            await asyncio.sleep(0.1)
        stop.set()

    async def report() -> None:
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), STATS_PERIOD)
            except TimeoutError:
                log.info("stats %s", json.dumps(poller.stats.as_dict()))

    watcher = asyncio.create_task(watch(ctx.stop))
    reporter = asyncio.create_task(report())
    try:
        await poller.run(stop)
    finally:
        stop.set()
        watcher.cancel()
        reporter.cancel()


def _command_handler(poller: Poller, device_id: str) -> Callable[[str, bytes], None]:
    def handle(_topic: str, payload: bytes) -> None:
        poller.submit(device_id, payload)

    return handle


def _refuse_handler(poller: Poller, device_id: str) -> Callable[[str], None]:
    def refuse(_topic: str) -> None:
        poller.refuse_retained(device_id)

    return refuse


def main(argv: Sequence[str] | None = None) -> int:
    """Run the reader until SIGTERM/SIGINT; returns the exit status (2 for a bad config)."""
    parser = base_parser("Poll Daly BMSes over Bluetooth LE or serial and publish them to MQTT.")
    parser.add_argument(
        "--capture",
        default=None,
        help="append every frame / BLE notification (with timestamps) to this JSON-lines file",
    )
    ctx = start_service(SERVICE, "daly", DalyConfig, parser, argv, device_ids=device_ids)
    cfg: DalyConfig = ctx.loaded.section
    capture_path = ctx.args.capture or cfg.capture
    capture = CaptureWriter(capture_path) if capture_path else None
    storage = ctx.loaded.storage
    name = f"{SERVICE}-{ctx.instance}"
    energy = EnergyStore(storage.state_dir, name, storage.save_interval)
    energy.seed_from_broker(ctx.mqtt, device_ids(cfg, ctx.instance))
    store = DeviceStore(storage.state_dir, name)
    poller = Poller(cfg, DevicePublisher(ctx.mqtt), energy, ctx.instance, store, capture)
    for device in cfg.devices:
        ctx.mqtt.subscribe_commands(
            topics.SET.format(id=device.id),
            _command_handler(poller, device.id),
            _refuse_handler(poller, device.id),
        )
    log.info(
        "polling %d Daly device(s) over %s%s",
        len(cfg.devices),
        cfg.transport,
        f" {cfg.port}" if cfg.port else "",
    )
    try:
        asyncio.run(_serve(ctx, poller))
    finally:
        log.info("stats %s", json.dumps(poller.stats.as_dict()))
        if capture:
            capture.close()
        ctx.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
