"""P5 end to end: a reader's pack state → the bank state counting it → the CAN frames carrying
it at the simulated inverter.

The stack of :func:`tools.stack.start_load` with 16 packs at 1 Hz (no hass-discovery), the
bank aggregator with its default configuration (``min_interval`` 0.05 s coalescing) and the
emulator at its default period (1 s) over slcan/TCP to ``bmslink-sim-can inverter --record``.
A QoS 1 subscriber stamps every pack and bank state on arrival (Unix s, the clock of the
inverter's record). For every pack state P (see :func:`tools.stack.e2e_latencies`):

- ``P5-e2e``: (first bank state counting P − P) + (0x356 of the first frame set carrying it −
  start of the first frame set after that bank state): the whole path except the deliberate
  wait for the emulator's next period boundary (a missed boundary adds a period);
- ``P5-e2e-total``: P → the 0x356 carrying it, period wait included (≈ 0..1 s by design);
- ``P5-frames``: frame sets that were stale, over-limit or matched no bank state
  (:func:`tools.stack.check_frames`), goal 0.

Goal (issue 10): ``P5-e2e`` p99 ≤ 20 ms. 60 s (20 s with ``quick``) after a 15 s warm-up.
"""

from __future__ import annotations

import contextlib
import json
import statistics
import tempfile
import threading
import time
from pathlib import Path

from tools.bench import Result
from tools.stack import (
    BankArrival,
    PackArrival,
    Recorder,
    Stack,
    check_frames,
    e2e_latencies,
    read_cycles,
    start_load,
)

PACKS = 16
GOAL_MS = 20.0


def percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile (0..1, nearest rank) of ``values``; NaN when empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def collect(
    packs: int, warmup: float, duration: float, bank_options: dict[str, object] | None = None
) -> tuple[list[PackArrival], list[BankArrival], Path, Stack]:
    """Run the stack; returns pack and bank arrivals after the warm-up, the inverter record
    (copied out of the stack's directory) and the closed stack."""
    pack_arrivals: list[PackArrival] = []
    bank_arrivals: list[BankArrival] = []
    lock = threading.Lock()
    measuring = threading.Event()

    def hook(topic: str, payload: bytes, at: float) -> None:
        if not measuring.is_set() or not topic.endswith("/state"):
            return
        with contextlib.suppress(ValueError, KeyError, TypeError):
            doc = json.loads(payload)
            with lock:
                if doc.get("kind") == "bank":
                    bank_arrivals.append(BankArrival(at, doc))
                else:
                    pack_arrivals.append(PackArrival(str(doc["id"]), float(doc["ts"]), at))

    out = Path(tempfile.mkdtemp(prefix="bench-e2e-"))
    with Stack(out / "stack") as stack:
        stack.start_broker()
        recorder = Recorder(stack.port, subscriptions=("bms/+/state",), hook=hook).start()
        load = start_load(stack, packs, 1.0, hass=False, bank_options=bank_options)
        time.sleep(warmup)
        measuring.set()
        time.sleep(duration)
        stack.stop_services([*load.packs, "bank-aggregator", "inverter-emulator"])
        recorder.stop()
        record = load.record
    return pack_arrivals, bank_arrivals, record, stack


def run(quick: bool) -> list[Result]:
    """P5 end to end (p50, p99), the total with the period wait, and the frame check, with the
    aggregator's default ``min_interval`` (0.05 s) and without coalescing (0)."""
    duration = 20.0 if quick else 60.0
    results: list[Result] = []
    variants: list[tuple[str, dict[str, object]]] = [("", {}), ("-mi0", {"min_interval": 0.0})]
    for suffix, options in variants:
        results += _variant(duration, suffix, options)
    return results


def _variant(duration: float, suffix: str, options: dict[str, object]) -> list[Result]:
    packs, bank, record, _stack = collect(PACKS, 15.0, duration, options)
    label = "bank min_interval 0" if options else "default config"
    t0 = min((p.at for p in packs), default=0.0)
    cycles = [c for c in read_cycles(record) if c.start >= t0]
    check = check_frames(cycles, bank)
    excluding, including, bank_hop, counts = e2e_latencies(packs, bank, check)
    p50, p99 = percentile(excluding, 0.5), percentile(excluding, 0.99)
    bad = len(check.stale) + len(check.over_limit) + len(check.unmatched)
    details = {
        **counts,
        "bank_options": options,
        "bank_hop_p50_ms": percentile(bank_hop, 0.5),
        "bank_hop_p99_ms": percentile(bank_hop, 0.99),
        "median_ms": statistics.median(excluding) if excluding else float("nan"),
        "max_ms": max(excluding, default=float("nan")),
        "cycles": len(cycles),
    }
    return [
        Result(
            f"P5-e2e{suffix}-p50",
            f"state → bank → CAN frame, p50, period wait excluded ({label})",
            p50,
            "ms",
            details=details,
        ),
        Result(
            f"P5-e2e{suffix}",
            f"state → bank → CAN frame, p99, period wait excluded ({label})",
            p99,
            "ms",
            goal=f"<= {GOAL_MS:.0f}",
            met=bool(excluding) and p99 <= GOAL_MS,
            details=details,
        ),
        Result(
            f"P5-e2e{suffix}-total",
            f"state → CAN frame incl. the 1 s period wait, p99 ({label})",
            percentile(including, 0.99),
            "ms",
            details={"p50_ms": percentile(including, 0.5)},
        ),
        Result(
            f"P5-frames{suffix}",
            f"frame sets stale / over-limit / unmatched ({label})",
            bad,
            "sets",
            goal="= 0",
            met=bad == 0 and len(cycles) > 0,
            details={
                "stale": check.stale,
                "over_limit": check.over_limit,
                "unmatched": check.unmatched,
                "failsafe": len(check.failsafe),
                "cycles": len(cycles),
            },
        ),
    ]
