"""``make soak`` / ``python -m tools.soak``: the whole stack under load for a long time.

``--packs`` simulated packs (default 64: 32 Pylontech RS485, 16 PACE Modbus, 14 Daly A5 on
serial, 2 Pylontech CAN; see :func:`tools.stack.split_packs`) polled every ``--interval`` s
(default 1 s), one bank over all of them, the CAN inverter emulator feeding a simulated inverter,
and hass-discovery, against a real Mosquitto, for ``--minutes`` (default 10).

Measured (``/proc/<pid>/stat`` and ``/proc/<pid>/status`` every ``--sample`` s):

- RSS per service over time (MiB: first/last/max after the warm-up, and the slope of a
  least-squares line in MiB/h — "flat" means |slope| ≤ 2 MiB/h or growth ≤ 1 MiB);
- CPU per service and for the whole stack (services + broker), in % of one core;
- message counts, in = out along the chain: pack states the readers published (seen by an
  independent QoS 1 subscriber) vs. the polls expected; bank states published (the
  aggregator's ``published`` counter) = bank states delivered to the subscriber = bank states
  the emulator received (``bank_updates``); frames the emulator sent (``frames_sent``) = frames
  the simulated inverter recorded; and the broker's dropped-message counter.

Writes ``--out`` (default ``.bench/soak.json``) and prints a summary. Runs fine in the
background: ``nohup python -m tools.soak --minutes 60 > .bench/soak.log 2>&1 &``; SIGTERM or
Ctrl-C ends the run early and still writes the report (marked ``"interrupted": true``). A
progress line is printed every minute, and the JSON is rewritten every 5 minutes.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import platform
import shutil
import signal
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from types import FrameType
from typing import Any

from tools.stack import Load, Recorder, Sampler, Stack, start_load, stats_lines

RSS_GOAL_MB = 40.0
STACK_CPU_GOAL = 3.0
FLAT_SLOPE_MB_PER_H = 2.0
FLAT_GROWTH_MB = 1.0


def _round(value: float, digits: int = 2) -> float | None:
    return None if math.isnan(value) else round(value, digits)


def _last_stats(stack: Stack, name: str) -> dict[str, Any]:
    lines = stats_lines(stack.procs[name]) if name in stack.procs else []
    return lines[-1] if lines else {}


def report(
    stack: Stack,
    load: Load,
    sampler: Sampler,
    recorder: Recorder,
    *,
    measured_from: float,
    measured_s: float,
    counts_at_start: Counter[str],
    args: argparse.Namespace,
    interrupted: bool,
    final: bool,
    offline: list[str] | None = None,
    bank_distinct: int | None = None,
) -> dict[str, Any]:
    """The soak report (JSON-ready); ``final``: the stack was stopped, so the services' exit
    ``stats`` lines and the frame record are complete."""
    services: dict[str, Any] = {}
    total_cpu = 0.0
    for name in [p.name for p in stack.services()] + ["mosquitto"]:
        cpu = sampler.cpu_percent(name, since=measured_from)
        rss = sampler.rss_mb(name, since=measured_from)
        growth = rss["last"] - rss["first"]
        flat = abs(rss["slope_mb_per_h"]) <= FLAT_SLOPE_MB_PER_H or growth <= FLAT_GROWTH_MB
        proc = stack.procs.get(name) or stack.broker
        services[name] = {
            "script": proc.script if proc else "mosquitto",
            "cpu_percent": _round(cpu),
            "rss_mb": {k: _round(v) for k, v in rss.items()},
            "rss_flat": flat,
            "rss_goal_met": rss["max"] <= RSS_GOAL_MB,
            "rss_series_mb": [
                [round(s.t - measured_from, 1), round(s.rss_kb / 1024, 2)]
                for s in sampler.samples.get(name, [])
                if s.t >= measured_from
            ],
        }
        if not math.isnan(cpu):
            total_cpu += cpu
    with recorder.cond:
        counts = Counter(recorder.counts)
    delta = counts - counts_at_start
    expected = measured_s / load.interval
    per_pack = {pid: delta.get(f"bms/{pid}/state", 0) for pid in load.pack_ids}
    short = {pid: n for pid, n in per_pack.items() if n < 0.9 * expected}
    bank_stats = _last_stats(stack, "bank-aggregator")
    emu_stats = _last_stats(stack, "inverter-emulator")
    frames_recorded = 0
    if load.record.exists():
        frames_recorded = sum(1 for _ in load.record.open())
    frames_sent = sum(
        int(o.get("frames_sent", 0)) for o in (emu_stats.get("outputs") or {}).values()
    )
    chain = {
        "bank_published": bank_stats.get("published"),
        "bank_states_delivered": counts.get(f"bms/{load.bank}/state", 0),
        "bank_states_distinct": bank_distinct,
        "emulator_bank_updates": emu_stats.get("bank_updates"),
        "emulator_frames_sent": frames_sent,
        "inverter_frames_recorded": frames_recorded,
        "emulator_rejected": emu_stats.get("rejected"),
        "bank_refused": bank_stats.get("refused"),
        "broker_dropped": recorder.latest.get("$SYS/broker/publish/messages/dropped", b"").decode()
        or None,
    }
    chain_ok = None
    if final:
        # A state published before the first CONNACK is sent twice (queued by paho and
        # re-published as sticky at connect): compare distinct states with the publisher's count.
        chain_ok = (
            chain["bank_published"] == bank_distinct
            and chain["emulator_bank_updates"] == chain["bank_states_delivered"]
            and frames_sent == frames_recorded
        )
    return {
        "machine": {"python": sys.version.split()[0], "platform": platform.platform()},
        "config": {
            "packs": len(load.pack_ids),
            "interval_s": load.interval,
            "minutes_requested": args.minutes,
            "warmup_s": args.warmup,
            "sample_s": args.sample,
        },
        "interrupted": interrupted,
        "final": final,
        "measured_s": round(measured_s, 1),
        "services": services,
        "stack_cpu_percent": round(total_cpu, 2),
        "stack_cpu_goal_met": total_cpu <= STACK_CPU_GOAL,
        "messages": {
            "pack_states_expected_each": round(expected, 1),
            "pack_states_total": sum(per_pack.values()),
            "pack_states_min": min(per_pack.values(), default=0),
            "packs_below_90_percent": short,
            "per_pack": per_pack,
            "chain": chain,
            "chain_in_equals_out": chain_ok,
            "availability_offline_at_end": offline,
        },
        "exit_status": dict(stack.exit_status),
        "logs": str(stack.logs),
    }


def summary(rep: dict[str, Any]) -> str:
    """A human-readable table of :func:`report`'s result."""
    cfg = rep["config"]
    lines = [
        f"soak: {cfg['packs']} packs every {cfg['interval_s']} s, measured {rep['measured_s']} s"
        + (" (interrupted)" if rep["interrupted"] else ""),
        f"{'process':<22} {'CPU %':>7} {'RSS max':>8} {'first':>7} {'last':>7} {'MiB/h':>7}  flat",
    ]
    for name, s in rep["services"].items():
        r = s["rss_mb"]
        lines.append(
            f"{name:<22} {s['cpu_percent'] or float('nan'):>7.2f} {r['max'] or float('nan'):>8.1f}"
            f" {r['first'] or float('nan'):>7.1f} {r['last'] or float('nan'):>7.1f}"
            f" {r['slope_mb_per_h'] or 0.0:>7.2f}  {'yes' if s['rss_flat'] else 'NO'}"
        )
    m = rep["messages"]
    lines.append(
        f"whole stack CPU: {rep['stack_cpu_percent']:.2f} % of a core "
        f"(goal <= {STACK_CPU_GOAL} %: {'met' if rep['stack_cpu_goal_met'] else 'MISSED'})"
    )
    lines.append(
        f"pack states: {m['pack_states_total']} (min {m['pack_states_min']} per pack, "
        f"expected ~{m['pack_states_expected_each']}); "
        f"below 90 %: {len(m['packs_below_90_percent'])}"
    )
    lines.append(f"chain: {json.dumps(m['chain'])}; in = out: {m['chain_in_equals_out']}")
    if m["availability_offline_at_end"]:
        lines.append(f"offline at the end: {m['availability_offline_at_end']}")
    bad = {k: v for k, v in rep["exit_status"].items() if v not in (0, None)}
    if bad:
        lines.append(f"non-zero exit statuses: {bad}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the soak; exit 0 when it completed with in = out and flat RSS, 1 otherwise."""
    p = argparse.ArgumentParser(prog="python -m tools.soak", description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, default=10.0, help="measured time (default 10)")
    p.add_argument("--packs", type=int, default=64, help="simulated packs (default 64)")
    p.add_argument("--interval", type=float, default=1.0, help="poll interval, s (default 1)")
    p.add_argument("--sample", type=float, default=5.0, help="s between /proc samples")
    p.add_argument(
        "--warmup", type=float, default=30.0, help="s before measuring (imports, caches)"
    )
    p.add_argument("--out", type=Path, default=Path(".bench/soak.json"))
    p.add_argument(
        "--workdir", type=Path, default=Path(".soak"), help="logs, site file, broker data"
    )
    p.add_argument("--keep", action="store_true", help="keep the previous workdir's logs")
    args = p.parse_args(argv)
    if not args.keep:
        shutil.rmtree(args.workdir, ignore_errors=True)
    stop = threading.Event()
    interrupted = False

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        nonlocal interrupted
        interrupted = True
        print(f"signal {signum}: finishing the soak early", flush=True)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with Stack(args.workdir) as stack:
        stack.start_broker()
        bank_ts: set[float] = set()

        def on_bank_state(topic: str, payload: bytes, _at: float) -> None:
            if topic == "bms/bank1/state":
                with contextlib.suppress(ValueError, TypeError):
                    bank_ts.add(float(json.loads(payload)["ts"]))

        recorder = Recorder(
            stack.port,
            subscriptions=(
                "bms/+/state",
                "bms/+/availability",
                "$SYS/broker/publish/messages/dropped",
            ),
            hook=on_bank_state,
        ).start()
        load = start_load(stack, args.packs, args.interval)
        print(
            f"soak: broker 127.0.0.1:{stack.port}, {len(load.pack_ids)} packs, "
            f"{len(stack.services())} services; logs in {stack.logs}",
            flush=True,
        )
        sampler = Sampler(stack, args.sample).start()
        try:
            recorder.wait(
                lambda: all(recorder.counts.get(f"bms/{i}/state") for i in load.pack_ids),
                60,
                "a state from every pack",
            )
        except TimeoutError as exc:
            missing = [i for i in load.pack_ids if not recorder.counts.get(f"bms/{i}/state")]
            print(f"warning: {exc}; no state yet from {missing}", flush=True)
        stop.wait(args.warmup)
        measured_from = time.monotonic()
        with recorder.cond:
            counts_at_start = Counter(recorder.counts)
        end = measured_from + args.minutes * 60
        next_progress = measured_from + 60
        next_write = measured_from + 300
        while not stop.is_set() and time.monotonic() < end:
            stop.wait(min(1.0, max(0.0, end - time.monotonic())))
            now = time.monotonic()
            if now >= next_progress:
                next_progress += 60
                rss = {n: sampler.rss_mb(n)["last"] for n in sampler.samples}
                print(
                    f"{(now - measured_from) / 60:.0f} min: RSS max "
                    f"{max(rss.values(), default=0):.1f} MiB; bank states "
                    f"{recorder.counts.get('bms/bank1/state', 0)}",
                    flush=True,
                )
            if now >= next_write:
                next_write += 300
                rep = report(
                    stack,
                    load,
                    sampler,
                    recorder,
                    measured_from=measured_from,
                    measured_s=now - measured_from,
                    counts_at_start=counts_at_start,
                    args=args,
                    interrupted=False,
                    final=False,
                )
                args.out.write_text(json.dumps(rep, indent=1))
        measured_s = time.monotonic() - measured_from
        sampler.stop()
        with recorder.cond:
            offline = sorted(
                t
                for t, v in recorder.latest.items()
                if t.endswith("/availability") and v != b"online"
            )
        # Producers first (readers, then the bank, then the emulator), each waited for, so that
        # every bank state and frame is accounted for; the broker and simulators after them.
        readers = list(load.packs)
        stack.stop_services([*readers, "bank-aggregator", "inverter-emulator"])
        time.sleep(1.0)
        recorder.stop()
        stack.close()
        rep = report(
            stack,
            load,
            sampler,
            recorder,
            measured_from=measured_from,
            measured_s=measured_s,
            counts_at_start=counts_at_start,
            args=args,
            interrupted=interrupted,
            final=True,
            offline=offline,
            bank_distinct=len(bank_ts),
        )
    args.out.write_text(json.dumps(rep, indent=1))
    print(summary(rep))
    print(f"wrote {args.out}")
    ok = rep["messages"]["chain_in_equals_out"] and all(
        s["rss_flat"] for s in rep["services"].values()
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
