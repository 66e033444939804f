"""``make bench``: every benchmark of the project, one JSON report and a table.

Benchmarks are modules ``tools/bench/bench_*.py`` with ``run(quick: bool) -> list[Result]``;
adding a module adds its results. Goals are reported, never asserted (speed is measured here,
not in tests).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Result:
    """One measured figure.

    ``id`` is the goal's name (e.g. ``P1``) or a short key; ``value`` in ``unit``; ``goal`` is a
    human-readable target (e.g. ``>= 30``) and ``met`` whether the value reaches it (None when the
    figure has no goal); ``details`` holds the raw numbers behind the figure.
    """

    id: str
    name: str
    value: float
    unit: str
    goal: str | None = None
    met: bool | None = None
    details: dict[str, Any] = field(default_factory=dict)


def time_per_call(fn: Callable[[], object], min_time: float) -> float:
    """Mean seconds per call of ``fn``: the best of 3 rounds, each calling it repeatedly for at
    least ``min_time / 3`` s."""
    best = float("inf")
    for _ in range(3):
        n = 0
        started = time.perf_counter()
        while True:
            fn()
            n += 1
            elapsed = time.perf_counter() - started
            if elapsed >= min_time / 3:
                break
        best = min(best, elapsed / n)
    return best
