"""The ``bmslink`` command: ``watch``, ``decode`` and ``demo``."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``bmslink`` command; returns the process exit status."""
    print("bmslink: not yet implemented", file=sys.stderr)
    return 2
