"""Embedded pure-Python MQTT broker (amqtt, MQTT 3.1.1) for ``bmslink demo`` without Mosquitto.

Only used when the mosquitto binary is missing and cannot be installed (not root). Run as
``python -m bmslink.cli.fallback_broker --port N``; amqtt 0.12.1 comes with the workspace's dev
dependency group. Listens on 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from typing import Any


async def serve(port: int) -> None:
    """Run the broker on 127.0.0.1:``port`` until SIGTERM/SIGINT."""
    from amqtt.broker import Broker  # type: ignore[import-untyped,import-not-found,unused-ignore]

    config: dict[str, Any] = {
        "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{port}"}},
        "sys_interval": 0,
        "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
    }
    broker = Broker(config)
    await broker.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await broker.shutdown()


def main() -> None:
    """Parse ``--port`` and serve."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=1883)
    asyncio.run(serve(parser.parse_args().port))


if __name__ == "__main__":
    main()
