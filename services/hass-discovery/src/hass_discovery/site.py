"""Which devices the site file still lists (pure; reads the raw TOML other services own).

The rule, per device info (``bms/<id>/info``), when ``[hass] site_check`` is on and a site file
is in use:

1. ``service`` missing, or a service hass-discovery does not know (no entry in
   ``config.SERVICE_SECTIONS`` / ``[hass] service_sections``): listed — no evidence either way.
2. Banks (section ``banks``): listed while ``[banks]`` has a table named like the bank id or the
   publisher's instance, or a table whose ``id`` key is the bank id.
3. Readers: listed while the section has a table named like the publisher's ``instance``
   (``[pylontech_rs485.rack1]`` lists every pack ``pylontech-rs485-reader``/``rack1`` reports).

Only the publisher's *instance* is checked, not the address list: the addresses of a bus may
be overridden by the environment (``BMSLINK_ADDRESSES``) or discovered (``stack_query = "ff"``),
so an id missing from the file is no proof that the device left. A pack removed from a bus that
stays configured is removed when its reader clears ``bms/<id>/info`` (empty retained payload),
or by listing it in ``[hass] exclude``.

Availability (``offline``) never enters the decision: an offline device stays announced.
Inverter outputs are the ``outputs`` of every ``[inverters.<instance>]`` table (the instance's
``bank`` is the bank they present, shown as the output's parent device).
"""

from __future__ import annotations

import logging
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from bmslink.schema import BatteryInfo
from hass_discovery.config import HassConfig
from hass_discovery.inverter import InverterOutput

log = logging.getLogger(__name__)

_SLUG_RE: Final = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


@dataclass(frozen=True, slots=True)
class Site:
    """A view of the site file: ``data`` is the parsed TOML, or None when there is no file
    (then every device counts as listed and there are no inverter outputs)."""

    data: Mapping[str, Any] | None
    check: bool = True
    config: HassConfig = field(default_factory=HassConfig)

    @classmethod
    def load(cls, path: str | Path | None, config: HassConfig) -> Site:
        """Read ``path`` (already validated as TOML by ``bmslink.config``)."""
        if path is None:
            return cls(None, config.site_check, config)
        with open(path, "rb") as fh:
            return cls(tomllib.load(fh), config.site_check, config)

    def lists(self, info: BatteryInfo) -> bool:
        """Whether the site still lists the device described by ``info`` (rules above)."""
        if self.data is None or not self.check or not info.service:
            return True
        section = self.config.section_of(info.service)
        if section is None:
            return True
        table = self.data.get(section)
        if not isinstance(table, Mapping):
            return False
        if section == "banks":
            if info.id in table or (info.instance is not None and info.instance in table):
                return True
            return any(isinstance(t, Mapping) and t.get("id") == info.id for t in table.values())
        return info.instance is not None and isinstance(table.get(info.instance), Mapping)

    def bank_table(self, info: BatteryInfo) -> Mapping[str, Any] | None:
        """The ``[banks.<instance>]`` table of a bank (by instance, table name or ``id``)."""
        if self.data is None:
            return None
        table = self.data.get("banks")
        if not isinstance(table, Mapping):
            return None
        for key in (info.instance, info.id):
            if key is not None and isinstance(table.get(key), Mapping):
                found: Mapping[str, Any] = table[key]
                return found
        for value in table.values():
            if isinstance(value, Mapping) and value.get("id") == info.id:
                return value
        return None

    def override_caps(self, info: BatteryInfo) -> dict[str, float]:
        """Caps of a bank's override entities from its table: ``charge_current_limit`` ←
        ``max_charge_current`` (A), ``discharge_current_limit`` ← ``max_discharge_current``
        (A), ``ttl`` ← ``max_override_ttl`` (s); keys absent when not configured."""
        table = self.bank_table(info) or {}
        caps: dict[str, float] = {}
        for cap, key in (
            ("charge_current_limit", "max_charge_current"),
            ("discharge_current_limit", "max_discharge_current"),
            ("ttl", "max_override_ttl"),
        ):
            value = table.get(key)
            if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
                caps[cap] = float(value)
        return caps

    def inverters(self) -> list[InverterOutput]:
        """Inverter outputs: ``[inverters.<instance>.outputs.<name>]``, with the instance's
        ``bank``. Names that are not slugs are skipped with a warning (the emulator refuses
        them too)."""
        if self.data is None:
            return []
        table = self.data.get("inverters")
        if not isinstance(table, Mapping):
            return []
        out: list[InverterOutput] = []
        for instance, value in sorted(table.items()):
            if not isinstance(value, Mapping):
                continue
            bank = value.get("bank")
            outputs = value.get("outputs")
            if not isinstance(outputs, Mapping):
                continue
            for name in sorted(outputs):
                if not (_SLUG_RE.match(instance) and _SLUG_RE.match(name)):
                    log.warning("inverter output %s/%s: not a slug; not announced", instance, name)
                    continue
                out.append(InverterOutput(instance, name, bank if isinstance(bank, str) else None))
        return out
