"""A real Mosquitto broker on a random loopback port, and a recording MQTT client, for tests.

See ../shared/reference/test-infrastructure.md §3 (``user root`` when running as root; the
binary lives in an sbin directory).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion


def mosquitto_binary() -> str:
    """Path of the mosquitto binary; raises if it is not installed (CI installs it)."""
    found = shutil.which("mosquitto") or next(
        (p for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto") if os.path.exists(p)), None
    )
    if found is None:
        raise RuntimeError(
            "mosquitto is not installed: run `.ci/run` or `apt-get install mosquitto`"
        )
    return found


def free_port() -> int:
    """A currently free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Broker:
    """One Mosquitto process; :meth:`restart` keeps the port (and persistence, if enabled)."""

    def __init__(self, workdir: Path, persistence: bool = False, extra_conf: str = "") -> None:
        self.workdir = workdir
        self.persistence = persistence
        self.extra_conf = extra_conf
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def _write_conf(self) -> Path:
        lines = [
            f"listener {self.port} 127.0.0.1",
            "allow_anonymous true",
            f"persistence {'true' if self.persistence else 'false'}",
            f"persistence_location {self.workdir}/",
            "log_dest stderr",
            "log_type error",
            "log_type warning",
            "set_tcp_nodelay true",
        ]
        if os.geteuid() == 0:
            lines.append("user root")
        if self.extra_conf:
            lines.append(self.extra_conf)
        conf = self.workdir / "mosquitto.conf"
        conf.write_text("\n".join(lines) + "\n")
        return conf

    def start(self) -> None:
        """Start and wait until the port accepts connections (fails with the broker's stderr)."""
        for _attempt in range(5):
            conf = self._write_conf()
            self.proc = subprocess.Popen(
                [mosquitto_binary(), "-c", str(conf)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    break
                with (
                    contextlib.suppress(OSError),
                    socket.create_connection(("127.0.0.1", self.port), 0.1),
                ):
                    return
                time.sleep(0.005)
            err = (
                self.proc.stderr.read().decode()
                if self.proc.stderr and self.proc.poll() is not None
                else ""
            )
            self.stop()
            if "Address already in use" not in err:
                raise RuntimeError(f"mosquitto did not start: {err}")
            self.port = free_port()
        raise RuntimeError("mosquitto could not bind a port")

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 5 s."""
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.proc.stderr:
            self.proc.stderr.close()
        self.proc = None

    def kill(self) -> None:
        """SIGKILL (no chance to save persistence)."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            if self.proc.stderr:
                self.proc.stderr.close()
            self.proc = None

    def restart(self) -> None:
        """Stop and start again on the same port."""
        self.stop()
        self.start()


@dataclass
class Received:
    """One message as a subscriber saw it."""

    topic: str
    payload: bytes
    retain: bool
    at: float


@dataclass
class Recorder:
    """A subscriber that records every message; wait on conditions with a deadline."""

    port: int
    subscriptions: tuple[str, ...] = ("#",)
    messages: list[Received] = field(default_factory=list)
    _cond: threading.Condition = field(default_factory=threading.Condition)

    def __post_init__(self) -> None:
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"rec-{id(self)}")
        self.client.on_message = self._on_message
        self.client.on_connect = self._on_connect
        self._connected = threading.Event()

    def _on_connect(self, client: paho.Client, *_: object) -> None:
        for sub in self.subscriptions:
            client.subscribe(sub, 1)
        self._connected.set()

    def _on_message(self, _c: paho.Client, _u: object, msg: paho.MQTTMessage) -> None:
        with self._cond:
            self.messages.append(
                Received(msg.topic, msg.payload, bool(msg.retain), time.monotonic())
            )
            self._cond.notify_all()

    def start(self) -> Recorder:
        """Connect and subscribe."""
        self.client.connect("127.0.0.1", self.port)
        self.client.loop_start()
        assert self._connected.wait(5), "recorder could not connect"
        time.sleep(0.05)  # let SUBACK arrive before the test publishes
        return self

    def stop(self) -> None:
        """Disconnect (before loop_stop, which is 1 s faster)."""
        self.client.disconnect()
        self.client.loop_stop()

    def wait_for(
        self, predicate: Callable[[Received], bool], timeout: float = 10.0, after: int = 0
    ) -> Received:
        """The first message from index ``after`` satisfying ``predicate`` (AssertionError on
        timeout)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for msg in self.messages[after:]:
                    if predicate(msg):
                        return msg
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    seen = sorted({m.topic for m in self.messages})
                    raise AssertionError(
                        f"no matching message within {timeout} s; topics seen: {seen}"
                    )
                self._cond.wait(remaining)

    def wait_topic(
        self, topic: str, payload: bytes | None = None, timeout: float = 10.0, after: int = 0
    ) -> Received:
        """The first message on ``topic`` (with ``payload`` if given)."""
        return self.wait_for(
            lambda m: m.topic == topic and (payload is None or m.payload == payload), timeout, after
        )

    def mark(self) -> int:
        """Index to pass as ``after`` to wait only for messages from now on."""
        with self._cond:
            return len(self.messages)


@contextlib.contextmanager
def recorder(port: int, *subs: str) -> Iterator[Recorder]:
    """A started :class:`Recorder`, stopped on exit."""
    rec = Recorder(port, subs or ("#",)).start()
    try:
        yield rec
    finally:
        rec.stop()
