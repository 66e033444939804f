"""Configuration of hass-discovery: the single table ``[hass]`` of the site file.

Every key, with its unit and default, is listed in the service README. Environment overrides
follow ``bmslink.config`` (``BMSLINK_<KEY>``, e.g. ``BMSLINK_DISCOVERY_PREFIX``).
"""

from __future__ import annotations

import re
from typing import Annotated, Final, Literal

import msgspec
from msgspec import Meta

from bmslink.schema import DeviceId

PREFIX_RE: Final = re.compile(r"^[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)*$")
"""A discovery prefix: topic levels of ``[A-Za-z0-9_-]`` (no wildcards, no empty level)."""

SERVICE_SECTIONS: Final = {
    "pylontech-rs485-reader": "pylontech_rs485",
    "am2-modbus-reader": "pace_modbus",
    "pace-modbus-reader": "pace_modbus",
    "daly-ble-reader": "daly",
    "can-reader": "can_reader",
    "bank-aggregator": "banks",
}
"""Publisher service (``BatteryInfo.service``) → the site-file section holding its instances.

Used to decide whether a device is still part of the site (see ``site.py``); extended or
overridden by ``[hass] service_sections``."""


class HassConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """``[hass]``: how and what hass-discovery announces to Home Assistant.

    - ``discovery_prefix``: Home Assistant's MQTT discovery prefix (HA default
      ``homeassistant``).
    - ``birth_topic``: HA's birth/will topic; default ``<discovery_prefix>/status``.
    - ``discovery_mode``: ``device`` (one ``<prefix>/device/<object_id>/config`` per device,
      HA ≥ 2024.11) or ``entity`` (one ``<prefix>/<platform>/<object_id>/<key>/config`` per
      entity, for older Home Assistant versions).
    - ``expire_after`` (s): a sensor becomes unavailable when no state arrived for this long
      (0 = never); about 3 × the slowest poll cycle.
    - ``cell_entities_enabled``: whether per-cell voltage entities are enabled when HA first
      adds them (they are always created, as diagnostic entities).
    - ``override_ttl`` (s): lease of a limit set from a bank's number entity (1..3600).
    - ``override_max_current`` (A): upper end of the bank override number entities.
    - ``birth_delay_min`` / ``birth_delay_max`` (s): random wait after HA's birth message before
      re-publishing (spreads the load when many publishers answer the same birth).
    - ``site_check``: remove devices whose publisher instance the site file no longer lists.
    - ``exclude``: device ids never announced (and removed if they were).
    - ``service_sections``: extra ``service name → site section`` pairs for publishers not in
      the built-in table.
    - ``inverter_service``: service name of the CAN inverter emulator, whose status topic
      ``bmslink/<inverter_service>/<output>/status`` is an inverter output's availability.
    """

    discovery_prefix: str = "homeassistant"
    birth_topic: str | None = None
    discovery_mode: Literal["device", "entity"] = "device"
    expire_after: Annotated[int, Meta(ge=0, le=86400)] = 60
    cell_entities_enabled: bool = False
    override_ttl: Annotated[float, Meta(ge=1, le=3600)] = 300.0
    override_max_current: Annotated[float, Meta(gt=0, le=10000)] = 1000.0
    birth_delay_min: Annotated[float, Meta(ge=0, le=60)] = 1.0
    birth_delay_max: Annotated[float, Meta(ge=0, le=60)] = 5.0
    site_check: bool = True
    exclude: list[DeviceId] = msgspec.field(default_factory=list)
    service_sections: dict[str, str] = msgspec.field(default_factory=dict)
    inverter_service: str = "can-inverter-emulator"

    def __post_init__(self) -> None:
        if not PREFIX_RE.match(self.discovery_prefix):
            raise ValueError(
                f"discovery prefix {self.discovery_prefix!r} is not a topic of "
                "[A-Za-z0-9_-] levels - at `$.discovery_prefix`"
            )
        if self.birth_topic is not None and not PREFIX_RE.match(self.birth_topic):
            raise ValueError(f"birth topic {self.birth_topic!r} is not valid - at `$.birth_topic`")
        if self.birth_delay_max < self.birth_delay_min:
            raise ValueError(
                f"birth_delay_max {self.birth_delay_max} s is below birth_delay_min "
                f"{self.birth_delay_min} s - at `$.birth_delay_max`"
            )

    @property
    def birth(self) -> str:
        """The topic on which Home Assistant announces itself (``online``/``offline``)."""
        return self.birth_topic or f"{self.discovery_prefix}/status"

    def section_of(self, service: str) -> str | None:
        """The site-file section holding ``service``'s instances, or None if unknown."""
        return self.service_sections.get(service) or SERVICE_SECTIONS.get(service)
