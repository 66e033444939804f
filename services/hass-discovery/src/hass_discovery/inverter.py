"""The inverter outputs of the CAN inverter emulator, as hass-discovery sees them.

``can-inverter-emulator`` instances are the tables ``[inverters.<instance>]`` of the site file
(``bank`` = the bank id they present; ``outputs.<name>`` = one inverter each, on its own CAN
interface; ../shared/DESIGN.md "Inverter side"). Per output the emulator publishes, retained,
QoS 1, only when the value changes and again after every reconnect (sticky):

- :data:`LINK_TOPIC` ``bmslink/can-inverter-emulator/<instance>/<output>/link`` —
  ``up``/``down``: the inverter's 0x305 heartbeat arrived within ``heartbeat_timeout``;
- :data:`MODE_TOPIC` ``bmslink/can-inverter-emulator/<instance>/<output>/mode`` —
  ``normal``/``failsafe``: which frame set the output sends;

and per instance its service status ``bmslink/can-inverter-emulator/<instance>/status``.
Both patterns come from the topic registry (``bmslink.topics.INVERTER_LINK``/``INVERTER_MODE``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from bmslink import topics

LINK_TOPIC: Final = topics.INVERTER_LINK.pattern
MODE_TOPIC: Final = topics.INVERTER_MODE.pattern


@dataclass(frozen=True, slots=True)
class OutputEntity:
    """One binary sensor of an inverter output: ``topic`` (pattern above) and the two payloads
    that mean on and off (anything else is *unknown*)."""

    key: str
    name: str
    topic: str
    payload_on: str
    payload_off: str
    device_class: str
    icon: str | None = None


OUTPUT_ENTITIES: Final = (
    OutputEntity("link", "Inverter link", LINK_TOPIC, "up", "down", "connectivity"),
    OutputEntity(
        "failsafe",
        "Fail-safe",
        MODE_TOPIC,
        "failsafe",
        "normal",
        "problem",
        icon="mdi:shield-alert",
    ),
)
"""The entities of an inverter output. Neither gets ``expire_after``: both topics are
published on change only (retained), so silence means *unchanged*, not *stale*."""


@dataclass(frozen=True, slots=True)
class InverterOutput:
    """One output: emulator ``instance``, output ``name``, the ``bank`` it presents (or None)."""

    instance: str
    name: str
    bank: str | None = None
