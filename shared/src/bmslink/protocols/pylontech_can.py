"""Pylontech LV CAN codec (spec V1.2, 2018-04-08, and the variants real packs send): pure, no I/O.

Bus facts (reference doc ``shared/protocols/pylontech-can.md``, "the doc" below): 500 kbit/s,
11-bit identifiers, **little-endian** fields, the BMS sends its frame set about once a second and
the inverter answers with 0x305. Decoding accepts any DLC that covers the bytes a field needs
(real packs send DLC 2..8, doc §4); a field the frame is too short for decodes to ``None``.
Encoding always yields DLC 8, zero-padded, with values rounded (``round()``; the 0x351 limits
toward safe: CVL/CCL/DCL down, DVL up) and clamped to the field's range (doc §7 "Rounding"; §7.1).

Frames decoded here (doc section):

====== ======================================================== =======================
id     content                                                  class
====== ======================================================== =======================
0x351  CVL, CCL, DCL, DVL (bytes 6–7, §3.1, §7)                  :class:`Limits`
0x355  SoC, SoH, high-resolution SoC (§3.2)                      :class:`SocSoh`
0x356  voltage, current, temperature, cycles (§3.3)              :class:`Measurements`
0x359  protection/alarm bit tables, module count, "PN" (§3.4)    :class:`ProtectionAlarms`
0x35A  alarm/warning 2-bit pairs (SMA, PYLON V2, §3.8)           :class:`AlarmPairs`
0x35C  charge/discharge enable and request flags (§3.5)          :class:`RequestFlags`
0x35E  manufacturer name (§3.6)                                  :class:`Manufacturer`
0x35F  battery information (SMA/Victron, new US5000, §3.9)       :class:`BatteryInfoFrame`
0x372  module counts (§3.9)                                      :class:`ModuleCounts`
0x373  cell voltage and temperature extremes (§3.9)              :class:`CellExtremes`
0x374… min/max cell and sensor identifiers, ASCII (§3.9)         :class:`Text`
0x378  charged/discharged energy (§3.9, unit disputed)           :class:`EnergyTotals`
0x379  installed capacity (§3.9)                                 :class:`InstalledCapacity`
0x380… serial number / product name, ASCII (§3.9)                :class:`Text`
0x305  inverter heartbeat (Pylontech: zeros; SMA: values, §3.7)  :class:`InverterHeartbeat`
0x307  inverter identification (Victron "VIC", SMA relays)       :class:`InverterInfo`
====== ======================================================== =======================

Any other identifier decodes to :class:`RawFrame` (0x35B events, 0x360, 0x370/0x371 whose uses
are incompatible between vendors, §3.9). Units are the schema's: V, A (+ = charging *as sent*:
the sign convention of 0x356 varies by vendor, §7; callers apply their ``invert_current``), °C,
%, Ah, kWh. Everything raised derives from :class:`PylontechCanError` (a ``ValueError``).

Field layouts are :class:`~bmslink.protocols.fields.Field` tables at the doc's byte offsets; the
bytes are little-endian, so this module reads them with its own :func:`_read` (``fields.py``
decodes big-endian only) and uses ``Field`` for scaling, rounding and ranges.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final, Literal

from bmslink.protocols.fields import Field

__all__ = [
    "ALARM_PAIR_EVENTS",
    "CAN_BITRATE",
    "FRAME_IDS",
    "ID_ALARM_PAIRS",
    "ID_BATTERY_INFO",
    "ID_CELL_EXTREMES",
    "ID_ENERGY",
    "ID_HEARTBEAT",
    "ID_INSTALLED_CAPACITY",
    "ID_INVERTER_INFO",
    "ID_LIMITS",
    "ID_MANUFACTURER",
    "ID_MEASUREMENTS",
    "ID_MODULE_COUNTS",
    "ID_PROTECTION",
    "ID_REQUEST_FLAGS",
    "ID_SOC_SOH",
    "PROFILES",
    "AlarmPairs",
    "BatteryInfoFrame",
    "BmsValues",
    "CellExtremes",
    "DecodedFrame",
    "EncodeError",
    "EnergyTotals",
    "FrameLengthError",
    "InstalledCapacity",
    "InverterHeartbeat",
    "InverterInfo",
    "Limits",
    "Manufacturer",
    "Measurements",
    "ModuleCounts",
    "ProtectionAlarms",
    "PylontechCanError",
    "RawFrame",
    "RequestFlags",
    "SocSoh",
    "Text",
    "build_frame_set",
    "decode_frame",
    "encode_alarm_pairs",
    "encode_battery_info",
    "encode_cell_extremes",
    "encode_heartbeat",
    "encode_installed_capacity",
    "encode_limits",
    "encode_manufacturer",
    "encode_measurements",
    "encode_module_counts",
    "encode_protection",
    "encode_request_flags",
    "encode_soc_soh",
    "protection_bits",
    "sent_limits",
]

# ---------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------


class PylontechCanError(ValueError):
    """Base class of every error this codec raises (a ``ValueError``)."""


class FrameLengthError(PylontechCanError):
    """The frame is shorter than the mandatory bytes of its identifier, or longer than 8."""


class EncodeError(PylontechCanError):
    """A value cannot be encoded (not finite, or a string that is not 8-bit ASCII)."""


# ---------------------------------------------------------------------------------------------
# Identifiers and constants
# ---------------------------------------------------------------------------------------------

CAN_BITRATE: Final = 500_000
"""Bit rate of every LV CAN BMS link, bit/s (doc §2)."""

ID_HEARTBEAT: Final = 0x305
ID_INVERTER_INFO: Final = 0x307
ID_LIMITS: Final = 0x351
ID_SOC_SOH: Final = 0x355
ID_MEASUREMENTS: Final = 0x356
ID_PROTECTION: Final = 0x359
ID_ALARM_PAIRS: Final = 0x35A
ID_REQUEST_FLAGS: Final = 0x35C
ID_MANUFACTURER: Final = 0x35E
ID_BATTERY_INFO: Final = 0x35F
ID_MODULE_COUNTS: Final = 0x372
ID_CELL_EXTREMES: Final = 0x373
ID_ENERGY: Final = 0x378
ID_INSTALLED_CAPACITY: Final = 0x379

_TEXT_IDS: Final[dict[int, str]] = {
    0x374: "min_cell_voltage_id",
    0x375: "max_cell_voltage_id",
    0x376: "min_temperature_id",
    0x377: "max_temperature_id",
    0x380: "serial_number_1",
    0x381: "serial_number_2",
    0x382: "product_name",
}

FRAME_IDS: Final[frozenset[int]] = frozenset(
    {
        ID_HEARTBEAT,
        ID_INVERTER_INFO,
        ID_LIMITS,
        ID_SOC_SOH,
        ID_MEASUREMENTS,
        ID_PROTECTION,
        ID_ALARM_PAIRS,
        ID_REQUEST_FLAGS,
        ID_MANUFACTURER,
        ID_BATTERY_INFO,
        ID_MODULE_COUNTS,
        ID_CELL_EXTREMES,
        ID_ENERGY,
        ID_INSTALLED_CAPACITY,
        *_TEXT_IDS,
    }
)
"""Identifiers with a layout in this codec (others decode to :class:`RawFrame`)."""

_DLC: Final = 8
_KELVIN: Final = 273.15
VICTRON_0X307: Final = bytes.fromhex("1234567856494300")
"""0x307 payload a Victron GX sends ("VIC", doc §2, §3.7)."""

# ---------------------------------------------------------------------------------------------
# Little-endian field access
# ---------------------------------------------------------------------------------------------


def _read(f: Field, data: bytes) -> float | int | None:
    """Value of ``f`` in ``data`` (little-endian), or None when the frame is too short."""
    if len(data) < f.end:
        return None
    return f.to_value(int.from_bytes(data[f.offset : f.end], "little", signed=f.signed))


def _req(f: Field, data: bytes, can_id: int) -> float | int:
    value = _read(f, data)
    if value is None:
        raise FrameLengthError(
            f"0x{can_id:03X}: field {f.name!r} needs bytes {f.offset}..{f.end - 1}, "
            f"DLC is {len(data)}"
        )
    return value


Rounding = Literal["nearest", "down", "up"]
"""How a value becomes a raw count: ``nearest`` (measurements), ``down`` (the largest count
whose value is ≤ the input: CVL, CCL, DCL) or ``up`` (the smallest count whose value is ≥ the
input: DVL). Doc §7 "Rounding": limits are rounded toward safe."""


def _to_raw(f: Field, value: float, rounding: Rounding) -> int:
    raw = f.to_raw(value)
    # to_raw rounds to nearest; one step corrects it, judged on the decoded value itself so
    # float noise (0.29 * 100 = 28.999…) neither loses a count nor goes one over.
    if rounding == "down" and f.to_value(raw) > value:
        raw -= 1
    elif rounding == "up" and f.to_value(raw) < value:
        raw += 1
    return raw


def _write(buf: bytearray, f: Field, value: float, rounding: Rounding = "nearest") -> None:
    """Encode ``value`` into ``buf`` (rounded as asked, clamped to the field range,
    little-endian)."""
    if not math.isfinite(value):
        raise EncodeError(f"field {f.name!r}: value {value!r} is not finite")
    lo, hi = f.raw_range()
    raw = min(hi, max(lo, _to_raw(f, value, rounding)))
    buf[f.offset : f.end] = raw.to_bytes(f.size, "little", signed=f.signed)


def _optional_nonzero(f: Field, data: bytes) -> float | int | None:
    """A field that vendors leave at 0 (or 0xFFFF, SMA's "invalid", doc §4) when unused."""
    if len(data) < f.end:
        return None
    raw = int.from_bytes(data[f.offset : f.end], "little", signed=f.signed)
    lo, hi = f.raw_range()
    if raw == 0 or (not f.signed and raw == hi) or (f.signed and raw == lo):
        return None
    return f.to_value(raw)


def _ascii(data: bytes) -> str:
    """ASCII text with NUL and space padding stripped (doc §7 "0x35E padding")."""
    return data.decode("latin-1").strip("\x00 ")


# ---------------------------------------------------------------------------------------------
# Field tables (doc §3)
# ---------------------------------------------------------------------------------------------

LIMITS_FIELDS: Final = (
    Field("charge_voltage_limit", 0, 2, False, 0.1, "V", "CVL"),
    Field("charge_current_limit", 2, 2, True, 0.1, "A", "CCL, positive number"),
    Field("discharge_current_limit", 4, 2, True, 0.1, "A", "DCL, positive number"),
    Field("discharge_voltage_limit", 6, 2, False, 0.1, "V", "DVL (blank in V1.2, §7)"),
)
SOC_FIELDS: Final = (
    Field("soc", 0, 2, False, 1.0, "%", "state of charge"),
    Field("soh", 2, 2, False, 1.0, "%", "state of health"),
    Field("soc_hires", 4, 2, False, 0.01, "%", "high-resolution SoC (SMA, MG)"),
)
MEASUREMENT_FIELDS: Final = (
    Field("voltage", 0, 2, True, 0.01, "V", "battery voltage (0.1 V on Sol-Ark V1.3, §7)"),
    Field("current", 2, 2, True, 0.1, "A", "battery current, sign as sent (§7)"),
    Field("temperature", 4, 2, True, 0.1, "°C", "average cell temperature"),
    Field("cycles", 6, 2, False, 1.0, "", "cycle count (Sofar extension)"),
)
MEASUREMENT_VOLTAGE_DECI: Final = Field("voltage", 0, 2, True, 0.1, "V", "Sol-Ark/Hybrid 0.1 V")
MODULE_COUNT_FIELDS: Final = (
    Field("online", 0, 2, False, 1.0, "", "modules online"),
    Field("blocking_charge", 2, 2, False, 1.0, "", "modules blocking charge"),
    Field("blocking_discharge", 4, 2, False, 1.0, "", "modules blocking discharge"),
    Field("offline", 6, 2, False, 1.0, "", "modules offline"),
)
CELL_EXTREME_FIELDS: Final = (
    Field("cell_min", 0, 2, False, 0.001, "V", "min cell voltage, mV"),
    Field("cell_max", 2, 2, False, 0.001, "V", "max cell voltage, mV"),
    Field("temperature_min", 4, 2, False, 1.0, "K", "min cell temperature, integer K"),
    Field("temperature_max", 6, 2, False, 1.0, "K", "max cell temperature, integer K"),
)
ENERGY_FIELDS: Final = (
    Field("charged", 0, 4, False, 0.1, "kWh", "charged energy (0.1 kWh per BYD; MG: 0.01)"),
    Field("discharged", 4, 4, False, 0.1, "kWh", "discharged energy"),
)
INSTALLED_CAPACITY_FIELD: Final = Field("installed_capacity", 0, 2, False, 1.0, "Ah", "")
BATTERY_INFO_FIELDS: Final = (
    Field("product", 0, 2, False, 1.0, "", "SMA battery type / Victron product id"),
    Field("capacity", 4, 2, False, 1.0, "Ah", "capacity (SMA) / available capacity (Victron)"),
    Field("hardware", 6, 2, False, 1.0, "", "SMA manufacturer id / Victron hardware version"),
)
_HEARTBEAT_SMA_FIELDS: Final = (
    Field("voltage", 0, 2, False, 0.1, "V", "SMA 0x305 voltage"),
    Field("current", 2, 2, True, 0.1, "A", "SMA 0x305 current, NEGATIVE while charging"),
    Field("temperature", 4, 2, True, 0.1, "°C", "SMA 0x305 temperature"),
    Field("soc", 6, 2, True, 0.1, "%", "SMA 0x305 SoC"),
)

# ---------------------------------------------------------------------------------------------
# 0x359 bit tables (doc §3.4) and 0x35A pairs (doc §3.8), mapped to bmslink.alarms codes
# ---------------------------------------------------------------------------------------------

#: (byte, bit) of 0x359 -> alarm code; bytes 0/1 = protection (-> ``alarms``), bytes 2/3 = alarm
#: (-> ``warnings``). Spec bit positions (doc §7: not Battery-Emulator's 0x0C, not YamBMS's).
PROTECTION_BITS: Final[dict[tuple[int, int], str]] = {
    (0, 7): "discharge_overcurrent",
    (0, 4): "cell_undertemperature",
    (0, 3): "cell_overtemperature",
    (0, 2): "cell_undervoltage",
    (0, 1): "cell_overvoltage",
    (1, 3): "bms_fault",  # "system error"
    (1, 0): "charge_overcurrent",
    (2, 7): "discharge_overcurrent",
    (2, 4): "cell_undertemperature",
    (2, 3): "cell_overtemperature",
    (2, 2): "cell_undervoltage",
    (2, 1): "cell_overvoltage",
    (3, 3): "internal_communication_error",
    (3, 0): "charge_overcurrent",
}

#: Events of 0x35A in pair order (pair k = bits 2k%8.. of byte k//4; doc §3.8), with the bmslink
#: alarm code each maps to. Bytes 0–3 are alarms, bytes 4–7 the same events as warnings.
ALARM_PAIR_EVENTS: Final[tuple[tuple[str, str | None], ...]] = (
    ("general", "other"),
    ("battery_high_voltage", "pack_overvoltage"),
    ("battery_low_voltage", "pack_undervoltage"),
    ("high_temperature", "cell_overtemperature"),
    ("low_temperature", "cell_undertemperature"),
    ("high_temperature_charge", "charge_overtemperature"),
    ("low_temperature_charge", "charge_undertemperature"),
    ("high_discharge_current", "discharge_overcurrent"),
    ("high_charge_current", "charge_overcurrent"),
    ("contactor", "other"),
    ("short_circuit", "short_circuit"),
    ("bms_internal", "bms_fault"),
    ("cell_imbalance", "cell_imbalance"),
    ("reserved_13", None),
    ("reserved_14", None),
    ("reserved_15", None),
)
_SUPPORTED_PAIRS: Final = 13  # events 0..12 are defined; 13..15 reserved


def _unique(codes: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(codes))


def protection_bits(codes: Iterable[str], *, warning: bool) -> tuple[int, int]:
    """0x359 bytes for ``codes`` (bmslink alarm codes, an ``@member`` suffix is ignored).

    ``warning`` False gives the protection bytes 0/1, True the alarm bytes 2/3 (doc §3.4).
    Codes without a bit are not represented (they stay in the state's ``alarms``).
    """
    wanted = {c.split("@", 1)[0] for c in codes}
    base = 2 if warning else 0
    out = [0, 0]
    for (byte, bit), code in PROTECTION_BITS.items():
        if base <= byte < base + 2 and code in wanted:
            out[byte - base] |= 1 << bit
    return out[0], out[1]


# ---------------------------------------------------------------------------------------------
# Decoded frames
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Limits:
    """0x351 (doc §3.1): CVL and DVL in V, CCL and DCL in A (positive magnitudes).

    ``discharge_voltage_limit`` is None when the frame has no bytes 6–7 or they are 0 (doc §7:
    decode DVL when DLC ≥ 8 and non-zero).
    """

    charge_voltage_limit: float
    charge_current_limit: float
    discharge_current_limit: float
    discharge_voltage_limit: float | None = None


@dataclass(frozen=True, slots=True)
class SocSoh:
    """0x355 (doc §3.2): ``soc`` and ``soh`` in % (1 % steps); ``soc_hires`` in % (0.01 %
    steps, SMA/MG bytes 4–5) or None when absent or blank."""

    soc: int
    soh: int | None = None
    soc_hires: float | None = None


@dataclass(frozen=True, slots=True)
class Measurements:
    """0x356 (doc §3.3): ``voltage`` V, ``current`` A with the sign *as sent* (most sources:
    + = charging; vendors differ, §7), ``temperature`` °C (average cell), ``cycles`` (Sofar
    extension in bytes 6–7, None when absent or 0)."""

    voltage: float
    current: float | None = None
    temperature: float | None = None
    cycles: int | None = None


@dataclass(frozen=True, slots=True)
class ProtectionAlarms:
    """0x359 (doc §3.4): the four raw bit-table bytes, module count and the "PN" marker.

    ``protection``: bytes 0–1 (active protections, mapped to ``alarms``); ``alarm``: bytes 2–3
    (pre-alarms, mapped to ``warnings``). ``module_count`` is None when DLC < 5.
    """

    protection1: int
    protection2: int = 0
    alarm1: int = 0
    alarm2: int = 0
    module_count: int | None = None
    marker: str = ""

    @property
    def alarms(self) -> tuple[str, ...]:
        """bmslink alarm codes of the protection bytes 0–1."""
        return self._codes(0)

    @property
    def warnings(self) -> tuple[str, ...]:
        """bmslink alarm codes of the alarm bytes 2–3."""
        return self._codes(2)

    def _codes(self, base: int) -> tuple[str, ...]:
        raw = (self.protection1, self.protection2, self.alarm1, self.alarm2)
        return _unique(
            code
            for (byte, bit), code in PROTECTION_BITS.items()
            if base <= byte < base + 2 and raw[byte] >> bit & 1
        )


@dataclass(frozen=True, slots=True)
class AlarmPairs:
    """0x35A (doc §3.8): per event a 2-bit pair, ``01`` raised, ``10`` cleared, ``00`` not
    supported/OK. An event is active iff its even bit is set and its odd bit clear (doc §7).

    ``raw`` is the 8 data bytes (zero-padded if the frame was shorter).
    """

    raw: bytes

    def _active(self, offset: int) -> tuple[str, ...]:
        names = []
        for k, (name, _code) in enumerate(ALARM_PAIR_EVENTS):
            byte = self.raw[offset + k // 4]
            pair = byte >> (2 * (k % 4)) & 0b11
            if pair == 0b01:
                names.append(name)
        return tuple(names)

    @property
    def active_alarms(self) -> tuple[str, ...]:
        """Event names raised in bytes 0–3."""
        return self._active(0)

    @property
    def active_warnings(self) -> tuple[str, ...]:
        """Event names raised in bytes 4–7."""
        return self._active(4)

    @property
    def alarms(self) -> tuple[str, ...]:
        """bmslink codes of the raised alarms."""
        return _unique(_pair_code(n) for n in self.active_alarms if _pair_code(n))

    @property
    def warnings(self) -> tuple[str, ...]:
        """bmslink codes of the raised warnings."""
        return _unique(_pair_code(n) for n in self.active_warnings if _pair_code(n))


def _pair_code(name: str) -> str:
    for event, code in ALARM_PAIR_EVENTS:
        if event == name:
            return code or ""
    return ""


@dataclass(frozen=True, slots=True)
class RequestFlags:
    """0x35C byte 0 (doc §3.5): enables (bits 7/6), force charge I/II (bits 5/4, Pylontech
    naming; Sol-Ark swaps the names) and request full charge (bit 3); ``raw`` is byte 0."""

    charge_enable: bool
    discharge_enable: bool
    force_charge_1: bool = False
    force_charge_2: bool = False
    request_full_charge: bool = False
    raw: int = 0


@dataclass(frozen=True, slots=True)
class Manufacturer:
    """0x35E (doc §3.6): the name with NUL/space padding stripped (e.g. ``PYLON``)."""

    name: str


@dataclass(frozen=True, slots=True)
class BatteryInfoFrame:
    """0x35F (doc §3.9), vendor-dependent: ``product`` (SMA battery type / Victron product id,
    u16; shown as ASCII in ``product_text`` when printable, e.g. "LI"), ``version`` (bytes 2, 3:
    major, minor, each a binary byte read in decimal, None if DLC < 4), ``capacity`` Ah (bytes
    4–5; None if absent or 0), ``hardware`` (bytes 6–7, None if absent). Layout of new US5000
    firmware unconfirmed.

    The version bytes are binary, not BCD: the BYD frame ``4C 69 01 17 69 00 00 00`` is firmware
    **1.23** (0x17 = 23), not 1.17 as the reference (doc §3.9) says. The reference took "1.17"
    from github:dfch/BydCanProtocol's first README, which read the hex digits ``01 17`` as the
    version; the same README later names the battery "B019 / v1.23" for the same frame. Victron,
    who decode this frame in Venus OS, state it outright for another BYD frame (github:
    victronenergy/venus issue #229, 2017: ``35F 4C 69 04 0F 32 00 11 17`` is the value 0x040F
    "=> v4.0F in Victron notation, but BYD expects v4.15"; the GX shows v4.15). diyBMS's
    Victron emulator (github:stuartpittaway/diyBMSv4ESP32, ``victron_message_35f``) also puts
    plain binary numbers (compile year and week) in these two bytes.
    """

    product: int
    product_text: str
    version: tuple[int, int] | None = None
    capacity: int | None = None
    hardware: int | None = None


@dataclass(frozen=True, slots=True)
class ModuleCounts:
    """0x372 (doc §3.9): modules online, blocking charge, blocking discharge, offline
    (a field the frame is too short for is None)."""

    online: int
    blocking_charge: int | None = None
    blocking_discharge: int | None = None
    offline: int | None = None


@dataclass(frozen=True, slots=True)
class CellExtremes:
    """0x373 (doc §3.9): ``cell_min``/``cell_max`` V (sent in mV), ``temperature_min``/
    ``temperature_max`` °C (sent as integer K; converted with 273.15)."""

    cell_min: float
    cell_max: float
    temperature_min: float | None = None
    temperature_max: float | None = None


@dataclass(frozen=True, slots=True)
class EnergyTotals:
    """0x378 (doc §3.9): ``charged``/``discharged`` in kWh at 0.1 kWh per count (BYD; the MG
    guide says 0.01 kWh, so ``charged_raw``/``discharged_raw`` keep the counts)."""

    charged: float
    discharged: float | None
    charged_raw: int
    discharged_raw: int | None


@dataclass(frozen=True, slots=True)
class InstalledCapacity:
    """0x379 (doc §3.9): installed capacity, Ah."""

    capacity: int


@dataclass(frozen=True, slots=True)
class Text:
    """0x374–0x377, 0x380–0x382 (doc §3.9): ``field`` names the meaning (e.g.
    ``min_cell_voltage_id``, ``product_name``), ``text`` the NUL/space-stripped ASCII."""

    field: str
    text: str


@dataclass(frozen=True, slots=True)
class InverterHeartbeat:
    """0x305 from the inverter (doc §3.7): Pylontech inverters send 8 × 0x00 (``keepalive``
    True); SMA Sunny Island sends its own view, decoded into ``voltage`` V, ``current`` A
    (**negative while charging**, as SMA sends it), ``temperature`` °C and ``soc`` % when the
    frame is not all zeros and DLC is 8. ``extended`` when the id was 29-bit (Schneider)."""

    data: bytes
    keepalive: bool
    voltage: float | None = None
    current: float | None = None
    temperature: float | None = None
    soc: float | None = None
    extended: bool = False


@dataclass(frozen=True, slots=True)
class InverterInfo:
    """0x307 from the inverter (doc §2, §3.7): ``victron`` when it is Victron's constant
    ``12 34 56 78 56 49 43 00`` ("VIC"); SMA uses it for relay states (raw ``data``)."""

    data: bytes
    victron: bool


@dataclass(frozen=True, slots=True)
class RawFrame:
    """A frame without a layout here (0x35B, 0x360, 0x370/0x371, unknown ids): id and bytes."""

    can_id: int
    data: bytes


DecodedFrame = (
    Limits
    | SocSoh
    | Measurements
    | ProtectionAlarms
    | AlarmPairs
    | RequestFlags
    | Manufacturer
    | BatteryInfoFrame
    | ModuleCounts
    | CellExtremes
    | EnergyTotals
    | InstalledCapacity
    | Text
    | InverterHeartbeat
    | InverterInfo
    | RawFrame
)

# ---------------------------------------------------------------------------------------------
# Decoding
# ---------------------------------------------------------------------------------------------


def _min_len(can_id: int, data: bytes, n: int) -> None:
    if len(data) < n:
        raise FrameLengthError(f"0x{can_id:03X} needs at least {n} data bytes, DLC is {len(data)}")


def decode_frame(
    can_id: int,
    data: bytes | bytearray,
    *,
    extended: bool = False,
    voltage_scale: float = 0.01,
) -> DecodedFrame:
    """Decode one frame by identifier (see the module table). Pure.

    Args:
        can_id: the arbitration id (11-bit; a 29-bit id equal to 0x305 is accepted as the
            heartbeat when ``extended``, doc §3.7 Schneider).
        data: the data bytes (DLC 0..8); any DLC covering a field's bytes is accepted (§4).
        extended: the frame used a 29-bit id. Only 0x305 is decoded then; other extended ids
            are :class:`RawFrame`.
        voltage_scale: 0x356 voltage resolution in V (0.01 per spec, 0.1 for Sol-Ark V1.3).

    Raises:
        FrameLengthError: more than 8 bytes, or fewer than the mandatory bytes of the id
            (0x351: 6, 0x355: 2, 0x356: 2, 0x359: 4, 0x35C: 1, 0x35F: 2, 0x372: 2, 0x373: 4,
            0x378: 4, 0x379: 2).
    """
    data = bytes(data)
    if len(data) > _DLC:
        raise FrameLengthError(f"0x{can_id:03X}: {len(data)} data bytes, classic CAN allows 8")
    if extended:
        if can_id == ID_HEARTBEAT:
            return _decode_heartbeat(data, extended=True)
        return RawFrame(can_id, data)
    if can_id == ID_LIMITS:
        _min_len(can_id, data, 6)
        cvl, ccl, dcl, dvl = LIMITS_FIELDS
        return Limits(
            charge_voltage_limit=float(_req(cvl, data, can_id)),
            charge_current_limit=float(_req(ccl, data, can_id)),
            discharge_current_limit=float(_req(dcl, data, can_id)),
            discharge_voltage_limit=_f(_optional_nonzero(dvl, data)),
        )
    if can_id == ID_SOC_SOH:
        _min_len(can_id, data, 2)
        soc, soh, hires = SOC_FIELDS
        soh_value = _read(soh, data)
        return SocSoh(
            soc=int(_req(soc, data, can_id)),
            soh=None if soh_value is None else int(soh_value),
            soc_hires=_f(_optional_nonzero(hires, data)),
        )
    if can_id == ID_MEASUREMENTS:
        _min_len(can_id, data, 2)
        volt, cur, temp, cyc = MEASUREMENT_FIELDS
        if voltage_scale != volt.scale:
            volt = (
                MEASUREMENT_VOLTAGE_DECI
                if voltage_scale == 0.1
                else Field("voltage", 0, 2, True, voltage_scale, "V")
            )
        cycles = _optional_nonzero(cyc, data)
        return Measurements(
            voltage=float(_req(volt, data, can_id)),
            current=_f(_read(cur, data)),
            temperature=_f(_read(temp, data)),
            cycles=None if cycles is None else int(cycles),
        )
    if can_id == ID_PROTECTION:
        _min_len(can_id, data, 4)
        return ProtectionAlarms(
            protection1=data[0],
            protection2=data[1],
            alarm1=data[2],
            alarm2=data[3],
            module_count=data[4] if len(data) > 4 else None,
            marker=_ascii(data[5:7]),
        )
    if can_id == ID_ALARM_PAIRS:
        return AlarmPairs(raw=data.ljust(_DLC, b"\x00"))
    if can_id == ID_REQUEST_FLAGS:
        _min_len(can_id, data, 1)
        b = data[0]
        return RequestFlags(
            charge_enable=bool(b & 0x80),
            discharge_enable=bool(b & 0x40),
            force_charge_1=bool(b & 0x20),
            force_charge_2=bool(b & 0x10),
            request_full_charge=bool(b & 0x08),
            raw=b,
        )
    if can_id == ID_MANUFACTURER:
        return Manufacturer(_ascii(data))
    if can_id == ID_BATTERY_INFO:
        _min_len(can_id, data, 2)
        product, capacity, hardware = BATTERY_INFO_FIELDS
        text = data[:2]
        capacity_value = _optional_nonzero(capacity, data)
        hardware_value = _read(hardware, data)
        return BatteryInfoFrame(
            product=int(_req(product, data, can_id)),
            product_text=_ascii(text) if all(0x20 <= c < 0x7F for c in text) else "",
            version=(data[2], data[3]) if len(data) >= 4 else None,
            capacity=None if capacity_value is None else int(capacity_value),
            hardware=None if hardware_value is None else int(hardware_value),
        )
    if can_id == ID_MODULE_COUNTS:
        _min_len(can_id, data, 2)
        on, bc, bd, off = (_read(f, data) for f in MODULE_COUNT_FIELDS)
        assert on is not None
        return ModuleCounts(int(on), _i(bc), _i(bd), _i(off))
    if can_id == ID_CELL_EXTREMES:
        _min_len(can_id, data, 4)
        cmin, cmax, tmin, tmax = (_read(f, data) for f in CELL_EXTREME_FIELDS)
        assert cmin is not None and cmax is not None
        return CellExtremes(
            cell_min=float(cmin),
            cell_max=float(cmax),
            temperature_min=None if tmin is None else round(tmin - _KELVIN, 2),
            temperature_max=None if tmax is None else round(tmax - _KELVIN, 2),
        )
    if can_id == ID_ENERGY:
        _min_len(can_id, data, 4)
        charged_f, discharged_f = ENERGY_FIELDS
        c_raw = int.from_bytes(data[0:4], "little")
        d_raw = int.from_bytes(data[4:8], "little") if len(data) >= 8 else None
        return EnergyTotals(
            charged=float(charged_f.to_value(c_raw)),
            discharged=None if d_raw is None else float(discharged_f.to_value(d_raw)),
            charged_raw=c_raw,
            discharged_raw=d_raw,
        )
    if can_id == ID_INSTALLED_CAPACITY:
        _min_len(can_id, data, 2)
        return InstalledCapacity(int(_req(INSTALLED_CAPACITY_FIELD, data, can_id)))
    if can_id in _TEXT_IDS:
        return Text(_TEXT_IDS[can_id], _ascii(data))
    if can_id == ID_HEARTBEAT:
        return _decode_heartbeat(data, extended=False)
    if can_id == ID_INVERTER_INFO:
        return InverterInfo(data, data == VICTRON_0X307)
    return RawFrame(can_id, data)


def _decode_heartbeat(data: bytes, *, extended: bool) -> InverterHeartbeat:
    if not any(data) or len(data) < _DLC:
        return InverterHeartbeat(data, keepalive=not any(data), extended=extended)
    v, i, t, s = (_read(f, data) for f in _HEARTBEAT_SMA_FIELDS)
    return InverterHeartbeat(data, False, _f(v), _f(i), _f(t), _f(s), extended)


def _f(value: float | int | None) -> float | None:
    return None if value is None else float(value)


def _i(value: float | int | None) -> int | None:
    return None if value is None else int(value)


# ---------------------------------------------------------------------------------------------
# Encoding (always DLC 8, zero-padded, doc §4 / §7.1)
# ---------------------------------------------------------------------------------------------


def _frame(fields: Sequence[tuple[Field, float]]) -> bytes:
    buf = bytearray(_DLC)
    for f, value in fields:
        _write(buf, f, value)
    return bytes(buf)


def encode_limits(
    charge_voltage_limit: float,
    charge_current_limit: float,
    discharge_current_limit: float,
    discharge_voltage_limit: float = 0.0,
) -> bytes:
    """0x351 data (doc §3.1): CVL V, CCL A, DCL A, DVL V (always sent, §7), 0.1 V / 0.1 A.

    Rounded toward safe (doc §7 "Rounding"): CVL, CCL and DCL down, DVL up, so the inverter
    never reads a wider window than given (56.29 V → 56.2 V; 99.99 A → 99.9 A; 46.01 V →
    46.1 V); then clamped to the field range. Limits are magnitudes: negatives clamp to 0.
    Raises :class:`EncodeError` for a non-finite value."""
    cvl, ccl, dcl, dvl = LIMITS_FIELDS
    buf = bytearray(_DLC)
    _write(buf, cvl, charge_voltage_limit, "down")
    _write(buf, ccl, max(0.0, charge_current_limit), "down")
    _write(buf, dcl, max(0.0, discharge_current_limit), "down")
    _write(buf, dvl, discharge_voltage_limit, "up")
    return bytes(buf)


def sent_limits(
    charge_voltage_limit: float,
    charge_current_limit: float,
    discharge_current_limit: float,
    discharge_voltage_limit: float = 0.0,
) -> Limits:
    """The 0x351 values an inverter reads for these limits (after :func:`encode_limits`'
    rounding and clamping); DVL 0 reads as None. Raises :class:`EncodeError` like it."""
    frame = decode_frame(
        ID_LIMITS,
        encode_limits(
            charge_voltage_limit,
            charge_current_limit,
            discharge_current_limit,
            discharge_voltage_limit,
        ),
    )
    assert isinstance(frame, Limits)
    return frame


def encode_soc_soh(soc: float, soh: float, soc_hires: float | None = None) -> bytes:
    """0x355 data (doc §3.2): SoC and SoH in % (rounded to 1 %, clamped 0..100); bytes 4–5 the
    high-resolution SoC (0.01 %) when ``soc_hires`` is given, else 0 (Pylontech blank)."""
    soc_f, soh_f, hires_f = SOC_FIELDS
    items: list[tuple[Field, float]] = [
        (soc_f, min(100.0, max(0.0, soc))),
        (soh_f, min(100.0, max(0.0, soh))),
    ]
    if soc_hires is not None:
        items.append((hires_f, min(100.0, max(0.0, soc_hires))))
    return _frame(items)


def encode_measurements(
    voltage: float,
    current: float,
    temperature: float,
    *,
    voltage_scale: float = 0.01,
    cycles: int | None = None,
) -> bytes:
    """0x356 data (doc §3.3): voltage V (0.01 V, or 0.1 V with ``voltage_scale=0.1`` for
    Sol-Ark), current A (sign as given; bmslink sends + = charging unless an output inverts
    it), temperature °C; bytes 6–7 the cycle count when given (Sofar extension)."""
    volt, cur, temp, cyc = MEASUREMENT_FIELDS
    if voltage_scale == 0.1:
        volt = MEASUREMENT_VOLTAGE_DECI
    items: list[tuple[Field, float]] = [(volt, voltage), (cur, current), (temp, temperature)]
    if cycles is not None:
        items.append((cyc, cycles))
    return _frame(items)


def encode_protection(
    alarms: Iterable[str] = (),
    warnings: Iterable[str] = (),
    module_count: int = 1,
    *,
    extra: tuple[int, int, int, int] = (0, 0, 0, 0),
) -> bytes:
    """0x359 data (doc §3.4): protection bytes from ``alarms``, alarm bytes from ``warnings``
    (bmslink codes, :data:`PROTECTION_BITS`), OR-ed with ``extra`` raw bytes; byte 4 the module
    count (clamped 0..255), bytes 5–6 "PN", byte 7 = 0 (Sol-Ark requires it)."""
    p1, p2 = protection_bits(alarms, warning=False)
    a1, a2 = protection_bits(warnings, warning=True)
    count = min(255, max(0, int(module_count)))
    return bytes((p1 | extra[0], p2 | extra[1], a1 | extra[2], a2 | extra[3], count, 0x50, 0x4E, 0))


def encode_request_flags(
    charge_enable: bool,
    discharge_enable: bool,
    *,
    force_charge_1: bool = False,
    force_charge_2: bool = False,
    request_full_charge: bool = False,
) -> bytes:
    """0x35C data (doc §3.5): byte 0 bits 7..3, byte 1 reserved, DLC 8 zero-padded."""
    b = (
        (0x80 if charge_enable else 0)
        | (0x40 if discharge_enable else 0)
        | (0x20 if force_charge_1 else 0)
        | (0x10 if force_charge_2 else 0)
        | (0x08 if request_full_charge else 0)
    )
    return bytes((b, 0, 0, 0, 0, 0, 0, 0))


def encode_manufacturer(name: str = "PYLON") -> bytes:
    """0x35E data (doc §3.6, §7): the name space-padded to 8 bytes ("PYLON" + 3 spaces).

    Raises :class:`EncodeError` for a name longer than 8 characters or not ASCII."""
    try:
        raw = name.encode("ascii")
    except UnicodeEncodeError as exc:
        raise EncodeError(f"manufacturer {name!r} is not ASCII") from exc
    if len(raw) > _DLC:
        raise EncodeError(f"manufacturer {name!r} is longer than 8 characters")
    return raw.ljust(_DLC, b" ")


def encode_alarm_pairs(alarms: Iterable[str] = (), warnings: Iterable[str] = ()) -> bytes:
    """0x35A data (doc §3.8, §7): for each of the 13 defined events ``01`` when one of the codes
    maps to it, ``10`` (supported, inactive) otherwise; reserved pairs ``00``. Codes are
    bmslink alarm codes (``@member`` ignored); ``other`` raises the general event."""

    def half(codes: Iterable[str]) -> bytes:
        wanted = {c.split("@", 1)[0] for c in codes}
        out = bytearray(4)
        for k, (_name, code) in enumerate(ALARM_PAIR_EVENTS[:_SUPPORTED_PAIRS]):
            # "contactor" shares the code "other" with "general" when decoding; only the general
            # event is raised for "other" when encoding.
            raised = code is not None and code in wanted and _name != "contactor"
            pair = 0b01 if raised else 0b10
            out[k // 4] |= pair << (2 * (k % 4))
        return bytes(out)

    return half(alarms) + half(warnings)


def encode_battery_info(
    capacity: float, *, product: bytes = b"LI", version: tuple[int, int] = (1, 0)
) -> bytes:
    """0x35F data (doc §3.9, SMA/Victron layout): product (2 ASCII bytes), version (major,
    minor), capacity Ah (u16, rounded and clamped), bytes 6–7 zero."""
    if len(product) != 2:
        raise EncodeError(f"product must be 2 bytes, got {product!r}")
    buf = bytearray(product + bytes((version[0] & 0xFF, version[1] & 0xFF)) + bytes(4))
    _write(buf, BATTERY_INFO_FIELDS[1], capacity)
    return bytes(buf)


def encode_module_counts(
    online: int, blocking_charge: int = 0, blocking_discharge: int = 0, offline: int = 0
) -> bytes:
    """0x372 data (doc §3.9): four u16 module counts."""
    return _frame(
        tuple(
            zip(
                MODULE_COUNT_FIELDS,
                (online, blocking_charge, blocking_discharge, offline),
                strict=True,
            )
        )
    )


def encode_cell_extremes(
    cell_min: float, cell_max: float, temperature_min: float, temperature_max: float
) -> bytes:
    """0x373 data (doc §3.9): cell voltages V (sent in mV), temperatures °C (sent as integer K,
    rounded)."""
    f = CELL_EXTREME_FIELDS
    return _frame(
        (
            (f[0], cell_min),
            (f[1], cell_max),
            (f[2], temperature_min + _KELVIN),
            (f[3], temperature_max + _KELVIN),
        )
    )


def encode_installed_capacity(capacity: float) -> bytes:
    """0x379 data (doc §3.9): installed capacity in Ah (u16, rounded and clamped), DLC 8."""
    return _frame(((INSTALLED_CAPACITY_FIELD, capacity),))


def encode_heartbeat() -> bytes:
    """0x305 data of a Pylontech-protocol inverter: 8 × 0x00 (doc §3.7)."""
    return bytes(_DLC)


# ---------------------------------------------------------------------------------------------
# Whole frame sets (emulator and simulator)
# ---------------------------------------------------------------------------------------------

Profile = Literal["pylontech", "pylon_v2", "sma"]
"""Frame-set flavours (doc §3.9 "Which IDs each protocol flavour sends", §7.1):

- ``pylontech``: 0x351, 0x355, 0x356, 0x359, 0x35C, 0x35E (Pylontech V1.2, with DVL);
- ``pylon_v2``: the above + 0x35A, 0x372, 0x373 (when cell extremes are known), 0x379 (when
  the capacity is known);
- ``sma``: 0x351, 0x355 (with high-resolution SoC), 0x356, 0x35A, 0x35E, 0x35F (SMA/Victron
  style, no 0x359/0x35C).
"""

PROFILES: Final[tuple[str, ...]] = ("pylontech", "pylon_v2", "sma")

#: Codes without a bit of their own that the encoders show as one that has (fail-safe: the
#: communication alarm of 0x359 byte 3 bit 3 and the "system error" of byte 1 bit 3).
ENCODE_ALIASES: Final[dict[str, str]] = {
    "communication_lost": "internal_communication_error",
    "failsafe": "bms_fault",
}


def _with_aliases(codes: Iterable[str]) -> list[str]:
    out = []
    for code in codes:
        base = code.split("@", 1)[0]
        out.append(base)
        if base in ENCODE_ALIASES:
            out.append(ENCODE_ALIASES[base])
    return out


@dataclass(frozen=True, slots=True)
class BmsValues:
    """Everything one frame set carries, in schema units (one snapshot: the 0x351 limits and the
    0x35C enables of one set always agree, doc §7.1).

    Voltages V, currents A (``current`` + = charging as it goes on the wire), temperatures °C,
    SoC/SoH %, ``capacity`` Ah (None = unknown). ``alarms``/``warnings`` are bmslink codes.
    ``module_count`` goes to 0x359 byte 4 and 0x372; ``modules_offline`` to 0x372.
    """

    charge_voltage_limit: float
    discharge_voltage_limit: float
    charge_current_limit: float
    discharge_current_limit: float
    soc: float
    soh: float
    voltage: float
    current: float
    temperature: float
    charge_enable: bool
    discharge_enable: bool
    alarms: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    module_count: int = 1
    modules_offline: int = 0
    manufacturer: str = "PYLON"
    force_charge_1: bool = False
    force_charge_2: bool = False
    request_full_charge: bool = False
    cell_min: float | None = None
    cell_max: float | None = None
    temperature_min: float | None = None
    temperature_max: float | None = None
    capacity: float | None = None


def build_frame_set(
    values: BmsValues, profile: Profile = "pylontech", *, voltage_scale: float = 0.01
) -> list[tuple[int, bytes]]:
    """The ``(id, data)`` frames of one cycle for ``profile``, every frame DLC 8, in send order.

    Raises:
        EncodeError: a non-finite value, or a manufacturer name that is not ≤ 8 ASCII chars.
    """
    v = values
    alarms = _with_aliases(v.alarms)
    warnings = _with_aliases(v.warnings)
    frames: list[tuple[int, bytes]] = [
        (
            ID_LIMITS,
            encode_limits(
                v.charge_voltage_limit,
                v.charge_current_limit,
                v.discharge_current_limit,
                v.discharge_voltage_limit,
            ),
        ),
        (ID_SOC_SOH, encode_soc_soh(v.soc, v.soh, v.soc if profile == "sma" else None)),
        (
            ID_MEASUREMENTS,
            encode_measurements(v.voltage, v.current, v.temperature, voltage_scale=voltage_scale),
        ),
    ]
    if profile in ("pylontech", "pylon_v2"):
        frames.append((ID_PROTECTION, encode_protection(alarms, warnings, v.module_count)))
        frames.append(
            (
                ID_REQUEST_FLAGS,
                encode_request_flags(
                    v.charge_enable,
                    v.discharge_enable,
                    force_charge_1=v.force_charge_1,
                    force_charge_2=v.force_charge_2,
                    request_full_charge=v.request_full_charge,
                ),
            )
        )
    frames.append((ID_MANUFACTURER, encode_manufacturer(v.manufacturer)))
    if profile in ("pylon_v2", "sma"):
        frames.append((ID_ALARM_PAIRS, encode_alarm_pairs(alarms, warnings)))
    if profile == "sma":
        frames.append((ID_BATTERY_INFO, encode_battery_info(v.capacity or 0.0)))
    if profile == "pylon_v2":
        frames.append(
            (
                ID_MODULE_COUNTS,
                encode_module_counts(
                    v.module_count,
                    0 if v.charge_enable else v.module_count,
                    0 if v.discharge_enable else v.module_count,
                    v.modules_offline,
                ),
            )
        )
        if None not in (v.cell_min, v.cell_max, v.temperature_min, v.temperature_max):
            assert v.cell_min is not None and v.cell_max is not None
            assert v.temperature_min is not None and v.temperature_max is not None
            frames.append(
                (
                    ID_CELL_EXTREMES,
                    encode_cell_extremes(
                        v.cell_min, v.cell_max, v.temperature_min, v.temperature_max
                    ),
                )
            )
        if v.capacity is not None:
            frames.append((ID_INSTALLED_CAPACITY, encode_installed_capacity(v.capacity)))
    return frames
