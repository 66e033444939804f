"""Site configuration: TOML + BMSLINK_* overrides, errors naming the key, exit status 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Literal

import msgspec
import pytest

from bmslink import config


class Section(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    port: str
    addresses: list[int] = msgspec.field(default_factory=lambda: [2])
    timeout: float = 1.0
    mode: Literal["a", "b"] = "a"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "site.toml"
    path.write_text(text)
    return path


def test_file_and_environment_override(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '[mqtt]\nhost = "broker"\nport = 1884\n'
        '[pylontech_rs485.rack1]\nport = "/dev/ttyUSB0"\ntimeout = 0.5\n',
    )
    env = {
        "BMSLINK_MQTT_HOST": "10.1.2.3",
        "BMSLINK_MQTT_PORT": "1999",
        "BMSLINK_MQTT_USERNAME": "reader",
        "BMSLINK_MQTT_PASSWORD": "secret",
        "BMSLINK_ADDRESSES": "2,3,4",
        "BMSLINK_STATE_DIR": "/data",
    }
    loaded = config.load("pylontech_rs485", Section, instance="rack1", path=path, env=env)
    assert loaded.mqtt.host == "10.1.2.3"
    assert loaded.mqtt.port == 1999
    assert (loaded.mqtt.username, loaded.mqtt.password) == ("reader", "secret")
    assert loaded.section == Section(port="/dev/ttyUSB0", addresses=[2, 3, 4], timeout=0.5)
    assert loaded.storage.state_dir == "/data"
    assert loaded.instance == "rack1"


def test_defaults_without_a_file() -> None:
    loaded = config.load(
        "pylontech_rs485", Section, instance="x", path=None, env={"BMSLINK_PORT": "socket://h:1"}
    )
    assert loaded.mqtt.host == "localhost" and loaded.mqtt.port == 1883
    assert loaded.mqtt.protocol == "5"
    assert loaded.section.port == "socket://h:1"


def test_mqtt_protocol_from_file_and_environment(tmp_path: Path) -> None:
    path = write(tmp_path, '[mqtt]\nprotocol = "3.1.1"\n[pylontech_rs485.r]\nport="p"\n')
    assert (
        config.load("pylontech_rs485", Section, instance="r", path=path, env={}).mqtt.protocol
        == "3.1.1"
    )
    env = {"BMSLINK_MQTT_PROTOCOL": "5"}
    loaded = config.load("pylontech_rs485", Section, instance="r", path=path, env=env)
    assert loaded.mqtt.protocol == "5"


@pytest.mark.parametrize(
    ("text", "env", "named"),
    [
        ('[mqtt]\nhots = "x"\n[pylontech_rs485.r]\nport="p"\n', {}, "hots"),
        ('[mqqt]\nhost = "x"\n', {}, "mqqt"),
        ('[pylontech_rs485.r]\nport="p"\ntimout=1\n', {}, "timout"),
        ('[pylontech_rs485.r]\nport="p"\nmode="c"\n', {}, "pylontech_rs485.r.mode"),
        ("[pylontech_rs485.r]\n", {}, "port"),
        ('[mqtt]\nport = 70000\n[pylontech_rs485.r]\nport="p"\n', {}, "port"),
        ('[pylontech_rs485.r]\nport="p"\n', {"BMSLINK_MQTT_PORT": "abc"}, "BMSLINK_MQTT_PORT"),
        ('[pylontech_rs485.r]\nport="p"\n', {"BMSLINK_TIMEOUT": "soon"}, "BMSLINK_TIMEOUT"),
        ("[mqtt\n", {}, "not valid TOML"),
        ('[mqtt]\nprotocol = "3.1"\n[pylontech_rs485.r]\nport="p"\n', {}, "mqtt.protocol"),
        (
            '[pylontech_rs485.r]\nport="p"\n',
            {"BMSLINK_MQTT_PROTOCOL": "4"},
            "BMSLINK_MQTT_PROTOCOL",
        ),
    ],
)
def test_errors_name_the_key(tmp_path: Path, text: str, env: dict[str, str], named: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(config.ConfigError) as err:
        config.load("pylontech_rs485", Section, instance="r", path=path, env=env)
    assert named in str(err.value)


def test_bad_config_exits_with_status_2_naming_the_key(tmp_path: Path) -> None:
    path = write(tmp_path, '[pylontech_rs485.r]\nport = "/dev/x"\nbaudrat = 9600\n')
    proc = subprocess.run(
        [sys.executable, "-m", "pylontech_rs485_reader", "--config", str(path), "--instance", "r"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 2
    assert "baudrat" in proc.stderr
