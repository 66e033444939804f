"""``bmslink-sim-can``: a simulated Pylontech LV CAN battery, or an inverter, behind a simulated
slcan adapter on a pty and/or a TCP port (see ``battery_simulator.can_devices``).

    bmslink-sim-can battery  --pty-link /tmp/ttyCANBMS [--source capture|us5000-v13|model]
    bmslink-sim-can inverter --tcp 127.0.0.1:4861 --record frames.jsonl [--no-heartbeat]

Prints ``READY pty=<path|-> tcp=<host:port|->`` (flushed) once it serves; exits 0 on
SIGTERM/SIGINT, 2 for bad arguments, 1 when a line cannot be opened.
"""

from __future__ import annotations

import argparse
import logging
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from battery_simulator.can_devices import (
    CanBattery,
    CanDevice,
    CanInverter,
    ModelBattery,
    SlcanFramer,
    slcan_encode,
)
from battery_simulator.cli_common import (
    ServedLines,
    add_line_arguments,
    cannot_open,
    line_options,
    setup_logging,
    stop_signals,
)
from battery_simulator.line import Line

__all__ = ["FrameSender", "build_parser", "main"]

log = logging.getLogger("battery_simulator.can")
REPORT_PERIOD = 10.0
"""s between two log lines of what the simulated inverter receives."""


class FrameSender:
    """Writes ``device.frames()`` as slcan lines to every line each ``period`` s (monotonic
    period boundaries), once the client opened the channel. One daemon thread."""

    def __init__(self, device: CanDevice, lines: Sequence[Line], period: float) -> None:
        self.device = device
        self.lines = list(lines)
        self.period = period
        self.sent = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="can sender", daemon=True)

    def start(self) -> None:
        """Start the thread."""
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread."""
        self._stop.set()
        self._thread.join(2)

    def _run(self) -> None:
        next_at = time.monotonic()
        while not self._stop.is_set():
            if self.device.opened.is_set():
                payload = b"".join(slcan_encode(i, d) for i, d in self.device.frames(time.time()))
                if payload:
                    for line in self.lines:
                        # the line thread never writes (CanDevice.respond returns None)
                        if line._send(payload):
                            self.sent += 1
            next_at += self.period
            now = time.monotonic()
            while next_at <= now:
                next_at += self.period
            self._stop.wait(next_at - now)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``bmslink-sim-can``."""
    p = argparse.ArgumentParser(
        prog="bmslink-sim-can",
        description="Simulate a Pylontech LV CAN battery or an inverter behind an slcan adapter.",
    )
    p.add_argument("role", choices=["battery", "inverter"], help="what to simulate")
    add_line_arguments(p)
    p.add_argument("--period", type=float, default=1.0, help="s between frame sets (default 1)")
    p.add_argument(
        "--source",
        default="capture",
        choices=["capture", "us5000-v13", "model"],
        help="battery: real stack frames, real new-firmware US5000 frames, or a model",
    )
    p.add_argument("--soc", type=float, default=60.0, help="model: initial SoC, %% (default 60)")
    p.add_argument("--current", type=float, default=-10.0, help="model: current, A, + = charging")
    p.add_argument("--capacity", type=float, default=100.0, help="model: Ah per module")
    p.add_argument("--modules", type=int, default=2, help="model: module count (default 2)")
    p.add_argument(
        "--profile",
        default="pylontech",
        choices=["pylontech", "pylon_v2", "sma"],
        help="model: frame-set flavour",
    )
    p.add_argument("--record", type=Path, help="inverter: append received frames (JSON lines)")
    p.add_argument("--no-heartbeat", action="store_true", help="inverter: never send 0x305")
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run until SIGTERM/SIGINT; returns the exit status."""
    parser = build_parser()
    ns = parser.parse_args(argv)
    tcp = line_options(parser, ns)
    if ns.period <= 0:
        parser.error(f"argument --period: must be positive, got {ns.period}")
    if not 0 <= ns.soc <= 100:
        parser.error(f"argument --soc: must be 0..100, got {ns.soc}")
    if ns.modules < 1 or ns.capacity <= 0:
        parser.error("arguments --modules/--capacity: must be positive")
    setup_logging(ns.log_level)
    device: CanDevice
    if ns.role == "battery":
        source: str | ModelBattery = ns.source
        if ns.source == "model":
            source = ModelBattery(
                capacity=ns.capacity,
                soc=ns.soc,
                current=ns.current,
                modules=ns.modules,
                profile=ns.profile,
            )
        device = CanBattery(source)
    else:
        device = CanInverter(ns.record, heartbeat=not ns.no_heartbeat)

    with stop_signals() as stop:
        try:
            try:
                served = ServedLines.open(
                    device,
                    pty=ns.pty,
                    pty_link=ns.pty_link,
                    tcp=tcp,
                    framer=lambda: SlcanFramer(device.client_gone),
                )
            except OSError as exc:
                return cannot_open("bmslink-sim-can", exc)
            with served:
                sender = FrameSender(device, served.lines, ns.period)
                sender.start()
                try:
                    log.info("simulating a CAN %s (slcan, period %.2f s)", ns.role, ns.period)
                    served.print_ready()
                    next_report = time.monotonic() + REPORT_PERIOD
                    while not stop.wait(0.5):
                        if isinstance(device, CanInverter) and time.monotonic() >= next_report:
                            next_report += REPORT_PERIOD
                            log.info("%s", device.summary())
                finally:
                    sender.stop()
            return 0
        finally:
            if isinstance(device, CanInverter):
                device.close()


if __name__ == "__main__":
    sys.exit(main())
