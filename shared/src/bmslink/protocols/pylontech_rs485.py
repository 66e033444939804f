"""Pylontech LV RS485 codec (PYLON low-voltage protocol V3.3): pure functions, no I/O.

Wire frame (PYLON LV V3.3 §2.2-2.3, reference doc ``pylontech-rs485.md`` §2)::

    ~ VER ADR CID1 CID2/RTN LENGTH INFO CHKSUM \\r
      2   2   2    2        4      LENID 4       (ASCII hex characters)

* LENGTH = LCHKSUM (4 bits) | LENID (12 bits, number of INFO *characters*), doc §3.
* CHKSUM = (-sum of the ASCII codes after ``~`` up to CHKSUM) & 0xFFFF, doc §4.
* Responses carry a return code (RTN, doc §5) in the CID2 position.

This module builds requests/responses, parses and validates frames (doc §11 steps 1-6) and
decodes/encodes every reply a reader needs: 0x4F protocol version (§8.2), 0x51 manufacturer info
(§8.3), 0x42 analog values (§8.4, §10.4), 0x44 alarm info (§8.5), 0x47 system parameters (§8.6),
0x92 charge/discharge management (§8.7), 0x93 serial number (§8.8), 0x96 firmware version
(§8.9), plus the Maple Leaf Beaver dialect (VER 0x21, §12). Non-zero RTNs raise one
:class:`RtnError` subclass per code (§5). Everything it raises derives from
:class:`PylontechError` (itself a ``ValueError``).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Final, cast

import msgspec

from bmslink.protocols.fields import Field, decode_fields, encode_fields, table_size

__all__ = [
    "BEAVER_ADDRESSES",
    "BEAVER_REQUEST_INFO",
    "BEAVER_TAIL_FIELDS",
    "BEAVER_VER",
    "CID1_BATTERY",
    "DEFAULT_VER",
    "MANAGEMENT_FIELDS",
    "RTN_ERRORS",
    "STATE_ABOVE_UPPER",
    "STATE_BELOW_LOWER",
    "STATE_NORMAL",
    "STATE_OTHER_ERROR",
    "SYSTEM_PARAMETER_FIELDS",
    "AddressError",
    "AlarmInfo",
    "AnalogValues",
    "BeaverAnalog",
    "ChecksumError",
    "ChecksumRtnError",
    "Cid2",
    "CommandFormatError",
    "EchoError",
    "FirmwareVersion",
    "Frame",
    "FrameError",
    "InternalCommunicationError",
    "InvalidDataError",
    "LengthChecksumError",
    "LengthChecksumRtnError",
    "LengthError",
    "ManagementInfo",
    "ManufacturerInfo",
    "ModuleAlarm",
    "ModuleAnalog",
    "PayloadError",
    "PylontechError",
    "Rtn",
    "RtnError",
    "SerialNumber",
    "SystemParameters",
    "UnsupportedCommandError",
    "VerRtnError",
    "alarm_codes",
    "build_beaver_request",
    "build_frame",
    "build_request",
    "build_response",
    "decode_alarm",
    "decode_analog",
    "decode_beaver_analog",
    "decode_beaver_system_parameters",
    "decode_firmware_version",
    "decode_management_info",
    "decode_manufacturer_info",
    "decode_serial_number",
    "decode_system_parameters",
    "encode_alarm",
    "encode_analog",
    "encode_beaver_analog",
    "encode_beaver_system_parameters",
    "encode_firmware_version",
    "encode_management_info",
    "encode_manufacturer_info",
    "encode_serial_number",
    "encode_system_parameters",
    "frame_checksum",
    "is_beaver",
    "length_checksum",
    "parse_frame",
    "parse_response",
    "protocol_version",
    "rtn_error",
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


class VerRtnError(RtnError):
    """RTN 0x01: the battery refused the VER byte (wrong dialect, doc §5, §15)."""


class ChecksumRtnError(RtnError):
    """RTN 0x02: the battery saw a corrupted request (CHKSUM); retry once."""


class LengthChecksumRtnError(RtnError):
    """RTN 0x03: the battery saw a corrupted request (LCHKSUM); retry once."""


class UnsupportedCommandError(RtnError):
    """RTN 0x04: CID2 invalid, the battery does not implement the command; do not retry."""


class CommandFormatError(RtnError):
    """RTN 0x05: command format error; do not retry."""


class InvalidDataError(RtnError):
    """RTN 0x06: invalid INFO (e.g. a command value naming another pack); do not retry."""


class AddressError(RtnError):
    """RTN 0x90: ADR error, no pack at this address; do not retry."""


class InternalCommunicationError(RtnError):
    """RTN 0x91: master<->slave communication failed; retry later."""


RTN_ERRORS: Final[dict[int, type[RtnError]]] = {
    0x01: VerRtnError,
    0x02: ChecksumRtnError,
    0x03: LengthChecksumRtnError,
    0x04: UnsupportedCommandError,
    0x05: CommandFormatError,
    0x06: InvalidDataError,
    0x90: AddressError,
    0x91: InternalCommunicationError,
}
"""The :class:`RtnError` subclass raised for each non-zero RTN (doc §5)."""


def rtn_error(rtn: int, frame: Frame | None = None) -> RtnError:
    """The typed :class:`RtnError` subclass instance for a non-zero RTN (doc §5).

    Raises:
        KeyError: ``rtn`` is 0 or not a V3.3 return code.
    """
    return RTN_ERRORS[rtn](rtn, frame)


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


class Frame(msgspec.Struct, frozen=True, gc=False):
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
        raise rtn_error(frame.cid2, frame)
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


class ModuleAnalog(msgspec.Struct, frozen=True, gc=False):
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


class AnalogValues(msgspec.Struct, frozen=True, gc=False):
    """Decoded INFO of a 0x42 reply (doc §8.4).

    Attributes:
        info_flag: INFOFLAG (bit 0 unread alarm change, bit 4 unread switching change, §8.1).
        command_value: ADR echo for a per-address reply, module count K for an INFO=FF reply.
        modules: one :class:`ModuleAnalog` per block, in wire order.
    """

    info_flag: int
    command_value: int
    modules: tuple[ModuleAnalog, ...]


_MV_TO_V: Final = (1000).__rtruediv__  # raw mV -> V, exactly v / 1000
_U24_PAIR: Final = struct.Struct(">HBHB")  # two u24 as (hi16, lo8) pairs
_BLOCK_STRUCTS: dict[tuple[int, int], struct.Struct] = {}


def _block_struct(m: int, n: int) -> struct.Struct:
    """Struct of a module block after its cell count byte, up to the cycle count (P = 2 part):
    M cells, N, N temperatures, current, voltage, remaining 1, P, total 1, cycles."""
    found = _BLOCK_STRUCTS.get((m, n))
    if found is None:
        found = _BLOCK_STRUCTS[(m, n)] = struct.Struct(f">{m}HB{n}hhHHBHH")
    return found


def _decode_module(info: bytes, pos: int, index: int) -> tuple[ModuleAnalog, int]:
    """Decode the module block at ``pos``; return it and the offset after it.

    Layout per :data:`MODULE_TAIL_FIELDS` (decoded with precompiled structs for speed).
    """
    n_info = len(info)
    if pos >= n_info:
        raise PayloadError(
            f"module {index + 1} at INFO offset {pos}: truncated, no cell count byte "
            f"(INFO has {n_info} bytes)"
        )
    m = info[pos]
    t_pos = pos + 1 + 2 * m
    if t_pos >= n_info:
        raise PayloadError(
            f"module {index + 1} at INFO offset {pos}: truncated, {m} cells need "
            f"{t_pos + 1 - pos} bytes up to the temperature count, only {n_info - pos} left"
        )
    n = info[t_pos]
    c = t_pos + 1 + 2 * n
    if c + _TAIL_BASE_SIZE > n_info:
        raise PayloadError(
            f"module {index + 1} at INFO offset {pos}: truncated, {m} cells and {n} "
            f"temperatures need at least {c + _TAIL_BASE_SIZE - pos} bytes, "
            f"only {n_info - pos} left"
        )
    values = _block_struct(m, n).unpack_from(info, pos + 1)
    current, voltage, remaining, p, full, cycles = values[-6:]
    if p == _P_SHORT:
        end = c + _TAIL_BASE_SIZE
    elif p == _P_LONG:
        end = c + _TAIL_EXT_SIZE
        if end > n_info:
            raise PayloadError(
                f"module {index + 1} at INFO offset {pos}: truncated, P=4 block needs "
                f"{end - pos} bytes, only {n_info - pos} left"
            )
        r_hi, r_lo, f_hi, f_lo = _U24_PAIR.unpack_from(info, c + _TAIL_BASE_SIZE)
        remaining = (r_hi << 8) | r_lo
        full = (f_hi << 8) | f_lo
    else:
        raise PayloadError(
            f"module {index + 1} at INFO offset {pos}: user-defined item count P={p}, "
            "expected 2 or 4 (block length unknown)"
        )
    module = ModuleAnalog(
        cell_voltages=tuple(map(_MV_TO_V, values[:m])),
        temperatures=tuple([(t - _TEMP_ZERO_RAW) / 10 for t in values[m + 1 : m + 1 + n]]),
        current=current / 10,
        voltage=voltage / 1000,
        remaining_capacity=remaining / 1000,
        full_capacity=full / 1000,
        cycles=cycles,
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


# ---------------------------------------------------------------------------------------------
# 0x4F protocol version (doc §8.2)
# ---------------------------------------------------------------------------------------------


def protocol_version(frame: Frame) -> tuple[int, int]:
    """The protocol version carried by a 0x4F reply: the reply's VER byte as (major, minor).

    0x20 -> (2, 0) for every real Pylontech pack, 0x21 -> (2, 1) for the Maple Leaf Beaver
    (doc §8.2, §15). The reply's INFO is empty (LENID 0).

    Raises:
        PayloadError: the reply carries INFO.
    """
    if frame.info:
        raise PayloadError(f"0x4F reply INFO must be empty, got {len(frame.info)} bytes")
    return frame.ver >> 4, frame.ver & 0xF


# ---------------------------------------------------------------------------------------------
# 0x51 manufacturer info (V3.3 p.13-14, doc §8.3)
# ---------------------------------------------------------------------------------------------

_NAME_SIZE: Final = 10
_SOFTWARE_SIZE: Final = 2
_MANUFACTURER_SIZE: Final = 20
_MANUFACTURER_INFO_SIZE: Final = _NAME_SIZE + _SOFTWARE_SIZE + _MANUFACTURER_SIZE  # 32


def _ascii_field(raw: bytes, what: str, strip: bytes) -> str:
    text = raw.rstrip(strip)
    if any(c < 0x20 or c > 0x7E for c in text):
        raise PayloadError(f"{what} {raw!r} holds non-printable bytes")
    return text.decode("ascii")


@dataclass(frozen=True, slots=True)
class ManufacturerInfo:
    """Decoded 0x51 reply (doc §8.3). The **master** answers for the whole stack (§7.4), so
    this is the master's identity at any address.

    Attributes:
        device_name: e.g. ``"US2000C"`` (trailing NUL padding removed).
        software_version: (major, minor), e.g. (1, 7).
        manufacturer: e.g. ``"Pylon"`` (trailing ``-`` padding removed).
    """

    device_name: str
    software_version: tuple[int, int]
    manufacturer: str

    @property
    def software(self) -> str:
        """``"major.minor"``, e.g. ``"1.7"``."""
        return f"{self.software_version[0]}.{self.software_version[1]}"


def decode_manufacturer_info(info: bytes) -> ManufacturerInfo:
    """Decode 0x51 reply INFO: name (10 ASCII, NUL-padded), software version (2 bytes),
    manufacturer (20 ASCII, ``-``-padded); 32 bytes, no INFOFLAG (doc §8.3).

    Raises:
        PayloadError: not exactly 32 bytes, or non-printable characters.
    """
    if len(info) != _MANUFACTURER_INFO_SIZE:
        raise PayloadError(f"0x51 INFO must be {_MANUFACTURER_INFO_SIZE} bytes, got {len(info)}")
    return ManufacturerInfo(
        device_name=_ascii_field(info[:_NAME_SIZE], "device name", b"\x00 "),
        software_version=(info[_NAME_SIZE], info[_NAME_SIZE + 1]),
        manufacturer=_ascii_field(info[_NAME_SIZE + _SOFTWARE_SIZE :], "manufacturer", b"-\x00 "),
    )


def encode_manufacturer_info(value: ManufacturerInfo) -> bytes:
    """Encode 0x51 reply INFO (inverse of :func:`decode_manufacturer_info`).

    Raises:
        PayloadError: a name is too long or not ASCII, or a version part is not a byte.
    """
    try:
        name = value.device_name.encode("ascii")
        maker = value.manufacturer.encode("ascii")
    except UnicodeEncodeError as exc:
        raise PayloadError(f"0x51 names must be ASCII: {exc}") from exc
    if len(name) > _NAME_SIZE or len(maker) > _MANUFACTURER_SIZE:
        raise PayloadError(f"0x51 name/manufacturer too long: {value!r}")
    major, minor = value.software_version
    if not (0 <= major <= 0xFF and 0 <= minor <= 0xFF):
        raise PayloadError(f"0x51 software version parts must be bytes: {value!r}")
    return (
        name.ljust(_NAME_SIZE, b"\x00")
        + bytes((major, minor))
        + maker.ljust(_MANUFACTURER_SIZE, b"-")
    )


# ---------------------------------------------------------------------------------------------
# 0x44 alarm info (V3.3 p.17-19, doc §8.5)
# ---------------------------------------------------------------------------------------------

STATE_NORMAL: Final = 0x00
"""Per-item alarm state: normal (doc §8.5)."""
STATE_BELOW_LOWER: Final = 0x01
"""Per-item alarm state: below the lower limit."""
STATE_ABOVE_UPPER: Final = 0x02
"""Per-item alarm state: above the upper limit."""
STATE_OTHER_ERROR: Final = 0xF0
"""Per-item alarm state: other error."""

_ALARM_TAIL: Final = 8  # charge current, module voltage, discharge current, Status1..5


@dataclass(frozen=True, slots=True)
class ModuleAlarm:
    """One module of a 0x44 reply (doc §8.5). States: 0x00 normal, 0x01 below the lower limit,
    0x02 above the upper limit, 0xF0 other error.

    Attributes:
        cell_states: one state per cell (cell 1 first).
        temperature_states: one state per sensor, V3.3 order (BMS board first).
        charge_current_state, module_voltage_state, discharge_current_state: states.
        status1: protection bits (7 module UV, 6 charge OT, 5 discharge OT, 4 discharge OC,
            2 charge OC, 1 cell UV, 0 module OV).
        status2: 3 using battery power, 2 discharge MOSFET on, 1 charge MOSFET on,
            0 pre-charge MOSFET on.
        status3: 7 effective charge current, 6 effective discharge current, 5 heater on,
            3 fully charged, 0 buzzer on.
        status4: bit i = cell i+1 error (> 4.2 V or < 1 V), cells 1-8.
        status5: bit i = cell i+9 error, cells 9-16.
    """

    cell_states: tuple[int, ...]
    temperature_states: tuple[int, ...]
    charge_current_state: int
    module_voltage_state: int
    discharge_current_state: int
    status1: int
    status2: int
    status3: int
    status4: int
    status5: int

    @property
    def charge_mosfet_on(self) -> bool:
        """Status2 bit 1."""
        return bool(self.status2 & 0x02)

    @property
    def discharge_mosfet_on(self) -> bool:
        """Status2 bit 2 (martiby's "ready")."""
        return bool(self.status2 & 0x04)

    @property
    def fully_charged(self) -> bool:
        """Status3 bit 3."""
        return bool(self.status3 & 0x08)

    def raw_status(self) -> dict[str, int]:
        """The raw bytes for ``BatteryState.raw_status``: Status1..5, the three module-level
        states, and bit masks of abnormal cells/sensors (bit i = cell/sensor i+1)."""
        return {
            "status1": self.status1,
            "status2": self.status2,
            "status3": self.status3,
            "status4": self.status4,
            "status5": self.status5,
            "charge_current_state": self.charge_current_state,
            "module_voltage_state": self.module_voltage_state,
            "discharge_current_state": self.discharge_current_state,
            "cell_states_abnormal": sum(1 << i for i, s in enumerate(self.cell_states) if s),
            "temperature_states_abnormal": sum(
                1 << i for i, s in enumerate(self.temperature_states) if s
            ),
        }


@dataclass(frozen=True, slots=True)
class AlarmInfo:
    """Decoded INFO of a 0x44 reply (doc §8.5).

    Attributes:
        data_flag: DATAFLAG (§8.1).
        command_value: ADR echo, or the module count for an INFO=FF reply.
        modules: one :class:`ModuleAlarm` per module.
        trailing: bytes after the last module (US2000C/US3000C send one extra 0x00; ignored).
    """

    data_flag: int
    command_value: int
    modules: tuple[ModuleAlarm, ...]
    trailing: bytes = b""


def _decode_alarm_module(info: bytes, pos: int, index: int) -> tuple[ModuleAlarm, int]:
    n_info = len(info)
    where = f"0x44 module {index + 1} at INFO offset {pos}"
    if pos >= n_info:
        raise PayloadError(f"{where}: truncated, no cell count byte")
    m = info[pos]
    t_pos = pos + 1 + m
    if t_pos >= n_info:
        raise PayloadError(f"{where}: truncated, {m} cell states need {t_pos + 1 - pos} bytes")
    n = info[t_pos]
    tail = t_pos + 1 + n
    end = tail + _ALARM_TAIL
    if end > n_info:
        raise PayloadError(
            f"{where}: truncated, {m} cells and {n} temperatures need {end - pos} bytes, "
            f"only {n_info - pos} left"
        )
    t = info[tail:end]
    module = ModuleAlarm(
        cell_states=tuple(info[pos + 1 : t_pos]),
        temperature_states=tuple(info[t_pos + 1 : tail]),
        charge_current_state=t[0],
        module_voltage_state=t[1],
        discharge_current_state=t[2],
        status1=t[3],
        status2=t[4],
        status3=t[5],
        status4=t[6],
        status5=t[7],
    )
    return module, end


_MAX_ALARM_TRAILING: Final = 2


def decode_alarm(info: bytes, *, stack: bool = False) -> AlarmInfo:
    """Decode the INFO of a 0x44 reply (PYLON LV V3.3 p.17-19, doc §8.5).

    INFO = DATAFLAG, command value, then per module: M, M cell states, N, N temperature
    states, charge current state, module voltage state, discharge current state, Status1..5
    (12 + M + N bytes for one module). Lengths come from M and N, never from the frame
    length. Up to 2 trailing bytes after the last module are accepted and kept in
    ``trailing`` (US2000C/US3000C send 33 bytes where V3.3 says 32).

    Args:
        info: decoded INFO bytes.
        stack: True for a reply to INFO=FF (command value = module count, that many modules).

    Raises:
        PayloadError: shorter than 2 bytes, truncated module, more than 2 trailing bytes.
    """
    info = bytes(info)
    if len(info) < 2:
        raise PayloadError(f"0x44 INFO needs at least 2 bytes, got {len(info)}")
    count = info[1] if stack else 1
    pos = 2
    modules: list[ModuleAlarm] = []
    for i in range(count):
        module, pos = _decode_alarm_module(info, pos, i)
        modules.append(module)
    trailing = info[pos:]
    if len(trailing) > _MAX_ALARM_TRAILING:
        raise PayloadError(
            f"{len(trailing)} trailing bytes after {count} 0x44 module(s): INFO is "
            f"{len(info)} bytes, modules end at {pos}"
        )
    return AlarmInfo(info[0], info[1], tuple(modules), trailing)


def encode_alarm(
    data_flag: int, command_value: int, modules: Sequence[ModuleAlarm], trailing: bytes = b""
) -> bytes:
    """Encode 0x44 reply INFO (inverse of :func:`decode_alarm`). For the simulator.

    Raises:
        PayloadError: a value is not a byte, more than 255 cells/sensors or 2 trailing bytes.
    """
    if len(trailing) > _MAX_ALARM_TRAILING:
        raise PayloadError(f"at most {_MAX_ALARM_TRAILING} trailing bytes, got {len(trailing)}")
    out = bytearray()
    try:
        out += bytes((data_flag, command_value))
        for m in modules:
            out.append(len(m.cell_states))
            out += bytes(m.cell_states)
            out.append(len(m.temperature_states))
            out += bytes(m.temperature_states)
            out += bytes(
                (
                    m.charge_current_state,
                    m.module_voltage_state,
                    m.discharge_current_state,
                    m.status1,
                    m.status2,
                    m.status3,
                    m.status4,
                    m.status5,
                )
            )
    except ValueError as exc:
        raise PayloadError(f"0x44 value is not a byte: {exc}") from exc
    out += trailing
    if len(out) > _MAX_INFO_BYTES:
        raise PayloadError(f"0x44 INFO of {len(out)} bytes exceeds {_MAX_INFO_BYTES}")
    return bytes(out)


#: Status1 bit -> alarm code (protection, doc §8.5).
_STATUS1_ALARMS: Final[tuple[tuple[int, str], ...]] = (
    (0x80, "pack_undervoltage"),
    (0x40, "charge_overtemperature"),
    (0x20, "discharge_overtemperature"),
    (0x10, "discharge_overcurrent"),
    (0x04, "charge_overcurrent"),
    (0x02, "cell_undervoltage"),
    (0x01, "pack_overvoltage"),
)


def alarm_codes(module: ModuleAlarm) -> tuple[list[str], list[str]]:
    """Map one 0x44 module to the stable codes of :mod:`bmslink.alarms` (doc §8.5).

    * alarms: Status1 protection bits (module under/over-voltage -> ``pack_undervoltage`` /
      ``pack_overvoltage``, charge/discharge over-temperature and over-current, cell
      under-voltage) and the Status4/5 cell errors (``cell_fault``);
    * warnings: per-item states: cell below/above -> ``cell_undervoltage`` /
      ``cell_overvoltage``; temperature below/above -> ``cell_undertemperature`` /
      ``cell_overtemperature`` (sensor 1 above -> ``bms_overtemperature``, sensor 6 (MOSFET)
      above -> ``mosfet_overtemperature``); charge/discharge current above ->
      ``charge_overcurrent`` / ``discharge_overcurrent``; module voltage below/above ->
      ``pack_undervoltage`` / ``pack_overvoltage``; 0xF0 (other error) ->
      ``voltage_sensor_fault`` (cells), ``temperature_sensor_fault`` (sensors), ``other``.

    A code that is an alarm is not repeated as a warning. Both lists are sorted.

    Returns:
        (alarms, warnings)
    """
    alarms = {code for bit, code in _STATUS1_ALARMS if module.status1 & bit}
    if module.status4 or module.status5:
        alarms.add("cell_fault")
    warnings: set[str] = set()
    for s in module.cell_states:
        if s == STATE_BELOW_LOWER:
            warnings.add("cell_undervoltage")
        elif s == STATE_ABOVE_UPPER:
            warnings.add("cell_overvoltage")
        elif s != STATE_NORMAL:
            warnings.add("voltage_sensor_fault")
    for j, s in enumerate(module.temperature_states):
        if s == STATE_BELOW_LOWER:
            warnings.add("cell_undertemperature")
        elif s == STATE_ABOVE_UPPER:
            warnings.add(
                "bms_overtemperature"
                if j == 0
                else ("mosfet_overtemperature" if j == 5 else "cell_overtemperature")
            )
        elif s != STATE_NORMAL:
            warnings.add("temperature_sensor_fault")
    for s, below, above in (
        (module.charge_current_state, "other", "charge_overcurrent"),
        (module.module_voltage_state, "pack_undervoltage", "pack_overvoltage"),
        (module.discharge_current_state, "other", "discharge_overcurrent"),
    ):
        if s == STATE_BELOW_LOWER:
            warnings.add(below)
        elif s == STATE_ABOVE_UPPER:
            warnings.add(above)
        elif s != STATE_NORMAL:
            warnings.add("other")
    return sorted(alarms), sorted(warnings - alarms)


# ---------------------------------------------------------------------------------------------
# 0x47 system parameters (V3.3 p.15-16, doc §8.6)
# ---------------------------------------------------------------------------------------------

#: 0x47 fields after INFOFLAG (doc §8.6), offsets relative to INFO byte 1.
SYSTEM_PARAMETER_FIELDS: Final[tuple[Field, ...]] = (
    Field("cell_high_voltage", 0, 2, False, 0.001, "V", "cell high-voltage limit, mV"),
    Field("cell_low_voltage", 2, 2, False, 0.001, "V", "cell low-voltage (alarm), mV"),
    Field("cell_under_voltage", 4, 2, False, 0.001, "V", "cell under-voltage (protect), mV"),
    Field("charge_high_temperature", 6, 2, True, 0.1, "°C", "0.1 K", _TEMP_ZERO_RAW),
    Field("charge_low_temperature", 8, 2, True, 0.1, "°C", "0.1 K", _TEMP_ZERO_RAW),
    Field("charge_current_limit", 10, 2, True, 0.1, "A", "charge current limit, 100 mA"),
    Field("module_high_voltage", 12, 2, False, 0.001, "V", "module high-voltage limit, mV"),
    Field("module_low_voltage", 14, 2, False, 0.001, "V", "module low-voltage limit, mV"),
    Field("module_under_voltage", 16, 2, False, 0.001, "V", "module under-voltage, mV"),
    Field("discharge_high_temperature", 18, 2, True, 0.1, "°C", "0.1 K", _TEMP_ZERO_RAW),
    Field("discharge_low_temperature", 20, 2, True, 0.1, "°C", "0.1 K", _TEMP_ZERO_RAW),
    Field("discharge_current_limit", 22, 2, True, 0.1, "A", "discharge limit, 100 mA, < 0"),
)
_SYSTEM_PARAMETERS_SIZE: Final = table_size(SYSTEM_PARAMETER_FIELDS)  # 24


@dataclass(frozen=True, slots=True)
class SystemParameters:
    """Decoded 0x47 reply (doc §8.6): the pack's fixed alarm/protection limits.

    Attributes:
        info_flag: INFOFLAG (§8.1); 0 for the Beaver (no flag byte, doc §12).
        cell_high_voltage, cell_low_voltage, cell_under_voltage: V.
        charge_high_temperature, charge_low_temperature: °C.
        charge_current_limit: A (positive, 0.1 A resolution).
        module_high_voltage, module_low_voltage, module_under_voltage: V (unsigned mV).
        discharge_high_temperature, discharge_low_temperature: °C.
        discharge_current_limit: A as sent: **negative** for Pylontech (−90.0 A on a US2000C).
    """

    info_flag: int
    cell_high_voltage: float
    cell_low_voltage: float
    cell_under_voltage: float
    charge_high_temperature: float
    charge_low_temperature: float
    charge_current_limit: float
    module_high_voltage: float
    module_low_voltage: float
    module_under_voltage: float
    discharge_high_temperature: float
    discharge_low_temperature: float
    discharge_current_limit: float


def decode_system_parameters(info: bytes) -> SystemParameters:
    """Decode the INFO of a 0x47 reply: INFOFLAG + 12 two-byte fields, 25 bytes, **no command
    value** (doc §8.6; pylontech 0.1.3 gets this wrong, §14). Module voltages are unsigned.

    Raises:
        PayloadError: INFO is not 25 bytes.
    """
    if len(info) != 1 + _SYSTEM_PARAMETERS_SIZE:
        raise PayloadError(
            f"0x47 INFO must be {1 + _SYSTEM_PARAMETERS_SIZE} bytes, got {len(info)}"
        )
    values = decode_fields(SYSTEM_PARAMETER_FIELDS, info, 1, error=PayloadError)
    return SystemParameters(info_flag=info[0], **{k: float(v) for k, v in values.items()})


def _system_parameter_values(value: SystemParameters) -> dict[str, float | int]:
    return {f.name: getattr(value, f.name) for f in SYSTEM_PARAMETER_FIELDS}


def encode_system_parameters(value: SystemParameters) -> bytes:
    """Encode 0x47 reply INFO (inverse of :func:`decode_system_parameters`).

    Raises:
        PayloadError: a value does not fit its field, or the flag is not a byte.
    """
    if not 0 <= value.info_flag <= 0xFF:
        raise PayloadError(f"INFOFLAG must be a byte, got {value.info_flag}")
    body = encode_fields(
        SYSTEM_PARAMETER_FIELDS, _system_parameter_values(value), error=PayloadError
    )
    return bytes((value.info_flag,)) + body


# ---------------------------------------------------------------------------------------------
# 0x92 charge/discharge management (V3.3 p.20-21, doc §8.7)
# ---------------------------------------------------------------------------------------------

MANAGEMENT_FIELDS: Final[tuple[Field, ...]] = (
    Field("command_value", 0, 1, False, 1.0, "", "ADR echo (no INFOFLAG)"),
    Field("charge_voltage_limit", 1, 2, False, 0.001, "V", "CVL, mV"),
    Field("discharge_voltage_limit", 3, 2, False, 0.001, "V", "DVL, mV"),
    Field("charge_current_limit", 5, 2, True, 0.1, "A", "CCL, 100 mA"),
    Field("discharge_current_limit", 7, 2, True, 0.1, "A", "DCL, 100 mA, negative on the wire"),
    Field("status", 9, 1, False, 1.0, "", "bit 7 charge enable, 6 discharge enable, ..."),
)
_MANAGEMENT_SIZE: Final = table_size(MANAGEMENT_FIELDS)  # 10


@dataclass(frozen=True, slots=True)
class ManagementInfo:
    """Decoded 0x92 reply (doc §8.7): the pack's requested charge/discharge limits.

    Attributes:
        command_value: ADR echo.
        charge_voltage_limit: CVL, V.
        discharge_voltage_limit: DVL, V.
        charge_current_limit: CCL, A as sent (positive).
        discharge_current_limit: DCL, A as sent (**negative**, e.g. −80.0).
        status: bit 7 charge enable, 6 discharge enable, 5 charge immediately 1, 4 charge
            immediately 2, 3 full-charge request (V3.3; python-pylontech swaps 5/4, §14).
    """

    command_value: int
    charge_voltage_limit: float
    discharge_voltage_limit: float
    charge_current_limit: float
    discharge_current_limit: float
    status: int

    @property
    def charge_enable(self) -> bool:
        """Status bit 7."""
        return bool(self.status & 0x80)

    @property
    def discharge_enable(self) -> bool:
        """Status bit 6."""
        return bool(self.status & 0x40)

    @property
    def charge_immediately_1(self) -> bool:
        """Status bit 5 (V3.3 "强充1"; SOC 15-19 % on US2000B)."""
        return bool(self.status & 0x20)

    @property
    def charge_immediately_2(self) -> bool:
        """Status bit 4 (V3.3 "强充2"; SOC 9-13 %)."""
        return bool(self.status & 0x10)

    @property
    def full_charge_request(self) -> bool:
        """Status bit 3: SOC has not exceeded 97 % for 30 days."""
        return bool(self.status & 0x08)


def decode_management_info(info: bytes) -> ManagementInfo:
    """Decode the INFO of a 0x92 reply: command value, CVL, DVL, CCL, DCL, status; 10 bytes,
    no INFOFLAG (doc §8.7). Voltages are unsigned mV, currents signed 100 mA.

    Raises:
        PayloadError: INFO is not 10 bytes.
    """
    if len(info) != _MANAGEMENT_SIZE:
        raise PayloadError(f"0x92 INFO must be {_MANAGEMENT_SIZE} bytes, got {len(info)}")
    v = decode_fields(MANAGEMENT_FIELDS, info, error=PayloadError)
    return ManagementInfo(
        command_value=int(v["command_value"]),
        charge_voltage_limit=float(v["charge_voltage_limit"]),
        discharge_voltage_limit=float(v["discharge_voltage_limit"]),
        charge_current_limit=float(v["charge_current_limit"]),
        discharge_current_limit=float(v["discharge_current_limit"]),
        status=int(v["status"]),
    )


def encode_management_info(value: ManagementInfo) -> bytes:
    """Encode 0x92 reply INFO (inverse of :func:`decode_management_info`).

    Raises:
        PayloadError: a value does not fit its field.
    """
    values = {f.name: getattr(value, f.name) for f in MANAGEMENT_FIELDS}
    return encode_fields(MANAGEMENT_FIELDS, values, error=PayloadError)


# ---------------------------------------------------------------------------------------------
# 0x93 serial number, 0x96 firmware version (V3.3 p.21-24, doc §8.8, §8.9)
# ---------------------------------------------------------------------------------------------

_SERIAL_SIZE: Final = 16


@dataclass(frozen=True, slots=True)
class SerialNumber:
    """Decoded 0x93 reply (doc §8.8): answered per pack, the per-pack identity.

    Attributes:
        command_value: ADR echo.
        serial: 16 ASCII characters (trailing NUL/space removed), e.g. ``"HPTCR03171112590"``.
    """

    command_value: int
    serial: str


def decode_serial_number(info: bytes) -> SerialNumber:
    """Decode 0x93 reply INFO: command value + 16 ASCII bytes (17 bytes, no INFOFLAG).

    Raises:
        PayloadError: not 17 bytes, or non-printable characters.
    """
    if len(info) != 1 + _SERIAL_SIZE:
        raise PayloadError(f"0x93 INFO must be {1 + _SERIAL_SIZE} bytes, got {len(info)}")
    return SerialNumber(info[0], _ascii_field(info[1:], "serial number", b"\x00 "))


def encode_serial_number(value: SerialNumber) -> bytes:
    """Encode 0x93 reply INFO (serial padded with NUL to 16 characters).

    Raises:
        PayloadError: serial longer than 16 characters or not ASCII, command value not a byte.
    """
    try:
        raw = value.serial.encode("ascii")
    except UnicodeEncodeError as exc:
        raise PayloadError(f"serial must be ASCII: {exc}") from exc
    if len(raw) > _SERIAL_SIZE or not 0 <= value.command_value <= 0xFF:
        raise PayloadError(f"bad 0x93 value {value!r}")
    return bytes((value.command_value,)) + raw.ljust(_SERIAL_SIZE, b"\x00")


@dataclass(frozen=True, slots=True)
class FirmwareVersion:
    """Decoded 0x96 reply (doc §8.9).

    Attributes:
        command_value: ADR echo.
        manufacture_version: (major, minor), e.g. (1, 3).
        mainline_version: three bytes, e.g. (0, 6, 9).
    """

    command_value: int
    manufacture_version: tuple[int, int]
    mainline_version: tuple[int, int, int]

    @property
    def text(self) -> str:
        """FHEM-style rendering, e.g. ``"V1.3 (mainline V0.6.9)"``."""
        ma, mi = self.manufacture_version
        a, b, c = self.mainline_version
        return f"V{ma}.{mi} (mainline V{a}.{b}.{c})"


def decode_firmware_version(info: bytes) -> FirmwareVersion:
    """Decode 0x96 reply INFO: command value, manufacture version (2 bytes), mainline version
    (3 bytes); 6 bytes, no INFOFLAG (doc §8.9).

    Raises:
        PayloadError: not 6 bytes.
    """
    if len(info) != 6:
        raise PayloadError(f"0x96 INFO must be 6 bytes, got {len(info)}")
    return FirmwareVersion(info[0], (info[1], info[2]), (info[3], info[4], info[5]))


def encode_firmware_version(value: FirmwareVersion) -> bytes:
    """Encode 0x96 reply INFO.

    Raises:
        PayloadError: a part is not a byte.
    """
    try:
        return bytes((value.command_value, *value.manufacture_version, *value.mainline_version))
    except ValueError as exc:
        raise PayloadError(f"0x96 value is not a byte: {exc}") from exc


# ---------------------------------------------------------------------------------------------
# Maple Leaf Beaver dialect (doc §12): VER 0x21, ADR 0..3, INFO 00
# ---------------------------------------------------------------------------------------------

BEAVER_VER: Final = 0x21
"""VER of the Maple Leaf Beaver dialect (doc §12, §15)."""
BEAVER_REQUEST_INFO: Final = b"\x00"
"""Request INFO the Beaver expects for every command (doc §12)."""
BEAVER_ADDRESSES: Final = range(4)
"""Pack numbers a Beaver answers at (the library checks 0..3, doc §12)."""

#: Beaver 0x42 tail after the temperatures, offsets relative to its start (doc §12).
BEAVER_TAIL_FIELDS: Final[tuple[Field, ...]] = (
    Field("current", 0, 2, True, 0.01, "A", "10 mA, positive = charging"),
    Field("voltage", 2, 2, False, 0.01, "V", "10 mV"),
    Field("remaining_capacity", 4, 2, False, 0.01, "Ah", "10 mAh"),
    Field("capacity_indicator", 6, 1, False, 1.0, "", "4; NOT a 24-bit-fields marker"),
    Field("full_capacity", 7, 2, False, 0.01, "Ah", "10 mAh"),
    Field("cycles", 9, 2, False, 1.0, "", "cycle count"),
    Field("soc", 11, 1, False, 1.0, "%", "state of charge"),
    Field("soh", 12, 1, False, 1.0, "%", "state of health"),
)
_BEAVER_TAIL_SIZE: Final = table_size(BEAVER_TAIL_FIELDS)  # 13


@dataclass(frozen=True, slots=True)
class BeaverAnalog:
    """Decoded Beaver 0x42 reply (doc §12; 16 cells and 7 temperatures on the 48 V 100 Ah).

    Attributes:
        lead: the one leading byte (meaning unknown).
        cell_voltages: V (1 mV resolution).
        temperatures: °C (0.1 K on the wire), sensor meaning unknown.
        current: A, positive = charging (10 mA resolution).
        voltage: V (10 mV resolution).
        remaining_capacity, full_capacity: Ah (10 mAh resolution).
        capacity_indicator: the byte at the Pylontech P position (4; not a P).
        cycles: cycle count.
        soc, soh: % as transmitted.
    """

    lead: int
    cell_voltages: tuple[float, ...]
    temperatures: tuple[float, ...]
    current: float
    voltage: float
    remaining_capacity: float
    full_capacity: float
    capacity_indicator: int
    cycles: int
    soc: int
    soh: int


def decode_beaver_analog(info: bytes) -> BeaverAnalog:
    """Decode the INFO of a Beaver 0x42 reply (doc §12): lead byte, M, M cells (mV), N,
    N temperatures (0.1 K), current (10 mA), voltage (10 mV), remaining (10 mAh), indicator,
    full (10 mAh), cycles, SOC %, SOH %. The length is walked from M and N and must match
    INFO exactly (62 bytes for 16 cells / 7 temperatures).

    Raises:
        PayloadError: truncated, trailing bytes, or SOC/SOH above 100 %.
    """
    info = bytes(info)
    n_info = len(info)
    if n_info < 2:
        raise PayloadError(f"Beaver 0x42 INFO needs at least 2 bytes, got {n_info}")
    m = info[1]
    t_pos = 2 + 2 * m
    if t_pos >= n_info:
        raise PayloadError(f"Beaver 0x42: truncated, {m} cells need {t_pos + 1} bytes")
    n = info[t_pos]
    tail = t_pos + 1 + 2 * n
    end = tail + _BEAVER_TAIL_SIZE
    if end != n_info:
        raise PayloadError(
            f"Beaver 0x42: {m} cells and {n} temperatures make {end} bytes, INFO has {n_info}"
        )
    cells = struct.unpack_from(f">{m}H", info, 2)
    temps = struct.unpack_from(f">{n}h", info, t_pos + 1)
    v = decode_fields(BEAVER_TAIL_FIELDS, info, tail, error=PayloadError)
    if v["soc"] > 100 or v["soh"] > 100:
        raise PayloadError(f"Beaver 0x42: SOC {v['soc']} / SOH {v['soh']} above 100 %")
    return BeaverAnalog(
        lead=info[0],
        cell_voltages=tuple(c / 1000 for c in cells),
        temperatures=tuple((t - _TEMP_ZERO_RAW) / 10 for t in temps),
        current=float(v["current"]),
        voltage=float(v["voltage"]),
        remaining_capacity=float(v["remaining_capacity"]),
        full_capacity=float(v["full_capacity"]),
        capacity_indicator=int(v["capacity_indicator"]),
        cycles=int(v["cycles"]),
        soc=int(v["soc"]),
        soh=int(v["soh"]),
    )


def encode_beaver_analog(value: BeaverAnalog) -> bytes:
    """Encode Beaver 0x42 reply INFO (inverse of :func:`decode_beaver_analog`).

    Raises:
        PayloadError: a value does not fit its field.
    """
    m, n = len(value.cell_voltages), len(value.temperatures)
    if m > 0xFF or n > 0xFF or not 0 <= value.lead <= 0xFF:
        raise PayloadError(f"Beaver 0x42: bad counts/lead {m}/{n}/{value.lead}")
    try:
        head = struct.pack(
            f">BB{m}HB{n}h",
            value.lead,
            m,
            *(round(c * 1000) for c in value.cell_voltages),
            n,
            *(round(t * 10) + _TEMP_ZERO_RAW for t in value.temperatures),
        )
    except struct.error as exc:
        raise PayloadError(f"Beaver 0x42: value out of range: {exc}") from exc
    values = {f.name: getattr(value, f.name) for f in BEAVER_TAIL_FIELDS}
    return head + encode_fields(BEAVER_TAIL_FIELDS, values, error=PayloadError)


def decode_beaver_system_parameters(info: bytes) -> SystemParameters:
    """Decode a Beaver 0x47 reply: the twelve V3.3 fields from INFO offset 0, **no INFOFLAG**,
    with current limits in 10 mA and module voltages in 10 mV (doc §12; an inference from the
    library's README values, unverified until a capture exists). ``info_flag`` is 0.

    Raises:
        PayloadError: INFO is not 24 bytes.
    """
    if len(info) != _SYSTEM_PARAMETERS_SIZE:
        raise PayloadError(
            f"Beaver 0x47 INFO must be {_SYSTEM_PARAMETERS_SIZE} bytes, got {len(info)}"
        )
    values = decode_fields(_BEAVER_PARAMETER_FIELDS, info, error=PayloadError)
    return SystemParameters(info_flag=0, **{k: float(v) for k, v in values.items()})


def encode_beaver_system_parameters(value: SystemParameters) -> bytes:
    """Encode a Beaver 0x47 reply INFO (inverse of :func:`decode_beaver_system_parameters`).

    Raises:
        PayloadError: a value does not fit its field.
    """
    values = {f.name: getattr(value, f.name) for f in _BEAVER_PARAMETER_FIELDS}
    return encode_fields(_BEAVER_PARAMETER_FIELDS, values, error=PayloadError)


def _beaver_field(f: Field) -> Field:
    if f.name.endswith("current_limit"):
        return Field(f.name, f.offset, 2, f.signed, 0.01, "A", "10 mA")
    if f.name.startswith("module_"):
        return Field(f.name, f.offset, 2, False, 0.01, "V", "10 mV")
    return f


_BEAVER_PARAMETER_FIELDS: Final = tuple(_beaver_field(f) for f in SYSTEM_PARAMETER_FIELDS)


def is_beaver(frame: Frame) -> bool:
    """Whether a parsed frame speaks the Beaver dialect (VER 0x21, doc §12)."""
    return frame.ver == BEAVER_VER


def build_beaver_request(adr: int, cid2: int) -> bytes:
    """A Beaver request: VER 0x21, INFO ``00`` (doc §12), e.g. ``~21004642E00200FD36\\r``.

    Raises:
        FrameError: ``adr``/``cid2`` not a byte.
    """
    return build_frame(BEAVER_VER, adr, CID1_BATTERY, cid2, BEAVER_REQUEST_INFO)
