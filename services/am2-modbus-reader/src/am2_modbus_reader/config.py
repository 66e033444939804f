"""Configuration of one am2-modbus-reader instance: the table ``[pace_modbus.<instance>]``.

One instance serves one RS485 bus (one adapter or TCP bridge) of PACE BMS packs (Hubble Lithium
AM2 and others). Keys, units and defaults are listed in the service README; timing defaults follow
``shared/protocols/pace-modbus-am2.md`` §2 and addresses §3.
"""

from __future__ import annotations

from typing import Annotated

import msgspec
from msgspec import Meta

from bmslink.schema import DeviceId

#: PACE slave addresses: 4 DIP switches, 1..15 (0 and broadcast are never used, §3).
Address = Annotated[int, Meta(ge=1, le=15)]


class BusConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """One RS485 bus of PACE packs.

    - ``port``: a device path (``/dev/serial/by-id/...``) or a pyserial URL
      (``socket://host:port`` for a TCP serial bridge carrying raw Modbus RTU, ``rfc2217://``).
    - ``baudrate`` (Bd): 9600 (PACE default, §2).
    - ``addresses``: slave addresses (DIP switches, 1..15), polled in turn.
    - ``cells``: cells in series per pack (13 for the AM2, up to 16); cells beyond it are
      ignored, a cell within it reading 0 raises ``cell_fault`` (§10.5).
    - ``poll_interval`` (s): period of a cycle over every pack; ``timeout`` (s): deadline from the
      request to the end of the reply (PACE 200 ms + wire time, §2); ``frame_gap`` (s): quiet
      time after a reply or a timeout before the next request, also between slaves (PACE
      > 100 ms); ``retries``: re-sends after a timeout or CRC error (never after an exception
      reply); ``retry_delay`` (s): pause before a re-send; ``offline_after``: consecutive failed
      polls before a pack is ``offline``.
    - ``settings_interval`` (s): how often the settings block 60..114 is re-read (0 = only once
      per connection); the strings 150..179 are read once per connection.
    - ``max_current`` (A): plausibility bound on ``|current|`` (§10.3); a reading beyond it is
      published as unknown.
    - ``manufacturer``/``model``: identity published in ``bms/<id>/info`` (model defaults to the
      firmware's ``P<cells>S<amps>A`` prefix).
    - ``id_prefix``: pack ids are ``<id_prefix>-<address>`` (default: the instance name); ``ids``
      maps an address (string key) to an explicit id.
    - ``capture``: path of a JSON-lines capture of every request and response, or null.
    """

    port: str
    baudrate: Annotated[int, Meta(ge=300, le=1_000_000)] = 9600
    addresses: Annotated[list[Address], Meta(min_length=1, max_length=15)] = msgspec.field(
        default_factory=lambda: [1]
    )
    cells: Annotated[int, Meta(ge=1, le=16)] = 13
    poll_interval: Annotated[float, Meta(gt=0, le=3600)] = 5.0
    timeout: Annotated[float, Meta(gt=0, le=30)] = 0.5
    frame_gap: Annotated[float, Meta(ge=0, le=10)] = 0.15
    retries: Annotated[int, Meta(ge=0, le=10)] = 2
    retry_delay: Annotated[float, Meta(ge=0, le=10)] = 0.3
    offline_after: Annotated[int, Meta(ge=1, le=100)] = 3
    settings_interval: Annotated[float, Meta(ge=0, le=7 * 86400)] = 3600.0
    max_current: Annotated[float, Meta(gt=0, le=10000)] = 200.0
    manufacturer: str = "PACE"
    model: str | None = None
    id_prefix: DeviceId | None = None
    ids: dict[str, DeviceId] = msgspec.field(default_factory=dict)
    capture: str | None = None
    exit_after_link_lost: Annotated[float, Meta(ge=0, le=86400)] = 0.0

    def __post_init__(self) -> None:
        if len(set(self.addresses)) != len(self.addresses):
            raise ValueError(f"addresses {self.addresses} repeat an address - at `$.addresses`")


def device_id(bus: BusConfig, instance: str, address: int) -> str:
    """The id of the pack at ``address``: ``ids[address]`` or ``<id_prefix|instance>-<address>``."""
    return bus.ids.get(str(address), f"{bus.id_prefix or instance}-{address}")


def device_ids(bus: BusConfig, instance: str) -> list[str]:
    """The ids of the configured packs (for ``--print-device-ids`` and the broker ACL)."""
    return [device_id(bus, instance, address) for address in bus.addresses]
