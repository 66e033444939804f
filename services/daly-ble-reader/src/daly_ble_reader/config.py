"""Configuration of one daly-ble-reader instance: the table ``[daly.<instance>]``.

One instance serves one adapter: a Bluetooth adapter (``transport = "ble"``) or one serial port /
RS485 bus (``transport = "serial"``), with one or more Daly BMSes in ``devices``. Keys, units and
defaults are listed in the service README; protocol defaults follow
../shared/protocols/daly.md §2, §3.1 and §11.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from bmslink.schema import DeviceId

Protocol = Literal["auto", "a5", "d2", "p81", "sinowealth"]
PROTOCOLS: tuple[str, ...] = ("a5", "d2", "p81", "sinowealth")


class DeviceConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """One Daly BMS.

    - ``id``: the device id (topics ``bms/<id>/...``).
    - ``protocol``: ``auto`` (detect once, remember per device), ``a5``, ``d2``, ``p81`` (0x81/0x51)
      or ``sinowealth`` (serial only).
    - ``address``: BLE MAC address (``AA:BB:CC:DD:EE:FF``); or ``name``: the advertised name
      (``DL-...``); one of them is required over BLE.
    - ``board``: board number on an RS485 bus (A5: request address host + board − 1, reply from
      ``board``; 0x81: request 0x80 + board).
    - ``host_address``: A5 host address (default 0x40 on serial, 0x80 over BLE; detection falls
      back to the other one).
    - ``invert_current``: A5 current polarity; null = automatic (raw > 30000 = discharge, checked
      against the 0x93 state and flipped after 3 contradictions), true/false = fixed.
    - ``status_registers``: D2 status read, 62 (default) or 80 ("blue series").
    - ``read_mosfet_block``: D2 with 62 registers: also read 0x3E x 9 (MOSFET temperature,
      balancing bits).
    """

    id: DeviceId
    protocol: Protocol = "auto"
    address: Annotated[str, Meta(pattern=r"^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}$")] | None = None
    name: Annotated[str, Meta(min_length=1, max_length=64)] | None = None
    board: Annotated[int, Meta(ge=1, le=15)] = 1
    host_address: Annotated[int, Meta(ge=0, le=255)] | None = None
    invert_current: bool | None = None
    status_registers: Literal[62, 80] = 62
    read_mosfet_block: bool = False


class DalyConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """One adapter and its Daly BMSes.

    - ``transport``: ``ble`` or ``serial``.
    - ``port``: serial device path or pyserial URL (``socket://host:port``); required for serial.
    - ``baudrate``: Bd, 9600 for every Daly board.
    - ``adapter``: Bluetooth adapter (``hci0``), null = the default one.
    - ``devices``: the BMSes (at least one).
    - ``poll_interval`` (s): period of a full cycle over every device.
    - ``timeout`` (s): reply deadline of one request; null = 0.5 s on serial, 1.5 s over BLE.
    - ``retries``: re-sends after a timeout or a refused frame.
    - ``command_gap`` (s): minimum gap between two requests on a serial bus.
    - ``offline_after``: consecutive failed polls before a device is reported offline.
    - ``control``: accept MOSFET commands on ``bms/<id>/set`` (off: refused with a result).
    - ``concurrent``: BLE, several devices: keep every device connected at once (false: one
      connection at a time, connect → poll → disconnect).
    - ``connect_timeout`` (s): BLE scan + connect deadline.
    - ``reconnect_max`` (s): longest back-off between two BLE connection attempts.
    - ``stale_after`` (s): a BLE link connected but without a valid frame for this long is torn
      down and reconnected.
    - ``probe_sinowealth``: serial auto-detection also tries Sinowealth (off by default: its
      frames can upset other devices on a shared bus, doc §2).
    - ``a5_fill``: data fill byte of A5 requests, 0 (default) or 170 (0xAA, noisy UARTs).
    - ``capture``: append every frame (with timestamps, BLE notifications as received) as JSON
      lines to this file, or null.
    """

    transport: Literal["ble", "serial"] = "ble"
    port: str | None = None
    baudrate: Annotated[int, Meta(ge=300, le=1_000_000)] = 9600
    adapter: str | None = None
    devices: Annotated[list[DeviceConfig], Meta(min_length=1, max_length=32)]
    poll_interval: Annotated[float, Meta(gt=0, le=3600)] = 5.0
    timeout: Annotated[float, Meta(gt=0, le=30)] | None = None
    retries: Annotated[int, Meta(ge=0, le=10)] = 2
    command_gap: Annotated[float, Meta(ge=0, le=10)] = 0.25
    offline_after: Annotated[int, Meta(ge=1, le=100)] = 3
    control: bool = False
    concurrent: bool = False
    connect_timeout: Annotated[float, Meta(gt=0, le=120)] = 10.0
    reconnect_max: Annotated[float, Meta(gt=0, le=3600)] = 60.0
    stale_after: Annotated[float, Meta(gt=0, le=3600)] = 30.0
    probe_sinowealth: bool = False
    a5_fill: Literal[0, 170] = 0
    capture: str | None = None

    def __post_init__(self) -> None:
        if self.transport == "serial" and not self.port:
            raise ValueError("serial transport needs a port - at `$.port`")
        ids = [d.id for d in self.devices]
        for i, device in enumerate(self.devices):
            if ids.index(device.id) != i:
                raise ValueError(f"device id {device.id!r} is used twice - at `$.devices[{i}].id`")
            if self.transport == "ble" and not (device.address or device.name):
                raise ValueError(
                    f"a BLE device needs `address` or `name` - at `$.devices[{i}].address`"
                )
            if self.transport == "ble" and device.protocol == "sinowealth":
                raise ValueError(f"Sinowealth boards have no BLE - at `$.devices[{i}].protocol`")

    @property
    def reply_timeout(self) -> float:
        """The effective reply deadline, s."""
        if self.timeout is not None:
            return self.timeout
        return 1.5 if self.transport == "ble" else 0.5


def device_ids(cfg: DalyConfig, instance: str) -> list[str]:
    """The ids of the configured devices (``--print-device-ids``, broker ACL)."""
    return [d.id for d in cfg.devices]
