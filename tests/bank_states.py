"""Bank states for the inverter-side tests: a plain healthy two-member bank, changed per test."""

from __future__ import annotations

from typing import Any

from bmslink import schema


def bank_state(ts: float, **changes: Any) -> schema.BankState:
    """``bank1`` at Unix ``ts`` s, both members online, charge and discharge allowed: CVL 55.2 V,
    DVL 46.0 V, CCL 100 A, DCL 150 A, pack 52.0 V; ``changes`` override any field."""
    values: dict[str, Any] = {
        "id": "bank1",
        "ts": ts,
        "voltage": 52.0,
        "charge_enabled": True,
        "discharge_enabled": True,
        "charge_voltage_limit": 55.2,
        "discharge_voltage_limit": 46.0,
        "charge_current_limit": 100.0,
        "discharge_current_limit": 150.0,
        "members": ["a", "b"],
        "members_online": ["a", "b"],
        **changes,
    }
    return schema.BankState(**values)
