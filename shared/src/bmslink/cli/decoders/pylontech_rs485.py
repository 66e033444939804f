"""``bmslink decode pylontech-rs485``: Pylontech LV RS485 response frames to JSON."""

from __future__ import annotations

import argparse
from typing import Any

import msgspec

from bmslink.cli.decode import Decoder, DecodeUsageError, unescape_ascii_frame
from bmslink.protocols import pylontech_rs485 as pylon


def _module_dict(module: pylon.ModuleAnalog) -> dict[str, Any]:
    out: dict[str, Any] = msgspec.to_builtins(module)
    out["soc"] = None if module.soc is None else round(module.soc, 1)
    return out


def _decode_pylontech(frame_text: str, options: argparse.Namespace) -> dict[str, Any]:
    raw = unescape_ascii_frame(frame_text)
    frame = pylon.parse_response(raw)
    command = options.command if options.command is not None else pylon.Cid2.ANALOG
    header = {"ver": frame.ver, "adr": frame.adr, "cid1": frame.cid1, "rtn": frame.cid2}
    result: dict[str, Any] = {
        "protocol": "pylontech-rs485",
        "command": f"0x{command:02X}",
        "frame": header,
    }
    if command == pylon.Cid2.ANALOG:
        analog = pylon.decode_analog(frame.info)
        result["info_flag"] = analog.info_flag
        result["command_value"] = analog.command_value
        result["modules"] = [_module_dict(m) for m in analog.modules]
    elif command == pylon.Cid2.PROTOCOL_VERSION:
        result["protocol_version"] = f"{frame.ver >> 4}.{frame.ver & 0xF}"
    else:
        known = ", ".join(f"0x{c:02X}" for c in (pylon.Cid2.ANALOG, pylon.Cid2.PROTOCOL_VERSION))
        raise DecodeUsageError(f"--command 0x{command:02X} is not decoded yet (decoded: {known})")
    return result


DECODERS = [
    Decoder(
        "pylontech-rs485",
        "Pylontech LV RS485 ASCII frames (~...CR); --command CID2 of the request (default 0x42)",
        _decode_pylontech,
        (pylon.PylontechError,),
    ),
]
