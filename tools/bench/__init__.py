"""``make bench``: every benchmark of the project, one JSON report and a table.

Benchmarks are modules ``tools/bench/bench_*.py`` with ``run(quick: bool) -> list[Result]``;
adding a module adds its results. Goals are reported, never asserted (speed is measured here,
not in tests).
"""

from __future__ import annotations

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
