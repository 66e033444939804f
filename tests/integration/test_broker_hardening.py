"""Issue 14 against a real Mosquitto running the SHIPPED broker config (mosquitto/mosquitto.conf
and mosquitto/listeners/, paths and ports moved to the test's directory and loopback) with the
users and ACL of `bmslink credentials`:

- no client-id takeover: a valid user connecting with a service's client id does not kick the
  service (no `offline` last will, no reconnect); the same attack on a broker WITHOUT
  ``use_username_as_clientid`` does kick it (so the test can see a takeover);
- size limits: a payload above ``message_size_limit`` is dropped, one of the largest legitimate
  size is delivered, a 100 MB publish is cut off after its header with the broker's and the
  bank aggregator's peak memory bounded;
- hass-discovery may write only its own discovery topics;
- the broker health check authenticates from a file, not the command line;
- TLS: `bmslink credentials --tls` certificates on the shipped TLS listener; a real service
  connects with the CA and refuses a wrong one.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import ssl
import struct
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as paho
import pytest
import yaml
from paho.mqtt.enums import CallbackAPIVersion

from bmslink.cli import credentials
from tests.broker import Broker, Recorder, free_port
from tests.processes import start_service, stop_reading_stderr

pytestmark = pytest.mark.mqtt

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "mosquitto"
DEMO = ROOT / "config" / "demo.toml"
HASS_STATUS = "bmslink/hass-discovery/hass/status"
HASS_CLIENT_ID = "bmslink-hass-discovery-hass"  # what bmslink.mqtt gives the service


class ShippedBroker(Broker):
    """Mosquitto with the shipped config: listener 1883 → ``port`` and 8883 → ``tls_port`` on
    127.0.0.1, ``/mosquitto/...`` paths → ``workdir``; ``drop`` removes config lines (the
    control broker of the takeover test)."""

    def __init__(self, workdir: Path, listeners: str = "plain", drop: tuple[str, ...] = ()):
        super().__init__(workdir)
        self.listeners = listeners
        self.drop = drop
        self.tls_port = free_port()
        self.log = workdir / "mosquitto.log"

    def wait_log(self, text: str, timeout: float = 20.0) -> str:
        """The broker log once it contains ``text`` (AssertionError after ``timeout`` s)."""
        deadline = time.monotonic() + timeout
        while True:
            log = self.log.read_text() if self.log.exists() else ""
            if text in log:
                return log
            if time.monotonic() > deadline:
                raise AssertionError(f"{text!r} not in the broker log:\n{log[-2000:]}")
            time.sleep(0.05)

    def _paths(self, text: str) -> str:
        return (
            text.replace("/mosquitto/config/conf.d", str(self.workdir / "conf.d"))
            .replace("/mosquitto/config/", f"{self.workdir}/")
            .replace("/mosquitto/data/", f"{self.workdir}/")
            .replace("/mosquitto/certs/", f"{self.workdir}/certs/")
        )

    def _filter(self, text: str) -> list[str]:
        return [line for line in text.splitlines() if line.strip() not in self.drop]

    def _write_conf(self) -> Path:
        text = (SHIPPED / "mosquitto.conf").read_text()
        assert "listener 1883 0.0.0.0" in text and "include_dir /mosquitto/config/conf.d" in text
        conf_d = self.workdir / "conf.d"
        conf_d.mkdir(exist_ok=True)
        for src in (SHIPPED / "listeners" / self.listeners).glob("*.conf"):
            body = self._paths(src.read_text())
            body = body.replace("listener 8883 0.0.0.0", f"listener {self.tls_port} 127.0.0.1")
            (conf_d / src.name).write_text("\n".join(self._filter(body)) + "\n")
        text = self._paths(text).replace("listener 1883 0.0.0.0", f"listener {self.port} 127.0.0.1")
        # the broker's log (error, warning, notice as shipped) to a file the test can read
        lines = [line for line in self._filter(text) if line.strip() != "log_dest stdout"]
        lines.append(f"log_dest file {self.log}")
        if os.geteuid() == 0:
            lines.append("user root")
        conf = self.workdir / "mosquitto.conf"
        conf.write_text("\n".join(lines) + "\n")
        return conf


def make_credentials(tmp_path: Path, *read_only: str) -> dict[str, str]:
    """`bmslink credentials` for the demo profile into ``tmp_path``; user → password."""
    users = credentials.generate(
        ROOT / "compose.yaml", DEMO, tmp_path, tmp_path / ".env", {"demo"}, list(read_only)
    )
    env = credentials.read_env(tmp_path / ".env")
    return {u.name: env[u.env_var] for u in users if u.env_var}


@contextlib.contextmanager
def shipped_broker(tmp_path: Path, **kwargs: object) -> Iterator[ShippedBroker]:
    broker = ShippedBroker(tmp_path, **kwargs)  # type: ignore[arg-type]
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


def connect(
    port: int,
    user: str,
    password: str,
    client_id: str,
    protocol: int = paho.MQTTv311,
    tls_ca: Path | None = None,
) -> paho.Client:
    """A connected, looping paho client (AssertionError unless the CONNACK says success)."""
    c = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=protocol)
    c.username_pw_set(user, password)
    if tls_ca is not None:
        c.tls_set(ca_certs=str(tls_ca))
    result: list[int] = []
    c.on_connect = lambda _c, _u, _f, rc, _p: result.append(rc.value)
    c.connect("127.0.0.1", port)
    c.loop_start()
    deadline = time.monotonic() + 10
    while not result and time.monotonic() < deadline:
        time.sleep(0.01)
    assert result == [0], f"{user} could not connect: {result}"
    return c


def watcher(port: int, user: str, password: str, *subs: str) -> Recorder:
    rec = Recorder(port, subs)
    rec.client.username_pw_set(user, password)
    return rec.start()


def start_hass(port: int, password: str, *extra_env: tuple[str, str]) -> subprocess.Popen[bytes]:
    """hass-discovery (instance hass, the demo site) as the compose user ``hass-discovery``."""
    env = {
        "BMSLINK_MQTT_HOST": "127.0.0.1",
        "BMSLINK_MQTT_PORT": str(port),
        "BMSLINK_MQTT_USERNAME": "hass-discovery",
        "BMSLINK_MQTT_PASSWORD": password,
        "BMSLINK_MQTT_RECONNECT_MAX": "1",
        **dict(extra_env),
    }
    return start_service("hass_discovery", DEMO, "hass", env=env)


def stop_quietly(proc: subprocess.Popen[bytes]) -> str:
    if proc.poll() is not None:
        return proc.stderr.read().decode() if proc.stderr else ""
    return stop_reading_stderr(proc)[1]


# --- client-id takeover ---------------------------------------------------------------------


def attack(broker: Broker, pw: dict[str, str], rec: Recorder) -> list[bytes]:
    """Connect as another valid user with the service's client ids (both protocols), then
    publish a marker through that connection; returns the status payloads seen up to the marker
    (Mosquitto is single-threaded: a last will fired by a takeover precedes the marker)."""
    after = rec.mark()
    for n, (client_id, protocol) in enumerate(
        [(HASS_CLIENT_ID, paho.MQTTv311), (HASS_CLIENT_ID, paho.MQTTv5), ("hass-discovery", 4)]
    ):
        c = connect(broker.port, "demo-rack-reader", pw["demo-rack-reader"], client_id, protocol)
        c.publish("bms/rack-2/availability", f"marker-{n}", qos=1).wait_for_publish(5)
        rec.wait_topic("bms/rack-2/availability", f"marker-{n}".encode(), timeout=10, after=after)
        c.disconnect()
        c.loop_stop()
    return [m.payload for m in rec.messages[after:] if m.topic == HASS_STATUS]


def test_a_valid_user_cannot_take_over_a_service_session(tmp_path: Path) -> None:
    pw = make_credentials(tmp_path)
    with shipped_broker(tmp_path) as broker:
        rec = watcher(
            broker.port, "homeassistant", pw["homeassistant"], HASS_STATUS, "bms/+/availability"
        )
        proc = start_hass(broker.port, pw["hass-discovery"])
        try:
            rec.wait_topic(HASS_STATUS, b"online", timeout=30)
            assert attack(broker, pw, rec) == []  # no offline will, no re-published online
            assert proc.poll() is None
        finally:
            err = stop_quietly(proc)
            rec.stop()
        assert "disconnected" not in err.lower(), err[-2000:]


def test_without_username_as_clientid_the_same_attack_kicks_the_service(tmp_path: Path) -> None:
    """Control: the attack is real — drop ``use_username_as_clientid`` and it kicks."""
    pw = make_credentials(tmp_path)
    with shipped_broker(tmp_path, drop=("use_username_as_clientid true",)) as broker:
        rec = watcher(
            broker.port, "homeassistant", pw["homeassistant"], HASS_STATUS, "bms/+/availability"
        )
        proc = start_hass(broker.port, pw["hass-discovery"])
        try:
            rec.wait_topic(HASS_STATUS, b"online", timeout=30)
            assert b"offline" in attack(broker, pw, rec)
        finally:
            stop_quietly(proc)
            rec.stop()


def test_each_user_is_one_connection_and_read_only_users_add_more(tmp_path: Path) -> None:
    """Distinct users connect side by side whatever client id they ask for; a second connection
    of the SAME user replaces the first (hence `--user` for every further client)."""
    pw = make_credentials(tmp_path, "viewer1", "viewer2")
    assert credentials.read_env(tmp_path / ".env")["MQTT_READ_ONLY_USERS"] == "viewer1,viewer2"
    assert "user viewer1\ntopic read #" in (tmp_path / "acl").read_text()
    with shipped_broker(tmp_path) as broker:
        rec = watcher(broker.port, "homeassistant", pw["homeassistant"], "bms/#")
        v1 = connect(broker.port, "viewer1", pw["viewer1"], "same-id")
        v2 = connect(broker.port, "viewer2", pw["viewer2"], "same-id")
        gone: list[bool] = []
        v1.on_disconnect = lambda *_a: gone.append(True)
        v2b = connect(broker.port, "viewer2", pw["viewer2"], "other-id")  # replaces v2
        reader = connect(broker.port, "demo-rack-reader", pw["demo-rack-reader"], "r")
        reader.publish("bms/rack-2/state", b"{}", qos=1).wait_for_publish(5)
        rec.wait_topic("bms/rack-2/state", timeout=10)  # homeassistant still connected
        assert v1.is_connected() and not gone
        deadline = time.monotonic() + 10
        while v2.is_connected() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not v2.is_connected()
        # read-only: a viewer's publish is dropped by the ACL
        v1.publish("bms/bank1/set", b'{"charge_current_limit": 1}', qos=1).wait_for_publish(5)
        reader.publish("bms/rack-2/state", b'{"n": 2}', qos=1).wait_for_publish(5)
        rec.wait_topic("bms/rack-2/state", b'{"n": 2}', timeout=10)
        assert "bms/bank1/set" not in {m.topic for m in rec.messages}
        for c in (v1, v2, v2b, reader):
            c.disconnect()
            c.loop_stop()
        rec.stop()
    # remembered on a re-run without --user
    make_credentials(tmp_path)
    assert "user viewer2" in (tmp_path / "acl").read_text()


# --- size limits ----------------------------------------------------------------------------


def _conf_value(key: str) -> int:
    for line in (SHIPPED / "mosquitto.conf").read_text().splitlines():
        if line.startswith(key + " "):
            return int(line.split()[1])
    raise AssertionError(f"{key} not in the shipped mosquitto.conf")


def _remaining_length(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _utf8(s: str) -> bytes:
    return struct.pack("!H", len(s)) + s.encode()


def flood(port: int, user: str, password: str, topic: str, size: int) -> int:
    """Raw MQTT 3.1.1: CONNECT, then a PUBLISH announcing ``size`` payload bytes, streamed in
    64 KiB chunks until the broker closes the connection; returns the bytes the kernel took."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    body = _utf8("MQTT") + bytes([4, 0xC2]) + struct.pack("!H", 30)
    body += _utf8("flood") + _utf8(user) + _utf8(password)
    sock.sendall(b"\x10" + _remaining_length(len(body)) + body)
    assert sock.recv(4)[:2] == b"\x20\x02"
    header = _utf8(topic)
    sock.sendall(b"\x30" + _remaining_length(len(header) + size) + header)
    sent, chunk = 0, b"x" * 65536
    try:
        while sent < size:
            sent += sock.send(chunk[: size - sent])
    except OSError:  # reset / broken pipe: the broker closed it
        pass
    else:
        raise AssertionError(f"the broker took all {size} bytes")
    finally:
        sock.close()
    return sent


def peak_rss_mib(pid: int) -> float:
    """VmHWM (peak resident set) of ``pid`` in MiB, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


def test_size_limits_fit_the_largest_message_and_refuse_100_mb(tmp_path: Path) -> None:
    limit, packet = _conf_value("message_size_limit"), _conf_value("max_packet_size")
    # the largest legitimate message: a 1024-cell battery's HA device config (measured ~512 KB)
    from bmslink.schema import BatteryInfo
    from hass_discovery.entities import Options, device_payload, encode

    info = BatteryInfo(
        id="pack-" + "x" * 30, cell_count=1024, name="n" * 64, model="M" * 32, serial="s" * 32,
        service="pylontech-rs485-reader", instance="rack1", protocol="pylontech-rs485",
    )  # fmt: skip
    largest = len(encode(device_payload(info, Options())))
    assert 400_000 < largest < limit / 1.5 < limit < packet <= limit + 8192, (largest, limit)

    pw = make_credentials(tmp_path)
    with shipped_broker(tmp_path) as broker:
        rec = watcher(
            broker.port, "homeassistant", pw["homeassistant"], "bms/#", "bmslink/+/+/status"
        )
        env = {
            "BMSLINK_MQTT_HOST": "127.0.0.1",
            "BMSLINK_MQTT_PORT": str(broker.port),
            "BMSLINK_MQTT_USERNAME": "bank-aggregator",
            "BMSLINK_MQTT_PASSWORD": pw["bank-aggregator"],
            "BMSLINK_STATE_DIR": str(tmp_path / "state"),
        }
        bank = start_service("bank_aggregator", DEMO, "bank1", env=env)
        try:
            rec.wait_topic("bmslink/bank-aggregator/bank1/status", b"online", timeout=30)
            assert broker.proc is not None
            broker_before = peak_rss_mib(broker.proc.pid)
            bank_before = peak_rss_mib(bank.pid)
            # over message_size_limit, under max_packet_size: dropped. MQTT 3.1.1: PUBACK, the
            # connection stays. MQTT 5: the connection ends (paho reports a protocol error on
            # Mosquitto 2.0.11's answer) — refused either way, and the client reconnects.
            for protocol in (paho.MQTTv311, paho.MQTTv5):
                reader = connect(
                    broker.port, "demo-rack-reader", pw["demo-rack-reader"], "r", protocol
                )
                ended: list[bool] = []
                reader.on_disconnect = lambda *_a, ended=ended: ended.append(True)
                info = reader.publish("bms/rack-2/state", b"y" * (limit + 1), qos=1)
                deadline = time.monotonic() + 10
                while not (info.is_published() or ended) and time.monotonic() < deadline:
                    time.sleep(0.01)
                assert ended if protocol == paho.MQTTv5 else info.is_published() and not ended
                reader.disconnect()
                reader.loop_stop()
            # the largest size allowed is delivered
            reader = connect(broker.port, "demo-rack-reader", pw["demo-rack-reader"], "r")
            ok = b"z" * (limit - 1024)
            reader.publish("bms/rack-2/info", ok, qos=1).wait_for_publish(10)
            assert rec.wait_topic("bms/rack-2/info", timeout=10).payload == ok
            assert "bms/rack-2/state" not in {m.topic for m in rec.messages}
            reader.disconnect()
            reader.loop_stop()
            # 100 MB on a topic the aggregator reads: cut off after the header
            taken = flood(
                broker.port, "demo-rack-reader", pw["demo-rack-reader"], "bms/rack-2/state",
                100 * 1024 * 1024,
            )  # fmt: skip
            assert taken < 32 * 1024 * 1024, taken  # socket buffers only, not 100 MB
            # the broker still serves, the aggregator is still online and never saw it
            again = connect(broker.port, "demo-rack-reader", pw["demo-rack-reader"], "r2")
            again.publish("bms/rack-2/availability", b"online", qos=1).wait_for_publish(5)
            rec.wait_topic("bms/rack-2/availability", b"online", timeout=10)
            again.disconnect()
            again.loop_stop()
            assert "bms/rack-2/state" not in {m.topic for m in rec.messages}
            assert bank.poll() is None
            broker_after, bank_after = peak_rss_mib(broker.proc.pid), peak_rss_mib(bank.pid)
            assert broker_after - broker_before < 8, (broker_before, broker_after)
            assert bank_after - bank_before < 8, (bank_before, bank_after)
            statuses = [m.payload for m in rec.messages if m.topic.endswith("/status")]
            assert b"offline" not in statuses
        finally:
            stop_quietly(bank)
            rec.stop()


# --- hass-discovery's ACL -------------------------------------------------------------------


def test_hass_discovery_writes_only_its_own_discovery_topics(tmp_path: Path) -> None:
    pw = make_credentials(tmp_path)
    acl = (tmp_path / "acl").read_text()
    block = acl.split("user hass-discovery\n", 1)[1].split("\n\n", 1)[0]
    assert "homeassistant/#" not in block
    assert "topic write homeassistant/device/bmslink_rack-2/config" in block
    assert "topic write homeassistant/device/bmslink_bank1/config" in block
    assert "topic write homeassistant/device/bmslink_inverter_demo_inv1/config" in block
    with shipped_broker(tmp_path) as broker:
        rec = watcher(broker.port, "homeassistant", pw["homeassistant"], "homeassistant/#")
        hass = connect(broker.port, "hass-discovery", pw["hass-discovery"], "h")
        for topic in (
            "homeassistant/device/zigbee_lamp/config",  # another integration's device
            "homeassistant/sensor/foo/config",
            "homeassistant/device/bmslink_not-in-site/config",
            "homeassistant/status",  # HA's birth: only HA writes it
            "homeassistant/device/bmslink_rack-2/config",  # allowed, last: the marker
        ):
            hass.publish(topic, b"{}", qos=1).wait_for_publish(5)
        rec.wait_topic("homeassistant/device/bmslink_rack-2/config", timeout=10)
        hass.publish("homeassistant/sensor/bmslink_rack-2/soc/config", b"{}", qos=1)
        rec.wait_topic("homeassistant/sensor/bmslink_rack-2/soc/config", timeout=10)
        seen = {m.topic for m in rec.messages}
        assert seen == {
            "homeassistant/device/bmslink_rack-2/config",
            "homeassistant/sensor/bmslink_rack-2/soc/config",
        }
        hass.disconnect()
        hass.loop_stop()
        # the real service under this ACL: its discovery config reaches Home Assistant
        reader = connect(broker.port, "demo-rack-reader", pw["demo-rack-reader"], "r")
        info = (
            b'{"id":"rack-2","kind":"battery","cell_count":15,'
            b'"service":"pylontech-rs485-reader","instance":"demo-rack"}'
        )
        reader.publish("bms/rack-2/info", info, qos=1, retain=True).wait_for_publish(5)
        reader.disconnect()
        reader.loop_stop()
        after = rec.mark()
        proc = start_hass(broker.port, pw["hass-discovery"])
        try:
            got = rec.wait_topic(
                "homeassistant/device/bmslink_rack-2/config", timeout=30, after=after
            )
            assert b'"bmslink_rack-2"' in got.payload
        finally:
            stop_quietly(proc)
        rec.stop()


def test_hass_discovery_acl_keeps_devices_that_left_so_they_can_be_cleared(
    tmp_path: Path,
) -> None:
    make_credentials(tmp_path)
    acl = tmp_path / "acl"
    acl.write_text(
        acl.read_text().replace(
            "user hass-discovery\n",
            "user hass-discovery\ntopic write homeassistant/device/bmslink_gone-1/config\n",
        )
    )
    make_credentials(tmp_path)
    block = acl.read_text().split("user hass-discovery\n", 1)[1].split("\n\n", 1)[0]
    assert "topic write homeassistant/device/bmslink_gone-1/config" in block


# --- health check ---------------------------------------------------------------------------


def test_broker_health_check_password_is_in_a_file(tmp_path: Path) -> None:
    doc = yaml.safe_load((ROOT / "compose.yaml").read_text())
    mosq = doc["services"]["mosquitto"]
    argv = [a.replace("$$", "$") for a in mosq["healthcheck"]["test"]]
    assert argv[0] == "CMD" and "-P" not in argv and "-u" not in argv
    assert not any("PASSWORD" in a for a in argv)
    assert not any("PASSWORD" in k for k in (mosq.get("environment") or {}))
    pw = make_credentials(tmp_path)
    options = tmp_path / "healthcheck" / "mosquitto_sub"
    assert options.read_text() == f"-u healthcheck\n-P {pw['healthcheck']}\n"
    assert options.stat().st_mode & 0o777 == 0o600
    mounts = {v.split(":")[1]: v.split(":")[0] for v in mosq["volumes"] if v.startswith("./")}
    assert mounts["/mosquitto/healthcheck"] == "./mosquitto/healthcheck"
    sub = shutil.which("mosquitto_sub")
    if sub is None:
        pytest.skip("mosquitto_sub (mosquitto-clients) is not installed")
    with shipped_broker(tmp_path) as broker:
        cmd = [a.replace("/mosquitto/healthcheck", str(tmp_path / "healthcheck")) for a in argv[1:]]
        proc = subprocess.run(
            [*cmd, "-h", "127.0.0.1", "-p", str(broker.port)],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert proc.returncode == 0, proc.stderr
        assert int(proc.stdout.split()[0]) >= 0  # "<n> seconds"


# --- TLS ------------------------------------------------------------------------------------


def test_tls_listener_with_credentials_certificates(tmp_path: Path) -> None:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    pw = make_credentials(tmp_path)
    made = credentials.make_tls(tmp_path, ["localhost", "127.0.0.1"])
    certs = tmp_path / "certs"
    assert {p.name for p in made} == {"ca.key", "ca.crt", "broker.key", "broker.crt"}
    assert (tmp_path / "ca.key").stat().st_mode & 0o777 == 0o600
    assert credentials.make_tls(tmp_path, ["localhost"]) == []  # kept on a re-run
    wrong = tmp_path / "wrong"
    credentials.make_tls(wrong, ["localhost", "127.0.0.1"])  # another CA, same names
    with shipped_broker(tmp_path, listeners="tls") as broker:
        port = broker.tls_port
        # the listener speaks TLS with the broker certificate, verified by the CA
        ctx = ssl.create_default_context(cafile=str(certs / "ca.crt"))
        with (
            socket.create_connection(("127.0.0.1", port), 10) as raw,
            ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
        ):
            assert tls.version() in ("TLSv1.2", "TLSv1.3")
        rec = watcher(broker.port, "homeassistant", pw["homeassistant"], HASS_STATUS)
        tls_env = (
            ("BMSLINK_MQTT_PORT", str(port)),
            ("BMSLINK_MQTT_TLS", "true"),
            ("BMSLINK_MQTT_CA_FILE", str(certs / "ca.crt")),
        )
        proc = start_hass(broker.port, pw["hass-discovery"], *tls_env)
        try:
            rec.wait_topic(HASS_STATUS, b"online", timeout=30)
            # takeover through the TLS listener: refused there too
            after = rec.mark()
            c = connect(
                port, "demo-rack-reader", pw["demo-rack-reader"], HASS_CLIENT_ID,
                tls_ca=certs / "ca.crt",
            )  # fmt: skip
            c.publish("bms/rack-2/availability", b"m", qos=1).wait_for_publish(5)
            c.disconnect()
            c.loop_stop()
            assert proc.poll() is None
        finally:
            stop_quietly(proc)
        rec.wait_topic(HASS_STATUS, b"offline", timeout=15, after=after)
        assert [m.payload for m in rec.messages[after:] if m.topic == HASS_STATUS] == [b"offline"]
        # the wrong CA: never connects, says why
        wrong_env = (*tls_env[:2], ("BMSLINK_MQTT_CA_FILE", str(wrong / "certs" / "ca.crt")))
        proc = start_hass(broker.port, pw["hass-discovery"], *wrong_env)
        try:
            # the broker sees the client's TLS alert (the client refused the certificate)
            broker.wait_log("alert unknown ca", timeout=30)
            assert proc.poll() is None  # retrying, not crashed
        finally:
            stop_quietly(proc)
        assert [m.payload for m in rec.messages[after:] if m.topic == HASS_STATUS] == [b"offline"]
        rec.stop()


def test_ca_file_needs_tls_and_a_readable_file(tmp_path: Path) -> None:
    from bmslink.config import MqttConfig

    with pytest.raises(ValueError, match="ca_file is set but tls is false"):
        MqttConfig(ca_file=str(tmp_path))
    with pytest.raises(ValueError, match="not a readable file"):
        MqttConfig(tls=True, ca_file=str(tmp_path / "missing.crt"))
    ca = tmp_path / "ca.crt"
    ca.write_text("x")
    assert MqttConfig(tls=True, ca_file=str(ca)).ca_file == str(ca)
