"""Command-line plumbing shared by the simulators (``bmslink-simulator``, ``bmslink-sim-pace``,
``bmslink-sim-can``, ``bmslink-sim-daly``).

Each serves one responder on a pty (optionally behind a symlink) and/or a TCP port:
:func:`add_line_arguments` and :func:`line_options` give them the same ``--pty-link``/``--pty``/
``--tcp`` options, :class:`ServedLines` opens, starts and closes the lines (creating and removing
the symlink) and prints the ``READY pty=<path|-> tcp=<host:port|->`` line the tests and scripts
wait for, :func:`stop_signals` turns SIGTERM/SIGINT into an event.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any, Self

from battery_simulator.line import Framer, Line, PtyLine, Responder, TcpLine

__all__ = [
    "ServedLines",
    "add_line_arguments",
    "cannot_open",
    "line_options",
    "parse_host_port",
    "setup_logging",
    "stop_signals",
]

log = logging.getLogger("battery_simulator")


def parse_host_port(text: str) -> tuple[str, int]:
    """Parse ``HOST:PORT`` (``[v6]:PORT`` for IPv6); port 0..65535.

    Raises:
        ValueError: malformed text.
    """
    host, sep, port_text = text.rpartition(":")
    if not sep or not host:
        raise ValueError(f"expected HOST:PORT, got {text!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        port = int(port_text)
    except ValueError:
        raise ValueError(f"port {port_text!r} is not a number") from None
    if not 0 <= port <= 65535:
        raise ValueError(f"port {port} not within 0..65535")
    return host, port


def add_line_arguments(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """Add ``--pty-link PATH``, ``--pty`` and ``--tcp HOST:PORT`` (where to serve)."""
    parser.add_argument(
        "--pty-link",
        metavar="PATH",
        type=Path,
        help="serve on a pty and create a symlink PATH to its slave device (removed on exit)",
    )
    parser.add_argument("--pty", action="store_true", help="serve on a pty (without a link)")
    parser.add_argument(
        "--tcp",
        metavar="HOST:PORT",
        help="listen on HOST:PORT for one raw TCP client at a time (port 0 = random)",
    )


def line_options(
    parser: argparse.ArgumentParser, ns: argparse.Namespace, *, required: bool = True
) -> tuple[str, int] | None:
    """Check the options of :func:`add_line_arguments`; returns the parsed ``--tcp`` (or None).

    Exits with status 2 (``parser.error``) naming the option when ``--tcp`` is malformed, when
    ``--pty-link`` exists and is not a symlink, or (``required``) when none of them is given.
    """
    if required and ns.pty_link is None and not ns.pty and ns.tcp is None:
        parser.error("one of --pty-link, --pty or --tcp is required")
    tcp: tuple[str, int] | None = None
    if ns.tcp is not None:
        try:
            tcp = parse_host_port(ns.tcp)
        except ValueError as exc:
            parser.error(f"argument --tcp: {exc}")
    if ns.pty_link is not None and ns.pty_link.exists() and not ns.pty_link.is_symlink():
        parser.error(f"argument --pty-link: {ns.pty_link} exists and is not a symlink")
    return tcp


def setup_logging(level: str) -> None:
    """Log to stderr at ``level`` (DEBUG, INFO, ...) with timestamps."""
    logging.basicConfig(
        level=level,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


@contextlib.contextmanager
def stop_signals() -> Iterator[threading.Event]:
    """``with stop_signals() as stop:`` — SIGTERM and SIGINT set the event ``stop`` instead of
    killing the process; the previous handlers are restored on exit. Outside the main thread
    (where handlers cannot be installed) only the event exists."""
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("signal %d: stopping", signum)
        stop.set()

    previous: dict[signal.Signals, Any] = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous[sig] = signal.signal(sig, on_signal)
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            with contextlib.suppress(ValueError, TypeError):
                signal.signal(sig, handler)


class ServedLines:
    """The pty line (with its optional symlink) and the TCP line serving one responder.

    Use :meth:`open`, then ``with served:`` — the lines start on entry; on exit they stop and
    the symlink is removed if it still points at the pty.
    """

    def __init__(self, pty_link: Path | None) -> None:
        self.pty: PtyLine | None = None
        self.tcp: TcpLine | None = None
        self.pty_link = pty_link
        self._link_target: str | None = None

    @property
    def lines(self) -> list[Line]:
        """The open lines (pty first)."""
        return [line for line in (self.pty, self.tcp) if line is not None]

    @classmethod
    def open(
        cls,
        responder: Responder,
        *,
        pty: bool,
        pty_link: Path | None,
        tcp: tuple[str, int] | None,
        framer: Callable[[], Framer] | None = None,
        baud: int = 115200,
        turnaround_s: float = 0.002,
    ) -> ServedLines:
        """Open a pty when ``pty`` or ``pty_link`` (and point the symlink ``pty_link`` at it,
        replacing a stale link), and a TCP line on ``tcp`` = (host, port) when given. Every line
        gets a new ``framer()`` (None: the Pylontech ASCII frame assembler), ``baud`` (bit/s)
        and ``turnaround_s`` (s).

        Raises:
            OSError: a line or the symlink cannot be made (what was opened is closed again).
        """
        served = cls(pty_link)
        try:
            if pty or pty_link is not None:
                served.pty = PtyLine(
                    responder,
                    baud=baud,
                    turnaround_s=turnaround_s,
                    framer=framer() if framer else None,
                )
                if pty_link is not None:
                    if pty_link.is_symlink():
                        pty_link.unlink()
                    pty_link.symlink_to(served.pty.device_path)
                    served._link_target = served.pty.device_path
            if tcp is not None:
                served.tcp = TcpLine(
                    responder,
                    host=tcp[0],
                    port=tcp[1],
                    baud=baud,
                    turnaround_s=turnaround_s,
                    framer=framer() if framer else None,
                )
        except OSError:
            served.close()
            raise
        return served

    def ready_line(self, **extra: str) -> str:
        """``READY pty=<path|-> tcp=<host:port|->`` plus ``extra`` as ``key=value``."""
        pty_text = "-"
        if self.pty is not None:
            pty_text = str(self.pty_link) if self.pty_link is not None else self.pty.device_path
        tcp_text = self.tcp.address if self.tcp is not None else "-"
        fields = {"pty": pty_text, "tcp": tcp_text, **extra}
        return "READY " + " ".join(f"{key}={value}" for key, value in fields.items())

    def print_ready(self, **extra: str) -> None:
        """Print :meth:`ready_line` to stdout, flushed."""
        print(self.ready_line(**extra), flush=True)

    def close(self) -> None:
        """Stop every line; remove the symlink if it still points at the pty (idempotent)."""
        for line in self.lines:
            line.stop()
        link, target = self.pty_link, self._link_target
        if link is not None and target is not None:
            with contextlib.suppress(OSError):
                if link.is_symlink() and os.readlink(link) == target:
                    link.unlink()
            self._link_target = None

    def __enter__(self) -> Self:
        for line in self.lines:
            line.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def cannot_open(prog: str, exc: OSError) -> int:
    """Report a line that cannot be opened (``PROG: error: cannot open line: ...``); returns the
    exit status 1."""
    print(f"{prog}: error: cannot open line: {exc}", file=sys.stderr)
    return 1
