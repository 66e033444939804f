"""A simulated inverter on slcan for the end-to-end safety tests, and its frames decoded here.

``bmslink-sim-can inverter`` listens for slcan over TCP and records every frame it receives
(one JSON line each). :class:`Inverter` reads that record as frame sets and :class:`Sent`
decodes them with ``struct`` from the byte layouts of pylontech-can.md §3.1 (0x351), §3.2
(0x355), §3.3 (0x356), §3.4 (0x359) and §3.5 (0x35C) — not with the codec under test.
"""

from __future__ import annotations

import json
import struct
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.processes import CAN_SIM, simulator

PERIOD = 0.2
"""s; the emulator's frame-set period and the simulated inverter's heartbeat period."""

Cycle = dict[int, bytes]
"""One frame set: CAN id → data."""


@dataclass(frozen=True)
class Sent:
    """One frame set as the inverter read it: CVL/DVL (V), CCL/DCL (A), the 0x35C charge and
    discharge request bits, 0x359 bytes 0–3 (``protection``) and byte 4 (``modules``, the
    number of modules online), 0x355 SoC (%) and 0x356 temperature (°C)."""

    cvl: float
    ccl: float
    dcl: float
    dvl: float
    charge_bit: bool
    discharge_bit: bool
    protection: bytes
    soc: int
    temperature: float = 0.0
    modules: int = 0

    @classmethod
    def of(cls, cycle: Cycle) -> Sent:
        """Decode one frame set (0x351 CVL/CCL/DCL/DVL in 0.1 V / 0.1 A, little endian)."""
        cvl, ccl, dcl, dvl = struct.unpack("<HhhH", cycle[0x351][:8])
        flags = cycle[0x35C][0]
        _volts, _amps, temp = struct.unpack("<hhh", cycle[0x356][:6])
        return cls(
            cvl / 10,
            ccl / 10,
            dcl / 10,
            dvl / 10,
            bool(flags & 0x80),
            bool(flags & 0x40),
            cycle[0x359][:4],
            struct.unpack("<H", cycle[0x355][:2])[0],
            temp / 10,
            cycle[0x359][4],
        )


class Inverter:
    """Reads the simulated inverter's record file as frame sets (0x351 … 0x35E)."""

    def __init__(self, record: Path) -> None:
        self.record = record

    def cycles(self, after: int = 0) -> list[Cycle]:
        """Complete frame sets from record line ``after`` on."""
        if not self.record.exists():
            return []
        lines = self.record.read_text().splitlines()[after:]
        out: list[Cycle] = []
        current: Cycle | None = None
        for line in lines:
            if not line.endswith("}"):
                continue
            rec = json.loads(line)
            can_id, data = int(rec["id"]), bytes.fromhex(rec["data"])
            if can_id == 0x351:
                current = {}
            if current is not None:
                current[can_id] = data
                if can_id == 0x35E:
                    out.append(current)
                    current = None
        return out

    def sent(self, after: int = 0) -> list[Sent]:
        """:meth:`cycles` from ``after`` on, decoded."""
        return [Sent.of(c) for c in self.cycles(after)]

    def mark(self) -> int:
        """Line index to pass as ``after``: only frames from now on."""
        return len(self.record.read_text().splitlines()) if self.record.exists() else 0

    def tagged(self, tag: int, after: int) -> Sent:
        """The first frame set from ``after`` on with 0x355 SoC ``tag``."""
        return self.wait(lambda s: s.soc == tag, after, f"the frames of state {tag}")

    def wait(self, ok: Callable[[Sent], bool], after: int, what: str, timeout: float = 15) -> Sent:
        """The first frame set from ``after`` on that satisfies ``ok``; AssertionError (with
        the last set seen) after ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while True:
            sent = self.sent(after)
            for s in sent:
                if ok(s):
                    return s
            last = sent[-1] if sent else None
            assert time.monotonic() < deadline, f"timed out waiting for {what}; last: {last}"
            time.sleep(0.05)


@contextmanager
def inverter_sim(record: Path) -> Iterator[str]:
    """Run a simulated inverter on slcan over TCP recording to ``record``; yields the
    emulator's channel URL (``socket://127.0.0.1:PORT``)."""
    with simulator(
        CAN_SIM,
        "inverter",
        "--tcp",
        "127.0.0.1:0",
        "--period",
        str(PERIOD),
        "--record",
        str(record),
    ) as sim:
        yield sim.url


def output_section(instance: str, name: str, channel: str, **extra: object) -> str:
    """``[inverters.INSTANCE.outputs.NAME]`` on slcan at ``channel``, period :data:`PERIOD`,
    plus ``extra`` keys (values written as JSON)."""
    lines = [
        f"[inverters.{instance}.outputs.{name}]",
        'interface = "slcan"',
        f'channel = "{channel}"',
        f"period = {PERIOD}",
        *(f"{k} = {json.dumps(v)}" for k, v in extra.items()),
    ]
    return "\n".join(lines) + "\n"


FAILSAFE = (0.0, 0.0, 0.0, 0.0, False, False, bytes((0, 0x08, 0, 0x08)), 0)
"""The fail-safe set: limits 0, both bits clear, system error + communication failure, SoC 0."""


def is_failsafe(s: Sent) -> bool:
    """Whether ``s`` is the fail-safe set (:data:`FAILSAFE`)."""
    fields = (s.cvl, s.ccl, s.dcl, s.dvl, s.charge_bit, s.discharge_bit, s.protection, s.soc)
    return fields == FAILSAFE
