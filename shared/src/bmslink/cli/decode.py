"""``bmslink decode PROTOCOL [--command CID2 | --start REGISTER | --id CAN_ID] FRAME...``

Decodes pasted response frames (exactly as captured: ASCII for Pylontech RS485, hex for binary
protocols) and prints one JSON object per frame, fields in schema units (V, A, °C, Ah, %).
Exit status 0 when every frame decoded, 1 when one did not (one line on stderr per bad frame,
naming what is wrong: empty, not hex, odd length, not ASCII, bad checksum, ...; the other frames
are still decoded), 2 for bad usage. Protocols register :class:`Decoder` objects in a module of
:mod:`bmslink.cli.decoders`.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Callable
from typing import Any, Final

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


def shown(text: str, most: int = 40) -> str:
    """``text`` quoted for an error line: ``repr`` (so control characters show and the line
    stays one line), cut to ``most`` characters with ``…``."""
    return repr(text) if len(text) <= most else repr(text[:most]) + "…"


def unescape_ascii_frame(text: str) -> bytes:
    """An ASCII frame as pasted: with a real CR, a literal ``\\r``, or none (added).

    Raises :class:`ValueError` for an empty frame and for a character that is not ASCII (the
    Pylontech RS485 frame is ASCII: ``~``, hex digits, CR), naming it and its position.
    """
    text = text.strip().replace("\\r", "\r").replace("\\n", "")
    if not text.strip():
        raise ValueError("empty frame")
    for i, char in enumerate(text):
        if not char.isascii():
            raise ValueError(
                f"character {char!r} (U+{ord(char):04X}) at position {i + 1} is not ASCII "
                f"in {shown(text)}"
            )
    if not text.endswith("\r"):
        text += "\r"
    return text.encode("ascii")


_HEX_DIGITS: Final = frozenset("0123456789abcdefABCDEF")


def hex_frame(text: str) -> bytes:
    """A binary frame pasted as hex (spaces, colons, dashes and a ``0x`` prefix allowed).

    Raises :class:`ValueError` naming what is wrong: an empty frame, a character that is not
    a hex digit (and where), or an odd number of hex digits.
    """
    stripped = text.strip()
    cleaned = stripped.removeprefix("0x").removeprefix("0X")
    cleaned = cleaned.replace(" ", "").replace(":", "").replace("-", "")
    if not cleaned:
        raise ValueError("empty frame" if not stripped else f"no hex digits in {shown(text)}")
    for i, char in enumerate(cleaned):
        if char not in _HEX_DIGITS:
            raise ValueError(f"not hex: character {char!r} at digit {i + 1} of {shown(text)}")
    if len(cleaned) % 2:
        raise ValueError(
            f"odd number of hex digits ({len(cleaned)}) in {shown(text)}: a byte is two digits"
        )
    return bytes.fromhex(cleaned)


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
    expected: tuple[type[Exception], ...] = (*decoder.errors, ValueError)
    status = 0
    for i, text in enumerate(args.frames, 1):
        try:
            result = decoder.decode(text, args)
        except DecodeUsageError as exc:
            print(f"bmslink decode: {_one_line(exc)}", file=sys.stderr)
            return 2
        except expected as exc:
            print(f"bmslink decode: frame {i}: {_one_line(exc)}", file=sys.stderr)
            status = 1
            continue
        except Exception as exc:  # a decoder bug: still one line, and the next frames decode
            print(
                f"bmslink decode: frame {i}: decoder bug ({type(exc).__name__}: {_one_line(exc)})"
                f" on {shown(text)}; please report it",
                file=sys.stderr,
            )
            status = 1
            continue
        sys.stdout.write(msgspec.json.encode(result).decode() + "\n")
    return status


def _one_line(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    name = type(exc).__name__
    if isinstance(exc, DecodeUsageError) or name == "ValueError":
        return text.replace("\n", " ")
    return f"{name}: {text}".replace("\n", " ")
