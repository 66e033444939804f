"""CAN devices of the simulator (``bmslink-sim-can``): a Pylontech LV CAN battery and an
inverter, behind a simulated slcan adapter on a pty or a TCP port.

The simulator plays a CANable-style USB adapter *and* the node behind it: a client opens the pty
(or ``socket://host:port``) with python-can's ``slcan`` interface exactly as it would a real
adapter, sends ``C``/``S6``/``O`` (or ``L``), and then exchanges slcan ASCII frames
(``tIIILDD..\\r``, ``TIIIIIIIILDD..\\r``). Nothing is sent before the client opened the channel
with ``O``/``L`` (pyserial flushes its input on open, test-infrastructure.md §5.3); ``C`` closes
it. Cross-process and root-free (test-infrastructure.md §7.2): no vcan, no multicast.

Frames come from the shared codec (:mod:`bmslink.protocols.pylontech_can`). Battery sources:

- ``capture``: the real frame set of a 5-module Pylontech-protocol stack (ul-gh/bms_gateway
  ``tools/candump_stack.dump``, in ``shared/vectors/pylontech_can.json``), replayed every period;
- ``us5000-v13``: the real set of a US5000 with newer firmware (setfirelabs: DLC 6 0x355, 0x35A,
  0x35F, no 0x359/0x35C, pylontech-can.md §5);
- ``model``: a small model (SoC follows a constant current) encoded with the codec.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from bmslink.protocols import pylontech_can as pc

__all__ = [
    "CAPTURE_STACK",
    "CAPTURE_US5000_V13",
    "CanBattery",
    "CanDevice",
    "CanInverter",
    "ModelBattery",
    "SlcanFramer",
    "slcan_encode",
    "slcan_parse",
]

log = logging.getLogger(__name__)

#: Real frames of a 5-module stack (bms_gateway candump_stack.dump, commit af6de49), in order.
CAPTURE_STACK: tuple[tuple[int, bytes], ...] = tuple(
    (i, bytes.fromhex(d))
    for i, d in (
        (0x359, "0000000005504E00"),
        (0x351, "330209240924D501"),
        (0x355, "5000640000000000"),
        (0x356, "AB14DFFCCC000000"),
        (0x35C, "C000000000000000"),
        (0x35E, "50594C4F4E000000"),
        (0x373, "D80CF10C22012A01"),
    )
)

#: Real frames of a US5000 on new firmware (setfirelabs, pylontech-can.md §4 worked examples).
CAPTURE_US5000_V13: tuple[tuple[int, bytes], ...] = tuple(
    (i, bytes.fromhex(d))
    for i, d in (
        (0x351, "1002C012C012C201"),
        (0x355, "540060000000"),
        (0x356, "7B13E9FE6B01"),
        (0x35A, "0000000000000000"),
        (0x35E, "50594C4F4E202020"),
        (0x35F, "4C4901033C02AA00"),
    )
)

_MAX_LINE = 64


def slcan_encode(can_id: int, data: bytes, extended: bool = False) -> bytes:
    """One slcan ASCII frame: ``t`` + 3 hex digits (``T`` + 8 for 29-bit ids) + DLC + data + CR."""
    if extended:
        return b"T%08X%d%s\r" % (can_id, len(data), data.hex().upper().encode())
    return b"t%03X%d%s\r" % (can_id, len(data), data.hex().upper().encode())


def slcan_parse(line: bytes) -> tuple[int, bool, bytes] | None:
    """``(can_id, extended, data)`` of an slcan ``t``/``T`` line (CR optional); None for
    commands (``O``, ``C``, ``S6``...) and malformed lines."""
    text = line.rstrip(b"\r\a").decode("ascii", "replace")
    try:
        if text[:1] == "t" and len(text) >= 5:
            can_id, dlc, start = int(text[1:4], 16), int(text[4]), 5
        elif text[:1] == "T" and len(text) >= 10:
            can_id, dlc, start = int(text[1:9], 16), int(text[9]), 10
        else:
            return None
        data = bytes.fromhex(text[start : start + 2 * dlc])
    except (ValueError, IndexError):
        return None
    if len(data) != dlc or dlc > 8:
        return None
    return can_id, text[0] == "T", data


class SlcanFramer:
    """Cuts the client's byte stream into CR-terminated slcan lines (the line's Framer).

    ``on_reset`` runs when a new client connects (TCP), so the device waits for a new ``O``.
    """

    def __init__(self, on_reset: Callable[[], None] | None = None) -> None:
        self._buf = bytearray()
        self._on_reset = on_reset

    def reset(self) -> None:
        """Forget a partial line (a new client connected)."""
        self._buf.clear()
        if self._on_reset is not None:
            self._on_reset()

    def feed(self, data: bytes, now: float) -> list[tuple[bytes, float]]:
        """Add bytes; return complete lines (with CR) and ``now``."""
        out: list[tuple[bytes, float]] = []
        for b in data:
            self._buf.append(b)
            if b in (0x0D, 0x07):
                out.append((bytes(self._buf), now))
                self._buf.clear()
            elif len(self._buf) > _MAX_LINE:
                self._buf.clear()
        return out


class CanDevice:
    """Base of a simulated node: slcan command handling and received-frame hook.

    :meth:`respond` never replies (the simulator writes only its own periodic frames, so replies
    and frames never interleave on the line). ``opened`` is True between the client's ``O``/``L``
    and ``C``.
    """

    extra_delay_s = 0.0

    def __init__(self) -> None:
        self.opened = threading.Event()
        self.received = 0

    def respond(self, request: bytes) -> bytes | None:
        """Handle one slcan line from the client; always returns None (no reply)."""
        head = request[:1]
        if head in (b"O", b"L"):
            self.opened.set()
        elif head == b"C":
            self.opened.clear()
        else:
            parsed = slcan_parse(request)
            if parsed is not None:
                self.received += 1
                self.on_frame(*parsed)
        return None

    def on_frame(self, can_id: int, extended: bool, data: bytes) -> None:
        """A frame the client sent (to be overridden)."""

    def frames(self, now: float) -> list[tuple[int, bytes]]:
        """Frames to send this period (to be overridden)."""
        return []

    def client_gone(self) -> None:
        """A new client connected: wait for its ``O``."""
        self.opened.clear()


@dataclass
class ModelBattery:
    """A pack whose SoC follows a constant current (A, + = charging) over wall time.

    ``capacity`` Ah, ``soc`` %, ``modules`` in 0x359 byte 4. Limits follow the usual LFP pack
    (CVL 53.2 V, DVL 45.0 V, CCL/DCL 25 A per module), voltage = 15 cells × OCV(SoC).
    """

    capacity: float = 100.0
    soc: float = 60.0
    current: float = -10.0
    modules: int = 2
    profile: pc.Profile = "pylontech"
    clock: Callable[[], float] = time.monotonic
    _last: float | None = field(default=None, repr=False)

    def values(self) -> pc.BmsValues:
        """Advance the model to now and return the frame-set values."""
        now = self.clock()
        if self._last is not None:
            self.soc += self.current * (now - self._last) / 3600 / self.capacity * 100
            self.soc = min(100.0, max(0.0, self.soc))
        self._last = now
        cell = 3.0 + 0.35 * self.soc / 100 + (0.02 if self.soc > 95 else 0.0)
        limit = 25.0 * self.modules
        return pc.BmsValues(
            charge_voltage_limit=53.2,
            discharge_voltage_limit=45.0,
            charge_current_limit=limit if self.soc < 100 else 0.0,
            discharge_current_limit=limit if self.soc > 5 else 0.0,
            soc=self.soc,
            soh=99.0,
            voltage=round(15 * cell, 2),
            current=self.current if 0 < self.soc < 100 else 0.0,
            temperature=23.5,
            charge_enable=self.soc < 100,
            discharge_enable=self.soc > 5,
            module_count=self.modules,
            cell_min=round(cell - 0.003, 3),
            cell_max=round(cell + 0.004, 3),
            temperature_min=22.0,
            temperature_max=25.0,
            capacity=self.capacity * self.modules,
        )


class CanBattery(CanDevice):
    """A Pylontech LV CAN battery: sends its frame set each period once the client opened.

    ``source`` is ``capture``, ``us5000-v13`` or a :class:`ModelBattery`. ``silence`` (fault
    injection) stops the frames as a pack that went quiet would. Frames the client sends (a 0x305
    heartbeat) are counted in ``heartbeats``.
    """

    def __init__(self, source: str | ModelBattery = "capture") -> None:
        super().__init__()
        self.source = source
        self.silence = threading.Event()
        self.heartbeats = 0
        if isinstance(source, str) and source not in ("capture", "us5000-v13"):
            raise ValueError(f"unknown battery source {source!r}")

    def frames(self, now: float) -> list[tuple[int, bytes]]:
        """This period's frames (none while ``silence`` is set)."""
        if self.silence.is_set():
            return []
        if self.source == "capture":
            return list(CAPTURE_STACK)
        if self.source == "us5000-v13":
            return list(CAPTURE_US5000_V13)
        assert isinstance(self.source, ModelBattery)
        return pc.build_frame_set(self.source.values(), self.source.profile)

    def on_frame(self, can_id: int, extended: bool, data: bytes) -> None:
        """Count the 0x305 the client sends (a reader in ``heartbeat`` mode)."""
        if can_id == pc.ID_HEARTBEAT:
            self.heartbeats += 1


class CanInverter(CanDevice):
    """An inverter: sends the 0x305 heartbeat (8 × 0x00) each period while ``heartbeat`` is set,
    and records every frame it receives (in memory and, with ``record``, as JSON lines
    ``{"ts": unix_s, "id": int, "data": "HEX"}`` flushed per line)."""

    def __init__(self, record: Path | None = None, heartbeat: bool = True) -> None:
        super().__init__()
        self.heartbeat = threading.Event()
        if heartbeat:
            self.heartbeat.set()
        self.log: list[tuple[float, int, bytes]] = []
        self._lock = threading.Lock()
        self._record: IO[str] | None = (
            open(record, "a", encoding="ascii", buffering=1) if record else None  # noqa: SIM115
        )

    def frames(self, now: float) -> list[tuple[int, bytes]]:
        """The heartbeat, or nothing."""
        return [(pc.ID_HEARTBEAT, pc.encode_heartbeat())] if self.heartbeat.is_set() else []

    def on_frame(self, can_id: int, extended: bool, data: bytes) -> None:
        """Record a frame from the BMS side."""
        ts = time.time()
        with self._lock:
            self.log.append((ts, can_id, data))
            if self._record is not None:
                self._record.write(json.dumps({"ts": ts, "id": can_id, "data": data.hex().upper()}))
                self._record.write("\n")

    def latest(self, can_id: int) -> bytes | None:
        """The newest data received with ``can_id``."""
        with self._lock:
            for _ts, i, data in reversed(self.log):
                if i == can_id:
                    return data
        return None

    def summary(self) -> str:
        """One line on what the inverter sees now: frame count and the decoded latest 0x351,
        0x355 and 0x35C (or "no frames yet")."""
        parts = [f"received {len(self.log)} frames"]
        for can_id in (pc.ID_LIMITS, pc.ID_SOC_SOH, pc.ID_REQUEST_FLAGS):
            data = self.latest(can_id)
            if data is None:
                continue
            try:
                frame = pc.decode_frame(can_id, data)
            except pc.PylontechCanError as exc:
                parts.append(f"0x{can_id:03X} refused: {exc}")
                continue
            if isinstance(frame, pc.Limits):
                parts.append(
                    f"CVL {frame.charge_voltage_limit} V CCL {frame.charge_current_limit} A "
                    f"DCL {frame.discharge_current_limit} A DVL {frame.discharge_voltage_limit} V"
                )
            elif isinstance(frame, pc.SocSoh):
                parts.append(f"SoC {frame.soc} % SoH {frame.soh} %")
            elif isinstance(frame, pc.RequestFlags):
                parts.append(f"charge {frame.charge_enable} discharge {frame.discharge_enable}")
        return "; ".join(parts)

    def close(self) -> None:
        """Close the record file."""
        if self._record is not None:
            self._record.close()
            self._record = None
