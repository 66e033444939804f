"""The Modbus RTU link to a bus of PACE packs: minimalmodbus over a pyserial port or URL.

All I/O of the reader lives here. The port is opened with ``serial.serial_for_url`` (so
``socket://host:port`` reaches a TCP serial bridge, ``rfc2217://`` too) and handed to
``minimalmodbus.Instrument`` as an open port object, kept open across transactions (PACE
§2: the AM2 library's open/close per call is avoided). :class:`RtuPort` sits between the two:

* it records every request (``tx``) and reply (``rx``) for ``--capture`` and for typed errors;
* it ends a read early when the reply is an exception (function | 0x80): minimalmodbus would
  otherwise wait the whole timeout for the bytes of a normal reply.

minimalmodbus verifies CRC, address, function and byte count; when it refuses a reply, the raw
reply is re-parsed with :mod:`bmslink.protocols.modbus_rtu` so that the caller gets the typed
error (:class:`~bmslink.protocols.modbus_rtu.CrcError`,
:class:`~bmslink.protocols.modbus_rtu.ExceptionReplyError` with its code,
:class:`~bmslink.protocols.modbus_rtu.FrameError`) or :class:`NoAnswer`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import termios
import time
from typing import IO, Any

import minimalmodbus  # type: ignore[import-untyped]
import serial

from bmslink.protocols import modbus_rtu as rtu

log = logging.getLogger(__name__)


class LinkError(Exception):
    """The port cannot be opened or failed (USB unplugged, bridge down)."""


class NoAnswer(Exception):  # noqa: N818 - reads as what happened
    """No reply at all within the timeout (absent, silent or too slow slave)."""


class CaptureWriter:
    """Appends every frame as a JSON line ``{"ts": unix_s, "dir": "tx"|"rx", "frame": hex}``
    (``tx`` = host → battery), the format of the Pylontech reader's ``--capture``."""

    def __init__(self, path: str) -> None:
        self._fh: IO[str] = open(path, "a", encoding="ascii", buffering=1)  # noqa: SIM115

    def write(self, direction: str, frame: bytes) -> None:
        """Append one frame, stamped with the current Unix time (s)."""
        record = {"ts": time.time(), "dir": direction, "frame": frame.hex()}
        self._fh.write(json.dumps(record) + "\n")

    def close(self) -> None:
        """Close the file."""
        self._fh.close()


class RtuPort:
    """A pyserial port as minimalmodbus sees it, recording frames and cutting exception replies
    short. ``timeout`` (s) is the deadline for a whole reply."""

    def __init__(self, inner: Any, capture: CaptureWriter | None = None) -> None:
        self._inner = inner
        self.capture = capture
        self.timeout: float = 0.5
        self.last_rx = b""

    # --- the attributes minimalmodbus uses -----------------------------------------------
    @property
    def is_open(self) -> bool:
        """Whether the underlying port is open."""
        return bool(self._inner.is_open)

    @property
    def port(self) -> str:
        """The port name (minimalmodbus keys its inter-frame timing on it)."""
        return str(self._inner.port)

    @property
    def baudrate(self) -> int:
        """Line rate, Bd."""
        return int(self._inner.baudrate)

    def open(self) -> None:
        """Open the underlying port."""
        self._inner.open()

    def close(self) -> None:
        """Close the underlying port."""
        self._inner.close()

    def reset_input_buffer(self) -> None:
        """Drop unread input (a late reply from a previous transaction)."""
        self._inner.reset_input_buffer()

    def reset_output_buffer(self) -> None:
        """Drop unsent output."""
        self._inner.reset_output_buffer()

    def flush(self) -> None:
        """Wait until the output is sent."""
        self._inner.flush()

    def write(self, data: bytes) -> int | None:
        """Send a request (recorded as ``tx``)."""
        self.last_rx = b""
        if self.capture:
            self.capture.write("tx", data)
        return self._inner.write(data)  # type: ignore[no-any-return]

    def read(self, size: int) -> bytes:
        """Read up to ``size`` bytes within :attr:`timeout`; stop after 5 bytes when the reply is
        an exception (function code bit 0x80, §4.3). Recorded as ``rx`` when anything came."""
        deadline = time.monotonic() + self.timeout
        buf = bytearray()
        want = size
        while len(buf) < want:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            self._inner.timeout = remaining
            step = 2 - len(buf) if len(buf) < 2 else want - len(buf)
            chunk = self._inner.read(max(1, min(step, want - len(buf))))
            if not chunk:
                break
            buf += chunk
            if len(buf) >= 2 and buf[1] & rtu.EXCEPTION_BIT:
                want = min(want, rtu.EXCEPTION_LENGTH)
        self.last_rx = bytes(buf)
        if buf and self.capture:
            self.capture.write("rx", self.last_rx)
        return self.last_rx


class ModbusTransport:
    """One half-duplex Modbus RTU link, opened lazily and reopened after a failure.

    Args:
        url: device path or pyserial URL.
        baudrate: Bd (ignored by TCP bridges).
        timeout: deadline for a whole reply, s.
        capture: where to record frames, or None.

    Attributes:
        transactions: requests sent since start.
    """

    def __init__(
        self, url: str, baudrate: int, timeout: float, capture: CaptureWriter | None = None
    ) -> None:
        self.url = url
        self.baudrate = baudrate
        self.timeout = timeout
        self.capture = capture
        self.transactions = 0
        self._port: RtuPort | None = None
        self._instrument: Any = None

    @property
    def is_open(self) -> bool:
        """Whether the port is open now."""
        return self._port is not None

    def open(self) -> None:
        """Open the port; raises :class:`LinkError`."""
        if self._port is not None:
            return
        try:
            inner = serial.serial_for_url(
                self.url, baudrate=self.baudrate, bytesize=8, parity="N", stopbits=1, timeout=0.05
            )
        except (serial.SerialException, OSError, ValueError) as exc:
            raise LinkError(f"cannot open {self.url}: {exc}") from exc
        port = RtuPort(inner, self.capture)
        port.timeout = self.timeout
        instrument = minimalmodbus.Instrument(port, 1, close_port_after_each_call=False)
        instrument.clear_buffers_before_each_transaction = True
        self._port, self._instrument = port, instrument
        log.info("opened %s at %d Bd", self.url, self.baudrate)

    def close(self) -> None:
        """Close the port (no error if it is already gone)."""
        port, self._port, self._instrument = self._port, None, None
        if port is not None:
            with contextlib.suppress(serial.SerialException, OSError, termios.error):
                port.close()

    def read_registers(self, slave: int, start: int, count: int) -> list[int]:
        """Read ``count`` holding registers from ``start`` (FC 0x03) of ``slave``.

        Returns the registers as unsigned 16-bit integers.

        Raises:
            NoAnswer: nothing arrived within the timeout.
            rtu.CrcError / rtu.ExceptionReplyError / rtu.FrameError: a reply that is corrupted,
                an exception reply, or not the reply to this request.
            LinkError: the port failed (it is closed; the next call reopens it).
        """
        self.open()
        port, instrument = self._port, self._instrument
        assert port is not None
        instrument.address = slave
        self.transactions += 1
        try:
            values = instrument.read_registers(start, count, functioncode=rtu.FC_READ_HOLDING)
        except minimalmodbus.ModbusException as exc:  # before OSError: it is an IOError
            raw = port.last_rx
            if not raw:
                raise NoAnswer(f"slave {slave}: no answer within {self.timeout} s") from exc
            rtu.parse_read_response(raw, slave=slave, function=rtu.FC_READ_HOLDING, count=count)
            raise rtu.FrameError(f"slave {slave}: {exc} (reply {raw.hex()})") from exc
        except (serial.SerialException, OSError, termios.error) as exc:
            self.close()
            raise LinkError(f"{self.url}: {exc}") from exc
        return [int(v) for v in values]
