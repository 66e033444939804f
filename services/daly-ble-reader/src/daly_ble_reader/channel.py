"""Request/response exchanges over a :class:`~daly_ble_reader.transport.Link`: deadlines,
bounded retries, multi-frame collection, the BLE write-mode fallback, and counters.

Protocol facts: ../shared/protocols/daly.md §3.1 (deadlines, quiet time after a burst), §3.2
(write without response first, then with response, remembered per device), §4.6 (collect the
needed frames, then drain until quiet).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from daly_ble_reader.transport import Link

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass
class Stats:
    """Counters of one adapter: requests, answers, timeouts, link errors, refused frames by error
    type, bytes skipped while resynchronising, BLE reconnects and stale links torn down."""

    requests: int = 0
    answers: int = 0
    timeouts: int = 0
    link_errors: int = 0
    dropped_bytes: int = 0
    reconnects: int = 0
    stale_links: int = 0
    refused: collections.Counter[str] = field(default_factory=collections.Counter)

    def as_dict(self) -> dict[str, object]:
        """JSON-ready view."""
        return {
            "requests": self.requests,
            "answers": self.answers,
            "timeouts": self.timeouts,
            "link_errors": self.link_errors,
            "dropped_bytes": self.dropped_bytes,
            "reconnects": self.reconnects,
            "stale_links": self.stale_links,
            "refused": dict(self.refused),
        }


class Channel:
    """Exchanges of one device over ``link``.

    ``timeout`` (s): deadline of one attempt; ``retries``: extra attempts; ``gap`` (s): minimum
    time between two requests (serial bus etiquette); ``ble``: enables the write-mode fallback;
    ``write_response``: the remembered BLE write mode (None = not known yet, start without
    response). ``on_write_mode(mode)`` is called when a mode is found to work.
    """

    def __init__(
        self,
        link: Link,
        stats: Stats,
        *,
        timeout: float,
        retries: int,
        gap: float = 0.0,
        ble: bool = False,
        write_response: bool | None = None,
        on_write_mode: Callable[[bool], None] | None = None,
    ) -> None:
        self.link = link
        self.stats = stats
        self.timeout = timeout
        self.retries = retries
        self.gap = gap
        self.ble = ble
        self.write_response = bool(write_response)
        self.write_mode_known = write_response is not None
        self.on_write_mode = on_write_mode
        self.last_rx = 0.0  #: monotonic time of the last accepted frame
        self._last_request = 0.0

    async def transact(
        self,
        request: bytes,
        parse: Callable[[bytes], list[T]],
        done: Callable[[list[T]], bool],
        *,
        timeout: float | None = None,
        drain_quiet: float | None = None,
        drain_max: float = 1.0,
        drain_items: int = 16,
    ) -> tuple[list[T], int]:
        """One attempt: send ``request``, feed every received chunk to ``parse`` until
        ``done(items)`` or the deadline. With ``drain_quiet`` (s), keep reading after done until
        the line is quiet that long, ``drain_items`` items were seen, or ``drain_max`` s passed
        since the request (doc §4.6 step 3). Returns (items, bytes received). Raises
        :class:`~daly_ble_reader.transport.LinkError`."""
        wait = self._last_request + self.gap - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        self.link.discard_input()
        self.stats.requests += 1
        await self.link.write(request, response=self.write_response if self.ble else False)
        started = time.monotonic()
        self._last_request = started
        deadline = started + (timeout if timeout is not None else self.timeout)
        items: list[T] = []
        received = 0
        finished = False
        while True:
            now = time.monotonic()
            if finished:
                if drain_quiet is None or len(items) >= drain_items:
                    break
                limit = min(now + drain_quiet, started + drain_max)
            else:
                limit = deadline
            if now >= limit:
                break
            chunk = await self.link.read(limit - now)
            if not chunk:
                if finished:
                    break
                continue
            received += len(chunk)
            items.extend(parse(chunk))
            if not finished and done(items):
                finished = True
                self.last_rx = time.monotonic()
        self._last_request = time.monotonic()
        return (items if finished else []), received

    async def ask(
        self,
        request: bytes,
        parse_factory: Callable[[], Callable[[bytes], list[T]]],
        done: Callable[[list[T]], bool],
        *,
        what: str,
        timeout: float | None = None,
        drain_quiet: float | None = None,
        drain_items: int = 16,
        retries: int | None = None,
    ) -> list[T] | None:
        """:meth:`transact` with retries (a fresh parser per attempt); None when every attempt
        failed. Over BLE, when the write mode is not known yet and nothing at all came back,
        one more attempt is made with the other write mode, and the mode that works is kept
        (doc §3.2)."""
        attempts = (self.retries if retries is None else retries) + 1
        heard = False
        for attempt in range(attempts):
            items, received = await self.transact(
                request,
                parse_factory(),
                done,
                timeout=timeout,
                drain_quiet=drain_quiet,
                drain_items=drain_items,
            )
            heard = heard or received > 0
            if items:
                self._answered()
                return items
            self._missed(what, attempt, received)
        if self.ble and not self.write_mode_known and not heard:
            self.write_response = not self.write_response
            log.info("%s: no answer; trying write-with-response=%s", what, self.write_response)
            items, received = await self.transact(
                request,
                parse_factory(),
                done,
                timeout=timeout,
                drain_quiet=drain_quiet,
                drain_items=drain_items,
            )
            if items:
                self._answered()
                return items
            self._missed(what, attempts, received)
            self.write_response = not self.write_response
        return None

    def _answered(self) -> None:
        self.stats.answers += 1
        if self.ble and not self.write_mode_known:
            self.write_mode_known = True
            if self.on_write_mode is not None:
                self.on_write_mode(self.write_response)

    def _missed(self, what: str, attempt: int, received: int) -> None:
        if received:
            self.stats.refused["no_valid_frame"] += 1
            log.debug("%s: %d bytes but no valid answer (attempt %d)", what, received, attempt + 1)
        else:
            self.stats.timeouts += 1
            log.debug("%s: no answer (attempt %d)", what, attempt + 1)
