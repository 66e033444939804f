"""Command-line configuration of the battery simulator (``bmslink-simulator``)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from battery_simulator.cli_common import add_line_arguments, line_options, parse_host_port
from battery_simulator.pylontech import PackConfig, parse_model_spec

__all__ = ["SimulatorConfig", "build_parser", "parse_args", "parse_host_port"]


@dataclass(frozen=True)
class SimulatorConfig:
    """Validated options; see ``bmslink-simulator --help`` and the service README.

    Attributes:
        pty: serve on a pty pair.
        pty_link: path of a symlink to the pty slave (``None``: no link).
        tcp: (host, port) to listen on; port 0 = a random free port.
        baud: emulated line rate, bit/s.
        turnaround_s: delay between request end and reply start, seconds.
        replay: capture file to replay, or ``None``.
        packs: simulated packs (``--model``), empty when replaying.
        derive_per_address: replay: answer per-address 0x42 from FF replies.
        answer_ff: model: answer 0x42 INFO=FF at the master.
        current_a: model: constant pack current, A (+ = charging), or ``None`` for the sine.
        current_amplitude_a: model: amplitude of the sine current, A.
        current_period_s: model: period of the sine current, seconds.
        seed: random seed (noise, offsets, garbage), or ``None``.
        log_level: logging level name.
        faults_file: JSON file of :class:`~battery_simulator.pylontech.Faults` fields, re-read
            when it changes (fault injection on demand), or ``None``.
    """

    pty: bool = False
    pty_link: Path | None = None
    tcp: tuple[str, int] | None = None
    baud: int = 115200
    turnaround_s: float = 0.002
    replay: Path | None = None
    packs: tuple[PackConfig, ...] = ()
    derive_per_address: bool = True
    answer_ff: bool = True
    current_a: float | None = None
    current_amplitude_a: float = 10.0
    current_period_s: float = 600.0
    seed: int | None = None
    log_level: str = "INFO"
    faults_file: Path | None = None


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``bmslink-simulator``."""
    p = argparse.ArgumentParser(
        prog="bmslink-simulator",
        description=(
            "Serve a simulated or replayed Pylontech LV RS485 battery stack on a pty and/or a "
            "TCP port, with replies paced at the given baud rate."
        ),
    )
    add_line_arguments(p.add_argument_group("where to serve (at least one)"))
    timing = p.add_argument_group("timing")
    timing.add_argument(
        "--baud", type=int, default=115200, help="emulated line rate, bit/s (default 115200)"
    )
    timing.add_argument(
        "--turnaround-ms",
        type=float,
        default=2.0,
        help="delay between the end of a request and the reply, ms (default 2)",
    )
    source = p.add_argument_group("what answers (exactly one)")
    excl = source.add_mutually_exclusive_group(required=True)
    excl.add_argument(
        "--replay", metavar="FILE", type=Path, help="replay a capture (JSON or JSON lines)"
    )
    excl.add_argument(
        "--model",
        metavar="SPEC",
        help=(
            "simulate packs MODEL[:SOC%%][@ADR],... (Pylontech at ADR 2.., BEAVER at 0..3), "
            "e.g. US2000C,US3000C:80,US5000,BEAVER or US2000C,US3000C@0x12"
        ),
    )
    source.add_argument(
        "--no-derive",
        action="store_true",
        help="replay: do not answer per-address 0x42 from the capture's INFO=FF replies",
    )
    source.add_argument(
        "--no-ff",
        action="store_true",
        help="model: ignore 0x42 INFO=FF like C-series/US5000 firmware",
    )
    source.add_argument(
        "--current",
        type=float,
        metavar="A",
        help="model: constant pack current, A, + = charging (default: a sine)",
    )
    source.add_argument(
        "--current-amplitude",
        type=float,
        default=10.0,
        metavar="A",
        help="model: amplitude of the sine current, A (default 10)",
    )
    source.add_argument(
        "--current-period",
        type=float,
        default=600.0,
        metavar="S",
        help="model: period of the sine current, s (default 600)",
    )
    p.add_argument("--seed", type=int, help="random seed, for reproducible noise")
    p.add_argument(
        "--faults-file",
        metavar="FILE",
        type=Path,
        help=(
            'inject faults on demand: JSON such as {"silence": true, "addresses": [3]} '
            "(fields of Faults), re-read when it changes; a missing file means no fault"
        ),
    )
    p.add_argument(
        "--log-level",
        default="INFO",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="log level (requests are logged at DEBUG)",
    )
    return p


def parse_args(argv: Sequence[str] | None = None) -> SimulatorConfig:
    """Parse and validate the command line; exits with status 2 naming the bad option."""
    parser = build_parser()
    ns = parser.parse_args(argv)
    tcp = line_options(parser, ns)
    if ns.baud <= 0:
        parser.error(f"argument --baud: must be positive, got {ns.baud}")
    if ns.turnaround_ms < 0:
        parser.error(f"argument --turnaround-ms: must be ≥ 0, got {ns.turnaround_ms}")
    if ns.current_period <= 0:
        parser.error(f"argument --current-period: must be positive, got {ns.current_period}")
    packs: tuple[PackConfig, ...] = ()
    if ns.model is not None:
        try:
            packs = tuple(parse_model_spec(ns.model))
        except ValueError as exc:
            parser.error(f"argument --model: {exc}")
    elif not ns.replay.is_file():
        parser.error(f"argument --replay: no such file: {ns.replay}")
    return SimulatorConfig(
        pty=ns.pty or ns.pty_link is not None,
        pty_link=ns.pty_link,
        tcp=tcp,
        baud=ns.baud,
        turnaround_s=ns.turnaround_ms / 1000.0,
        replay=ns.replay,
        packs=packs,
        derive_per_address=not ns.no_derive,
        answer_ff=not ns.no_ff,
        current_a=ns.current,
        current_amplitude_a=ns.current_amplitude,
        current_period_s=ns.current_period,
        seed=ns.seed,
        log_level=ns.log_level,
        faults_file=ns.faults_file,
    )
