"""The banks of the shipped site files are physically possible.

Packs in one bank are wired in parallel on one bus bar and so share one voltage: a bank is only
possible when every member's voltage window (cell count × per-cell DVL..CVL of its chemistry)
coincides with every other's. This checks ``config/demo.toml`` and ``config/site.example.toml``
with the aggregator's own start-up check (docs/bank-rules.md §10), checks the
demo's declared cell counts and chemistries against what the simulators really simulate, and
that compose runs one aggregator per bank.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import msgspec
import pytest
import yaml

from bank_aggregator.config import CHEMISTRY_DEFAULTS, BankConfig
from battery_simulator.pace import parse_pack_spec
from battery_simulator.pylontech import parse_model_spec

ROOT = Path(__file__).resolve().parents[2]
SITES = {name: ROOT / "config" / name for name in ("demo.toml", "site.example.toml")}
COMPOSE: dict[str, Any] = yaml.safe_load((ROOT / "compose.yaml").read_text())


def _site(name: str) -> dict[str, Any]:
    with SITES[name].open("rb") as fh:
        return tomllib.load(fh)


def check_bank(bank: dict[str, Any]) -> BankConfig:
    """``bank`` (a ``[banks.<name>]`` table) as the aggregator reads it; raises
    ``msgspec.ValidationError`` naming the packs whose voltage windows do not coincide."""
    return msgspec.convert(bank, BankConfig)


def test_the_rule_rejects_what_the_old_demo_bank_mixed() -> None:
    mixed = {
        "members": ["us2000", "am2", "beaver"],
        "packs": {
            "us2000": {"cell_count": 15, "chemistry": "lfp"},
            "am2": {"cell_count": 13, "chemistry": "nmc"},
            "beaver": {"cell_count": 16, "chemistry": "lfp"},
        },
    }
    with pytest.raises(msgspec.ValidationError, match="cannot be in parallel"):
        check_bank(mixed)
    check_bank({"members": ["a", "b"], "packs": {"a": {"cell_count": 16}, "b": {"cell_count": 16}}})


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
            assert declared.get("chemistry") in CHEMISTRY_DEFAULTS, f"{bank_name}.packs.{member}"
        assert set(packs) <= set(bank["members"]), f"{bank_name}: packs of non-members"
        check_bank(bank)


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
