"""Home Assistant discovery configs, generated from the schema's metadata (pure, no I/O).

Units, device classes, state classes and ranges come from ``bmslink.schema.field_meta`` — the
one place they are written down. This module adds only *presentation*: the :data:`OVERLAY`
(entity name, icon, entity category, display precision, enabled by default, and the few
choices the schema cannot express: how a list is shown, the device class of a binary sensor,
extra derived entities). A unit test keeps :data:`OVERLAY` and the schema's fields in
agreement, and a second one validates every generated config against the rules of
../shared/reference/home-assistant-mqtt.md (§1–§8).

Payload shape (device-based discovery, reference §2 and §7), full key names on the wire::

    {"device": {...}, "origin": {...}, "state_topic": "bms/<id>/state",
     "availability": [{"topic": "bmslink/<service>/<instance>/status"},
                      {"topic": "bms/<id>/availability"}],
     "availability_mode": "all", "qos": 1,
     "components": {"soc": {"platform": "sensor", "unique_id": "bmslink_<id>_soc", ...}}}
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, replace
from importlib import metadata
from typing import Any, Final, Literal

import msgspec

from bmslink import schema, topics
from bmslink.schema import BankState, BatteryInfo, BatteryState, LimitsOverride
from hass_discovery.inverter import OUTPUT_ENTITIES, InverterOutput

Kind = Literal["auto", "text", "enum", "timestamp", "count", "cells", "skip"]
"""How a field becomes entities.

- ``auto``: a number → sensor with the schema's unit/device class/state class; a bool →
  binary sensor; a string → text sensor.
- ``text``: a list (joined with ``, ``, at most 255 characters, ``none`` when empty) or a
  string, as a sensor without unit.
- ``enum``: a ``Literal`` field → sensor with ``device_class: enum`` and its ``options``.
- ``timestamp``: a Unix time (s) → sensor with ``device_class: timestamp``.
- ``count``: a list → the number of items.
- ``cells``: a list of cell values → one sensor per cell (``cell_01`` …), the count from
  ``BatteryInfo.cell_count``.
- ``skip``: no entity (``why`` says why).
"""


@dataclass(frozen=True, slots=True)
class Extra:
    """A binary sensor derived from a field (e.g. *any alarm active* from ``alarms``).

    ``template`` renders ``ON``/``OFF``/``None`` from ``value_json``.
    """

    key: str
    name: str
    template: str
    device_class: str | None = None
    diagnostic: bool = False
    icon: str | None = None


@dataclass(frozen=True, slots=True)
class Look:
    """Presentation of one schema field in Home Assistant (the overlay entry).

    ``device_class`` is allowed only where the schema has none to give (binary sensors);
    units and state classes always come from the schema.
    """

    name: str = ""
    kind: Kind = "auto"
    icon: str | None = None
    diagnostic: bool = False
    precision: int | None = None
    enabled: bool = True
    device_class: str | None = None
    why: str | None = None
    also: tuple[Extra, ...] = ()


def _skip(why: str) -> Look:
    return Look(kind="skip", why=why)


_ALARM_ON: Final = "{{ 'ON' if value_json.alarms | default([], true) | length > 0 else 'OFF' }}"
_BALANCING_ON: Final = (
    "{% set v = value_json.balancing_cells | default(none) %}"
    "{{ 'None' if v is none else ('ON' if v | length > 0 else 'OFF') }}"
)

OVERLAY: Final[dict[str, Look]] = {
    # identity and time: on the device, not entities
    "id": _skip("the device itself"),
    "ts": _skip("changes every reading; expire_after covers staleness"),
    # common to batteries and banks
    "voltage": Look("Voltage", precision=2),
    "current": Look("Current", precision=1),
    "power": Look("Power", precision=0),
    "soc": Look("State of charge", precision=0),
    "soh": Look("State of health", icon="mdi:heart-pulse", precision=0),
    "remaining_capacity": Look("Remaining capacity", icon="mdi:battery-50", precision=1),
    "full_capacity": Look("Full capacity", icon="mdi:battery", precision=1, diagnostic=True),
    "design_capacity": Look(
        "Design capacity", icon="mdi:battery-outline", precision=0, diagnostic=True
    ),
    "cycles": Look("Cycles", icon="mdi:battery-sync", diagnostic=True),
    "cell_min": Look("Lowest cell voltage", precision=3),
    "cell_max": Look("Highest cell voltage", precision=3),
    "cell_avg": Look("Average cell voltage", precision=3, diagnostic=True),
    "cell_delta": Look("Cell voltage delta", icon="mdi:delta", precision=3),
    "temperature_min": Look("Lowest temperature", precision=1),
    "temperature_max": Look("Highest temperature", precision=1),
    "charge_enabled": Look("Charging allowed", device_class="power", icon="mdi:battery-plus"),
    "discharge_enabled": Look(
        "Discharging allowed", device_class="power", icon="mdi:battery-minus"
    ),
    "charge_voltage_limit": Look("Charge voltage limit", precision=2),
    "discharge_voltage_limit": Look("Discharge voltage limit", precision=2),
    "charge_current_limit": Look("Charge current limit", precision=1),
    "discharge_current_limit": Look("Discharge current limit", precision=1),
    "alarms": Look(
        "Alarms",
        kind="text",
        icon="mdi:alert",
        diagnostic=True,
        also=(Extra("alarm", "Alarm", _ALARM_ON, device_class="problem"),),
    ),
    "warnings": Look("Warnings", kind="text", icon="mdi:alert-outline", diagnostic=True),
    "energy_charged": Look("Energy charged", precision=2),
    "energy_discharged": Look("Energy discharged", precision=2),
    # batteries only
    "cell_voltages": Look("Cell", kind="cells", precision=3, diagnostic=True),
    "cell_min_index": Look("Lowest cell", icon="mdi:numeric", diagnostic=True),
    "cell_max_index": Look("Highest cell", icon="mdi:numeric", diagnostic=True),
    "temperatures": _skip("sensor count unknown before a reading; min/max cover them"),
    "mosfet_temperature": Look("MOSFET temperature", precision=1, diagnostic=True),
    "bms_temperature": Look("BMS temperature", precision=1, diagnostic=True),
    "ambient_temperature": Look("Ambient temperature", precision=1),
    "balancing_cells": Look(
        "Balancing cells",
        kind="text",
        icon="mdi:scale-balance",
        diagnostic=True,
        also=(
            Extra(
                "balancing",
                "Balancing",
                _BALANCING_ON,
                device_class="running",
                diagnostic=True,
                icon="mdi:scale-balance",
            ),
        ),
    ),
    "raw_status": _skip("raw bitfields stay in the JSON for diagnosis"),
    "charge_switch": Look("Charge switch", device_class="power", icon="mdi:electric-switch"),
    "discharge_switch": Look("Discharge switch", device_class="power", icon="mdi:electric-switch"),
    # banks only
    "members": Look("Members", kind="text", icon="mdi:battery-multiple", diagnostic=True),
    "members_online": Look("Members online", kind="count", icon="mdi:battery-check"),
    "degraded": Look("Degraded", device_class="problem"),
    "failsafe": Look("Fail-safe", device_class="problem", icon="mdi:shield-alert"),
    "cell_min_member": Look("Lowest cell member", kind="text", diagnostic=True),
    "cell_max_member": Look("Highest cell member", kind="text", diagnostic=True),
    "limits_source": Look("Limits source", kind="enum", icon="mdi:source-branch"),
    "override_expires": Look("Override expires", kind="timestamp", diagnostic=True),
    "charge_limit_source": Look("Charge limit source", kind="enum", icon="mdi:source-branch"),
    "discharge_limit_source": Look("Discharge limit source", kind="enum", icon="mdi:source-branch"),
    "charge_limited_by": Look("Charge limited by", kind="text", diagnostic=True),
    "discharge_limited_by": Look("Discharge limited by", kind="text", diagnostic=True),
    "member_limit_sources": _skip("a map per member; in the JSON for diagnosis"),
    "members_ts": _skip("a map per member; in the JSON for diagnosis"),
    "soc_raw": Look("Raw state of charge", precision=0, diagnostic=True, enabled=False),
    "charge_limit_reason": Look("Charge limit reason", kind="text", diagnostic=True),
    "discharge_limit_reason": Look("Discharge limit reason", kind="text", diagnostic=True),
}
"""Presentation of every field of ``BatteryState`` and ``BankState`` (a test keeps them equal)."""

OVERRIDE_OVERLAY: Final[dict[str, Look]] = {
    "charge_current_limit": Look("Charge current limit override", icon="mdi:battery-arrow-up"),
    "discharge_current_limit": Look(
        "Discharge current limit override", icon="mdi:battery-arrow-down"
    ),
}
"""The ``LimitsOverride`` fields a bank offers as number entities (issue: CCL and DCL)."""


def package_version() -> str:
    """The installed version of bmslink-hass-discovery (``origin.sw_version``)."""
    try:
        return metadata.version("bmslink-hass-discovery")
    except metadata.PackageNotFoundError:
        return "0"


@dataclass(frozen=True, slots=True)
class Options:
    """Generation options (from ``[hass]``).

    ``expire_after`` in s (0 = none); ``override_ttl`` in s; ``override_max_current`` in A.
    """

    prefix: str = "homeassistant"
    expire_after: int = 60
    cells_enabled: bool = False
    override_ttl: float = 300.0
    override_max_current: float = 1000.0
    inverter_service: str = "can-inverter-emulator"
    version: str = field(default_factory=package_version)


ORIGIN_NAME: Final = "bmslink"
_ENTITY_CHARS: Final = re.compile(r"[^a-z0-9_]")


def object_id(device_id: str) -> str:
    """Discovery object id (and device identifier) of a battery or bank: ``bmslink_<id>``."""
    return f"bmslink_{device_id}"


def inverter_object_id(instance: str, output: str) -> str:
    """Discovery object id of an inverter output: ``bmslink-inverter_<instance>_<output>``
    (cannot collide with a battery's ``bmslink_<id>``)."""
    return f"bmslink-inverter_{instance}_{output}"


def entity_slug(text: str) -> str:
    """``text`` as the object part of an entity id: ``[a-z0-9_]``, no ``__``, no edge ``_``."""
    slug = _ENTITY_CHARS.sub("_", text.lower())
    return re.sub(r"_+", "_", slug).strip("_")


def _value(field_name: str) -> str:
    return f"{{{{ value_json.{field_name} | default(none) }}}}"


def _bool_template(field_name: str) -> str:
    return (
        f"{{% set v = value_json.{field_name} | default(none) %}}"
        "{{ 'None' if v is none else ('ON' if v else 'OFF') }}"
    )


def _text_template(field_name: str, is_list: bool) -> str:
    if not is_list:
        return _value(field_name)
    return (
        f"{{% set v = value_json.{field_name} | default(none) %}}"
        "{{ 'None' if v is none else ((v | join(', ')) or 'none')[:255] }}"
    )


def _count_template(field_name: str) -> str:
    return (
        f"{{% set v = value_json.{field_name} | default(none) %}}"
        "{{ 'None' if v is none else v | length }}"
    )


def _timestamp_template(field_name: str) -> str:
    return (
        f"{{% set v = value_json.{field_name} | default(none) %}}"
        "{{ 'None' if v is none else as_datetime(v).isoformat() }}"
    )


def _cell_template(field_name: str, index0: int) -> str:
    return f"{{{{ (value_json.{field_name} | default([], true))[{index0}] | default(none) }}}}"


def literal_options(struct: type[msgspec.Struct], field_name: str) -> list[str]:
    """The allowed values of a ``Literal`` field (the ``options`` of an enum sensor)."""
    info = msgspec.inspect.type_info(struct)
    assert isinstance(info, msgspec.inspect.StructType)
    for f in info.fields:
        if f.name != field_name:
            continue
        t = f.type
        if isinstance(t, msgspec.inspect.UnionType):
            t = next(x for x in t.types if not isinstance(x, msgspec.inspect.NoneType))
        if isinstance(t, msgspec.inspect.Metadata):
            t = t.type
        if isinstance(t, msgspec.inspect.LiteralType):
            return [str(v) for v in t.values]
    raise ValueError(f"{struct.__name__}.{field_name} is not a Literal field")


def auto_generatable(meta: dict[str, Any]) -> bool:
    """Whether a field without an overlay entry still gets an entity (numbers, bools)."""
    return meta["type"] in ("float", "int", "bool")


class _Builder:
    """Collects the components of one device."""

    def __init__(self, uid_base: str, entity_base: str, opts: Options) -> None:
        self.uid_base = uid_base
        self.entity_base = entity_base
        self.opts = opts
        self.components: dict[str, dict[str, Any]] = {}

    def add(
        self,
        key: str,
        platform: str,
        name: str,
        *,
        look: Look | None = None,
        diagnostic: bool | None = None,
        icon: str | None = None,
        enabled: bool | None = None,
        **options: Any,
    ) -> None:
        comp: dict[str, Any] = {
            "platform": platform,
            "unique_id": f"{self.uid_base}_{key}",
            "default_entity_id": f"{platform}.{entity_slug(f'{self.entity_base}_{key}')}",
            "name": name,
        }
        comp.update({k: v for k, v in options.items() if v is not None})
        icon = icon if icon is not None else (look.icon if look else None)
        if icon:
            comp["icon"] = icon
        if look is not None and look.precision is not None and platform == "sensor":
            comp["suggested_display_precision"] = look.precision
        diag = diagnostic if diagnostic is not None else (look.diagnostic if look else False)
        if diag:
            comp["entity_category"] = "diagnostic"
        on = enabled if enabled is not None else (look.enabled if look else True)
        if not on:
            comp["enabled_by_default"] = False
        if platform in ("sensor", "binary_sensor") and self.opts.expire_after > 0:
            comp["expire_after"] = self.opts.expire_after
        self.components[key] = comp


def _field_components(
    b: _Builder,
    struct: type[msgspec.Struct],
    overlay: dict[str, Look],
    cell_count: int | None,
) -> None:
    for name, meta in schema.field_meta(struct).items():
        look = overlay.get(name)
        if look is None:
            if not auto_generatable(meta):
                continue
            look = Look(str(meta.get("description", name)).capitalize())
        if look.kind == "skip":
            continue
        kind = look.kind
        ftype = meta["type"]
        if kind == "auto":
            if ftype == "bool":
                b.add(
                    name,
                    "binary_sensor",
                    look.name,
                    look=look,
                    device_class=look.device_class,
                    value_template=_bool_template(name),
                )
            elif ftype in ("float", "int"):
                b.add(
                    name,
                    "sensor",
                    look.name,
                    look=look,
                    device_class=meta.get("device_class"),
                    unit_of_measurement=meta.get("unit"),
                    state_class=meta.get("state_class"),
                    value_template=_value(name),
                )
            else:
                b.add(name, "sensor", look.name, look=look, value_template=_value(name))
        elif kind == "text":
            b.add(
                name,
                "sensor",
                look.name,
                look=look,
                value_template=_text_template(name, ftype == "list"),
            )
        elif kind == "count":
            b.add(
                name,
                "sensor",
                look.name,
                look=look,
                state_class="measurement",
                value_template=_count_template(name),
            )
        elif kind == "enum":
            b.add(
                name,
                "sensor",
                look.name,
                look=look,
                device_class="enum",
                options=literal_options(struct, name),
                value_template=_value(name),
            )
        elif kind == "timestamp":
            b.add(
                name,
                "sensor",
                look.name,
                look=look,
                device_class="timestamp",
                value_template=_timestamp_template(name),
            )
        elif kind == "cells":
            count = cell_count or 0
            width = max(2, len(str(count)))
            for i in range(count):
                b.add(
                    f"cell_{i + 1:0{width}d}",
                    "sensor",
                    f"{look.name} {i + 1}",
                    look=look,
                    enabled=b.opts.cells_enabled,
                    device_class=meta.get("device_class"),
                    unit_of_measurement=meta.get("unit"),
                    state_class=meta.get("state_class"),
                    value_template=_cell_template(name, i),
                )
        for extra in look.also:
            b.add(
                extra.key,
                "binary_sensor",
                extra.name,
                diagnostic=extra.diagnostic,
                icon=extra.icon,
                device_class=extra.device_class,
                value_template=extra.template,
            )


def _number(value: float) -> float | int:
    return int(value) if float(value).is_integer() else value


def override_components(
    b: _Builder, device_id: str, opts: Options, caps: dict[str, float] | None = None
) -> None:
    """Number entities of a bank: one per :data:`OVERRIDE_OVERLAY` field of ``LimitsOverride``.

    Setting one publishes (QoS 1, not retained) ``{"<field>": <value>, "ttl": <override_ttl>}``
    on ``bms/<bank>/set``; the entity's state is the effective limit in ``bms/<bank>/state``.
    Range: the schema's (0..10000 A) capped by ``caps[<field>]`` (the bank's configured
    maximum) or else ``override_max_current``; step 1 A. The lease is ``override_ttl`` capped
    by ``caps["ttl"]`` (the bank's longest accepted lease).
    """
    caps = caps or {}
    meta = schema.field_meta(LimitsOverride)
    set_topic = topics.SET.format(id=device_id)
    ttl = _number(min(opts.override_ttl, caps.get("ttl", opts.override_ttl)))
    for name, look in OVERRIDE_OVERLAY.items():
        m = meta[name]
        top = min(float(m.get("le", 10000)), caps.get(name, opts.override_max_current))
        b.add(
            f"{name}_override",
            "number",
            look.name,
            look=look,
            diagnostic=False,
            entity_category="config",
            device_class=m.get("device_class"),
            unit_of_measurement=m.get("unit"),
            command_topic=set_topic,
            command_template=f'{{"{name}": {{{{ value }}}}, "ttl": {ttl}}}',
            value_template=_value(name),
            min=_number(m.get("ge", 0)),
            max=_number(top),
            step=1,
            mode="box",
            retain=False,
            optimistic=False,
        )


def _origin(opts: Options) -> dict[str, Any]:
    return {"name": ORIGIN_NAME, "sw_version": opts.version}


def _drop_none(values: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


def device_payload(
    info: BatteryInfo,
    opts: Options,
    *,
    via_bank: str | None = None,
    caps: dict[str, float] | None = None,
) -> dict[str, Any]:
    """The device-based discovery payload of a battery or bank (from its ``BatteryInfo``).

    ``via_bank`` is the id of the bank the battery belongs to (``via_device``); ``caps`` the
    bank's override caps (:func:`override_components`). Availability:
    the publisher's service status (when the info names it) AND ``bms/<id>/availability``.
    """
    is_bank = info.kind == "bank"
    device = _drop_none(
        {
            "identifiers": [object_id(info.id)],
            "name": info.name or info.id,
            "manufacturer": info.manufacturer or ("bmslink" if is_bank else None),
            "model": info.model or ("Battery bank" if is_bank else None),
            "serial_number": info.serial,
            "sw_version": info.firmware,
            "hw_version": info.hardware,
            "via_device": object_id(via_bank) if via_bank else None,
        }
    )
    availability: list[dict[str, str]] = []
    if info.service and info.instance:
        try:
            status = topics.SERVICE_STATUS.format(service=info.service, instance=info.instance)
        except ValueError:
            status = None
        if status:
            availability.append({"topic": status})
    availability.append({"topic": topics.AVAILABILITY.format(id=info.id)})
    b = _Builder(object_id(info.id), info.id, opts)
    struct: type[msgspec.Struct] = BankState if is_bank else BatteryState
    _field_components(b, struct, OVERLAY, info.cell_count)
    if is_bank:
        override_components(b, info.id, opts, caps)
    return {
        "device": device,
        "origin": _origin(opts),
        "state_topic": topics.STATE.format(id=info.id),
        "availability": availability,
        "availability_mode": "all",
        "qos": 1,
        "components": b.components,
    }


def inverter_payload(output: InverterOutput, opts: Options) -> dict[str, Any]:
    """The device-based discovery payload of one inverter output of the CAN emulator.

    Entities: :data:`~hass_discovery.inverter.OUTPUT_ENTITIES` (link, fail-safe), each on its
    own retained topic; availability: the emulator's status
    ``bmslink/<inverter_service>/<instance>/status``. The link to the inverter is an entity, not
    the availability, so a silent inverter shows as *disconnected* rather than *unavailable*.
    """
    label = output.name if output.name == output.instance else f"{output.name} ({output.instance})"
    device = _drop_none(
        {
            "identifiers": [inverter_object_id(output.instance, output.name)],
            "name": f"Inverter {label}",
            "manufacturer": "bmslink",
            "model": "Pylontech LV CAN emulator",
            "via_device": object_id(output.bank) if output.bank else None,
        }
    )
    service = opts.inverter_service
    status = topics.SERVICE_STATUS.format(service=service, instance=output.instance)
    b = _Builder(
        f"bmslink_inverter_{output.instance}_{output.name}",
        f"inverter_{output.instance}_{output.name}",
        replace(opts, expire_after=0),
    )
    for ent in OUTPUT_ENTITIES:
        b.add(
            ent.key,
            "binary_sensor",
            ent.name,
            icon=ent.icon,
            device_class=ent.device_class,
            state_topic=ent.topic.format(
                service=service, instance=output.instance, output=output.name
            ),
            payload_on=ent.payload_on,
            payload_off=ent.payload_off,
        )
    return {
        "device": device,
        "origin": _origin(opts),
        "availability": [{"topic": status}],
        "availability_mode": "all",
        "qos": 1,
        "components": b.components,
    }


# --- topics and per-entity form ----------------------------------------------------------------

SHARED_ROOT_KEYS: Final = ("state_topic", "availability", "availability_mode", "qos")
"""Root options every component inherits (reference §2: allowed at the root of a device)."""


def device_topic(prefix: str, obj_id: str) -> str:
    """``<prefix>/device/<object_id>/config`` (device-based discovery)."""
    return f"{prefix}/device/{obj_id}/config"


def entity_topic(prefix: str, platform: str, obj_id: str, key: str) -> str:
    """``<prefix>/<platform>/<object_id>/<key>/config`` (per-entity discovery)."""
    return f"{prefix}/{platform}/{obj_id}/{key}/config"


def per_entity(prefix: str, obj_id: str, payload: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Split a device payload into per-entity configs (HA before 2024.11): each component
    without ``platform``, plus ``device``, ``origin`` and the shared root options."""
    shared = {k: payload[k] for k in SHARED_ROOT_KEYS if k in payload}
    out: dict[str, dict[str, Any]] = {}
    for key, comp in payload["components"].items():
        config = {k: v for k, v in comp.items() if k != "platform"}
        for k, v in shared.items():
            config.setdefault(k, v)
        config["device"] = payload["device"]
        config["origin"] = payload["origin"]
        out[entity_topic(prefix, comp["platform"], obj_id, key)] = config
    return out


def encode(payload: dict[str, Any]) -> bytes:
    """Compact UTF-8 JSON (what goes on the wire; key order as built)."""
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
