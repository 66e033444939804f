"""``bmslink-sim-pace``: PACE BMS packs (Hubble Lithium AM2, ...) on a Modbus RTU line.

Serves :class:`battery_simulator.pace.PaceBus` on a pty and/or a TCP port (like an RS485-to-
Ethernet gateway speaking raw RTU), paced at the emulated baud rate (default 9600 Bd, PACE §2).
Prints ``READY pty=<path|-> tcp=<host:port|->`` when it serves; exits 0 on SIGTERM/SIGINT, 2 on
bad arguments, 1 when a line cannot be opened. See the battery-simulator README.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from battery_simulator.cli_common import (
    ServedLines,
    add_line_arguments,
    cannot_open,
    line_options,
    setup_logging,
    stop_signals,
)
from battery_simulator.pace import ModbusRtuFramer, PaceFaults, PackSpec, build_bus, parse_pack_spec
from battery_simulator.pylontech import CurrentProfile

__all__ = ["build_parser", "main"]

log = logging.getLogger("battery_simulator.pace")


def _addresses(text: str) -> set[int]:
    out = set()
    for item in text.split(","):
        if item.strip():
            value = int(item)
            if not 1 <= value <= 247:
                raise ValueError(f"address {value} not in 1..247")
            out.add(value)
    return out


def _pairs(text: str, kind: type[float] | type[int]) -> dict[int, float]:
    out: dict[int, float] = {}
    for item in text.split(","):
        if not item.strip():
            continue
        addr, sep, value = item.partition(":")
        if not sep:
            raise ValueError(f"{item!r}: expected ADDR:VALUE")
        out[int(addr)] = kind(value)
    return out


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``bmslink-sim-pace``."""
    p = argparse.ArgumentParser(
        prog="bmslink-sim-pace",
        description="Serve simulated PACE BMS packs (Hubble AM2, ...) over Modbus RTU on a pty "
        "and/or TCP, replies paced at the baud rate.",
    )
    add_line_arguments(p)
    p.add_argument("--baud", type=int, default=9600, help="emulated line rate, bit/s (9600)")
    p.add_argument(
        "--turnaround-ms",
        type=float,
        default=10.0,
        help="delay between the end of a request and the reply, ms (10)",
    )
    p.add_argument(
        "--packs",
        default="1:AM2:86,2:AM2:60",
        metavar="SPEC",
        help="ADDR[:MODEL[:SOC]],... models AM2 (13S NMC) and PACE16 (16S LFP); default "
        "'1:AM2:86,2:AM2:60'",
    )
    p.add_argument("--silent", default="", metavar="ADDRS", help="packs that never answer: 3,4")
    p.add_argument(
        "--exception", default="", metavar="ADDR:CODE,...", help="answer every request with it"
    )
    p.add_argument("--bad-crc", default="", metavar="ADDRS", help="replies with a wrong CRC")
    p.add_argument("--slow", default="", metavar="ADDR:S,...", help="extra reply delay, s")
    p.add_argument("--allow-writes", action="store_true", help="accept FC 0x10 to 60..114")
    p.add_argument("--current", type=float, metavar="A", help="constant current, + = charging")
    p.add_argument("--current-amplitude", type=float, default=10.0, metavar="A")
    p.add_argument("--current-period", type=float, default=600.0, metavar="S")
    p.add_argument("--seed", type=int, help="random seed for reproducible noise")
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run until SIGTERM/SIGINT; returns the exit status (0, 1 line error, 2 bad arguments)."""
    parser = build_parser()
    ns = parser.parse_args(argv)
    tcp = line_options(parser, ns)
    if ns.baud <= 0 or ns.turnaround_ms < 0 or ns.current_period <= 0:
        parser.error("--baud and --current-period must be positive, --turnaround-ms ≥ 0")
    try:
        specs: list[PackSpec] = parse_pack_spec(ns.packs)
    except ValueError as exc:
        parser.error(f"argument --packs: {exc}")
    faults = PaceFaults()
    option = "silent"
    try:
        faults.silent.update(_addresses(ns.silent))
        option = "bad-crc"
        faults.bad_crc.update(_addresses(ns.bad_crc))
        option = "exception"
        faults.exception.update({a: int(c) for a, c in _pairs(ns.exception, int).items()})
        option = "slow"
        faults.slow.update(_pairs(ns.slow, float))
    except ValueError as exc:
        parser.error(f"argument --{option}: {exc}")
    setup_logging(ns.log_level)
    profile = CurrentProfile(ns.current, ns.current_amplitude, ns.current_period)
    bus = build_bus(specs, profile, seed=ns.seed, faults=faults, allow_writes=ns.allow_writes)

    with stop_signals() as stop:
        try:
            served = ServedLines.open(
                bus,
                pty=ns.pty,
                pty_link=ns.pty_link,
                tcp=tcp,
                framer=ModbusRtuFramer,
                baud=ns.baud,
                turnaround_s=ns.turnaround_ms / 1000.0,
            )
        except OSError as exc:
            return cannot_open("bmslink-sim-pace", exc)
        with served:
            log.info(
                "serving PACE packs at %s (%d Bd); faults %s",
                sorted(bus.packs),
                ns.baud,
                faults,
            )
            served.print_ready()
            while not stop.wait(0.5):
                pass
        return 0


if __name__ == "__main__":
    sys.exit(main())
