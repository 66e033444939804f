"""Run every ``tools/bench/bench_*.py``; print a table; write ``.bench/results.json``."""

from __future__ import annotations

import argparse
import importlib
import json
import pkgutil
import platform
import sys
import time
import traceback
from dataclasses import asdict
from pathlib import Path

from rich.console import Console
from rich.table import Table

from tools import bench
from tools.bench import Result


def main(argv: list[str] | None = None) -> int:
    """Run the benchmarks (``--only NAME`` to select modules, ``--quick`` for short runs)."""
    parser = argparse.ArgumentParser(prog="make bench")
    parser.add_argument(
        "--only", action="append", default=[], help="module name, e.g. bench_pylontech"
    )
    parser.add_argument("--quick", action="store_true", help="shorter runs (less precise)")
    parser.add_argument("--out", type=Path, default=Path(".bench/results.json"))
    args = parser.parse_args(argv)
    results: list[Result] = []
    failures: list[str] = []
    names = sorted(
        m.name for m in pkgutil.iter_modules(bench.__path__) if m.name.startswith("bench_")
    )
    for name in names:
        if args.only and name not in args.only:
            continue
        started = time.perf_counter()
        print(f"running {name} ...", file=sys.stderr, flush=True)
        try:
            module = importlib.import_module(f"tools.bench.{name}")
            results.extend(module.run(args.quick))
        except Exception:
            failures.append(name)
            traceback.print_exc()
        print(f"  {name}: {time.perf_counter() - started:.1f} s", file=sys.stderr)
    table = Table(title="bmslink benchmarks")
    for col in ("id", "what", "value", "unit", "goal", "met"):
        table.add_column(col)
    for r in results:
        met = "" if r.met is None else ("yes" if r.met else "NO")
        table.add_row(r.id, r.name, f"{r.value:.4g}", r.unit, r.goal or "", met)
    Console(width=140).print(table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "machine": {
            "python": sys.version.split()[0],
            "platform": platform.platform(),
            "cpu": platform.processor(),
        },
        "results": [asdict(r) for r in results],
        "failed_modules": failures,
    }
    args.out.write_text(json.dumps(report, indent=2))
    print(f"wrote {args.out}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
