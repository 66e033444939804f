"""``bmslink decode pace-modbus [--start REGISTER] FRAME_HEX``: PACE BMS Modbus RTU replies.

Decodes a read-holding-registers reply (FC 0x03, or 0x04) of the PACE V1.3 map (Hubble AM2 and
other PACE packs) whose first register is ``--start`` (default 0): every map entry inside the
reply in engineering units, plus the alarm/warning codes and balancing cells when the reply
covers registers 9-12, and the limits when it covers the settings. An exception reply
(``01 83 02 c0 f1``) decodes to its code. Reference: shared/protocols/pace-modbus-am2.md.
"""

from __future__ import annotations

import argparse
from typing import Any

from bmslink.cli.decode import Decoder, DecodeUsageError, hex_frame
from bmslink.protocols import modbus_rtu as rtu
from bmslink.protocols import pace_modbus as pace


def _decode_pace(frame_text: str, options: argparse.Namespace) -> dict[str, Any]:
    try:
        raw = hex_frame(frame_text)
    except ValueError as exc:
        raise rtu.FrameError(str(exc)) from exc
    start = options.start if options.start is not None else 0
    if not 0 <= start <= 0xFFFF:
        raise DecodeUsageError(f"--start {start} is not a register number 0..65535")
    if len(raw) < 2:
        raise rtu.FrameError(f"frame too short: {raw.hex()}")
    function = raw[1] & 0x7F
    if function not in (rtu.FC_READ_HOLDING, rtu.FC_READ_INPUT):
        raise rtu.FrameError(
            f"function 0x{raw[1]:02X} is not a read-registers reply (0x03/0x04 or 0x83/0x84)"
        )
    result: dict[str, Any] = {"protocol": "pace-modbus", "slave": raw[0], "function": function}
    try:
        registers = rtu.parse_read_response(raw, function=function)
    except rtu.ExceptionReplyError as exc:
        result["exception"] = {"code": exc.code, "name": exc.name.lower()}
        return result
    end = start + len(registers)
    result.update(start=start, count=len(registers), registers=pace.decode_block(start, registers))
    if start <= 9 and end >= 13:
        alarms, warnings = pace.decode_alarms(
            registers[9 - start], registers[10 - start], registers[11 - start]
        )
        result["alarms"] = alarms
        result["warnings"] = warnings
        result["balancing_cells"] = pace.balancing_cells(registers[12 - start])
    if start <= 15 and end >= 31:
        cells = [v / 1000 for v in registers[15 - start : 31 - start] if v]
        result["cell_sum"] = round(sum(cells), 3)
    if start == pace.SETTINGS_BLOCK.start:
        settings = pace.decode_settings(registers)
        result["limits"] = {
            "charge_voltage_limit": settings.charge_voltage_limit,
            "discharge_voltage_limit": settings.discharge_voltage_limit,
            "charge_current_limit": settings.charge_current_limit,
            "discharge_current_limit": settings.discharge_current_limit,
        }
    return result


DECODERS = [
    Decoder(
        "pace-modbus",
        "PACE BMS / Hubble AM2 Modbus RTU read replies as hex; --start first register (default 0)",
        _decode_pace,
        (rtu.ModbusError, pace.PaceError),
    ),
]
