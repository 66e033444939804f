"""The MQTT runtime every service uses (paho-mqtt 2.x; MQTT 5 by default, 3.1.1 on request).

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
- every publish while connected touches the health heartbeat (:mod:`bmslink.health`);
- command topics (:meth:`MqttRuntime.subscribe_commands`) never pass a retained message to the
  handler: it is refused (the service answers on ``set/result``).

Protocol (``[mqtt] protocol``): MQTT 5 with a clean start on every connect and a session expiry
interval of 0 (the session ends with the connection), which is what MQTT 3.1.1's
``clean_session=1`` did. Command subscriptions use MQTT 5's "retain as published" option (MQTT
5.0 §3.8.3.1), so the broker keeps the retain flag when it forwards a retained publish live;
without it (and always under MQTT 3.1.1, §3.3.1.3) a live message arrives with retain = 0 and
only messages sent because of a (re)subscribe carry the flag.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from bmslink.config import MqttConfig
from bmslink.health import Heartbeat
from bmslink.topics import OFFLINE, ONLINE, SERVICE_STATUS

log = logging.getLogger(__name__)

REPUBLISH_DELAY = 0.5
"""s after a (re)connect when the sticky messages are published a second time (see
``_handle_connect``)."""

Handler = Callable[[str, bytes], None]
"""A subscription handler: ``(topic, payload)``; runs on the network thread."""

Refuse = Callable[[str], None]
"""Called with the topic of a refused (retained) command; runs on the network thread."""

RETAINED_COMMAND_REFUSED = (
    "retained commands are refused: publish the command without the retain flag, and clear the "
    "retained one (publish an empty retained message on this topic)"
)
"""The ``error`` of the ``set/result`` answering a retained command."""


_V5_HINT = ' (a broker without MQTT 5? then set `[mqtt] protocol = "3.1.1"`)'


@dataclass(slots=True)
class _Sub:
    qos: int
    command: bool


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
        self._subs: dict[str, _Sub] = {}
        self._sticky: dict[str, _Sticky] = {}
        self._lock = threading.Lock()
        self._on_connect: list[Callable[[], None]] = []
        self._session_up = False
        self._started = False
        self.v5 = config.protocol == "5"
        if self.v5:
            # clean_start is given to connect_async (v5 has no clean_session)
            self._client = paho.Client(
                CallbackAPIVersion.VERSION2,
                client_id=f"bmslink-{service}-{instance}",
                protocol=paho.MQTTv5,
            )
        else:
            self._client = paho.Client(
                CallbackAPIVersion.VERSION2,
                client_id=f"bmslink-{service}-{instance}",
                protocol=paho.MQTTv311,
                clean_session=True,
            )
        if config.username:
            self._client.username_pw_set(config.username, config.password)
        if config.tls:
            self._client.tls_set(ca_certs=config.ca_file)  # None: the system's CAs
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
        if self.v5:
            # clean start on EVERY connect (not only the first), no session expiry property
            # (= 0: the session ends with the connection): 3.1.1's clean_session=1
            self._client.connect_async(
                self.config.host, self.config.port, self.config.keepalive, clean_start=True
            )
        else:
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

    def subscribe(self, pattern: str, handler: Handler, qos: int = 1) -> None:
        """Subscribe ``handler`` to ``pattern`` (wildcards allowed), now and after reconnects.

        Retained and live messages both reach ``handler`` (for data topics: states, info).
        """
        self._client.message_callback_add(pattern, self._wrap(handler, None))
        self._add_sub(pattern, _Sub(qos, command=False))

    def subscribe_commands(
        self, pattern: str, handler: Handler, refuse: Refuse, qos: int = 1
    ) -> None:
        """Subscribe ``handler`` to the command topic(s) ``pattern``, now and after reconnects.

        A message with the retain flag never reaches ``handler``: a retained command would be
        applied again at every restart or reconnect. ``refuse(topic)`` is called instead (the
        service answers on ``set/result`` with ``ok: false`` and
        :data:`RETAINED_COMMAND_REFUSED`, and counts it). An empty message is what clearing a
        retained command looks like (retained or not, depending on the protocol): it is dropped
        (logged), neither handled nor refused; no command has an empty payload.

        Under MQTT 5 the subscription asks for "retain as published" (MQTT 5.0 §3.8.3.1), so
        the flag is seen on live delivery as well as on a (re)subscribe. Under MQTT 3.1.1 the
        broker clears the flag on live delivery (§3.3.1.3): a retained publish made while the
        service is subscribed cannot be told from a normal one and IS handled; it is refused
        only when delivered as retained (after a (re)subscribe: a restart, a reconnect).
        """
        self._client.message_callback_add(pattern, self._wrap(handler, refuse))
        self._add_sub(pattern, _Sub(qos, command=True))

    def _add_sub(self, pattern: str, sub: _Sub) -> None:
        with self._lock:
            self._subs[pattern] = sub
            session_up = self._session_up
        # Subscribing twice is harmless; missing the window between a (re)connect's copy of the
        # subscriptions and this call would not be.
        if session_up:
            self._client.subscribe([self._sub_entry(pattern, sub)])

    def _sub_entry(self, pattern: str, sub: _Sub) -> tuple[str, Any]:
        """The ``(filter, qos | SubscribeOptions)`` paho expects for this protocol."""
        if self.v5:
            return (pattern, SubscribeOptions(qos=sub.qos, retainAsPublished=sub.command))
        return (pattern, sub.qos)

    # --- paho callbacks (network thread) ---------------------------------------------------

    def _wrap(
        self, handler: Handler, refuse: Refuse | None
    ) -> Callable[[paho.Client, Any, paho.MQTTMessage], None]:
        def call(_client: paho.Client, _userdata: Any, message: paho.MQTTMessage) -> None:
            try:
                if refuse is not None and not message.payload:
                    log.info("empty message on %s (a retained command cleared)", message.topic)
                    return
                if refuse is not None and message.retain:
                    log.warning(
                        "refused a retained command on %s (commands must not be retained)",
                        message.topic,
                    )
                    refuse(message.topic)
                    return
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
            hint = _V5_HINT if self.v5 and "protocol version" in str(reason).lower() else ""
            log.error(
                "broker %s:%s refused the connection: %s%s",
                self.config.host,
                self.config.port,
                reason,
                hint,
            )
            return
        self.connect_count += 1
        log.info("connected to %s:%s", self.config.host, self.config.port)
        client.publish(self.status_topic, ONLINE, qos=1, retain=True)
        with self._lock:
            self._session_up = True
            subs = [self._sub_entry(p, sub) for p, sub in self._subs.items()]
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

    # --- one-off read of retained messages (energy counters at start) -----------------------

    def read_retained(self, topics: Iterable[str], timeout: float) -> dict[str, bytes]:
        """The retained messages on ``topics`` (exact names, no wildcards): topic → payload,
        for the topics that have a non-empty one.

        A short subscription (QoS 0) on this connection, removed before returning. It ends when
        every topic answered, or when the broker acknowledged a second subscription made after
        the first (it sent the first's retained messages before that acknowledgement: it
        handles one client's packets in order), or after ``timeout`` s in all (waiting for the
        connection included: {} if the broker is not reached by then). Only messages with the
        retain flag count (a live publish is not what the broker held). The topics must not be
        subscribed through :meth:`subscribe`. Blocks: not for the network thread.
        """
        deadline = time.monotonic() + timeout
        wanted = list(dict.fromkeys(topics))
        if not wanted or not self.connected.wait(max(0.0, timeout)):
            return {}
        got: dict[str, bytes] = {}
        seen: set[str] = set()
        acked: set[int] = set()
        cond = threading.Condition()

        def collect(_c: paho.Client, _u: Any, message: paho.MQTTMessage) -> None:
            if not message.retain:
                return
            with cond:
                if message.payload:
                    got.setdefault(message.topic, bytes(message.payload))
                seen.add(message.topic)
                cond.notify_all()

        previous = self._client.on_subscribe

        def on_subscribe(*args: Any) -> None:
            with cond:
                acked.add(args[2])
                cond.notify_all()
            if previous is not None:
                previous(*args)

        self._client.on_subscribe = on_subscribe
        for topic in wanted:
            self._client.message_callback_add(topic, collect)
        try:
            if self.v5:
                first: list[tuple[str, Any]] = [(t, SubscribeOptions(qos=0)) for t in wanted]
                # retain handling 1: no retained messages again for an existing subscription
                again: list[tuple[str, Any]] = [
                    (t, SubscribeOptions(qos=0, retainHandling=1)) for t in wanted[:1]
                ]
            else:
                first = [(t, 0) for t in wanted]
                again = [(t, 0) for t in wanted[:1]]
            self._client.subscribe(first)
            _rc, marker = self._client.subscribe(again)
            with cond:
                while len(seen) < len(wanted) and marker not in acked:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    cond.wait(remaining)
                return dict(got)
        finally:
            self._client.unsubscribe(wanted)
            for topic in wanted:
                self._client.message_callback_remove(topic)
            if self._client.on_subscribe is on_subscribe:
                self._client.on_subscribe = previous
