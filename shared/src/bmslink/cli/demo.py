"""``bmslink demo``: the whole set on this machine, started from ``compose.yaml``.

There is one description of the services: ``compose.yaml``. The demo reads it, takes every
service of the ``demo`` profile (and the default profile) that has a ``command``, interpolates
``${VAR:-default}`` with demo values (broker and simulators on 127.0.0.1), maps the bind-mounted
container paths back to the repository, and runs each command as a local process with exactly
the environment compose would give it. The broker is a local Mosquitto (or, when it cannot be
installed, the embedded pure-Python amqtt broker, which speaks MQTT 3.1.1 only: the services then
get ``BMSLINK_MQTT_PROTOCOL=3.1.1``). ``bmslink watch`` runs in the foreground;
Ctrl-C stops everything and leaves no process behind.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

_VAR = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?-([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)")


def interpolate(value: str, env: Mapping[str, str]) -> str:
    """Compose-style interpolation: ``$$``, ``$VAR``, ``${VAR}``, ``${VAR-default}`` and
    ``${VAR:-default}`` (the latter also replaces an empty value)."""

    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m.group(1) or m.group(3)
        default = m.group(2)
        found = env.get(name)
        if found is None or (found == "" and ":-" in m.group(0)):
            return default if default is not None else ""
        return found

    return _VAR.sub(sub, value)


@dataclass
class ServiceSpec:
    """One compose service as the demo runs it: argv, environment and its log file."""

    name: str
    argv: list[str]
    env: dict[str, str]


def _as_env(raw: Any) -> dict[str, str]:
    if raw is None:
        return {}
    if isinstance(raw, list):
        out = {}
        for item in raw:
            key, _, val = str(item).partition("=")
            out[key] = val
        return out
    return {str(k): "" if v is None else str(v) for k, v in raw.items()}


def load_services(
    compose_file: Path, env: Mapping[str, str], profiles: tuple[str, ...] = ("demo",)
) -> list[ServiceSpec]:
    """The services of ``compose_file`` active under ``profiles`` that have a ``command``,
    with interpolated argv/environment and container paths mapped to host paths."""
    doc = yaml.safe_load(compose_file.read_text())
    root = compose_file.parent
    specs = []
    for name, svc in (doc.get("services") or {}).items():
        svc_profiles = svc.get("profiles") or []
        if svc_profiles and not set(svc_profiles) & set(profiles):
            continue
        command = svc.get("command")
        if not command:
            continue
        if isinstance(command, str):
            command = command.split()
        mounts: dict[str, str] = {}
        for vol in svc.get("volumes") or []:
            if isinstance(vol, str):
                parts = interpolate(vol, env).split(":")
                if len(parts) >= 2 and parts[0].startswith((".", "/")):
                    mounts[parts[1]] = str((root / parts[0]).resolve())

        def host_path(value: str, mounts: dict[str, str] = mounts) -> str:
            for container, host in mounts.items():
                if value == container or value.startswith(container + "/"):
                    return host + value[len(container) :]
            return value

        argv = [host_path(interpolate(str(a), env)) for a in command]
        svc_env = {
            k: host_path(interpolate(v, env)) for k, v in _as_env(svc.get("environment")).items()
        }
        specs.append(ServiceSpec(name, argv, svc_env))
    return specs


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_in_use(port: int) -> bool:
    """Whether something accepts connections on 127.0.0.1:``port``."""
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
        return True
    return False


def mosquitto_binary() -> str | None:
    """The mosquitto binary (Debian installs it in sbin, often not on PATH)."""
    return shutil.which("mosquitto") or next(
        (p for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto") if os.path.exists(p)), None
    )


def start_broker(workdir: Path, port: int, log_file: Path) -> subprocess.Popen[bytes]:
    """Start Mosquitto on 127.0.0.1:``port`` (persistence in ``workdir``), or amqtt if there is
    no mosquitto binary. Returns once the port accepts connections."""
    binary = mosquitto_binary()
    log = log_file.open("ab")
    if binary:
        conf = workdir / "mosquitto.conf"
        lines = [
            f"listener {port} 127.0.0.1",
            "allow_anonymous true",
            "persistence true",
            f"persistence_location {workdir}/",
            "log_dest stderr",
            "log_type error",
            "log_type warning",
            "set_tcp_nodelay true",
        ]
        if os.geteuid() == 0:
            lines.append("user root")
        conf.write_text("\n".join(lines) + "\n")
        argv = [binary, "-c", str(conf)]
    else:
        print("mosquitto not found: using the embedded pure-Python broker (amqtt, MQTT 3.1.1)")
        argv = [sys.executable, "-m", "bmslink.cli.fallback_broker", "--port", str(port)]
    env = {**os.environ, "BMSLINK_DEMO": str(workdir)}
    proc = subprocess.Popen(argv, stdout=log, stderr=log, start_new_session=True, env=env)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(
                f"the broker exited at start (status {proc.returncode}); see {log_file}"
            )
        if port_in_use(port):
            return proc
        time.sleep(0.02)
    raise SystemExit(f"the broker did not listen on 127.0.0.1:{port}; see {log_file}")


def stop_all(procs: list[tuple[str, subprocess.Popen[bytes]]], grace: float = 5.0) -> None:
    """SIGTERM every process group, wait up to ``grace`` s, then SIGKILL what is left."""
    for _name, proc in reversed(procs):
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    for _name, proc in procs:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(max(0.0, deadline - time.monotonic()))
    for _name, proc in procs:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def find_compose(start: Path) -> Path:
    """``compose.yaml`` in ``start`` or a parent directory."""
    for folder in (start, *start.parents):
        candidate = folder / "compose.yaml"
        if candidate.exists():
            return candidate
    raise SystemExit("compose.yaml not found (run from the bmslink checkout)")


def demo_env(port: int, state: Path, sim_ports: Iterator[int]) -> dict[str, str]:
    """The interpolation variables of a local demo."""
    return {
        "BMSLINK_MQTT_HOST": "127.0.0.1",
        "BMSLINK_MQTT_PORT": str(port),
        "BMSLINK_SIMULATOR_HOST": "127.0.0.1",
        "BMSLINK_SIMULATOR_BIND": "127.0.0.1",
        "BMSLINK_SIMULATOR_PORT": str(next(sim_ports)),
        "BMSLINK_MODEL_SIMULATOR_PORT": str(next(sim_ports)),
        "BMSLINK_PACE_SIMULATOR_PORT": str(next(sim_ports)),
        "BMSLINK_DALY_A5_SIMULATOR_PORT": str(next(sim_ports)),
        "BMSLINK_DALY_D2_SIMULATOR_PORT": str(next(sim_ports)),
        "BMSLINK_CAN_SIMULATOR_PORT": str(next(sim_ports)),
        "BMSLINK_INVERTER_SIMULATOR_PORT": str(next(sim_ports)),
        "BMSLINK_SITE": "./config/demo.toml",
        "BMSLINK_DATA": str(state),
    }


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register the ``demo`` sub-command."""
    p = sub.add_parser(
        "demo", help="run broker, simulators, readers and watch locally (from compose.yaml)"
    )
    p.add_argument(
        "--compose", type=Path, default=None, help="compose file (default: ./compose.yaml)"
    )
    p.add_argument(
        "--port",
        type=int,
        default=int(os.environ.get("BMSLINK_MQTT_PORT", "1883")),
        help="broker port",
    )
    p.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    p.add_argument(
        "--workdir", type=Path, default=Path(".demo"), help="logs, broker data, counters"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Start everything, show ``bmslink watch``, stop everything on Ctrl-C or after --duration."""
    from bmslink.cli import watch

    compose = args.compose or find_compose(Path.cwd())
    workdir: Path = args.workdir.resolve()
    (workdir / "logs").mkdir(parents=True, exist_ok=True)
    (workdir / "state").mkdir(parents=True, exist_ok=True)
    if port_in_use(args.port):
        print(
            f"127.0.0.1:{args.port} is in use: stop that broker or set BMSLINK_MQTT_PORT",
            file=sys.stderr,
        )
        return 2
    env = {
        **os.environ,
        **demo_env(args.port, workdir / "state", iter([free_port() for _ in range(12)])),
    }
    specs = load_services(compose, env)
    started = time.monotonic()
    procs: list[tuple[str, subprocess.Popen[bytes]]] = []
    previous = signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        procs.append(
            ("mosquitto", start_broker(workdir, args.port, workdir / "logs" / "mosquitto.log"))
        )
        bindir = Path(sys.executable).parent
        # amqtt (no mosquitto binary) speaks MQTT 3.1.1 only; the services default to MQTT 5
        protocol = {} if mosquitto_binary() else {"BMSLINK_MQTT_PROTOCOL": "3.1.1"}
        for spec in specs:
            log = (workdir / "logs" / f"{spec.name}.log").open("ab")
            exe = shutil.which(spec.argv[0], path=str(bindir)) or spec.argv[0]
            # BMSLINK_DEMO marks the demo's processes (tests check none is left behind)
            child_env = {
                **os.environ,
                "PYTHONUNBUFFERED": "1",
                "BMSLINK_DEMO": str(workdir),
                **protocol,
                **spec.env,
            }
            proc = subprocess.Popen(
                [exe, *spec.argv[1:]],
                env=child_env,
                stdout=log,
                stderr=log,
                start_new_session=True,
                cwd=compose.parent,
            )
            procs.append((spec.name, proc))
        print(
            f"bmslink demo: broker 127.0.0.1:{args.port}; "
            f"services {', '.join(s.name for s in specs)}"
        )
        print(f"logs in {workdir / 'logs'}; try: mosquitto_sub -p {args.port} -t 'bms/+/state' -v")
        first = watch.wait_first_state("127.0.0.1", args.port, timeout=60)
        if first is None:
            print("no battery state within 60 s; see the logs", file=sys.stderr)
            return 1
        print(f"first state ({first}) {time.monotonic() - started:.1f} s after start")
        watch_args = argparse.Namespace(
            host="127.0.0.1",
            port=args.port,
            username=None,
            password=None,
            once=None,
            duration=args.duration,
        )
        return watch.run(watch_args)
    except KeyboardInterrupt:
        return 0
    finally:
        # Ctrl-C reaches both `uv run` and this process, and uv forwards it again: ignore further
        # interrupts while the children are stopped, so that none is left behind.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        stop_all(procs)
        signal.signal(signal.SIGTERM, previous)
        for name, proc in procs:
            if proc.returncode not in (0, -signal.SIGTERM, None):
                print(f"{name} exited with status {proc.returncode}", file=sys.stderr)
