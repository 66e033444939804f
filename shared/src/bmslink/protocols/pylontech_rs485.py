"""Pylontech LV RS485 codec (PYLON low-voltage protocol V3.3): pure functions, no I/O.

Wire frame (PYLON LV V3.3 §2.2-2.3, reference doc ``pylontech-rs485.md`` §2)::

    ~ VER ADR CID1 CID2/RTN LENGTH INFO CHKSUM \\r
      2   2   2    2        4      LENID 4       (ASCII hex characters)

* LENGTH = LCHKSUM (4 bits) | LENID (12 bits, number of INFO *characters*), doc §3.
* CHKSUM = (-sum of the ASCII codes after ``~`` up to CHKSUM) & 0xFFFF, doc §4.
* Responses carry a return code (RTN, doc §5) in the CID2 position.

This module builds requests/responses, parses and validates frames (doc §11 steps 1-6) and
decodes/encodes the 0x42 analog values (doc §8.4, §10.4). Everything it raises derives from
:class:`PylontechError` (itself a ``ValueError``).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Final, cast

from bmslink.protocols.fields import Field, decode_fields, encode_fields, table_size

__all__ = [
    "CID1_BATTERY",
    "DEFAULT_VER",
    "AnalogValues",
    "ChecksumError",
    "Cid2",
    "EchoError",
    "Frame",
    "FrameError",
    "LengthChecksumError",
    "LengthError",
    "ModuleAnalog",
    "PayloadError",
    "PylontechError",
    "Rtn",
    "RtnError",
    "build_frame",
    "build_request",
    "build_response",
    "decode_analog",
    "encode_analog",
    "frame_checksum",
    "length_checksum",
    "parse_frame",
    "parse_response",
]

# ---------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------


class PylontechError(ValueError):
    """Base class of every error this codec raises (a ``ValueError``)."""


class FrameError(PylontechError):
    """Malformed frame: missing SOI/EOI, non-hex character, odd length, too short/truncated,
    stray LF, or (from :func:`parse_response`) not a reply to the request (ADR/CID1/VER)."""


class EchoError(FrameError):
    """The "RTN" byte is not a V3.3 return code (doc §5): an echo of a request or garbage."""


class LengthChecksumError(PylontechError):
    """LCHKSUM (high nibble of LENGTH) does not match LENID (V3.3 §2.3.2, doc §3)."""


class LengthError(PylontechError):
    """LENID is odd, too large, or does not match the number of INFO characters received."""


class ChecksumError(PylontechError):
    """CHKSUM does not match the characters received (V3.3 §2.3.3, doc §4)."""


class PayloadError(PylontechError):
    """INFO does not decode: bad count or P, truncated module block, trailing bytes, or a
    value that cannot be encoded."""


class Rtn(IntEnum):
    """Return codes of a response (V3.3 §2.5.2, doc §5)."""

    NORMAL = 0x00
    VER_ERROR = 0x01
    CHKSUM_ERROR = 0x02
    LCHKSUM_ERROR = 0x03
    CID2_INVALID = 0x04
    COMMAND_FORMAT_ERROR = 0x05
    INVALID_DATA = 0x06
    ADR_ERROR = 0x90
    INTERNAL_COMMUNICATION_ERROR = 0x91


# rtn -> (description, retryable) per doc §5 / §10.3 (04/05/06/90 are never retried).
_RTN_INFO: Final[dict[int, tuple[str, bool]]] = {
    Rtn.NORMAL: ("normal", False),
    Rtn.VER_ERROR: ("VER error (check the dialect's VER setting)", False),
    Rtn.CHKSUM_ERROR: ("CHKSUM error (the pack saw a corrupted request)", True),
    Rtn.LCHKSUM_ERROR: ("LCHKSUM error (the pack saw a corrupted request)", True),
    Rtn.CID2_INVALID: ("CID2 invalid: unsupported command", False),
    Rtn.COMMAND_FORMAT_ERROR: ("command format error", False),
    Rtn.INVALID_DATA: ("invalid data (INFO)", False),
    Rtn.ADR_ERROR: ("ADR error: no pack at this address", False),
    Rtn.INTERNAL_COMMUNICATION_ERROR: ("internal (master<->slave) communication error", True),
}
_RTN_CODES: Final[frozenset[int]] = frozenset(int(r) for r in Rtn)


class RtnError(PylontechError):
    """A well-formed reply whose RTN is not 0 (V3.3 §2.5.2, doc §5).

    Attributes:
        rtn: the raw return code (one of :class:`Rtn`, never 0).
        name: the :class:`Rtn` member name, e.g. ``"CID2_INVALID"``.
        description: human-readable meaning from the RTN table.
        retryable: True for 0x02/0x03/0x91 (retry once / later), False otherwise.
        frame: the parsed reply.
    """

    def __init__(self, rtn: int, frame: Frame | None = None) -> None:
        self.rtn = rtn
        self.name = Rtn(rtn).name
        self.description, self.retryable = _RTN_INFO[rtn]
        self.frame = frame
        where = f" from ADR 0x{frame.adr:02X}" if frame is not None else ""
        super().__init__(
            f"RTN 0x{rtn:02X} {self.name}{where}: {self.description}; expected RTN 0x00"
        )

    def __reduce__(self) -> tuple[type[RtnError], tuple[int, Frame | None]]:
        return (type(self), (self.rtn, self.frame))


_combined_errors: dict[tuple[type[PylontechError], ...], type[PylontechError]] = {}


def _integrity_error(
    failures: list[tuple[type[PylontechError], str]],
) -> PylontechError:
    """One exception for one or more failed integrity checks.

    When several checks fail (e.g. an altered LCHKSUM also breaks CHKSUM), the exception is an
    instance of every failed check's class, so ``except ChecksumError`` and
    ``except LengthChecksumError`` both catch it; the message lists every failure.
    """
    classes = tuple(dict.fromkeys(cls for cls, _ in failures))
    message = "; ".join(msg for _, msg in failures)
    if len(classes) == 1:
        return classes[0](message)
    cls = _combined_errors.get(classes)
    if cls is None:
        name = "And".join(c.__name__ for c in classes)
        cls = cast(type[PylontechError], type(name, classes, {"__module__": __name__}))
        _combined_errors[classes] = cls
    return cls(message)


# ---------------------------------------------------------------------------------------------
# Constants
# ---------------------------------------------------------------------------------------------

CID1_BATTERY: Final = 0x46
"""CID1 of every Pylontech battery frame ("battery data", V3.3 §2.2)."""

DEFAULT_VER: Final = 0x20
"""VER sent by bmslink and seen in every real Pylontech frame (doc §15)."""


class Cid2(IntEnum):
    """Command codes (CID2 of a request), V3.3 §2.5.1 / doc §6."""

    ANALOG = 0x42
    ALARM = 0x44
    SYSTEM_PARAMETERS = 0x47
    PROTOCOL_VERSION = 0x4F
    MANUFACTURER_INFO = 0x51
    CHARGE_DISCHARGE_MANAGEMENT = 0x92
    SERIAL_NUMBER = 0x93
    SET_CHARGE_DISCHARGE_MANAGEMENT = 0x94
    TURN_OFF_MODULE = 0x95
    FIRMWARE_VERSION = 0x96


# Request INFO defined by V3.3 (doc §6): one byte = ADR, or nothing.
_INFO_IS_ADR: Final = frozenset({0x42, 0x44, 0x92, 0x93, 0x95, 0x96})
_INFO_IS_EMPTY: Final = frozenset({0x47, 0x4F, 0x51})

_SOI: Final = 0x7E  # "~"
_EOI: Final = 0x0D  # CR
_LF: Final = 0x0A
_HEX_DIGITS: Final = b"0123456789ABCDEFabcdef"
_HEADER_CHARS: Final = 12  # VER ADR CID1 CID2 LENGTH
_MIN_FRAME: Final = 18  # SOI + 12 + 4 (CHKSUM) + EOI
_MAX_LENID: Final = 0xFFF
_MAX_INFO_BYTES: Final = _MAX_LENID // 2  # 2047 (LENID must be even)

# ---------------------------------------------------------------------------------------------
# Frame layer
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Frame:
    """A parsed (or to-be-built) frame. PYLON LV V3.3 §2.2, doc §2.

    Attributes:
        ver: protocol version byte (0x20 for Pylontech).
        adr: device address (0x10*group + n, doc §7).
        cid1: 0x46 (:data:`CID1_BATTERY`) for battery data.
        cid2: command code in a request, return code (RTN, doc §5) in a response.
        info: the decoded INFO bytes (``LENID / 2`` bytes).
    """

    ver: int
    adr: int
    cid1: int
    cid2: int
    info: bytes

    @property
    def rtn(self) -> int:
        """Alias of ``cid2`` for responses."""
        return self.cid2

    def to_bytes(self) -> bytes:
        """The wire form (same as :func:`build_frame` with these fields)."""
        return build_frame(self.ver, self.adr, self.cid1, self.cid2, self.info)


def length_checksum(lenid: int) -> int:
    """LCHKSUM for a LENID: ``(-(d2 + d1 + d0)) & 0xF`` over its three hex digits.

    V3.3 §2.3.2, doc §3 (always masked to 4 bits: LENID 0x0F1 -> 0, never 16).

    Raises:
        LengthError: ``lenid`` outside 0..0xFFF.
    """
    if not 0 <= lenid <= _MAX_LENID:
        raise LengthError(f"LENID must be 0..0xFFF, got {lenid}")
    return -((lenid >> 8) + ((lenid >> 4) & 0xF) + (lenid & 0xF)) & 0xF


def frame_checksum(body: bytes) -> int:
    """CHKSUM of ``body`` = the ASCII characters between SOI and CHKSUM, as sent/received.

    ``(-sum(body)) & 0xFFFF`` (V3.3 §2.3.3, doc §4); no case normalisation.
    """
    return -sum(body) & 0xFFFF


def _check_byte(name: str, value: int) -> None:
    if not 0 <= value <= 0xFF:
        raise FrameError(f"{name} must be a byte 0..255, got {value}")


def build_frame(ver: int, adr: int, cid1: int, cid2: int, info: bytes = b"") -> bytes:
    """Build the wire frame ``~VERADRCID1CID2LENGTHINFOCHKSUM\\r`` in uppercase hex.

    ``info`` is the decoded INFO (at most 2047 bytes, LENID = 2 * len(info)).
    V3.3 §2.2-2.3, doc §2-4.

    Raises:
        FrameError: a header value is not a byte.
        LengthError: INFO longer than 2047 bytes.
    """
    _check_byte("VER", ver)
    _check_byte("ADR", adr)
    _check_byte("CID1", cid1)
    _check_byte("CID2", cid2)
    if len(info) > _MAX_INFO_BYTES:
        raise LengthError(f"INFO must be at most {_MAX_INFO_BYTES} bytes, got {len(info)}")
    lenid = 2 * len(info)
    length = (length_checksum(lenid) << 12) | lenid
    body = b"%02X%02X%02X%02X%04X%s" % (
        ver,
        adr,
        cid1,
        cid2,
        length,
        bytes(info).hex().upper().encode(),
    )
    return b"~%s%04X\r" % (body, frame_checksum(body))


def build_request(adr: int, cid2: int, info: bytes | None = None, ver: int = DEFAULT_VER) -> bytes:
    """Build a request to the battery at ``adr`` (CID1 0x46).

    When ``info`` is None the INFO V3.3 defines for the command is used (doc §6): one byte
    = ``adr`` for 0x42/0x44/0x92/0x93/0x95/0x96, nothing for 0x47/0x4F/0x51. For the whole
    stack (0x42/0x44 only, doc §7.1) pass ``info=b"\\xff"``.

    Raises:
        PylontechError: ``info`` is None for a command with no V3.3 default (0x94, unknown).
        FrameError / LengthError: as :func:`build_frame`.
    """
    if info is None:
        if cid2 in _INFO_IS_ADR:
            _check_byte("ADR", adr)
            info = bytes((adr,))
        elif cid2 in _INFO_IS_EMPTY:
            info = b""
        else:
            raise PylontechError(f"CID2 0x{cid2:02X} has no default request INFO; pass info=")
    return build_frame(ver, adr, CID1_BATTERY, cid2, info)


def build_response(adr: int, info: bytes, rtn: int = Rtn.NORMAL, ver: int = DEFAULT_VER) -> bytes:
    """Build a battery reply (RTN in the CID2 position, CID1 0x46). Used by the simulator.

    Error replies conventionally carry an empty INFO (doc §5: ``~200246040000FDAE``).
    """
    return build_frame(ver, adr, CID1_BATTERY, rtn, info)


def parse_frame(raw: bytes) -> Frame:
    """Parse and verify one wire frame; does not interpret RTN.

    Checks (doc §11 steps 1-3): SOI ``~``, EOI CR (a trailing LF is refused: Pylontech
    frames never contain one, doc §2), only hex digits (either case) in between, an even
    number of them and at least 18 characters; then LCHKSUM, LENID (even, equal to the
    number of INFO characters) and CHKSUM computed over the characters exactly as received.

    Raises:
        FrameError: SOI/EOI/LF/non-hex/odd length/too short.
        LengthChecksumError, LengthError, ChecksumError: integrity failures. When several
            fail, the raised exception is an instance of each failing class.
    """
    raw = bytes(raw)
    n = len(raw)
    if n == 0:
        raise FrameError(f"empty frame: expected at least {_MIN_FRAME} bytes, got 0")
    if raw[0] != _SOI:
        raise FrameError(f"expected SOI '~' (0x7E) at byte 0, got 0x{raw[0]:02X}")
    if raw[-1] != _EOI:
        if raw[-1] == _LF and n >= 2 and raw[-2] == _EOI:
            raise FrameError("trailing LF after EOI: Pylontech frames end with CR only")
        raise FrameError(f"expected EOI CR (0x0D) as last byte, got 0x{raw[-1]:02X} (truncated?)")
    if n < _MIN_FRAME:
        raise FrameError(f"frame too short: expected at least {_MIN_FRAME} bytes, got {n}")
    body = raw[1:-1]
    stray = body.translate(None, _HEX_DIGITS)
    if stray:
        pos = next(i for i, c in enumerate(body) if c not in _HEX_DIGITS)
        raise FrameError(
            f"non-hex character {bytes((body[pos],))!r} at byte {pos + 1}; "
            "expected only 0-9/A-F between SOI and EOI"
        )
    if len(body) % 2:
        raise FrameError(f"odd number of hex characters between SOI and EOI: {len(body)}")
    data = bytes.fromhex(body.decode("ascii"))
    ver, adr, cid1, cid2 = data[0], data[1], data[2], data[3]
    length = (data[4] << 8) | data[5]
    lenid = length & _MAX_LENID
    lchksum = length >> 12
    info_chars = len(body) - _HEADER_CHARS - 4

    failures: list[tuple[type[PylontechError], str]] = []
    expected_l = length_checksum(lenid)
    if lchksum != expected_l:
        failures.append(
            (
                LengthChecksumError,
                f"LCHKSUM mismatch for LENID 0x{lenid:03X}: expected 0x{expected_l:X}, "
                f"got 0x{lchksum:X}",
            )
        )
    if lenid % 2:
        failures.append((LengthError, f"LENID 0x{lenid:03X} is odd; expected an even count"))
    elif lenid != info_chars:
        failures.append(
            (LengthError, f"LENID says {lenid} INFO characters, frame holds {info_chars}")
        )
    expected_c = frame_checksum(body[:-4])
    got_c = int(body[-4:], 16)
    if got_c != expected_c:
        failures.append(
            (ChecksumError, f"CHKSUM mismatch: expected {expected_c:04X}, got {got_c:04X}")
        )
    if failures:
        raise _integrity_error(failures)
    return Frame(ver, adr, cid1, cid2, data[6:-2])


def parse_response(raw: bytes, request: Frame | None = None) -> Frame:
    """Parse a battery reply: :func:`parse_frame` plus RTN and addressing (doc §5, §11 4-6).

    Args:
        raw: the wire frame.
        request: the request it answers (e.g. ``parse_frame(build_request(...))``). When
            given, the reply's ADR and CID1 must equal the request's, and (except for 0x4F,
            where "battery ignores VER") so must VER.

    Raises:
        EchoError (a FrameError): the RTN byte is not a §5 return code (echo / not a reply).
        FrameError: ADR/CID1/VER do not match the request; or CID1 is not 0x46 without one.
        RtnError: RTN != 0 (carries ``rtn``, ``name``, ``retryable``).
        plus everything :func:`parse_frame` raises.
    """
    frame = parse_frame(raw)
    if frame.cid2 not in _RTN_CODES:
        hint = ""
        if request is not None and frame.cid2 == request.cid2 and frame.adr == request.adr:
            hint = " (echo of the request)"
        raise EchoError(
            f"RTN 0x{frame.cid2:02X} is not a return code (expected one of "
            f"{', '.join(f'0x{c:02X}' for c in sorted(_RTN_CODES))}): not a reply{hint}"
        )
    want_cid1 = CID1_BATTERY if request is None else request.cid1
    if request is not None and frame.adr != request.adr:
        raise FrameError(
            f"reply from ADR 0x{frame.adr:02X}, expected ADR 0x{request.adr:02X} of the request"
        )
    if frame.cid1 != want_cid1:
        raise FrameError(f"CID1 0x{frame.cid1:02X}, expected 0x{want_cid1:02X}")
    if frame.cid2 != Rtn.NORMAL:
        raise RtnError(frame.cid2, frame)
    if request is not None and request.cid2 != Cid2.PROTOCOL_VERSION and frame.ver != request.ver:
        raise FrameError(f"reply VER 0x{frame.ver:02X}, expected 0x{request.ver:02X}")
    return frame


# ---------------------------------------------------------------------------------------------
# 0x42 analog values (V3.3 p.14-15, doc §8.4)
# ---------------------------------------------------------------------------------------------

_TEMP_ZERO_RAW: Final = 2731  # 0.1 K at 0 °C
_P_SHORT: Final = 2  # user-defined items: 16-bit capacities
_P_LONG: Final = 4  # user-defined items: 24-bit capacities follow
_U16_SENTINEL: Final = 0xFFFF

#: Fixed part of a module block after the temperatures, datasheet order (doc §8.4), offsets
#: relative to ``c = 2 + 2M + 2N``. The last two fields exist only when P = 4.
MODULE_TAIL_FIELDS: Final[tuple[Field, ...]] = (
    Field("current", 0, 2, True, 0.1, "A", "pack current, 100 mA, positive = charging"),
    Field("voltage", 2, 2, False, 0.001, "V", "module voltage, mV"),
    Field("remaining_capacity_1", 4, 2, False, 0.001, "Ah", "remaining, mAh; 0xFFFF if P=4"),
    Field("user_defined", 6, 1, False, 1.0, "", "user-defined item count P: 2 or 4"),
    Field("full_capacity_1", 7, 2, False, 0.001, "Ah", "total capacity, mAh; 0xFFFF if P=4"),
    Field("cycles", 9, 2, False, 1.0, "", "cycle count"),
    Field("remaining_capacity_2", 11, 3, False, 0.001, "Ah", "remaining, mAh (P=4 only)"),
    Field("full_capacity_2", 14, 3, False, 0.001, "Ah", "total capacity, mAh (P=4 only)"),
)
_TAIL_BASE: Final = MODULE_TAIL_FIELDS[:6]
_TAIL_EXT: Final = MODULE_TAIL_FIELDS[6:]
_TAIL_BASE_SIZE: Final = table_size(_TAIL_BASE)  # 11
_TAIL_EXT_SIZE: Final = table_size(MODULE_TAIL_FIELDS)  # 17


@dataclass(frozen=True, slots=True)
class ModuleAnalog:
    """One module block of a 0x42 reply, in SI/schema units (doc §8.4).

    Attributes:
        cell_voltages: cell voltages in V (M values; 15 on US2000/3000/5000, 8 on UP2500).
        temperatures: °C, in V3.3 order: BMS board, cells 1-4, 5-8, 9-12, 13-15(16),
            then MOSFET when a 6th sensor is present (US5000).
        current: A, positive = charging, resolution 0.1 A.
        voltage: module voltage in V (resolution 1 mV).
        remaining_capacity: Ah (1 mAh resolution), from the 16-bit field when P = 2 and the
            24-bit field when P = 4.
        full_capacity: Ah, same rule.
        cycles: cycle count.
        user_defined: P, the user-defined item count (2 or 4) of this block.
    """

    cell_voltages: tuple[float, ...]
    temperatures: tuple[float, ...]
    current: float
    voltage: float
    remaining_capacity: float
    full_capacity: float
    cycles: int
    user_defined: int = _P_SHORT

    @property
    def soc(self) -> float | None:
        """State of charge in % = remaining / full * 100 (not transmitted; None if full is 0).

        Can exceed 100 when the BMS reports remaining > full (seen on a real US3000).
        """
        if self.full_capacity <= 0:
            return None
        return self.remaining_capacity / self.full_capacity * 100.0

    @property
    def power(self) -> float:
        """voltage * current in W (positive = charging)."""
        return self.voltage * self.current


@dataclass(frozen=True, slots=True)
class AnalogValues:
    """Decoded INFO of a 0x42 reply (doc §8.4).

    Attributes:
        info_flag: INFOFLAG (bit 0 unread alarm change, bit 4 unread switching change, §8.1).
        command_value: ADR echo for a per-address reply, module count K for an INFO=FF reply.
        modules: one :class:`ModuleAnalog` per block, in wire order.
    """

    info_flag: int
    command_value: int
    modules: tuple[ModuleAnalog, ...]


def _decode_module(info: bytes, pos: int, index: int) -> tuple[ModuleAnalog, int]:
    """Decode the module block at ``pos``; return it and the offset after it."""
    n_info = len(info)
    where = f"module {index + 1} at INFO offset {pos}"
    if pos >= n_info:
        raise PayloadError(f"{where}: truncated, no cell count byte (INFO has {n_info} bytes)")
    m = info[pos]
    t_pos = pos + 1 + 2 * m
    if t_pos >= n_info:
        raise PayloadError(
            f"{where}: truncated, {m} cells need {t_pos + 1 - pos} bytes up to the "
            f"temperature count, only {n_info - pos} left"
        )
    n = info[t_pos]
    c = t_pos + 1 + 2 * n
    if c + _TAIL_BASE_SIZE > n_info:
        raise PayloadError(
            f"{where}: truncated, {m} cells and {n} temperatures need at least "
            f"{c + _TAIL_BASE_SIZE - pos} bytes, only {n_info - pos} left"
        )
    cells = struct.unpack_from(f">{m}H", info, pos + 1)
    temps = struct.unpack_from(f">{n}h", info, t_pos + 1)
    tail = decode_fields(_TAIL_BASE, info, c, error=PayloadError)
    p = int(tail["user_defined"])
    if p == _P_SHORT:
        end = c + _TAIL_BASE_SIZE
        remaining, full = tail["remaining_capacity_1"], tail["full_capacity_1"]
    elif p == _P_LONG:
        end = c + _TAIL_EXT_SIZE
        if end > n_info:
            raise PayloadError(
                f"{where}: truncated, P=4 block needs {end - pos} bytes, only {n_info - pos} left"
            )
        ext = decode_fields(_TAIL_EXT, info, c, error=PayloadError)
        remaining, full = ext["remaining_capacity_2"], ext["full_capacity_2"]
    else:
        raise PayloadError(
            f"{where}: user-defined item count P={p}, expected 2 or 4 (block length unknown)"
        )
    module = ModuleAnalog(
        cell_voltages=tuple(v / 1000 for v in cells),
        temperatures=tuple((t - _TEMP_ZERO_RAW) / 10 for t in temps),
        current=float(tail["current"]),
        voltage=float(tail["voltage"]),
        remaining_capacity=float(remaining),
        full_capacity=float(full),
        cycles=int(tail["cycles"]),
        user_defined=p,
    )
    return module, end


def decode_analog(info: bytes, *, stack: bool | None = None) -> AnalogValues:
    """Decode the INFO of a 0x42 reply (PYLON LV V3.3 p.14-15; doc §8.4, §10.4, §11 step 7).

    INFO = INFOFLAG, command value, module block(s). Every block is walked on its own
    (cell count M, temperature count N and user-defined count P may differ between blocks;
    P = 2 -> 16-bit capacities, P = 4 -> 24-bit capacities, anything else is refused). The
    blocks must consume INFO exactly: trailing bytes are an error (doc §10.4, §11).

    Args:
        info: decoded INFO bytes (``Frame.info``).
        stack: True for a reply to INFO=FF (command value = module count K, K >= 0 blocks);
            False for a per-address reply (command value = ADR, exactly one block);
            None to auto-detect: one block that ends INFO -> per-address (or K = 1);
            otherwise a stack reply of exactly ``command value`` blocks. An ADR 2 reply
            (command value 2, one block) is thus never taken for a 2-module stack.

    Raises:
        PayloadError: INFO shorter than 2 bytes, truncated block, P not 2/4, module count
            not matching the command value, trailing bytes.
    """
    info = bytes(info)
    if len(info) < 2:
        raise PayloadError(
            f"0x42 INFO needs at least 2 bytes (INFOFLAG, command value), got {len(info)}"
        )
    flag, command_value = info[0], info[1]
    n_info = len(info)
    modules: list[ModuleAnalog] = []
    pos = 2
    if stack is None:
        if n_info == 2:
            raise PayloadError("0x42 INFO holds no module block (2 bytes)")
        module, pos = _decode_module(info, pos, 0)
        modules.append(module)
        first_end = pos
        if pos < n_info:
            if command_value <= 1:
                raise PayloadError(
                    f"{n_info - pos} trailing bytes after the only module block "
                    f"(command value {command_value}); INFO is {n_info} bytes, block ends at {pos}"
                )
            try:
                while len(modules) < command_value:
                    module, pos = _decode_module(info, pos, len(modules))
                    modules.append(module)
            except PayloadError as exc:
                raise PayloadError(
                    f"{n_info - first_end} trailing bytes after the first module block "
                    f"(ends at {first_end} of {n_info}), and not a stack reply of "
                    f"{command_value} modules either: {exc}"
                ) from exc
    elif stack:
        while len(modules) < command_value:
            module, pos = _decode_module(info, pos, len(modules))
            modules.append(module)
    else:
        module, pos = _decode_module(info, pos, 0)
        modules.append(module)
    if pos != n_info:
        kind = f"{len(modules)} module block(s)"
        raise PayloadError(
            f"{n_info - pos} trailing bytes after {kind}: INFO is {n_info} bytes, "
            f"blocks end at {pos} (command value {command_value})"
        )
    return AnalogValues(flag, command_value, tuple(modules))


def _encode_module(module: ModuleAnalog, index: int) -> bytes:
    where = f"module {index + 1}"
    m, n = len(module.cell_voltages), len(module.temperatures)
    if m > 0xFF or n > 0xFF:
        raise PayloadError(f"{where}: at most 255 cells/temperatures, got {m}/{n}")
    try:
        cells = struct.pack(f">B{m}H", m, *(round(v * 1000) for v in module.cell_voltages))
        temps = struct.pack(
            f">B{n}h", n, *(round(t * 10) + _TEMP_ZERO_RAW for t in module.temperatures)
        )
    except struct.error as exc:
        raise PayloadError(f"{where}: cell voltage or temperature out of range: {exc}") from exc
    remaining_mah = round(module.remaining_capacity * 1000)
    full_mah = round(module.full_capacity * 1000)
    long_form = module.user_defined == _P_LONG or max(remaining_mah, full_mah) > _U16_SENTINEL
    if module.user_defined not in (_P_SHORT, _P_LONG):
        raise PayloadError(f"{where}: user_defined must be 2 or 4, got {module.user_defined}")
    values: dict[str, float | int] = {
        "current": module.current,
        "voltage": module.voltage,
        "user_defined": _P_LONG if long_form else _P_SHORT,
        "cycles": module.cycles,
    }
    if long_form:
        sentinel = _U16_SENTINEL / 1000
        values |= {
            "remaining_capacity_1": sentinel,
            "full_capacity_1": sentinel,
            "remaining_capacity_2": module.remaining_capacity,
            "full_capacity_2": module.full_capacity,
        }
        tail = encode_fields(MODULE_TAIL_FIELDS, values, error=PayloadError)
    else:
        values |= {
            "remaining_capacity_1": module.remaining_capacity,
            "full_capacity_1": module.full_capacity,
        }
        tail = encode_fields(_TAIL_BASE, values, error=PayloadError)
    return cells + temps + tail


def encode_analog(info_flag: int, command_value: int, modules: Sequence[ModuleAnalog]) -> bytes:
    """Encode 0x42 reply INFO (inverse of :func:`decode_analog`; doc §8.4). For the simulator.

    Each module is written with P = 4 (24-bit capacities, 16-bit fields 0xFFFF) when its
    ``user_defined`` is 4 or a capacity exceeds 65.535 Ah, else P = 2. Values are rounded to
    the wire resolution (1 mV, 0.1 °C, 0.1 A, 1 mAh). For a per-address reply pass
    ``command_value = adr`` and one module, for an INFO=FF reply ``len(modules)``.

    Raises:
        PayloadError: a value does not fit its field, flag/command value not a byte, or the
            INFO would exceed 2047 bytes.
    """
    if not 0 <= info_flag <= 0xFF or not 0 <= command_value <= 0xFF:
        raise PayloadError(
            f"INFOFLAG and command value must be bytes, got {info_flag}, {command_value}"
        )
    out = bytes((info_flag, command_value)) + b"".join(
        _encode_module(module, i) for i, module in enumerate(modules)
    )
    if len(out) > _MAX_INFO_BYTES:
        raise PayloadError(f"0x42 INFO of {len(out)} bytes exceeds {_MAX_INFO_BYTES}")
    return out
