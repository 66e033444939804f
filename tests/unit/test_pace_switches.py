"""PACE / AM2 Modbus: register 11 bits 10/11 (charging / discharging MOSFET ON,
pace-modbus-am2.md §6.4) → ``charge_switch``/``discharge_switch``; PACE Modbus has no
"allowed" flag, so ``charge_enabled``/``discharge_enabled`` stay ``None``.

Frames from ../shared/vectors/pace_modbus.json: the live block of the PbmsTools screenshot
(register 11 = 0x0D00: charging, both MOSFETs on) and the captured Revov R100 reply of
registers 9..12 (all 0: both MOSFET bits clear), spliced into that block.
"""

from __future__ import annotations

from typing import Any

from am2_modbus_reader.poller import pack_state
from bmslink.protocols import modbus_rtu as rtu
from bmslink.protocols import pace_modbus as pace
from tests.vectors import load_vectors

VECTORS: list[dict[str, Any]] = load_vectors("pace_modbus")["vectors"]
SYNTHETIC = next(v for v in VECTORS if v["kind"] == "synthetic")
FLAGS = next(v for v in VECTORS if v["vector_id"] == "pace_modbus-58511889")


def _live_registers() -> list[int]:
    return list(rtu.parse_read_response(bytes.fromhex(SYNTHETIC["response"]), slave=1, count=37))


def test_both_mosfet_bits_set_are_closed_switches() -> None:
    live = pace.decode_live(_live_registers())
    assert live.status_flags == 0x0D00
    s = pack_state("am2-1", live, 13, None)
    assert (s.charge_switch, s.discharge_switch) == (True, True)
    assert (s.charge_enabled, s.discharge_enabled) == (None, None)
    assert s.raw_status["status_flags"] == 0x0D00 and s.current == 4.67


def test_real_reply_with_the_mosfet_bits_clear_gives_open_switches() -> None:
    flags = rtu.parse_read_response(bytes.fromhex(FLAGS["response"]), slave=1, count=4)
    regs = _live_registers()
    regs[9:13] = flags
    s = pack_state("am2-1", pace.decode_live(regs), 13, None)
    assert (s.charge_switch, s.discharge_switch) == (False, False)
    assert s.charge_enabled is None and s.alarms == []


def test_one_mosfet_off() -> None:
    regs = _live_registers()
    regs[11] = 1 << pace.STATUS_DISCHARGE_MOSFET  # charge MOSFET off, discharge on
    s = pack_state("am2-1", pace.decode_live(regs), 13, None)
    assert (s.charge_switch, s.discharge_switch) == (False, True)
