"""One whole bmslink stack per test module, for the fault tests.

Built on :mod:`tools.stack` (the same stack the soak and the benchmarks run): a real Mosquitto
with persistence on a free loopback port, simulators on loopback TCP, every service as a real
process reading a site file written here (8 packs at 1 Hz: 4 Pylontech RS485, 2 PACE Modbus,
1 Daly A5 on serial, 1 Pylontech CAN; one bank; the CAN inverter emulator feeding a simulated
inverter that records every frame; hass-discovery), and a recorder subscribed to everything
with a persistent QoS 1 session.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from tools.stack import (
    SERVICE_SCRIPTS,
    Arrival,
    BankArrival,
    Load,
    Recorder,
    Stack,
    start_load,
)

PACKS = 8
INTERVAL = 1.0


@dataclass
class FaultStack:
    """A running stack: processes, the load's site and ids, the recorder (every topic kept),
    and every bank state seen (for the frame-by-frame check at the end)."""

    stack: Stack
    load: Load
    rec: Recorder
    bank_states: list[BankArrival] = field(default_factory=list)

    @property
    def port(self) -> int:
        """The broker port."""
        return self.stack.port

    def status_topic(self, name: str) -> str:
        """``bmslink/<service>/<instance>/status`` of process ``name``."""
        proc = self.stack.procs[name]
        instance = proc.argv[proc.argv.index("--instance") + 1]
        return f"bmslink/{SERVICE_SCRIPTS[proc.script]}/{instance}/status"

    def status_topics(self) -> list[str]:
        """The status topic of every service."""
        return [self.status_topic(p.name) for p in self.stack.services()]

    def arrivals(self, topic: str, since: float = 0.0, live: bool = False) -> list[Arrival]:
        """Messages on ``topic`` that arrived after ``since`` (Unix s); ``live``: only those
        published after the recorder subscribed (retain flag clear)."""
        with self.rec.cond:
            return [
                a
                for a in self.rec.arrivals.get(topic, [])
                if a.at >= since and not (live and a.retain)
            ]

    def wait(self, predicate: object, timeout: float, what: str) -> None:
        """:meth:`Recorder.wait` (``predicate`` is a zero-argument callable)."""
        assert callable(predicate)
        try:
            self.rec.wait(predicate, timeout, what)
        except TimeoutError as exc:
            raise AssertionError(str(exc)) from None

    def availability(self, device: str) -> str | None:
        """The latest valid availability of ``device`` (``online``/``offline``; garbage a test
        injected on the topic is skipped)."""
        for a in reversed(self.rec.arrivals.get(f"bms/{device}/availability", [])):
            if a.payload in (b"online", b"offline"):
                return a.payload.decode()
        return None

    def wait_healthy(self, timeout: float = 30.0, since: float = 0.0) -> None:
        """Every service ``online``, every pack ``online`` with a state after ``since``."""

        def healthy() -> bool:
            latest = self.rec.latest
            return all(latest.get(t) == b"online" for t in self.status_topics()) and all(
                self.availability(i) == "online"
                and any(a.at >= since for a in self.rec.arrivals.get(f"bms/{i}/state", []))
                for i in self.load.pack_ids
            )

        self.wait(healthy, timeout, "every service and pack online")


@contextlib.contextmanager
def fault_stack(workdir: Path, packs: int = PACKS) -> Iterator[FaultStack]:
    """Start the stack (broker with persistence) and wait until it is healthy; stop it after."""
    with Stack(workdir, persistence=True) as stack:
        stack.start_broker()
        bank_states: list[BankArrival] = []
        lock = threading.Lock()

        def hook(topic: str, payload: bytes, at: float) -> None:
            if topic == "bms/bank1/state":
                with contextlib.suppress(ValueError, TypeError), lock:
                    doc = json.loads(payload)
                    if isinstance(doc, dict) and doc.get("kind") == "bank":
                        bank_states.append(BankArrival(at, doc))

        rec = Recorder(
            stack.port,
            subscriptions=("bms/#", "bmslink/#", "homeassistant/#"),
            keep=lambda _t: True,
            client_id="fault-recorder",
            hook=hook,
        ).start()
        load = start_load(stack, packs, INTERVAL)
        fs = FaultStack(stack, load, rec, bank_states)
        try:
            fs.wait_healthy(60)
            yield fs
        finally:
            rec.stop()


def publish(port: int, messages: list[tuple[str, bytes]], retain: bool = False) -> None:
    """Publish ``(topic, payload)`` pairs at QoS 1 and wait until the broker has them."""
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"fault-pub-{time.monotonic_ns()}")
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        infos = [client.publish(t, p, qos=1, retain=retain) for t, p in messages]
        for info in infos:
            info.wait_for_publish(10)
    finally:
        client.disconnect()
        client.loop_stop()


def retained(port: int, patterns: tuple[str, ...], settle: float = 1.5) -> dict[str, bytes]:
    """The retained messages under ``patterns`` as a new subscriber gets them (collected until
    no new topic arrived for ``settle`` s; a topic's latest non-empty payload)."""
    rec = Recorder(port, subscriptions=patterns, keep=lambda _t: True).start()
    try:
        last = -1
        while True:
            time.sleep(settle)
            with rec.cond:
                n = len(rec.latest)
            if n == last:
                break
            last = n
        with rec.cond:
            # a live message that arrived meanwhile is newer than the retained one it replaced
            return {
                t: arr[-1].payload for t, arr in rec.arrivals.items() if arr and arr[-1].payload
            }
    finally:
        rec.stop()


def discovery_devices(configs: dict[str, bytes]) -> dict[str, list[str]]:
    """Device identifier → the discovery config topics announcing it (more than one topic per
    identifier is a duplicate device in Home Assistant)."""
    out: dict[str, list[str]] = {}
    for topic, payload in configs.items():
        if not topic.endswith("/config"):
            continue
        doc = json.loads(payload)
        dev = doc.get("dev") or doc.get("device") or {}
        ids = dev.get("ids") or dev.get("identifiers") or []
        for ident in [ids] if isinstance(ids, str) else ids:
            out.setdefault(str(ident), []).append(topic)
    return out
