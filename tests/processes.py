"""Start the project's services and simulators as real processes for end-to-end tests, and
write the site files they read."""

from __future__ import annotations

import json
import os
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CAPTURE = ROOT / "services" / "battery-simulator" / "captures" / "pylontech_rs485_capture.json"

#: Entry modules of the simulators (each has ``main(argv) -> int`` and prints a READY line).
PYLONTECH_SIM = "battery_simulator.app"
PACE_SIM = "battery_simulator.pace_app"
CAN_SIM = "battery_simulator.can_app"
DALY_SIM = "battery_simulator.daly_app"


@dataclass
class Simulator:
    """A running simulator process and where it serves (``None``: not on that kind of line)."""

    proc: subprocess.Popen[str]
    pty: str | None
    tcp: str | None

    @property
    def url(self) -> str:
        """What a serial client opens: the pty (or its link) path, else ``socket://HOST:PORT``."""
        if self.pty is not None:
            return self.pty
        assert self.tcp is not None, "the simulator serves neither a pty nor TCP"
        return f"socket://{self.tcp}"

    def stop(self) -> int:
        """SIGTERM and wait (SIGKILL after 10 s); returns the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def line_args(link: str, pty_link: Path) -> list[str]:
    """Simulator arguments for a test parametrized over ``link``: ``"pty"`` serves on a pty
    linked at ``pty_link``, ``"tcp"`` on a random loopback TCP port."""
    return ["--pty-link", str(pty_link)] if link == "pty" else ["--tcp", "127.0.0.1:0"]


def start_simulator(module: str, *args: str, timeout: float = 15.0) -> Simulator:
    """Run ``MODULE.main(ARGS)`` (e.g. :data:`PACE_SIM`) in a new Python process and wait up to
    ``timeout`` s for its ``READY pty=… tcp=…`` line. Raises AssertionError if it never comes."""
    proc = subprocess.Popen(
        [sys.executable, "-c", f"import sys; from {module} import main; sys.exit(main())", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not sel.select(max(0.0, deadline - time.monotonic())):
            break
        line = proc.stdout.readline()
        if not line:
            break
        if line.startswith("READY"):
            fields = dict(part.split("=", 1) for part in line.split()[1:])
            pty = fields.get("pty")
            tcp = fields.get("tcp")
            return Simulator(
                proc,
                None if pty in (None, "-", "none") else pty,
                None if tcp in (None, "-", "none") else tcp,
            )
    proc.kill()
    proc.wait()
    raise AssertionError(f"simulator did not get ready: {module} {args}")


@contextmanager
def simulator(module: str, *args: str, check: bool = False) -> Iterator[Simulator]:
    """:func:`start_simulator` for the ``with`` block, stopped after it; ``check``: its exit
    status on SIGTERM must be 0."""
    sim = start_simulator(module, *args)
    try:
        yield sim
    finally:
        status = sim.stop()
        if check:
            assert status == 0, f"{module} exited with {status}"


def start_service(
    module: str,
    config: Path,
    instance: str | None = None,
    *extra: str,
    env: Mapping[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """Run ``python -m MODULE --config CONFIG [--instance INSTANCE] EXTRA...`` (unbuffered,
    ``env`` added to the environment); stdout discarded, stderr piped (read by :func:`stop`)."""
    argv = [sys.executable, "-m", module, "--config", str(config)]
    if instance is not None:
        argv += ["--instance", instance]
    return subprocess.Popen(
        [*argv, *extra],
        env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def run_service(
    module: str, config: Path, instance: str, timeout: float = 30.0
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m MODULE --config CONFIG --instance INSTANCE`` to its end (a service that
    must exit by itself, e.g. on a bad configuration); output captured as text."""
    return subprocess.run(
        [sys.executable, "-m", module, "--config", str(config), "--instance", instance],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def stop_reading_stderr(
    proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout: float = 10.0
) -> tuple[int, str]:
    """Send ``sig``, wait up to ``timeout`` s (then SIGKILL); returns (exit status, stderr)."""
    proc.send_signal(sig)
    try:
        status = proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        err = proc.stderr.read().decode() if proc.stderr else ""
        raise AssertionError(
            f"{proc.args} still running {timeout} s after signal {sig}; stderr:\n{err[-4000:]}"
        ) from None
    err = proc.stderr.read().decode() if proc.stderr else ""
    if proc.stderr:
        proc.stderr.close()
    return status, err


def stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout: float = 10.0) -> int:
    """Send ``sig`` and return the exit status."""
    return stop_reading_stderr(proc, sig, timeout)[0]


@contextmanager
def service(
    module: str, config: Path, instance: str | None = None, *extra: str
) -> Iterator[subprocess.Popen[bytes]]:
    """:func:`start_service` for the ``with`` block; then SIGTERM must exit 0 with no traceback
    on stderr."""
    proc = start_service(module, config, instance, *extra)
    try:
        yield proc
    finally:
        status, err = stop_reading_stderr(proc)
        assert status == 0, err[-2000:]
        assert "Traceback" not in err, err[-2000:]


def site_section(name: str, options: Mapping[str, object]) -> str:
    """``[name]`` and one ``key = value`` line per option, the value written as JSON (which is
    valid TOML for strings, numbers, booleans and lists of them)."""
    body = "\n".join(f"{key} = {json.dumps(value)}" for key, value in options.items())
    return f"[{name}]\n{body}\n"


def write_site(tmp_path: Path, broker_port: int, *sections: str) -> Path:
    """Write ``tmp_path/site.toml``: ``[mqtt]`` on the test broker at ``broker_port``,
    ``[storage]`` in ``tmp_path/state``, then ``sections`` (TOML text) as given."""
    path = tmp_path / "site.toml"
    path.write_text(
        f'[mqtt]\nhost = "127.0.0.1"\nport = {broker_port}\nreconnect_max = 2\n'
        f'[storage]\nstate_dir = "{tmp_path / "state"}"\nsave_interval = 1\n' + "".join(sections)
    )
    return path
