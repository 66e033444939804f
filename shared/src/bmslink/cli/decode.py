"""``bmslink decode PROTOCOL [--command CID2 | --start REGISTER | --id CAN_ID] FRAME...``

Decodes pasted response frames (exactly as captured: ASCII for Pylontech RS485, hex for binary
protocols) and prints one JSON object per frame, fields in schema units (V, A, °C, Ah, %).
Exit status 0 when every frame decoded, 1 when one did not (the error names what is wrong),
2 for bad usage. Protocols register :class:`Decoder` objects in a module of
:mod:`bmslink.cli.decoders`.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Callable
from typing import Any

import msgspec

from bmslink.registry import discover


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


def unescape_ascii_frame(text: str) -> bytes:
    """An ASCII frame as pasted: with a real CR, a literal ``\\r``, or none (added)."""
    text = text.strip().replace("\\r", "\r").replace("\\n", "")
    if not text.endswith("\r"):
        text += "\r"
    return text.encode("latin-1")


def hex_frame(text: str) -> bytes:
    """A binary frame pasted as hex (spaces, colons and a ``0x`` prefix allowed); raises
    :class:`ValueError` naming the offending text."""
    cleaned = text.strip().removeprefix("0x").replace(" ", "").replace(":", "").replace("-", "")
    try:
        return bytes.fromhex(cleaned)
    except ValueError as exc:
        raise ValueError(f"not hex: {text!r}") from exc


def registry() -> dict[str, Decoder]:
    """Every decoder, by protocol name: the ``DECODERS`` lists of the modules in
    :mod:`bmslink.cli.decoders` (one module per protocol family; adding a module adds a name)."""
    from bmslink.cli import decoders

    return discover(decoders, "DECODERS")


def _int_auto(text: str) -> int:
    return int(text, 0)


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register the ``decode`` sub-command."""
    p = sub.add_parser("decode", help="decode pasted frames to JSON in schema units")
    p.add_argument("protocol", choices=sorted(registry()), help="protocol of the frames")
    p.add_argument("frames", nargs="+", metavar="FRAME", help="response frames, as captured")
    p.add_argument(
        "--command", type=_int_auto, default=None, help="CID2 of the request (e.g. 0x42)"
    )
    p.add_argument("--start", type=_int_auto, default=None, help="first register of a Modbus read")
    p.add_argument("--id", dest="can_id", type=_int_auto, default=None, help="CAN identifier")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Decode every frame; print one JSON line each (errors to stderr); 1 if any failed."""
    decoder = registry()[args.protocol]
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
