"""Configuration of one can-inverter-emulator instance: the table ``[inverters.<instance>]``.

One instance presents one bank to one or more inverters; each inverter is an *output* with its
own CAN interface, ``[inverters.<instance>.outputs.<name>]``. Keys, units and defaults are listed
in the service README. Protocol facts: ../shared/protocols/pylontech-can.md §6, §7.1.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from bmslink.schema import DeviceId

Interface = Literal["socketcan", "slcan", "virtual", "serial"]
Profile = Literal["pylontech", "pylon_v2", "sma"]
StopStrategy = Literal["zero", "min_current", "cvl_pack_voltage"]
Amps = Annotated[float, Meta(ge=0, le=3276.7)]

_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,47}$")


class OutputConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """One inverter output (one CAN interface).

    - ``interface``: python-can interface: ``socketcan`` (``can0`` on a Pi, network_mode host),
      ``slcan`` (CANable-style USB adapters; ``channel`` = device path or ``socket://host:port``),
      ``virtual`` (in-process tests), ``serial``.
    - ``channel``: interface channel (``can0``, ``/dev/serial/by-id/...``, a pyserial URL).
    - ``bitrate``: bit/s (500000 for every LV CAN inverter; ignored by socketcan, which is
      configured on the host).
    - ``period``: s between two frame sets (1.0; SMA: must not be faster than 0.2).
    - ``profile``: ``pylontech`` (V1.2 set with DVL), ``pylon_v2`` (+0x35A, 0x372, 0x373, 0x379)
      or ``sma`` (SMA/Victron style 0x351/355/356/35A/35E/35F).
    - ``current_scale``: factor applied to the bank's CCL/DCL (share of one bank fed to this
      inverter), then ``charge_current_max``/``discharge_current_max`` (A) cap the result.
    - ``stop_strategy``: what a disabled direction sends as its current limit: ``zero``
      (default), ``min_current`` (0.1 A, Sofar-style) or ``cvl_pack_voltage`` (0 A and, for
      charge, CVL = pack voltage: Deye-style, doc §6/§7).
    - ``voltage_scale``: 0x356 voltage resolution, V (0.01; 0.1 for Sol-Ark V1.3).
    - ``invert_current``: send current with + = discharging (some inverters, doc §7).
    - ``module_count``: 0x359 byte 4 / 0x372 (default: the number of online bank members).
    - ``manufacturer``: 0x35E name (≤ 8 ASCII characters).
    - ``heartbeat_timeout``: s without 0x305 before the link is reported down.
    - ``reopen_max``: s, upper bound of the back-off when the interface cannot be opened.
    - ``open_delay``: s to wait after opening an ``slcan`` port (adapters that reset on open,
      e.g. Arduino-based ones, need about 2; CANable and ptys need 0).
    """

    interface: Interface = "socketcan"
    channel: str
    bitrate: Annotated[int, Meta(ge=10_000, le=1_000_000)] = 500_000
    period: Annotated[float, Meta(ge=0.01, le=60)] = 1.0
    profile: Profile = "pylontech"
    current_scale: Annotated[float, Meta(ge=0, le=10)] = 1.0
    charge_current_max: Amps | None = None
    discharge_current_max: Amps | None = None
    stop_strategy: StopStrategy = "zero"
    voltage_scale: float = 0.01
    invert_current: bool = False
    module_count: Annotated[int, Meta(ge=0, le=255)] | None = None
    manufacturer: Annotated[str, Meta(max_length=8, pattern=r"^[\x20-\x7e]*$")] = "PYLON"
    heartbeat_timeout: Annotated[float, Meta(gt=0, le=600)] = 5.0
    reopen_max: Annotated[float, Meta(gt=0, le=600)] = 30.0
    open_delay: Annotated[float, Meta(ge=0, le=10)] = 0.0


class EmulatorConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """``[inverters.<instance>]``: ``bank`` is the bank id whose ``bms/<bank>/state`` is sent;
    ``stale_after`` (s) is the age beyond which a bank state is no longer used (fail-safe set
    instead); ``outputs`` maps an output name (slug) to its :class:`OutputConfig`."""

    bank: DeviceId
    stale_after: Annotated[float, Meta(gt=0, le=3600)] = 10.0
    outputs: dict[str, OutputConfig]

    def __post_init__(self) -> None:
        if not self.outputs:
            raise ValueError("at least one output is required - at `$.outputs`")
        for name, output in self.outputs.items():
            if output.voltage_scale not in (0.01, 0.1):
                raise ValueError(
                    f"voltage_scale must be 0.01 or 0.1, got {output.voltage_scale}"
                    f" - at `$.outputs.{name}.voltage_scale`"
                )
            if not _NAME.match(name):
                raise ValueError(f"output name {name!r} is not a slug - at `$.outputs`")
