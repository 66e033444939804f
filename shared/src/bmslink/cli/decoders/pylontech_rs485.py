"""``bmslink decode pylontech-rs485``: Pylontech LV RS485 response frames to JSON.

``--command`` is the CID2 of the request the frame answers (default 0x42): 0x42 analog, 0x44
alarms, 0x47 system parameters, 0x4F protocol version, 0x51 manufacturer info, 0x92
charge/discharge management, 0x93 serial number, 0x96 firmware version. A frame with VER 0x21
is decoded in the Maple Leaf Beaver dialect (0x42, 0x47; doc §12). Values in schema units.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

import msgspec

from bmslink.cli.decode import Decoder, DecodeUsageError, unescape_ascii_frame
from bmslink.protocols import pylontech_rs485 as pylon


def _module_dict(module: pylon.ModuleAnalog) -> dict[str, Any]:
    out: dict[str, Any] = msgspec.to_builtins(module)
    out["soc"] = None if module.soc is None else round(module.soc, 1)
    return out


def _analog(frame: pylon.Frame) -> dict[str, Any]:
    if pylon.is_beaver(frame):
        return {"dialect": "beaver", **msgspec.to_builtins(pylon.decode_beaver_analog(frame.info))}
    analog = pylon.decode_analog(frame.info)
    return {
        "info_flag": analog.info_flag,
        "command_value": analog.command_value,
        "modules": [_module_dict(m) for m in analog.modules],
    }


def _alarm(frame: pylon.Frame) -> dict[str, Any]:
    try:
        alarm = pylon.decode_alarm(frame.info, stack=False)
    except pylon.PayloadError:
        alarm = pylon.decode_alarm(frame.info, stack=True)  # an INFO=FF reply
    modules = []
    for m in alarm.modules:
        alarms, warnings = pylon.alarm_codes(m)
        modules.append(
            {
                **msgspec.to_builtins(m),
                "alarms": alarms,
                "warnings": warnings,
                "charge_mosfet_on": m.charge_mosfet_on,
                "discharge_mosfet_on": m.discharge_mosfet_on,
            }
        )
    return {
        "data_flag": alarm.data_flag,
        "command_value": alarm.command_value,
        "modules": modules,
        "trailing": alarm.trailing.hex().upper(),
    }


def _parameters(frame: pylon.Frame) -> dict[str, Any]:
    if pylon.is_beaver(frame):
        value = pylon.decode_beaver_system_parameters(frame.info)
        return {"dialect": "beaver", **msgspec.to_builtins(value)}
    return msgspec.to_builtins(pylon.decode_system_parameters(frame.info))  # type: ignore[no-any-return]


def _version(frame: pylon.Frame) -> dict[str, Any]:
    major, minor = pylon.protocol_version(frame)
    return {"protocol_version": f"{major}.{minor}", "beaver": pylon.is_beaver(frame)}


def _manufacturer(frame: pylon.Frame) -> dict[str, Any]:
    value = pylon.decode_manufacturer_info(frame.info)
    return {**msgspec.to_builtins(value), "software": value.software}


def _management(frame: pylon.Frame) -> dict[str, Any]:
    value = pylon.decode_management_info(frame.info)
    return {
        **msgspec.to_builtins(value),
        "charge_enable": value.charge_enable,
        "discharge_enable": value.discharge_enable,
        "charge_immediately_1": value.charge_immediately_1,
        "charge_immediately_2": value.charge_immediately_2,
        "full_charge_request": value.full_charge_request,
    }


def _serial(frame: pylon.Frame) -> dict[str, Any]:
    return msgspec.to_builtins(pylon.decode_serial_number(frame.info))  # type: ignore[no-any-return]


def _firmware(frame: pylon.Frame) -> dict[str, Any]:
    value = pylon.decode_firmware_version(frame.info)
    return {**msgspec.to_builtins(value), "text": value.text}


_COMMANDS: dict[int, Callable[[pylon.Frame], dict[str, Any]]] = {
    pylon.Cid2.ANALOG: _analog,
    pylon.Cid2.ALARM: _alarm,
    pylon.Cid2.SYSTEM_PARAMETERS: _parameters,
    pylon.Cid2.PROTOCOL_VERSION: _version,
    pylon.Cid2.MANUFACTURER_INFO: _manufacturer,
    pylon.Cid2.CHARGE_DISCHARGE_MANAGEMENT: _management,
    pylon.Cid2.SERIAL_NUMBER: _serial,
    pylon.Cid2.FIRMWARE_VERSION: _firmware,
}


def _decode_pylontech(frame_text: str, options: argparse.Namespace) -> dict[str, Any]:
    command = options.command if options.command is not None else pylon.Cid2.ANALOG
    decode = _COMMANDS.get(command)
    if decode is None:
        known = ", ".join(f"0x{c:02X}" for c in _COMMANDS)
        raise DecodeUsageError(f"--command 0x{command:02X} is not decoded (decoded: {known})")
    raw = unescape_ascii_frame(frame_text)
    frame = pylon.parse_response(raw)
    if pylon.is_beaver(frame) and command not in (
        pylon.Cid2.ANALOG,
        pylon.Cid2.SYSTEM_PARAMETERS,
        pylon.Cid2.PROTOCOL_VERSION,
    ):
        raise pylon.PayloadError(
            f"VER 0x21 (Beaver): only 0x42, 0x47, 0x4F are known, not 0x{command:02X}"
        )
    if (
        frame.ver not in (pylon.DEFAULT_VER, pylon.BEAVER_VER)
        and command != pylon.Cid2.PROTOCOL_VERSION
    ):
        raise pylon.FrameError(
            f"VER 0x{frame.ver:02X} is neither Pylontech (0x20) nor Beaver (0x21): another "
            "dialect (e.g. PACE 0x25), not decoded"
        )
    header = {"ver": frame.ver, "adr": frame.adr, "cid1": frame.cid1, "rtn": frame.cid2}
    return {
        "protocol": "pylontech-rs485",
        "command": f"0x{command:02X}",
        "frame": header,
        **decode(frame),
    }


DECODERS = [
    Decoder(
        "pylontech-rs485",
        "Pylontech LV RS485 ASCII frames (~...CR), also the Maple Leaf Beaver (VER 0x21); "
        "--command CID2 of the request (0x42 default, 0x44, 0x47, 0x4F, 0x51, 0x92, 0x93, 0x96)",
        _decode_pylontech,
        (pylon.PylontechError,),
    ),
]
