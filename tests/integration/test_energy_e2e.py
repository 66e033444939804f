"""Energy counters never go backwards, end to end: a real Mosquitto, real pylontech-rs485-reader
processes against the battery-simulator replaying a real capture (charging at 1.2 A).

SIGKILL loop (with a broker restart in the middle), a deleted state file (seeded from the
broker's retained state), a read-only and a full state directory, and
:meth:`bmslink.mqtt.MqttRuntime.read_retained` itself under MQTT 5 and 3.1.1.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from bmslink.config import MqttConfig
from bmslink.mqtt import MqttRuntime
from tests.broker import Broker, Received, Recorder, free_port, recorder
from tests.processes import (
    CAPTURE,
    PYLONTECH_SIM,
    Simulator,
    site_section,
    start_service,
    start_simulator,
    stop,
    stop_reading_stderr,
    write_site,
)

READER = "pylontech_rs485_reader"
STATE = "bms/t-2/state"
FILE = "energy-pylontech-rs485-reader-bus.json"

pytestmark = [pytest.mark.mqtt, pytest.mark.serial]


def site(tmp_path: Path, port: int, sim: Simulator) -> Path:
    options = {
        "port": sim.url,
        "stack_query": "ff",
        "addresses": [2],
        "poll_interval": 0.3,
        "command_gap": 0.0,
        "timeout": 0.4,
        "retries": 0,
        "offline_after": 2,
        "id_prefix": "t",
    }
    return write_site(tmp_path, port, site_section("pylontech_rs485.bus", options))


@contextmanager
def replay() -> Iterator[Simulator]:
    sim = start_simulator(PYLONTECH_SIM, "--tcp", "127.0.0.1:0", "--replay", str(CAPTURE))
    try:
        yield sim
    finally:
        sim.stop()


def counters(messages: list[Received], topic: str = STATE) -> list[tuple[float, float]]:
    """``(energy_charged, energy_discharged)`` of every state on ``topic``, in arrival order."""
    out = []
    for m in messages:
        if m.topic == topic and m.payload:
            doc = json.loads(m.payload)
            out.append((doc["energy_charged"], doc["energy_discharged"]))
    return out


def assert_never_decreasing(values: list[tuple[float, float]]) -> None:
    for i, (before, after) in enumerate(itertools.pairwise(values)):
        assert after[0] >= before[0] and after[1] >= before[1], (i, before, after)


def wait_states(rec: Recorder, n: int, after: int, timeout: float = 20.0) -> int:
    """Wait for ``n`` new non-retained states of t-2 from ``after``; returns the next mark."""
    for _ in range(n):
        got = rec.wait_for(lambda m: m.topic == STATE and not m.retain, timeout, after)
        after = rec.messages.index(got) + 1
    return after


def test_sigkill_loop_never_lowers_the_published_counters(broker: Broker, tmp_path: Path) -> None:
    rng = random.Random(14)
    kills = 10
    with replay() as sim, recorder(broker.port, "bms/#") as rec:
        config = site(tmp_path, broker.port, sim)
        per_run: list[float] = []
        for _ in range(kills):
            reader = start_service(READER, config, "bus")
            wait_states(rec, rng.randint(1, 5), rec.mark(), timeout=30)
            # a random moment inside a poll cycle (a deliberate delay, not a synchronisation)
            time.sleep(rng.uniform(0.0, 0.6))
            assert stop(reader, signal.SIGKILL) == -signal.SIGKILL
            per_run.append(counters(rec.messages)[-1][0])
        # one more run, ended cleanly: the saved file holds what was published last
        reader = start_service(READER, config, "bus")
        wait_states(rec, 3, rec.mark(), timeout=30)
        assert stop(reader) == 0
        values = counters(rec.messages)
    assert_never_decreasing(values)  # in the order a subscriber received them
    assert values[-1][0] > 0
    saved = json.loads((tmp_path / "state" / FILE).read_text())
    assert saved["t-2"]["charged"] >= values[-1][0] - 1e-6
    print(f"energy_charged after each of {kills} SIGKILLs (kWh): {per_run}")
    print(f"final {values[-1][0]} kWh over {len(values)} published states")


@pytest.mark.xfail(
    reason="bmslink.mqtt: states published while the broker is down stay queued in paho and are "
    "sent AFTER the sticky re-publish on reconnect, so a subscriber sees older counters last "
    "for a moment (the retained value is corrected 0.5 s later)",
    strict=False,
)
def test_a_broker_restart_never_lowers_the_published_counters(
    broker: Broker, tmp_path: Path
) -> None:
    with replay() as sim, recorder(broker.port, "bms/#") as rec:
        reader = start_service(READER, site(tmp_path, broker.port, sim), "bus")
        try:
            wait_states(rec, 3, rec.mark(), timeout=30)
            broker.restart()  # retained states lost; the reader holds the counters
            wait_states(rec, 4, rec.mark(), timeout=30)
        finally:
            assert stop(reader) == 0
        values = counters(rec.messages)
        by_sample = sorted(
            (json.loads(m.payload)["ts"], counters([m])[0])
            for m in rec.messages
            if m.topic == STATE and m.payload
        )
    # in sample order the counters never decrease, whatever the delivery order
    assert_never_decreasing([v for _ts, v in by_sample])
    assert_never_decreasing(values)


def test_a_deleted_state_file_is_seeded_from_the_retained_state(
    broker: Broker, tmp_path: Path
) -> None:
    with replay() as sim, recorder(broker.port, "bms/#") as rec:
        config = site(tmp_path, broker.port, sim)
        reader = start_service(READER, config, "bus")
        wait_states(rec, 6, rec.mark(), timeout=30)
        assert stop(reader, signal.SIGKILL) == -signal.SIGKILL
        last = counters(rec.messages)[-1]
        assert last[0] > 0
        (tmp_path / "state" / FILE).unlink()
        # a stale temp file of a save cut by the kill is removed at start
        orphan = tmp_path / "state" / f".{FILE}.abcd1234.tmp"
        orphan.write_text('{"t-2": {"charg')
        mark = rec.mark()
        reader = start_service(READER, config, "bus")
        wait_states(rec, 2, mark, timeout=30)
        assert stop(reader) == 0
        after = counters(rec.messages[mark:])
    first = after[0]
    assert first[0] >= last[0] and first[1] >= last[1]
    assert first[0] == pytest.approx(last[0], abs=0.001)  # resumed, not restarted from 0
    assert not orphan.exists()
    saved = json.loads((tmp_path / "state" / FILE).read_text())
    assert saved["t-2"]["charged"] >= last[0]


def _unshare() -> str | None:
    found = shutil.which("unshare")
    if found is None or os.geteuid() != 0:
        return None
    probe = subprocess.run([found, "-m", "true"], capture_output=True, timeout=10)
    return found if probe.returncode == 0 else None


@pytest.mark.parametrize("kind", ["read-only", "full"])
def test_an_unwritable_state_dir_never_stops_the_reader_or_lowers_a_counter(
    broker: Broker, tmp_path: Path, kind: str
) -> None:
    unshare = _unshare()
    if unshare is None:
        pytest.skip("needs root and unshare -m (a private read-only bind mount or tmpfs)")
    state = tmp_path / "state"
    state.mkdir()
    (state / FILE).write_text(json.dumps({"t-2": {"charged": 12.5, "discharged": 3.25}}))
    if kind == "read-only":
        prepare = 'mount --bind -o ro "$1" "$1"'
    else:  # a 64 KiB tmpfs holding the file, then filled up
        prepare = (
            f'cp "$1/{FILE}" "{tmp_path}/copy.json" && mount -t tmpfs -o size=64k tmpfs "$1" && '
            f'cp "{tmp_path}/copy.json" "$1/{FILE}" && '
            f'(dd if=/dev/zero of="$1/fill" bs=1k 2>/dev/null; true)'
        )
    with replay() as sim, recorder(broker.port, "bms/#") as rec:
        config = site(tmp_path, broker.port, sim)
        script = f'{prepare} && shift && exec "$@"'
        argv = [sys.executable, "-m", READER, "--config", str(config), "--instance", "bus"]
        reader = subprocess.Popen(
            [
                unshare,
                "-m",
                "--propagation",
                "private",
                "sh",
                "-c",
                script,
                "sh",
                str(state),
                *argv,
            ],
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        # save_interval is 1 s: ~6 s of states means several failed saves
        wait_states(rec, 20, rec.mark(), timeout=40)
        assert reader.poll() is None, "the reader must keep running"
        status, err = stop_reading_stderr(reader)
        values = counters(rec.messages)
    assert status == 0, err[-2000:]
    assert "Traceback" not in err, err[-2000:]
    assert_never_decreasing(values)
    assert values[0][0] >= 12.5 and values[0][1] >= 3.25
    assert values[-1][0] > 12.5  # charging at 1.2 A goes on being counted
    assert err.count("cannot save energy counters") == 1, err[-2000:]
    reason = "Read-only file system" if kind == "read-only" else "No space left on device"
    assert reason in err, err[-2000:]
    print(f"{kind}: energy_charged {values[0][0]} -> {values[-1][0]} kWh, stderr ok")


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_read_retained(broker: Broker, protocol: str) -> None:
    topics = [f"bms/r{i}/state" for i in range(30)]
    pub = paho.Client(CallbackAPIVersion.VERSION2, client_id="retain-writer")
    pub.connect("127.0.0.1", broker.port)
    pub.loop_start()
    try:
        for i, topic in enumerate(topics[:20]):
            pub.publish(
                topic, json.dumps({"energy_charged": i}), qos=1, retain=True
            ).wait_for_publish(5)
    finally:
        pub.disconnect()
        pub.loop_stop()
    runtime = MqttRuntime(
        MqttConfig(host="127.0.0.1", port=broker.port, protocol=protocol),  # type: ignore[arg-type]
        "energy-test",
        protocol.replace(".", ""),
    )
    runtime.start()
    try:
        started = time.monotonic()
        got = runtime.read_retained(topics, timeout=20)
        took = time.monotonic() - started
        assert got == {
            t: json.dumps({"energy_charged": i}).encode() for i, t in enumerate(topics[:20])
        }
        # ended by the broker's acknowledgement, not by the timeout
        assert took < 10, took
        assert runtime.read_retained([], timeout=1) == {}
        again = runtime.read_retained(topics[15:25], timeout=20)  # the subscription was removed
        assert sorted(again) == topics[15:20]
    finally:
        runtime.stop()
    lonely = MqttRuntime(MqttConfig(host="127.0.0.1", port=free_port()), "energy-test", "x")
    lonely.start()
    try:
        started = time.monotonic()
        assert lonely.read_retained(topics, timeout=1.0) == {}
        assert time.monotonic() - started < 5
    finally:
        lonely.stop()
