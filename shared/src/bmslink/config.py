"""Site configuration: one TOML file plus ``BMSLINK_*`` environment overrides, into typed structs.

The site file (``--config`` or ``BMSLINK_CONFIG``) holds shared sections (``[mqtt]``,
``[storage]``, ``[log]``) and one section per service kind, keyed by instance name, e.g.
``[pylontech_rs485.rack1]``. A service reads the shared sections and its own instance table;
unknown keys anywhere it reads are errors, and so are unknown top-level sections (a typo such as
``[mqqt]`` must not be ignored). The known top-level section names are :data:`SECTIONS`.

Environment overrides (strings, converted to the field's type):

- ``BMSLINK_MQTT_HOST``, ``BMSLINK_MQTT_PORT``, ``BMSLINK_MQTT_USERNAME``,
  ``BMSLINK_MQTT_PASSWORD``, ``BMSLINK_MQTT_KEEPALIVE``, ``BMSLINK_MQTT_TLS``,
  ``BMSLINK_MQTT_PROTOCOL`` → ``[mqtt]``;
- ``BMSLINK_STATE_DIR`` → ``[storage] state_dir``; ``BMSLINK_LOG_LEVEL`` → ``[log] level``;
- ``BMSLINK_<KEY>`` → key ``<key>`` of the service's instance table (e.g. ``BMSLINK_PORT``),
  lists as JSON (``[2,3]``) or comma-separated (``2,3``).

Any error exits with status 2 and a message naming the key (and the variable, for overrides);
so do a site path that is a directory or not UTF-8, and an ``--instance`` with no table in the
site file (the message names it and lists the configured instances).
"""

from __future__ import annotations

import json
import math
import os
import sys
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final, Literal, TypeVar

import msgspec

SECTIONS: Final = frozenset(
    {
        "mqtt",
        "storage",
        "log",
        "pylontech_rs485",
        "pace_modbus",
        "daly",
        "can_reader",
        "banks",
        "inverters",
        "hass",
        "simulator",
    }
)
"""Top-level section names of the site file (a registry by name; each service reads its own)."""

EXIT_CONFIG: Final = 2


class MqttConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """``[mqtt]``: the broker. ``keepalive`` in s; ``reconnect_min``/``reconnect_max`` are the
    reconnect back-off bounds in s.

    ``protocol`` is the MQTT version: ``"5"`` (default; Mosquitto ≥ 1.6) or ``"3.1.1"`` for a
    broker without MQTT 5 (e.g. the demo's amqtt fallback). Under 3.1.1 the broker clears the
    retain flag when it forwards a message live (MQTT 3.1.1 §3.3.1.3), so a command published
    with the retain flag is only recognised (and refused) when it is delivered as retained,
    i.e. after a (re)subscribe; MQTT 5's "retain as published" subscription option (MQTT 5.0
    §3.8.3.1) keeps the flag on live delivery too (see
    :meth:`bmslink.mqtt.MqttRuntime.subscribe_commands`).

    ``tls`` connects with TLS (the broker's TLS listener, port 8883 in the shipped config),
    verifying the broker's certificate and host name against ``ca_file`` (a PEM CA certificate,
    e.g. the ``mosquitto/certs/ca.crt`` of ``bmslink credentials --tls``) or, without it, the
    system's CAs. A ``ca_file`` without ``tls`` or one that is not a readable file is refused.
    """

    host: str = "localhost"
    port: int = msgspec.field(default=1883)
    username: str | None = None
    password: str | None = None
    keepalive: int = 30
    tls: bool = False
    ca_file: str | None = None
    reconnect_min: float = 0.5
    # 4 s: a broker that returns after any outage is reached again within 5 s
    reconnect_max: float = 4.0
    protocol: Literal["5", "3.1.1"] = "5"

    def __post_init__(self) -> None:
        if not 1 <= self.port <= 65535:
            raise ValueError(f"port {self.port} is not in 1..65535 - at `$.port`")
        if self.keepalive < 5:
            raise ValueError(f"keepalive {self.keepalive} s is below 5 s - at `$.keepalive`")
        if self.ca_file is not None:
            if not self.tls:
                raise ValueError("ca_file is set but tls is false - at `$.ca_file`")
            if not os.path.isfile(self.ca_file) or not os.access(self.ca_file, os.R_OK):
                raise ValueError(
                    f"ca_file {self.ca_file!r} is not a readable file - at `$.ca_file`"
                )


class StorageConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """``[storage]``: ``state_dir`` holds persisted counters (energy, kWh); ``save_interval``
    (s, finite and ≥ 1; default 10) is the period of the energy file's saves (also saved at
    shutdown; see :mod:`bmslink.energy`)."""

    state_dir: str = "/var/lib/bmslink"
    save_interval: float = 10.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.save_interval) and self.save_interval >= 1):
            raise ValueError(
                f"save_interval {self.save_interval} s must be a number of seconds >= 1"
                " - at `$.save_interval`"
            )


class LogConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """``[log]``: ``level`` is a Python logging level name."""

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"


class ConfigError(Exception):
    """A bad configuration; the message names the key (and the file or variable)."""


S = TypeVar("S", bound=msgspec.Struct)
T = TypeVar("T", bound=msgspec.Struct)

_SHARED_ENV: Final = {
    "BMSLINK_MQTT_HOST": ("mqtt", "host"),
    "BMSLINK_MQTT_PORT": ("mqtt", "port"),
    "BMSLINK_MQTT_USERNAME": ("mqtt", "username"),
    "BMSLINK_MQTT_PASSWORD": ("mqtt", "password"),
    "BMSLINK_MQTT_KEEPALIVE": ("mqtt", "keepalive"),
    "BMSLINK_MQTT_TLS": ("mqtt", "tls"),
    "BMSLINK_MQTT_CA_FILE": ("mqtt", "ca_file"),
    "BMSLINK_MQTT_PROTOCOL": ("mqtt", "protocol"),
    "BMSLINK_STATE_DIR": ("storage", "state_dir"),
    "BMSLINK_LOG_LEVEL": ("log", "level"),
}
_RESERVED_ENV: Final = {"BMSLINK_CONFIG", "BMSLINK_INSTANCE"}


class Loaded(msgspec.Struct, kw_only=True):
    """The decoded configuration of one service instance."""

    instance: str
    mqtt: MqttConfig
    storage: StorageConfig
    log: LogConfig
    section: Any
    path: str | None


def _env_value(raw: str, is_list: bool) -> Any:
    text = raw.strip()
    if text.startswith(("[", "{")):
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            return raw
    if is_list:
        return [item.strip() for item in text.split(",") if item.strip()]
    return raw


def _list_fields(struct: type[msgspec.Struct]) -> set[str]:
    names = set()
    for f in msgspec.structs.fields(struct):
        origin = getattr(f.type, "__origin__", None)
        if origin is list or "list[" in str(f.type):
            names.add(f.name)
    return names


def _convert(data: Any, struct: type[S], where: str) -> S:
    try:
        return msgspec.convert(data, struct, strict=False)
    except (msgspec.ValidationError, ValueError, TypeError) as exc:
        msg = str(exc).replace("`$.", f"`{where}.").replace("`$`", f"`{where}`")
        raise ConfigError(msg) from exc


def _unknown_instance(section_name: str, instance: str, tables: dict[str, Any], path: Any) -> str:
    configured = sorted(name for name, value in tables.items() if isinstance(value, dict))
    listed = (
        f"configured: {', '.join(configured)}"
        if configured
        else f"no [{section_name}.<instance>] table at all"
    )
    return (
        f"instance `{instance}` is not configured: {path} has no table "
        f"[{section_name}.{instance}] ({listed})"
    )


def _section_env(
    env: Mapping[str, str], section_type: type[msgspec.Struct], shared_vars: set[str]
) -> list[str]:
    """The ``BMSLINK_<KEY>`` variables naming a key of ``section_type``."""
    keys = {f.name for f in msgspec.structs.fields(section_type)}
    return [
        var
        for var in env
        if var.startswith("BMSLINK_")
        and var not in shared_vars
        and var.removeprefix("BMSLINK_").lower() in keys
    ]


def load(
    section_name: str,
    section_type: type[S],
    *,
    instance: str | None,
    path: str | os.PathLike[str] | None,
    env: Mapping[str, str] | None = None,
) -> Loaded:
    """Load the shared sections and ``[<section_name>.<instance>]`` as ``section_type``.

    ``instance`` None means the section is a single table ``[<section_name>]``. ``path`` None
    means no file (defaults plus environment). Raises :class:`ConfigError` naming the key; for
    a path that is a directory, unreadable or not UTF-8; and for an ``instance`` the file has no
    ``[<section_name>.<instance>]`` table for (the message lists the configured instances) or,
    without a file, no ``BMSLINK_<KEY>`` variable configures — a mistyped ``--instance`` must
    never run on defaults (a bank of every battery, a reader on a default port).
    """
    env = os.environ if env is None else env
    data: dict[str, Any] = {}
    if path is not None:
        try:
            with open(path, "rb") as fh:
                data = tomllib.load(fh)
        except FileNotFoundError as exc:
            raise ConfigError(f"config file not found: {path}") from exc
        except IsADirectoryError as exc:
            raise ConfigError(f"config path {path} is a directory, not a TOML file") from exc
        except UnicodeDecodeError as exc:
            line = exc.object[: exc.start].count(b"\n") + 1
            raise ConfigError(
                f"{path}: not valid UTF-8 (TOML files are UTF-8):"
                f" byte 0x{exc.object[exc.start]:02x} on line {line} (offset {exc.start})"
            ) from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
        except OSError as exc:
            raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from exc
    unknown = sorted(set(data) - SECTIONS)
    if unknown:
        raise ConfigError(
            f"unknown section `{unknown[0]}` in {path} (known: {', '.join(sorted(SECTIONS))})"
        )
    origin: dict[tuple[str, str], str] = {}
    for var, (sect, key) in _SHARED_ENV.items():
        if var in env:
            data.setdefault(sect, {})[key] = _env_value(env[var], False)
            origin[(sect, key)] = var

    raw_section: Any = data.get(section_name, {})
    where = section_name
    lists = _list_fields(section_type)
    shared_vars = set(_SHARED_ENV) | _RESERVED_ENV
    if instance is not None:
        if not isinstance(raw_section, dict):
            raise ConfigError(f"`{section_name}` must be a table of instances")
        if path is not None and instance not in raw_section:
            raise ConfigError(_unknown_instance(section_name, instance, raw_section, path))
        if path is None and not _section_env(env, section_type, shared_vars):
            raise ConfigError(
                f"instance `{instance}` is not configured: no site file (--config or "
                f"BMSLINK_CONFIG) and no BMSLINK_<KEY> variables for [{section_name}.{instance}]"
            )
        raw_section = raw_section.get(instance, {})
        where = f"{section_name}.{instance}"
    if not isinstance(raw_section, dict):
        raise ConfigError(f"`{where}` must be a table")
    for var, value in env.items():
        if var.startswith("BMSLINK_") and var not in shared_vars:
            key = var.removeprefix("BMSLINK_").lower()
            if key in {f.name for f in msgspec.structs.fields(section_type)}:
                raw_section[key] = _env_value(value, key in lists)
                origin[(where, key)] = var

    def convert(sub: Any, struct: type[T], name: str) -> T:
        try:
            return _convert(sub, struct, name)
        except ConfigError as exc:
            for (sect, key), var in origin.items():
                if sect == name and f"`{name}.{key}`" in str(exc):
                    raise ConfigError(f"{exc} (from environment variable {var})") from exc
            raise ConfigError(f"{path or 'environment'}: {exc}") from exc

    return Loaded(
        instance=instance or section_name,
        mqtt=convert(data.get("mqtt", {}), MqttConfig, "mqtt"),
        storage=convert(data.get("storage", {}), StorageConfig, "storage"),
        log=convert(data.get("log", {}), LogConfig, "log"),
        section=convert(raw_section, section_type, where),
        path=str(path) if path is not None else None,
    )


def load_or_exit(
    section_name: str,
    section_type: type[S],
    *,
    instance: str | None,
    path: str | os.PathLike[str] | None,
    env: Mapping[str, str] | None = None,
) -> Loaded:
    """:func:`load`, but print the error and exit with status 2 (:data:`EXIT_CONFIG`)."""
    try:
        return load(section_name, section_type, instance=instance, path=path, env=env)
    except ConfigError as exc:
        print(f"bmslink: configuration error: {exc}", file=sys.stderr)
        raise SystemExit(EXIT_CONFIG) from exc


def default_path(env: Mapping[str, str] | None = None) -> Path | None:
    """``BMSLINK_CONFIG`` if set, else ``/config/site.toml`` if it exists, else None."""
    env = os.environ if env is None else env
    if env.get("BMSLINK_CONFIG"):
        return Path(env["BMSLINK_CONFIG"])
    candidate = Path("/config/site.toml")
    return candidate if candidate.exists() else None
