"""compose.yaml checked without a Docker engine: the compose-spec schema (check-jsonschema's
vendored copy) plus the semantic checks that schema misses (see the test-infrastructure reference
§9): references, profiles, variables, mounted files, entry points, Dockerfiles."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE: dict[str, Any] = yaml.safe_load((ROOT / "compose.yaml").read_text())
SERVICES: dict[str, Any] = COMPOSE["services"]
PROFILES = {"demo", "rs485", "modbus", "ble", "can"}
GENERATED = {  # written by `make credentials` (certs: with --tls)
    "mosquitto/passwd",
    "mosquitto/acl",
    "mosquitto/healthcheck",
    "mosquitto/certs",
    ".env",
}
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(:?-[^}]*)?\}")


def _strings(node: Any) -> list[str]:
    if isinstance(node, str):
        return [node]
    if isinstance(node, dict):
        return [s for v in node.values() for s in _strings(v)]
    if isinstance(node, list):
        return [s for v in node for s in _strings(v)]
    return []


def test_compose_spec_schema() -> None:
    exe = shutil.which("check-jsonschema", path=str(Path(sys.executable).parent))
    assert exe, "check-jsonschema is a dev dependency"
    proc = subprocess.run(
        [exe, "--builtin-schema", "vendor.compose-spec", str(ROOT / "compose.yaml")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_depends_on_and_profiles_exist() -> None:
    for name, svc in SERVICES.items():
        deps = svc.get("depends_on") or []
        for dep in deps if isinstance(deps, list) else list(deps):
            assert dep in SERVICES, f"{name} depends on undefined service {dep}"
            dep_profiles = set(SERVICES[dep].get("profiles") or [])
            own = set(svc.get("profiles") or [])
            assert not dep_profiles or dep_profiles & own, (
                f"{name} depends on {dep} of another profile"
            )
        assert set(svc.get("profiles") or []) <= PROFILES, name


def test_variables_without_default_are_documented_in_env_example() -> None:
    documented = {
        line.split("=", 1)[0].strip()
        for line in (ROOT / ".env.example").read_text().splitlines()
        if "=" in line and not line.lstrip().startswith("#")
    }
    for text in _strings(COMPOSE):
        for var, default in _VAR.findall(text):
            if not default:
                assert var in documented, f"${{{var}}} has no default and is not in .env.example"


def test_bind_mounted_files_exist_or_are_generated() -> None:
    for name, svc in SERVICES.items():
        for vol in svc.get("volumes") or []:
            # defaults substituted first: they may contain ':' (`${VAR:-default}`)
            text = vol if isinstance(vol, str) else vol.get("source", "")
            text = _VAR.sub(
                lambda m: (m.group(2) or ":-").removeprefix(":-").removeprefix("-"), text
            )
            source = text.split(":", 1)[0] if isinstance(vol, str) else text
            if source.startswith("./"):
                rel = source.removeprefix("./")
                assert (ROOT / rel).exists() or rel in GENERATED or rel == "config/site.toml", (
                    f"{name} mounts {source}, which does not exist"
                )


def _console_scripts() -> set[str]:
    scripts = set()
    for pyproject in [ROOT / "shared" / "pyproject.toml", *ROOT.glob("services/*/pyproject.toml")]:
        data = tomllib.loads(pyproject.read_text())
        scripts |= set(data.get("project", {}).get("scripts", {}))
    return scripts


def test_every_command_is_an_installed_entry_point_and_every_image_builds_from_a_dockerfile() -> (
    None
):
    scripts = _console_scripts()
    bindir = Path(sys.executable).parent
    for name, svc in SERVICES.items():
        if "build" in svc:
            build = svc["build"]
            dockerfile = ROOT / build.get("context", ".") / build.get("dockerfile", "Dockerfile")
            assert dockerfile.exists(), f"{name}: {dockerfile} missing"
            package = build.get("args", {}).get("SERVICE")
            assert package, f"{name}: build arg SERVICE (the workspace package) missing"
            assert any(
                tomllib.loads(p.read_text())["project"]["name"] == package
                for p in ROOT.glob("services/*/pyproject.toml")
            ), f"{name}: no workspace package {package}"
        command = svc.get("command")
        if command:
            exe = command[0] if isinstance(command, list) else command.split()[0]
            assert exe in scripts, f"{name}: {exe} is not a console script of the workspace"
            assert shutil.which(exe, path=str(bindir)), f"{name}: {exe} not installed in the venv"
        elif "build" in svc:
            pytest.fail(f"{name} builds a bmslink image but has no command")


def test_host_network_services_have_no_networks_and_devices_use_safe_syntax() -> None:
    for name, svc in SERVICES.items():
        if svc.get("network_mode") == "host":
            assert "networks" not in svc, f"{name}: network_mode host excludes networks"
            assert "ports" not in svc, f"{name}: ports are meaningless with network_mode host"
        for dev in svc.get("devices") or []:
            if isinstance(dev, str):
                host = dev.rsplit(":", 1)[0] if dev.count(":") >= 1 else dev
                assert ":" not in host, (
                    f"{name}: {dev} needs the long device syntax (colon in path)"
                )


def test_restart_policy_and_healthchecks() -> None:
    for name, svc in SERVICES.items():
        assert svc.get("restart") == "unless-stopped", f"{name}: restart policy"
        if "build" in svc and "simulator" not in name and "sim" not in svc.get("command", [""])[0]:
            assert "healthcheck" in svc, f"{name}: no healthcheck"
