"""Availability rule and the alarm vocabulary."""

from __future__ import annotations

import pytest

from bmslink import alarms, schema
from bmslink.publisher import Availability


def test_offline_after_n_consecutive_failures_and_back() -> None:
    a = Availability("p1", offline_after=3)
    assert a.failed() is None  # unknown → still unknown after 1 failure
    assert a.answered() is True
    assert a.answered() is None  # no change, nothing to publish
    assert (a.failed(), a.failed()) == (None, None)
    assert a.failed() is False
    assert a.failed() is None
    assert a.answered() is True
    assert a.lost() is False


def test_alarm_codes_are_snake_case_and_fit_the_schema() -> None:
    for code in alarms.CODES:
        assert alarms.check(code) == code
        schema.validate(schema.BatteryState(id="x", ts=1.0, alarms=[code]))
    assert alarms.check("cell_overvoltage@rack1-2") == "cell_overvoltage@rack1-2"
    with pytest.raises(KeyError, match="unknown alarm code"):
        alarms.check("made_up_code")


def test_switch_command_rejects_unknown_fields() -> None:
    cmd = schema.decode(schema.SWITCH_DECODER, b'{"charge_enabled": false}')
    assert (cmd.charge_enabled, cmd.discharge_enabled) == (False, None)
    with pytest.raises(schema.MessageError, match="unknown field"):
        schema.decode(schema.SWITCH_DECODER, b'{"charge": false}')
