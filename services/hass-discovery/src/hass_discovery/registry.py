"""What is announced to Home Assistant, and what must be removed (pure; no I/O).

:class:`Registry` holds the devices hass-discovery knows (from ``bms/+/info`` and the site
file) and what it has published, and turns events into a list of :class:`Publish` actions
(retained, QoS 1; an empty payload clears a config). The rules, documented in the README
("Removing devices"):

- **Desired devices**: every battery/bank whose retained info is present, that the site still
  lists (:meth:`Site.lists`) and that ``[hass] exclude`` does not name; plus every inverter
  output of ``[inverters]``. Batteries come after banks so ``via_device`` finds its parent.
- **Index**: after every change hass-discovery publishes, retained, the list of config topics
  (and components) per device on ``bmslink/hass-discovery/<instance>/index``. It is read back
  at each (re)connect, so configs published by an earlier run are known and cleared when their
  device is no longer desired — no ghosts after a restart.
- **Sync**: after each (re)connect, :meth:`begin_sync` starts collecting retained infos and
  the index; :meth:`end_sync` (called when the service's own marker message comes back, i.e.
  after every retained message of its subscriptions was delivered) decides. If the index came
  back, the broker kept its retained messages, so a device whose info did not come back had it
  cleared (empty payload) while hass-discovery was away: it is removed. If the index did not
  come back, the broker lost its retained store (restart without persistence): every known
  device is kept and all configs are re-published from memory.
- An info cleared with an empty retained payload removes the device at once.
- Nothing else removes a device: ``offline`` availability or a dead publisher never does.
- Every sync and every Home Assistant birth re-publishes every config (``force``).
- A component that disappears from a device (smaller cell count) is first re-sent as
  ``{"platform": …}`` only, then the device config without it (reference §9). Switching
  ``discovery_mode`` sends ``{"migrate_discovery": true}`` on the old topics, then the new
  configs, then clears the old topics (reference §2).
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any, Final, Literal

from bmslink import schema
from bmslink.schema import BatteryInfo
from hass_discovery import entities
from hass_discovery.entities import Options
from hass_discovery.site import Site

log = logging.getLogger(__name__)

Mode = Literal["device", "entity"]
INDEX_VERSION: Final = 1
MIGRATE: Final = b'{"migrate_discovery":true}'


@dataclass(frozen=True, slots=True)
class Publish:
    """One retained QoS 1 publish; ``payload`` ``b""`` clears the retained config."""

    topic: str
    payload: bytes


@dataclass(slots=True)
class Entry:
    """What is on the broker for one device: config topic → payload we sent (None when only
    known from the index), component key → platform, and the discovery mode used."""

    topics: dict[str, bytes | None]
    components: dict[str, str]
    mode: str


@dataclass
class Registry:
    """Devices known and configs published; every method returns the actions to publish."""

    opts: Options
    site: Site
    index_topic: str
    mode: Mode = "device"
    exclude: frozenset[str] = frozenset()
    infos: dict[str, BatteryInfo] = field(default_factory=dict)
    entries: dict[str, Entry] = field(default_factory=dict)
    stats: Counter[str] = field(default_factory=Counter)
    syncing: bool = False
    _seen: set[str] = field(default_factory=set)
    _index_seen: bool = False
    _last_index: bytes | None = None
    _cache: dict[str, tuple[Hashable, dict[str, Any], dict[str, bytes]]] = field(
        default_factory=dict
    )

    # --- events -------------------------------------------------------------------------------

    def on_info(self, device_id: str, payload: bytes) -> list[Publish]:
        """A message on ``bms/<device_id>/info``: empty = the device was removed; otherwise a
        ``BatteryInfo`` (a malformed one is counted and ignored, never removes anything)."""
        if not payload:
            if self.infos.pop(device_id, None) is not None:
                log.info("%s: info cleared; removing it from Home Assistant", device_id)
            self._seen.discard(device_id)
            return [] if self.syncing else self.reconcile()
        try:
            info: BatteryInfo = schema.decode(schema.INFO_DECODER, payload)
        except schema.MessageError as exc:
            self.stats["info_invalid"] += 1
            log.warning("bms/%s/info refused: %s", device_id, exc)
            return []
        if info.id != device_id:
            self.stats["info_id_mismatch"] += 1
            log.warning("bms/%s/info refused: it describes %r", device_id, info.id)
            return []
        self.infos[device_id] = info
        if self.syncing:
            self._seen.add(device_id)
            return []
        return self.reconcile()

    def on_index(self, payload: bytes) -> None:
        """The retained index of an earlier run (only read while syncing; our own later
        publishes are echoes). A malformed index is counted and ignored."""
        if not self.syncing or not payload:
            return
        try:
            doc = json.loads(payload)
            devices = doc["devices"]
            parsed = {
                str(obj): Entry(
                    {str(t): None for t in entry["topics"]},
                    {str(k): str(v) for k, v in entry.get("components", {}).items()},
                    str(entry.get("mode", "device")),
                )
                for obj, entry in devices.items()
            }
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            self.stats["index_invalid"] += 1
            log.warning("index refused: %s", exc)
            return
        self._index_seen = True
        for obj, entry in parsed.items():
            known = self.entries.get(obj)
            if known is None:
                self.entries[obj] = entry
            else:
                for topic in entry.topics:
                    known.topics.setdefault(topic, None)

    def begin_sync(self) -> None:
        """A (re)connect: collect retained infos and the index until :meth:`end_sync`."""
        self.syncing = True
        self._seen = set()
        self._index_seen = False

    def end_sync(self, *, conservative: bool = False) -> list[Publish]:
        """Every retained message has arrived: drop infos cleared while away (only if the
        broker kept our index, and not ``conservative``), then re-publish everything."""
        self.syncing = False
        if self._index_seen and not conservative:
            for device_id in sorted(set(self.infos) - self._seen):
                log.info("%s: info gone from the broker; removing it", device_id)
                del self.infos[device_id]
        self.stats["syncs"] += 1
        return self.reconcile(force=True, publish_index=True)

    def republish(self) -> list[Publish]:
        """Home Assistant announced itself: every config again (nothing while syncing — the
        sync ends with a full re-publish anyway)."""
        if self.syncing:
            return []
        self.stats["births"] += 1
        return self.reconcile(force=True)

    # --- the decision -------------------------------------------------------------------------

    def desired(self) -> dict[str, tuple[Hashable, Callable[[], dict[str, Any]]]]:
        """``{object_id: (inputs, build)}`` of every device to announce, banks first; ``build()``
        makes the device payload, ``inputs`` is what it depends on (for the cache)."""
        listed = {
            i: info
            for i, info in self.infos.items()
            if i not in self.exclude and self.site.lists(info)
        }
        banks = sorted(i for i, info in listed.items() if info.kind == "bank")
        member_of: dict[str, str] = {}
        for bank in banks:
            for member in listed[bank].members or []:
                member_of.setdefault(member, bank)
        out: dict[str, tuple[Hashable, Callable[[], dict[str, Any]]]] = {}
        for bank in banks:
            caps = self.site.override_caps(listed[bank])
            out[entities.object_id(bank)] = (
                (schema.encode(listed[bank]), tuple(sorted(caps.items()))),
                partial(entities.device_payload, listed[bank], self.opts, caps=caps),
            )
        for i in sorted(set(listed) - set(banks)):
            via = member_of.get(i)
            out[entities.object_id(i)] = (
                (schema.encode(listed[i]), via),
                partial(entities.device_payload, listed[i], self.opts, via_bank=via),
            )
        for configured in self.site.inverters():
            output = configured
            if output.bank is not None and output.bank not in listed:
                output = replace(output, bank=None)  # no parent device to link to
            out[entities.inverter_object_id(output.instance, output.name)] = (
                output,
                partial(entities.inverter_payload, output, self.opts),
            )
        return out

    def _generated(
        self, obj: str, inputs: Hashable, build: Callable[[], dict[str, Any]]
    ) -> tuple[dict[str, Any], dict[str, bytes]]:
        """The payload and encoded configs of ``obj``, rebuilt only when ``inputs`` changed."""
        cached = self._cache.get(obj)
        if cached is not None and cached[0] == inputs:
            return cached[1], cached[2]
        payload = build()
        configs = self._configs(obj, payload)
        self._cache[obj] = (inputs, payload, configs)
        return payload, configs

    def _configs(self, obj: str, payload: dict[str, Any]) -> dict[str, bytes]:
        prefix = self.opts.prefix
        if self.mode == "device":
            return {entities.device_topic(prefix, obj): entities.encode(payload)}
        return {
            topic: entities.encode(config)
            for topic, config in entities.per_entity(prefix, obj, payload).items()
        }

    def reconcile(self, *, force: bool = False, publish_index: bool = False) -> list[Publish]:
        """Publish what changed (everything if ``force``), clear what is no longer desired."""
        actions: list[Publish] = []
        desired = self.desired()
        for obj, (inputs, build) in desired.items():
            payload, configs = self._generated(obj, inputs, build)
            components = {k: c["platform"] for k, c in payload["components"].items()}
            old = self.entries.get(obj)
            stale: list[str] = []
            if old is not None:
                stale = [t for t in old.topics if t not in configs]
                if stale and old.mode != self.mode:
                    actions.extend(Publish(t, MIGRATE) for t in stale)
                removed = {k: p for k, p in old.components.items() if k not in components}
                if self.mode == "device" and old.mode == "device" and removed:
                    stub = dict(payload)
                    stub["components"] = {
                        **payload["components"],
                        **{k: {"platform": p} for k, p in removed.items()},
                    }
                    topic = entities.device_topic(self.opts.prefix, obj)
                    actions.append(Publish(topic, entities.encode(stub)))
            for topic, data in configs.items():
                if force or old is None or old.topics.get(topic) != data:
                    actions.append(Publish(topic, data))
            actions.extend(Publish(t, b"") for t in stale)
            self.entries[obj] = Entry(dict(configs), components, self.mode)
        for obj in sorted(set(self.entries) - set(desired)):
            log.info("%s: no longer in the site; clearing its discovery configs", obj)
            self._cache.pop(obj, None)
            actions.extend(Publish(t, b"") for t in self.entries.pop(obj).topics)
        index = self.index_payload()
        if publish_index or index != self._last_index:
            actions.append(Publish(self.index_topic, index))
            self._last_index = index
        for action in actions:
            if action.topic != self.index_topic:
                self.stats["configs_cleared" if not action.payload else "configs_published"] += 1
        return actions

    def index_payload(self) -> bytes:
        """The retained index: ``{"version": 1, "devices": {object_id: {"mode", "topics",
        "components"}}}`` (sorted, so an unchanged index is byte-identical)."""
        doc = {
            "version": INDEX_VERSION,
            "devices": {
                obj: {
                    "mode": e.mode,
                    "topics": sorted(e.topics),
                    "components": dict(sorted(e.components.items())),
                }
                for obj, e in sorted(self.entries.items())
            },
        }
        return json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()
