"""P6 footprint: RSS and CPU of every service at 16 packs polled at 1 Hz, and of the whole stack.

The stack of :func:`tools.stack.start_load` (16 packs: 8 Pylontech RS485, 4 PACE Modbus, 3 Daly
A5 on serial, 1 Pylontech CAN; one bank; the CAN inverter emulator feeding a simulated
inverter; hass-discovery) runs against a real Mosquitto. After a 20 s warm-up, every process is
sampled every 2 s for 60 s (20 s with ``quick``) from ``/proc/<pid>/stat`` (utime + stime) and
``/proc/<pid>/status`` (VmRSS).

Goals (issue 10): ≤ 40 MiB RSS per service (the largest RSS seen), ≤ 3 % of one core for the
whole stack (every bmslink service plus Mosquitto; the simulators are the load, not the stack).
"""

from __future__ import annotations

import math
import tempfile
import time
from pathlib import Path

from tools.bench import Result
from tools.stack import SERVICE_SCRIPTS, Sampler, Stack, start_load

PACKS = 16
RSS_GOAL_MIB = 40.0
STACK_CPU_GOAL = 3.0


def measure(packs: int, warmup: float, duration: float) -> tuple[Sampler, Stack, float]:
    """Run the load for ``warmup`` + ``duration`` s; returns the sampler, the (closed) stack
    and the monotonic time measuring started."""
    with tempfile.TemporaryDirectory(prefix="bench-footprint-") as tmp, Stack(Path(tmp)) as stack:
        stack.start_broker()
        start_load(stack, packs, 1.0)
        sampler = Sampler(stack, 2.0).start()
        time.sleep(warmup)
        since = time.monotonic()
        sampler.sample()
        time.sleep(duration)
        sampler.stop()
        return sampler, stack, since


def run(quick: bool) -> list[Result]:
    """P6 per service kind (RSS max, CPU mean) and for the whole stack."""
    duration = 20.0 if quick else 60.0
    sampler, stack, since = measure(PACKS, 20.0, duration)
    results: list[Result] = []
    by_script: dict[str, list[str]] = {}
    for proc in stack.services():
        by_script.setdefault(proc.script, []).append(proc.name)
    total = 0.0
    parts: dict[str, float] = {}
    for script, names in sorted(by_script.items()):
        service = SERVICE_SCRIPTS.get(script, script)
        rss = max(sampler.rss_mb(n, since)["max"] for n in names)
        cpus = [sampler.cpu_percent(n, since) for n in names]
        cpu = max(cpus)
        for n, c in zip(names, cpus, strict=True):
            parts[n] = round(c, 3)
            total += 0.0 if math.isnan(c) else c
        results.append(
            Result(
                id=f"P6-rss-{service}",
                name=f"{service} RSS, {PACKS} packs @ 1 Hz (max of {len(names)} process(es))",
                value=rss,
                unit="MiB",
                goal=f"<= {RSS_GOAL_MIB:.0f}",
                met=rss <= RSS_GOAL_MIB,
                details={n: sampler.rss_mb(n, since) for n in names},
            )
        )
        results.append(
            Result(
                id=f"P6-cpu-{service}",
                name=f"{service} CPU, {PACKS} packs @ 1 Hz (busiest process)",
                value=cpu,
                unit="% core",
                details={"processes": {n: parts[n] for n in names}},
            )
        )
    broker_cpu = sampler.cpu_percent("mosquitto", since)
    parts["mosquitto"] = round(broker_cpu, 3)
    total += 0.0 if math.isnan(broker_cpu) else broker_cpu
    results.append(
        Result(
            id="P6-stack-cpu",
            name=f"whole stack CPU ({len(parts) - 1} services + Mosquitto, {PACKS} packs @ 1 Hz)",
            value=total,
            unit="% core",
            goal=f"<= {STACK_CPU_GOAL:.0f}",
            met=total <= STACK_CPU_GOAL,
            details={"processes": parts, "seconds": duration},
        )
    )
    results.append(
        Result(
            id="P6-stack-rss",
            name="whole stack RSS (sum of max per process, services + Mosquitto)",
            value=sum(sampler.rss_mb(n, since)["max"] for n in parts),
            unit="MiB",
        )
    )
    return results
