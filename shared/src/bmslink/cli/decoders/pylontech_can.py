"""``bmslink decode pylontech-can --id CAN_ID DATA_HEX...``: Pylontech LV CAN frames to JSON.

Every frame type of :mod:`bmslink.protocols.pylontech_can` (0x351, 0x355, 0x356, 0x359, 0x35A,
0x35C, 0x35E, 0x35F, 0x372–0x379, 0x380–0x382, the inverter's 0x305/0x307); other ids are shown
raw. Values in schema units (V, A, °C, %, Ah, kWh).
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from bmslink.cli.decode import Decoder, DecodeUsageError, hex_frame
from bmslink.protocols import pylontech_can as pc


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.hex().upper()
    if isinstance(value, tuple):
        return [_jsonable(v) for v in value]
    return value


def _decode(frame_text: str, options: argparse.Namespace) -> dict[str, Any]:
    can_id = options.can_id
    if can_id is None:
        raise DecodeUsageError("pylontech-can needs --id CAN_ID (e.g. --id 0x351)")
    if not 0 <= can_id <= 0x1FFFFFFF:
        raise DecodeUsageError(f"--id 0x{can_id:X} is not a CAN identifier")
    try:
        data = hex_frame(frame_text)
    except ValueError as exc:
        raise pc.PylontechCanError(str(exc)) from exc
    frame = pc.decode_frame(can_id, data, extended=can_id > 0x7FF)
    result: dict[str, Any] = {
        "protocol": "pylontech-can",
        "id": f"0x{can_id:03X}",
        "dlc": len(data),
        "frame": type(frame).__name__,
    }
    for f in dataclasses.fields(frame):
        result[f.name] = _jsonable(getattr(frame, f.name))
    if isinstance(frame, pc.ProtectionAlarms | pc.AlarmPairs):
        result["alarms"] = list(frame.alarms)
        result["warnings"] = list(frame.warnings)
    if isinstance(frame, pc.AlarmPairs):
        result["active_alarm_events"] = list(frame.active_alarms)
        result["active_warning_events"] = list(frame.active_warnings)
    return result


DECODERS = [
    Decoder(
        "pylontech-can",
        "Pylontech LV CAN frames as hex data bytes; --id CAN_ID (e.g. 0x351) is required",
        _decode,
        (pc.PylontechCanError,),
    ),
]
