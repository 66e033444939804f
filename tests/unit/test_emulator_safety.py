"""Inverter-side safety invariants of the can-inverter-emulator (issue 13), as properties over
arbitrary bank states and outputs. The frames are decoded here with ``struct`` from the byte
layout of pylontech-can.md §3.1/§3.5, not with the codec under test.

(e) Σ over a bank's outputs of sent CCL/DCL ≤ the bank limit; (f) wire values never above the
bank's after rounding (DVL never below); a direction below ``current_limit_min``, with an
unknown or false flag, or an unknown voltage limit goes out with its bit clear and the stop
value; (h) future-stamped bank states never count and never block later ones.
"""

from __future__ import annotations

import struct
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bmslink import config as cfgmod
from bmslink import schema
from can_inverter_emulator.config import (
    EmulatorConfig,
    OutputConfig,
    resolve_shares,
    site_shares,
)
from can_inverter_emulator.output import BankFeed, Output
from tests.bank_states import bank_state

WALL0 = 1_700_000_000.0
NOW0 = 100.0


def wire(frames: list[tuple[int, bytes]]) -> dict[str, Any]:
    """0x351 (u16 CVL 0.1 V, s16 CCL 0.1 A, s16 DCL 0.1 A, u16 DVL 0.1 V, little-endian) and the
    0x35C enable bits (byte 0 bit 7 charge, bit 6 discharge; absent in the SMA profile)."""
    by_id = dict(frames)
    cvl, ccl, dcl, dvl = struct.unpack("<HhhH", by_id[0x351])
    out: dict[str, Any] = {"cvl": cvl / 10, "ccl": ccl / 10, "dcl": dcl / 10, "dvl": dvl / 10}
    flags = by_id.get(0x35C)
    out["charge_bit"] = None if flags is None else bool(flags[0] & 0x80)
    out["discharge_bit"] = None if flags is None else bool(flags[0] & 0x40)
    return out


def send(state: schema.BankState, cfg: OutputConfig, share: float | None = None) -> dict[str, Any]:
    feed = BankFeed()
    assert feed.put(state, NOW0, WALL0) == "accepted"
    cycle = Output("o", cfg, feed, 10.0, share).cycle(NOW0, WALL0)
    assert cycle.mode == "normal"
    return wire(cycle.frames)


def bank(ts: float = WALL0, **changes: Any) -> schema.BankState:
    return bank_state(ts, **changes)


limit_amps = st.none() | st.floats(0, 500, allow_nan=False)
limit_volts = st.none() | st.just(0.0) | st.floats(40, 60, allow_nan=False)
flags = st.sampled_from([True, False, None])
banks = st.builds(
    bank,
    charge_enabled=flags,
    discharge_enabled=flags,
    charge_voltage_limit=limit_volts,
    discharge_voltage_limit=limit_volts,
    charge_current_limit=limit_amps,
    discharge_current_limit=limit_amps,
    voltage=st.none() | st.floats(40, 60, allow_nan=False),
)
outputs = st.builds(
    OutputConfig,
    channel=st.just("x"),
    profile=st.sampled_from(["pylontech", "pylon_v2", "sma"]),
    current_scale=st.none() | st.floats(0.01, 1.0),
    charge_current_max=st.none() | st.floats(0, 300, allow_nan=False),
    discharge_current_max=st.none() | st.floats(0, 300, allow_nan=False),
    current_limit_min=st.floats(0.1, 20),
    stop_strategy=st.sampled_from(["zero", "min_current", "cvl_pack_voltage"]),
)


def stop_value(cfg: OutputConfig) -> float:
    return 0.1 if cfg.stop_strategy == "min_current" else 0.0


@settings(max_examples=400, deadline=None)
@given(banks, outputs)
def test_wire_never_above_the_bank_and_stops_what_is_unknown_or_too_small(
    state: schema.BankState, cfg: OutputConfig
) -> None:
    got = send(state, cfg)
    share = cfg.current_scale or 1.0
    stop = stop_value(cfg)
    for name, amps, bit in (
        ("charge", got["ccl"], got["charge_bit"]),
        ("discharge", got["dcl"], got["discharge_bit"]),
    ):
        enabled = getattr(state, f"{name}_enabled")
        voltage_limit = getattr(state, f"{name}_voltage_limit")
        bank_limit = getattr(state, f"{name}_current_limit")
        cap = getattr(cfg, f"{name}_current_max")
        possible = (bank_limit or 0.0) * share
        if cap is not None:
            possible = min(possible, cap)
        allowed = bit if bit is not None else amps != stop  # SMA: no 0x35C
        if allowed:
            assert enabled is True and voltage_limit and bank_limit is not None, name
            assert cfg.current_limit_min <= amps <= possible + 1e-9, name  # (f)
            assert amps > possible - 0.1 - 1e-9, name  # floored, not lower
        else:
            assert amps == stop, name  # the stop strategy; 0 A never with the bit set
            clearly_go = enabled is True and voltage_limit and bank_limit is not None
            assert not (clearly_go and possible >= cfg.current_limit_min + 0.1), name
    # (f) voltages: CVL never above the bank's, DVL never below it
    if state.charge_voltage_limit:
        assert got["cvl"] <= state.charge_voltage_limit
    else:
        assert got["charge_bit"] is not True
    if state.discharge_voltage_limit:
        assert got["dvl"] >= state.discharge_voltage_limit
    else:
        assert got["discharge_bit"] is not True


@pytest.mark.parametrize(
    ("changes", "charge", "discharge"),
    [
        ({}, (True, 100.0), (True, 150.0)),
        ({"charge_voltage_limit": None}, (False, 0.0), (True, 150.0)),  # unknown CVL: stop
        ({"charge_voltage_limit": 0.0}, (False, 0.0), (True, 150.0)),  # CVL 0: stop
        ({"charge_enabled": None}, (False, 0.0), (True, 150.0)),  # unknown flag: stop
        ({"discharge_voltage_limit": None}, (True, 100.0), (False, 0.0)),
        ({"discharge_enabled": None}, (True, 100.0), (False, 0.0)),
        ({"charge_current_limit": None}, (False, 0.0), (True, 150.0)),
        ({"charge_current_limit": 0.0}, (False, 0.0), (True, 150.0)),  # 0 A: bit clear
        ({"charge_current_limit": 0.99}, (False, 0.0), (True, 150.0)),  # below 1 A minimum
        ({"charge_current_limit": 1.0}, (True, 1.0), (True, 150.0)),
        ({"discharge_current_limit": 1.09}, (True, 100.0), (True, 1.0)),  # floored 1.0: on
    ],
)
def test_direction_rules_worked_examples(
    changes: dict[str, Any], charge: tuple[bool, float], discharge: tuple[bool, float]
) -> None:
    got = send(bank(**changes), OutputConfig(channel="x"))
    assert (got["charge_bit"], got["ccl"]) == charge
    assert (got["discharge_bit"], got["dcl"]) == discharge


def test_minimum_applies_after_share_and_cap_and_uses_the_stop_strategy() -> None:
    cfg = OutputConfig(channel="x", current_limit_min=5.0, stop_strategy="cvl_pack_voltage")
    got = send(bank(charge_current_limit=9.0), cfg, share=0.5)  # 4.5 A < 5 A
    assert (got["charge_bit"], got["ccl"], got["cvl"]) == (False, 0.0, 52.0)  # CVL = pack V
    got = send(bank(charge_current_limit=10.0), cfg, share=0.5)
    assert (got["charge_bit"], got["ccl"], got["cvl"]) == (True, 5.0, 55.2)
    sma = OutputConfig(channel="x", profile="sma", stop_strategy="min_current")
    got = send(bank(charge_current_limit=0.5), sma)
    assert (got["charge_bit"], got["ccl"]) == (None, 0.1)  # SMA: no 0x35C, the stop value


def test_pack_voltage_strategy_never_raises_cvl() -> None:
    cfg = OutputConfig(channel="x", stop_strategy="cvl_pack_voltage")
    got = send(bank(charge_enabled=False, voltage=56.0), cfg)  # pack above the bank's CVL
    assert got["cvl"] == 55.2


# --- (e) outputs of one bank ----------------------------------------------------------------


def instance(bank_id: str, scales: list[float | None]) -> EmulatorConfig:
    outs = {f"o{i}": OutputConfig(channel="x", current_scale=s) for i, s in enumerate(scales)}
    return EmulatorConfig(bank=bank_id, outputs=outs)


scale_lists = st.lists(st.none() | st.sampled_from([0.1, 0.2, 0.25, 0.3, 0.5]), min_size=1)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(scale_lists, min_size=1, max_size=3),
    st.floats(0, 500, allow_nan=False),
    st.floats(0, 500, allow_nan=False),
)
def test_sum_over_every_output_of_a_bank_stays_within_the_bank_limit(
    instances: list[list[float | None]], ccl: float, dcl: float
) -> None:
    configs = {f"i{n}": instance("bank1", scales) for n, scales in enumerate(instances)}
    every = [s for scales in instances for s in scales]
    explicit = sum(Fraction(str(s)) for s in every if s is not None)
    if explicit > 1 or (explicit == 1 and None in every):
        with pytest.raises(cfgmod.ConfigError, match="current_scale"):
            resolve_shares(configs)
        return
    shares = resolve_shares(configs)
    state = bank(charge_current_limit=ccl, discharge_current_limit=dcl)
    sent = [send(state, configs[i].outputs[o], share) for (i, o), share in shares.items()]
    assert sum(s["ccl"] for s in sent) <= ccl + 1e-9
    assert sum(s["dcl"] for s in sent) <= dcl + 1e-9
    assert sum(shares.values()) <= 1 + 1e-12


def test_outputs_without_scale_split_what_is_left_equally() -> None:
    shares = resolve_shares(
        {
            "a": instance("bank1", [0.4, None]),
            "b": instance("bank1", [None]),
            "c": instance("x", [None]),
        }
    )
    assert shares == {("a", "o0"): 0.4, ("a", "o1"): 0.3, ("b", "o0"): 0.3, ("c", "o0"): 1.0}
    assert resolve_shares({"a": instance("bank1", [0.1] * 10)})[("a", "o9")] == 0.1


def test_shares_above_one_name_every_key() -> None:
    with pytest.raises(cfgmod.ConfigError) as err:
        resolve_shares({"a": instance("bank1", [0.6]), "b": instance("bank1", [0.5, None])})
    msg = str(err.value)
    assert "`inverters.a.outputs.o0.current_scale`" in msg
    assert "`inverters.b.outputs.o0.current_scale`" in msg
    assert "1.1" in msg
    with pytest.raises(cfgmod.ConfigError, match=r"inverters\.b\.outputs\.o1\.current_scale"):
        resolve_shares({"a": instance("bank1", [0.5]), "b": instance("bank1", [0.5, None])})


def test_one_scale_above_one_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "site.toml"
    path.write_text(
        '[inverters.e]\nbank = "b"\n[inverters.e.outputs.x]\nchannel = "c"\ncurrent_scale = 1.5\n'
    )
    with pytest.raises(cfgmod.ConfigError, match=r"inverters\.e\.outputs\.x\.current_scale"):
        cfgmod.load("inverters", EmulatorConfig, instance="e", path=path, env={})


def test_site_shares_reads_every_instance_of_the_site_file(tmp_path: Path) -> None:
    path = tmp_path / "site.toml"
    path.write_text(
        '[inverters.a]\nbank = "bank1"\n[inverters.a.outputs.x]\nchannel = "c"\n'
        '[inverters.b]\nbank = "bank1"\n[inverters.b.outputs.y]\nchannel = "d"\n'
        "current_scale = 0.75\n"
    )
    own = cfgmod.load("inverters", EmulatorConfig, instance="a", path=path, env={}).section
    assert site_shares("a", own, path) == {"x": 0.25}
    path.write_text(path.read_text() + '[inverters.c]\nbank = "bank1"\n[inverters.c.outputs.z]\n')
    with pytest.raises(cfgmod.ConfigError, match=r"inverters\.c.*channel|channel"):
        site_shares("a", own, path)


# --- (h) time -------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 3), st.floats(-20, 60)), min_size=1, max_size=12))
def test_future_states_never_count_and_never_block(steps: list[tuple[float, float]]) -> None:
    """Each step: the clock advances ``dt`` s, then a state stamped ``skew`` s off arrives; then
    a state stamped with the current time must always be taken."""
    feed = BankFeed(future_tolerance=5.0)
    now, wall = NOW0, WALL0
    for dt, skew in steps:
        now, wall = now + dt, wall + dt
        verdict = feed.put(bank(ts=wall + skew), now, wall)
        assert (verdict == "future") == (skew > 5.0)
        latest = feed.latest
        assert latest is not None or verdict != "accepted"
        if latest is not None:
            assert latest.state.ts <= wall + 5.0  # (h) never counts
    now, wall = now + 0.001, wall + 0.001
    assert feed.put(bank(ts=wall, soc=42.0), now, wall) == "accepted"  # (h) never blocks
    snap = feed.latest
    assert snap is not None and snap.state.soc == 42.0


def test_a_state_15_s_ahead_is_refused_and_the_real_ones_go_out() -> None:
    feed = BankFeed()
    out = Output("o", OutputConfig(channel="x"), feed, 10.0)
    assert feed.put(bank(ts=WALL0 + 15, charge_current_limit=300.0), NOW0, WALL0) == "future"
    assert out.cycle(NOW0, WALL0).mode == "failsafe"
    assert feed.put(bank(ts=WALL0 + 1), NOW0 + 1, WALL0 + 1) == "accepted"
    got = wire(out.cycle(NOW0 + 1, WALL0 + 1).frames)
    assert got["ccl"] == 100.0
    # 4 s ahead is within the tolerance but orders as if stamped at arrival
    assert feed.put(bank(ts=WALL0 + 6, soc=10.0), NOW0 + 2, WALL0 + 2) == "accepted"
    assert feed.put(bank(ts=WALL0 + 3, soc=20.0), NOW0 + 3, WALL0 + 3) == "accepted"
    assert feed.put(bank(ts=WALL0 + 1.5, soc=30.0), NOW0 + 3, WALL0 + 3) == "older"
