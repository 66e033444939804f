"""The topic registry."""

from __future__ import annotations

from pathlib import Path

import pytest

from bmslink import topics


def test_format_and_match_are_inverse() -> None:
    topic = topics.STATE.format(id="rack1-2")
    assert topic == "bms/rack1-2/state"
    assert topics.STATE.match(topic) == {"id": "rack1-2"}
    assert topics.STATE.match("bms/rack1-2/info") is None
    assert topics.SERVICE_STATUS.format(service="bank-aggregator", instance="main") == (
        "bmslink/bank-aggregator/main/status"
    )


@pytest.mark.parametrize("bad", ["", "Rack1", "a/b", "+", "#", "x" * 49])
def test_ids_that_would_break_topics_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="invalid id"):
        topics.STATE.format(id=bad)


def test_subscription_wildcards() -> None:
    assert topics.STATE.subscription == "bms/+/state"
    assert topics.SERVICE_STATUS.subscription == "bmslink/+/+/status"


def test_retain_flags_follow_the_design() -> None:
    retained = {t.pattern: t.retained for t in topics.TOPICS}
    assert (
        retained["bms/{id}/state"]
        and retained["bms/{id}/info"]
        and retained["bms/{id}/availability"]
    )
    assert not retained["bms/{id}/set"]
    assert retained["bmslink/{service}/{instance}/status"]


def test_readme_shows_the_registry_table() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    assert topics.markdown_table() in readme


def test_readme_shows_the_generated_schema_tables() -> None:
    from bmslink import schema

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    structs = (schema.BatteryState, schema.BankState, schema.BatteryInfo, schema.LimitsOverride)
    for struct in structs:
        assert schema.markdown_fields(struct) in readme, struct.__name__
