"""Start the project's services as real processes for end-to-end tests."""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CAPTURE = ROOT / "services" / "battery-simulator" / "captures" / "pylontech_rs485_capture.json"


@dataclass
class Simulator:
    """A running ``bmslink-simulator`` process and where it serves."""

    proc: subprocess.Popen[str]
    pty: str | None
    tcp: str | None

    def stop(self) -> None:
        """SIGTERM and wait."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_simulator(*args: str, timeout: float = 15.0) -> Simulator:
    """Run ``python -m battery_simulator.app ARGS`` and wait for its ``READY`` line."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from battery_simulator.app import main; sys.exit(main())",
            *args,
        ],
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
    raise AssertionError(f"simulator did not get ready: {args}")


def start_reader(
    config: Path, instance: str, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """Run the pylontech-rs485-reader with ``--config`` and ``--instance``."""
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pylontech_rs485_reader",
            "--config",
            str(config),
            "--instance",
            instance,
        ],
        env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout: float = 10.0) -> int:
    """Send ``sig`` and return the exit status."""
    proc.send_signal(sig)
    try:
        return proc.wait(timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stderr:
            proc.stderr.close()
