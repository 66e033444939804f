"""Differential test: our A5 codec against the seed, python-daly-bms (PyPI ``dalybms`` 0.5.0).

Both decode the same 8-byte payloads (every A5 vector plus random payloads). Every difference
must be one of the seed's documented bugs (../shared/protocols/daly.md §10) or bmslink's documented
sign decision (§9); each such difference is listed in :data:`EXPECTED` and must actually occur.

Differences found (and why):

- ``current_sign``: dalybms returns (raw − 30000)/10 (its comment: "negative=charging"); bmslink
  publishes + = charging with raw > 30000 = discharge (doc §9, decision #6).
- ``soc_signed``: dalybms unpacks 0x90 as ``>hhhh``: raw current/voltage/SOC above 32767 wrap.
- ``cell_range_signed``: 0x91 ``>h b h b``: cell numbers above 127 / mV above 32767 wrap.
- ``temperature_signed``: 0x92 and 0x96 ``b``: temperatures above 87 °C wrap negative.
- ``capacity_signed``: 0x93 ``>b ? ? B l``: state byte and capacity above 2^31 mAh wrap.
- ``status_signed``: 0x94 ``>b b ? ? b h x``: counts above 127 / cycles above 32767 wrap.
- ``error_labels``: dalybms's ``error_codes.py`` mislabels 0x98 byte 0 bits 0-3 (translation).
- ``errors_crash`` (not in the reference's list): ``get_errors`` raises IndexError/KeyError when
  byte 7 (the fault code) is non-zero or a reserved bit of byte 3 is set; bmslink reports the
  fault code (``bms_fault``) and keeps reserved bits raw.
- ``status_crash`` (not in the reference's list): ``get_status`` raises ValueError when the DIO
  byte is ≥ 0x80 (signed ``b`` → ``bin(-n)`` = ``"-0b…"``); bmslink keeps the DIO bits raw.
- ``impossible_counts_refused``: bmslink refuses a 0x94 with more than 48 cells or 21 sensors
  (the A5 maxima, doc §4.4); dalybms accepts them.
"""

from __future__ import annotations

import collections
import random
from typing import Any

import pytest
from dalybms import DalyBMS
from dalybms.error_codes import ERROR_CODES

from bmslink.protocols import daly_a5 as a5
from tests.vectors import load_vectors

EXPECTED = {
    "current_sign",
    "soc_signed",
    "cell_range_signed",
    "temperature_signed",
    "capacity_signed",
    "status_signed",
    "error_labels",
    "errors_crash",
    "impossible_counts_refused",
    "status_crash",
}


def _seed() -> DalyBMS:
    return DalyBMS(address=8)


def _payloads() -> dict[int, list[bytes]]:
    out: dict[int, list[bytes]] = collections.defaultdict(list)
    for v in load_vectors("daly")["vectors"]:
        if v["protocol"] == "daly_a5" and v["response"]:
            try:
                frame = a5.parse_frame(bytes.fromhex(v["response"]))
            except a5.DalyA5Error:
                continue
            out[frame.command].append(frame.data)
    rng = random.Random(5)
    for command in range(0x90, 0x99):
        for _ in range(400):
            out[command].append(bytes(rng.randrange(256) for _ in range(8)))
    return out


def _compare(command: int, data: bytes, bms: DalyBMS) -> set[str]:
    """The names of the differences between the two decodes of one payload."""
    diffs: set[str] = set()
    if command == 0x90:
        ours = a5.decode_soc(data)
        theirs = bms.get_soc(response_data=data)
        if (
            theirs["current"] != pytest.approx(-ours.current)
            or theirs["total_voltage"] != ours.total_voltage
            or theirs["soc_percent"] != pytest.approx(ours.soc)
        ):
            diffs.add("soc_signed")
        elif ours.current != 0:
            diffs.add("current_sign")
        assert ours.total_voltage >= 0 and ours.soc >= 0
    elif command == 0x91:
        ours_c = a5.decode_cell_extremes(data)
        theirs = bms.get_cell_voltage_range(response_data=data)
        if (
            theirs["highest_voltage"],
            theirs["highest_cell"],
            theirs["lowest_voltage"],
            theirs["lowest_cell"],
        ) != (ours_c.max_voltage, ours_c.max_cell, ours_c.min_voltage, ours_c.min_cell):
            diffs.add("cell_range_signed")
    elif command == 0x92:
        ours_t = a5.decode_temperature_extremes(data)
        theirs = bms.get_temperature_range(response_data=data)
        if (theirs["highest_temperature"], theirs["lowest_temperature"]) != (
            ours_t.max_temperature,
            ours_t.min_temperature,
        ) or (theirs["highest_sensor"], theirs["lowest_sensor"]) != (
            ours_t.max_sensor,
            ours_t.min_sensor,
        ):
            diffs.add("temperature_signed")
    elif command == 0x93:
        ours_m = a5.decode_mosfet(data)
        theirs = bms.get_mosfet_status(response_data=data)
        modes = {0: "stationary", 1: "charging"}
        same = (
            theirs["mode"] == modes.get(ours_m.state, "discharging")
            and theirs["charging_mosfet"] == ours_m.charge_mosfet
            and theirs["discharging_mosfet"] == ours_m.discharge_mosfet
            and theirs["capacity_ah"] == pytest.approx(ours_m.remaining_capacity)
        )
        if not same:
            diffs.add("capacity_signed")
    elif command == 0x94:
        try:
            theirs = bms.get_status(response_data=data)
        except ValueError:
            diffs.add("status_crash")
            assert data[4] >= 0x80
            return diffs
        try:
            ours_s = a5.decode_status(data)
        except a5.PayloadError:
            diffs.add("impossible_counts_refused")
            if data[0] > 127 or data[1] > 127 or data[5] > 127:
                diffs.add("status_signed")
            return diffs
        if (theirs["cells"], theirs["temperature_sensors"], theirs["cycles"]) != (
            ours_s.cells,
            ours_s.sensors,
            ours_s.cycles,
        ):
            diffs.add("status_signed")
    elif command == 0x96:
        data = bytes((1,)) + data[1:]  # frame 1 (the seed skips out-of-order frames)
        _number, temps = a5.decode_temperature_frame(data)
        bms.status = {"temperature_sensors": 7}
        theirs = bms.get_temperatures(response_data=[data])
        if list(theirs.values()) != list(temps):
            diffs.add("temperature_signed")
    elif command == 0x98:
        ours_a = a5.decode_alarms(data)
        try:
            theirs = bms.get_errors(response_data=data)
        except (IndexError, KeyError):
            diffs.add("errors_crash")
            assert data[7] or data[3] >> 4
            return diffs
        ours_bits = [(a.byte, a.bit) for a in ours_a.active]
        # same bits set in both (bytes 0-6; reserved bits of byte 6 are labelled RESERVED)
        assert len(theirs) == len(ours_bits) + sum(data[6] >> b & 1 for b in range(4, 8))
        if any(b == 0 and bit < 4 for b, bit in ours_bits):
            diffs.add("error_labels")
    return diffs


def test_differences_are_only_the_documented_ones() -> None:
    bms = _seed()
    seen: collections.Counter[str] = collections.Counter()
    compared = 0
    for command, payloads in _payloads().items():
        for data in payloads:
            try:
                diffs = _compare(command, data, bms)
            except (TypeError, KeyError, IndexError, ValueError) as exc:
                raise AssertionError(f"0x{command:02X} {data.hex()}: {exc!r}") from exc
            compared += 1
            seen.update(diffs)
            assert diffs <= EXPECTED, (command, data.hex(), diffs)
    assert compared > 3000
    assert set(seen) == EXPECTED, f"documented differences not observed: {EXPECTED - set(seen)}"


def test_the_vector_payloads_agree_except_for_the_current_sign() -> None:
    """On real captures (no value beyond the signed ranges) only the sign decision differs."""
    bms = _seed()
    for v in load_vectors("daly")["vectors"]:
        if v["protocol"] != "daly_a5" or not v["response"]:
            continue
        try:
            frame = a5.parse_frame(bytes.fromhex(v["response"]))
        except a5.DalyA5Error:
            continue
        if frame.command in (0x90, 0x91, 0x92, 0x93, 0x94, 0x98):
            assert _compare(frame.command, frame.data, bms) <= {"current_sign", "error_labels"}


def test_error_label_bug_is_visible_in_the_seed() -> None:
    """The seed labels byte 0 bit 1 (cell over-voltage level 2) like bit 0 (doc §4.8)."""
    bms = _seed()
    theirs: list[Any] = bms.get_errors(response_data=bytes((0x02, 0, 0, 0, 0, 0, 0, 0)))
    ours = a5.decode_alarms(bytes((0x02, 0, 0, 0, 0, 0, 0, 0)))
    assert ours.alarms == ["cell_overvoltage"] and ours.active[0].text == "cell voltage high L2"
    assert "level 2" not in theirs[0].lower() or "one stage" in ERROR_CODES[0][0].lower()
