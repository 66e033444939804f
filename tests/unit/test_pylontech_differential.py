"""Differential test: bmslink's Pylontech codec vs the seed library python-pylontech 0.3.3.

python-pylontech is a test-only dependency in the root pyproject's ``dev`` group (it installs
cleanly: its only dependencies are pyserial and construct). Its decoders are called without a
serial port (``Pylontech.__new__``). On every real frame it decodes, the values must agree, except
where its documented bugs apply (reference doc §14), each listed here with the reason:

* ``AverageBMSTemperature`` is T1 = the BMS board temperature (V3.3), not an average: compared as
  our ``temperatures[0]``; ``GroupedCellsTemperatures`` are the remaining N-1 sensors, including
  a US5000's MOSFET sensor: compared with our ``temperatures[1:]``.
* ``NumberOfModule`` in single mode is the command value (ADR echo), not a module count.
* 0x92 status bits 5/4 are named ``ChargeImmediately2``/``ChargeImmediately1``: swapped vs V3.3,
  so its ``ChargeImmediately2`` is our ``charge_immediately_1`` and vice versa.
* 0x51 names keep their NUL / ``-`` padding; ours are stripped.
* It checks only CHKSUM (no LCHKSUM/LENID/VER/RTN): frames we refuse for those reasons
  (error replies, dialects) are not compared; it decodes an RTN 0x04 reply as data.
* Its CHKSUM failure is an ``AssertionError`` (we raise ``ChecksumError``): compared as "both
  refuse".
"""

from __future__ import annotations

import math
from typing import Any

import pytest
from pylontech import Pylontech

from bmslink.protocols import pylontech_rs485 as pylon

try:
    from tests.vectors import load_vectors
except ImportError:  # pragma: no cover
    from vectors import load_vectors  # type: ignore[import-not-found,no-redef]

VECTORS: list[dict[str, Any]] = load_vectors("pylontech_rs485")["vectors"]
CAPTURE: list[dict[str, Any]] = load_vectors("pylontech_rs485_capture")["frames"]
ORACLE = Pylontech.__new__(Pylontech)  # decoding only, no serial port


def _theirs(raw: bytes) -> Any:
    return ORACLE._decode_frame(ORACLE._decode_hw_frame(raw))


def _ours(raw: bytes, request: bytes | None) -> pylon.Frame:
    return pylon.parse_response(raw, pylon.parse_frame(request) if request else None)


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, abs_tol=1e-6)


def _compare_module(mine: pylon.ModuleAnalog, theirs: Any) -> None:
    assert list(mine.cell_voltages) == [pytest.approx(c) for c in theirs.CellVoltages]
    assert _close(mine.temperatures[0], theirs.AverageBMSTemperature)  # exception: T1 naming
    assert list(mine.temperatures[1:]) == [
        pytest.approx(t) for t in theirs.GroupedCellsTemperatures
    ]
    assert _close(mine.current, theirs.Current)
    assert _close(mine.voltage, theirs.Voltage)
    assert _close(mine.remaining_capacity, theirs.RemainingCapacity)
    assert _close(mine.full_capacity, theirs.TotalCapacity)
    assert mine.cycles == theirs.CycleNumber
    assert mine.user_defined == theirs._UserDefinedItems


def _vectors(command: str) -> list[dict[str, Any]]:
    return [
        v for v in VECTORS if v["command"] == command and v.get("response") and "dialect" not in v
    ]


@pytest.mark.parametrize("v", _vectors("0x42"), ids=lambda v: v["vector_id"])
def test_0x42_agrees(v: dict[str, Any]) -> None:
    raw = v["response"].encode()
    try:
        theirs = _theirs(raw)
    except AssertionError:  # its CHKSUM check: we refuse the frame as well
        with pytest.raises(pylon.ChecksumError):
            pylon.parse_frame(raw)
        return
    frame = _ours(raw, v.get("request", "").encode() or None)
    is_stack = pylon.parse_frame(v["request"].encode()).info == b"\xff"
    mine = pylon.decode_analog(frame.info, stack=is_stack)
    if is_stack:
        parsed = ORACLE.get_values_fmt.parse(theirs.info[1:])
        assert parsed.NumberOfModules == len(mine.modules)
        for m, t in zip(mine.modules, parsed.Module, strict=True):
            _compare_module(m, t)
    else:
        parsed = ORACLE.get_values_single_fmt.parse(theirs.info[1:])
        assert parsed.NumberOfModule == mine.command_value  # exception: naming only
        _compare_module(mine.modules[0], parsed)


def test_0x42_capture_agrees() -> None:
    for entry in CAPTURE[1:400:2]:
        raw = entry["frame"].encode()
        mine = pylon.decode_analog(pylon.parse_response(raw).info, stack=True)
        parsed = ORACLE.get_values_fmt.parse(_theirs(raw).info[1:])
        for m, t in zip(mine.modules, parsed.Module, strict=True):
            _compare_module(m, t)


@pytest.mark.parametrize("v", _vectors("0x47"), ids=lambda v: v["vector_id"])
def test_0x47_agrees(v: dict[str, Any]) -> None:
    raw = v["response"].encode()
    mine = pylon.decode_system_parameters(_ours(raw, None).info)
    t = ORACLE.system_parameters_fmt.parse(_theirs(raw).info[1:])
    pairs = {
        "cell_high_voltage": t.CellHighVoltageLimit,
        "cell_low_voltage": t.CellLowVoltageLimit,
        "cell_under_voltage": t.CellUnderVoltageLimit,
        "charge_high_temperature": t.ChargeHighTemperatureLimit,
        "charge_low_temperature": t.ChargeLowTemperatureLimit,
        "charge_current_limit": t.ChargeCurrentLimit,
        "module_high_voltage": t.ModuleHighVoltageLimit,
        "module_low_voltage": t.ModuleLowVoltageLimit,
        "module_under_voltage": t.ModuleUnderVoltageLimit,
        "discharge_high_temperature": t.DischargeHighTemperatureLimit,
        "discharge_low_temperature": t.DischargeLowTemperatureLimit,
        "discharge_current_limit": t.DischargeCurrentLimit,
    }
    for name, value in pairs.items():
        assert _close(getattr(mine, name), value), name


@pytest.mark.parametrize("v", _vectors("0x92"), ids=lambda v: v["vector_id"])
def test_0x92_agrees(v: dict[str, Any]) -> None:
    raw = v["response"].encode()
    mine = pylon.decode_management_info(_ours(raw, None).info)
    t = ORACLE.management_info_fmt.parse(_theirs(raw).info[1:])
    assert _close(mine.charge_voltage_limit, t.ChargeVoltageLimit)
    assert _close(mine.discharge_voltage_limit, t.DischargeVoltageLimit)
    assert _close(mine.charge_current_limit, t.ChargeCurrentLimit)
    assert _close(mine.discharge_current_limit, t.DischargeCurrentLimit)
    assert mine.charge_enable == t.status.ChargeEnable
    assert mine.discharge_enable == t.status.DischargeEnable
    assert mine.full_charge_request == t.status.FullChargeRequest
    # exception (§14): bits 5/4 swapped in python-pylontech
    assert mine.charge_immediately_1 == t.status.ChargeImmediately2
    assert mine.charge_immediately_2 == t.status.ChargeImmediately1


def test_0x92_bit_swap_is_visible_on_a_crafted_frame() -> None:
    raw = pylon.build_response(
        2, pylon.encode_management_info(pylon.ManagementInfo(2, 53.25, 45.0, 25.0, -25.0, 0xE0))
    )
    t = ORACLE.management_info_fmt.parse(_theirs(raw).info[1:])
    mine = pylon.decode_management_info(pylon.parse_response(raw).info)
    assert mine.charge_immediately_1 and not mine.charge_immediately_2  # V3.3: bit 5 = CI1
    assert t.status.ChargeImmediately2 and not t.status.ChargeImmediately1


@pytest.mark.parametrize("v", _vectors("0x93"), ids=lambda v: v["vector_id"])
def test_0x93_agrees(v: dict[str, Any]) -> None:
    raw = v["response"].encode()
    mine = pylon.decode_serial_number(_ours(raw, None).info)
    t = ORACLE.module_serial_number_fmt.parse(_theirs(raw).info)
    assert mine.command_value == t.CommandValue
    assert mine.serial == t.ModuleSerialNumber.decode()


@pytest.mark.parametrize("v", _vectors("0x51"), ids=lambda v: v["vector_id"])
def test_0x51_agrees(v: dict[str, Any]) -> None:
    raw = v["response"].encode()
    mine = pylon.decode_manufacturer_info(_ours(raw, None).info)
    t = ORACLE.manufacturer_info_fmt.parse(_theirs(raw).info)
    assert mine.device_name == t.DeviceName.decode().rstrip("\x00")  # exception: padding
    assert list(mine.software_version) == list(t.SoftwareVersion)
    assert mine.manufacturer == t.ManufacturerName.decode().rstrip("-")  # exception: padding


def test_error_reply_is_data_to_them_and_an_error_to_us() -> None:
    """§14: python-pylontech does not check RTN; an RTN 0x04 reply parses as a frame."""
    raw = next(v for v in VECTORS if v["command"] == "error-RTN")["response"].encode()
    assert _theirs(raw).cid2 == b"\x04"
    with pytest.raises(pylon.UnsupportedCommandError):
        pylon.parse_response(raw)
