"""can-inverter-emulator timing: frame period jitter and bank-state → frame latency.

One :class:`~can_inverter_emulator.app.Emulator` with two outputs runs for 60 s (10 s with
``quick``), period 1 s:

- ``virtual``: python-can's in-process bus (the emulator's own scheduling only);
- ``slcan``: python-can slcan over a pty to the simulator's inverter (``CanInverter`` behind a
  ``PtyLine``, same process), i.e. the serialisation path of a CANable adapter.

Jitter: |interval between consecutive 0x351 − period| at the receiver (p99, max). Latency: a new
bank state (JSON, through ``Emulator.on_state``, as the MQTT handler gets it) is put at a random
phase; the time until the first 0x355 carrying its SoC arrives, minus the wait until the output's
next period boundary (goal: p99 ≤ 20 ms beyond the boundary). A state replaced by a newer one
before its boundary is never sent (no backlog, by design) and is counted as ``superseded``.
"""

from __future__ import annotations

import itertools
import random
import statistics
import threading
import time

import can

from battery_simulator.can_devices import CanInverter, SlcanFramer
from battery_simulator.line import PtyLine
from bmslink import schema
from can_inverter_emulator.app import Emulator
from can_inverter_emulator.config import EmulatorConfig, OutputConfig
from tools.bench import Result

PERIOD = 1.0
GOAL_MS = 20.0


def _p99(values: list[float]) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]


class _VirtualInverter:
    """Receives on a virtual channel; records (monotonic arrival, id, data); sends 0x305."""

    def __init__(self, channel: str) -> None:
        self.bus = can.Bus(interface="virtual", channel=channel)
        self.log: list[tuple[float, int, bytes]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        next_beat = 0.0
        while not self._stop.is_set():
            if time.monotonic() >= next_beat:
                self.bus.send(
                    can.Message(arbitration_id=0x305, data=bytes(8), is_extended_id=False)
                )
                next_beat = time.monotonic() + 1.0
            msg = self.bus.recv(0.05)
            if msg is not None:
                self.log.append((time.monotonic(), msg.arbitration_id, bytes(msg.data)))

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.bus.shutdown()


class _PtyInverter(CanInverter):
    """The simulator's inverter, stamping arrivals with the monotonic clock."""

    def __init__(self) -> None:
        super().__init__(heartbeat=False)
        self.mono: list[tuple[float, int, bytes]] = []

    def on_frame(self, can_id: int, extended: bool, data: bytes) -> None:
        self.mono.append((time.monotonic(), can_id, data))


def _state(soc: float) -> bytes:
    return schema.encode(
        schema.BankState(
            id="bank1",
            ts=time.time(),
            voltage=52.0,
            current=-10.0,
            soc=soc,
            soh=99.0,
            charge_enabled=True,
            discharge_enabled=True,
            charge_voltage_limit=55.2,
            discharge_voltage_limit=46.0,
            charge_current_limit=100.0,
            discharge_current_limit=100.0,
            members=["a"],
            members_online=["a"],
        )
    )


def _jitter(log: list[tuple[float, int, bytes]]) -> list[float]:
    times = [t for t, i, _ in log if i == 0x351]
    return [abs((b - a) - PERIOD) * 1000 for a, b in itertools.pairwise(times)]


def run(quick: bool) -> list[Result]:
    """Run the emulator for 60 s (10 s quick) and report jitter and latency per output."""
    duration = 10.0 if quick else 60.0
    pty_inverter = _PtyInverter()
    pty_inverter.opened.set()
    line = PtyLine(pty_inverter, framer=SlcanFramer()).start()
    virtual = _VirtualInverter("bench-can")
    outputs = {
        "virtual": OutputConfig(interface="virtual", channel="bench-can", period=PERIOD),
        "slcan": OutputConfig(interface="slcan", channel=line.device_path, period=PERIOD),
    }
    config = EmulatorConfig(bank="bank1", stale_after=30.0, outputs=outputs)
    stop = threading.Event()
    emulator = Emulator(config, "bench", lambda _t, _v: None, stop)
    emulator.start()
    rng = random.Random(7)
    pending: list[tuple[float, dict[str, float], int]] = []  # (put at, next boundary, soc)
    soc = 1
    try:
        time.sleep(1.5)  # first cycles, bus opened
        end = time.monotonic() + duration
        while time.monotonic() < end:
            time.sleep(rng.uniform(0.6, 1.4))
            soc = soc % 99 + 1
            boundaries = {}
            now = time.monotonic()
            for name, runner in emulator.runners.items():
                last = runner.last_cycle_at or now
                nxt = last + PERIOD
                while nxt <= now:
                    nxt += PERIOD
                boundaries[name] = nxt
            emulator.on_state("bms/bank1/state", _state(float(soc)))
            pending.append((time.monotonic(), boundaries, soc))
        time.sleep(PERIOD + 0.3)
    finally:
        stop.set()
        emulator.join()
        virtual.close()
        line.stop()
    logs = {"virtual": virtual.log, "slcan": pty_inverter.mono}
    results: list[Result] = []
    for name, log in logs.items():
        jitter = _jitter(log)
        beyond: list[float] = []
        missing = superseded = 0
        for k, (put_at, boundaries, value) in enumerate(pending):
            if k + 1 < len(pending) and pending[k + 1][0] < boundaries[name]:
                superseded += 1  # replaced before its cycle: never sent, by design
                continue
            arrival = next(
                (t for t, i, d in log if i == 0x355 and t >= put_at and d[0] == value), None
            )
            if arrival is None:
                missing += 1
                continue
            beyond.append((arrival - boundaries[name]) * 1000)
        p99_jitter = _p99(jitter)
        p99_beyond = _p99(beyond)
        results.append(
            Result(
                id=f"CAN-J-{name}",
                name=f"emulator 0x351 period jitter p99 ({name}, {duration:.0f} s)",
                value=p99_jitter,
                unit="ms",
                goal=None,
                details={
                    "samples": len(jitter),
                    "max_ms": max(jitter, default=float("nan")),
                    "median_ms": statistics.median(jitter) if jitter else float("nan"),
                },
            )
        )
        results.append(
            Result(
                id=f"CAN-L-{name}",
                name=f"bank state → frames, beyond next period boundary, p99 ({name})",
                value=p99_beyond,
                unit="ms",
                goal=f"<= {GOAL_MS:.0f}",
                met=bool(beyond) and p99_beyond <= GOAL_MS and missing == 0,
                details={
                    "samples": len(beyond),
                    "missing": missing,
                    "superseded": superseded,
                    "max_ms": max(beyond, default=float("nan")),
                    "median_ms": statistics.median(beyond) if beyond else float("nan"),
                },
            )
        )
    return results
