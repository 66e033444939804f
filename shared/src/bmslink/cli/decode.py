"""``bmslink decode PROTOCOL [--command CID2 | --start REGISTER | --id CAN_ID] FRAME...``

Decodes pasted response frames (exactly as captured: ASCII for Pylontech RS485, hex for binary
protocols) and prints one JSON object per frame, fields in schema units (V, A, °C, Ah, %).
Exit status 0 when every frame decoded, 1 when one did not (the error names what is wrong),
2 for bad usage. Protocols register a :class:`Decoder` in :data:`DECODERS` (a registry by name).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Callable
from typing import Any

import msgspec

from bmslink.protocols import pylontech_rs485 as pylon


class DecodeUsageError(ValueError):
    """The options do not fit the protocol (e.g. an unknown CID2)."""


@dataclasses.dataclass(frozen=True)
class Decoder:
    """A protocol's frame decoder: ``decode(frame_text, options) -> JSON-ready dict``; errors are
    the codec's own exception types (``errors``)."""

    name: str
    summary: str
    decode: Callable[[str, argparse.Namespace], dict[str, Any]]
    errors: tuple[type[Exception], ...]


def _unescape(text: str) -> bytes:
    """Accept a frame as pasted: a real CR, a literal ``\\r``, or none (added)."""
    text = text.strip().replace("\\r", "\r").replace("\\n", "")
    if not text.endswith("\r"):
        text += "\r"
    return text.encode("latin-1")


def _as_dict(value: Any) -> Any:
    return msgspec.to_builtins(value)


def _module_dict(module: pylon.ModuleAnalog) -> dict[str, Any]:
    out: dict[str, Any] = _as_dict(module)
    out["soc"] = None if module.soc is None else round(module.soc, 1)
    return out


def _decode_pylontech(frame_text: str, options: argparse.Namespace) -> dict[str, Any]:
    raw = _unescape(frame_text)
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


DECODERS: dict[str, Decoder] = {
    "pylontech-rs485": Decoder(
        "pylontech-rs485",
        "Pylontech LV RS485 ASCII frames (~...CR); --command CID2 of the request (default 0x42)",
        _decode_pylontech,
        (pylon.PylontechError,),
    ),
}


def _int_auto(text: str) -> int:
    return int(text, 0)


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register the ``decode`` sub-command."""
    p = sub.add_parser("decode", help="decode pasted frames to JSON in schema units")
    p.add_argument("protocol", choices=sorted(DECODERS), help="protocol of the frames")
    p.add_argument("frames", nargs="+", metavar="FRAME", help="response frames, as captured")
    p.add_argument(
        "--command", type=_int_auto, default=None, help="CID2 of the request (e.g. 0x42)"
    )
    p.add_argument("--start", type=_int_auto, default=None, help="first register of a Modbus read")
    p.add_argument("--id", dest="can_id", type=_int_auto, default=None, help="CAN identifier")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Decode every frame; print one JSON line each (errors to stderr); 1 if any failed."""
    decoder = DECODERS[args.protocol]
    status = 0
    for i, text in enumerate(args.frames, 1):
        try:
            result = decoder.decode(text, args)
        except DecodeUsageError as exc:
            print(f"bmslink decode: {exc}", file=sys.stderr)
            return 2
        except decoder.errors as exc:
            print(f"bmslink decode: frame {i}: {type(exc).__name__}: {exc}", file=sys.stderr)
            status = 1
            continue
        sys.stdout.write(msgspec.json.encode(result).decode() + "\n")
    return status
