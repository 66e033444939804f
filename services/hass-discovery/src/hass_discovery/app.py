"""hass-discovery: announces every battery, bank and inverter output to Home Assistant.

Subscribes to ``bms/+/info`` (retained), its own retained index, Home Assistant's birth topic
(``<prefix>/status``) and its own sync marker; publishes retained device-based discovery
configs ``<prefix>/device/<object_id>/config`` (or per-entity configs), the index
``bmslink/hass-discovery/<instance>/index`` and its status
``bmslink/hass-discovery/<instance>/status``. The decisions live in :mod:`hass_discovery.registry`;
this module wires them to MQTT (all registry calls under one lock: paho's network thread and
the birth timer both call in).
"""

from __future__ import annotations

import json
import logging
import random
import sys
import threading
import time
import uuid
from collections.abc import Callable, Sequence

from bmslink import topics
from bmslink.mqtt import Handler, MqttRuntime
from bmslink.service import base_parser, start_service
from hass_discovery.config import HassConfig
from hass_discovery.entities import Options
from hass_discovery.registry import Publish, Registry
from hass_discovery.site import Site

SERVICE = "hass-discovery"
STATS_PERIOD = 60.0
PING_PERIOD = 20.0
"""s; a ``ping`` on the sync topic this often keeps the health heartbeat (``bmslink.health``,
"published within 60 s") fresh while nothing changes — it only succeeds while connected."""
SYNC_TIMEOUT = 15.0
"""s; if the sync marker does not come back (e.g. an ACL forbids it), the sync ends without
removing anything on the ground of absence."""

log = logging.getLogger(SERVICE)


def index_topic(instance: str) -> str:
    """``bmslink/hass-discovery/<instance>/index`` (retained): what an earlier run published."""
    return topics.HASS_INDEX.format(instance=instance)


def sync_topic(instance: str) -> str:
    """``bmslink/hass-discovery/<instance>/sync`` (not retained): the end-of-retained marker."""
    return topics.HASS_SYNC.format(instance=instance)


class Discovery:
    """The running service: MQTT wiring around a :class:`Registry`."""

    def __init__(self, config: HassConfig, site: Site, mqtt: MqttRuntime, instance: str) -> None:
        self.config = config
        self.mqtt = mqtt
        self.instance = instance
        self.index_topic = index_topic(instance)
        self.sync_topic = sync_topic(instance)
        self.registry = Registry(
            Options(
                prefix=config.discovery_prefix,
                expire_after=config.expire_after,
                cells_enabled=config.cell_entities_enabled,
                override_ttl=config.override_ttl,
                override_max_current=config.override_max_current,
                inverter_service=config.inverter_service,
            ),
            site,
            self.index_topic,
            config.discovery_mode,
            frozenset(config.exclude),
        )
        self._lock = threading.Lock()
        self._ready = False
        self._nonce: str | None = None
        self._timers: list[threading.Timer] = []

    # --- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        """Subscribe and start the first sync (if already connected; else on connect)."""
        self.mqtt.on_connect(self._connected)
        subs = self._subscriptions()
        for pattern, handler in subs:
            self.mqtt.subscribe(pattern, handler)
        with self._lock:
            self._ready = True
            if self.mqtt.connected.is_set():
                # Connected before we were ready: messages that arrived meanwhile were ignored
                # (handlers wait for `_ready`), and a subscription made while paho was
                # connecting may be lost. Subscribing again re-delivers every retained message
                # after this point, and the SUBSCRIBE packets precede the sync marker.
                for pattern, handler in subs:
                    self.mqtt.subscribe(pattern, handler)
                self._begin_sync()

    def close(self) -> None:
        """Cancel pending timers. Configs stay (retained): stopping is not removing."""
        with self._lock:
            self._ready = False
            for timer in self._timers:
                timer.cancel()
            self._timers.clear()

    def ping(self) -> None:
        """Publish ``ping`` (not retained) on the sync topic: liveness for the health check."""
        if self.mqtt.connected.is_set():
            self.mqtt.publish(self.sync_topic, b"ping", retain=False, qos=0)

    def stats(self) -> dict[str, int]:
        """Counters: configs published/cleared, syncs, births, refused messages."""
        with self._lock:
            return dict(self.registry.stats)

    def _subscriptions(self) -> list[tuple[str, Handler]]:
        return [
            (topics.INFO.subscription, self._on_info),
            (self.index_topic, self._on_index),
            (self.config.birth, self._on_birth),
            (self.sync_topic, self._on_sync),
        ]

    # --- sync -----------------------------------------------------------------------------------

    def _connected(self) -> None:
        with self._lock:
            if self._ready:
                self._begin_sync()

    def _begin_sync(self) -> None:
        nonce = uuid.uuid4().hex
        self._nonce = nonce
        self.registry.begin_sync()
        self.mqtt.publish(self.sync_topic, nonce, retain=False, qos=1)
        self._timer(SYNC_TIMEOUT, lambda: self._sync_timeout(nonce))

    def _sync_timeout(self, nonce: str) -> None:
        with self._lock:
            if self._nonce != nonce:
                return
            log.warning(
                "sync marker did not come back in %.0f s: re-publishing without "
                "removing absent devices (check the ACL of %s)",
                SYNC_TIMEOUT,
                self.sync_topic,
            )
            self._nonce = None
            self._send(self.registry.end_sync(conservative=True))

    def _on_sync(self, _topic: str, payload: bytes) -> None:
        with self._lock:
            if self._nonce is None or payload.decode(errors="replace") != self._nonce:
                return
            self._nonce = None
            actions = self.registry.end_sync()
            log.info(
                "synced: %d device(s) announced, %d message(s)",
                len(self.registry.entries),
                len(actions),
            )
            self._send(actions)

    # --- handlers -------------------------------------------------------------------------------

    def _on_info(self, topic: str, payload: bytes) -> None:
        found = topics.INFO.match(topic)
        if found is None:
            return
        with self._lock:
            if self._ready:  # before: the re-subscribe in start() delivers it again
                self._send(self.registry.on_info(found["id"], payload))

    def _on_index(self, _topic: str, payload: bytes) -> None:
        with self._lock:
            if self._ready:
                self.registry.on_index(payload)

    def _on_birth(self, _topic: str, payload: bytes) -> None:
        if payload.strip().lower() != b"online" or not self._ready:
            return
        delay = random.uniform(self.config.birth_delay_min, self.config.birth_delay_max)
        log.info("Home Assistant is online: re-publishing discovery in %.1f s", delay)
        with self._lock:
            self._timer(delay, self._republish)

    def _republish(self) -> None:
        with self._lock:
            if self._ready:
                self._send(self.registry.republish())

    # --- helpers --------------------------------------------------------------------------------

    def _timer(self, delay: float, action: Callable[[], None]) -> None:
        self._timers = [t for t in self._timers if t.is_alive()]
        timer = threading.Timer(delay, action)
        timer.daemon = True
        self._timers.append(timer)
        timer.start()

    def _send(self, actions: list[Publish]) -> None:
        for action in actions:
            self.mqtt.publish(action.topic, action.payload, retain=True, qos=1)


def main(argv: Sequence[str] | None = None) -> int:
    """Run until SIGTERM/SIGINT; returns the exit status (2 for a bad config)."""
    parser = base_parser("Announce every battery, bank and inverter output to Home Assistant.")
    ctx = start_service(SERVICE, "hass", HassConfig, parser, argv, instanced=False)
    config: HassConfig = ctx.loaded.section
    site = Site.load(ctx.loaded.path, config)
    service = Discovery(config, site, ctx.mqtt, ctx.instance)
    ctx.on_close(service.close)
    service.start()
    log.info(
        "announcing to %s (%s discovery), site file %s",
        config.discovery_prefix,
        config.discovery_mode,
        ctx.loaded.path or "none (every device counts as listed)",
    )
    next_stats = time.monotonic() + STATS_PERIOD
    next_ping = time.monotonic() + PING_PERIOD
    while not ctx.stop.wait(1.0):
        if time.monotonic() >= next_ping:
            service.ping()
            next_ping = time.monotonic() + PING_PERIOD
        if time.monotonic() >= next_stats:
            log.info("stats %s", json.dumps(service.stats()))
            next_stats = time.monotonic() + STATS_PERIOD
    log.info("stats %s", json.dumps(service.stats()))
    ctx.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
