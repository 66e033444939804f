"""Transports of the simulator: a pty pair or a TCP port, with wire timing emulated.

A pty ignores the baud rate and a loopback socket has no baud rate at all, so the simulator paces
its own replies (reference: shared/reference/test-infrastructure.md §5.3 and
shared/protocols/pylontech-rs485.md §10.2): a reply of ``n`` bytes takes
``n × bits_per_char / baud`` seconds to come out (10 bits per character for 8N1), and it starts
no earlier than the request's own wire time plus a turnaround delay after the request's first
byte arrived.

Requests are reassembled from the byte stream as Pylontech frames: from ``~`` to CR
(pylontech-rs485.md §2, §10.1); bytes before a ``~`` are discarded as noise.

Each line runs one daemon thread. Nothing a client does (disconnecting, sending garbage, never
reading) stops that thread; only :meth:`Line.stop` does.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import socket
import threading
import time
import tty
from abc import ABC, abstractmethod
from types import TracebackType
from typing import Protocol, Self

__all__ = [
    "FrameAssembler",
    "Line",
    "PtyLine",
    "Responder",
    "TcpLine",
]

log = logging.getLogger(__name__)

SOI = 0x7E  # '~'
EOI = 0x0D  # CR
#: Longest request accepted: 18 characters of framing + LENID ≤ 4095 (pylontech-rs485.md §3).
MAX_FRAME_CHARS = 18 + 4095
#: Poll period of the line threads, seconds (bounds the latency of stop()).
_POLL_S = 0.05
#: Target duration of one paced write, seconds.
_CHUNK_S = 0.004


class Responder(Protocol):
    """What a line serves: maps one request frame to a reply (``None`` = stay silent)."""

    def respond(self, request: bytes) -> bytes | None:
        """Return the reply frame to ``request`` (``~...\\r``), or ``None`` for silence."""
        ...

    @property
    def extra_delay_s(self) -> float:
        """Extra delay before replying, seconds (fault injection; 0 normally)."""
        ...


class Framer(Protocol):
    """Cuts the received byte stream into request frames (one implementation per protocol:
    :class:`FrameAssembler` for Pylontech ASCII, others for binary protocols)."""

    def reset(self) -> None:
        """Forget a partial frame (a new client connected)."""
        ...

    def feed(self, data: bytes, now: float) -> list[tuple[bytes, float]]:
        """Add received bytes (arrived at monotonic ``now``, s); return completed frames with
        their start times."""
        ...


class FrameAssembler:
    """Cuts a byte stream into ``~...\\r`` frames (pylontech-rs485.md §10.1).

    Bytes before ``~`` are dropped; a second ``~`` before CR restarts the frame (the partial one
    is dropped); a frame longer than :data:`MAX_FRAME_CHARS` is dropped.
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self._started_at: float | None = None
        self.dropped = 0  #: count of bytes discarded as noise

    def reset(self) -> None:
        """Forget a partial frame (e.g. when a new TCP client connects)."""
        self.dropped += len(self._buf)
        self._buf.clear()
        self._started_at = None

    def feed(self, data: bytes, now: float) -> list[tuple[bytes, float]]:
        """Add received bytes; return the completed frames with their start times.

        ``now`` is the monotonic arrival time of ``data``, seconds; a frame's start time is the
        arrival time of the chunk that carried its ``~``.
        """
        frames: list[tuple[bytes, float]] = []
        for b in data:
            if b == SOI:
                if self._buf:
                    self.dropped += len(self._buf)
                    self._buf.clear()
                self._buf.append(b)
                self._started_at = now
            elif not self._buf:
                self.dropped += 1
            else:
                self._buf.append(b)
                if b == EOI:
                    started = self._started_at if self._started_at is not None else now
                    frames.append((bytes(self._buf), started))
                    self._buf.clear()
                    self._started_at = None
                elif len(self._buf) > MAX_FRAME_CHARS:
                    self.dropped += len(self._buf)
                    self._buf.clear()
                    self._started_at = None
        return frames


class Line(ABC):
    """A served serial line: receives requests, answers through a :class:`Responder`, paced.

    Args:
        responder: the device behaviour (e.g. :class:`battery_simulator.pylontech.PylontechStack`).
        baud: emulated line rate, bit/s (Pylontech: 115200 or 9600, pylontech-rs485.md §1).
        turnaround_s: delay between the end of a request and the start of the reply, seconds.
        bits_per_char: bits on the wire per byte (10 for 8N1).
        framer: cuts requests out of the byte stream (default: Pylontech ``~...\\r`` frames).

    Use as a context manager, or call :meth:`start` and :meth:`stop`.
    """

    def __init__(
        self,
        responder: Responder,
        *,
        baud: int = 115200,
        turnaround_s: float = 0.002,
        bits_per_char: int = 10,
        framer: Framer | None = None,
    ) -> None:
        if baud <= 0:
            raise ValueError(f"baud must be positive, got {baud}")
        if turnaround_s < 0:
            raise ValueError(f"turnaround must be ≥ 0, got {turnaround_s}")
        self.responder = responder
        self.baud = baud
        self.turnaround_s = turnaround_s
        self.bits_per_char = bits_per_char
        self.requests = 0  #: requests received (complete frames)
        self.replies = 0  #: replies fully written
        self._assembler: Framer = framer if framer is not None else FrameAssembler()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def char_time_s(self) -> float:
        """Wire time of one character, seconds."""
        return self.bits_per_char / self.baud

    def wire_time_s(self, n_bytes: int) -> float:
        """Wire time of ``n_bytes`` characters at this line's baud rate, seconds."""
        return n_bytes * self.char_time_s

    # -- subclass interface ------------------------------------------------------------------
    @abstractmethod
    def _poll(self, timeout: float) -> bytes:
        """Wait up to ``timeout`` s for input; return what arrived (possibly ``b""``)."""

    @abstractmethod
    def _send(self, data: bytes) -> bool:
        """Write ``data`` completely; return False if the peer is gone (the reply is dropped)."""

    @abstractmethod
    def _close(self) -> None:
        """Release the line's file descriptors / sockets."""

    @abstractmethod
    def describe(self) -> str:
        """Where a client connects (device path or host:port)."""

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> Self:
        """Start serving in a daemon thread; returns ``self``."""
        if self._thread is not None:
            raise RuntimeError("line already started")
        self._thread = threading.Thread(
            target=self._run, name=f"line {self.describe()}", daemon=True
        )
        self._thread.start()
        return self

    def stop(self, timeout: float = 2.0) -> None:
        """Stop the thread and close the line (idempotent)."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)
        self._close()

    def __enter__(self) -> Self:
        if self._thread is None:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- the loop ----------------------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data = self._poll(_POLL_S)
            except Exception:
                log.exception("%s: read failed", self.describe())
                self._stop.wait(_POLL_S)
                continue
            if not data:
                continue
            for frame, started in self._assembler.feed(data, time.monotonic()):
                try:
                    self._serve(frame, started)
                except Exception:
                    log.exception("%s: failed to serve %r", self.describe(), frame)

    def _serve(self, frame: bytes, started: float) -> None:
        self.requests += 1
        log.debug("%s rx %r", self.describe(), frame)
        reply = self.responder.respond(frame)
        if reply is None:
            log.debug("%s: no reply", self.describe())
            return
        # The request itself took its wire time to arrive; then turnaround (+ injected delay).
        ready_at = (
            started
            + self.wire_time_s(len(frame))
            + self.turnaround_s
            + max(0.0, self.responder.extra_delay_s)
        )
        if not self._sleep_until(ready_at):
            return
        if self._paced_write(reply):
            self.replies += 1
            log.debug("%s tx %r", self.describe(), reply)

    def _sleep_until(self, deadline: float) -> bool:
        """Sleep until the monotonic ``deadline``; False if stopped meanwhile."""
        delay = deadline - time.monotonic()
        if delay > 0:
            return not self._stop.wait(delay)
        return not self._stop.is_set()

    def _paced_write(self, reply: bytes) -> bool:
        """Write ``reply`` so that byte ``k`` leaves no earlier than ``(k+1)`` character times
        after the start: the whole reply takes ≥ ``len(reply) × bits_per_char / baud`` seconds."""
        chunk = max(1, int(_CHUNK_S / self.char_time_s))
        start = time.monotonic()
        for i in range(0, len(reply), chunk):
            part = reply[i : i + chunk]
            if not self._sleep_until(start + self.wire_time_s(i + len(part))):
                return False
            if not self._send(part):
                log.debug("%s: peer gone, reply dropped", self.describe())
                return False
        return True


class PtyLine(Line):
    """A pty pair: the simulator holds the master, a client opens :attr:`device_path`.

    The slave is put in raw mode (``tty.setraw``) and kept open for the life of the line, so the
    master never sees EIO when the client closes its end (test-infrastructure.md §5.2). Note that
    pyserial's ``open()`` flushes the input buffer (§5.3): open the port before sending requests.
    """

    def __init__(
        self,
        responder: Responder,
        *,
        baud: int = 115200,
        turnaround_s: float = 0.002,
        bits_per_char: int = 10,
        framer: Framer | None = None,
    ) -> None:
        super().__init__(
            responder,
            baud=baud,
            turnaround_s=turnaround_s,
            bits_per_char=bits_per_char,
            framer=framer,
        )
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)
        os.set_blocking(self._master, False)
        #: path of the pty slave, for the client to open (e.g. ``/dev/pts/5``)
        self.device_path: str = os.ttyname(self._slave)
        self._closed = False
        self._close_lock = threading.Lock()

    def describe(self) -> str:
        return self.device_path

    def _poll(self, timeout: float) -> bytes:
        if self._closed:
            self._stop.wait(timeout)
            return b""
        readable, _, _ = select.select([self._master], [], [], timeout)
        if not readable:
            return b""
        try:
            return os.read(self._master, 4096)
        except (BlockingIOError, InterruptedError):
            return b""
        except OSError:  # EIO: no slave open (cannot happen while we hold ours)
            self._stop.wait(timeout)
            return b""

    def _send(self, data: bytes) -> bool:
        view = memoryview(data)
        while view:
            if self._stop.is_set() or self._closed:
                return False
            try:
                n = os.write(self._master, view)
            except BlockingIOError:
                # The client is not reading and the pty buffer is full: wait, stay stoppable.
                select.select([], [self._master], [], _POLL_S)
                continue
            except OSError:
                return False
            view = view[n:]
        return True

    def _close(self) -> None:
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
            for fd in (self._master, self._slave):
                with contextlib.suppress(OSError):
                    os.close(fd)


class TcpLine(Line):
    """A listening TCP socket speaking raw bytes, like an RS485-to-Ethernet gateway.

    One client at a time; a new connection replaces the old one. ``port=0`` binds a random
    free port: read the bound one from :attr:`port` (or :attr:`address`). Clients connect e.g.
    with ``serial.serial_for_url("socket://127.0.0.1:<port>")``.
    """

    def __init__(
        self,
        responder: Responder,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        baud: int = 115200,
        turnaround_s: float = 0.002,
        bits_per_char: int = 10,
        framer: Framer | None = None,
    ) -> None:
        super().__init__(
            responder,
            baud=baud,
            turnaround_s=turnaround_s,
            bits_per_char=bits_per_char,
            framer=framer,
        )
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._listener = socket.socket(family, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self._listener.bind((host, port))
            self._listener.listen(4)
        except OSError:
            self._listener.close()
            raise
        self._client: socket.socket | None = None
        self._lock = threading.Lock()
        self._closed = False
        bound = self._listener.getsockname()
        self.host: str = str(bound[0])
        #: the bound TCP port (the real one when 0 was asked for)
        self.port: int = int(bound[1])

    @property
    def address(self) -> str:
        """``host:port`` as bound."""
        return f"{self.host}:{self.port}"

    def describe(self) -> str:
        return f"tcp {self.address}"

    def _drop_client(self) -> None:
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(OSError):
                client.close()

    def _poll(self, timeout: float) -> bytes:
        if self._closed:
            self._stop.wait(timeout)
            return b""
        client = self._client
        watched: list[socket.socket] = [self._listener] + ([client] if client else [])
        readable, _, _ = select.select(watched, [], [], timeout)
        if self._listener in readable:
            try:
                new, peer = self._listener.accept()
            except OSError:
                pass
            else:
                new.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                new.settimeout(1.0)
                self._drop_client()
                self._assembler.reset()
                with self._lock:
                    self._client = new
                log.debug("%s: client %s connected", self.describe(), peer)
            return b""
        if client is not None and client in readable:
            try:
                data = client.recv(4096)
            except OSError:
                data = b""
            if not data:
                log.debug("%s: client disconnected", self.describe())
                if self._client is client:
                    self._drop_client()
                    self._assembler.reset()
            return data
        return b""

    def _send(self, data: bytes) -> bool:
        client = self._client
        if client is None:
            return False
        try:
            client.sendall(data)
        except OSError:  # includes timeouts: a client that does not read is dropped
            if self._client is client:
                self._drop_client()
            return False
        return True

    def _close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._drop_client()
        with contextlib.suppress(OSError):
            self._listener.close()
