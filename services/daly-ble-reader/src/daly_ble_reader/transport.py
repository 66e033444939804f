"""The links to Daly BMSes: a serial port / pyserial URL, or a BLE GATT connection (bleak).

All I/O of the reader lives here. Both links are byte pipes with the same asyncio interface
(:class:`Link`): ``write`` a request, ``read`` whatever arrived (a serial chunk, one BLE
notification). Frames are cut out of the byte stream by the codecs' stream parsers, never from
one read (notification boundaries are arbitrary, ../shared/protocols/daly.md §3.3).

BLE (doc §3.2): service ``fff0`` with notify ``fff1`` and write ``fff2``, or the ``ff00``
variant (``ff01``/``ff02``) of newer firmware; addressed by MAC or by advertised name; writes
pass ``response`` explicitly (without response first, see the poller's fallback).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import termios
import time
from abc import ABC, abstractmethod
from typing import IO, Any

import serial

log = logging.getLogger(__name__)

FFF0 = "0000fff0-0000-1000-8000-00805f9b34fb"
FFF1 = "0000fff1-0000-1000-8000-00805f9b34fb"
FFF2 = "0000fff2-0000-1000-8000-00805f9b34fb"
FF00 = "0000ff00-0000-1000-8000-00805f9b34fb"
FF01 = "0000ff01-0000-1000-8000-00805f9b34fb"
FF02 = "0000ff02-0000-1000-8000-00805f9b34fb"
#: (service, notify/RX, write/TX) pairs in the order they are tried (doc §3.2)
CHARACTERISTIC_PAIRS = ((FFF0, FFF1, FFF2), (FF00, FF01, FF02))


class LinkError(Exception):
    """The link cannot be opened or failed (port gone, BLE device not found / disconnected)."""


class CaptureWriter:
    """Writes every frame as a JSON line: ``{"ts": unix_s, "dir": "tx"|"rx", "link": ...,
    "data": hex}``. Over BLE an ``rx`` record is one notification, as received."""

    def __init__(self, path: str) -> None:
        self._fh: IO[str] = open(path, "a", encoding="ascii", buffering=1)  # noqa: SIM115

    def write(self, direction: str, link: str, data: bytes) -> None:
        """Append one record stamped with the current Unix time (s)."""
        record = {"ts": time.time(), "dir": direction, "link": link, "data": data.hex()}
        self._fh.write(json.dumps(record) + "\n")

    def close(self) -> None:
        """Close the file."""
        self._fh.close()


class Link(ABC):
    """A byte pipe to one or more BMSes (asyncio)."""

    capture: CaptureWriter | None = None

    @property
    @abstractmethod
    def is_open(self) -> bool:
        """Whether the link is usable now."""

    @abstractmethod
    def describe(self) -> str:
        """Where the link goes (port/URL or BLE address)."""

    @abstractmethod
    async def open(self) -> None:
        """Open/connect; raises :class:`LinkError`."""

    @abstractmethod
    async def close(self) -> None:
        """Close/disconnect (never raises)."""

    @abstractmethod
    async def write(self, data: bytes, response: bool = False) -> None:
        """Send ``data`` (``response``: BLE write-with-response); raises :class:`LinkError`."""

    @abstractmethod
    async def read(self, timeout: float) -> bytes:
        """Bytes that arrived within ``timeout`` s (b"" if none); raises :class:`LinkError`."""

    @abstractmethod
    def discard_input(self) -> None:
        """Drop anything received but not read yet (before a new request)."""

    def _captured(self, direction: str, data: bytes) -> None:
        if self.capture is not None and data:
            self.capture.write(direction, self.describe(), data)


class SerialLink(Link):
    """A serial port or pyserial URL (``socket://``, ``rfc2217://``) at ``baudrate`` Bd.

    pyserial's blocking calls run in a worker thread (``asyncio.to_thread``) with short timeouts.
    """

    def __init__(self, url: str, baudrate: int, capture: CaptureWriter | None = None) -> None:
        self.url = url
        self.baudrate = baudrate
        self.capture = capture
        self._port: Any = None

    @property
    def is_open(self) -> bool:
        return self._port is not None

    def describe(self) -> str:
        return self.url

    async def open(self) -> None:
        if self._port is not None:
            return
        try:
            self._port = await asyncio.to_thread(
                serial.serial_for_url, self.url, baudrate=self.baudrate, timeout=0.02
            )
        except (serial.SerialException, OSError, ValueError) as exc:
            raise LinkError(f"cannot open {self.url}: {exc}") from exc
        log.info("opened %s at %d Bd", self.url, self.baudrate)

    async def close(self) -> None:
        port, self._port = self._port, None
        if port is not None:
            with contextlib.suppress(serial.SerialException, OSError, termios.error):
                port.close()

    def _fail(self, exc: BaseException) -> LinkError:
        port, self._port = self._port, None
        if port is not None:
            with contextlib.suppress(serial.SerialException, OSError, termios.error):
                port.close()
        return LinkError(f"{self.url}: {exc}")

    def discard_input(self) -> None:
        if self._port is None:
            return
        try:
            self._port.reset_input_buffer()
        except (serial.SerialException, OSError, termios.error) as exc:
            raise self._fail(exc) from exc

    async def write(self, data: bytes, response: bool = False) -> None:
        if self._port is None:
            raise LinkError(f"{self.url} is not open")
        try:
            await asyncio.to_thread(self._port.write, data)
        except (serial.SerialException, OSError, termios.error) as exc:
            raise self._fail(exc) from exc
        self._captured("tx", data)

    def _read_blocking(self, timeout: float) -> bytes:
        port = self._port
        if port is None:
            return b""
        port.timeout = timeout
        first: bytes = port.read(1)
        if not first:
            return b""
        waiting = port.in_waiting
        rest: bytes = port.read(waiting) if waiting else b""
        return first + rest

    async def read(self, timeout: float) -> bytes:
        if self._port is None:
            raise LinkError(f"{self.url} is not open")
        try:
            data = await asyncio.to_thread(self._read_blocking, max(0.0, min(timeout, 0.1)))
        except (serial.SerialException, OSError, termios.error) as exc:
            raise self._fail(exc) from exc
        self._captured("rx", data)
        return data


class BleLink(Link):
    """One BLE connection to a Daly BLE module (bleak, BlueZ backend on Linux).

    ``address`` (MAC) or ``name`` (advertised name) selects the device; ``adapter`` the
    Bluetooth adapter (None: default). Notifications go to a queue read by :meth:`read`; a
    disconnect (by the peer or BlueZ) makes the link not open and wakes a waiting reader.
    """

    def __init__(
        self,
        address: str | None,
        name: str | None,
        *,
        adapter: str | None = None,
        connect_timeout: float = 10.0,
        capture: CaptureWriter | None = None,
    ) -> None:
        if not (address or name):
            raise ValueError("a BLE link needs an address or a name")
        self.address = address
        self.name = name
        self.adapter = adapter
        self.connect_timeout = connect_timeout
        self.capture = capture
        self.service_uuid: str | None = None
        self.rx_uuid: str | None = None
        self.tx_uuid: str | None = None
        self.resolved_address: str | None = address
        self.connects = 0
        self._client: Any = None
        self._queue: asyncio.Queue[bytes] = asyncio.Queue()
        self._connected = False

    @property
    def is_open(self) -> bool:
        return self._client is not None and self._connected

    def describe(self) -> str:
        return f"ble://{self.resolved_address or self.name}"

    async def open(self) -> None:
        if self.is_open:
            return
        await self.close()
        from bleak import BleakClient, BleakScanner
        from bleak.exc import BleakError

        kwargs: dict[str, Any] = {"bluez": {"adapter": self.adapter}} if self.adapter else {}
        try:
            if self.address:
                device = await BleakScanner.find_device_by_address(
                    self.address, timeout=self.connect_timeout, **kwargs
                )
            else:
                assert self.name is not None
                device = await BleakScanner.find_device_by_name(
                    self.name, timeout=self.connect_timeout, **kwargs
                )
            if device is None:
                raise LinkError(f"BLE device {self.address or self.name} not found")
            self.resolved_address = device.address
            client = BleakClient(
                device,
                disconnected_callback=self._on_disconnect,
                timeout=self.connect_timeout,
                **kwargs,
            )
            await client.connect()
            self._client = client
            self._connected = True
            self._choose_characteristics(client)
            assert self.rx_uuid is not None
            self._queue = asyncio.Queue()
            await client.start_notify(self.rx_uuid, self._on_notify)
        except (TimeoutError, BleakError, OSError, EOFError) as exc:
            await self.close()
            raise LinkError(f"BLE {self.address or self.name}: {exc!r}") from exc
        except LinkError:
            await self.close()
            raise
        self.connects += 1
        log.info("connected to %s (service %s)", self.describe(), (self.service_uuid or "?")[4:8])

    def _choose_characteristics(self, client: Any) -> None:
        services = client.services
        for service_uuid, rx, tx in CHARACTERISTIC_PAIRS:
            service = services.get_service(service_uuid)
            if service is None:
                continue
            if service.get_characteristic(rx) and service.get_characteristic(tx):
                self.service_uuid, self.rx_uuid, self.tx_uuid = service_uuid, rx, tx
                return
        raise LinkError("no Daly GATT service (fff0 or ff00) on the device")

    def _on_disconnect(self, _client: Any) -> None:
        self._connected = False
        with contextlib.suppress(asyncio.QueueFull):
            self._queue.put_nowait(b"")  # wake a waiting read

    def _on_notify(self, _char: Any, data: bytearray) -> None:
        payload = bytes(data)
        self._captured("rx", payload)
        if payload:
            self._queue.put_nowait(payload)

    async def close(self) -> None:
        client, self._client = self._client, None
        self._connected = False
        if client is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.disconnect(), timeout=5.0)

    def discard_input(self) -> None:
        while not self._queue.empty():
            self._queue.get_nowait()

    async def write(self, data: bytes, response: bool = False) -> None:
        if not self.is_open:
            raise LinkError(f"{self.describe()} is not connected")
        from bleak.exc import BleakError

        self._captured("tx", data)
        try:
            await self._client.write_gatt_char(self.tx_uuid, data, response=response)
        except (TimeoutError, BleakError, OSError, EOFError) as exc:
            await self.close()
            raise LinkError(f"{self.describe()}: write failed: {exc!r}") from exc

    async def read(self, timeout: float) -> bytes:
        if not self.is_open and self._queue.empty():
            raise LinkError(f"{self.describe()} disconnected")
        try:
            data = await asyncio.wait_for(self._queue.get(), timeout=max(0.0, timeout))
        except TimeoutError:
            return b""
        if not data and not self.is_open:
            raise LinkError(f"{self.describe()} disconnected")
        return data
