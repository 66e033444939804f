"""hass-discovery's decisions (pure): what is announced, what is removed, and when."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bmslink import config as cfg
from bmslink import schema
from bmslink.schema import BatteryInfo
from hass_discovery.config import HassConfig
from hass_discovery.entities import Options
from hass_discovery.registry import MIGRATE, Publish, Registry
from hass_discovery.site import Site

INDEX = "bmslink/hass-discovery/hass/index"
PREFIX = "homeassistant"

SITE: dict[str, Any] = {
    "pylontech_rs485": {"rack": {"port": "socket://x:1"}, "shelf": {"port": "socket://y:1"}},
    "banks": {"house": {"members": ["rack-2", "shelf-2"], "max_discharge_current": 150}},
    "inverters": {"inv": {"bank": "house", "outputs": {"deye": {"interface": "can0"}}}},
}


def info(device_id: str, instance: str = "rack", **kw: Any) -> bytes:
    fields: dict[str, Any] = {
        "id": device_id,
        "service": "pylontech-rs485-reader",
        "instance": instance,
        "cell_count": 15,
        **kw,
    }
    return schema.encode(BatteryInfo(**fields))


BANK_INFO = schema.encode(
    BatteryInfo(
        id="house",
        kind="bank",
        service="bank-aggregator",
        instance="house",
        members=["rack-2", "shelf-2"],
    )
)


def registry(site: dict[str, Any] | None = SITE, **hass: Any) -> Registry:
    config = HassConfig(**hass)
    return Registry(
        Options(prefix=config.discovery_prefix, version="0.1.0"),
        Site(site, config.site_check, config),
        INDEX,
        config.discovery_mode,
        frozenset(config.exclude),
    )


def topic(device: str) -> str:
    return f"{PREFIX}/device/bmslink_{device}/config"


def configs(actions: list[Publish]) -> dict[str, bytes]:
    """The last payload per topic (what the broker retains)."""
    return {a.topic: a.payload for a in actions}


def synced(
    reg: Registry, *messages: tuple[str, bytes], index: bytes | None = None
) -> list[Publish]:
    reg.begin_sync()
    if index is not None:
        reg.on_index(index)
    for device, payload in messages:
        assert reg.on_info(device, payload) == []
    return reg.end_sync()


def test_first_sync_announces_banks_first_then_batteries_and_outputs() -> None:
    reg = registry()
    actions = synced(reg, ("rack-2", info("rack-2")), ("house", BANK_INFO))
    topics = [a.topic for a in actions]
    assert topics == [
        topic("house"),
        topic("rack-2"),
        f"{PREFIX}/device/bmslink-inverter_inv_deye/config",
        INDEX,
    ]
    rack = json.loads(actions[1].payload)
    assert rack["device"]["via_device"] == "bmslink_house"
    bank = json.loads(actions[0].payload)
    assert bank["components"]["discharge_current_limit_override"]["max"] == 150
    index = json.loads(actions[-1].payload)
    assert set(index["devices"]) == {"bmslink_house", "bmslink_rack-2", "bmslink-inverter_inv_deye"}
    assert index["devices"]["bmslink_rack-2"]["components"]["cell_15"] == "sensor"


def test_info_changes_publish_only_what_changed() -> None:
    reg = registry()
    synced(reg, ("rack-2", info("rack-2")))
    assert reg.on_info("rack-2", info("rack-2")) == []  # re-published by the reader: no-op
    actions = reg.on_info("rack-2", info("rack-2", firmware="V2"))
    assert [a.topic for a in actions] == [topic("rack-2")]
    assert json.loads(actions[0].payload)["device"]["sw_version"] == "V2"
    new = reg.on_info("rack-3", info("rack-3"))
    assert [a.topic for a in new] == [topic("rack-3"), INDEX]


def test_cleared_info_removes_the_device() -> None:
    reg = registry()
    synced(reg, ("rack-2", info("rack-2")), ("rack-3", info("rack-3")))
    actions = reg.on_info("rack-3", b"")
    assert configs(actions)[topic("rack-3")] == b""
    assert topic("rack-2") not in configs(actions)
    assert "bmslink_rack-3" not in json.loads(configs(actions)[INDEX])["devices"]


def test_bad_info_is_counted_and_never_removes() -> None:
    reg = registry()
    synced(reg, ("rack-2", info("rack-2")))
    assert reg.on_info("rack-2", b"{not json") == []
    assert reg.on_info("rack-2", info("rack-9")) == []  # topic and payload disagree
    assert reg.on_info("rack-2", b'{"id":"rack-2","cell_count":5000}') == []
    assert reg.stats["info_invalid"] == 2 and reg.stats["info_id_mismatch"] == 1
    assert "rack-2" in reg.infos


def test_restart_with_index_clears_devices_that_left_the_site() -> None:
    first = registry()
    actions = synced(first, ("rack-2", info("rack-2")), ("shelf-2", info("shelf-2", "shelf")))
    index = configs(actions)[INDEX]
    site = {k: v for k, v in SITE.items() if k != "inverters"}
    site["pylontech_rs485"] = {"rack": {"port": "socket://x:1"}}  # [..shelf] removed
    second = registry(site)
    out = configs(
        synced(
            second,
            ("rack-2", info("rack-2")),
            ("shelf-2", info("shelf-2", "shelf")),  # still retained by the old reader
            index=index,
        )
    )
    assert out[topic("shelf-2")] == b""
    assert out[f"{PREFIX}/device/bmslink-inverter_inv_deye/config"] == b""
    assert out[topic("rack-2")] != b""
    assert set(json.loads(out[INDEX])["devices"]) == {"bmslink_rack-2"}


def test_info_gone_while_away_is_removed_only_if_the_broker_kept_the_index() -> None:
    reg = registry()
    actions = synced(reg, ("rack-2", info("rack-2")), ("rack-3", info("rack-3")))
    index = configs(actions)[INDEX]
    # Reconnect, broker with persistence: index back, rack-3's info was cleared meanwhile.
    out = configs(synced(reg, ("rack-2", info("rack-2")), index=index))
    assert out[topic("rack-3")] == b""
    assert out[topic("rack-2")] != b""
    # Reconnect, broker restarted without persistence: nothing retained at all.
    out = configs(synced(reg))
    assert out[topic("rack-2")] != b""  # re-published from memory
    assert b"" not in out.values()


def test_fresh_start_on_an_empty_broker_removes_nothing() -> None:
    reg = registry()
    assert [a.topic for a in synced(reg)] == [
        f"{PREFIX}/device/bmslink-inverter_inv_deye/config",
        INDEX,
    ]


def test_conservative_sync_keeps_everything() -> None:
    reg = registry()
    index = configs(synced(reg, ("rack-2", info("rack-2"))))[INDEX]
    reg.begin_sync()
    reg.on_index(index)
    out = configs(reg.end_sync(conservative=True))
    assert out[topic("rack-2")] != b""


def test_birth_republishes_everything_but_not_during_a_sync() -> None:
    reg = registry()
    first = synced(reg, ("rack-2", info("rack-2")))
    again = reg.republish()
    assert {a.topic for a in again} == {a.topic for a in first} - {INDEX}
    reg.begin_sync()
    assert reg.republish() == []


def test_exclude_and_unknown_services() -> None:
    reg = registry(exclude=["rack-3"])
    out = configs(
        synced(
            reg,
            ("rack-3", info("rack-3")),
            ("x-1", schema.encode(BatteryInfo(id="x-1", service="someone-else", instance="a"))),
            ("y-1", schema.encode(BatteryInfo(id="y-1"))),
        )
    )
    assert topic("rack-3") not in out
    assert topic("x-1") in out and topic("y-1") in out  # no evidence they left


def test_site_rules() -> None:
    config = HassConfig()
    site = Site(SITE, True, config)
    assert site.lists(BatteryInfo(id="rack-9", service="pylontech-rs485-reader", instance="rack"))
    assert not site.lists(BatteryInfo(id="a", service="pylontech-rs485-reader", instance="gone"))
    assert not site.lists(BatteryInfo(id="a", service="am2-modbus-reader", instance="x"))
    assert site.lists(BatteryInfo(id="house", kind="bank", service="bank-aggregator"))
    bank2 = {"banks": {"main": {"id": "b2"}}}
    assert Site(bank2, True, config).lists(
        BatteryInfo(id="b2", kind="bank", service="bank-aggregator", instance="other")
    )
    assert not Site(bank2, True, config).lists(
        BatteryInfo(id="b3", kind="bank", service="bank-aggregator", instance="other")
    )
    assert Site(None, True, config).lists(
        BatteryInfo(id="a", service="am2-modbus-reader", instance="x")
    )
    assert Site(SITE, False, config).lists(
        BatteryInfo(id="a", service="am2-modbus-reader", instance="x")
    )
    assert [(o.instance, o.name, o.bank) for o in site.inverters()] == [("inv", "deye", "house")]


def test_shrinking_cell_count_removes_components_first() -> None:
    reg = registry()
    synced(reg, ("rack-2", info("rack-2")))
    actions = reg.on_info("rack-2", info("rack-2", cell_count=14))
    assert [a.topic for a in actions] == [topic("rack-2"), topic("rack-2"), INDEX]
    stub, final = (json.loads(a.payload) for a in actions[:2])
    assert stub["components"]["cell_15"] == {"platform": "sensor"}
    assert "cell_15" not in final["components"] and "cell_14" in final["components"]


def test_entity_mode_and_migration_from_device_mode() -> None:
    device = registry()
    index = configs(synced(device, ("rack-2", info("rack-2"))))[INDEX]
    entity = registry(discovery_mode="entity")
    actions = synced(entity, ("rack-2", info("rack-2")), index=index)
    old = topic("rack-2")
    assert actions[0] == Publish(old, MIGRATE)
    soc = f"{PREFIX}/sensor/bmslink_rack-2/soc/config"
    topics = [a.topic for a in actions]
    assert topics.index(old) < topics.index(soc) < len(topics) - 1
    out = configs(actions)
    assert out[old] == b""
    assert json.loads(out[soc])["unique_id"] == "bmslink_rack-2_soc"
    # and the way back: the per-entity topics are migrated and cleared
    back = registry()
    actions = synced(back, ("rack-2", info("rack-2")), index=out[INDEX])
    assert Publish(soc, MIGRATE) in actions
    assert configs(actions)[soc] == b""
    assert configs(actions)[old] != b""


def test_prefix_change_clears_the_old_prefix() -> None:
    first = registry()
    index = configs(synced(first, ("rack-2", info("rack-2"))))[INDEX]
    second = registry(discovery_prefix="ha")
    out = configs(synced(second, ("rack-2", info("rack-2")), index=index))
    assert out[topic("rack-2")] == b""
    assert out["ha/device/bmslink_rack-2/config"] != b""


def test_bad_index_is_ignored() -> None:
    reg = registry()
    reg.begin_sync()
    reg.on_index(b"[1,2]")
    reg.on_index(b'{"devices": {"x": {"no_topics": 1}}}')
    assert reg.stats["index_invalid"] == 2
    assert not any(a.payload == b"" for a in reg.end_sync())


@pytest.mark.parametrize(
    ("toml", "key"),
    [
        ('[hass]\ndiscovery_prefix = "home/#"\n', "hass.discovery_prefix"),
        ("[hass]\nexpire_after = -1\n", "hass.expire_after"),
        ('[hass]\ndiscovery_mode = "legacy"\n', "hass.discovery_mode"),
        ("[hass]\nbirth_delay_min = 5\nbirth_delay_max = 1\n", "hass.birth_delay_max"),
        ("[hass]\nexpire_afer = 30\n", "expire_afer"),
    ],
)
def test_bad_config_names_the_key(tmp_path: Path, toml: str, key: str) -> None:
    path = tmp_path / "site.toml"
    path.write_text(toml)
    with pytest.raises(cfg.ConfigError, match=key.replace(".", r"\.")):
        cfg.load("hass", HassConfig, instance=None, path=path, env={})


def test_env_override_of_the_prefix(tmp_path: Path) -> None:
    loaded = cfg.load(
        "hass", HassConfig, instance=None, path=None, env={"BMSLINK_DISCOVERY_PREFIX": "ha2"}
    )
    assert loaded.section.discovery_prefix == "ha2"
    assert loaded.section.birth == "ha2/status"
