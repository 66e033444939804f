"""A mocked BlueZ on a private D-Bus for bleak's real BlueZ backend (no Bluetooth needed).

Follows ../shared/reference/test-infrastructure.md §8.1: a private ``dbus-daemon``, exported as
``DBUS_SYSTEM_BUS_ADDRESS``, with python-dbusmock's ``bluez5`` template on it. The four GATT
workarounds (advertisement dictionaries, Connect resolving services, GATT objects with a manual
InterfacesAdded, ``dbus.Boolean`` in method code) are applied by
:class:`battery_simulator.daly_ble.BlePeripheral`, which also plays the Daly boards; this module
runs the daemon and the mock, and runs a peripheral in a thread with its own event loop.

Needs the ``dbus-daemon`` binary (apt ``dbus``) and python-dbusmock 0.38.1 (dev group; it builds
dbus-python, apt ``libdbus-1-dev libglib2.0-dev pkg-config``).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from battery_simulator.daly_ble import BleBoard, BlePeripheral

T = TypeVar("T")


def _dbus_daemon() -> str:
    found = shutil.which("dbus-daemon") or (
        "/usr/bin/dbus-daemon" if os.path.exists("/usr/bin/dbus-daemon") else None
    )
    if found is None:
        raise RuntimeError("dbus-daemon is not installed: `apt-get install dbus` (see .ci/run)")
    return found


class PrivateBlueZ:
    """A private bus (``address``) with the bluez5 mock; :meth:`stop` ends both processes."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.daemon: subprocess.Popen[bytes] | None = None
        self.mock: subprocess.Popen[bytes] | None = None
        self.address = ""

    def start(self, timeout: float = 10.0) -> None:
        """Start the daemon and the mock; wait until ``org.bluez`` has an owner."""
        self.daemon = subprocess.Popen(
            [_dbus_daemon(), "--session", "--nofork", "--print-address=1", "--nopidfile"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        assert self.daemon.stdout is not None
        self.address = self.daemon.stdout.readline().decode().strip()
        if not self.address:
            raise RuntimeError("dbus-daemon printed no address")
        env = {**os.environ, "DBUS_SYSTEM_BUS_ADDRESS": self.address}
        log = (self.workdir / "dbusmock.log").open("wb")
        self.mock = subprocess.Popen(
            [sys.executable, "-m", "dbusmock", "--system", "--template", "bluez5"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.mock.poll() is not None:
                raise RuntimeError(
                    f"dbusmock exited: {(self.workdir / 'dbusmock.log').read_text()}"
                )
            if _has_owner(self.address, "org.bluez"):
                return
            time.sleep(0.02)
        raise RuntimeError("org.bluez did not appear on the private bus")

    def stop(self) -> None:
        """Terminate the mock and the daemon."""
        for proc in (self.mock, self.daemon):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        if self.daemon is not None and self.daemon.stdout is not None:
            self.daemon.stdout.close()


def _has_owner(address: str, name: str) -> bool:
    from dbus_fast import Message
    from dbus_fast.aio import MessageBus

    async def check() -> bool:
        bus = await MessageBus(bus_address=address).connect()
        try:
            reply = await bus.call(
                Message(
                    destination="org.freedesktop.DBus",
                    path="/org/freedesktop/DBus",
                    interface="org.freedesktop.DBus",
                    member="NameHasOwner",
                    signature="s",
                    body=[name],
                )
            )
            return bool(reply is not None and reply.body and reply.body[0])
        finally:
            bus.disconnect()

    return asyncio.run(check())


class PeripheralThread:
    """Runs a :class:`BlePeripheral` on its own event loop in a daemon thread; :meth:`run`
    executes a coroutine on that loop (e.g. ``peripheral.disconnect(board)``) and waits."""

    def __init__(self, address: str, boards: list[BleBoard]) -> None:
        self.loop = asyncio.new_event_loop()
        self.peripheral = BlePeripheral(address, boards)
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def start(self) -> None:
        """Start the loop and the peripheral."""
        self._thread.start()
        self.run(self.peripheral.start())

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 10.0) -> T:
        """Run ``coro`` on the peripheral's loop and return its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        """Stop the peripheral and the loop."""
        try:
            self.run(self.peripheral.stop())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(5)


@contextmanager
def bluez_with(
    workdir: Path, boards: list[BleBoard]
) -> Iterator[tuple[PrivateBlueZ, PeripheralThread]]:
    """A private mocked BlueZ serving ``boards``; yields (bus, peripheral thread)."""
    bus = PrivateBlueZ(workdir)
    bus.start()
    peripheral = PeripheralThread(bus.address, boards)
    try:
        peripheral.start()
        yield bus, peripheral
    finally:
        try:
            peripheral.stop()
        finally:
            bus.stop()
