"""Pylontech LV CAN codec: every real frame of the vectors, round trips, golden frame sets.

Reference: /work/shared/protocols/pylontech-can.md (section numbers below are that doc's).
Vectors: /work/shared/vectors/pylontech_can.json (see tests/vectors.py).
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bmslink.protocols import pylontech_can as pc

try:
    from tests.vectors import load_vectors
except ImportError:  # pragma: no cover
    from vectors import load_vectors  # type: ignore[import-not-found,no-redef]

VECTORS: list[dict[str, Any]] = load_vectors("pylontech_can")["vectors"]

# Keys of source_values that describe rather than state a value.
DESCRIPTIVE = {
    "raw_ascii_repr",
    "note",
    "notes",
    "interpretation",
    "sender",
    "meaning",
    "meaning_per_source",
    "per_source_text",
    "hw_version_maybe",
    "undecoded_by_source",
    "unknown_always_null",
}


def _check(can_id: int, data: bytes, key: str, want: Any, got: pc.DecodedFrame) -> None:
    """Assert one stated value of a vector against the decoded frame."""
    approx = pytest.approx
    if key in DESCRIPTIVE:
        return
    if isinstance(got, pc.Limits):
        names = {
            "charge_voltage_limit_V": got.charge_voltage_limit,
            "charge_current_limit_A": got.charge_current_limit,
            "discharge_current_limit_A": got.discharge_current_limit,
            "discharge_voltage_limit_V": got.discharge_voltage_limit,
        }
        if key in names:
            assert names[key] == approx(want)
        elif key in ("raw", "scaled"):
            values = want if key == "raw" else list(want.values())
            scale = 10 if key == "raw" else 1
            decoded = [
                got.charge_voltage_limit,
                got.charge_current_limit,
                got.discharge_current_limit,
                got.discharge_voltage_limit,
            ]
            for value, dec in zip(values, decoded, strict=False):
                assert dec is not None and dec * scale == approx(value)
        elif key.endswith("_raw"):
            field = {
                "charge_voltage_raw": got.charge_voltage_limit,
                "charge_current_raw": got.charge_current_limit,
                "discharge_current_raw": got.discharge_current_limit,
                "low_cutoff_voltage_raw": got.discharge_voltage_limit,
            }[key]
            assert field is not None and field * 10 == approx(want)
        elif key == "scaled_per_0.1":
            assert [
                got.charge_voltage_limit,
                got.charge_current_limit,
                got.discharge_current_limit,
                got.discharge_voltage_limit,
            ] == approx(list(want.values()))
        else:
            raise AssertionError(f"unhandled key {key}")
    elif isinstance(got, pc.SocSoh):
        assert {"soc_pct": got.soc, "soh_pct": got.soh}[key] == want
    elif isinstance(got, pc.Measurements):
        if key in ("raw", "scaled"):
            values = want if key == "raw" else list(want.values())
            factors = (100, 10, 10) if key == "raw" else (1, 1, 1)
            decoded = (got.voltage, got.current, got.temperature)
            for value, dec, k in zip(values, decoded, factors, strict=True):
                assert dec is not None and dec * k == approx(value)
        else:
            names = {
                "voltage_V": got.voltage,
                "current_A": got.current,
                "temperature_C": got.temperature,
            }
            assert names[key] == approx(want)
    elif isinstance(got, pc.ProtectionAlarms):
        names: dict[str, Any] = {
            "protection_byte0": got.protection1,
            "protection_byte1": got.protection2,
            "alarm_byte2": got.alarm1,
            "alarm_byte3": got.alarm2,
            "module_count": got.module_count,
            "marker": got.marker,
            "protection_flags": got.protection1 | got.protection2 << 8,
            "alarm_flags": got.alarm1 | got.alarm2 << 8,
        }
        assert names[key] == want
        assert got.alarms == () and got.warnings == ()
    elif isinstance(got, pc.RequestFlags):
        names = {
            "charge_enable": got.charge_enable,
            "discharge_enable": got.discharge_enable,
            "force_charge_I_bit5": got.force_charge_1,
            "force_charge_II_bit4": got.force_charge_2,
            "request_full_charge_bit3": got.request_full_charge,
        }
        assert names[key] is want
    elif isinstance(got, pc.Manufacturer):
        assert key in ("manufacturer", "manufacturer_ascii")
        assert got.name == want.strip("\x00 ")
    elif isinstance(got, pc.CellExtremes):
        names = {
            "min_cell_mV": round(got.cell_min * 1000),
            "max_cell_mV": round(got.cell_max * 1000),
            "min_cell_temp_K": None
            if got.temperature_min is None
            else round(got.temperature_min + 273.15),
            "max_cell_temp_K": None
            if got.temperature_max is None
            else round(got.temperature_max + 273.15),
            "min_cell_temp_C": got.temperature_min,
            "max_cell_temp_C": got.temperature_max,
        }
        assert names[key] == approx(want)
    elif isinstance(got, pc.InverterHeartbeat):
        assert key == "inverter_keepalive_all_zero"
        assert got.keepalive is want
    elif isinstance(got, pc.InverterInfo):
        assert key == "ascii_tail"
        assert got.victron and want == "VIC"
    elif isinstance(got, pc.AlarmPairs):
        assert key in ("all_alarms_warnings_ok", "all_ok") and want is True
        assert got.alarms == () and got.warnings == ()
        assert got.active_alarms == () and got.active_warnings == ()
    elif isinstance(got, pc.ModuleCounts):
        if key == "derived":
            assert (
                got.online,
                got.blocking_charge,
                got.blocking_discharge,
                got.offline,
            ) == tuple(want.values())
        else:
            assert {"batteries_online": got.online, "batteries_offline": got.offline}[key] == want
    elif isinstance(got, pc.Text):
        assert key in ("ascii", "product_ascii")
        assert got.text == want
    elif isinstance(got, pc.EnergyTotals):
        assert {
            "charged_energy_kWh": got.charged,
            "discharged_energy_kWh": got.discharged,
        }[key] == approx(want)
    elif isinstance(got, pc.InstalledCapacity):
        assert key == "installed_capacity_Ah"
        assert got.capacity == want
    elif isinstance(got, pc.BatteryInfoFrame):
        names = {
            "bytes0_1_ascii": got.product_text,
            "bytes2_3": None if got.version is None else list(got.version),
            "bytes4_5_u16": got.capacity,
            "bytes6_7": [got.hardware & 0xFF, got.hardware >> 8] if got.hardware else None,
            "capacity_available_Ah": got.capacity,
            "fw_version_per_source": None
            if got.version is None
            else f"v{got.version[0]}.{got.version[1]:02d}",
        }
        assert names[key] == want
    elif isinstance(got, pc.RawFrame):
        assert got.data == data
        if key == "events":  # 0x35B "always null"
            assert not any(got.data)
        elif key in ("nominal_capacity", "remaining_capacity"):  # Discover 0x354, no doc layout
            offset = 0 if key == "nominal_capacity" else 2
            assert int.from_bytes(data[offset : offset + 2], "little") == want
        else:
            raise AssertionError(f"unhandled key {key} for raw 0x{can_id:03X}")
    else:  # pragma: no cover
        raise AssertionError(f"unhandled frame {got!r}")


@pytest.mark.parametrize("vector", VECTORS, ids=[v["vector_id"] for v in VECTORS])
def test_every_vector_decodes_to_what_the_source_states(vector: dict[str, Any]) -> None:
    can_id = int(vector["id"], 16)
    data = bytes.fromhex(vector["data"])
    assert len(data) == vector["dlc"]
    got = pc.decode_frame(can_id, data)
    for key, want in vector["source_values"].items():
        _check(can_id, data, key, want, got)
    if isinstance(got, pc.InverterHeartbeat):  # "sent rapidly when no battery present": zeros
        assert got.keepalive is (not any(data))


def test_dvl_only_when_the_frame_has_bytes_6_7() -> None:
    # US5000 old firmware variant with DLC 6 (vector "Pylontech LV V1.x"): no DVL
    short = pc.decode_frame(0x351, bytes.fromhex("14025002C805"))
    assert isinstance(short, pc.Limits) and short.discharge_voltage_limit is None
    full = pc.decode_frame(0x351, bytes.fromhex("1402C012C012C201"))
    assert isinstance(full, pc.Limits) and full.discharge_voltage_limit == pytest.approx(45.0)


@pytest.mark.parametrize(
    ("can_id", "data"),
    [
        (0x351, "1402C012C0"),  # 5 bytes: DCL cut
        (0x355, "58"),
        (0x356, "7A"),
        (0x359, "000000"),
        (0x35C, ""),
        (0x372, "02"),
        (0x373, "D80CF1"),
        (0x379, "64"),
        (0x351, "1402C012C012C20100"),  # 9 bytes
    ],
)
def test_short_and_long_frames_raise_a_typed_error(can_id: int, data: str) -> None:
    with pytest.raises(pc.FrameLengthError) as info:
        pc.decode_frame(can_id, bytes.fromhex(data))
    assert f"0x{can_id:03X}" in str(info.value)
    assert isinstance(info.value, ValueError)


def test_0x359_bits_map_to_alarm_codes() -> None:
    frame = pc.decode_frame(0x359, bytes((0x82, 0x09, 0x10, 0x08, 3, 0x50, 0x4E, 0)))
    assert isinstance(frame, pc.ProtectionAlarms)
    assert frame.alarms == (
        "discharge_overcurrent",
        "cell_overvoltage",
        "bms_fault",
        "charge_overcurrent",
    )
    assert frame.warnings == ("cell_undertemperature", "internal_communication_error")


def test_0x35a_pairs_active_only_for_01() -> None:
    # byte 0: general 01 (raised), high voltage 10 (cleared), low voltage 11 (invalid), temp 00
    raw = bytes((0b00_11_10_01, 0, 0b01_00_00_00, 0, 0, 0b01, 0, 0))
    frame = pc.decode_frame(0x35A, raw)
    assert isinstance(frame, pc.AlarmPairs)
    assert frame.active_alarms == ("general", "bms_internal")
    assert frame.alarms == ("other", "bms_fault")
    assert frame.active_warnings == ("low_temperature",)
    assert frame.warnings == ("cell_undertemperature",)


def test_heartbeat_variants() -> None:
    sma = pc.decode_frame(0x305, bytes.fromhex("1402F6FFC800B603"))
    assert isinstance(sma, pc.InverterHeartbeat)
    assert not sma.keepalive
    assert (sma.voltage, sma.current, sma.temperature, sma.soc) == pytest.approx(
        (53.2, -1.0, 20.0, 95.0)
    )
    ext = pc.decode_frame(0x305, bytes(8), extended=True)
    assert isinstance(ext, pc.InverterHeartbeat) and ext.extended and ext.keepalive
    assert isinstance(pc.decode_frame(0x351, bytes(8), extended=True), pc.RawFrame)


def test_sol_ark_voltage_scale() -> None:
    frame = pc.decode_frame(0x356, bytes.fromhex("0A02"), voltage_scale=0.1)
    assert isinstance(frame, pc.Measurements) and frame.voltage == pytest.approx(52.2)


# --- round trips (hypothesis) --------------------------------------------------------------

volts = st.floats(0, 6553.5, allow_nan=False)
amps = st.floats(0, 3276.7, allow_nan=False)


@given(volts, amps, amps, st.floats(0.1, 6553.4))  # 0xFFFF = SMA "invalid" (doc §4)
def test_limits_round_trip(cvl: float, ccl: float, dcl: float, dvl: float) -> None:
    data = pc.encode_limits(cvl, ccl, dcl, dvl)
    assert len(data) == 8
    got = pc.decode_frame(0x351, data)
    assert isinstance(got, pc.Limits)
    # toward safe, within one 0.1 step (doc §7 "Rounding"): CVL/CCL/DCL down, DVL up
    assert cvl - 0.1 - 1e-9 < got.charge_voltage_limit <= cvl
    assert ccl - 0.1 - 1e-9 < got.charge_current_limit <= ccl
    assert dcl - 0.1 - 1e-9 < got.discharge_current_limit <= dcl
    assert got.discharge_voltage_limit is not None
    # strictly never below; at most one step above (1e-9: the float sum dvl + 0.1 itself)
    assert dvl <= got.discharge_voltage_limit < dvl + 0.1 + 1e-9


@pytest.mark.parametrize(
    ("limits", "wire"),
    [
        ((56.29, 99.99, 150.06, 46.01), (56.2, 99.9, 150.0, 46.1)),
        ((56.3, 0.29, 0.3, 46.9), (56.3, 0.2, 0.3, 46.9)),  # exact decimals keep their count
        ((0.0, 0.09, 0.0, 0.0), (0.0, 0.0, 0.0, None)),  # below one step: 0 A, not 0.1 A
    ],
)
def test_limits_are_rounded_toward_safe(
    limits: tuple[float, float, float, float], wire: tuple[float, float, float, float | None]
) -> None:
    got = pc.sent_limits(*limits)
    assert (
        got.charge_voltage_limit,
        got.charge_current_limit,
        got.discharge_current_limit,
        got.discharge_voltage_limit,
    ) == wire


def test_limits_rounded_toward_safe_golden_bytes() -> None:
    # 562 (56.2 V), 999 (99.9 A), 1500 (150.0 A), 461 (46.1 V), little-endian
    assert pc.encode_limits(56.29, 99.99, 150.06, 46.01).hex().upper() == "3202E703DC05CD01"


@given(st.integers(-(10**6), 10**6).map(lambda x: x / 10))
def test_limits_clamp_instead_of_wrapping(ccl: float) -> None:
    got = pc.decode_frame(0x351, pc.encode_limits(50, ccl, ccl, 45))
    assert isinstance(got, pc.Limits)
    assert got.charge_current_limit == pytest.approx(min(3276.7, max(0.0, ccl)), abs=1e-9)


@given(st.integers(0, 100), st.integers(0, 100), st.none() | st.floats(0.01, 100))
def test_soc_round_trip(soc: int, soh: int, hires: float | None) -> None:
    got = pc.decode_frame(0x355, pc.encode_soc_soh(soc, soh, hires))
    assert isinstance(got, pc.SocSoh)
    assert (got.soc, got.soh) == (soc, soh)
    if hires is None:
        assert got.soc_hires is None
    else:
        assert got.soc_hires == pytest.approx(hires, abs=0.005 + 1e-9)


@given(
    st.integers(0, 32767),
    st.integers(-32768, 32767),
    st.integers(-32768, 32767),
    st.sampled_from([0.01, 0.1]),
    st.none() | st.integers(1, 65534),  # 0 = blank, 0xFFFF = invalid (doc §4)
)
def test_measurements_round_trip(
    v_raw: int, i_raw: int, t_raw: int, scale: float, cycles: int | None
) -> None:
    voltage, current, temperature = v_raw * scale, i_raw / 10, t_raw / 10
    data = pc.encode_measurements(voltage, current, temperature, voltage_scale=scale, cycles=cycles)
    got = pc.decode_frame(0x356, data, voltage_scale=scale)
    assert isinstance(got, pc.Measurements)
    assert data[:2] == v_raw.to_bytes(2, "little")
    assert got.voltage == pytest.approx(voltage)
    assert got.current == pytest.approx(current)
    assert got.temperature == pytest.approx(temperature)
    assert got.cycles == cycles


codes_359 = st.sets(st.sampled_from(sorted(set(pc.PROTECTION_BITS.values()))))


@given(codes_359, codes_359, st.integers(0, 255))
def test_protection_round_trip(alarms: set[str], warnings: set[str], modules: int) -> None:
    got = pc.decode_frame(0x359, pc.encode_protection(alarms, warnings, modules))
    assert isinstance(got, pc.ProtectionAlarms)
    protection_codes = {c for (b, _), c in pc.PROTECTION_BITS.items() if b < 2}
    alarm_codes = {c for (b, _), c in pc.PROTECTION_BITS.items() if b >= 2}
    assert set(got.alarms) == alarms & protection_codes
    assert set(got.warnings) == warnings & alarm_codes
    assert (got.module_count, got.marker) == (modules, "PN")


@given(st.booleans(), st.booleans(), st.booleans(), st.booleans(), st.booleans())
def test_request_flags_round_trip(c: bool, d: bool, f1: bool, f2: bool, full: bool) -> None:
    data = pc.encode_request_flags(
        c, d, force_charge_1=f1, force_charge_2=f2, request_full_charge=full
    )
    assert len(data) == 8
    got = pc.decode_frame(0x35C, data)
    assert got == pc.RequestFlags(c, d, f1, f2, full, data[0])


@given(st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=8))
def test_manufacturer_round_trip(name: str) -> None:
    data = pc.encode_manufacturer(name)
    assert len(data) == 8
    assert pc.decode_frame(0x35E, data) == pc.Manufacturer(name)


pair_codes = st.sets(
    st.sampled_from(sorted({c for n, c in pc.ALARM_PAIR_EVENTS[:13] if c and n != "contactor"}))
)


@given(pair_codes, pair_codes)
def test_alarm_pairs_round_trip(alarms: set[str], warnings: set[str]) -> None:
    got = pc.decode_frame(0x35A, pc.encode_alarm_pairs(alarms, warnings))
    assert isinstance(got, pc.AlarmPairs)
    assert set(got.alarms) == alarms
    assert set(got.warnings) == warnings


@given(st.integers(0, 65535), st.integers(0, 255), st.integers(0, 255))
def test_battery_info_round_trip(capacity: int, major: int, minor: int) -> None:
    got = pc.decode_frame(0x35F, pc.encode_battery_info(capacity, version=(major, minor)))
    assert isinstance(got, pc.BatteryInfoFrame)
    assert got.product_text == "LI"
    assert got.version == (major, minor)
    assert got.capacity == (None if capacity in (0, 0xFFFF) else capacity)  # blank / invalid


@given(*(st.integers(0, 65535) for _ in range(4)))
def test_module_counts_round_trip(a: int, b: int, c: int, d: int) -> None:
    assert pc.decode_frame(0x372, pc.encode_module_counts(a, b, c, d)) == pc.ModuleCounts(
        a, b, c, d
    )


@given(st.integers(0, 65535), st.integers(0, 65535), st.integers(-273, 300), st.integers(-273, 300))
def test_cell_extremes_round_trip(lo: int, hi: int, tlo: int, thi: int) -> None:
    got = pc.decode_frame(0x373, pc.encode_cell_extremes(lo / 1000, hi / 1000, tlo, thi))
    assert isinstance(got, pc.CellExtremes)
    assert (round(got.cell_min * 1000), round(got.cell_max * 1000)) == (lo, hi)
    assert got.temperature_min == pytest.approx(tlo, abs=0.5)
    assert got.temperature_max == pytest.approx(thi, abs=0.5)


@given(st.integers(0, 65535))
def test_installed_capacity_round_trip(capacity: int) -> None:
    assert pc.decode_frame(0x379, pc.encode_installed_capacity(capacity)) == (
        pc.InstalledCapacity(capacity)
    )


def test_heartbeat_encodes_zeros() -> None:
    got = pc.decode_frame(0x305, pc.encode_heartbeat())
    assert isinstance(got, pc.InverterHeartbeat) and got.keepalive


def test_encoders_refuse_non_finite_and_bad_names() -> None:
    with pytest.raises(pc.EncodeError):
        pc.encode_limits(float("nan"), 1, 1, 1)
    with pytest.raises(pc.EncodeError):
        pc.encode_manufacturer("TOO-LONG-NAME")
    with pytest.raises(pc.EncodeError):
        pc.encode_manufacturer("PYLÖN")


def test_rounding_is_round_not_truncation() -> None:
    # doc §7 "Rounding": int() truncation loses 1 LSB for values like 52.91 V (5290.999...)
    data = pc.encode_measurements(52.91, -80.1, 20.4)
    assert data == bytes.fromhex("AB14DFFCCC000000")  # the real frame of the bms_gateway dump


# --- golden frame sets ---------------------------------------------------------------------

GOLDEN_VALUES = pc.BmsValues(
    charge_voltage_limit=56.3,
    discharge_voltage_limit=46.9,
    charge_current_limit=922.5,
    discharge_current_limit=922.5,
    soc=80,
    soh=100,
    voltage=52.91,
    current=-80.1,
    temperature=20.4,
    charge_enable=True,
    discharge_enable=True,
    module_count=5,
    cell_min=3.288,
    cell_max=3.313,
    temperature_min=16.85,
    temperature_max=24.85,
    capacity=500,
)


def test_golden_pylontech_set_equals_the_real_stack() -> None:
    frames = pc.build_frame_set(GOLDEN_VALUES, "pylontech")
    assert [(f"{i:03X}", d.hex().upper()) for i, d in frames] == [
        ("351", "330209240924D501"),
        ("355", "5000640000000000"),
        ("356", "AB14DFFCCC000000"),
        ("359", "0000000005504E00"),
        ("35C", "C000000000000000"),
        ("35E", "50594C4F4E202020"),
    ]


def test_golden_pylon_v2_and_sma_sets() -> None:
    v2 = dict(pc.build_frame_set(GOLDEN_VALUES, "pylon_v2"))
    assert v2[0x35A].hex().upper() == "AAAAAA02AAAAAA02"  # 13 events "10", reserved pairs "00"
    assert v2[0x372].hex().upper() == "0500000000000000"
    assert v2[0x373].hex().upper() == "D80CF10C22012A01"  # equals the real stack frame
    assert v2[0x379].hex().upper() == "F401000000000000"
    sma = pc.build_frame_set(GOLDEN_VALUES, "sma")
    assert [i for i, _ in sma] == [0x351, 0x355, 0x356, 0x35E, 0x35A, 0x35F]
    assert dict(sma)[0x355].hex().upper() == "50006400401F0000"
    assert dict(sma)[0x35F].hex().upper() == "4C490100F4010000"
    assert all(len(d) == 8 for _, d in sma)


def test_failsafe_codes_set_the_communication_bits() -> None:
    frames = dict(
        pc.build_frame_set(
            pc.BmsValues(
                charge_voltage_limit=0,
                discharge_voltage_limit=0,
                charge_current_limit=0,
                discharge_current_limit=0,
                soc=0,
                soh=0,
                voltage=0,
                current=0,
                temperature=0,
                charge_enable=False,
                discharge_enable=False,
                alarms=("failsafe",),
                warnings=("communication_lost",),
                module_count=0,
            ),
            "pylon_v2",
        )
    )
    assert frames[0x359][:5] == bytes((0, 0x08, 0, 0x08, 0))
    assert frames[0x35C][0] == 0
    pairs = pc.decode_frame(0x35A, frames[0x35A])
    assert isinstance(pairs, pc.AlarmPairs)
    assert "bms_internal" in pairs.active_alarms
