"""An independent checker of Home Assistant MQTT discovery configs, and its own tests.

Written from ../shared/reference/home-assistant-mqtt.md (§1 topics and abbreviations, §2
device-based payloads, §3 identity, §4 availability, §5 device/state classes and units, §6
entity categories, §7 templates, §8 number entities) and Home Assistant's sensor constants
(``DEVICE_CLASS_UNITS``, ``DEVICE_CLASS_STATE_CLASSES``). It shares no code or table with
hass-discovery on purpose: the generator's tables are what is under test.

:func:`check_device_config` / :func:`check_entity_config` return a list of problems (empty =
valid); ``fields`` is the set of state fields a ``value_template`` may read.
"""

from __future__ import annotations

import copy
import re
from typing import Any

import pytest

ABBREVIATIONS = {
    "dev": "device",
    "o": "origin",
    "cmps": "components",
    "p": "platform",
    "stat_t": "state_topic",
    "cmd_t": "command_topic",
    "val_tpl": "value_template",
    "cmd_tpl": "command_template",
    "uniq_id": "unique_id",
    "dev_cla": "device_class",
    "stat_cla": "state_class",
    "unit_of_meas": "unit_of_measurement",
    "exp_aft": "expire_after",
    "ent_cat": "entity_category",
    "en": "enabled_by_default",
    "avty": "availability",
    "avty_mode": "availability_mode",
    "avty_t": "availability_topic",
    "pl_avail": "payload_available",
    "pl_not_avail": "payload_not_available",
    "sug_dsp_prc": "suggested_display_precision",
    "ic": "icon",
    "pl_on": "payload_on",
    "pl_off": "payload_off",
    "opt": "optimistic",
    "ret": "retain",
    "ops": "options",
    "ids": "identifiers",
    "mf": "manufacturer",
    "mdl": "model",
    "sn": "serial_number",
    "sw": "sw_version",
    "hw": "hw_version",
    "url": "support_url",
    "def_ent_id": "default_entity_id",
}

# Home Assistant sensor device classes → accepted units (homeassistant/components/sensor/const.py).
SENSOR_UNITS: dict[str, set[str | None]] = {
    "voltage": {"V", "mV", "µV", "kV", "MV"},
    "current": {"A", "mA"},
    "power": {"W", "kW", "MW", "GW", "TW", "mW", "BTU/h"},
    "energy": {"Wh", "kWh", "MWh", "GWh", "TWh", "mWh", "J", "kJ", "MJ", "GJ", "cal", "kcal"},
    "energy_storage": {"Wh", "kWh", "MWh", "GWh", "TWh", "mWh", "J", "kJ", "MJ", "GJ"},
    "battery": {"%"},
    "temperature": {"°C", "°F", "K"},
    "duration": {"d", "h", "min", "s", "ms", "µs"},
    "signal_strength": {"dB", "dBm"},
    "enum": {None},
    "timestamp": {None},
}
# device class → allowed state classes (DEVICE_CLASS_STATE_CLASSES); empty = none allowed.
SENSOR_STATE_CLASSES: dict[str, set[str]] = {
    "voltage": {"measurement"},
    "current": {"measurement"},
    "power": {"measurement"},
    "energy": {"total", "total_increasing"},
    "energy_storage": {"measurement"},
    "battery": {"measurement"},
    "temperature": {"measurement"},
    "duration": {"measurement", "total", "total_increasing"},
    "signal_strength": {"measurement"},
    "enum": set(),
    "timestamp": set(),
}
STATE_CLASSES = {"measurement", "total", "total_increasing"}
BINARY_CLASSES = {
    "battery",
    "battery_charging",
    "connectivity",
    "power",
    "problem",
    "running",
    "safety",
    "update",
    "plug",
    "heat",
    "cold",
}
NUMBER_UNITS: dict[str, set[str]] = {"current": {"A", "mA"}, "voltage": {"V", "mV"}}

COMMON = {"platform", "unique_id", "default_entity_id", "name", "icon", "enabled_by_default"}
COMMON |= {"entity_category", "availability", "availability_mode", "qos", "encoding"}
ALLOWED = {
    "sensor": COMMON
    | {
        "state_topic",
        "value_template",
        "device_class",
        "unit_of_measurement",
        "state_class",
        "expire_after",
        "suggested_display_precision",
        "options",
        "force_update",
    },
    "binary_sensor": COMMON
    | {
        "state_topic",
        "value_template",
        "device_class",
        "expire_after",
        "payload_on",
        "payload_off",
        "force_update",
    },
    "number": COMMON
    | {
        "state_topic",
        "value_template",
        "command_topic",
        "command_template",
        "device_class",
        "unit_of_measurement",
        "min",
        "max",
        "step",
        "mode",
        "retain",
        "optimistic",
        "payload_reset",
    },
}
ROOT_KEYS = {
    "device",
    "origin",
    "components",
    "availability",
    "availability_mode",
    "availability_topic",
    "payload_available",
    "payload_not_available",
    "state_topic",
    "command_topic",
    "qos",
    "encoding",
    "~",
}
DEVICE_KEYS = {
    "identifiers",
    "connections",
    "name",
    "manufacturer",
    "model",
    "model_id",
    "serial_number",
    "sw_version",
    "hw_version",
    "configuration_url",
    "suggested_area",
    "via_device",
}
ORIGIN_KEYS = {"name", "sw_version", "support_url"}
ID_PART = re.compile(r"^[a-zA-Z0-9_-]+$")
ENTITY_ID = re.compile(r"^(?!.+__)(?!_)[a-z0-9_]+(?<!_)\.(?!_)[a-z0-9_]+(?<!_)$")
VALUE_REF = re.compile(r"value_json\.([a-zA-Z_][a-zA-Z0-9_]*)(.{0,40})", re.S)


def expand(d: dict[str, Any], where: str, problems: list[str]) -> dict[str, Any]:
    """Abbreviations → full keys; a key given in both forms is a problem."""
    out: dict[str, Any] = {}
    for key, value in d.items():
        full = ABBREVIATIONS.get(key, key)
        if full in out:
            problems.append(f"{where}: `{full}` given twice (abbreviated and full)")
        out[full] = value
    return out


def _check_template(template: str, fields: set[str] | None, where: str, out: list[str]) -> None:
    if template.count("{{") != template.count("}}") or template.count("{%") != template.count("%}"):
        out.append(f"{where}: unbalanced template delimiters")
    for match in VALUE_REF.finditer(template):
        field, rest = match.group(1), match.group(2)
        if fields is not None and field not in fields:
            out.append(f"{where}: template reads unknown field `{field}`")
        if not re.match(r"\s*(\)\s*)?(\[\d+\]\s*)?\|\s*default\(", rest):
            out.append(f"{where}: `value_json.{field}` without `| default(...)` guard")


def _check_availability(cfg: dict[str, Any], where: str, out: list[str]) -> None:
    if "availability" in cfg:
        if "availability_topic" in cfg:
            out.append(f"{where}: availability and availability_topic together")
        avail = cfg["availability"]
        if not isinstance(avail, list) or not avail:
            out.append(f"{where}: availability must be a non-empty list")
        else:
            for item in avail:
                extra = set(item) - {"topic", "payload_available", "payload_not_available"}
                extra -= {"value_template"}
                if "topic" not in item or extra:
                    out.append(f"{where}: bad availability item {item}")
    if cfg.get("availability_mode", "latest") not in ("all", "any", "latest"):
        out.append(f"{where}: bad availability_mode")


def check_component(
    comp: dict[str, Any],
    where: str,
    *,
    has_root_state: bool,
    fields: set[str] | None,
    platform: str | None = None,
) -> list[str]:
    """Problems of one entity's options (``platform`` given for per-entity configs)."""
    out: list[str] = []
    comp = expand(comp, where, out)
    p = platform or comp.get("platform")
    if p not in ALLOWED:
        return [f"{where}: unknown platform {p!r}"]
    unknown = set(comp) - ALLOWED[p] - ({"device", "origin"} if platform else set())
    if unknown:
        out.append(f"{where}: unknown keys {sorted(unknown)}")
    if not isinstance(comp.get("unique_id"), str) or not comp["unique_id"]:
        out.append(f"{where}: unique_id is required")
    if "default_entity_id" in comp:
        eid = comp["default_entity_id"]
        if not ENTITY_ID.match(eid) or not eid.startswith(f"{p}."):
            out.append(f"{where}: bad default_entity_id {eid!r}")
    cat = comp.get("entity_category")
    if p in ("sensor", "binary_sensor") and cat not in (None, "diagnostic"):
        out.append(f"{where}: a {p} may only be diagnostic, not {cat!r}")
    if p == "number" and cat not in (None, "config", "diagnostic"):
        out.append(f"{where}: bad entity_category {cat!r}")
    if "enabled_by_default" in comp and not isinstance(comp["enabled_by_default"], bool):
        out.append(f"{where}: enabled_by_default must be a bool")
    if "expire_after" in comp and (
        not isinstance(comp["expire_after"], int) or comp["expire_after"] <= 0
    ):
        out.append(f"{where}: expire_after must be a positive integer")
    if p in ("sensor", "binary_sensor") and "state_topic" not in comp and not has_root_state:
        out.append(f"{where}: no state_topic")
    if "value_template" in comp:
        _check_template(comp["value_template"], fields, where, out)
    dc = comp.get("device_class")
    unit = comp.get("unit_of_measurement")
    sc = comp.get("state_class")
    if p == "sensor":
        if dc is not None:
            if dc not in SENSOR_UNITS:
                out.append(f"{where}: unknown sensor device_class {dc!r}")
            else:
                if unit not in SENSOR_UNITS[dc]:
                    out.append(f"{where}: unit {unit!r} not accepted for device_class {dc!r}")
                if sc is not None and sc not in SENSOR_STATE_CLASSES[dc]:
                    out.append(f"{where}: state_class {sc!r} not accepted for {dc!r}")
        if sc is not None and sc not in STATE_CLASSES:
            out.append(f"{where}: unknown state_class {sc!r}")
        if dc == "enum" and not comp.get("options"):
            out.append(f"{where}: enum sensor without options")
        if "options" in comp and dc != "enum":
            out.append(f"{where}: options without device_class enum")
        if "suggested_display_precision" in comp and (
            dc in ("enum", "timestamp") or not isinstance(comp["suggested_display_precision"], int)
        ):
            out.append(f"{where}: bad suggested_display_precision")
    if p == "binary_sensor" and dc is not None and dc not in BINARY_CLASSES:
        out.append(f"{where}: unknown binary_sensor device_class {dc!r}")
    if p == "number":
        if not comp.get("command_topic"):
            out.append(f"{where}: number without command_topic")
        tpl = comp.get("command_template")
        if tpl is not None and "{{ value }}" not in tpl:
            out.append(f"{where}: command_template does not use {{{{ value }}}}")
        if not comp.get("min", 1) < comp.get("max", 100):
            out.append(f"{where}: min must be below max")
        if comp.get("step", 1) < 0.001:
            out.append(f"{where}: step below 0.001")
        if comp.get("mode", "auto") not in ("auto", "box", "slider"):
            out.append(f"{where}: bad mode")
        if comp.get("retain", False) is not False:
            out.append(f"{where}: a command must not be retained")
        if dc is not None and unit not in NUMBER_UNITS.get(dc, set()):
            out.append(f"{where}: unit {unit!r} not accepted for number device_class {dc!r}")
    return out


def _check_device_block(cfg: dict[str, Any], where: str, out: list[str]) -> None:
    device = expand(cfg.get("device") or {}, f"{where}.device", out)
    if not device.get("identifiers") and not device.get("connections"):
        out.append(f"{where}: device needs identifiers or connections")
    if set(device) - DEVICE_KEYS:
        out.append(f"{where}: unknown device keys {sorted(set(device) - DEVICE_KEYS)}")
    origin = expand(cfg.get("origin") or {}, f"{where}.origin", out)
    if not origin.get("name"):
        out.append(f"{where}: origin.name is required")
    if set(origin) - ORIGIN_KEYS:
        out.append(f"{where}: unknown origin keys")


def check_device_config(
    topic: str,
    payload: dict[str, Any],
    *,
    fields: set[str] | None = None,
    prefix: str = "homeassistant",
    seen_unique_ids: set[str] | None = None,
) -> list[str]:
    """Problems of one device-based discovery config (empty list = valid)."""
    out: list[str] = []
    m = re.match(rf"^{re.escape(prefix)}/device/([^/]+)/config$", topic)
    if not m or not ID_PART.match(m.group(1)):
        out.append(f"bad device discovery topic {topic!r}")
    cfg = expand(payload, topic, out)
    if set(cfg) - ROOT_KEYS:
        out.append(f"{topic}: keys not allowed at the root {sorted(set(cfg) - ROOT_KEYS)}")
    _check_device_block(cfg, topic, out)
    _check_availability(cfg, topic, out)
    if cfg.get("qos", 0) not in (0, 1, 2):
        out.append(f"{topic}: bad qos")
    comps = cfg.get("components")
    if not isinstance(comps, dict) or not comps:
        return [*out, f"{topic}: components missing"]
    seen = seen_unique_ids if seen_unique_ids is not None else set()
    for key, comp in comps.items():
        where = f"{topic}#{key}"
        if not ID_PART.match(key):
            out.append(f"{where}: bad component id")
        out += check_component(comp, where, has_root_state="state_topic" in cfg, fields=fields)
        uid = comp.get("unique_id") or comp.get("uniq_id")
        if uid in seen:
            out.append(f"{where}: duplicate unique_id {uid}")
        seen.add(uid)
    return out


def check_entity_config(
    topic: str,
    payload: dict[str, Any],
    *,
    fields: set[str] | None = None,
    prefix: str = "homeassistant",
) -> list[str]:
    """Problems of one per-entity discovery config (``<prefix>/<platform>/<node>/<obj>/config``)."""
    out: list[str] = []
    m = re.match(rf"^{re.escape(prefix)}/([a-z_]+)/([^/]+)/([^/]+)/config$", topic)
    if not m or not ID_PART.match(m.group(2)) or not ID_PART.match(m.group(3)):
        return [f"bad entity discovery topic {topic!r}"]
    cfg = expand(payload, topic, out)
    _check_device_block(cfg, topic, out)
    _check_availability(cfg, topic, out)
    out += check_component(cfg, topic, has_root_state=False, fields=fields, platform=m.group(1))
    return out


# --- the checker's own tests: it must catch what breaks setups ---------------------------------

VALID: dict[str, Any] = {
    "dev": {"ids": ["x_1"], "name": "X"},
    "o": {"name": "t"},
    "stat_t": "bms/x/state",
    "avty": [{"topic": "a/status"}, {"topic": "bms/x/availability"}],
    "avty_mode": "all",
    "cmps": {
        "soc": {
            "p": "sensor",
            "uniq_id": "x_soc",
            "dev_cla": "battery",
            "unit_of_meas": "%",
            "stat_cla": "measurement",
            "val_tpl": "{{ value_json.soc | default(none) }}",
        },
        "lim": {
            "p": "number",
            "uniq_id": "x_lim",
            "cmd_t": "bms/x/set",
            "cmd_tpl": '{"charge_current_limit": {{ value }}, "ttl": 60}',
            "min": 0,
            "max": 100,
            "ent_cat": "config",
        },
    },
}
TOPIC = "homeassistant/device/x_1/config"


def test_checker_accepts_a_valid_abbreviated_config() -> None:
    assert check_device_config(TOPIC, VALID, fields={"soc"}) == []


def _mutated(path: tuple[str, ...], value: Any) -> dict[str, Any]:
    cfg = copy.deepcopy(VALID)
    node = cfg
    for key in path[:-1]:
        node = node[key]
    if value is _DELETE:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return cfg


_DELETE = object()


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        (("cmps", "soc", "dev_cla"), "energy", "not accepted for device_class 'energy'"),
        (("cmps", "soc", "unit_of_meas"), "Ah", "unit 'Ah' not accepted"),
        (("cmps", "soc", "ent_cat"), "config", "may only be diagnostic"),
        (("cmps", "soc", "uniq_id"), _DELETE, "unique_id is required"),
        (("cmps", "soc", "val_tpl"), "{{ value_json.soc }}", "without `| default"),
        (("cmps", "soc", "val_tpl"), "{{ value_json.sco | default(none) }}", "unknown field"),
        (("cmps", "soc", "state_class"), "measurement", "given twice"),
        (("cmps", "soc", "unit_of_measurment"), "%", "unknown keys"),
        (("cmps", "soc", "exp_aft"), 0, "expire_after"),
        (("cmps", "lim", "ret"), True, "must not be retained"),
        (("cmps", "lim", "cmd_t"), _DELETE, "without command_topic"),
        (("cmps", "lim", "min"), 200, "min must be below max"),
        (("o",), _DELETE, "origin.name is required"),
        (("dev", "ids"), _DELETE, "identifiers or connections"),
        (("avty_t",), "a/status", "availability and availability_topic"),
        (("avty_mode",), "every", "bad availability_mode"),
        (("stat_t",), _DELETE, "no state_topic"),
        (("value_template",), "x", "not allowed at the root"),
    ],
)
def test_checker_catches(path: tuple[str, ...], value: Any, expected: str) -> None:
    problems = check_device_config(TOPIC, _mutated(path, value), fields={"soc"})
    assert any(expected in p for p in problems), problems


def test_checker_energy_with_measurement_and_duplicate_ids() -> None:
    cfg = copy.deepcopy(VALID)
    cfg["cmps"]["e"] = {
        "p": "sensor",
        "uniq_id": "x_soc",
        "dev_cla": "energy",
        "unit_of_meas": "kWh",
        "stat_cla": "measurement",
        "val_tpl": "{{ value_json.soc | default(none) }}",
    }
    problems = check_device_config(TOPIC, cfg, fields={"soc"})
    assert any("state_class 'measurement' not accepted for 'energy'" in p for p in problems)
    assert any("duplicate unique_id" in p for p in problems)


def test_checker_rejects_bad_topics() -> None:
    assert check_device_config("homeassistant/device/a.b/config", VALID, fields={"soc"})
    assert check_device_config("homeassistant/sensor/x/config", VALID, fields={"soc"})
    assert check_entity_config("homeassistant/sensor/x/config", {}) == [
        "bad entity discovery topic 'homeassistant/sensor/x/config'"
    ]
