"""A whole bmslink stack on this machine, for the soak, the footprint/e2e benchmarks and the
fault tests: a real Mosquitto, simulators speaking the real wire protocols on loopback TCP, and
every service as a real process (the console scripts of this virtual environment).

Two ways to describe the stack:

- :func:`start_load` writes a site file for ``packs`` simulated packs polled every ``interval``
  s (Pylontech RS485, PACE Modbus, Daly A5 and Pylontech CAN buses of at most 8 packs), one
  bank over every pack, the CAN inverter emulator feeding a simulated inverter that records every
  frame it receives (``bmslink-sim-can inverter --record``), and hass-discovery;
- :func:`start_compose_demo` starts what ``compose.yaml``'s ``demo`` profile describes, through
  :func:`bmslink.cli.demo.load_services` (the one list of services ``make demo`` also uses).

:class:`Sampler` reads ``/proc/<pid>/stat`` (utime + stime, clock ticks) and
``/proc/<pid>/status`` (VmRSS, kB) of every process; :class:`Recorder` is an MQTT subscriber
counting messages per topic and keeping arrival times (Unix s) of selected ones.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from bmslink.cli import demo

ROOT = Path(__file__).resolve().parents[1]
BINDIR = Path(sys.executable).parent
CLK_TCK = os.sysconf("SC_CLK_TCK")
MAX_PACKS_PER_BUS = 8
"""Packs on one simulated RS485/Modbus bus."""
MAX_DALY_PER_BUS = 4
"""Daly A5 boards on one simulated serial bus (a cycle of 8 boards takes ~2 s)."""

#: Console script → short service name (the ``service`` part of the status topic).
SERVICE_SCRIPTS = {
    "bmslink-pylontech-rs485-reader": "pylontech-rs485-reader",
    "bmslink-am2-modbus-reader": "am2-modbus-reader",
    "bmslink-daly-ble-reader": "daly-ble-reader",
    "bmslink-can-reader": "can-reader",
    "bmslink-bank-aggregator": "bank-aggregator",
    "bmslink-can-inverter-emulator": "can-inverter-emulator",
    "bmslink-hass-discovery": "hass-discovery",
}


def free_port() -> int:
    """A currently free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def executable(script: str) -> str:
    """The path of a console script of this virtual environment (``script`` itself if absent)."""
    return shutil.which(script, path=str(BINDIR)) or script


# --- TOML ------------------------------------------------------------------------------------


def toml_value(value: object) -> str:
    """``value`` as a TOML value: str, bool, int, float, lists and (inline) tables of them.

    Raises TypeError for anything else."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"cannot write {type(value).__name__} as TOML")


def toml_section(name: str, options: Mapping[str, object]) -> str:
    """``[name]`` followed by one ``key = value`` line per option."""
    body = "".join(f"{k} = {toml_value(v)}\n" for k, v in options.items())
    return f"[{name}]\n{body}\n"


# --- processes -------------------------------------------------------------------------------


@dataclass
class Proc:
    """One process of the stack. ``kind``: ``broker``, ``service`` or ``simulator``; ``script``
    is the console script (``mosquitto`` for the broker)."""

    name: str
    kind: str
    argv: list[str]
    env: dict[str, str]
    log: Path
    popen: subprocess.Popen[bytes] | None = None

    @property
    def script(self) -> str:
        """The console script name (basename of argv[0])."""
        return Path(self.argv[0]).name

    @property
    def pid(self) -> int:
        """The process id (raises if not started)."""
        assert self.popen is not None, f"{self.name} is not running"
        return self.popen.pid

    def alive(self) -> bool:
        """Whether the process runs."""
        return self.popen is not None and self.popen.poll() is None

    def log_text(self) -> str:
        """The whole log file (stdout and stderr)."""
        return self.log.read_text(errors="replace") if self.log.exists() else ""


class Stack:
    """Processes of one stack under ``workdir`` (logs in ``workdir/logs``), with a Mosquitto on
    a free loopback port (``persistence`` as in mosquitto.conf; ``port`` kept across restarts).

    Use as a context manager: :meth:`close` stops everything (SIGTERM, SIGKILL after 5 s)."""

    def __init__(self, workdir: Path, *, persistence: bool = False) -> None:
        self.workdir = workdir.resolve()
        self.logs = self.workdir / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.persistence = persistence
        self.port = free_port()
        self.procs: dict[str, Proc] = {}
        self.broker: Proc | None = None
        self.exit_status: dict[str, int | None] = {}

    def __enter__(self) -> Stack:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # broker ---------------------------------------------------------------------------------

    def start_broker(self, timeout: float = 10.0) -> None:
        """Start Mosquitto on 127.0.0.1:``port``; returns once it accepts connections.

        Raises RuntimeError when there is no mosquitto binary or it does not listen."""
        binary = demo.mosquitto_binary()
        if binary is None:
            raise RuntimeError("mosquitto is not installed (apt-get install mosquitto)")
        conf = self.workdir / "mosquitto.conf"
        lines = [
            f"listener {self.port} 127.0.0.1",
            "allow_anonymous true",
            f"persistence {'true' if self.persistence else 'false'}",
            f"persistence_location {self.workdir}/",
            "autosave_interval 1",
            "max_queued_messages 100000",
            "log_dest stderr",
            "log_type error",
            "log_type warning",
        ]
        if os.geteuid() == 0:
            lines.append("user root")
        conf.write_text("\n".join(lines) + "\n")
        proc = Proc(
            "mosquitto", "broker", [binary, "-c", str(conf)], {}, self.logs / "mosquitto.log"
        )
        self._spawn(proc)
        self.broker = proc
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not proc.alive():
                raise RuntimeError(f"mosquitto exited: {proc.log_text()[-1000:]}")
            if demo.port_in_use(self.port):
                return
            time.sleep(0.01)
        raise RuntimeError(f"mosquitto did not listen on {self.port}")

    def stop_broker(self, sig: int = signal.SIGTERM) -> None:
        """Stop the broker with ``sig`` (SIGKILL: no persistence save) and wait for it."""
        if self.broker is not None and self.broker.popen is not None:
            with contextlib.suppress(ProcessLookupError):
                self.broker.popen.send_signal(sig)
            self.broker.popen.wait(10)
        self.broker = None

    # services and simulators -----------------------------------------------------------------

    def _spawn(self, proc: Proc) -> Proc:
        log = proc.log.open("ab")
        exe = executable(proc.argv[0]) if proc.kind != "broker" else proc.argv[0]
        proc.popen = subprocess.Popen(
            [exe, *proc.argv[1:]],
            env={**os.environ, "PYTHONUNBUFFERED": "1", **proc.env},
            stdout=log,
            stderr=log,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            cwd=ROOT,
        )
        log.close()
        return proc

    def spawn(
        self, name: str, kind: str, argv: list[str], env: Mapping[str, str] | None = None
    ) -> Proc:
        """Start ``argv`` (argv[0] a console script of this venv) as process ``name``."""
        proc = Proc(name, kind, list(argv), dict(env or {}), self.logs / f"{name}.log")
        self.procs[name] = proc
        return self._spawn(proc)

    def restart(self, name: str) -> Proc:
        """Start process ``name`` again with the same argv and environment (it must have
        stopped)."""
        proc = self.procs[name]
        assert not proc.alive(), f"{name} still runs"
        return self._spawn(proc)

    def wait_ready(self, name: str, timeout: float = 20.0) -> dict[str, str]:
        """Wait for a simulator's ``READY pty=… tcp=…`` line; returns its fields.

        Raises RuntimeError if it exits or does not print it within ``timeout`` s."""
        proc = self.procs[name]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in proc.log_text().splitlines():
                if line.startswith("READY"):
                    return dict(part.split("=", 1) for part in line.split()[1:])
            if not proc.alive():
                raise RuntimeError(f"{name} exited: {proc.log_text()[-1500:]}")
            time.sleep(0.05)
        raise RuntimeError(f"{name} not ready within {timeout} s")

    def send(self, name: str, sig: int) -> None:
        """Send ``sig`` to process ``name``."""
        proc = self.procs[name]
        if proc.popen is not None and proc.popen.poll() is None:
            proc.popen.send_signal(sig)

    def stop(self, name: str, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int:
        """Send ``sig`` to ``name``, wait (SIGKILL after ``timeout`` s); returns the exit
        status (negative: killed by that signal)."""
        proc = self.procs[name]
        assert proc.popen is not None
        self.send(name, sig)
        try:
            status = proc.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.popen.kill()
            status = proc.popen.wait()
        self.exit_status[name] = status
        return status

    def stop_services(self, order: Iterable[str] = (), timeout: float = 10.0) -> None:
        """SIGTERM every running service and wait for each, the names in ``order`` first (in
        that order), then the others; exit statuses land in :attr:`exit_status`."""
        names = [n for n in order if n in self.procs]
        names += [p.name for p in self.services() if p.name not in names]
        for name in names:
            if self.procs[name].alive():
                self.stop(name, signal.SIGTERM, timeout)

    def services(self) -> list[Proc]:
        """Every bmslink service process (not simulators, not the broker)."""
        return [p for p in self.procs.values() if p.kind == "service"]

    def close(self, grace: float = 8.0) -> None:
        """SIGTERM services, then simulators, then the broker; SIGKILL what is left after
        ``grace`` s. Exit statuses land in :attr:`exit_status`."""
        ordered = [p for p in self.procs.values() if p.kind == "service"]
        ordered += [p for p in self.procs.values() if p.kind != "service"]
        for proc in ordered:
            if proc.alive() and proc.popen is not None:
                with contextlib.suppress(ProcessLookupError):
                    proc.popen.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        for proc in ordered:
            if proc.popen is None:
                continue
            try:
                status = proc.popen.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.popen.pid, signal.SIGKILL)
                status = proc.popen.wait()
            self.exit_status.setdefault(proc.name, status)
        self.stop_broker()


# --- the load: N packs -----------------------------------------------------------------------


@dataclass
class Load:
    """What :func:`start_load` started: the site file, the pack ids per reader process, the
    bank id, the emulator's instance and the inverter's frame record (JSON lines)."""

    site: Path
    packs: dict[str, list[str]]
    bank: str
    emulator: str
    record: Path
    interval: float

    @property
    def pack_ids(self) -> list[str]:
        """Every pack id."""
        return [pid for ids in self.packs.values() for pid in ids]


def split_packs(packs: int) -> dict[str, int]:
    """How ``packs`` are spread over the families: half Pylontech RS485, a quarter PACE Modbus,
    one Pylontech CAN battery per 16 packs (at most 2, at least 1 from 4 packs), the rest
    Daly A5 (serial). E.g. 64 → 32/16/14/2, 16 → 8/4/3/1."""
    pyl = packs // 2
    pace = packs // 4
    can_n = min(2, max(1, packs // 16)) if packs >= 4 else 0
    daly = packs - pyl - pace - can_n
    return {"pylontech": pyl, "pace": pace, "daly": daly, "can": can_n}


def _chunks(n: int, size: int) -> list[int]:
    out = [size] * (n // size)
    if n % size:
        out.append(n % size)
    return out


def start_load(
    stack: Stack,
    packs: int,
    interval: float = 1.0,
    *,
    bank: bool = True,
    inverter: bool = True,
    hass: bool = True,
    emulator_period: float = 1.0,
    bank_options: Mapping[str, object] | None = None,
) -> Load:
    """Write ``stack.workdir/site.toml`` for ``packs`` packs polled every ``interval`` s and
    start simulators (waiting for their READY line) and services. Simulated lines run at
    115200 Bd (a 9600 Bd Modbus/Daly bus cannot poll 8 packs per second)."""
    sections: list[str] = [
        # the project's default reconnect back-off (0.5 .. 30 s), as deployed
        toml_section("mqtt", {"host": "127.0.0.1", "port": stack.port}),
        toml_section("storage", {"state_dir": str(stack.workdir / "state"), "save_interval": 10.0}),
    ]
    plan = split_packs(packs)
    sims: list[tuple[str, list[str]]] = []
    readers: list[tuple[str, str, str]] = []  # (process name, script, instance)
    pack_ids: dict[str, list[str]] = {}
    models = ["US2000C", "US3000C", "US5000"]
    for k, n in enumerate(_chunks(plan["pylontech"], MAX_PACKS_PER_BUS)):
        port, inst = free_port(), f"pyl{k}"
        spec = ",".join(f"{models[(k + i) % 3]}:{40 + (7 * i + 11 * k) % 55}" for i in range(n))
        sims.append(
            (
                f"sim-{inst}",
                [
                    "bmslink-simulator",
                    "--tcp",
                    f"127.0.0.1:{port}",
                    "--model",
                    spec,
                    "--no-ff",
                    "--baud",
                    "115200",
                    "--seed",
                    str(k),
                ],
            )
        )
        addresses = list(range(2, 2 + n))
        sections.append(
            toml_section(
                f"pylontech_rs485.{inst}",
                {
                    "port": f"socket://127.0.0.1:{port}",
                    "addresses": addresses,
                    "poll_interval": interval,
                    "command_gap": 0.0,
                    "timeout": 0.5,
                    "management_interval": 10.0,
                    "id_prefix": inst,
                },
            )
        )
        readers.append((f"reader-{inst}", "bmslink-pylontech-rs485-reader", inst))
        pack_ids[f"reader-{inst}"] = [f"{inst}-{a}" for a in addresses]
    for k, n in enumerate(_chunks(plan["pace"], MAX_PACKS_PER_BUS)):
        port, inst = free_port(), f"pace{k}"
        spec = ",".join(f"{i + 1}:AM2:{30 + (13 * i + 7 * k) % 65}" for i in range(n))
        sims.append(
            (
                f"sim-{inst}",
                [
                    "bmslink-sim-pace",
                    "--tcp",
                    f"127.0.0.1:{port}",
                    "--packs",
                    spec,
                    "--baud",
                    "115200",
                    "--turnaround-ms",
                    "2",
                    "--seed",
                    str(k),
                ],
            )
        )
        addresses = list(range(1, n + 1))
        sections.append(
            toml_section(
                f"pace_modbus.{inst}",
                {
                    "port": f"socket://127.0.0.1:{port}",
                    "baudrate": 115200,
                    "addresses": addresses,
                    "cells": 13,
                    "poll_interval": interval,
                    "frame_gap": 0.005,
                    "timeout": 0.3,
                    "id_prefix": inst,
                },
            )
        )
        readers.append((f"reader-{inst}", "bmslink-am2-modbus-reader", inst))
        pack_ids[f"reader-{inst}"] = [f"{inst}-{a}" for a in addresses]
    for k, n in enumerate(_chunks(plan["daly"], MAX_DALY_PER_BUS)):
        port, inst = free_port(), f"daly{k}"
        sims.append(
            (
                f"sim-{inst}",
                [
                    "bmslink-sim-daly",
                    "--protocol",
                    "a5",
                    "--boards",
                    str(n),
                    "--tcp",
                    f"127.0.0.1:{port}",
                    "--baud",
                    "115200",
                    "--current",
                    "-8.5",
                    "--soc",
                    str(50 + 5 * k),
                    "--seed",
                    str(k),
                ],
            )
        )
        ids = [f"{inst}-{b}" for b in range(1, n + 1)]
        sections.append(
            toml_section(
                f"daly.{inst}",
                {
                    "transport": "serial",
                    "port": f"socket://127.0.0.1:{port}",
                    "baudrate": 115200,
                    "devices": [{"id": i, "board": b} for b, i in enumerate(ids, start=1)],
                    "poll_interval": interval,
                    "command_gap": 0.005,
                    "timeout": 0.3,
                },
            )
        )
        readers.append((f"reader-{inst}", "bmslink-daly-ble-reader", inst))
        pack_ids[f"reader-{inst}"] = ids
    for k in range(plan["can"]):
        port, inst = free_port(), f"can{k}"
        sims.append(
            (
                f"sim-{inst}",
                [
                    "bmslink-sim-can",
                    "battery",
                    "--tcp",
                    f"127.0.0.1:{port}",
                    "--source",
                    "model",
                    "--profile",
                    "pylon_v2",
                    "--modules",
                    "2",
                    "--capacity",
                    "100",
                    "--soc",
                    str(60 + 10 * k),
                    "--current",
                    "-12",
                    "--period",
                    str(interval),
                ],
            )
        )
        sections.append(
            toml_section(
                f"can_reader.{inst}",
                {
                    "interface": "slcan",
                    "channel": f"socket://127.0.0.1:{port}",
                    "id": inst,
                    "offline_after": max(10.0, 3 * interval),
                },
            )
        )
        readers.append((f"reader-{inst}", "bmslink-can-reader", inst))
        pack_ids[f"reader-{inst}"] = [inst]
    record = stack.workdir / "inverter-frames.jsonl"
    if bank:
        sections.append(
            toml_section(
                "banks.bank1",
                {
                    "name": "soak bank",
                    "stale_after": max(10.0, 5 * interval),
                    **(bank_options or {}),
                },
            )
        )
    if inverter:
        port = free_port()
        sims.append(
            (
                "sim-inverter",
                [
                    "bmslink-sim-can",
                    "inverter",
                    "--tcp",
                    f"127.0.0.1:{port}",
                    "--record",
                    str(record),
                ],
            )
        )
        sections.append(toml_section("inverters.soak", {"bank": "bank1", "stale_after": 10.0}))
        sections.append(
            toml_section(
                "inverters.soak.outputs.inv1",
                {
                    "interface": "slcan",
                    "channel": f"socket://127.0.0.1:{port}",
                    "period": emulator_period,
                    "charge_current_max": 100.0,
                    "discharge_current_max": 100.0,
                },
            )
        )
    if hass:
        sections.append(toml_section("hass", {"expire_after": 30, "birth_delay_max": 1.0}))
    site = stack.workdir / "site.toml"
    site.write_text("".join(sections))
    for name, argv in sims:
        stack.spawn(name, "simulator", argv)
    for name, _argv in sims:
        stack.wait_ready(name)
    # Consumers first, so that they see every message the producers publish.
    services = []
    if inverter:
        services.append(("inverter-emulator", "bmslink-can-inverter-emulator", "soak"))
    if hass:
        services.append(("hass-discovery", "bmslink-hass-discovery", "hass"))
    if bank:
        services.append(("bank-aggregator", "bmslink-bank-aggregator", "bank1"))
    services += readers
    for name, script, inst in services:
        stack.spawn(name, "service", [script, "--config", str(site), "--instance", inst])
        if script in ("bmslink-can-inverter-emulator", "bmslink-bank-aggregator"):
            wait_status(stack.port, SERVICE_SCRIPTS[script], inst)
    return Load(site, pack_ids, "bank1", "soak", record, interval)


def start_compose_demo(stack: Stack) -> list[Proc]:
    """Start every service of ``compose.yaml``'s ``demo`` profile (simulators first, each
    waited for by its READY line) against the stack's broker, as ``make demo`` does."""
    ports = iter([free_port() for _ in range(12)])
    env = {**os.environ, **demo.demo_env(stack.port, stack.workdir / "state", ports)}
    specs = demo.load_services(ROOT / "compose.yaml", env)
    started: list[Proc] = []
    sims = [s for s in specs if s.argv[0].startswith("bmslink-sim")]
    for spec in sims:
        started.append(stack.spawn(spec.name, "simulator", spec.argv, spec.env))
    for spec in sims:
        stack.wait_ready(spec.name)
    for spec in specs:
        if spec not in sims:
            started.append(stack.spawn(spec.name, "service", spec.argv, spec.env))
    return started


# --- measuring -------------------------------------------------------------------------------


@dataclass
class ProcSample:
    """One reading of a process: ``t`` monotonic s, ``rss_kb`` resident set (kB), ``cpu_s``
    user + system CPU time since it started (s)."""

    t: float
    rss_kb: int
    cpu_s: float


def read_proc(pid: int) -> tuple[int, float] | None:
    """(VmRSS kB, utime + stime s) of ``pid`` from /proc, or None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    cpu = (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime (fields 14, 15)
    m = re.search(r"^VmRSS:\s+(\d+)\s+kB", status, re.MULTILINE)
    return (int(m.group(1)) if m else 0), cpu


class Sampler:
    """Samples every process of ``stack`` (services, broker and, with ``simulators``, the
    simulators) every ``period`` s in a thread. ``samples[name]`` is a list of
    :class:`ProcSample`; a restarted process keeps its name (CPU time restarts from 0)."""

    def __init__(self, stack: Stack, period: float = 5.0, simulators: bool = False) -> None:
        self.stack = stack
        self.period = period
        self.simulators = simulators
        self.samples: dict[str, list[ProcSample]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sampler", daemon=True)

    def start(self) -> Sampler:
        """Take a first sample now and start the thread."""
        self.sample()
        self._thread.start()
        return self

    def sample(self) -> None:
        """Read every process once."""
        now = time.monotonic()
        procs = list(self.stack.procs.values())
        if self.stack.broker is not None:
            procs.append(self.stack.broker)
        for proc in procs:
            if proc.kind == "simulator" and not self.simulators:
                continue
            if proc.popen is None or proc.popen.poll() is not None:
                continue
            got = read_proc(proc.popen.pid)
            if got is not None:
                self.samples.setdefault(proc.name, []).append(ProcSample(now, got[0], got[1]))

    def _run(self) -> None:
        while not self._stop.wait(self.period):
            self.sample()

    def stop(self) -> None:
        """Take a last sample and stop the thread."""
        self._stop.set()
        self._thread.join(5)
        self.sample()

    def cpu_percent(self, name: str, since: float | None = None) -> float:
        """Mean CPU of ``name`` in % of one core between its sample at/after ``since``
        (monotonic s; default the first) and its last sample."""
        rows = [s for s in self.samples.get(name, []) if since is None or s.t >= since]
        if len(rows) < 2 or rows[-1].t <= rows[0].t:
            return float("nan")
        return 100.0 * (rows[-1].cpu_s - rows[0].cpu_s) / (rows[-1].t - rows[0].t)

    def rss_mb(self, name: str, since: float | None = None) -> dict[str, float]:
        """RSS of ``name`` in MiB after ``since``: ``max``, ``first``, ``last``, and
        ``slope_mb_per_h`` (least-squares line over the samples)."""
        rows = [s for s in self.samples.get(name, []) if since is None or s.t >= since]
        if not rows:
            return {
                "max": float("nan"),
                "first": float("nan"),
                "last": float("nan"),
                "slope_mb_per_h": float("nan"),
            }
        mb = [s.rss_kb / 1024 for s in rows]
        ts = [s.t for s in rows]
        slope = 0.0
        if len(rows) >= 3:
            mt, mm = sum(ts) / len(ts), sum(mb) / len(mb)
            den = sum((t - mt) ** 2 for t in ts)
            slope = (
                sum((t - mt) * (m - mm) for t, m in zip(ts, mb, strict=True)) / den if den else 0.0
            )
        return {"max": max(mb), "first": mb[0], "last": mb[-1], "slope_mb_per_h": slope * 3600}


@dataclass
class Arrival:
    """A message as the recorder got it: ``at`` Unix s (time.time(), comparable with the
    simulated inverter's record), ``payload`` bytes, ``retain`` flag."""

    at: float
    payload: bytes
    retain: bool


@dataclass
class Recorder:
    """An MQTT subscriber on 127.0.0.1:``port``: counts every message per topic and keeps the
    arrivals of topics for which ``keep(topic)`` is true. ``clean_session=False`` with a fixed
    ``client_id`` keeps its QoS 1 session (and what the broker queued for it) across its own
    and the broker's restarts (the latter with persistence)."""

    port: int
    subscriptions: Iterable[str] = ("bms/#", "bmslink/#", "homeassistant/#")
    keep: Callable[[str], bool] = lambda _topic: False
    hook: Callable[[str, bytes, float], None] | None = None
    client_id: str | None = None
    counts: Counter[str] = field(default_factory=Counter)
    arrivals: dict[str, list[Arrival]] = field(default_factory=dict)
    latest: dict[str, bytes] = field(default_factory=dict)
    cond: threading.Condition = field(default_factory=threading.Condition)

    def __post_init__(self) -> None:
        self.subscriptions = tuple(self.subscriptions)
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.client_id or f"stack-rec-{id(self)}",
            clean_session=self.client_id is None,
        )
        self.client.on_message = self._on_message
        self.client.on_connect = self._on_connect
        self.client.reconnect_delay_set(1, 1)
        self.connected = threading.Event()

    def _on_connect(self, client: paho.Client, *_: Any) -> None:
        client.subscribe([(s, 1) for s in self.subscriptions])
        self.connected.set()

    def _on_message(self, _c: paho.Client, _u: object, msg: paho.MQTTMessage) -> None:
        now = time.time()
        payload = bytes(msg.payload)
        with self.cond:
            self.counts[msg.topic] += 1
            self.latest[msg.topic] = payload
            if self.hook is not None:
                self.hook(msg.topic, payload, now)
            if self.keep(msg.topic):
                self.arrivals.setdefault(msg.topic, []).append(
                    Arrival(now, payload, bool(msg.retain))
                )
            self.cond.notify_all()

    def start(self, timeout: float = 10.0) -> Recorder:
        """Connect (retrying until ``timeout`` s) and subscribe."""
        self.client.connect_async("127.0.0.1", self.port, 30)
        self.client.loop_start()
        if not self.connected.wait(timeout):
            raise RuntimeError(f"recorder could not connect to 127.0.0.1:{self.port}")
        time.sleep(0.1)  # SUBACK
        return self

    def stop(self) -> None:
        """Disconnect and stop the network thread."""
        self.client.disconnect()
        self.client.loop_stop()

    def wait(self, predicate: Callable[[], bool], timeout: float, what: str = "condition") -> None:
        """Wait until ``predicate()`` (evaluated under the lock at each message and every 0.2 s)
        holds; raises TimeoutError naming ``what`` after ``timeout`` s."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while not predicate():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"{what} not reached within {timeout} s")
                self.cond.wait(min(remaining, 0.2))


def wait_status(port: int, service: str, instance: str, timeout: float = 20.0) -> None:
    """Wait until ``bmslink/<service>/<instance>/status`` is ``online`` (the service connected
    and subscribed); raises TimeoutError."""
    topic = f"bmslink/{service}/{instance}/status"
    rec = Recorder(port, subscriptions=(topic,)).start()
    try:
        rec.wait(lambda: rec.latest.get(topic) == b"online", timeout, f"{topic} online")
    finally:
        rec.stop()


def stats_lines(proc: Proc) -> list[dict[str, Any]]:
    """The JSON of every ``stats {...}`` log line of ``proc`` (services log them every 60 s and
    at exit)."""
    out = []
    for line in proc.log_text().splitlines():
        _, sep, rest = line.partition(" stats ")
        if sep and rest.startswith("{"):
            with contextlib.suppress(ValueError):
                out.append(json.loads(rest))
    return out


# --- what the simulated inverter received ----------------------------------------------------


@dataclass
class BankArrival:
    """A bank state as a subscriber got it: ``at`` arrival (Unix s), ``state`` the decoded JSON
    object (``ts``, ``voltage``, ``members_ts``, limits, ...)."""

    at: float
    state: dict[str, Any]

    def member_ts(self, member: str) -> float:
        """The reading time (Unix s) of ``member`` the bank used, or -inf if not counted."""
        value = (self.state.get("members_ts") or {}).get(member)
        return float(value) if value is not None else float("-inf")


@dataclass
class Cycle:
    """One frame set the emulator sent, as the simulated inverter recorded it: ``start`` the
    arrival (Unix s) of its first frame (0x351), ``frames`` id → (arrival, data)."""

    start: float
    frames: dict[int, tuple[float, bytes]]


def read_cycles(record: Path) -> list[Cycle]:
    """Group the inverter's record (JSON lines ``{"ts", "id", "data"}``) into frame sets, a new
    set at every 0x351 (the first frame of each set, pylontech-can.md §3)."""
    cycles: list[Cycle] = []
    if not record.exists():
        return cycles
    for line in record.read_text().splitlines():
        with contextlib.suppress(ValueError, KeyError):
            row = json.loads(line)
            can_id, at, data = int(row["id"]), float(row["ts"]), bytes.fromhex(row["data"])
            if can_id == 0x351 or not cycles:
                cycles.append(Cycle(at, {}))
            cycles[-1].frames.setdefault(can_id, (at, data))
    return cycles


@dataclass
class CycleValues:
    """The decoded content of a cycle: CVL/DVL V, CCL/DCL A, SoC %, voltage V, current A
    (+ = charging), temperature °C (None where the frame is missing)."""

    cvl: float | None
    ccl: float | None
    dcl: float | None
    soc: float | None
    voltage: float | None
    current: float | None
    temperature: float | None

    @property
    def failsafe(self) -> bool:
        """CCL = DCL = 0 and SoC 0: the fail-safe set (or a bank that allows nothing)."""
        return self.ccl == 0 and self.dcl == 0 and self.soc == 0


def cycle_values(cycle: Cycle) -> CycleValues:
    """Decode 0x351, 0x355 and 0x356 of ``cycle`` (bmslink.protocols.pylontech_can)."""
    from bmslink.protocols import pylontech_can as pc

    def get(can_id: int) -> Any:
        got = cycle.frames.get(can_id)
        if got is None:
            return None
        try:
            return pc.decode_frame(can_id, got[1])
        except pc.PylontechCanError:
            return None

    lim, soc, meas = get(0x351), get(0x355), get(0x356)
    return CycleValues(
        cvl=lim.charge_voltage_limit if lim else None,
        ccl=lim.charge_current_limit if lim else None,
        dcl=lim.discharge_current_limit if lim else None,
        soc=float(soc.soc) if soc else None,
        voltage=meas.voltage if meas else None,
        current=meas.current if meas else None,
        temperature=meas.temperature if meas else None,
    )


def _close(a: float | None, b: float | None, tol: float) -> bool:
    return a is not None and b is not None and abs(a - b) <= tol


WIRE_CURRENT_MIN = 1.0
"""A; the emulator's default ``current_limit_min``: below it a direction is sent stopped (0 A)."""


def _wire_current(state: Mapping[str, Any], direction: str, max_current: float) -> float:
    """The current limit the emulator sends for ``direction`` of bank ``state`` before its
    0.1 A floor: 0 when the direction is not enabled or below :data:`WIRE_CURRENT_MIN`."""
    if state.get(f"{direction}_enabled") is False:
        return 0.0
    limit = min(state.get(f"{direction}_current_limit") or 0.0, max_current)
    return 0.0 if limit < WIRE_CURRENT_MIN else limit


def _floored(wire: float | None, expected: float) -> bool:
    """``wire`` is ``expected`` rounded down to the 0.1 A resolution (toward safe)."""
    return wire is not None and expected - 0.1 - 1e-6 <= wire <= expected + 1e-6


def carries(values: CycleValues, state: Mapping[str, Any], max_current: float) -> bool:
    """Whether the frame content equals what the emulator makes of bank ``state``: voltage
    (0.01 V), current (0.1 A), highest temperature (0.1 °C), SoC (1 %), CCL/DCL capped at
    ``max_current`` A and floored to 0.1 A (0 A when the direction is stopped)."""
    temp = state.get("temperature_max")
    if temp is None:
        temp = state.get("temperature_min") or 0.0
    return (
        _close(values.voltage, state.get("voltage") or 0.0, 0.0051)
        and _close(values.current, state.get("current") or 0.0, 0.051)
        and _close(values.temperature, temp, 0.051)
        and _close(values.soc, state.get("soc") or 0.0, 1.0)
        and _floored(values.ccl, _wire_current(state, "charge", max_current))
        and _floored(values.dcl, _wire_current(state, "discharge", max_current))
    )


@dataclass
class FrameCheck:
    """Frame-by-frame verdict on the inverter's record against the bank states a subscriber
    saw. ``carried[i]`` is the bank state cycle ``i`` carried (None: failsafe or no match);
    ``failsafe``: cycles with CCL = DCL = 0 and SoC 0 (the safe direction, never flagged);
    ``stale``: cycles carrying an older state although a newer (by ``ts``), different one had
    arrived more than ``grace`` s before; ``over_limit``: CCL/DCL above the carried state's (or the
    output's maximum), CVL above the state's CVL; ``unmatched``: non-failsafe cycles equal to no
    bank state (content nobody published)."""

    cycles: list[Cycle]
    carried: list[BankArrival | None]
    stale: list[int] = field(default_factory=list)
    over_limit: list[int] = field(default_factory=list)
    unmatched: list[int] = field(default_factory=list)
    failsafe: list[int] = field(default_factory=list)
    newer: dict[int, list[BankArrival]] = field(default_factory=dict)


def _bank_ts(b: BankArrival) -> float:
    return float(b.state.get("ts") or 0.0)


def check_frames(
    cycles: list[Cycle],
    bank: list[BankArrival],
    max_current: float = 100.0,
    grace: float = 0.05,
    window: float = 15.0,
) -> FrameCheck:
    """Match every cycle to the newest bank state (arrived at most ``window`` s before it,
    or within ``grace`` s after — the emulator and the subscriber get it at the same time)
    whose content it carries, and flag stale, over-limit and unmatched cycles."""
    result = FrameCheck(cycles, [])
    bank = sorted(bank, key=lambda b: b.at)
    for i, cycle in enumerate(cycles):
        values = cycle_values(cycle)
        if values.failsafe:  # the safe direction: nothing allowed (restart, stale bank, ...)
            result.carried.append(None)
            result.failsafe.append(i)
            continue
        window_states = [b for b in bank if cycle.start - window <= b.at <= cycle.start + grace]
        # the newest state by reading time (a retained copy re-delivered after a reconnect
        # arrives late but is not newer)
        matching = [b for b in window_states if carries(values, b.state, max_current)]
        match = max(matching, key=_bank_ts, default=None)
        result.carried.append(match)
        if match is None:
            result.unmatched.append(i)
            continue
        st = match.state
        if (
            (values.ccl or 0.0) > min(st.get("charge_current_limit") or 0.0, max_current) + 0.051
            or (values.dcl or 0.0)
            > min(st.get("discharge_current_limit") or 0.0, max_current) + 0.051
            or (values.cvl or 0.0) > (st.get("charge_voltage_limit") or 0.0) + 0.0051
        ):
            result.over_limit.append(i)
        newer = [
            b
            for b in window_states
            if _bank_ts(b) > _bank_ts(match)
            and b.at < cycle.start - grace
            and not carries(values, b.state, max_current)
        ]
        if newer:
            result.stale.append(i)
            result.newer[i] = newer
    return result


@dataclass
class PackArrival:
    """A pack state as a subscriber got it: device ``id``, reading ``ts`` (Unix s), arrival
    ``at`` (Unix s)."""

    id: str
    ts: float
    at: float


def e2e_latencies(
    packs: list[PackArrival], bank: list[BankArrival], check: FrameCheck, horizon: int = 3
) -> tuple[list[float], list[float], list[float], dict[str, int]]:
    """End-to-end latencies of pack states through the bank to the inverter, in ms.

    For a pack state P (arrival ``P.at``): B = the first bank state counting P
    (``members_ts[P.id] ≥ P.ts``), C0 = the first cycle starting after B arrived, C = the first
    cycle from C0 (at most ``horizon`` cycles) carrying a bank state that counts P. Returns
    (``excluding``, ``including``, ``bank_hop``, counts): ``excluding`` = (B.at − P.at) +
    (C's 0x356 arrival − C0.start), i.e. everything but the wait for the emulator's next period
    boundary (a missed boundary adds a whole period); ``including`` = C's 0x356 arrival − P.at;
    ``bank_hop`` = B.at − P.at. ``counts``:
    ``missed_boundary`` (C later than C0)."""
    bank = sorted(bank, key=lambda b: b.at)
    cycles = check.cycles
    excluding: list[float] = []
    including: list[float] = []
    bank_hop: list[float] = []
    counts = Counter({"samples": 0, "no_bank": 0, "no_frame": 0, "missed_boundary": 0})
    last_cycle = cycles[-1].start if cycles else float("-inf")
    for p in packs:
        b = next((x for x in bank if x.at >= p.at and x.member_ts(p.id) >= p.ts), None)
        if b is None:
            if p.at < last_cycle - 5:
                counts["no_bank"] += 1
            continue
        first = next((k for k, c in enumerate(cycles) if c.start > b.at), None)
        if first is None:
            continue
        found = None
        for k in range(first, min(first + horizon, len(cycles))):
            carried = check.carried[k]
            if carried is not None and carried.member_ts(p.id) >= p.ts:
                found = k
                break
        if found is None:
            if first + horizon <= len(cycles):
                counts["no_frame"] += 1
            continue
        frame_at = cycles[found].frames.get(0x356, (cycles[found].start, b""))[0]
        if found != first:
            counts["missed_boundary"] += 1
        excluding.append(((b.at - p.at) + (frame_at - cycles[first].start)) * 1000)
        bank_hop.append((b.at - p.at) * 1000)
        including.append((frame_at - p.at) * 1000)
        counts["samples"] += 1
    return excluding, including, bank_hop, dict(counts)
