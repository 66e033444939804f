"""What every service process shares: command line, logging, signals, the stop event.

A service's ``main`` calls :func:`start_service`, which parses ``--config``/``--instance``,
loads its configuration (exit status 2 on error), sets up logging, installs SIGTERM/SIGINT
handlers that set :attr:`ServiceContext.stop`, and starts the MQTT runtime. The service loop
waits on ``ctx.stop`` and finally calls :meth:`ServiceContext.close`.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import FrameType
from typing import Any, TypeVar

import msgspec

from bmslink import config as cfg
from bmslink.mqtt import MqttRuntime

S = TypeVar("S", bound=msgspec.Struct)


@dataclass
class ServiceContext:
    """A running service instance: its configuration, MQTT runtime and stop event."""

    service: str
    loaded: cfg.Loaded
    mqtt: MqttRuntime
    args: argparse.Namespace
    stop: threading.Event = field(default_factory=threading.Event)
    _closers: list[Callable[[], None]] = field(default_factory=list)

    @property
    def instance(self) -> str:
        """The instance name (slug), e.g. ``rack1``."""
        return self.loaded.instance

    def on_close(self, closer: Callable[[], None]) -> None:
        """Run ``closer`` at :meth:`close`, before the status goes ``offline`` (LIFO)."""
        self._closers.append(closer)

    def close(self) -> None:
        """Run the closers, then publish ``offline`` and disconnect."""
        for closer in reversed(self._closers):
            try:
                closer()
            except Exception:
                logging.getLogger(self.service).exception("shutdown step failed")
        self.mqtt.stop()


def setup_logging(level: str) -> None:
    """Log to stderr as ``time level logger: message``."""
    logging.basicConfig(
        level=getattr(logging, level),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
        force=True,
    )


def install_signal_handlers(stop: threading.Event) -> None:
    """SIGTERM and SIGINT set ``stop`` (the loop then shuts down cleanly)."""

    def handle(signum: int, _frame: FrameType | None) -> None:
        logging.getLogger("bmslink").info("signal %d: stopping", signum)
        stop.set()

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)


def base_parser(description: str) -> argparse.ArgumentParser:
    """An argument parser with ``--config`` and ``--instance``."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--config",
        default=None,
        help="site TOML file (default: $BMSLINK_CONFIG, else /config/site.toml if present)",
    )
    parser.add_argument(
        "--instance",
        default=os.environ.get("BMSLINK_INSTANCE"),
        help="instance name: the table [<section>.<instance>] of the site file "
        "(default: $BMSLINK_INSTANCE)",
    )
    return parser


def start_service(
    service: str,
    section_name: str,
    section_type: type[S],
    parser: argparse.ArgumentParser,
    argv: Sequence[str] | None = None,
    *,
    instanced: bool = True,
    device_ids: Callable[[Any, str], list[str]] | None = None,
) -> ServiceContext:
    """Parse arguments, load configuration (exit 2 on error), set up logging and signals, and
    start the MQTT runtime (connecting in the background).

    Exit status 2, with one ``bmslink: configuration error: ...`` line, also for a site path
    that is a directory or not UTF-8 and, when ``instanced``, for an ``--instance`` the site
    file has no ``[<section_name>.<instance>]`` table for (the line lists the configured ones;
    see :func:`bmslink.config.load`): nothing is connected or published before that check.
    Without ``instanced`` (a single ``[<section_name>]`` table, e.g. ``[hass]``) the instance
    is not looked up.

    ``device_ids(section, instance)`` lists the device ids the instance publishes; with it the
    service answers ``--print-device-ids`` (a JSON list on stdout, then exit 0) — what
    ``bmslink credentials`` uses to give each service exactly its topics in the broker's ACL.
    """
    parser.add_argument(
        "--print-device-ids",
        action="store_true",
        help="print the device ids this instance publishes (JSON) and exit",
    )
    args = parser.parse_args(argv)
    if instanced and not args.instance:
        parser.error("--instance (or BMSLINK_INSTANCE) is required")
    path = args.config if args.config else cfg.default_path()
    loaded = cfg.load_or_exit(
        section_name, section_type, instance=args.instance if instanced else None, path=path
    )
    if args.print_device_ids:
        ids = device_ids(loaded.section, loaded.instance) if device_ids else []
        print(json.dumps(ids))
        raise SystemExit(0)
    setup_logging(loaded.log.level)
    stop = threading.Event()
    install_signal_handlers(stop)
    runtime = MqttRuntime(loaded.mqtt, service, loaded.instance)
    runtime.start()
    return ServiceContext(service=service, loaded=loaded, mqtt=runtime, args=args, stop=stop)


def section(ctx: ServiceContext) -> Any:
    """The service's own configuration section (typed by the service)."""
    return ctx.loaded.section
