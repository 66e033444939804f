"""``bmslink decode daly-a5|daly-sinowealth|daly-d2|daly-81``: Daly frames (hex) to JSON.

- ``daly-a5``: one 13-byte frame per argument (a multi-frame burst may be pasted as one hex
  string: it is cut into frames with the resynchronising stream parser).
- ``daly-sinowealth``: the reply (data + check byte); ``--command`` names the request (replies
  do not carry it).
- ``daly-d2`` / ``daly-81``: an FC 03 reply; ``--start`` is the first register read (default 0).

Reference: ``shared/protocols/daly.md``. Units: V, A (+ = charging), °C, Ah, %.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable
from typing import Any

from bmslink.cli.decode import Decoder, DecodeUsageError, hex_frame
from bmslink.protocols import daly_81 as p81
from bmslink.protocols import daly_a5 as a5
from bmslink.protocols import daly_d2 as d2
from bmslink.protocols import daly_sinowealth as sino
from bmslink.protocols.daly_modbus import DalyModbusError, parse_frame, registers_from


def _a5_payload(command: int, data: bytes) -> dict[str, Any]:
    c = a5.Command
    if command == c.SOC:
        soc = a5.decode_soc(data)
        out = dataclasses.asdict(soc)
        out["note"] = "current + = charging with raw > 30000 = discharge (doc §9 default)"
        return out
    decoders: dict[int, Callable[[bytes], Any]] = {
        c.CELL_EXTREMES: a5.decode_cell_extremes,
        c.TEMPERATURE_EXTREMES: a5.decode_temperature_extremes,
        c.MOSFET: a5.decode_mosfet,
        c.STATUS: a5.decode_status,
    }
    if command in decoders:
        return dataclasses.asdict(decoders[command](data))
    if command == c.CELL_VOLTAGES:
        number, mv = a5.decode_cell_frame(data)
        return {"frame": number, "cell_voltages": [v / 1000 for v in mv]}
    if command == c.TEMPERATURES:
        number, temps = a5.decode_temperature_frame(data)
        return {"frame": number, "temperatures": list(temps)}
    if command == c.BALANCING:
        return {"balancing_cells": a5.decode_balancing(data), "bit_order": "unverified"}
    if command == c.ALARMS:
        alarms = a5.decode_alarms(data)
        return {
            "alarms": alarms.alarms,
            "warnings": alarms.warnings,
            "active": [a.text for a in alarms.active],
            "fault_code": alarms.fault_code,
        }
    if command == c.RATED:
        capacity, cell_v = a5.decode_rated(data)
        return {"rated_capacity": capacity, "nominal_cell_voltage": cell_v}
    if command in (c.MODEL, c.BATTERY_CODE):
        number, text = a5.decode_text_frame(data)
        return {"frame": number, "text": text}
    if command in (c.CHARGE_MOSFET, c.DISCHARGE_MOSFET):
        return {"state": data[0]}
    return {"data": data.hex()}


def _decode_a5(text: str, _options: argparse.Namespace) -> dict[str, Any]:
    raw = hex_frame(text)
    if len(raw) == a5.FRAME_LEN:
        frames = [a5.parse_frame(raw)]
    else:
        stream = a5.FrameStream()
        frames = stream.feed(raw)
        if not frames:
            a5.parse_frame(raw)  # raises the precise error
    out = []
    for f in frames:
        out.append(
            {
                "address": f.address,
                "command": f"0x{f.command:02X}",
                **_a5_payload(f.command, f.data),
            }
        )
    if len(out) == 1:
        return {"protocol": "daly-a5", **out[0]}
    return {"protocol": "daly-a5", "frames": out}


def _decode_sinowealth(text: str, options: argparse.Namespace) -> dict[str, Any]:
    if options.command is None:
        raise DecodeUsageError("daly-sinowealth needs --command (replies do not carry it)")
    request = sino.build_request(options.command)
    reading = sino.decode(request, hex_frame(text))
    out: dict[str, Any] = {
        "protocol": "daly-sinowealth",
        "command": f"0x{options.command:02X}",
        reading.name: reading.value,
        "unit": reading.unit,
        "raw": reading.raw,
    }
    if options.command == sino.Command.BATTERY_STATUS:
        out["alarms"] = sino.status_codes(reading.raw)
    if options.command == sino.Command.PACK_STATUS:
        out["flags"] = [n for b, n in sino.PACK_STATUS_BITS.items() if reading.raw >> b & 1]
    return out


def _status_dict(status: Any) -> dict[str, Any]:
    out: dict[str, Any] = dataclasses.asdict(status)
    return {k: v for k, v in out.items() if v is not None}


def _decode_d2(text: str, options: argparse.Namespace) -> dict[str, Any]:
    frame = parse_frame(hex_frame(text))
    start = options.start or 0
    regs = registers_from(frame)
    out: dict[str, Any] = {
        "protocol": "daly-d2",
        "address": f"0x{frame.address:02X}",
        "start": f"0x{start:04X}",
        "count": len(regs),
    }
    by_reg = {start + i: v for i, v in enumerate(regs)}
    if start == 0 and len(regs) >= d2.STATUS_REGISTERS:
        out.update(_status_dict(d2.decode_status(by_reg)))
    elif start == d2.VERSION_BLOCK[0]:
        out["version"] = d2.decode_version(frame.data)
    else:
        if start <= 0x42 < start + len(regs):
            value = by_reg[0x42]
            out["mosfet_temperature"] = None if value in (0, 0xFFFF) else value - 40
        out["registers"] = {f"0x{r:04X}": v for r, v in by_reg.items()}
    return out


def _decode_81(text: str, options: argparse.Namespace) -> dict[str, Any]:
    frame = parse_frame(hex_frame(text))
    if not 0x51 <= frame.address <= 0x5F:
        raise DalyModbusError(f"0x81 replies come from 0x51..0x5F, not 0x{frame.address:02X}")
    start = options.start or 0
    regs = registers_from(frame)
    by_reg = {start + i: v for i, v in enumerate(regs)}
    out: dict[str, Any] = {
        "protocol": "daly-81",
        "board": frame.address - 0x50,
        "start": f"0x{start:04X}",
        "count": len(regs),
    }
    named: dict[int, tuple[str, Callable[[int], Any]]] = {
        0x38: ("voltage", lambda v: v / 10),
        0x39: ("current", lambda v: (v - p81.CURRENT_OFFSET) / 10),
        0x3A: ("soc", lambda v: v / 10),
        0x3B: ("heartbeat", lambda v: v),
        0x3C: ("cell_count", lambda v: v),
        0x3D: ("sensor_count", lambda v: v),
        0x3E: ("cell_max", lambda v: v / 1000),
        0x3F: ("cell_max_index", lambda v: v),
        0x41: ("cell_min_index", lambda v: v),
        0x42: ("cell_delta", lambda v: v / 1000),
        0x43: ("temperature_max", lambda v: v - 40),
        0x45: ("temperature_min", lambda v: v - 40),
        0x48: ("state", lambda v: v),
        0x4B: ("remaining_capacity", lambda v: v / 10),
        0x4C: ("cycles", lambda v: v),
        0x4D: ("balancer", lambda v: v),
        0x52: ("charge_mosfet", bool),
        0x53: ("discharge_mosfet", bool),
        0x54: ("precharge_mosfet", bool),
        0x58: ("power_unsigned", lambda v: v),
        0x5A: ("mosfet_temperature", lambda v: None if v == 0xFF else v - 40),
        0x5B: ("bms_temperature", lambda v: None if v == 0xFF else v - 40),
    }
    if start == 0 and len(regs) >= 0x30:
        count = min(by_reg.get(0x3C, 0x30), 48) or 48
        out["cell_voltages"] = [by_reg[i] / 1000 for i in range(count)]
    if start <= 0x30 and start + len(regs) > 0x3D:
        sensors = min(by_reg[0x3D], 8)
        out["temperatures"] = [
            by_reg[0x30 + i] - 40 for i in range(sensors) if by_reg[0x30 + i] != 0xFF
        ]
    for reg, (name, convert) in named.items():
        if reg in by_reg:
            out[name] = convert(by_reg[reg])
    return out


DECODERS = [
    Decoder(
        "daly-a5",
        "Daly A5 13-byte frames (hex; a burst may be pasted as one string)",
        _decode_a5,
        (a5.DalyA5Error,),
    ),
    Decoder(
        "daly-sinowealth",
        "Daly Sinowealth replies (hex data + CRC-8); --command CMD of the request",
        _decode_sinowealth,
        (sino.DalySinowealthError,),
    ),
    Decoder(
        "daly-d2",
        "Daly D2 Modbus-style replies (hex); --start REGISTER of the read (default 0)",
        _decode_d2,
        (DalyModbusError,),
    ),
    Decoder(
        "daly-81",
        "Daly 0x81/0x51 Modbus-style replies (hex); --start REGISTER of the read (default 0)",
        _decode_81,
        (DalyModbusError,),
    ),
]
