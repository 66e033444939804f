"""Bank-aggregator benchmarks through a real Mosquitto and the aggregator as a real process.

- **P5**: latency from a member's ``bms/<id>/state`` publish to the first bank state carrying it
  (the member's ``ts`` in the bank's ``members_ts``), p50/p99, 32 packs at 1 Hz each with
  evenly spread phases. Measured with ``min_interval = 0`` (prompt) and with the default 0.05 s
  (where a coalesced update waits up to 50 ms by design). Goal: p99 ≤ 10 ms.
- **P7**: the largest pack count at 1 Hz that one aggregator sustains without a growing backlog
  (latency in the second half of the run not growing and below 1 s), with the aggregator's CPU %
  (of one core) and RSS at that load. Goal: ≥ 256 packs.

Publisher, subscriber and broker share the machine with the aggregator, so the figures include
their load. Wall-clock latencies use one clock (same host).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from bmslink import schema
from tools.bench import Result

_CLK_TCK = os.sysconf("SC_CLK_TCK")


class _BankView(msgspec.Struct):
    members_ts: dict[str, float] = msgspec.field(default_factory=dict)
    members_online: list[str] = msgspec.field(default_factory=list)


_VIEW = msgspec.json.Decoder(_BankView)


@dataclass
class _Run:
    latencies: list[tuple[float, float]] = field(default_factory=list)  # (received at, latency s)
    bank_states: int = 0
    published: int = 0
    last_online: int = 0


class Broker:
    """A Mosquitto on a free loopback port (the bench's own, so ``tools`` does not import
    ``tests``). Nagle's algorithm is off (``set_tcp_nodelay``): with it, small messages wait
    for the peer's delayed ACK (up to 40 ms on Linux)."""

    def __init__(self, workdir: Path) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = int(s.getsockname()[1])
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        conf = workdir / "mosquitto.conf"
        lines = [f"listener {self.port} 127.0.0.1", "allow_anonymous true", "set_tcp_nodelay true"]
        if os.geteuid() == 0:
            lines.append("user root")
        conf.write_text("\n".join(lines) + "\n")
        self.proc = subprocess.Popen([binary, "-c", str(conf)], stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port)):
                return
            time.sleep(0.01)
        raise RuntimeError("mosquitto did not start")

    def stop(self) -> None:
        """SIGTERM and wait."""
        self.proc.terminate()
        self.proc.wait(5)


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _measure(
    broker: Broker, workdir: Path, packs: int, seconds: float, min_interval: float
) -> tuple[_Run, float, float]:
    """Run one load; returns the run, aggregator CPU % of one core and RSS (MiB) at the end."""
    site = workdir / f"site-{packs}-{min_interval}.toml"
    site.write_text(
        f'[mqtt]\nhost = "127.0.0.1"\nport = {broker.port}\n'
        f'[log]\nlevel = "WARNING"\n'
        f"[banks.bench]\nperiod = 1.0\nmin_interval = {min_interval}\nstale_after = 5.0\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "bank_aggregator", "--config", str(site), "--instance", "bench"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    run = _Run()
    seen: dict[str, float] = {}
    ready = threading.Event()

    def on_message(_c: paho.Client, _u: Any, msg: paho.MQTTMessage) -> None:
        now = time.time()
        if msg.retain:  # a previous run's bank state
            return
        view = _VIEW.decode(msg.payload)
        run.bank_states += 1
        run.last_online = len(view.members_online)
        for member_id, ts in view.members_ts.items():
            if seen.get(member_id) != ts:
                seen[member_id] = ts
                run.latencies.append((now, now - ts))
        ready.set()

    sub = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-sub-{os.getpid()}")
    sub.on_message = on_message
    sub.on_connect = lambda c, *_: c.subscribe("bms/bench/state", 0)
    sub.connect("127.0.0.1", broker.port)
    sub.loop_start()
    pub = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-pub-{os.getpid()}")
    pub.max_queued_messages_set(0)
    pub.connect("127.0.0.1", broker.port)
    pub.loop_start()
    try:
        if not ready.wait(20):
            raise RuntimeError("the aggregator published no bank state")
        ids = [f"pack-{i}" for i in range(packs)]
        template = {"voltage": 51.2, "current": 3.0, "soc": 55.0, "full_capacity": 100.0}
        started = time.monotonic()
        cpu0 = _cpu_seconds(proc.pid)
        deadline = started + seconds
        tick = 0
        while time.monotonic() < deadline:
            # pack i publishes at started + k + i/packs (evenly spread phases, 1 Hz each)
            i = tick % packs
            due = started + tick / packs
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            state = schema.BatteryState(id=ids[i], ts=time.time(), **template)  # type: ignore[arg-type]
            pub.publish(f"bms/{ids[i]}/state", schema.encode(state), qos=0)
            run.published += 1
            tick += 1
        elapsed = time.monotonic() - started
        time.sleep(0.5)  # let the last updates through
        cpu = (_cpu_seconds(proc.pid) - cpu0) / elapsed * 100
        rss = _rss_mib(proc.pid)
    finally:
        pub.disconnect()
        pub.loop_stop()
        sub.disconnect()
        sub.loop_stop()
        proc.terminate()
        proc.wait(10)
    return run, cpu, rss


def _p5(broker: Broker, workdir: Path, quick: bool) -> list[Result]:
    results = []
    for min_interval, rid in ((0.0, "P5"), (0.05, "P5-default")):
        run, cpu, rss = _measure(broker, workdir, 32, 6.0 if quick else 20.0, min_interval)
        skip = run.latencies[0][0] + 2.0  # leave out the start (retained states, warm-up)
        lat = [lat * 1000 for at, lat in run.latencies if at >= skip]
        p50, p99 = _percentile(lat, 0.5), _percentile(lat, 0.99)
        details = {
            "p50_ms": round(p50, 3),
            "p99_ms": round(p99, 3),
            "max_ms": round(max(lat), 3),
            "samples": len(lat),
            "bank_states": run.bank_states,
            "min_interval_s": min_interval,
            "cpu_percent": round(cpu, 1),
            "rss_mib": round(rss, 1),
        }
        goal = "p99 <= 10" if rid == "P5" else None
        results.append(
            Result(
                rid,
                f"member state → bank state latency p99, 32 packs @ 1 Hz, min_interval "
                f"{min_interval} s (p50 {p50:.2f} ms)",
                p99,
                "ms",
                goal,
                p99 <= 10 if goal else None,
                details,
            )
        )
    return results


def _p7(broker: Broker, workdir: Path, quick: bool) -> list[Result]:
    seconds = 6.0 if quick else 12.0
    best: tuple[int, float, float, dict[str, Any]] | None = None
    tried: dict[str, Any] = {}
    for packs in (64, 128, 256, 512, 1024, 2048):
        run, cpu, rss = _measure(broker, workdir, packs, seconds, 0.05)
        if not run.latencies:
            tried[str(packs)] = {"sustained": False, "reason": "no bank state"}
            break
        t0 = run.latencies[0][0]
        half = t0 + (run.latencies[-1][0] - t0) / 2
        first = [lat for at, lat in run.latencies if t0 + 2 <= at < half]
        second = [lat for at, lat in run.latencies if at >= half]
        p50_first = statistics.median(first) if first else float("inf")
        p50_second = statistics.median(second) if second else float("inf")
        sustained = (
            run.last_online == packs
            and p50_second < 1.0
            and p50_second <= 2 * p50_first + 0.02
            and len(second) >= 0.8 * packs * (seconds / 2 - 0.5)
        )
        entry = {
            "sustained": sustained,
            "latency_p50_first_half_ms": round(p50_first * 1000, 2),
            "latency_p50_second_half_ms": round(p50_second * 1000, 2),
            "latency_p99_ms": round(_percentile([lat for _, lat in run.latencies], 0.99) * 1000, 2),
            "members_online": run.last_online,
            "cpu_percent": round(cpu, 1),
            "rss_mib": round(rss, 1),
            "published": run.published,
        }
        tried[str(packs)] = entry
        if not sustained:
            break
        best = (packs, cpu, rss, entry)
    value = best[0] if best else 0
    results = [
        Result(
            "P7",
            "packs @ 1 Hz one aggregator sustains (no growing backlog)",
            value,
            "packs",
            ">= 256",
            value >= 256,
            tried,
        )
    ]
    if best:
        results.append(
            Result("P7-cpu", f"aggregator CPU at {best[0]} packs @ 1 Hz", best[1], "% of a core")
        )
        results.append(Result("P7-rss", f"aggregator RSS at {best[0]} packs", best[2], "MiB"))
    return results


def run(quick: bool) -> list[Result]:
    """P5 and P7 (see the module docstring)."""
    with tempfile.TemporaryDirectory(prefix="bench-bank-") as tmp:
        workdir = Path(tmp)
        broker = Broker(workdir)
        try:
            return [*_p5(broker, workdir, quick), *_p7(broker, workdir, quick)]
        finally:
            broker.stop()
