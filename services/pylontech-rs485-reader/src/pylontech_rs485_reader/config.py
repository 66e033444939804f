"""Configuration of one pylontech-rs485-reader instance: the table ``[pylontech_rs485.<instance>]``.

One instance serves one RS485 bus (one adapter or TCP bridge). Keys, units and defaults are listed
in the service README; defaults follow ../shared/protocols/pylontech-rs485.md §10.3.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from bmslink.schema import DeviceId

Address = Annotated[int, Meta(ge=0, le=254)]


class BusConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """One RS485 bus of Pylontech packs.

    - ``port``: a device path (``/dev/serial/by-id/...``) or a pyserial URL
      (``socket://host:port``, ``rfc2217://host:port``).
    - ``baudrate``: 115200 or 9600 (DIP switch 1 of the master).
    - ``addresses``: pack addresses polled one by one (ADR = 0x10·group + 2..13).
    - ``stack_query``: ``per_address`` (default; every model) or ``ff`` (one INFO=FF 0x42 to
      ``addresses[0]`` returns every module of the group; older US2000/US3000 firmware only).
      In ``ff`` mode module *i* of the reply is the pack at ``addresses[0] + i``.
    - ``poll_interval`` (s): period of a full cycle; ``command_gap`` (s): minimum gap between
      two commands on the bus (US3000C manual: ≥ 1 s); ``timeout`` (s): response deadline;
      ``retries``: re-sends after a timeout or checksum error; ``offline_after``: consecutive
      failed polls before a pack is reported ``offline``.
    - ``id_prefix``: pack ids are ``<id_prefix>-<address>`` (default: the instance name);
      ``ids`` maps an address (as a string key) to an explicit id.
    - ``capture``: path of a JSON-lines capture of every request and response (for bug reports
      and the simulator's replay), or null.
    - ``dialect``: ``auto`` (default: Pylontech, switching a pack to the Maple Leaf Beaver
      dialect when it answers with VER 0x21), ``pylontech`` (VER 0x20 only) or ``beaver``
      (VER 0x21, INFO 00, ADR 0..3, doc §12).
    - ``management_interval`` (s): period of 0x92 (CVL/DVL/CCL/DCL, charge/discharge enable);
      ``parameters_interval`` (s): period of 0x47 (system parameters). Identity (0x4F, 0x51,
      0x93, 0x96) is read at start and whenever a pack comes back online.
    """

    port: str
    baudrate: Annotated[int, Meta(ge=300, le=1_000_000)] = 115200
    addresses: Annotated[list[Address], Meta(min_length=1, max_length=64)] = msgspec.field(
        default_factory=lambda: [2]
    )
    stack_query: Literal["per_address", "ff"] = "per_address"
    poll_interval: Annotated[float, Meta(gt=0, le=3600)] = 2.0
    command_gap: Annotated[float, Meta(ge=0, le=60)] = 1.0
    timeout: Annotated[float, Meta(gt=0, le=30)] = 1.0
    retries: Annotated[int, Meta(ge=0, le=10)] = 1
    offline_after: Annotated[int, Meta(ge=1, le=100)] = 3
    id_prefix: DeviceId | None = None
    ids: dict[str, DeviceId] = msgspec.field(default_factory=dict)
    capture: str | None = None
    exit_after_link_lost: Annotated[float, Meta(ge=0, le=86400)] = 0.0
    dialect: Literal["auto", "pylontech", "beaver"] = "auto"
    management_interval: Annotated[float, Meta(ge=0, le=86400)] = 30.0
    parameters_interval: Annotated[float, Meta(ge=0, le=86400)] = 3600.0

    def __post_init__(self) -> None:
        if len(set(self.addresses)) != len(self.addresses):
            raise ValueError(f"duplicate address in {self.addresses} - at `$.addresses`")
        if self.dialect == "pylontech" and {0, 1} & set(self.addresses):
            raise ValueError(
                "Pylontech packs start at ADR 2 (0 and 1 are reserved) - at `$.addresses`"
            )
        if self.dialect == "beaver" and not set(self.addresses) <= set(range(4)):
            raise ValueError("a Beaver answers at ADR 0..3 - at `$.addresses`")
        if self.stack_query == "ff" and self.dialect == "beaver":
            raise ValueError("the Beaver has no INFO=FF group read - at `$.stack_query`")


def device_id(bus: BusConfig, instance: str, address: int) -> str:
    """The id of the pack at ``address``: ``ids[address]`` or ``<id_prefix|instance>-<address>``."""
    return bus.ids.get(str(address), f"{bus.id_prefix or instance}-{address}")


def device_ids(bus: BusConfig, instance: str) -> list[str]:
    """The ids of the configured packs (for ``--print-device-ids`` and the broker ACL)."""
    return [device_id(bus, instance, address) for address in bus.addresses]
