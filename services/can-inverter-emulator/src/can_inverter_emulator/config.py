"""Configuration of one can-inverter-emulator instance: the table ``[inverters.<instance>]``.

One instance presents one bank to one or more inverters; each inverter is an *output* with its
own CAN interface, ``[inverters.<instance>.outputs.<name>]``. Keys, units and defaults are listed
in the service README. Protocol facts: ../shared/protocols/pylontech-can.md §6, §7.1.
"""

from __future__ import annotations

import math
import os
import re
import tomllib
from collections.abc import Mapping
from fractions import Fraction
from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from bmslink import config as cfgmod
from bmslink.config import ConfigError
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
    - ``current_scale``: this inverter's share of the bank's CCL/DCL (0 < scale ≤ 1), then
      ``charge_current_max``/``discharge_current_max`` (A) cap the result. The scales of every
      output fed by one bank, over every instance of the site file, add up to at most 1;
      outputs without a scale split what is left equally (:func:`resolve_shares`).
    - ``current_limit_min``: A; a CCL/DCL below this (as sent, after scale, cap and rounding)
      disables that direction: 0x35C bit clear and the stop strategy (inverters that keep
      charging at 0 A with the bit set, Deye/Solis, doc §6).
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
    current_scale: Annotated[float, Meta(gt=0)] | None = None  # ≤ 1: checked by the instance
    current_limit_min: Annotated[float, Meta(ge=0.1, le=100)] = 1.0
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
    instead); ``future_tolerance`` (s) how far a state's ``ts`` may be ahead of this host's
    clock before the state is refused; ``outputs`` maps an output name (slug) to its
    :class:`OutputConfig`."""

    bank: DeviceId
    stale_after: Annotated[float, Meta(gt=0, le=3600)] = 10.0
    future_tolerance: Annotated[float, Meta(ge=0, le=60)] = 5.0
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
            if output.current_scale is not None and output.current_scale > 1:
                raise ValueError(
                    f"current_scale must be at most 1 (a share of the bank), got"
                    f" {output.current_scale} - at `$.outputs.{name}.current_scale`"
                )
            if not _NAME.match(name):
                raise ValueError(f"output name {name!r} is not a slug - at `$.outputs`")


OutputKey = tuple[str, str]
"""``(instance, output)``: one output of one emulator instance."""


def _key(instance: str, output: str) -> str:
    return f"`inverters.{instance}.outputs.{output}.current_scale`"


def _round_down(share: Fraction) -> float:
    value = float(share)
    return math.nextafter(value, 0.0) if Fraction(value) > share else value


def resolve_shares(instances: Mapping[str, EmulatorConfig]) -> dict[OutputKey, float]:
    """The share of its bank's CCL/DCL each output gets, over every emulator instance.

    Per bank: the explicit ``current_scale`` values must add up to ≤ 1 (compared as the
    decimals written, so ten times 0.1 is exactly 1); the outputs without one split the rest
    equally (rounded down). Raises :class:`ConfigError` naming every key involved when the sum
    exceeds 1, or when outputs without a scale would get nothing.
    """
    by_bank: dict[str, list[tuple[OutputKey, OutputConfig]]] = {}
    for instance, cfg in instances.items():
        for name, out in cfg.outputs.items():
            by_bank.setdefault(cfg.bank, []).append(((instance, name), out))
    shares: dict[OutputKey, float] = {}
    for bank, outputs in by_bank.items():
        scaled = [(k, o.current_scale) for k, o in outputs if o.current_scale is not None]
        free = [k for k, o in outputs if o.current_scale is None]
        total = sum((Fraction(repr(s)) for _k, s in scaled), Fraction(0))
        if total > 1:
            keys = ", ".join(_key(*k) for k, _s in scaled)
            raise ConfigError(
                f"the outputs fed by bank {bank!r} would draw {float(total):g} x its current "
                f"limits: current_scale must add up to at most 1 - at {keys}"
            )
        if free and total >= 1:
            keys = ", ".join(_key(*k) for k in [*(k for k, _s in scaled), *free])
            raise ConfigError(
                f"bank {bank!r}: the scaled outputs take all of it, nothing is left for the "
                f"outputs without current_scale - at {keys}"
            )
        shares.update((k, s) for k, s in scaled)
        shares.update((k, _round_down((1 - total) / len(free))) for k in free)
    return shares


def site_shares(
    instance: str, own: EmulatorConfig, path: str | os.PathLike[str] | None
) -> dict[str, float]:
    """Shares (:func:`resolve_shares`) of ``own``'s outputs, by output name, with every other
    ``[inverters.*]`` instance of the site file at ``path`` (None: this instance alone).

    ``own`` is this instance as loaded (with its environment overrides); the others are read
    from the file. Raises :class:`ConfigError` (naming the key) for a bad instance or shares.
    """
    instances = {instance: own}
    if path is not None:
        with open(path, "rb") as fh:
            tables = tomllib.load(fh).get("inverters", {})
        for other in tables:
            if other != instance:
                loaded = cfgmod.load("inverters", EmulatorConfig, instance=other, path=path, env={})
                instances[other] = loaded.section
    shares = resolve_shares(instances)
    return {name: shares[(instance, name)] for name in own.outputs}
