"""The banks of the shipped site files are physically possible.

Packs in one bank are wired in parallel on one bus bar and so share one voltage: a bank is only
possible when every member's voltage window (cell count × per-cell DVL..CVL of its chemistry)
coincides with every other's. This checks ``config/demo.toml`` and ``config/site.example.toml``
with that rule (written out here, independently of the aggregator's start-up check), checks the
demo's declared cell counts and chemistries against what the simulators really simulate, and
that compose runs one aggregator per bank.
"""

from __future__ import annotations

import itertools
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from battery_simulator.pace import parse_pack_spec
from battery_simulator.pylontech import parse_model_spec

ROOT = Path(__file__).resolve().parents[2]
SITES = {name: ROOT / "config" / name for name in ("demo.toml", "site.example.toml")}
COMPOSE: dict[str, Any] = yaml.safe_load((ROOT / "compose.yaml").read_text())

#: Per-cell (DVL, CVL) in V by chemistry: the aggregator's conservative defaults
#: (services/bank-aggregator config.CHEMISTRY_DEFAULTS).
CELL_WINDOW = {"lfp": (3.00, 3.50), "nmc": (3.30, 4.10), "lto": (2.00, 2.70)}


def _site(name: str) -> dict[str, Any]:
    with SITES[name].open("rb") as fh:
        return tomllib.load(fh)


def window(cell_count: int, chemistry: str) -> tuple[float, float]:
    """The pack voltage window (V) of ``cell_count`` cells of ``chemistry``."""
    dvl, cvl = CELL_WINDOW[chemistry]
    return cell_count * dvl, cell_count * cvl


def compatible(a: tuple[float, float], b: tuple[float, float]) -> bool:
    """Two windows may share a bus bar: their overlap is at least 0.8 of EACH window."""
    overlap = min(a[1], b[1]) - max(a[0], b[0])
    return overlap >= 0.8 * (a[1] - a[0]) and overlap >= 0.8 * (b[1] - b[0])


def incompatible_pairs(bank: dict[str, Any]) -> list[tuple[str, str]]:
    """Member pairs of ``bank`` (a ``[banks.<name>]`` table) whose windows do not coincide."""
    packs = bank.get("packs", {})
    default = bank.get("chemistry", "lfp")
    windows = {
        m: window(packs[m]["cell_count"], packs[m].get("chemistry", default))
        for m in bank["members"]
    }
    return [
        (a, b)
        for a, b in itertools.combinations(windows, 2)
        if not compatible(windows[a], windows[b])
    ]


def test_the_rule_rejects_what_the_old_demo_bank_mixed() -> None:
    mixed = {
        "members": ["us2000", "am2", "beaver"],
        "packs": {
            "us2000": {"cell_count": 15, "chemistry": "lfp"},
            "am2": {"cell_count": 13, "chemistry": "nmc"},
            "beaver": {"cell_count": 16, "chemistry": "lfp"},
        },
    }
    assert incompatible_pairs(mixed) == [("us2000", "am2"), ("us2000", "beaver"), ("am2", "beaver")]
    same = {"members": ["a", "b"], "packs": {"a": {"cell_count": 16}, "b": {"cell_count": 16}}}
    assert incompatible_pairs(same) == []


@pytest.mark.parametrize("name", sorted(SITES))
def test_every_bank_declares_its_members_and_is_physical(name: str) -> None:
    banks = _site(name)["banks"]
    assert banks
    for bank_name, bank in banks.items():
        assert bank["members"], f"{bank_name}: an explicit member list"
        packs = bank.get("packs", {})
        for member in bank["members"]:
            declared = packs.get(member, {})
            assert isinstance(declared.get("cell_count"), int), f"{bank_name}.packs.{member}"
            assert declared.get("chemistry") in CELL_WINDOW, f"{bank_name}.packs.{member}"
        assert set(packs) <= set(bank["members"]), f"{bank_name}: packs of non-members"
        assert incompatible_pairs(bank) == [], bank_name


def _command(service: str) -> list[str]:
    return [str(a) for a in COMPOSE["services"][service]["command"]]


def test_demo_declarations_match_the_simulated_packs() -> None:
    """model-<ADR> and am2-<ADR> as the simulators of compose's demo profile build them."""
    simulated: dict[str, tuple[int, str]] = {}
    model = _command("model-simulator")
    for pack in parse_model_spec(model[model.index("--model") + 1]):
        simulated[f"model-{pack.address}"] = (pack.cells, "lfp")  # Pylontech and Beaver: LFP
    pace = _command("pace-simulator")
    for spec in parse_pack_spec(pace[pace.index("--packs") + 1]):
        simulated[f"am2-{spec.address}"] = (spec.model.cells, spec.model.chemistry)
    declared = {
        member: (p["cell_count"], p["chemistry"])
        for bank in _site("demo.toml")["banks"].values()
        for member, p in bank["packs"].items()
    }
    checked = {m: declared[m] for m in declared if m in simulated}
    assert checked == {m: simulated[m] for m in checked}
    assert {"model-3", "am2-1", "am2-2"} <= set(checked)  # the degrading pack and the AM2 bank


def _aggregator_instances(profile: str | None) -> list[str]:
    out = []
    for svc in COMPOSE["services"].values():
        command = [str(a) for a in svc.get("command") or []]
        profiles = svc.get("profiles") or []
        if command[:1] == ["bmslink-bank-aggregator"] and (not profiles or profile in profiles):
            out.append(command[command.index("--instance") + 1])
    return out


def test_one_aggregator_per_bank_and_the_demo_inverter_fed_by_bank1() -> None:
    demo = _site("demo.toml")
    assert sorted(_aggregator_instances("demo")) == sorted(demo["banks"])
    assert sorted(_aggregator_instances(None)) == sorted(_site("site.example.toml")["banks"])
    assert demo["inverters"]["demo"]["bank"] == "bank1"
    assert "model-3" in demo["banks"]["bank1"]["members"]  # README: the pack that goes away
