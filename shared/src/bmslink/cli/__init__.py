"""The ``bmslink`` command: ``watch``, ``decode``, ``scan``, ``demo`` and ``topics``.

Each sub-command lives in its own module with ``add_parser(sub)`` and ``run(args) -> int``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every sub-command registered."""
    from bmslink.cli import credentials, decode, demo, scan, watch

    parser = argparse.ArgumentParser(prog="bmslink", description="bmslink command-line tools")
    sub = parser.add_subparsers(dest="command", required=True)
    watch.add_parser(sub)
    decode.add_parser(sub)
    demo.add_parser(sub)
    scan.add_parser(sub)
    credentials.add_parser(sub)
    topics_parser = sub.add_parser("topics", help="print the topic table (Markdown)")
    topics_parser.set_defaults(func=_print_topics)
    return parser


def _print_topics(_args: argparse.Namespace) -> int:
    from bmslink.topics import markdown_table

    print(markdown_table())
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``bmslink`` command; returns the process exit status."""
    args = build_parser().parse_args(argv)
    status: int = args.func(args)
    return status


if __name__ == "__main__":
    sys.exit(main())
