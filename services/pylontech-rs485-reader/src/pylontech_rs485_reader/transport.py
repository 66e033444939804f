"""The serial link to an RS485 bus: a local port or a pyserial URL (``socket://``, ``rfc2217://``).

All I/O of the reader lives here. :meth:`SerialTransport.exchange` sends one request and reads
one frame (``~`` .. CR) against an overall deadline, following
../shared/protocols/pylontech-rs485.md §10.1: flush RX before sending, read to CR (never
``readline``), parse from the last ``~`` before the CR, skip an echo of the request and late
replies from other addresses.
"""

from __future__ import annotations

import contextlib
import json
import logging
import termios
import time
from typing import IO

import serial

log = logging.getLogger(__name__)


class LinkError(Exception):
    """The port cannot be opened or failed (USB unplugged, bridge down)."""


class CaptureWriter:
    """Writes every request (``tx``) and response (``rx``) as JSON lines:
    ``{"ts": unix_seconds, "dir": "tx"|"rx", "frame": "~...\\r"}`` (the simulator replays it)."""

    def __init__(self, path: str) -> None:
        self._fh: IO[str] = open(path, "a", encoding="ascii", buffering=1)  # noqa: SIM115

    def write(self, direction: str, frame: bytes) -> None:
        """Append one frame, stamped with the current Unix time (s)."""
        record = {"ts": time.time(), "dir": direction, "frame": frame.decode("latin-1")}
        self._fh.write(json.dumps(record) + "\n")

    def close(self) -> None:
        """Close the file."""
        self._fh.close()


class SerialTransport:
    """One half-duplex serial link, opened lazily and reopened after a failure.

    ``url`` is a device path or pyserial URL, ``baudrate`` in Bd (ignored by TCP bridges).
    """

    def __init__(self, url: str, baudrate: int, capture: CaptureWriter | None = None) -> None:
        self.url = url
        self.baudrate = baudrate
        self.capture = capture
        self.noise_bytes = 0
        self.stale_frames = 0
        self._request = b""
        self._buffer = bytearray()
        self._port: serial.Serial | None = None

    @property
    def is_open(self) -> bool:
        """Whether the port is open now."""
        return self._port is not None

    def open(self) -> None:
        """Open the port; raises :class:`LinkError`."""
        if self._port is not None:
            return
        try:
            self._port = serial.serial_for_url(self.url, baudrate=self.baudrate, timeout=0.05)  # type: ignore[assignment]
        except (serial.SerialException, OSError, ValueError) as exc:
            raise LinkError(f"cannot open {self.url}: {exc}") from exc
        log.info("opened %s at %d Bd", self.url, self.baudrate)

    def close(self) -> None:
        """Close the port (no error if it is already gone)."""
        port, self._port = self._port, None
        if port is not None:
            with contextlib.suppress(serial.SerialException, OSError, termios.error):
                port.close()

    def exchange(self, request: bytes, timeout: float) -> bytes | None:
        """Send ``request`` and return the first frame that is neither its echo nor from
        another ADR (a late reply to an earlier request, counted in ``stale_frames``), or None
        when nothing complete arrived within ``timeout`` s. Raises :class:`LinkError` if the port
        fails (it is then closed; the next call reopens it)."""
        self.open()
        port = self._port
        assert port is not None
        try:
            port.reset_input_buffer()
            port.write(request)
        except (serial.SerialException, OSError, termios.error) as exc:
            # termios.error (not an OSError) is what a vanished pty/USB port raises on flush
            self.close()
            raise LinkError(f"{self.url}: {exc}") from exc
        if self.capture:
            self.capture.write("tx", request)
        self._request = request
        self._buffer.clear()
        return self.next_frame(timeout)

    def next_frame(self, timeout: float) -> bytes | None:
        """The next frame answering the last request (same filters as :meth:`exchange`) within
        ``timeout`` s, without sending anything: used after a refused frame, so that a late
        reply to an earlier request does not shift every following answer by one."""
        port = self._port
        if port is None:
            return None
        request = self._request
        buffer = self._buffer
        deadline = time.monotonic() + timeout
        try:
            while True:
                cr = buffer.find(b"\r")
                while cr >= 0:
                    raw = bytes(buffer[: cr + 1])
                    del buffer[: cr + 1]
                    start = raw.rfind(b"~")
                    self.noise_bytes += start if start > 0 else (len(raw) if start < 0 else 0)
                    if start >= 0:
                        frame = raw[start:]
                        if self.capture:
                            self.capture.write("rx", frame)
                        if frame == request:
                            pass  # our own echo (half-duplex adapter), doc §5
                        elif frame[3:5].upper() != request[3:5].upper():
                            self.stale_frames += 1  # a late reply to an earlier request
                        else:
                            return frame
                    cr = buffer.find(b"\r")
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                port.timeout = min(remaining, 0.05)
                chunk = port.read(max(1, port.in_waiting))
                if chunk:
                    buffer += chunk
        except (serial.SerialException, OSError, termios.error) as exc:
            self.close()
            raise LinkError(f"{self.url}: {exc}") from exc
