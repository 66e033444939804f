"""The message schema (v1): every payload on the bus, as msgspec Structs.

Units are fixed here, once, for every service and consumer:

========  ======================================================
quantity  unit
========  ======================================================
voltage   V
current   A — **positive when the battery is charging**
power     W — positive when charging (``voltage × current``)
temp.     °C
SoC/SoH   % (0..100)
capacity  Ah
energy    kWh (monotonic counters)
time      seconds; ``ts`` is Unix time in seconds (float)
========  ======================================================

Limits (CVL/DVL/CCL/DCL) are positive magnitudes. Unknown values are ``null`` (``None``), never
0 or -1. Cells are numbered from 1 wherever an index is shown.

Bus messages accept unknown fields (old consumers keep working when fields are added); commands
(:class:`LimitsOverride`) reject them, because a mistyped field in a command must not be silently
dropped. Non-finite floats (NaN, ±inf) are refused both when a message is built and when it is
decoded (msgspec would otherwise encode NaN as ``null``).

Each field carries its metadata in ``msgspec.Meta``: ``description`` and ``extra`` with ``unit``,
``device_class`` and ``state_class`` (Home Assistant's vocabulary), which the discovery service
reads instead of keeping a second list. Source: ../shared/DESIGN.md "Message schema (v1)".

Size bounds (decoding refuses anything beyond them with :class:`MessageError`, which names the
field and the bound). They are far above what any real system sends, and exist so a hostile or
broken publisher cannot make a consumer allocate without limit or recurse without limit:

=====================================================  ===================================
what                                                   at most
=====================================================  ===================================
a payload (bytes, before parsing)                      :data:`MAX_PAYLOAD` = 1 MiB
JSON nesting (arrays/objects inside each other)        :data:`MAX_DEPTH` = 32 levels
``cell_voltages``, ``balancing_cells``                 :data:`MAX_CELLS` = 1024 (= cell index)
``temperatures``                                       :data:`MAX_TEMPERATURES` = 256
``alarms``, ``warnings`` (each)                        :data:`MAX_CODES` = 2048
``members``, ``members_online``, per-member maps       :data:`MAX_MEMBERS` = 1024
``raw_status`` (entries; names ≤ :data:`MAX_KEY` = 64)  :data:`MAX_RAW_STATUS` = 256
info strings (name, model, serial, firmware, ...)      :data:`MAX_TEXT` = 256 characters
``SetResult.error``                                    :data:`MAX_ERROR` = 4096 characters
=====================================================  ===================================

Ids (max 48 characters) and alarm codes (max 113) are already bounded by their patterns. A
bank lists each member's codes as ``code@member``, so :data:`MAX_CODES` allows two codes on
each of :data:`MAX_MEMBERS` members (a real pack raises a handful; real banks have tens of
packs). The largest message these bounds allow encodes to about 0.8 MB, under
:data:`MAX_PAYLOAD`. The nesting of a legitimate message is 2 (an object holding lists and
maps); deeper nesting can only come from unknown fields, which msgspec skips recursively, so
without :data:`MAX_DEPTH` a 1000-deep array raises ``RecursionError`` inside the decoder.
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any, Final, Literal

import msgspec
from msgspec import Meta

SCHEMA_VERSION: Final = 1

MAX_PAYLOAD: Final = 1 << 20
"""Largest payload :func:`decode` parses, in bytes (1 MiB)."""
MAX_DEPTH: Final = 32
"""Deepest JSON nesting :func:`decode` accepts (a legitimate message nests 2 levels)."""
MAX_CELLS: Final = 1024
"""Most cells in ``cell_voltages``/``balancing_cells`` (and the highest cell index)."""
MAX_TEMPERATURES: Final = 256
"""Most sensors in ``temperatures``."""
MAX_CODES: Final = 2048
"""Most codes in ``alarms`` and in ``warnings`` (each)."""
MAX_MEMBERS: Final = 1024
"""Most members of a bank (``members``, ``members_online``, the per-member maps)."""
MAX_RAW_STATUS: Final = 256
"""Most entries in ``raw_status``."""
MAX_KEY: Final = 64
"""Longest ``raw_status`` name, characters."""
MAX_TEXT: Final = 256
"""Longest info string (name, manufacturer, model, serial, firmware, ...), characters."""
MAX_ERROR: Final = 4096
"""Longest ``SetResult.error``, characters."""

ID_PATTERN: Final = r"^[a-z0-9][a-z0-9_-]{0,47}$"
"""Device ids (battery or bank): a slug unique per site (DESIGN.md "Topics")."""

DeviceId = Annotated[str, Meta(pattern=ID_PATTERN, description="device id (slug)")]


def _m(
    description: str,
    unit: str | None = None,
    device_class: str | None = None,
    state_class: str | None = "measurement",
    **constraints: float,
) -> Meta:
    extra: dict[str, Any] = {}
    if unit is not None:
        extra["unit"] = unit
    if device_class is not None:
        extra["device_class"] = device_class
    if state_class is not None:
        extra["state_class"] = state_class
    meta: Meta = Meta(description=description, extra=extra, **constraints)  # type: ignore[call-overload]
    return meta


# Scalar field types with units and ranges. Ranges are wide enough for any LV/HV home battery
# and narrow enough to catch a wrong scale factor (mV sent as V, 0.1 K sent as °C).
Timestamp = Annotated[float, Meta(ge=0, description="Unix time of the reading, s")]
Voltage = Annotated[float, _m("voltage", "V", "voltage", ge=0, le=1000)]
CellVoltage = Annotated[float, _m("cell voltage", "V", "voltage", ge=0, le=10)]
CellDelta = Annotated[float, _m("max − min cell voltage", "V", "voltage", ge=0, le=10)]
Current = Annotated[float, _m("current, + = charging", "A", "current", ge=-10000, le=10000)]
Power = Annotated[float, _m("power, + = charging", "W", "power", ge=-1e7, le=1e7)]
Percent = Annotated[float, _m("percentage", "%", None, ge=0, le=100)]
Soc = Annotated[float, _m("state of charge", "%", "battery", ge=0, le=100)]
Capacity = Annotated[float, _m("capacity", "Ah", None, ge=0, le=100000)]
Temperature = Annotated[float, _m("temperature", "°C", "temperature", ge=-100, le=250)]
Cycles = Annotated[int, _m("charge cycles", None, None, "total_increasing", ge=0)]
CellIndex = Annotated[int, Meta(ge=1, le=MAX_CELLS, description="cell number, from 1")]
Energy = Annotated[float, _m("energy counter", "kWh", "energy", "total_increasing", ge=0)]
VoltageLimit = Annotated[float, _m("voltage limit", "V", "voltage", ge=0, le=1000)]
CurrentLimit = Annotated[float, _m("current limit (magnitude)", "A", "current", ge=0, le=10000)]
AlarmCode = Annotated[str, Meta(pattern=r"^[a-z0-9_]{1,64}(@[a-z0-9_-]{1,48})?$")]

Text = Annotated[str, Meta(max_length=MAX_TEXT)]
StatusName = Annotated[str, Meta(max_length=MAX_KEY)]

Availability = Literal["online", "offline"]


def D(text: str) -> Meta:  # noqa: N802 - reads as a type annotation
    """``Annotated[T, D("text")]``: the field's meaning, added to the unit and range ``T``
    already carries."""
    return Meta(description=text)


def DN(text: str, most: int) -> Meta:  # noqa: N802 - reads as a type annotation
    """``Annotated[list[T], DN("text", n)]``: the field's meaning and its most items (or
    characters, or map entries)."""
    return Meta(description=text, max_length=most)


LimitsSource = Literal["bms", "override", "taper", "config", "alarm", "failsafe"]
MemberLimitSource = Literal["bms", "config", "default"]


class _Message(msgspec.Struct, kw_only=True, omit_defaults=False):
    """Base of bus messages: refuses non-finite floats on construction and on decode."""

    def __post_init__(self) -> None:
        for name in self.__struct_fields__:
            value = getattr(self, name)
            if isinstance(value, float):
                if not math.isfinite(value):
                    raise ValueError(f"non-finite float in `{name}`: {value!r}")
            elif isinstance(value, list) and value and isinstance(value[0], float):
                for i, item in enumerate(value):
                    if isinstance(item, float) and not math.isfinite(item):
                        raise ValueError(f"non-finite float in `{name}[{i}]`: {item!r}")


class _CommonState(_Message, kw_only=True):
    """Fields shared by a battery's state and a bank's state (same names, same units)."""

    id: DeviceId
    ts: Timestamp
    voltage: Annotated[Voltage, D("pack (or bank) voltage")] | None = None
    current: Annotated[Current, D("current, + = charging")] | None = None
    power: Annotated[Power, D("power = voltage × current, + = charging")] | None = None
    soc: Annotated[Soc, D("state of charge")] | None = None
    soh: Annotated[Percent, D("state of health")] | None = None
    remaining_capacity: Annotated[Capacity, D("charge remaining")] | None = None
    full_capacity: Annotated[Capacity, D("charge when full (BMS estimate)")] | None = None
    design_capacity: Annotated[Capacity, D("nominal capacity")] | None = None
    cycles: Annotated[Cycles, D("charge/discharge cycles")] | None = None
    cell_min: Annotated[CellVoltage, D("lowest cell voltage")] | None = None
    cell_max: Annotated[CellVoltage, D("highest cell voltage")] | None = None
    cell_avg: Annotated[CellVoltage, D("mean cell voltage")] | None = None
    cell_delta: Annotated[CellDelta, D("highest − lowest cell voltage")] | None = None
    temperature_min: Annotated[Temperature, D("lowest temperature sensor")] | None = None
    temperature_max: Annotated[Temperature, D("highest temperature sensor")] | None = None
    charge_enabled: (
        Annotated[bool, D("charging allowed by the BMS (allow/request flag)")] | None
    ) = None
    discharge_enabled: (
        Annotated[bool, D("discharging allowed by the BMS (allow/request flag)")] | None
    ) = None
    charge_voltage_limit: Annotated[VoltageLimit, D("CVL: charge voltage limit")] | None = None
    discharge_voltage_limit: Annotated[VoltageLimit, D("DVL: discharge voltage limit")] | None = (
        None
    )
    charge_current_limit: Annotated[CurrentLimit, D("CCL: charge current limit")] | None = None
    discharge_current_limit: Annotated[CurrentLimit, D("DCL: discharge current limit")] | None = (
        None
    )
    alarms: Annotated[list[AlarmCode], DN("active alarms (stable snake_case codes)", MAX_CODES)] = (
        msgspec.field(default_factory=list)
    )
    warnings: Annotated[
        list[AlarmCode], DN("active warnings (stable snake_case codes)", MAX_CODES)
    ] = msgspec.field(default_factory=list)
    energy_charged: Annotated[Energy, D("energy charged, integrated from power")] | None = None
    energy_discharged: Annotated[Energy, D("energy discharged, integrated from power")] | None = (
        None
    )


class BatteryState(_CommonState, tag_field="kind", tag="battery", kw_only=True):
    """One battery (pack) as read from its BMS; payload of ``bms/<id>/state`` (retained).

    Readers fill what their BMS reports and leave the rest ``None``;
    :func:`bmslink.derived.complete`
    adds ``power``, the cell summary (``cell_min``/``cell_max``/``cell_avg``/``cell_delta`` with
    1-based ``cell_min_index``/``cell_max_index``), ``temperature_min``/``temperature_max`` and the
    energy counters, so every reader computes them the same way.

    ``temperatures`` are the cell/pack sensors in the BMS's order; ``raw_status`` keeps the BMS's
    raw status/alarm bitfields (name → integer) for diagnosis next to the stable ``alarms`` and
    ``warnings`` codes (snake_case, e.g. ``cell_overvoltage``).

    ``charge_enabled``/``discharge_enabled`` say whether the BMS *allows* a direction (for
    Pylontech a request flag, 0x92 / CAN 0x35C); ``charge_switch``/``discharge_switch`` whether
    its MOSFET or relay for that direction is closed (``None``: the BMS does not say). The bank
    rules treat them differently: a disallowed direction stops the bank, an open switch only
    leaves the member out of that direction's current split (docs/bank-rules.md).
    """

    cell_voltages: Annotated[list[CellVoltage], DN("cell voltages, cell 1 first", MAX_CELLS)] = (
        msgspec.field(default_factory=list)
    )
    cell_min_index: Annotated[CellIndex, D("number of the lowest cell")] | None = None
    cell_max_index: Annotated[CellIndex, D("number of the highest cell")] | None = None
    temperatures: Annotated[
        list[Temperature], DN("cell/pack sensors, BMS order", MAX_TEMPERATURES)
    ] = msgspec.field(default_factory=list)
    mosfet_temperature: Annotated[Temperature, D("MOSFET temperature")] | None = None
    bms_temperature: Annotated[Temperature, D("BMS board temperature")] | None = None
    ambient_temperature: Annotated[Temperature, D("ambient temperature")] | None = None
    balancing_cells: (
        Annotated[list[CellIndex], DN("cells being balanced; null if not reported", MAX_CELLS)]
        | None
    ) = None
    raw_status: Annotated[
        dict[StatusName, int], DN("raw status/alarm bitfields, for diagnosis", MAX_RAW_STATUS)
    ] = msgspec.field(default_factory=dict)
    charge_switch: (
        Annotated[bool, D("charge MOSFET/relay: true closed, false open, null unknown")] | None
    ) = None
    discharge_switch: (
        Annotated[bool, D("discharge MOSFET/relay: true closed, false open, null unknown")] | None
    ) = None


class BankState(_CommonState, tag_field="kind", tag="bank", kw_only=True):
    """A bank of batteries as one virtual BMS; payload of ``bms/<bank>/state`` (retained).

    Sums and weighted means follow DESIGN.md "Bank rules". Cells are summarised, not listed:
    ``cell_min_member``/``cell_max_member`` name the member holding the lowest/highest cell.
    ``members`` are the configured ids, ``members_online`` those counted now (online and fresh);
    ``degraded`` is true while a configured member is missing. ``limits_source`` says where the
    effective current limits came from and ``override_expires`` (Unix s) when a leased override
    ends.
    """

    members: Annotated[list[DeviceId], DN("configured member ids", MAX_MEMBERS)] = msgspec.field(
        default_factory=list
    )
    members_online: Annotated[list[DeviceId], DN("members counted now", MAX_MEMBERS)] = (
        msgspec.field(default_factory=list)
    )
    degraded: bool = False
    failsafe: bool = False
    cell_min_member: DeviceId | None = None
    cell_max_member: DeviceId | None = None
    limits_source: LimitsSource = "bms"
    override_expires: Timestamp | None = None
    charge_limit_source: Annotated[LimitsSource, D("where the CCL came from")] | None = None
    discharge_limit_source: Annotated[LimitsSource, D("where the DCL came from")] | None = None
    charge_limited_by: Annotated[DeviceId, D("member whose share sets the CCL")] | None = None
    discharge_limited_by: Annotated[DeviceId, D("member whose share sets the DCL")] | None = None
    member_limit_sources: Annotated[
        dict[DeviceId, MemberLimitSource],
        DN(
            "per counted member: current limits from its BMS, the bank config or a default",
            MAX_MEMBERS,
        ),
    ] = msgspec.field(default_factory=dict)
    members_ts: Annotated[
        dict[DeviceId, Timestamp], DN("Unix time of each counted member's reading, s", MAX_MEMBERS)
    ] = msgspec.field(default_factory=dict)
    soc_raw: Annotated[Soc, D("capacity-weighted SoC before the 99 % hold")] | None = None
    charge_limit_reason: (
        Annotated[AlarmCode, D("why the CCL is what it is, as code@member (e.g. alarm)")] | None
    ) = None
    discharge_limit_reason: (
        Annotated[AlarmCode, D("why the DCL is what it is, as code@member (e.g. alarm)")] | None
    ) = None


State = BatteryState | BankState


class BatteryInfo(_Message, kw_only=True):
    """Identity of a device; payload of ``bms/<id>/info`` (retained, re-published on reconnect).

    ``kind`` is ``battery`` or ``bank``; ``protocol`` names the codec (e.g. ``pylontech-rs485``);
    ``transport`` the link (e.g. ``socket://10.0.0.5:8888``); ``address`` the bus address.
    ``design_capacity`` in Ah. ``service``/``instance`` name the publisher, whose status topic
    is ``bmslink/<service>/<instance>/status``.
    """

    id: DeviceId
    kind: Literal["battery", "bank"] = "battery"
    name: Text | None = None
    manufacturer: Text | None = None
    model: Text | None = None
    serial: Text | None = None
    firmware: Text | None = None
    hardware: Text | None = None
    cell_count: Annotated[int, Meta(ge=0, le=MAX_CELLS)] | None = None
    design_capacity: Capacity | None = None
    protocol: Text | None = None
    transport: Text | None = None
    address: int | None = None
    service: Text | None = None
    instance: Text | None = None
    members: Annotated[list[DeviceId], Meta(max_length=MAX_MEMBERS)] | None = None


class LimitsOverride(_Message, kw_only=True, forbid_unknown_fields=True):
    """Leased limits command on ``bms/<bank>/set`` (not retained).

    Any of ``charge_current_limit``/``discharge_current_limit`` (A, magnitudes) and
    ``charge_voltage_limit`` (V); ``ttl`` in s (default 60, at most 3600). An override can only
    LOWER what the batteries allow and expires by itself. Unknown fields are rejected.
    """

    charge_current_limit: CurrentLimit | None = None
    discharge_current_limit: CurrentLimit | None = None
    charge_voltage_limit: VoltageLimit | None = None
    ttl: Annotated[float, Meta(gt=0, le=3600, description="lease, s")] = 60.0


class SwitchCommand(_Message, kw_only=True, forbid_unknown_fields=True):
    """MOSFET switch command to a battery on ``bms/<id>/set`` (not retained).

    ``charge_enabled``/``discharge_enabled``: True to switch the MOSFET on, False off, absent to
    leave it. Only readers whose config enables control act on it; the next state acknowledges it
    and ``bms/<id>/set/result`` answers. Unknown fields are rejected.
    """

    charge_enabled: bool | None = None
    discharge_enabled: bool | None = None


class SetResult(_Message, kw_only=True):
    """Answer to a command, on ``bms/<id>/set/result`` (not retained).

    ``ok`` tells whether it was accepted; ``error`` says why not; ``ts`` is Unix seconds.
    """

    ok: bool
    ts: Timestamp
    error: Annotated[str, Meta(max_length=MAX_ERROR)] | None = None
    expires: Timestamp | None = None


# --- encoding / decoding ---------------------------------------------------------------------
# One encoder and one decoder per type, created once (DESIGN.md "Rules every publisher follows").

_encoder = msgspec.json.Encoder()
STATE_DECODER: Final = msgspec.json.Decoder(State)
BATTERY_STATE_DECODER: Final = msgspec.json.Decoder(BatteryState)
BANK_STATE_DECODER: Final = msgspec.json.Decoder(BankState)
INFO_DECODER: Final = msgspec.json.Decoder(BatteryInfo)
OVERRIDE_DECODER: Final = msgspec.json.Decoder(LimitsOverride)
RESULT_DECODER: Final = msgspec.json.Decoder(SetResult)
SWITCH_DECODER: Final = msgspec.json.Decoder(SwitchCommand)


class MessageError(ValueError):
    """A payload that is not a valid message of the expected type (bad JSON, type, range)."""


def encode(message: msgspec.Struct) -> bytes:
    """Encode a message as compact JSON bytes."""
    return _encoder.encode(message)


_JSON_STRING: Final = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_INNERMOST: Final = re.compile(rb"\[[^\[\]{}]*\]|\{[^\[\]{}]*\}")


def nesting_exceeds(payload: bytes, depth: int = MAX_DEPTH) -> bool:
    """Whether the JSON text ``payload`` nests arrays/objects more than ``depth`` levels.

    Brackets inside strings do not count; unclosed ones do (malformed text that would still
    make a recursive parser descend). Cost: two ``bytes.count`` calls for any ordinary message
    (fewer brackets than ``depth``); otherwise at most ``depth`` regular-expression passes, each
    stripping the innermost level — linear in the size, never recursive.
    """
    if payload.count(b"[") + payload.count(b"{") <= depth:
        return False
    text = _JSON_STRING.sub(b'""', payload)
    levels = 0
    while levels <= depth:
        text, removed = _INNERMOST.subn(b"", text)
        if not removed:
            break
        levels += 1
    # what is left are unmatched brackets: each opener may still add a level
    return levels + text.count(b"[") + text.count(b"{") > depth


def decode(decoder: msgspec.json.Decoder[Any], payload: bytes | str) -> Any:
    """Decode ``payload`` with one of the module's decoders.

    Raises :class:`MessageError` naming the offending field for malformed JSON, a wrong type,
    a value out of range, a list, string or map longer than its bound (module docstring), or a
    non-finite float; and, before parsing, for a payload over :data:`MAX_PAYLOAD` bytes or
    nested deeper than :data:`MAX_DEPTH` levels (never ``RecursionError``).
    """
    data = payload.encode("utf-8", "surrogatepass") if isinstance(payload, str) else payload
    if len(data) > MAX_PAYLOAD:
        raise MessageError(f"payload of {len(data)} bytes is larger than {MAX_PAYLOAD} bytes")
    if nesting_exceeds(data):
        raise MessageError(f"JSON nested deeper than {MAX_DEPTH} levels")
    try:
        return decoder.decode(data)
    except RecursionError as exc:  # not reachable past the depth check; kept typed anyway
        raise MessageError(f"JSON nested too deeply: {exc}") from exc
    except (msgspec.DecodeError, msgspec.ValidationError, ValueError) as exc:
        raise MessageError(str(exc)) from exc


def validate(message: msgspec.Struct) -> None:
    """Check a locally built message against its constraints (ranges, patterns).

    Construction only checks finiteness; this re-decodes the encoded form, so it costs one
    round trip. Raises :class:`MessageError` naming the field.
    """
    try:
        msgspec.json.decode(_encoder.encode(message), type=type(message))
    except (msgspec.ValidationError, ValueError) as exc:
        raise MessageError(str(exc)) from exc


def field_meta(struct: type[msgspec.Struct]) -> dict[str, dict[str, Any]]:
    """Metadata per field of a message type: ``{name: {"description", "unit", "device_class",
    "state_class", "ge", "le", "max_length", "type"}}`` for the fields that carry a ``Meta``
    (``max_length``: most items of a list or map, or characters of a string). Used by
    hass-discovery and the README's schema table, so units live in one place.
    """
    info = msgspec.inspect.type_info(struct)
    assert isinstance(info, msgspec.inspect.StructType)
    result: dict[str, dict[str, Any]] = {}
    for f in info.fields:
        t = f.type
        if isinstance(t, msgspec.inspect.UnionType):
            non_null = [x for x in t.types if not isinstance(x, msgspec.inspect.NoneType)]
            t = non_null[0] if len(non_null) == 1 else t
        entry: dict[str, Any] = {"type": type(t).__name__.removesuffix("Type").lower()}
        for attr in ("ge", "le", "gt", "lt", "max_length"):
            bound = getattr(t, attr, None)
            if bound is not None:
                entry[attr] = bound
        if isinstance(t, msgspec.inspect.Metadata):
            inner = t.type
            if isinstance(inner, msgspec.inspect.ListType) and isinstance(
                inner.item_type, msgspec.inspect.Metadata
            ):
                item = inner.item_type
                entry.update(item.extra or {})
                for attr in ("ge", "le"):
                    bound = getattr(item.type, attr, None)
                    if bound is not None:
                        entry[attr] = bound
                entry["type"] = "list"
            else:
                entry["type"] = type(t.type).__name__.removesuffix("Type").lower()
            for attr in ("ge", "le", "gt", "lt", "max_length"):
                bound = getattr(t.type, attr, None)
                if bound is not None:
                    entry[attr] = bound
            extra = t.extra or {}
            entry.update(extra)
            if t.extra_json_schema and "description" in t.extra_json_schema:
                entry["description"] = t.extra_json_schema["description"]
        result[f.name] = entry
    return result


_LENGTH_OF: Final = {"str": "chars", "dict": "entries", "list": "items"}


def markdown_fields(struct: type[msgspec.Struct]) -> str:
    """A Markdown table of ``struct``'s fields with unit, range and description (README)."""
    lines = ["| field | unit | range | meaning |", "|---|---|---|---|"]
    for name, meta in field_meta(struct).items():
        bounds = ""
        if "ge" in meta or "le" in meta:
            bounds = f"{meta.get('ge', '')}..{meta.get('le', '')}"
        if "max_length" in meta:
            what = _LENGTH_OF.get(meta["type"], "items")
            bounds = ", ".join(filter(None, (bounds, f"≤ {meta['max_length']} {what}")))
        lines.append(
            f"| `{name}` | {meta.get('unit', '')} | {bounds} | {meta.get('description', '')} |"
        )
    return "\n".join(lines)
