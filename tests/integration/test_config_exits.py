"""Every service process exits with status 2 and one clear line — never a traceback — for a site
file that is not UTF-8, a site path that is a directory, and a mistyped ``--instance`` (named,
with the configured instances listed). Issue 14 item 9."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.broker import Broker, recorder
from tests.processes import run_service, write_site

# module, section, a configured instance (the table need not be valid: the instance is checked
# before its keys)
SERVICES = [
    ("pylontech_rs485_reader", "pylontech_rs485", "rack1"),
    ("am2_modbus_reader", "pace_modbus", "am2"),
    ("daly_ble_reader", "daly", "garage"),
    ("can_reader", "can_reader", "can1"),
    ("bank_aggregator", "banks", "bank1"),
    ("can_inverter_emulator", "inverters", "main"),
]
ALL_MODULES = [m for m, _, _ in SERVICES] + ["hass_discovery"]


def assert_one_clear_line(proc: subprocess.CompletedProcess[str], *needles: str) -> str:
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    line = lines[0]
    assert line.startswith("bmslink: configuration error: "), line
    for needle in needles:
        assert needle in line, line
    return line


@pytest.mark.parametrize("module", ALL_MODULES)
def test_site_file_not_utf8_exits_2(tmp_path: Path, module: str) -> None:
    site = tmp_path / "site.toml"
    site.write_bytes(b'[mqtt]\nhost = "caf\xe9"\n')
    line = assert_one_clear_line(run_service(module, site, "rack1"), str(site), "not valid UTF-8")
    assert "byte 0xe9 on line 2 (offset 18)" in line


@pytest.mark.parametrize("module", ALL_MODULES)
def test_site_path_is_a_directory_exits_2(tmp_path: Path, module: str) -> None:
    assert_one_clear_line(run_service(module, tmp_path, "rack1"), str(tmp_path), "is a directory")


@pytest.mark.parametrize(("module", "section", "configured"), SERVICES)
def test_mistyped_instance_exits_2_naming_it_and_listing_the_configured(
    tmp_path: Path, module: str, section: str, configured: str
) -> None:
    site = tmp_path / "site.toml"
    site.write_text(f'[{section}.{configured}]\n[{section}.other-1]\nport = "x"\n')
    line = assert_one_clear_line(
        run_service(module, site, configured + "x"),
        f"instance `{configured}x` is not configured",
        f"[{section}.{configured}x]",
        f"configured: {', '.join(sorted([configured, 'other-1']))}",
    )
    assert "missing" not in line  # not "Object missing required field `port`"


@pytest.mark.parametrize(("module", "section", "_configured"), SERVICES)
def test_instance_of_a_section_the_file_lacks_exits_2(
    tmp_path: Path, module: str, section: str, _configured: str
) -> None:
    site = tmp_path / "site.toml"
    site.write_text('[mqtt]\nhost = "localhost"\n')
    assert_one_clear_line(
        run_service(module, site, "anything"),
        "instance `anything` is not configured",
        f"no [{section}.<instance>] table at all",
    )


def test_print_device_ids_of_a_mistyped_instance_exits_2(tmp_path: Path) -> None:
    site = tmp_path / "site.toml"
    site.write_text('[banks.bank1]\nmembers = ["a"]\n')
    proc = subprocess.run(
        [
            *(sys.executable, "-m", "bank_aggregator", "--config", str(site)),
            *("--instance", "bank2", "--print-device-ids"),
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert_one_clear_line(proc, "instance `bank2` is not configured", "configured: bank1")
    assert proc.stdout == ""


def test_without_a_site_file_an_unconfigured_instance_exits_2(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    proc = subprocess.run(
        [sys.executable, "-m", "bank_aggregator", "--instance", "bank2"],
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
        cwd=tmp_path,
    )
    assert_one_clear_line(proc, "instance `bank2` is not configured", "no site file")


@pytest.mark.mqtt
def test_bank_aggregator_never_invents_a_bank_from_an_unknown_instance(
    broker: Broker, tmp_path: Path
) -> None:
    site = write_site(tmp_path, broker.port, '[banks.bank1]\nmembers = ["p1"]\n')
    with recorder(broker.port, "#") as rec:
        # a battery on the bus: with the old behaviour, an unknown instance aggregated it
        rec.client.publish(
            "bms/p1/state", b'{"kind":"battery","id":"p1","ts":1}', qos=1, retain=True
        ).wait_for_publish(10)
        rec.wait_topic("bms/p1/state", timeout=10)
        proc = run_service("bank_aggregator", site, "bank2")
        assert_one_clear_line(proc, "instance `bank2` is not configured", "configured: bank1")
        # a marker published after the process ended arrives after anything it could have sent
        rec.client.publish("test/marker", b"end", qos=1).wait_for_publish(10)
        rec.wait_topic("test/marker", timeout=10)
        topics = {m.topic for m in rec.messages}
    assert topics == {"bms/p1/state", "test/marker"}, topics
