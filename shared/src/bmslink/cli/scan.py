"""``bmslink scan PROTOCOL [options]``: find the devices on a bus and print config lines.

Each protocol family registers :class:`Scanner` objects in a module of
:mod:`bmslink.cli.scanners` (adding a module adds a protocol name).
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable

from bmslink.registry import discover


@dataclasses.dataclass(frozen=True)
class Scanner:
    """A bus scanner: ``add_arguments(parser)`` declares its options, ``run(args)`` scans,
    prints what it found (progress on stderr, config lines on stdout) and returns the exit status
    (0 found something, 1 found nothing, 2 bad usage)."""

    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


def registry() -> dict[str, Scanner]:
    """Every scanner by protocol name."""
    from bmslink.cli import scanners

    return discover(scanners, "SCANNERS")


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``scan`` with one sub-command per protocol."""
    p = sub.add_parser("scan", help="find devices on a bus and print the config lines to paste")
    protocols = p.add_subparsers(dest="protocol", required=True)
    for name, scanner in sorted(registry().items()):
        sp = protocols.add_parser(name, help=scanner.help)
        scanner.add_arguments(sp)
        sp.set_defaults(func=scanner.run)
