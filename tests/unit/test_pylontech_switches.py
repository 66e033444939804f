"""Pylontech RS485: 0x44 Status2 MOSFET bits → ``charge_switch``/``discharge_switch``
(pylontech-rs485.md §8.5), apart from the 0x92 request flags → ``charge_enabled``/
``discharge_enabled`` (§8.7).

Real US2KBPL frames (Tomcat42 output.txt, ../shared/vectors/pylontech_rs485.json): 0x42, 0x44
with Status2 0x0E (battery power, DFET on, CFET on) and 0x92 with status 0xC0. No public capture
shows a MOSFET off, so the "off" cases clear one bit of that real 0x44 and re-encode it.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from bmslink.protocols import pylontech_rs485 as pylon
from pylontech_rs485_reader.poller import module_state
from tests.vectors import load_vectors

VECTORS: list[dict[str, Any]] = load_vectors("pylontech_rs485")["vectors"]


def _info(vector_id: str) -> bytes:
    (v,) = [v for v in VECTORS if v["vector_id"] == vector_id]
    return pylon.parse_frame(v["response"].encode()).info


ANALOG = pylon.decode_analog(_info("pylontech_rs485-26736175")).modules[0]
ALARM = pylon.decode_alarm(_info("pylontech_rs485-83437719")).modules[0]
MANAGEMENT = pylon.decode_management_info(_info("pylontech_rs485-80408693"))


def _with_status2(status2: int) -> pylon.ModuleAlarm:
    """The real 0x44 module with another Status2, through the codec's encoder and decoder."""
    changed = dataclasses.replace(ALARM, status2=status2)
    return pylon.decode_alarm(pylon.encode_alarm(0, 2, [changed])).modules[0]


def test_real_frames_both_mosfets_on_and_both_directions_requested() -> None:
    assert ALARM.status2 == 0x0E and MANAGEMENT.status == 0xC0
    s = module_state("p", ANALOG, 0, alarm=ALARM, management=MANAGEMENT)
    assert (s.charge_switch, s.discharge_switch) == (True, True)
    assert (s.charge_enabled, s.discharge_enabled) == (True, True)
    assert s.raw_status["status2"] == 0x0E


def test_charge_mosfet_off_is_an_open_switch_not_a_refusal() -> None:
    alarm = _with_status2(0x0C)  # bit 1 (charge MOSFET) clear
    s = module_state("p", ANALOG, 0, alarm=alarm, management=MANAGEMENT)
    assert (s.charge_switch, s.discharge_switch) == (False, True)
    assert (s.charge_enabled, s.discharge_enabled) == (True, True)  # 0x92 still requests


def test_discharge_mosfet_off_without_0x92_leaves_the_allow_flags_unknown() -> None:
    alarm = _with_status2(0x0A)  # bit 2 (discharge MOSFET) clear
    s = module_state("p", ANALOG, 0, alarm=alarm)
    assert (s.charge_switch, s.discharge_switch) == (True, False)
    assert (s.charge_enabled, s.discharge_enabled) == (None, None)


def test_without_0x44_the_switches_are_unknown() -> None:
    s = module_state("p", ANALOG, 0, management=MANAGEMENT)
    assert (s.charge_switch, s.discharge_switch) == (None, None)
    assert s.charge_enabled is True and len(s.cell_voltages) == 15
