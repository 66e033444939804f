"""Pylontech LV RS485 stack behaviour: request frame in, reply frame (or silence) out. No I/O.

Protocol facts follow shared/protocols/pylontech-rs485.md (section numbers as "§n"); framing and
payload encoding come from the shared codec :mod:`bmslink.protocols.pylontech_rs485`.

Two sources of answers:

* :class:`ReplayStack` replays the responses of a real bus capture, in order and looping, per
  request key (ADR, CID2, INFO). It also derives per-address 0x42 answers from a whole-stack
  (INFO=FF) capture: module *i* of the next FF reply, re-wrapped as a single-module reply.
* :class:`ModelStack` simulates packs (US2000C, US3000C, US5000, ...) whose state of charge follows
  a current profile over wall time, and encodes 0x42 analog replies from that state.

Both share :class:`Faults` (fault injection, settable at runtime) and are thread-safe: one stack
object may be served on a pty and a TCP port at once.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import logging
import math
import random
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bmslink.protocols.pylontech_rs485 import (
    BEAVER_VER,
    BeaverAnalog,
    Cid2,
    FirmwareVersion,
    Frame,
    LengthChecksumError,
    ManagementInfo,
    ManufacturerInfo,
    ModuleAlarm,
    ModuleAnalog,
    PylontechError,
    Rtn,
    SerialNumber,
    SystemParameters,
    build_response,
    decode_analog,
    encode_alarm,
    encode_analog,
    encode_beaver_analog,
    encode_beaver_system_parameters,
    encode_firmware_version,
    encode_management_info,
    encode_manufacturer_info,
    encode_serial_number,
    encode_system_parameters,
    parse_frame,
)
from bmslink.protocols.pylontech_rs485 import (
    ChecksumError as FrameChecksumError,
)

__all__ = [
    "MODELS",
    "CurrentProfile",
    "Exchange",
    "Faults",
    "ModelStack",
    "PackConfig",
    "PackModel",
    "PylontechStack",
    "ReplayStack",
    "assign_addresses",
    "lfp_ocv",
    "load_capture",
    "parse_capture",
    "parse_model_spec",
]

log = logging.getLogger(__name__)

VER = 0x20  # every real Pylontech frame (§15)
CID2_ANALOG = int(Cid2.ANALOG)  # 0x42
CID2_PROTOCOL_VERSION = 0x4F
INFO_ALL = 0xFF  # "whole group" command value (§7.1)
#: RTN codes (§5)
RTN_VER_ERROR = 0x01
RTN_CHKSUM_ERROR = 0x02
RTN_LCHKSUM_ERROR = 0x03
RTN_CID2_INVALID = 0x04
RTN_INVALID_DATA = 0x06
#: INFOFLAG sent in 0x42 replies: 0x11 is what real packs send (§8.1, capture and PP #42).
INFOFLAG = 0x11
_RTN_VALUES = frozenset(int(r) for r in Rtn)

RequestKey = tuple[int, int, bytes]  # (ADR, CID2, INFO)


@dataclass
class Faults:
    """Fault injection; change the fields at any time (e.g. from a test).

    Attributes:
        silence: do not answer at all.
        garbage: answer with random bytes (same length as the real reply) instead of the reply.
        bad_checksum: answer with the real reply but CHKSUM + 1 (§4).
        rtn: answer with an empty reply carrying this RTN code instead (§5), e.g. 0x91.
        slow: extra delay before the reply, seconds (applied by the line, to every request).
        addresses: restrict silence/garbage/bad_checksum/rtn to requests to these ADRs
            (``None`` = every address).
        commands: restrict them to requests with these CID2s (``None`` = every command), e.g.
            ``frozenset({0x44})`` with ``rtn=0x04`` for firmware without 0x44.

    Precedence: silence, then rtn, then garbage, then bad_checksum. Faults only alter a reply
    that would exist: a request to an absent address stays unanswered.
    """

    silence: bool = False
    garbage: bool = False
    bad_checksum: bool = False
    rtn: int | None = None
    slow: float = 0.0
    addresses: frozenset[int] | None = None
    commands: frozenset[int] | None = None

    def clear(self) -> None:
        """Remove every fault."""
        self.silence = self.garbage = self.bad_checksum = False
        self.rtn = None
        self.slow = 0.0
        self.addresses = None
        self.commands = None

    def update(self, values: dict[str, object]) -> None:
        """Replace every field from a JSON-like mapping (missing fields reset to no fault);
        ``addresses``/``commands`` are lists of ints (or null).

        Raises:
            ValueError: an unknown field or a value of the wrong type.
        """
        unknown = set(values) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise ValueError(f"unknown fault field(s): {', '.join(sorted(unknown))}")
        new = Faults()
        for name in ("silence", "garbage", "bad_checksum"):
            flag = values.get(name, False)
            if not isinstance(flag, bool):
                raise ValueError(f"{name} must be true or false, got {flag!r}")
            setattr(new, name, flag)
        rtn = values.get("rtn")
        if rtn is not None and (not isinstance(rtn, int) or rtn not in _RTN_VALUES or rtn == 0):
            raise ValueError(f"rtn must be a non-zero RTN code (§5), got {rtn!r}")
        new.rtn = rtn
        slow = values.get("slow", 0.0)
        if not isinstance(slow, int | float) or slow < 0:
            raise ValueError(f"slow must be a number of seconds ≥ 0, got {slow!r}")
        new.slow = float(slow)
        for name in ("addresses", "commands"):
            items = values.get(name)
            if items is None:
                continue
            if not isinstance(items, list) or not all(isinstance(i, int) for i in items):
                raise ValueError(f"{name} must be a list of integers or null, got {items!r}")
            setattr(new, name, frozenset(items))
        for f in dataclasses.fields(self):
            setattr(self, f.name, getattr(new, f.name))

    def applies_to(self, adr: int, cid2: int | None = None) -> bool:
        """Whether the reply to a request to ``adr`` with command ``cid2`` is subject to the
        faults (``cid2`` None: a request that did not parse, subject to address rules only)."""
        if self.addresses is not None and adr not in self.addresses:
            return False
        return self.commands is None or cid2 is None or cid2 in self.commands


def _request_adr(raw: bytes) -> int | None:
    """ADR of a frame that failed validation, if its ADR characters are hex (§2: raw[3:5])."""
    try:
        return int(raw[3:5].decode("ascii"), 16) if len(raw) >= 5 else None
    except ValueError:
        return None


def _corrupt_checksum(reply: bytes) -> bytes:
    """``reply`` with its CHKSUM field (the 4 characters before CR, §2) incremented by one."""
    if len(reply) < 18 or not reply.endswith(b"\r"):
        return reply[:-1] + bytes([reply[-1] ^ 0x01]) if reply else reply
    chk = int(reply[-5:-1].decode("ascii"), 16)
    return reply[:-5] + f"{(chk + 1) & 0xFFFF:04X}".encode("ascii") + b"\r"


class PylontechStack(ABC):
    """A Pylontech LV stack on an RS485 bus: :meth:`respond` maps a request to a reply.

    Subclasses implement :meth:`_answer` (protocol logic) and :meth:`_has_address`. The base
    class parses the request with the shared codec, answers malformed requests to a present
    address with RTN 0x02 (CHKSUM) / 0x03 (LCHKSUM) as V3.3 defines (§5) and stays silent on
    other garbage, and applies :attr:`faults`.
    """

    def __init__(self, *, faults: Faults | None = None, seed: int | None = None) -> None:
        self.faults = faults if faults is not None else Faults()
        self._rng = random.Random(seed)
        self._lock = threading.RLock()

    @property
    def extra_delay_s(self) -> float:
        """Extra reply delay requested by :attr:`Faults.slow`, seconds."""
        return max(0.0, self.faults.slow)

    def respond(self, request: bytes) -> bytes | None:
        """Return the reply frame to the request frame ``request`` (``~...\\r``), or ``None``
        if the stack stays silent."""
        with self._lock:
            try:
                frame = parse_frame(request)
            except (FrameChecksumError, LengthChecksumError) as exc:
                adr = _request_adr(request)
                if adr is None or not self._has_address(adr):
                    return None
                # a wrong LCHKSUM also breaks CHKSUM (both classes raised): report LCHKSUM
                lchk = isinstance(exc, LengthChecksumError)
                rtn = RTN_LCHKSUM_ERROR if lchk else RTN_CHKSUM_ERROR
                return self._apply_faults(adr, build_response(adr, b"", rtn=rtn, ver=VER))
            except (PylontechError, ValueError, UnicodeDecodeError):
                log.debug("unparseable request %r", request)
                return None
            if frame.cid2 in _RTN_VALUES:  # a response (our own echo, another device): ignore
                return None
            reply = self._answer(frame)
            return self._apply_faults(frame.adr, reply, frame.cid2)

    def _apply_faults(self, adr: int, reply: bytes | None, cid2: int | None = None) -> bytes | None:
        f = self.faults
        if reply is None or not f.applies_to(adr, cid2):
            return reply
        if f.silence:
            return None
        if f.rtn is not None:
            ver = int(reply[1:3], 16) if len(reply) > 3 else VER
            return build_response(adr, b"", rtn=f.rtn, ver=ver)
        if f.garbage:
            return bytes(self._rng.randrange(256) for _ in range(len(reply)))
        if f.bad_checksum:
            return _corrupt_checksum(reply)
        return reply

    @abstractmethod
    def _answer(self, frame: Frame) -> bytes | None:
        """The reply to a well-formed request, before faults."""

    @abstractmethod
    def _has_address(self, adr: int) -> bool:
        """Whether a device of this stack answers at ``adr``."""


# ---------------------------------------------------------------------------------------------
# Replay


@dataclass(frozen=True)
class Exchange:
    """One request of a capture and the response recorded for it (``None``: none was)."""

    request: bytes
    response: bytes | None


def _is_response(raw: bytes) -> bool | None:
    """True for a response frame, False for a request, None if it does not parse."""
    try:
        return parse_frame(raw).cid2 in _RTN_VALUES
    except (PylontechError, ValueError, UnicodeDecodeError):
        return None


def _pair(frames: Iterable[tuple[bytes, bool | None]]) -> list[Exchange]:
    """Pair (frame, is_response) items: each response belongs to the request just before it."""
    out: list[Exchange] = []
    pending: bytes | None = None
    for raw, is_resp in frames:
        if is_resp is False:
            if pending is not None:
                out.append(Exchange(pending, None))
            pending = raw
        elif pending is not None:  # a response, or an unparseable frame where one is due
            out.append(Exchange(pending, raw))
            pending = None
    if pending is not None:
        out.append(Exchange(pending, None))
    return out


def parse_capture(text: str) -> list[Exchange]:
    """Parse a capture into request/response exchanges; the format is detected from content.

    Formats:
      * JSON object ``{"meta": ..., "frames": [{"ts": µs, "frame": "~...\\r"}, ...]}`` (as in
        shared/vectors/pylontech_rs485_capture.json): requests and responses are told apart by
        the CID2/RTN field (§5: RTN values and command codes do not overlap);
      * JSON lines ``{"ts": s, "dir": "tx"|"rx", "frame": "..."}`` (the reader's ``--capture``),
        ``tx`` = host → battery request.

    Raises:
        ValueError: the text is neither format, or holds no request.
    """
    stripped = text.strip()
    items: list[tuple[bytes, bool | None]] = []
    doc: object = None
    try:
        doc = json.loads(stripped)
    except json.JSONDecodeError:
        doc = None
    if isinstance(doc, dict) and isinstance(doc.get("frames"), list):
        for entry in doc["frames"]:
            if not isinstance(entry, dict) or not isinstance(entry.get("frame"), str):
                raise ValueError(f"capture entry without a 'frame' string: {entry!r}")
            raw = entry["frame"].encode("latin-1")
            items.append((raw, _is_response(raw)))
    else:
        for lineno, line in enumerate(stripped.splitlines(), 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"line {lineno}: not JSON: {exc}") from None
            if (
                not isinstance(rec, dict)
                or rec.get("dir") not in ("tx", "rx")
                or not isinstance(rec.get("frame"), str)
            ):
                raise ValueError(f"line {lineno}: expected {{'dir': 'tx'|'rx', 'frame': str}}")
            items.append((rec["frame"].encode("latin-1"), rec["dir"] == "rx"))
    exchanges = _pair(items)
    if not exchanges:
        raise ValueError("capture holds no request")
    return exchanges


def load_capture(path: str | Path) -> list[Exchange]:
    """Read and parse a capture file (see :func:`parse_capture`)."""
    return parse_capture(Path(path).read_text(encoding="utf-8"))


class ReplayStack(PylontechStack):
    """Answers from a recorded capture, looping (see module docstring).

    For a request whose (ADR, CID2, INFO) occurs in the capture, the answer is the next recorded
    response to such a request (one cursor per key; a request recorded without a response is
    replayed as silence). With ``derive_per_address``, a 0x42 request with INFO = ADR that the
    capture lacks is answered from the capture's 0x42 INFO=FF replies at the group master
    (ADR & 0xF0 | 2): module ``(ADR & 0x0F) − 2`` of the next FF reply, re-wrapped with command
    value = ADR (§8.4), decoded and re-encoded with the shared codec. Anything else: silence,
    as on a real bus.
    """

    def __init__(
        self,
        exchanges: Sequence[Exchange],
        *,
        derive_per_address: bool = True,
        faults: Faults | None = None,
        seed: int | None = None,
    ) -> None:
        super().__init__(faults=faults, seed=seed)
        self.derive_per_address = derive_per_address
        self._answers: dict[RequestKey, list[bytes | None]] = {}
        for ex in exchanges:
            try:
                req = parse_frame(ex.request)
            except (PylontechError, ValueError, UnicodeDecodeError):
                log.warning("capture request %r does not parse; skipped", ex.request)
                continue
            self._answers.setdefault((req.adr, req.cid2, bytes(req.info)), []).append(ex.response)
        if not self._answers:
            raise ValueError("capture holds no valid request")
        self._cursors: dict[RequestKey, int] = dict.fromkeys(self._answers, 0)

    @classmethod
    def from_file(cls, path: str | Path, **kwargs: object) -> ReplayStack:
        """Build from a capture file (either format of :func:`parse_capture`)."""
        return cls(load_capture(path), **kwargs)  # type: ignore[arg-type]

    @property
    def keys(self) -> list[RequestKey]:
        """The request keys (ADR, CID2, INFO) the capture has answers for."""
        return list(self._answers)

    def _next(self, key: RequestKey) -> bytes | None:
        answers = self._answers[key]
        i = self._cursors[key]
        self._cursors[key] = (i + 1) % len(answers)
        return answers[i]

    def _ff_key(self, adr: int) -> RequestKey | None:
        key = ((adr & 0xF0) | 0x02, CID2_ANALOG, bytes([INFO_ALL]))
        return key if key in self._answers else None

    def _module_count(self, key: RequestKey) -> int:
        for resp in self._answers[key]:
            if resp is None:
                continue
            try:
                return len(decode_analog(parse_frame(resp).info, stack=True).modules)
            except (PylontechError, ValueError, UnicodeDecodeError):
                continue
        return 0

    def _has_address(self, adr: int) -> bool:
        if any(k[0] == adr for k in self._answers):
            return True
        key = self._ff_key(adr) if self.derive_per_address else None
        return key is not None and 0 <= (adr & 0x0F) - 2 < self._module_count(key)

    def _answer(self, frame: Frame) -> bytes | None:
        key = (frame.adr, frame.cid2, bytes(frame.info))
        if key in self._answers:
            return self._next(key)
        if (
            self.derive_per_address
            and frame.cid2 == CID2_ANALOG
            and frame.info[:1] == bytes([frame.adr])
        ):
            return self._derive_single(frame.adr)
        return None

    def _derive_single(self, adr: int) -> bytes | None:
        ff_key = self._ff_key(adr)
        index = (adr & 0x0F) - 2
        if ff_key is None or index < 0:
            return None
        resp = self._next(ff_key)
        if resp is None:
            return None  # the capture recorded silence here: replay it
        try:
            ff = parse_frame(resp)
            values = decode_analog(ff.info, stack=True)
        except (PylontechError, ValueError, UnicodeDecodeError):
            return None  # a corrupt recorded reply has no module to take
        if ff.cid2 != 0 or index >= len(values.modules):
            return None
        info = encode_analog(values.info_flag, adr, [values.modules[index]])
        return build_response(adr, info, ver=ff.ver)


# ---------------------------------------------------------------------------------------------
# Model


PYLONTECH = "pylontech"
BEAVER = "beaver"


@dataclass(frozen=True)
class PackModel:
    """Static facts of a pack model (§9, §12).

    Attributes:
        name: model name as reported by 0x51 (``"US2000C"``) or ``"BEAVER"``.
        cells: cell count M; temperatures: sensor count N.
        capacity_ah: nominal capacity, Ah.
        dialect: ``"pylontech"`` (VER 0x20) or ``"beaver"`` (Maple Leaf, VER 0x21, §12).
        current_limit_a: rated charge/discharge current (0x47 and 0x92), A.
        alarm_trailing: extra bytes after Status5 in 0x44 (1 on US2000C/US3000C, §8.5).
        software: 0x51 software version (major, minor).
        firmware: 0x96 (manufacture major, minor, mainline a, b, c).
    """

    name: str
    cells: int
    temperatures: int
    capacity_ah: float
    dialect: str = PYLONTECH
    current_limit_a: float = 25.0
    alarm_trailing: int = 0
    software: tuple[int, int] = (1, 7)
    firmware: tuple[int, int, int, int, int] = (1, 3, 0, 6, 9)


#: Known pack models (§9). US5000's 6th sensor (MOSFET) is an inference of the spec (§8.4);
#: the Beaver layout (16 cells, 7 sensors) comes from the MapleLeafBeaver library (§12).
MODELS: dict[str, PackModel] = {
    m.name: m
    for m in (
        PackModel("US2000", 15, 5, 50.0, software=(1, 2)),
        PackModel("US2000B", 15, 5, 50.0, software=(1, 4)),
        PackModel("US2000C", 15, 5, 50.0, alarm_trailing=1),
        PackModel("US2KBPL", 15, 5, 50.0, software=(2, 4), firmware=(2, 3, 0, 6, 5)),
        PackModel("US3000", 15, 5, 74.0, current_limit_a=37.0, software=(1, 2)),
        PackModel("US3000A", 15, 5, 74.0, current_limit_a=37.0, software=(1, 2)),
        PackModel("US3000C", 15, 5, 74.0, current_limit_a=37.0, alarm_trailing=1, software=(1, 3)),
        PackModel("US5000", 15, 6, 100.0, current_limit_a=100.0, software=(1, 2)),
        PackModel("US5000C", 15, 6, 100.0, current_limit_a=100.0, software=(1, 2)),
        PackModel("UP2500", 8, 5, 50.0, current_limit_a=55.5),
        PackModel("BEAVER", 16, 7, 100.0, dialect=BEAVER, current_limit_a=120.0),
    )
}


@dataclass
class PackConfig:
    """One simulated pack.

    Attributes:
        model: model name (reported by 0x51 for the group master, §7.4).
        cells: cell count M (§8.4), 1..32.
        temperatures: temperature sensor count N (5, or 6 on US5000; 7 on the Beaver).
        capacity_ah: full capacity, Ah.
        initial_soc: state of charge at start, %.
        initial_cycles: cycle count at start.
        address: ADR; ``None`` = the next free one (Pylontech: 2, 3, ...; Beaver: 0, 1, ...).
        dialect: ``"pylontech"`` or ``"beaver"`` (§12).
        serial: 0x93 serial number (16 ASCII); ``None`` = derived from model and address.
    """

    model: str = "US2000C"
    cells: int = 15
    temperatures: int = 5
    capacity_ah: float = 50.0
    initial_soc: float = 60.0
    initial_cycles: int = 0
    address: int | None = None
    dialect: str = PYLONTECH
    serial: str | None = None

    @property
    def spec(self) -> PackModel:
        """The :class:`PackModel` of this pack (a generic one for unknown names)."""
        return MODELS.get(self.model.upper()) or PackModel(
            self.model, self.cells, self.temperatures, self.capacity_ah, dialect=self.dialect
        )

    @classmethod
    def for_model(
        cls, name: str, initial_soc: float = 60.0, address: int | None = None
    ) -> PackConfig:
        """The pack config of a known model name (see :data:`MODELS`; case-insensitive).

        Raises:
            ValueError: unknown model.
        """
        model = MODELS.get(name.strip().upper())
        if model is None:
            raise ValueError(f"unknown model {name!r} (known: {', '.join(MODELS)})")
        return cls(
            model.name,
            model.cells,
            model.temperatures,
            model.capacity_ah,
            initial_soc,
            address=address,
            dialect=model.dialect,
        )


def parse_model_spec(spec: str) -> list[PackConfig]:
    """Parse ``MODEL[:SOC][@ADR],...`` (e.g. ``US2000C,US3000C:80,US5000,BEAVER``) into packs.

    One pack per item. Without ``@ADR`` Pylontech packs take ADR 2, 3, ... and Beaver packs
    (model ``BEAVER``) 0, 1, ... (the next free address, §7.1, §12); ``@ADR`` (decimal or
    ``0x..``) places a pack explicitly, e.g. ``US3000C@0x12`` for group 1. SOC is the initial
    state of charge in % (default 60, staggered by −5 % per pack so that the packs differ).

    Raises:
        ValueError: empty spec, unknown model, bad SOC or ADR, duplicate ADR, more than 12
            Pylontech packs in a group (§7.1) or a Beaver outside ADR 0..3.
    """
    items = [s.strip() for s in spec.split(",")]
    if not spec.strip() or any(not s for s in items):
        raise ValueError(f"empty model in {spec!r}")
    packs: list[PackConfig] = []
    for i, item in enumerate(items):
        head, _, adr_text = item.partition("@")
        name, _, soc_text = head.partition(":")
        soc = 60.0 - 5.0 * i
        if soc_text:
            try:
                soc = float(soc_text.rstrip("%"))
            except ValueError:
                raise ValueError(f"bad SOC {soc_text!r} for {name!r}") from None
            if not 0.0 <= soc <= 100.0:
                raise ValueError(f"SOC {soc} for {name!r} not within 0..100 %")
        address: int | None = None
        if adr_text:
            try:
                address = int(adr_text, 0)
            except ValueError:
                raise ValueError(f"bad ADR {adr_text!r} for {name!r}") from None
            if not 0 <= address <= 0xFE:
                raise ValueError(f"ADR {address} for {name!r} not within 0..254")
        packs.append(PackConfig.for_model(name, initial_soc=max(0.0, soc), address=address))
    assign_addresses(packs)
    return packs


def assign_addresses(packs: Sequence[PackConfig]) -> None:
    """Give every pack without an ``address`` the next free one (Pylontech from 2, Beaver
    from 0), in order; checks the result.

    Raises:
        ValueError: duplicate ADR, a Beaver outside 0..3, more than 12 packs in a group.
    """
    used = {p.address for p in packs if p.address is not None}
    for pack in packs:
        if pack.address is None:
            candidate = 0 if pack.dialect == BEAVER else 2
            while candidate in used:
                candidate += 1
            pack.address = candidate
            used.add(candidate)
    seen: set[int] = set()
    groups: dict[int, int] = {}
    for pack in packs:
        assert pack.address is not None
        if pack.address in seen:
            raise ValueError(f"two packs at ADR {pack.address}")
        seen.add(pack.address)
        if pack.dialect == BEAVER:
            if pack.address not in range(4):
                raise ValueError(f"a Beaver answers at ADR 0..3, not {pack.address} (§12)")
        else:
            group = pack.address >> 4
            groups[group] = groups.get(group, 0) + 1
            if groups[group] > 12:
                raise ValueError(f"at most 12 packs per group, group {group} has more")


@dataclass(frozen=True)
class CurrentProfile:
    """The current of every pack over time, A (positive = charging, §8.4).

    A constant current if ``constant_a`` is set, else ``amplitude_a × sin(2π t / period_s)``.
    """

    constant_a: float | None = None
    amplitude_a: float = 10.0
    period_s: float = 600.0

    def current_at(self, t: float) -> float:
        """Current at ``t`` seconds after start, A."""
        if self.constant_a is not None:
            return self.constant_a
        return self.amplitude_a * math.sin(2.0 * math.pi * t / self.period_s)


#: LFP open-circuit voltage per cell: (SoC %, V). Typical LiFePO4 curve, flat in the middle.
_LFP_OCV: tuple[tuple[float, float], ...] = (
    (0.0, 2.90),
    (5.0, 3.15),
    (10.0, 3.21),
    (20.0, 3.25),
    (30.0, 3.28),
    (40.0, 3.29),
    (50.0, 3.30),
    (60.0, 3.31),
    (70.0, 3.32),
    (80.0, 3.33),
    (90.0, 3.34),
    (95.0, 3.36),
    (100.0, 3.45),
)


def lfp_ocv(soc: float) -> float:
    """Open-circuit voltage of one LFP cell at ``soc`` % (clamped to 0..100), V."""
    soc = min(100.0, max(0.0, soc))
    for (s0, v0), (s1, v1) in itertools.pairwise(_LFP_OCV):
        if soc <= s1:
            return v0 + (v1 - v0) * (soc - s0) / (s1 - s0)
    return _LFP_OCV[-1][1]


@dataclass
class _PackState:
    cfg: PackConfig
    soc: float
    cycles: float
    current: float = 0.0
    current_factor: float = 1.0
    cell_offsets: list[float] = field(default_factory=list)
    temp_offsets: list[float] = field(default_factory=list)
    status1: int = 0
    cell_states: dict[int, int] = field(default_factory=dict)


class ModelStack(PylontechStack):
    """A simulated stack of packs (§7.1): Pylontech packs at ``0x10·group + 2..``, Maple Leaf
    Beaver packs (§12) at 0..3, any mix, any groups (see :func:`parse_model_spec`).

    State follows wall time (``clock``, seconds, default :func:`time.monotonic`): the current
    of :class:`CurrentProfile` (per pack, ±3 % per-pack spread) is integrated into SoC
    (clamped: a full pack takes no charge, an empty one gives none); cell voltages are
    :func:`lfp_ocv` + current × internal resistance + fixed per-cell offsets (±5 mV) +
    ±1 mV noise; temperatures drift slowly around 22 °C (BMS board first, MOSFET last on
    6-sensor packs, §8.4); cycles count discharged Ah / capacity.

    Pylontech packs answer (§6, §8): 0x42 with INFO = ADR (one block) and INFO=FF at a group
    master (command value = that group's pack count) unless ``answer_ff`` is False (C-series
    and US5000 firmware ignore FF, §7.2); 0x44 (per pack or FF; one trailing 0x00 on
    US2000C/US3000C; Status2 charge MOSFET off when full, discharge MOSFET off when empty,
    matching 0x92); 0x47; 0x4F (empty reply at any VER); 0x51 (the group master's identity
    at every address of the group, §7.4); 0x92 (CVL 3.55 V × cells, DVL 3.0 V × cells, ± the
    rated current, charge disabled when full, discharge disabled when empty, charge-
    immediately bits at low SoC); 0x93 (serial); 0x96 (firmware). A wrong VER gets RTN 0x01,
    an INFO naming another address RTN 0x06, any other command RTN 0x04.

    Beaver packs (VER 0x21, §12) answer 0x42 and 0x47 in their own layouts, 0x4F with VER
    0x21, any VER 0x20 request with RTN 0x01 (VER 0x21 in the reply: how a reader detects the
    dialect), and other commands with RTN 0x04. Requests to an address without a pack:
    silence. :meth:`set_protection` injects alarm states into 0x44.
    """

    def __init__(
        self,
        packs: Sequence[PackConfig],
        *,
        profile: CurrentProfile | None = None,
        group: int = 0,
        answer_ff: bool = True,
        clock: Callable[[], float] = time.monotonic,
        faults: Faults | None = None,
        seed: int | None = None,
    ) -> None:
        super().__init__(faults=faults, seed=seed)
        if not 1 <= len(packs) <= 64:
            raise ValueError(f"a stack holds 1..64 packs, got {len(packs)}")
        if not 0 <= group <= 15:
            raise ValueError(f"group must be 0..15, got {group}")
        self.profile = profile if profile is not None else CurrentProfile()
        self.answer_ff = answer_ff
        self.master_adr = 0x10 * group + 2
        self._clock = clock
        self._t0 = clock()
        self._t_last = self._t0
        self._packs: dict[int, _PackState] = {}
        placed = [dataclasses.replace(p) for p in packs]
        next_adr = self.master_adr
        for p in placed:  # unplaced Pylontech packs fill the group from its master on
            if p.address is None and p.dialect != BEAVER and group:
                p.address = next_adr
                next_adr += 1
        assign_addresses(placed)
        for i, cfg in enumerate(placed):
            if not 1 <= cfg.cells <= 32 or not 1 <= cfg.temperatures <= 16:
                raise ValueError(f"pack {i}: implausible cell/temperature count")
            if cfg.capacity_ah <= 0:
                raise ValueError(f"pack {i}: capacity must be positive")
            assert cfg.address is not None
            self._packs[cfg.address] = _PackState(
                cfg=cfg,
                soc=min(100.0, max(0.0, cfg.initial_soc)),
                cycles=float(cfg.initial_cycles),
                current_factor=self._rng.uniform(0.97, 1.03),
                cell_offsets=[self._rng.uniform(-0.005, 0.005) for _ in range(cfg.cells)],
                temp_offsets=[self._rng.uniform(0.0, 1.5) for _ in range(cfg.temperatures)],
            )

    @property
    def addresses(self) -> list[int]:
        """ADRs of the packs, in configuration order."""
        return list(self._packs)

    def pack_config(self, adr: int) -> PackConfig:
        """The configuration of the pack at ``adr`` (with its address filled in)."""
        return self._packs[adr].cfg

    def soc(self, adr: int) -> float:
        """State of charge of the pack at ``adr`` (after advancing to now), %."""
        with self._lock:
            self._advance()
            return self._packs[adr].soc

    def set_protection(
        self, adr: int, status1: int = 0, cell_states: dict[int, int] | None = None
    ) -> None:
        """Inject alarm info into the 0x44 answers of the pack at ``adr`` (§8.5): ``status1``
        protection bits and per-cell states ``{cell number (from 1): state}``; cleared by
        ``set_protection(adr)``."""
        with self._lock:
            pack = self._packs[adr]
            pack.status1 = status1
            pack.cell_states = dict(cell_states or {})

    def serial(self, adr: int) -> str:
        """The 0x93 serial number of the pack at ``adr`` (16 characters)."""
        cfg = self._packs[adr].cfg
        if cfg.serial is not None:
            return cfg.serial
        return f"SIM{cfg.model[:7]:-<7}{adr:03d}{int(cfg.capacity_ah):03d}"[:16]

    def _has_address(self, adr: int) -> bool:
        return adr in self._packs

    def _advance(self) -> None:
        """Integrate the current profile from the last update up to ``clock()``."""
        now = self._clock()
        t = self._t_last
        while t < now:
            step = min(1.0, now - t)
            i_mid = self.profile.current_at(t + step / 2 - self._t0)
            for pack in self._packs.values():
                current = i_mid * pack.current_factor
                if (current > 0 and pack.soc >= 100.0) or (current < 0 and pack.soc <= 0.0):
                    current = 0.0
                delta_ah = current * step / 3600.0
                cap = pack.cfg.capacity_ah
                pack.soc = min(100.0, max(0.0, pack.soc + 100.0 * delta_ah / cap))
                if delta_ah < 0:
                    pack.cycles += -delta_ah / cap
                pack.current = current
            t += step
        self._t_last = max(self._t_last, now)

    def _cells_and_temps(self, pack: _PackState) -> tuple[tuple[float, ...], tuple[float, ...]]:
        cfg = pack.cfg
        t = self._t_last - self._t0
        r_cell = 0.04 / cfg.capacity_ah  # Ω: 0.8 mΩ for a 50 Ah cell
        base = lfp_ocv(pack.soc) + pack.current * r_cell
        cells = tuple(
            round(base + off + self._rng.uniform(-0.001, 0.001), 3) for off in pack.cell_offsets
        )
        ambient = 22.0 + 3.0 * math.sin(2.0 * math.pi * t / 3600.0)
        heat = 0.05 * abs(pack.current)
        temps: list[float] = []
        for j, off in enumerate(pack.temp_offsets):
            extra = 2.0 if j == 0 else (3.0 + heat if j == 5 else heat)  # BMS board, MOSFET
            temps.append(round(ambient + extra + off, 1))
        return cells, tuple(temps)

    def _module(self, pack: _PackState) -> ModuleAnalog:
        cfg = pack.cfg
        cells, temps = self._cells_and_temps(pack)
        return ModuleAnalog(
            cell_voltages=cells,
            temperatures=temps,
            current=round(pack.current, 1),
            voltage=round(sum(cells), 3),
            remaining_capacity=round(cfg.capacity_ah * pack.soc / 100.0, 3),
            full_capacity=cfg.capacity_ah,
            cycles=int(pack.cycles),
            user_defined=2 if cfg.capacity_ah <= 65.0 else 4,
        )

    def _alarm(self, pack: _PackState) -> ModuleAlarm:
        cfg = pack.cfg
        # battery power; DFET/CFET open exactly when 0x92 stops requesting that direction
        status2 = 0x08 | (0x04 if pack.soc > 0.0 else 0) | (0x02 if pack.soc < 100.0 else 0)
        status3 = (
            (0x80 if pack.current > 0.1 else 0)
            | (0x40 if pack.current < -0.1 else 0)
            | (0x08 if pack.soc >= 100.0 else 0)
        )
        cell_states = tuple(pack.cell_states.get(i + 1, 0) for i in range(cfg.cells))
        errors = sum(1 << i for i, s in enumerate(cell_states) if s == 0xF0)
        return ModuleAlarm(
            cell_states=cell_states,
            temperature_states=(0,) * cfg.temperatures,
            charge_current_state=0,
            module_voltage_state=0,
            discharge_current_state=0,
            status1=pack.status1,
            status2=status2,
            status3=status3,
            status4=errors & 0xFF,
            status5=(errors >> 8) & 0xFF,
        )

    def _parameters(self, pack: _PackState) -> SystemParameters:
        cfg = pack.cfg
        scale = cfg.cells / 15
        limit = cfg.spec.current_limit_a
        return SystemParameters(
            info_flag=INFOFLAG,
            cell_high_voltage=3.65,
            cell_low_voltage=3.05,
            cell_under_voltage=2.8,
            charge_high_temperature=60.0,
            charge_low_temperature=-10.0,
            charge_current_limit=limit,
            module_high_voltage=round(54.0 * scale, 2),
            module_low_voltage=round(46.0 * scale, 2),
            module_under_voltage=round(43.5 * scale, 2),
            discharge_high_temperature=60.0,
            discharge_low_temperature=-10.0,
            discharge_current_limit=-limit,
        )

    def _management(self, pack: _PackState, adr: int) -> ManagementInfo:
        cfg = pack.cfg
        limit = cfg.spec.current_limit_a
        charge = pack.soc < 100.0
        discharge = pack.soc > 0.0
        status = (
            (0x80 if charge else 0)
            | (0x40 if discharge else 0)
            | (0x20 if 5.0 <= pack.soc < 10.0 else 0)  # charge immediately 1
            | (0x10 if pack.soc < 5.0 else 0)  # charge immediately 2
        )
        return ManagementInfo(
            command_value=adr,
            charge_voltage_limit=round(3.55 * cfg.cells, 3),
            discharge_voltage_limit=round(3.0 * cfg.cells, 3),
            charge_current_limit=limit if charge else 0.0,
            discharge_current_limit=-limit if discharge else 0.0,
            status=status,
        )

    def _group_master(self, adr: int) -> _PackState:
        """The pack that answers 0x51 for ``adr`` (§7.4): the lowest Pylontech ADR of its group."""
        group = [
            a for a, p in self._packs.items() if p.cfg.dialect != BEAVER and a >> 4 == adr >> 4
        ]
        return self._packs[min(group)]

    def _answer(self, frame: Frame) -> bytes | None:
        adr = frame.adr
        pack = self._packs.get(adr)
        if pack is None:
            return None
        if pack.cfg.dialect == BEAVER:
            return self._answer_beaver(frame, pack)
        if frame.cid2 == CID2_PROTOCOL_VERSION:  # "battery ignores VER" (§6, §8.2)
            return build_response(adr, b"", ver=VER)
        if frame.ver != VER:
            return build_response(adr, b"", rtn=RTN_VER_ERROR, ver=VER)
        self._advance()
        command = frame.info[0] if frame.info else adr  # extra INFO bytes are ignored (§6)
        cid2 = frame.cid2
        if cid2 in (CID2_ANALOG, Cid2.ALARM):
            if command == INFO_ALL:
                group = [
                    p
                    for a, p in self._packs.items()
                    if p.cfg.dialect != BEAVER and a >> 4 == adr >> 4
                ]
                if not self.answer_ff or self._group_master(adr) is not pack:
                    return None
                if cid2 == CID2_ANALOG:
                    modules = [self._module(p) for p in group]
                    info = encode_analog(INFOFLAG, len(modules), modules)
                else:
                    alarms = [self._alarm(p) for p in group]
                    trailing = bytes(pack.cfg.spec.alarm_trailing)
                    info = encode_alarm(0x10, len(alarms), alarms, trailing)
                return build_response(adr, info, ver=VER)
            if command != adr:
                return build_response(adr, b"", rtn=RTN_INVALID_DATA, ver=VER)
            if cid2 == CID2_ANALOG:
                info = encode_analog(INFOFLAG, adr, [self._module(pack)])
            else:
                trailing = bytes(pack.cfg.spec.alarm_trailing)
                info = encode_alarm(0x10, adr, [self._alarm(pack)], trailing)
            return build_response(adr, info, ver=VER)
        if cid2 == Cid2.SYSTEM_PARAMETERS:  # INFO none or ADR (FHEM), both answered (§6)
            return build_response(adr, encode_system_parameters(self._parameters(pack)), ver=VER)
        if cid2 == Cid2.MANUFACTURER_INFO:
            master = self._group_master(adr).cfg
            value = ManufacturerInfo(master.model[:10], master.spec.software, "Pylon")
            return build_response(adr, encode_manufacturer_info(value), ver=VER)
        if cid2 in (Cid2.CHARGE_DISCHARGE_MANAGEMENT, Cid2.SERIAL_NUMBER, Cid2.FIRMWARE_VERSION):
            if command != adr:
                return build_response(adr, b"", rtn=RTN_INVALID_DATA, ver=VER)
            if cid2 == Cid2.CHARGE_DISCHARGE_MANAGEMENT:
                info = encode_management_info(self._management(pack, adr))
            elif cid2 == Cid2.SERIAL_NUMBER:
                info = encode_serial_number(SerialNumber(adr, self.serial(adr)))
            else:
                fw = pack.cfg.spec.firmware
                info = encode_firmware_version(FirmwareVersion(adr, fw[:2], fw[2:]))
            return build_response(adr, info, ver=VER)
        return build_response(adr, b"", rtn=RTN_CID2_INVALID, ver=VER)

    def _answer_beaver(self, frame: Frame, pack: _PackState) -> bytes | None:
        """A Maple Leaf Beaver (§12): VER 0x21; only 0x42 and 0x47 are known."""
        adr = frame.adr
        if frame.cid2 == CID2_PROTOCOL_VERSION:
            return build_response(adr, b"", ver=BEAVER_VER)
        if frame.ver != BEAVER_VER:
            return build_response(adr, b"", rtn=RTN_VER_ERROR, ver=BEAVER_VER)
        self._advance()
        if frame.cid2 == CID2_ANALOG:
            cells, temps = self._cells_and_temps(pack)
            cap = pack.cfg.capacity_ah
            value = BeaverAnalog(
                lead=0x00,
                cell_voltages=cells,
                temperatures=temps,
                current=round(pack.current, 2),
                voltage=round(sum(cells), 2),
                remaining_capacity=round(cap * pack.soc / 100.0, 2),
                full_capacity=cap,
                capacity_indicator=4,
                cycles=int(pack.cycles),
                soc=round(pack.soc),
                soh=100,
            )
            return build_response(adr, encode_beaver_analog(value), ver=BEAVER_VER)
        if frame.cid2 == Cid2.SYSTEM_PARAMETERS:
            params = self._parameters(pack)
            info = encode_beaver_system_parameters(params)
            return build_response(adr, info, ver=BEAVER_VER)
        return build_response(adr, b"", rtn=RTN_CID2_INVALID, ver=BEAVER_VER)
