"""PACE BMS Modbus RTU register map (PACE "Modbus Protocol for RS485" V1.3): pure codec, no I/O.

The Hubble Lithium AM2 (13S NMC) is a PACE BMS; other PACE packs (up to 16S) share the map.
Reference: ``shared/protocols/pace-modbus-am2.md`` (sections "§n" below). Frames are Modbus RTU
(:mod:`bmslink.protocols.modbus_rtu`); this module decodes the **registers**:

* :data:`REGISTER_MAP` — every documented register 0–179 in document order (§6): type, scale,
  unit; decoded with :func:`bmslink.protocols.fields.decode_fields`;
* :func:`decode_block` — any run of registers of the map to ``{name: value}`` (engineering
  units: A, V, Ah, °C, %, s); :func:`encode_block` is its inverse (simulator);
* :func:`decode_live` — the live block 0..36 into :class:`LiveData`; :func:`decode_alarms` maps the
  warning/protection/status bitfields (§6.2-6.4) to the stable codes of :mod:`bmslink.alarms`;
  :func:`balancing_cells` the balance bitfield (§6.5);
* :func:`decode_settings` — the settings 60..114 (§6.6) into :class:`Settings` with the limits
  that map onto the schema (CVL/DVL/CCL/DCL);
* :func:`decode_identity` — the version/serial strings 150..179 (§6.7): two ASCII characters per
  register, high byte first, cut at the first 0x00/0xFF, trailing spaces stripped.

Conventions: current is **positive when charging** (§6.1, reg 0 is s16 with that sign);
temperatures are **signed** (s16, 0.1 °C: raw 0xFFCE = −5.0 °C, §6.1); ``u8`` registers carry
their value in the low byte and must have a zero high byte (otherwise the value is reported as
invalid, §6.1 "Decoding rules"). Errors derive from :class:`PaceError` (a ``ValueError``);
frame-level errors are those of :mod:`bmslink.protocols.modbus_rtu` (re-exported here).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final, Literal

from bmslink.protocols import modbus_rtu as rtu
from bmslink.protocols.fields import Field, decode_fields, encode_fields
from bmslink.protocols.modbus_rtu import CrcError, ExceptionReplyError, FrameError, ModbusError

__all__ = [
    "LIVE_BLOCK",
    "MAP_END",
    "REGISTER_MAP",
    "SETTINGS_BLOCK",
    "STRINGS_BLOCK",
    "Block",
    "CrcError",
    "ExceptionReplyError",
    "FrameError",
    "Identity",
    "LiveData",
    "ModbusError",
    "PaceError",
    "Register",
    "RegisterRangeError",
    "Settings",
    "balancing_cells",
    "decode_alarms",
    "decode_ascii",
    "decode_block",
    "decode_identity",
    "decode_live",
    "decode_settings",
    "encode_ascii",
    "encode_block",
    "parse_version",
    "register_by_name",
]


class PaceError(ValueError):
    """Base class of the register-level errors of this codec (a ``ValueError``)."""


class RegisterRangeError(PaceError):
    """The registers given do not cover what is decoded (e.g. :func:`decode_live` needs 0..36),
    or a start/count outside the map (0..179)."""


Kind = Literal["u16", "s16", "u8", "bits", "ascii"]


@dataclass(frozen=True, slots=True)
class Register:
    """One register (or one string of registers) of the PACE V1.3 map (§6).

    Attributes:
        reg: register number (decimal, as in the PACE document).
        name: key in decoded dicts (snake_case).
        kind: ``u16``/``s16`` integer, ``u8`` (value in the low byte, high byte 0x00),
            ``bits`` (u16 bitfield), ``ascii`` (``length`` registers, 2 characters each).
        scale: raw count → ``unit`` (e.g. 0.01 for 10 mA → A).
        unit: engineering unit of the decoded value.
        description: the PACE meaning, with notes.
        length: number of registers (1, or 10 for strings).
        writable: in the read/write settings or serial blocks (FC 0x10 only, §4.2).
    """

    reg: int
    name: str
    kind: Kind
    scale: float = 1.0
    unit: str = ""
    description: str = ""
    length: int = 1
    writable: bool = False

    @property
    def end(self) -> int:
        """The first register after this entry."""
        return self.reg + self.length

    def field(self, start: int = 0) -> Field:
        """This register as a :class:`~bmslink.protocols.fields.Field` in a block of registers
        that begins at register ``start`` (offsets in bytes). Not for ``ascii`` entries."""
        if self.kind == "ascii":
            raise PaceError(f"{self.name} is a string, not a field")
        offset = 2 * (self.reg - start)
        if self.kind == "u8":
            return Field(self.name, offset + 1, 1, False, self.scale, self.unit, self.description)
        return Field(
            self.name, offset, 2, self.kind == "s16", self.scale, self.unit, self.description
        )


def _r(reg: int, name: str, kind: Kind, scale: float, unit: str, text: str) -> Register:
    return Register(reg, name, kind, scale, unit, text, writable=60 <= reg <= 114)


# fmt: off
_LIVE: Final[tuple[Register, ...]] = (
    _r(0, "current", "s16", 0.01, "A", "current, + = charging, − = discharging (10 mA)"),
    _r(1, "voltage", "u16", 0.01, "V", "pack voltage (10 mV)"),
    _r(2, "soc", "u8", 1, "%", "state of charge 0..100"),
    _r(3, "soh", "u8", 1, "%", "state of health 0..100"),
    _r(4, "remaining_capacity", "u16", 0.01, "Ah", "remaining capacity (10 mAh)"),
    _r(5, "full_capacity", "u16", 0.01, "Ah", "full-charge capacity (10 mAh)"),
    _r(6, "design_capacity", "u16", 0.01, "Ah", "design capacity (10 mAh)"),
    _r(7, "cycles", "u16", 1, "", "cycle count"),
    _r(9, "warning_flags", "bits", 1, "", "warning flags (§6.2)"),
    _r(10, "protection_flags", "bits", 1, "", "protection flags (§6.3)"),
    _r(11, "status_flags", "bits", 1, "", "status / fault flags (§6.4)"),
    _r(12, "balance_flags", "bits", 1, "", "balance status: bit n = cell n+1 (§6.5)"),
    *(
        _r(15 + i, f"cell_voltage_{i + 1}", "u16", 0.001, "V", f"cell {i + 1} voltage (mV)")
        for i in range(16)
    ),
    *(
        _r(31 + i, f"cell_temperature_{i + 1}", "s16", 0.1, "°C", f"cell temperature {i + 1}")
        for i in range(4)
    ),
    _r(35, "mosfet_temperature", "s16", 0.1, "°C", "MOSFET temperature (or invalid)"),
    _r(36, "ambient_temperature", "s16", 0.1, "°C", "environment temperature (or invalid)"),
)

_SETTINGS: Final[tuple[Register, ...]] = (
    _r(60, "pack_ov_alarm", "u16", 0.001, "V", "pack over-voltage alarm (mV)"),
    _r(61, "pack_ov_protect", "u16", 0.001, "V", "pack over-voltage protection (mV)"),
    _r(62, "pack_ov_release", "u16", 0.001, "V", "pack over-voltage release (mV)"),
    _r(63, "pack_ov_delay", "u8", 0.1, "s", "pack over-voltage protection delay, 1..255"),
    _r(64, "cell_ov_alarm", "u16", 0.001, "V", "cell over-voltage alarm (mV)"),
    _r(65, "cell_ov_protect", "u16", 0.001, "V", "cell over-voltage protection (mV)"),
    _r(66, "cell_ov_release", "u16", 0.001, "V", "cell over-voltage release (mV)"),
    _r(67, "cell_ov_delay", "u8", 0.1, "s", "cell over-voltage protection delay, 1..255"),
    _r(68, "pack_uv_alarm", "u16", 0.001, "V", "pack under-voltage alarm (mV)"),
    _r(69, "pack_uv_protect", "u16", 0.001, "V", "pack under-voltage protection (mV)"),
    _r(70, "pack_uv_release", "u16", 0.001, "V", "pack under-voltage release (mV)"),
    _r(71, "pack_uv_delay", "u8", 0.1, "s", "pack under-voltage protection delay, 1..255"),
    _r(72, "cell_uv_alarm", "u16", 0.001, "V", "cell under-voltage alarm (mV)"),
    _r(73, "cell_uv_protect", "u16", 0.001, "V", "cell under-voltage protection (mV)"),
    _r(74, "cell_uv_release", "u16", 0.001, "V", "cell under-voltage release (mV)"),
    _r(75, "cell_uv_delay", "u8", 0.1, "s", "cell under-voltage protection delay, 1..255"),
    _r(76, "charge_oc_alarm", "u16", 1, "A", "charging over-current alarm"),
    _r(77, "charge_oc_protect", "u16", 1, "A", "charging over-current protection"),
    _r(78, "charge_oc_delay", "u8", 0.1, "s", "charging over-current protection delay"),
    _r(79, "discharge_oc_alarm", "u16", 1, "A", "discharging over-current alarm"),
    _r(80, "discharge_oc_protect", "u16", 1, "A", "discharging over-current protection"),
    _r(81, "discharge_oc_delay", "u8", 0.1, "s", "discharging over-current protection delay"),
    _r(82, "discharge_oc2_protect", "u16", 1, "A", "discharging over-current 2 protection"),
    _r(83, "discharge_oc2_delay", "u8", 0.025, "s", "discharging OC-2 delay (25 ms units)"),
    _r(84, "charge_ot_alarm", "s16", 0.1, "°C", "charging over-temperature alarm"),
    _r(85, "charge_ot_protect", "s16", 0.1, "°C", "charging over-temperature protection"),
    _r(86, "charge_ot_release", "s16", 0.1, "°C", "charging over-temperature release"),
    _r(87, "discharge_ot_alarm", "s16", 0.1, "°C", "discharging over-temperature alarm"),
    _r(88, "discharge_ot_protect", "s16", 0.1, "°C", "discharging over-temperature protection"),
    _r(89, "discharge_ot_release", "s16", 0.1, "°C", "discharging over-temperature release"),
    _r(90, "charge_ut_alarm", "s16", 0.1, "°C", "charging under-temperature alarm"),
    _r(91, "charge_ut_protect", "s16", 0.1, "°C", "charging under-temperature protection"),
    _r(92, "charge_ut_release", "s16", 0.1, "°C", "charging under-temperature release"),
    _r(93, "discharge_ut_alarm", "s16", 0.1, "°C", "discharging under-temperature alarm"),
    _r(94, "discharge_ut_protect", "s16", 0.1, "°C", "discharging under-temperature protection"),
    _r(95, "discharge_ut_release", "s16", 0.1, "°C", "discharging under-temperature release"),
    _r(96, "mosfet_ot_alarm", "s16", 0.1, "°C", "MOSFET over-temperature alarm"),
    _r(97, "mosfet_ot_protect", "s16", 0.1, "°C", "MOSFET over-temperature protection"),
    _r(98, "mosfet_ot_release", "s16", 0.1, "°C", "MOSFET over-temperature release"),
    _r(99, "env_ot_alarm", "s16", 0.1, "°C", "environment over-temperature alarm"),
    _r(100, "env_ot_protect", "s16", 0.1, "°C", "environment over-temperature protection"),
    _r(101, "env_ot_release", "s16", 0.1, "°C", "environment over-temperature release"),
    _r(102, "env_ut_alarm", "s16", 0.1, "°C", "environment under-temperature alarm"),
    _r(103, "env_ut_protect", "s16", 0.1, "°C", "environment under-temperature protection"),
    _r(104, "env_ut_release", "s16", 0.1, "°C", "environment under-temperature release"),
    _r(105, "balance_start_voltage", "u16", 0.001, "V", "balance start cell voltage (mV)"),
    _r(106, "balance_start_delta", "u16", 0.001, "V", "balance start delta voltage (mV)"),
    _r(107, "pack_full_charge_voltage", "u16", 0.001, "V", "pack full-charge voltage (V1.2)"),
    _r(108, "pack_full_charge_current", "u16", 0.001, "A", "pack full-charge current (mA, V1.2)"),
    _r(109, "cell_sleep_voltage", "u16", 0.001, "V", "cell sleep voltage (mV, V1.2)"),
    _r(110, "cell_sleep_delay", "u16", 1, "min", "cell sleep delay time (V1.2)"),
    _r(111, "short_circuit_delay", "u8", 25, "µs", "short-circuit protection delay (V1.2)"),
    _r(112, "soc_alarm_threshold", "u8", 1, "%", "SOC alarm threshold 0..100 (V1.2)"),
    _r(113, "charge_oc2_protect", "u16", 1, "A", "charging over-current 2 protection (V1.3)"),
    _r(114, "charge_oc2_delay", "u8", 0.025, "s", "charging OC-2 delay, 25 ms units (V1.3)"),
)
# fmt: on

_STRINGS: Final[tuple[Register, ...]] = (
    Register(150, "version", "ascii", description="version information (20 chars)", length=10),
    Register(
        160,
        "bms_serial",
        "ascii",
        description="model serial number (BMS)",
        length=10,
        writable=True,
    ),
    Register(
        170,
        "pack_serial",
        "ascii",
        description="pack serial number (V1.3)",
        length=10,
        writable=True,
    ),
)

REGISTER_MAP: Final[tuple[Register, ...]] = _LIVE + _SETTINGS + _STRINGS
"""Every documented register of PACE V1.3, in document order (§6.1, §6.6, §6.7). Reserved
registers (8, 13–14, 37–59, 115–149) are absent; they read as whatever the BMS returns."""

MAP_END: Final = 180
"""Registers 0..179 make up the map (180, read by the AM2 library, is undocumented, §6.8)."""

_BY_NAME: Final[dict[str, Register]] = {r.name: r for r in REGISTER_MAP}


def register_by_name(name: str) -> Register:
    """The map entry called ``name``; raises ``KeyError``."""
    return _BY_NAME[name]


@dataclass(frozen=True, slots=True)
class Block:
    """A block read by the reader (§7): ``start`` register and ``count`` registers."""

    name: str
    start: int
    count: int

    @property
    def end(self) -> int:
        """The first register after the block."""
        return self.start + self.count


LIVE_BLOCK: Final = Block("live", 0, 37)
"""Registers 0..36, read every cycle: request ``01 03 00 00 00 25 84 11`` (§7)."""
SETTINGS_BLOCK: Final = Block("settings", 60, 55)
"""Registers 60..114, read at start-up and then slowly: ``01 03 00 3c 00 37 c4 10`` (§7)."""
STRINGS_BLOCK: Final = Block("strings", 150, 30)
"""Registers 150..179, read once per connection: ``01 03 00 96 00 1e 25 ee`` (§7)."""


# ---------------------------------------------------------------------------------------------
# Generic block decoding
# ---------------------------------------------------------------------------------------------


def _check_block(start: int, count: int) -> None:
    if start < 0 or count < 1 or start + count > 0x10000:
        raise RegisterRangeError(f"bad register range: start {start}, count {count}")


@functools.lru_cache(maxsize=64)
def _plan(start: int, count: int) -> tuple[tuple[Field, ...], tuple[Register, ...]]:
    """The fields (shifted to ``start``) and the string entries that lie within the block."""
    end = start + count
    fields = tuple(
        r.field(start)
        for r in REGISTER_MAP
        if r.kind != "ascii" and start <= r.reg and r.end <= end
    )
    strings = tuple(r for r in REGISTER_MAP if r.kind == "ascii" and r.reg < end and r.end > start)
    return fields, strings


def decode_ascii(registers: Sequence[int]) -> str:
    """Two ASCII characters per register, high byte first (§6.7).

    The text is cut at the first 0x00 or 0xFF (padding, [SYSP #93/#98]), trailing spaces are
    stripped, and any other byte outside printable ASCII (0x20..0x7E) becomes U+FFFD so that a
    corrupt string is visible rather than silently altered. ``[0x5031, 0x3353]`` → ``"P13S"``.
    """
    raw = rtu.registers_to_bytes(registers)
    for pad in (0x00, 0xFF):
        cut = raw.find(pad)
        if cut >= 0:
            raw = raw[:cut]
    text = "".join(chr(b) if 0x20 <= b <= 0x7E else "\ufffd" for b in raw)
    return text.rstrip(" ")


def encode_ascii(text: str, length: int = 10, pad: int = 0x00) -> list[int]:
    """``text`` as ``length`` registers (2 characters each, high byte first), padded with
    ``pad`` (0x00, 0x20 or 0xFF). Inverse of :func:`decode_ascii` for printable text.

    Raises:
        PaceError: non-ASCII text or text longer than ``2 × length`` characters.
    """
    try:
        raw = text.encode("ascii")
    except UnicodeEncodeError as exc:
        raise PaceError(f"string {text!r} is not ASCII") from exc
    if len(raw) > 2 * length:
        raise PaceError(f"string {text!r} is longer than {2 * length} characters")
    raw = raw + bytes([pad]) * (2 * length - len(raw))
    return list(rtu.registers_from_bytes(raw))


Value = float | int | str | None


def decode_block(start: int, registers: Sequence[int]) -> dict[str, Value]:
    """Decode every map entry lying inside the block ``start .. start+len(registers)-1``.

    Returns ``{name: value}`` in map order, in engineering units (see :data:`REGISTER_MAP`):
    numeric entries as ``int`` (unscaled) or ``float``; a ``u8`` whose high byte is not 0 as
    ``None`` (invalid, §6.1); strings as ``str`` (a string only partly inside the block is
    decoded from the part present). Reserved registers are skipped.

    Raises:
        RegisterRangeError: an empty block or one running past register 65535.
        ModbusError: a register value that is not a u16.
    """
    count = len(registers)
    _check_block(start, count)
    fields, strings = _plan(start, count)
    data = rtu.registers_to_bytes(registers)
    values: dict[str, Value] = dict(decode_fields(fields, data, error=PaceError))
    for f in fields:
        if f.size == 1 and data[f.offset - 1] != 0:
            values[f.name] = None
    for s in strings:
        lo = max(s.reg, start) - start
        hi = min(s.end, start + count) - start
        values[s.name] = decode_ascii(registers[lo:hi])
    order = {r.name: i for i, r in enumerate(REGISTER_MAP)}
    return dict(sorted(values.items(), key=lambda kv: order[kv[0]]))


def encode_block(start: int, count: int, values: Mapping[str, Value]) -> list[int]:
    """Registers ``start .. start+count-1`` holding ``values`` (inverse of :func:`decode_block`).

    Entries of the map inside the block that ``values`` lacks (or sets to None) encode as 0;
    reserved registers are 0; strings are padded with 0x00.

    Raises:
        RegisterRangeError: bad range.
        PaceError: a value out of its register's range, or a bad string.
    """
    _check_block(start, count)
    fields, strings = _plan(start, count)
    numeric: dict[str, float | int] = {}
    for f in fields:
        v = values.get(f.name)
        if isinstance(v, str):
            raise PaceError(f"{f.name}: expected a number, got {v!r}")
        numeric[f.name] = 0 if v is None else v
    data = bytearray(encode_fields(fields, numeric, size=2 * count, error=PaceError))
    registers = list(rtu.registers_from_bytes(bytes(data)))
    for s in strings:
        text = values.get(s.name) or ""
        if not isinstance(text, str):
            raise PaceError(f"{s.name}: expected a string, got {text!r}")
        encoded = encode_ascii(text, s.length)
        for i, value in enumerate(encoded):
            reg = s.reg + i
            if start <= reg < start + count:
                registers[reg - start] = value
    return registers


def _slice(start: int, registers: Sequence[int], block: Block) -> Sequence[int]:
    if start > block.start or start + len(registers) < block.end:
        raise RegisterRangeError(
            f"{block.name} block needs registers {block.start}..{block.end - 1}, got "
            f"{start}..{start + len(registers) - 1}"
        )
    return registers[block.start - start : block.end - start]


# ---------------------------------------------------------------------------------------------
# Bitfields → alarm codes (§6.2-6.5)
# ---------------------------------------------------------------------------------------------

WARNING_BITS: Final[dict[int, str]] = {
    0: "cell_overvoltage",
    1: "cell_undervoltage",
    2: "pack_overvoltage",
    3: "pack_undervoltage",
    4: "charge_overcurrent",
    5: "discharge_overcurrent",
    8: "charge_overtemperature",
    9: "discharge_overtemperature",
    10: "charge_undertemperature",
    11: "discharge_undertemperature",
    12: "ambient_overtemperature",
    13: "ambient_undertemperature",
    14: "mosfet_overtemperature",
    15: "soc_low",
}
"""Register 9 (warning flags, §6.2) → warning code. Bits 6-7 are reserved (→ ``other``)."""

PROTECTION_BITS: Final[dict[int, str]] = {
    0: "cell_overvoltage",
    1: "cell_undervoltage",
    2: "pack_overvoltage",
    3: "pack_undervoltage",
    4: "charge_overcurrent",
    5: "discharge_overcurrent",
    6: "short_circuit",
    7: "charger_overvoltage",
    8: "charge_overtemperature",
    9: "discharge_overtemperature",
    10: "charge_undertemperature",
    11: "discharge_undertemperature",
    12: "mosfet_overtemperature",
    13: "ambient_overtemperature",
    14: "ambient_undertemperature",
}
"""Register 10 (protection flags, §6.3) → alarm code. Bit 15 is reserved in the PDF and
observed as "Battery Full" [SYSP #56]: it is reported as the *warning* ``battery_full`` (a
normal end of charge, not a fault)."""

PROTECTION_BATTERY_FULL_BIT: Final = 15

FAULT_BITS: Final[dict[int, str]] = {
    0: "charge_mosfet_fault",
    1: "discharge_mosfet_fault",
    2: "temperature_sensor_fault",
    4: "cell_fault",
    5: "voltage_sensor_fault",
    14: "charger_reversed",
}
"""Register 11 (status/fault flags, §6.4) bits that are faults → alarm code. Bit 5 (front-end
sampling communication fault) means the cell voltages cannot be sampled: ``voltage_sensor_fault``.
"""

STATUS_CHARGING: Final = 8
STATUS_DISCHARGING: Final = 9
STATUS_CHARGE_MOSFET: Final = 10
STATUS_DISCHARGE_MOSFET: Final = 11
STATUS_CURRENT_LIMITER: Final = 12
STATUS_HEATER: Final = 15


def _bits(value: int) -> list[int]:
    return [b for b in range(16) if value >> b & 1]


def decode_alarms(
    warning_flags: int, protection_flags: int, status_flags: int
) -> tuple[list[str], list[str]]:
    """Map registers 9, 10 and 11 to ``(alarms, warnings)``: lists of codes of
    :mod:`bmslink.alarms`, in bit order, without duplicates.

    * alarms: protection bits 0-14 (§6.3) and the fault bits of register 11 (§6.4);
    * warnings: warning bits (§6.2; reserved bits 6-7 → ``other``) and protection bit 15
      (``battery_full``, undocumented by PACE, see :data:`PROTECTION_BITS`).
    """
    alarms: list[str] = []
    warnings: list[str] = []
    for bit in _bits(protection_flags):
        if bit == PROTECTION_BATTERY_FULL_BIT:
            warnings.append("battery_full")
        else:
            alarms.append(PROTECTION_BITS[bit])
    for bit in _bits(status_flags):
        code = FAULT_BITS.get(bit)
        if code is not None:
            alarms.append(code)
    for bit in _bits(warning_flags):
        warnings.append(WARNING_BITS.get(bit, "other"))
    return list(dict.fromkeys(alarms)), list(dict.fromkeys(warnings))


def balancing_cells(balance_flags: int, cell_count: int = 16) -> list[int]:
    """Cells being balanced, numbered from 1: bit n of register 12 = cell n+1 (§6.5). Bits of
    cells beyond ``cell_count`` are ignored."""
    return [b + 1 for b in _bits(balance_flags) if b < cell_count]


# ---------------------------------------------------------------------------------------------
# Typed views of the three blocks
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LiveData:
    """The live block, registers 0..36 (§6.1), in schema units.

    Attributes:
        current: A, **+ = charging**, − = discharging.
        voltage: pack voltage, V (reg 1, 10 mV; not the sum of the cells).
        soc, soh: %, or None when the register's high byte is not 0 (invalid u8).
        remaining_capacity, full_capacity, design_capacity: Ah.
        cycles: cycle count.
        warning_flags, protection_flags, status_flags, balance_flags: raw u16 bitfields
            (registers 9-12).
        cell_voltages: V, all 16 registers (cells a pack lacks read 0; the cell count is
            configuration, §10.5).
        cell_temperatures: °C, the 4 cell sensors (s16).
        mosfet_temperature, ambient_temperature: °C (s16; "or invalid" per PACE).
    """

    current: float
    voltage: float
    soc: int | None
    soh: int | None
    remaining_capacity: float
    full_capacity: float
    design_capacity: float
    cycles: int
    warning_flags: int
    protection_flags: int
    status_flags: int
    balance_flags: int
    cell_voltages: tuple[float, ...]
    cell_temperatures: tuple[float, ...]
    mosfet_temperature: float
    ambient_temperature: float

    @property
    def charging(self) -> bool:
        """Status bit 8: the BMS reports charging."""
        return bool(self.status_flags >> STATUS_CHARGING & 1)

    @property
    def discharging(self) -> bool:
        """Status bit 9: the BMS reports discharging."""
        return bool(self.status_flags >> STATUS_DISCHARGING & 1)

    @property
    def charge_mosfet(self) -> bool:
        """Status bit 10: charge MOSFET on."""
        return bool(self.status_flags >> STATUS_CHARGE_MOSFET & 1)

    @property
    def discharge_mosfet(self) -> bool:
        """Status bit 11: discharge MOSFET on."""
        return bool(self.status_flags >> STATUS_DISCHARGE_MOSFET & 1)

    def cells(self, cell_count: int) -> list[float]:
        """The first ``cell_count`` cell voltages (V)."""
        return list(self.cell_voltages[:cell_count])

    def alarms(self) -> tuple[list[str], list[str]]:
        """``(alarms, warnings)`` from the bitfields (:func:`decode_alarms`)."""
        return decode_alarms(self.warning_flags, self.protection_flags, self.status_flags)


def _num(values: Mapping[str, Value], name: str) -> float:
    v = values[name]
    assert isinstance(v, int | float)
    return float(v)


def _int(values: Mapping[str, Value], name: str) -> int:
    v = values[name]
    assert isinstance(v, int)
    return v


def _opt_int(values: Mapping[str, Value], name: str) -> int | None:
    v = values[name]
    return v if isinstance(v, int) else None


def decode_live(registers: Sequence[int], start: int = 0) -> LiveData:
    """Decode the live block from ``registers`` read from register ``start`` (must cover 0..36).

    Raises:
        RegisterRangeError: the registers do not cover 0..36.
    """
    block = _slice(start, registers, LIVE_BLOCK)
    v = decode_block(0, block)
    return LiveData(
        current=_num(v, "current"),
        voltage=_num(v, "voltage"),
        soc=_opt_int(v, "soc"),
        soh=_opt_int(v, "soh"),
        remaining_capacity=_num(v, "remaining_capacity"),
        full_capacity=_num(v, "full_capacity"),
        design_capacity=_num(v, "design_capacity"),
        cycles=_int(v, "cycles"),
        warning_flags=_int(v, "warning_flags"),
        protection_flags=_int(v, "protection_flags"),
        status_flags=_int(v, "status_flags"),
        balance_flags=_int(v, "balance_flags"),
        cell_voltages=tuple(_num(v, f"cell_voltage_{i}") for i in range(1, 17)),
        cell_temperatures=tuple(_num(v, f"cell_temperature_{i}") for i in range(1, 5)),
        mosfet_temperature=_num(v, "mosfet_temperature"),
        ambient_temperature=_num(v, "ambient_temperature"),
    )


@dataclass(frozen=True, slots=True)
class Settings:
    """The settings block (§6.6) as ``values`` (``{name: value}`` in V, A, °C, s, %; None for a
    u8 with a non-zero high byte; absent for registers the firmware did not return, e.g. 113-114
    on V1.2 firmware), with the schema limits derived from them.

    A threshold of 0 is treated as "not set" (None).
    """

    values: Mapping[str, float | int | None] = field(default_factory=dict)

    def _get(self, name: str) -> float | None:
        v = self.values.get(name)
        return float(v) if v else None

    @property
    def charge_voltage_limit(self) -> float | None:
        """CVL, V: the pack full-charge voltage (reg 107, V1.2+), else the pack over-voltage
        alarm (reg 60)."""
        return self._get("pack_full_charge_voltage") or self._get("pack_ov_alarm")

    @property
    def discharge_voltage_limit(self) -> float | None:
        """DVL, V: the pack under-voltage alarm (reg 68)."""
        return self._get("pack_uv_alarm")

    @property
    def charge_current_limit(self) -> float | None:
        """CCL, A: the charging over-current alarm (reg 76)."""
        return self._get("charge_oc_alarm")

    @property
    def discharge_current_limit(self) -> float | None:
        """DCL, A: the discharging over-current alarm (reg 79)."""
        return self._get("discharge_oc_alarm")

    @property
    def cell_overvoltage(self) -> float | None:
        """Cell over-voltage alarm, V (reg 64)."""
        return self._get("cell_ov_alarm")

    @property
    def cell_undervoltage(self) -> float | None:
        """Cell under-voltage alarm, V (reg 72)."""
        return self._get("cell_uv_alarm")


def decode_settings(registers: Sequence[int], start: int = SETTINGS_BLOCK.start) -> Settings:
    """Decode the settings registers (60..114, or a shorter run from 60 on older firmware).

    Raises:
        RegisterRangeError: ``start`` is not 60 or the run is empty.
    """
    if start != SETTINGS_BLOCK.start or not registers:
        raise RegisterRangeError(f"settings start at register 60, got {start}")
    values = decode_block(start, registers[: SETTINGS_BLOCK.count])
    numbers = {k: v for k, v in values.items() if not isinstance(v, str)}
    return Settings(numbers)


@dataclass(frozen=True, slots=True)
class Identity:
    """The strings of registers 150..179 (§6.7); empty strings for absent ones."""

    version: str = ""
    bms_serial: str = ""
    pack_serial: str = ""


def decode_identity(registers: Sequence[int], start: int = STRINGS_BLOCK.start) -> Identity:
    """Decode version / BMS serial / pack serial from registers read from ``start`` (150); a
    shorter run (older firmware without 170..179) leaves the missing strings empty.

    Raises:
        RegisterRangeError: ``start`` is not 150 or the run is empty.
    """
    if start != STRINGS_BLOCK.start or not registers:
        raise RegisterRangeError(f"strings start at register 150, got {start}")
    values = decode_block(start, registers[: STRINGS_BLOCK.count])
    return Identity(
        version=str(values.get("version") or ""),
        bms_serial=str(values.get("bms_serial") or ""),
        pack_serial=str(values.get("pack_serial") or ""),
    )


_VERSION = re.compile(r"^P(\d{1,2})S(\d{1,4})A")


def parse_version(version: str) -> tuple[int, int] | None:
    """``(cells, amps)`` from a PACE version string ``P<cells>S<amps>A-...`` (§1), e.g.
    ``"P13S120A-12290-2.05T"`` → ``(13, 120)``; None when it does not follow that pattern."""
    m = _VERSION.match(version)
    return (int(m.group(1)), int(m.group(2))) if m else None
