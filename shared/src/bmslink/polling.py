"""What every polling reader shares: counters, re-opening a lost port, and the poll loop.

- :class:`PollStats` — requests, answers, timeouts, link errors and refused frames by error
  type (a corrupt frame is refused with a typed error *and counted*);
- :class:`Reconnect` — a port that failed is re-opened with exponential back-off (1 s doubling
  to ``max_delay``), without restarting the process;
- :func:`run_polling` — the service loop: one cycle every ``interval`` s until SIGTERM/SIGINT, a
  bug in a cycle logged and counted (never fatal), the counters logged every minute and at exit.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from bmslink.service import ServiceContext

log = logging.getLogger(__name__)

STATS_PERIOD = 60.0
"""Seconds between two ``stats`` log lines."""


@dataclass
class PollStats:
    """Counters of one bus. Subclasses add their own counters (fields); :meth:`as_dict` shows
    every field, counters as plain dicts."""

    requests: int = 0
    answers: int = 0
    timeouts: int = 0
    link_errors: int = 0
    refused: collections.Counter[str] = field(default_factory=collections.Counter)

    def as_dict(self) -> dict[str, object]:
        """JSON-ready view of every counter."""
        return {
            f.name: dict(value) if isinstance(value := getattr(self, f.name), dict) else value
            for f in dataclasses.fields(self)
        }


class LinkLostError(Exception):
    """The port stayed unusable for longer than ``give_up_after``: the service exits (status
    :data:`EXIT_LINK_LOST`) so that the container's restart policy re-creates the device mapping
    of an adapter that was unplugged and re-enumerated."""


EXIT_LINK_LOST = 3


class Reconnect:
    """When to try opening a lost port again: 1 s after the failure, doubling to ``max_delay``.

    ``what`` names the port in the log (one warning when the outage starts, one line when it
    ends, with its duration). ``give_up_after`` s (0 = never): :meth:`failed` raises
    :class:`LinkLostError` once the outage is that long.
    """

    def __init__(self, what: str, max_delay: float = 30.0, give_up_after: float = 0.0) -> None:
        self.what = what
        self.max_delay = max_delay
        self.give_up_after = give_up_after
        self._delay = 1.0
        self._next = 0.0
        self._down_since: float | None = None

    def due(self) -> bool:
        """Whether an attempt to open may be made now."""
        return time.monotonic() >= self._next

    def succeeded(self) -> None:
        """The port is open: reset the back-off."""
        self._delay = 1.0
        if self._down_since is not None:
            log.info("%s is back after %.1f s", self.what, time.monotonic() - self._down_since)
            self._down_since = None

    def failed(self, exc: Exception) -> None:
        """The port failed or could not be opened: schedule the next attempt."""
        now = time.monotonic()
        if self._down_since is None:
            self._down_since = now
            log.warning("%s; devices offline, reopening with back-off", exc)
        elif self.give_up_after > 0 and now - self._down_since >= self.give_up_after:
            raise LinkLostError(f"{self.what} unusable for {now - self._down_since:.0f} s: {exc}")
        self._next = now + self._delay
        self._delay = min(self._delay * 2, self.max_delay)


def run_polling(
    ctx: ServiceContext, poll_once: Callable[[], None], interval: float, stats: PollStats
) -> int:
    """Call ``poll_once`` every ``interval`` s until the service is asked to stop, then close
    the context (devices offline, status ``offline``). Returns the exit status: 0, or
    :data:`EXIT_LINK_LOST` when the port stayed lost too long (:class:`LinkLostError`)."""
    next_stats = time.monotonic() + STATS_PERIOD
    status = 0
    while not ctx.stop.is_set():
        started = time.monotonic()
        try:
            poll_once()
        except LinkLostError as exc:
            log.error("%s; exiting so that the restart policy re-opens the adapter", exc)
            status = EXIT_LINK_LOST
            break
        except Exception:
            # A bug must not take the bus down with it: log, count, keep polling.
            stats.refused["internal_error"] += 1
            log.exception("poll cycle failed")
        if started >= next_stats:
            log.info("stats %s", json.dumps(stats.as_dict()))
            next_stats = started + STATS_PERIOD
        ctx.stop.wait(max(0.0, interval - (time.monotonic() - started)))
    log.info("stats %s", json.dumps(stats.as_dict()))
    ctx.close()
    return status
