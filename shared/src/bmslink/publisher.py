"""Publishing devices (batteries, banks) the same way in every service.

:class:`DevicePublisher` publishes ``bms/<id>/state``, ``/info`` and ``/availability`` with the
retain flag and QoS of the topic registry, as *sticky* messages (re-published after every
reconnect). :class:`Availability` turns answers and failures into ``online``/``offline`` with the
"N consecutive failures" rule every reader uses.
"""

from __future__ import annotations

import logging

from bmslink import schema, topics
from bmslink.mqtt import MqttRuntime

log = logging.getLogger(__name__)


class DevicePublisher:
    """Publishes the three per-device topics through one :class:`MqttRuntime`."""

    def __init__(self, mqtt: MqttRuntime) -> None:
        self.mqtt = mqtt

    def state(self, state: schema.BatteryState | schema.BankState) -> None:
        """Publish ``bms/<id>/state`` (retained, QoS 1, sticky)."""
        t = topics.STATE
        topic = t.format(id=state.id)
        self.mqtt.publish(topic, schema.encode(state), retain=t.retained, qos=t.qos, sticky=True)

    def availability(self, device_id: str, online: bool) -> None:
        """Publish ``bms/<id>/availability`` = ``online``/``offline`` (retained, sticky)."""
        t = topics.AVAILABILITY
        value = topics.ONLINE if online else topics.OFFLINE
        self.mqtt.publish(t.format(id=device_id), value, retain=t.retained, qos=t.qos, sticky=True)

    def info(self, info: schema.BatteryInfo) -> None:
        """Publish ``bms/<id>/info`` (retained, sticky)."""
        t = topics.INFO
        topic = t.format(id=info.id)
        self.mqtt.publish(topic, schema.encode(info), retain=t.retained, qos=t.qos, sticky=True)

    def result(self, device_id: str, result: schema.SetResult) -> None:
        """Publish the answer to a command on ``bms/<id>/set/result`` (not retained)."""
        t = topics.SET_RESULT
        topic = t.format(id=device_id)
        self.mqtt.publish(topic, schema.encode(result), retain=t.retained, qos=t.qos)


class Availability:
    """``online`` after an answer; ``offline`` after ``offline_after`` consecutive failures.

    :meth:`answered` and :meth:`failed` return the new availability when it changed (the caller
    publishes it), else None. :meth:`lost` goes ``offline`` at once (port gone, shutdown).
    """

    __slots__ = ("device_id", "failures", "offline_after", "online")

    def __init__(self, device_id: str, offline_after: int) -> None:
        self.device_id = device_id
        self.offline_after = offline_after
        self.failures = 0
        self.online: bool | None = None

    def answered(self) -> bool | None:
        """The device answered: reset the failure count; returns True if it just came online."""
        self.failures = 0
        return self._set(True)

    def failed(self) -> bool | None:
        """One more failed poll; returns False if the device just went offline."""
        self.failures += 1
        return self._set(False) if self.failures >= self.offline_after else None

    def lost(self) -> bool | None:
        """The link is gone: offline now (returns False if that is a change)."""
        return self._set(False)

    def _set(self, online: bool) -> bool | None:
        if self.online is online:
            return None
        if self.online is not None or online:
            log.info("%s is %s", self.device_id, "online" if online else "offline")
        self.online = online
        return online
