"""Health as "published within N seconds", for container health checks.

The MQTT runtime touches a heartbeat file (``$BMSLINK_HEALTH_FILE``, default
``/tmp/bmslink-health``) whenever it publishes while connected, at most once a second.
``python -m bmslink.health --max-age 60`` exits 0 if the file is younger than 60 s, else 1
(compose's ``healthcheck`` runs it inside the container).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from pathlib import Path

DEFAULT_FILE = "/tmp/bmslink-health"


def heartbeat_path() -> Path:
    """The heartbeat file of this process."""
    return Path(os.environ.get("BMSLINK_HEALTH_FILE", DEFAULT_FILE))


class Heartbeat:
    """Touches the heartbeat file, at most every ``min_interval`` s. Errors are ignored (a
    read-only filesystem must not stop a service; the health check then reports it)."""

    def __init__(self, path: Path | None = None, min_interval: float = 1.0) -> None:
        self.path = path or heartbeat_path()
        self.min_interval = min_interval
        self._last = 0.0

    def beat(self) -> None:
        """Record that the service just published."""
        now = time.monotonic()
        if now - self._last < self.min_interval:
            return
        self._last = now
        with contextlib.suppress(OSError):
            self.path.touch()


def age(path: Path) -> float | None:
    """Seconds since the last heartbeat, or None if there is none."""
    try:
        return time.time() - path.stat().st_mtime
    except OSError:
        return None


def main(argv: list[str] | None = None) -> int:
    """Exit 0 when the last heartbeat is younger than ``--max-age`` s, else 1."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--max-age", type=float, default=60.0, help="seconds (default 60)")
    parser.add_argument(
        "--file", type=Path, default=None, help=f"default $BMSLINK_HEALTH_FILE or {DEFAULT_FILE}"
    )
    args = parser.parse_args(argv)
    path = args.file or heartbeat_path()
    seconds = age(path)
    if seconds is None:
        print(f"unhealthy: no heartbeat at {path}")
        return 1
    if seconds > args.max_age:
        print(f"unhealthy: last publish {seconds:.0f} s ago (> {args.max_age:.0f} s)")
        return 1
    print(f"healthy: last publish {seconds:.1f} s ago")
    return 0


if __name__ == "__main__":
    sys.exit(main())
