"""Daly boards over BLE through a mocked BlueZ (python-dbusmock's ``bluez5`` template).

The simulator drives the mock from outside with dbus-fast (asyncio): it creates the adapter, the
devices and their GATT objects (service ``fff0`` with notify ``fff1`` and write ``fff2``, or
``ff00``/``ff01``/``ff02``), applies the four workarounds of
``shared/reference/test-infrastructure.md`` §8.1, and plays the BMS: every ``WriteValue`` on the
TX characteristic arrives as the mock's ``MethodCalled`` signal; the reply is published as
notifications by updating the RX characteristic's ``Value``. Faults (:class:`~.daly.Faults`):
split or merged notifications, garbage, bad checksums, silence, and
:meth:`BlePeripheral.disconnect`.

bleak only reports devices whose properties change while discovery runs, so the RSSI of every
device is bumped while the adapter is discovering.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from typing import Any, Protocol

from dbus_fast import Message, MessageType, Variant
from dbus_fast.aio import MessageBus

from battery_simulator.daly import Faults

__all__ = ["BleBoard", "BlePeripheral", "FrameResponder"]

log = logging.getLogger(__name__)

BLUEZ = "org.bluez"
MOCK = "org.freedesktop.DBus.Mock"
DEVICE = "org.bluez.Device1"
SERVICE = "org.bluez.GattService1"
CHAR = "org.bluez.GattCharacteristic1"
OBJECT_MANAGER = "org.freedesktop.DBus.ObjectManager"

_CONNECT = (
    "self.UpdateProperties('org.bluez.Device1', {'Connected': dbus.Boolean(True), "
    "'ServicesResolved': dbus.Boolean(True)})"
)
_DISCONNECT = (
    "self.UpdateProperties('org.bluez.Device1', {'Connected': dbus.Boolean(False), "
    "'ServicesResolved': dbus.Boolean(False)})"
)
_NOTIFY_ON = (
    "self.UpdateProperties('org.bluez.GattCharacteristic1', {'Notifying': dbus.Boolean(True)})"
)
_NOTIFY_OFF = (
    "self.UpdateProperties('org.bluez.GattCharacteristic1', {'Notifying': dbus.Boolean(False)})"
)
_READ = "ret = self.props['org.bluez.GattCharacteristic1']['Value']"


def _uuid(short: str) -> str:
    return f"0000{short}-0000-1000-8000-00805f9b34fb"


class FrameResponder(Protocol):
    """A Daly board behaviour: request frame → reply frames (None = silence)."""

    faults: Faults

    def respond_frames(self, request: bytes) -> list[bytes] | None:
        """The reply frames to ``request``."""
        ...


class Framer(Protocol):
    """Cuts requests out of written bytes."""

    def feed(self, data: bytes, now: float) -> list[tuple[bytes, float]]:
        """Complete requests with their start times."""
        ...


@dataclass
class BleBoard:
    """One simulated BLE Daly device: ``address`` (MAC), advertised ``name``, its behaviour,
    the framer for its requests and the GATT variant (``fff0`` or ``ff00``)."""

    address: str
    name: str
    responder: FrameResponder
    framer: Framer
    variant: str = "fff0"
    manufacturer_id: int = 0x0302
    manufacturer_data: bytes = bytes.fromhex("16401710015c9b444c")
    path: str = ""
    rx_path: str = ""
    tx_path: str = ""
    writes: list[bytes] = field(default_factory=list)
    notifications: int = 0


class BlePeripheral:
    """The BlueZ mock side of one or more Daly BLE boards, on the bus at ``bus_address``.

    Use ``await start()``, ``await stop()``; the bus and the mock (``python -m dbusmock --system
    --template bluez5``) must already run.
    """

    def __init__(self, bus_address: str, boards: list[BleBoard], adapter: str = "hci0") -> None:
        self.bus_address = bus_address
        self.boards = boards
        self.adapter = adapter
        self.adapter_path = f"/org/bluez/{adapter}"
        self._bus: MessageBus | None = None
        self._by_tx: dict[str, BleBoard] = {}
        self._discovering = False
        self._bumper: asyncio.Task[None] | None = None
        self._rssi = -60
        self._tasks: set[asyncio.Task[None]] = set()

    # --- D-Bus helpers ---------------------------------------------------------------------

    async def _call(
        self,
        path: str,
        interface: str,
        member: str,
        signature: str = "",
        body: list[Any] | None = None,
    ) -> list[Any]:
        assert self._bus is not None
        reply = await self._bus.call(
            Message(
                destination=BLUEZ,
                path=path,
                interface=interface,
                member=member,
                signature=signature,
                body=body or [],
            )
        )
        assert reply is not None
        if reply.message_type == MessageType.ERROR:
            raise RuntimeError(f"{member} on {path}: {reply.error_name} {reply.body}")
        return list(reply.body)

    async def _add_object(
        self, path: str, interface: str, props: dict[str, Variant], methods: list[list[str]]
    ) -> None:
        await self._call(
            "/", MOCK, "AddObject", "ssa{sv}a(ssss)", [path, interface, props, methods]
        )
        await self._call(
            "/",
            MOCK,
            "EmitSignal",
            "sssav",
            [
                OBJECT_MANAGER,
                "InterfacesAdded",
                "oa{sa{sv}}",
                [Variant("o", path), Variant("a{sa{sv}}", {interface: props})],
            ],
        )

    # --- set-up ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Connect to the bus, create adapter, devices and GATT objects, and start serving."""
        self._bus = await MessageBus(bus_address=self.bus_address).connect()
        with contextlib.suppress(RuntimeError):  # the adapter may exist already
            await self._call("/", "org.bluez.Mock", "AddAdapter", "ss", [self.adapter, "daly-sim"])
        for board in self.boards:
            await self._add_board(board)
        self._bus.add_message_handler(self._on_message)
        for rule in (f"type='signal',interface='{MOCK}',member='MethodCalled'",):
            await self._bus.call(
                Message(
                    destination="org.freedesktop.DBus",
                    path="/org/freedesktop/DBus",
                    interface="org.freedesktop.DBus",
                    member="AddMatch",
                    signature="s",
                    body=[rule],
                )
            )
        self._bumper = asyncio.create_task(self._bump_rssi())

    async def _add_board(self, board: BleBoard) -> None:
        (path,) = await self._call(
            "/", "org.bluez.Mock", "AddDevice", "sss", [self.adapter, board.address, board.name]
        )
        board.path = path
        service_short, rx_short, tx_short = (
            ("fff0", "fff1", "fff2") if board.variant == "fff0" else ("ff00", "ff01", "ff02")
        )
        # workaround 1: advertisement dictionaries typed a{qv} / a{sv}
        await self._call(
            path,
            MOCK,
            "UpdateProperties",
            "sa{sv}",
            [
                DEVICE,
                {
                    "ManufacturerData": Variant(
                        "a{qv}", {board.manufacturer_id: Variant("ay", board.manufacturer_data)}
                    ),
                    "ServiceData": Variant("a{sv}", {}),
                    "UUIDs": Variant("as", [_uuid(service_short)]),
                },
            ],
        )
        # workaround 2 + 4: Connect/Disconnect resolve services, with dbus.Boolean
        await self._call(path, MOCK, "AddMethod", "sssss", [DEVICE, "Connect", "", "", _CONNECT])
        await self._call(
            path, MOCK, "AddMethod", "sssss", [DEVICE, "Disconnect", "", "", _DISCONNECT]
        )
        # workaround 3: GATT objects, with InterfacesAdded emitted by hand
        service = f"{path}/service0010"
        await self._add_object(
            service,
            SERVICE,
            {
                "UUID": Variant("s", _uuid(service_short)),
                "Device": Variant("o", path),
                "Primary": Variant("b", True),
                "Includes": Variant("ao", []),
                "Handle": Variant("q", 0x10),
            },
            [],
        )
        board.rx_path = f"{service}/char0011"
        board.tx_path = f"{service}/char0014"
        for char_path, short, flags, handle in (
            (board.rx_path, rx_short, ["read", "notify"], 0x11),
            (board.tx_path, tx_short, ["read", "write", "write-without-response"], 0x14),
        ):
            await self._add_object(
                char_path,
                CHAR,
                {
                    "UUID": Variant("s", _uuid(short)),
                    "Service": Variant("o", service),
                    "Value": Variant("ay", b""),
                    "Notifying": Variant("b", False),
                    "Flags": Variant("as", flags),
                    "Handle": Variant("q", handle),
                    "MTU": Variant("q", 247),
                },
                [
                    ["ReadValue", "a{sv}", "ay", _READ],
                    ["WriteValue", "aya{sv}", "", ""],
                    ["StartNotify", "", "", _NOTIFY_ON],
                    ["StopNotify", "", "", _NOTIFY_OFF],
                ],
            )
        self._by_tx[board.tx_path] = board

    async def stop(self) -> None:
        """Stop serving and disconnect from the bus."""
        if self._bumper is not None:
            self._bumper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._bumper
        if self._bus is not None:
            self._bus.disconnect()
            self._bus = None

    # --- behaviour -------------------------------------------------------------------------

    def _on_message(self, msg: Message) -> None:
        if msg.message_type != MessageType.SIGNAL or msg.member != "MethodCalled":
            return
        name, args = msg.body[0], msg.body[1]
        if msg.path == self.adapter_path and name in ("StartDiscovery", "StopDiscovery"):
            self._discovering = name == "StartDiscovery"
            return
        board = self._by_tx.get(msg.path or "")
        if board is None or name != "WriteValue":
            return
        data = bytes(args[0].value)
        options = args[1].value if len(args) > 1 else {}
        kind = options["type"].value if "type" in options else "request"
        if board.responder.faults.require_write_response and kind == "command":
            return
        board.writes.append(data)
        loop = asyncio.get_running_loop()
        for request, _ in board.framer.feed(data, loop.time()):
            frames = board.responder.respond_frames(request)
            if frames:
                task = loop.create_task(self._notify(board, frames))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    async def _notify(self, board: BleBoard, frames: list[bytes]) -> None:
        faults = board.responder.faults
        payload = faults.garbage + b"".join(frames)
        if faults.split:
            chunks = [payload[i : i + faults.split] for i in range(0, len(payload), faults.split)]
        elif faults.merge:
            chunks = [payload]
        else:
            chunks = [faults.garbage + frames[0], *frames[1:]] if frames else []
        for chunk in chunks:
            await self.notify(board, chunk)

    async def notify(self, board: BleBoard, data: bytes) -> None:
        """Send one notification ``data`` from ``board`` (also usable by tests)."""
        board.notifications += 1
        await self._call(
            board.rx_path,
            MOCK,
            "UpdateProperties",
            "sa{sv}",
            [CHAR, {"Value": Variant("ay", data)}],
        )

    async def disconnect(self, board: BleBoard) -> None:
        """Drop the connection from the device side (BlueZ reports Connected = false)."""
        await self._call(
            board.path,
            MOCK,
            "UpdateProperties",
            "sa{sv}",
            [DEVICE, {"Connected": Variant("b", False), "ServicesResolved": Variant("b", False)}],
        )

    async def _bump_rssi(self) -> None:
        while True:
            await asyncio.sleep(0.25)
            if not self._discovering:
                continue
            self._rssi = -61 if self._rssi == -60 else -60
            for board in self.boards:
                with contextlib.suppress(RuntimeError):
                    await self._call(
                        board.path,
                        MOCK,
                        "UpdateProperties",
                        "sa{sv}",
                        [DEVICE, {"RSSI": Variant("n", self._rssi)}],
                    )
