"""Stable alarm and warning codes: the vocabulary of ``alarms``/``warnings`` in every state.

Each BMS protocol maps its own bits onto these codes (the raw bits stay in ``raw_status``). Codes
are snake_case and never renamed (consumers and Home Assistant automations key on them); add new
codes here, with a description, when a protocol reports something none of these names covers.
Bank states append ``@<member id>`` to a member's code (e.g. ``cell_overvoltage@rack1-2``).
"""

from __future__ import annotations

from typing import Final

CODES: Final[dict[str, str]] = {
    # voltage
    "cell_overvoltage": "a cell is above its upper voltage limit",
    "cell_undervoltage": "a cell is below its lower voltage limit",
    "pack_overvoltage": "the pack voltage is above its upper limit",
    "pack_undervoltage": "the pack voltage is below its lower limit",
    "cell_imbalance": "the cell voltage spread is too large",
    # current
    "charge_overcurrent": "charge current above its limit",
    "discharge_overcurrent": "discharge current above its limit",
    "short_circuit": "short circuit protection",
    "charger_overvoltage": "the charger's voltage is too high",
    "charger_reversed": "the charger is connected with reversed polarity",
    # temperature
    "charge_overtemperature": "cell temperature too high to charge",
    "charge_undertemperature": "cell temperature too low to charge",
    "discharge_overtemperature": "cell temperature too high to discharge",
    "discharge_undertemperature": "cell temperature too low to discharge",
    "cell_overtemperature": "cell temperature too high",
    "cell_undertemperature": "cell temperature too low",
    "mosfet_overtemperature": "MOSFET temperature too high",
    "ambient_overtemperature": "ambient temperature too high",
    "ambient_undertemperature": "ambient temperature too low",
    "bms_overtemperature": "BMS board temperature too high",
    # state
    "soc_low": "state of charge low",
    "soc_high": "state of charge high",
    "temperature_imbalance": "the temperature spread between sensors is too large",
    "external_communication_error": "external (vehicle/charger) communication failed",
    "capacity_low": "remaining capacity low",
    "battery_full": "the BMS stopped charging: battery full",
    # hardware / internal
    "charge_mosfet_fault": "charge MOSFET failure",
    "discharge_mosfet_fault": "discharge MOSFET failure",
    "temperature_sensor_fault": "temperature sensor failure",
    "voltage_sensor_fault": "cell voltage sampling failure",
    "current_sensor_fault": "current sensor failure",
    "cell_fault": "a cell failed",
    "bms_fault": "internal BMS failure",
    "precharge_fault": "pre-charge failure",
    "internal_communication_error": "communication inside the stack/BMS failed",
    # bank / system
    "communication_lost": "no fresh data from a device",
    "member_missing": "a configured bank member is not counted",
    "member_incompatible": "a bank member cannot share the bus bar with the others (voltage)",
    "failsafe": "no member counted: fail-safe limits",
    "other": "an alarm the protocol reports without a specific meaning",
}


_BOTH: Final = frozenset(
    {
        "short_circuit",
        "cell_overtemperature",
        "mosfet_overtemperature",
        "bms_overtemperature",
        "cell_fault",
        "bms_fault",
        "voltage_sensor_fault",
        "temperature_sensor_fault",
        "current_sensor_fault",
    }
)

BLOCKS_CHARGE: Final[frozenset[str]] = _BOTH | {
    "cell_overvoltage",
    "pack_overvoltage",
    "charger_overvoltage",
    "charge_overcurrent",
    "charge_overtemperature",
    "charge_undertemperature",
    "cell_undertemperature",
    "charge_mosfet_fault",
    "battery_full",
}
"""Codes that, as a member's alarm, stop charging through it (its charge limit 0) and, as a
warning, derate its charge limit: over-voltage, charge over-current and temperatures out of the
charge window, and faults that leave the pack unprotected (a sensor that cannot be read cannot
protect). Undertemperature blocks charge only (lithium plating below 0 °C; discharge is allowed
colder). Rule in docs/bank-rules.md "Alarms limit"."""

BLOCKS_DISCHARGE: Final[frozenset[str]] = _BOTH | {
    "cell_undervoltage",
    "pack_undervoltage",
    "discharge_overcurrent",
    "discharge_overtemperature",
    "discharge_undertemperature",
    "discharge_mosfet_fault",
    "soc_low",
}
"""Codes that stop (alarm) or derate (warning) a member's discharge: under-voltage, discharge
over-current and temperatures out of the discharge window, and the faults of
:data:`BLOCKS_CHARGE` that leave the pack unprotected."""


def check(code: str) -> str:
    """Return ``code`` if it is known (a bank code may carry ``@member``); raise ``KeyError``."""
    base = code.split("@", 1)[0]
    if base not in CODES:
        raise KeyError(f"unknown alarm code {code!r}; add it to bmslink.alarms.CODES")
    return code
