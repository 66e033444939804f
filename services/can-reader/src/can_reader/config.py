"""Configuration of one can-reader instance: the table ``[can_reader.<instance>]``.

One instance reads one BMS (or the master pack of a stack) on one CAN interface. Keys, units and
defaults are listed in the service README; protocol facts: ../shared/protocols/pylontech-can.md
§2.1 (ACK and listen-only), §5 (firmware differences), §7.2 (reader rules).
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from bmslink.schema import DeviceId

Interface = Literal["socketcan", "slcan", "virtual", "serial"]
Mode = Literal["passive", "listen_only", "heartbeat"]


class ReaderConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """One CAN interface with one Pylontech-protocol BMS on it.

    - ``interface``/``channel``/``bitrate``: python-can interface (``socketcan`` + ``can0`` on a
      Pi; ``slcan`` + a device path or ``socket://host:port`` for CANable-style adapters;
      ``virtual`` in tests), bit/s (500000).
    - ``mode``: ``passive`` (default: never transmits a frame; the controller still ACKs, which a
      pack needs when the reader is the only other node, doc §2.1), ``listen_only`` (slcan ``L``:
      no ACK, for tapping an existing BMS↔inverter bus), ``heartbeat`` (sends the inverter's
      0x305 every ``heartbeat_period`` s, only for a pack proven to need it).
    - ``id``: device id of the battery (default: the instance name).
    - ``settle``: s of bus quiet after a burst before the cycle's state is published; a state is
      also published as soon as an id repeats (round-robin senders).
    - ``frame_expiry``: s after which a frame id no longer counts (newer firmware drops
      0x359/0x35C: missing optional frames are tolerated).
    - ``offline_after``: s without any frame before the battery is ``offline``.
    - ``invert_current``: the pack sends + = discharging (doc §7).
    - ``voltage_scale``: 0x356 voltage resolution, V (0.01; 0.1 for Sol-Ark-style senders).
    - ``open_delay``: s to wait after opening an slcan port; ``reopen_max``: s, back-off bound.
    """

    interface: Interface = "socketcan"
    channel: str
    bitrate: Annotated[int, Meta(ge=10_000, le=1_000_000)] = 500_000
    mode: Mode = "passive"
    id: DeviceId | None = None
    settle: Annotated[float, Meta(gt=0, le=10)] = 0.2
    frame_expiry: Annotated[float, Meta(gt=0, le=600)] = 5.0
    offline_after: Annotated[float, Meta(gt=0, le=3600)] = 10.0
    invert_current: bool = False
    voltage_scale: float = 0.01
    heartbeat_period: Annotated[float, Meta(ge=0.1, le=60)] = 1.0
    open_delay: Annotated[float, Meta(ge=0, le=10)] = 0.0
    reopen_max: Annotated[float, Meta(gt=0, le=600)] = 30.0

    def __post_init__(self) -> None:
        if self.voltage_scale not in (0.01, 0.1):
            raise ValueError(
                f"voltage_scale must be 0.01 or 0.1, got {self.voltage_scale}"
                " - at `$.voltage_scale`"
            )


def device_ids(cfg: ReaderConfig, instance: str) -> list[str]:
    """The id of the one BMS this instance reads (``id``, default the instance name)."""
    return [cfg.id or instance]
