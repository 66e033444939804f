"""The topic registry: every MQTT topic of bmslink with its payload type, retain flag and QoS.

This module is the single list of topics; the README's topic table is generated from
:data:`TOPICS` (``bmslink topics``) and a test keeps the two in agreement.
Source: ../shared/DESIGN.md "Topics".
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from bmslink.schema import ID_PATTERN

ONLINE: Final = "online"
OFFLINE: Final = "offline"

_ID_RE: Final = re.compile(ID_PATTERN)
_NAME_RE: Final = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


@dataclass(frozen=True, slots=True)
class Topic:
    """One topic pattern.

    ``pattern`` uses ``{name}`` placeholders (``{id}``, ``{service}``, ``{instance}``);
    ``payload`` names the schema type or the literal values; ``retained`` and ``qos`` are what
    every publisher of the topic uses; ``publishers`` is documentation.
    """

    pattern: str
    payload: str
    retained: bool
    qos: int
    publishers: str
    description: str

    def format(self, **fields: str) -> str:
        """Fill the placeholders; raises ``ValueError`` for an id or name that is not a slug."""
        for key, value in fields.items():
            regex = _ID_RE if key == "id" else _NAME_RE
            if not regex.match(value):
                raise ValueError(f"invalid {key} for topic {self.pattern!r}: {value!r}")
        return self.pattern.format(**fields)

    @property
    def subscription(self) -> str:
        """The pattern with every placeholder replaced by the ``+`` wildcard."""
        return re.sub(r"\{[a-z_]+\}", "+", self.pattern)

    def match(self, topic: str) -> dict[str, str] | None:
        """Return the placeholder values if ``topic`` matches this pattern, else ``None``."""
        regex = "^" + re.sub(r"\\\{([a-z_]+)\\\}", r"(?P<\1>[^/]+)", re.escape(self.pattern)) + "$"
        found = re.match(regex, topic)
        return found.groupdict() if found else None


STATE: Final = Topic(
    "bms/{id}/state",
    "BatteryState | BankState",
    True,
    1,
    "readers, bank-aggregator",
    "the latest reading of a battery (kind battery) or a bank (kind bank), JSON",
)
INFO: Final = Topic(
    "bms/{id}/info",
    "BatteryInfo",
    True,
    1,
    "readers, bank-aggregator",
    "identity: model, serial, firmware, cell count, design capacity, protocol, transport",
)
AVAILABILITY: Final = Topic(
    "bms/{id}/availability",
    "online | offline",
    True,
    1,
    "readers, bank-aggregator",
    "whether the device answers (not whether the process runs)",
)
SET: Final = Topic(
    "bms/{id}/set",
    "LimitsOverride",
    False,
    1,
    "Home Assistant, users",
    "command to a bank (leased limits) or a battery (MOSFET switches)",
)
SET_RESULT: Final = Topic(
    "bms/{id}/set/result",
    "SetResult",
    False,
    1,
    "bank-aggregator, readers",
    "accepted or rejected, with the reason",
)
SERVICE_STATUS: Final = Topic(
    "bmslink/{service}/{instance}/status",
    "online | offline",
    True,
    1,
    "every service",
    "the process is connected; offline is the retained MQTT last will",
)
HASS_DISCOVERY: Final = Topic(
    "{prefix}/device/bmslink_{id}/config",
    "Home Assistant device discovery",
    True,
    1,
    "hass-discovery",
    "device-based discovery configs (prefix default homeassistant)",
)

INVERTER_LINK: Final = Topic(
    "bmslink/can-inverter-emulator/{instance}/{output}/link",
    "up | down",
    True,
    1,
    "can-inverter-emulator",
    "the inverter's 0x305 heartbeat seen within 5 s on that output",
)
INVERTER_MODE: Final = Topic(
    "bmslink/can-inverter-emulator/{instance}/{output}/mode",
    "normal | failsafe",
    True,
    1,
    "can-inverter-emulator",
    "failsafe while the bank state is missing, stale or fail-safe",
)
HASS_INDEX: Final = Topic(
    "bmslink/hass-discovery/{instance}/index",
    "JSON: config topics per device",
    True,
    1,
    "hass-discovery",
    "what discovery published, so devices that left are cleared (no ghosts)",
)
HASS_SYNC: Final = Topic(
    "bmslink/hass-discovery/{instance}/sync",
    "nonce",
    False,
    1,
    "hass-discovery",
    "end-of-retained marker after a (re)connect",
)

TOPICS: Final = (
    STATE,
    INFO,
    AVAILABILITY,
    SET,
    SET_RESULT,
    SERVICE_STATUS,
    HASS_DISCOVERY,
    INVERTER_LINK,
    INVERTER_MODE,
    HASS_INDEX,
    HASS_SYNC,
)


def markdown_table() -> str:
    """The topic table as Markdown, as shown in the README."""
    lines = [
        "| topic | retained | QoS | payload | who | what |",
        "|---|---|---|---|---|---|",
    ]
    for t in TOPICS:
        pattern = t.pattern.replace("{", "<").replace("}", ">")
        lines.append(
            f"| `{pattern}` | {'yes' if t.retained else 'no'} | {t.qos} | {t.payload} "
            f"| {t.publishers} | {t.description} |"
        )
    return "\n".join(lines)
