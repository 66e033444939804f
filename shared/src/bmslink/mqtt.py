"""The MQTT runtime every service uses (paho-mqtt 2.x, MQTT 3.1.1).

What it guarantees (DESIGN.md "Rules every publisher follows"):

- a retained last will ``offline`` on ``bmslink/<service>/<instance>/status``, and ``online``
  published (retained) on every (re)connect;
- automatic reconnect with exponential back-off (``reconnect_min`` .. ``reconnect_max`` s),
  including when the broker is down at start-up;
- after every reconnect: re-subscribe, then re-publish every *sticky* message (the latest info,
  availability and state of each device, in the order they were first published);
- handlers run on paho's network thread; an exception in a handler is logged and counted, never
  propagated (nothing that arrives on a topic can stop a service);
- :meth:`MqttRuntime.stop` publishes ``offline`` on the status topic and disconnects cleanly;
- every publish while connected touches the health heartbeat (:mod:`bmslink.health`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode

from bmslink.config import MqttConfig
from bmslink.health import Heartbeat
from bmslink.topics import OFFLINE, ONLINE, SERVICE_STATUS

log = logging.getLogger(__name__)

REPUBLISH_DELAY = 0.5
"""s after a (re)connect when the sticky messages are published a second time (see
``_handle_connect``)."""

Handler = Callable[[str, bytes], None]
"""A subscription handler: ``(topic, payload)``; runs on the network thread."""


@dataclass(slots=True)
class _Sticky:
    payload: bytes
    qos: int
    retain: bool


class MqttRuntime:
    """One service instance's connection to the broker.

    ``service`` and ``instance`` are slugs naming the status topic. ``on_connect`` callbacks run
    on the network thread after each successful (re)connect, after the automatic re-publish.
    """

    def __init__(self, config: MqttConfig, service: str, instance: str) -> None:
        self.config = config
        self.service = service
        self.instance = instance
        self.status_topic = SERVICE_STATUS.format(service=service, instance=instance)
        self.connected = threading.Event()
        self.connect_count = 0
        self.handler_errors = 0
        self.heartbeat = Heartbeat()
        self._subs: dict[str, tuple[int, Handler]] = {}
        self._sticky: dict[str, _Sticky] = {}
        self._lock = threading.Lock()
        self._on_connect: list[Callable[[], None]] = []
        self._session_up = False
        self._started = False
        self._client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"bmslink-{service}-{instance}",
            protocol=paho.MQTTv311,
            clean_session=True,
        )
        if config.username:
            self._client.username_pw_set(config.username, config.password)
        if config.tls:
            self._client.tls_set()
        self._client.will_set(self.status_topic, OFFLINE, qos=1, retain=True)
        self._client.reconnect_delay_set(
            min_delay=max(1, round(config.reconnect_min)),
            max_delay=max(1, round(config.reconnect_max)),
        )
        self._client.max_queued_messages_set(10000)
        self._client.on_connect = self._handle_connect
        self._client.on_disconnect = self._handle_disconnect
        self._client.on_message = self._handle_unmatched

    # --- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        """Connect in the background (retrying until the broker answers) and return at once."""
        self._started = True
        self._client.connect_async(self.config.host, self.config.port, self.config.keepalive)
        self._client.loop_start()

    def wait_connected(self, timeout: float) -> bool:
        """Block until connected or ``timeout`` s passed; returns whether connected."""
        return self.connected.wait(timeout)

    def stop(self, timeout: float = 2.0) -> None:
        """Publish ``offline`` on the status topic, flush, disconnect and stop the thread."""
        if not self._started:
            return
        self._started = False
        if self.connected.is_set():
            info = self._client.publish(self.status_topic, OFFLINE, qos=1, retain=True)
            deadline = time.monotonic() + timeout
            while (
                not info.is_published() and time.monotonic() < deadline and self.connected.is_set()
            ):
                time.sleep(0.005)
        self._client.disconnect()
        self._client.loop_stop()

    def on_connect(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` (network thread) after every successful (re)connect."""
        self._on_connect.append(callback)

    # --- publish / subscribe ---------------------------------------------------------------

    def publish(
        self,
        topic: str,
        payload: bytes | str,
        *,
        retain: bool,
        qos: int = 1,
        sticky: bool = False,
    ) -> None:
        """Publish now (queued by paho while disconnected, QoS ≥ 1).

        ``sticky`` remembers the message as the topic's latest value, re-published after every
        reconnect (use it for info, availability and state). Never raises for a lost connection.
        """
        data = payload.encode() if isinstance(payload, str) else payload
        if sticky:
            with self._lock:
                self._sticky[topic] = _Sticky(data, qos, retain)
        result = self._client.publish(topic, data, qos=qos, retain=retain)
        if result.rc == MQTTErrorCode.MQTT_ERR_SUCCESS and self.connected.is_set():
            self.heartbeat.beat()
        if result.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
            log.warning("publish to %s failed: %s", topic, paho.error_string(result.rc))

    def forget(self, topic: str) -> None:
        """Stop re-publishing ``topic`` after reconnects."""
        with self._lock:
            self._sticky.pop(topic, None)

    def subscribe(
        self, pattern: str, handler: Handler, qos: int = 1, *, drop_retained: bool = False
    ) -> None:
        """Subscribe ``handler`` to ``pattern`` (wildcards allowed), now and after reconnects.

        ``drop_retained`` ignores retained messages (for commands: a command someone published
        with the retain flag must not be re-applied at every restart); they are logged.
        """
        self._client.message_callback_add(pattern, self._wrap(handler, drop_retained))
        with self._lock:
            self._subs[pattern] = (qos, handler)
            session_up = self._session_up
        # Subscribing twice is harmless; missing the window between a (re)connect's copy of the
        # subscriptions and this call would not be.
        if session_up:
            self._client.subscribe(pattern, qos)

    # --- paho callbacks (network thread) ---------------------------------------------------

    def _wrap(
        self, handler: Handler, drop_retained: bool
    ) -> Callable[[paho.Client, Any, paho.MQTTMessage], None]:
        def call(_client: paho.Client, _userdata: Any, message: paho.MQTTMessage) -> None:
            if drop_retained and message.retain:
                log.warning(
                    "ignoring a retained command on %s (commands must not be retained)",
                    message.topic,
                )
                return
            try:
                handler(message.topic, bytes(message.payload))
            except Exception:
                self.handler_errors += 1
                log.exception("handler for %s failed", message.topic)

        return call

    def _handle_unmatched(self, _c: paho.Client, _u: Any, message: paho.MQTTMessage) -> None:
        log.debug("unhandled message on %s", message.topic)

    def _handle_connect(
        self, client: paho.Client, _u: Any, _flags: Any, reason: Any, _props: Any
    ) -> None:
        if reason.is_failure:
            log.error(
                "broker %s:%s refused the connection: %s",
                self.config.host,
                self.config.port,
                reason,
            )
            return
        self.connect_count += 1
        log.info("connected to %s:%s", self.config.host, self.config.port)
        client.publish(self.status_topic, ONLINE, qos=1, retain=True)
        with self._lock:
            self._session_up = True
            subs = [(p, q) for p, (q, _h) in self._subs.items()]
            sticky = list(self._sticky.items())
        if subs:
            client.subscribe(subs)
        for topic, item in sticky:
            client.publish(topic, item.payload, qos=item.qos, retain=item.retain)
        if sticky:
            # paho re-sends the messages that were in flight at the disconnect right AFTER this
            # callback, so an older state could end up last (and retained): publish the latest
            # values once more when that is done.
            timer = threading.Timer(REPUBLISH_DELAY, self._republish_sticky)
            timer.daemon = True
            timer.start()
        self.connected.set()
        self.heartbeat.beat()
        for callback in self._on_connect:
            try:
                callback()
            except Exception:
                log.exception("on_connect callback failed")

    def _republish_sticky(self) -> None:
        if not (self._started and self.connected.is_set()):
            return
        with self._lock:
            sticky = list(self._sticky.items())
        for topic, item in sticky:
            self._client.publish(topic, item.payload, qos=item.qos, retain=item.retain)

    def _handle_disconnect(
        self, _c: paho.Client, _u: Any, _flags: Any, reason: Any, _props: Any
    ) -> None:
        was = self.connected.is_set()
        with self._lock:
            self._session_up = False
        self.connected.clear()
        if was and self._started:
            log.warning("disconnected from broker (%s); reconnecting", reason)
