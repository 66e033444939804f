"""``bmslink credentials``: MQTT users, passwords and the broker ACL for every compose service.

Reads ``compose.yaml`` (the services that run a bmslink command, in every profile) and asks each
service which device ids it publishes (``<command> --print-device-ids``, with the site file), then
writes, never to be committed (they are in ``.gitignore``):

- ``mosquitto/passwd`` — Mosquitto 2 password file (PBKDF2-SHA512, 101 iterations, the format of
  ``mosquitto_passwd``), mode 0600;
- ``mosquitto/acl`` — one ``user`` block per service with exactly the topics it needs;
- ``.env`` — ``MQTT_PASSWORD_<SERVICE>`` for compose's interpolation, mode 0600.

Existing passwords in ``.env`` are kept (re-running after adding an adapter only adds users).
Users: one per compose service (its name), plus ``homeassistant`` (read everything, write only
``bms/+/set`` and its birth message) and ``healthcheck`` (read ``$SYS/broker/uptime``).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import re
import secrets
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from bmslink.cli.demo import _as_env, interpolate

ITERATIONS = 101
READERS = {
    "bmslink-pylontech-rs485-reader": "pylontech-rs485-reader",
    "bmslink-am2-modbus-reader": "am2-modbus-reader",
    "bmslink-daly-ble-reader": "daly-ble-reader",
    "bmslink-can-reader": "can-reader",
}
"""Console script → service name of the readers (they publish their own devices)."""


@dataclass
class User:
    """One MQTT user and its ACL lines (``topic read|write|readwrite <filter>``)."""

    name: str
    env_var: str | None
    topics: list[str] = field(default_factory=list)


def hash_password(password: str, salt: bytes | None = None) -> str:
    """A Mosquitto 2 password hash: ``$7$101$<salt b64>$<PBKDF2-SHA512 b64>``."""
    salt = salt or secrets.token_bytes(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, ITERATIONS)
    return f"$7${ITERATIONS}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def env_var_for(service: str) -> str:
    """The ``.env`` variable holding ``service``'s password, e.g. ``MQTT_PASSWORD_RACK1_READER``."""
    return "MQTT_PASSWORD_" + re.sub(r"[^A-Z0-9]", "_", service.upper())


def _instance(argv: list[str], env: Mapping[str, str]) -> str | None:
    if "--instance" in argv:
        return argv[argv.index("--instance") + 1]
    return env.get("BMSLINK_INSTANCE")


def device_ids(argv: list[str], site: Path) -> list[str]:
    """Ask a service for the device ids it publishes (``--print-device-ids``)."""
    exe = Path(sys.executable).parent / argv[0]
    cmd = [
        str(exe) if exe.exists() else argv[0],
        *argv[1:],
        "--config",
        str(site),
        "--print-device-ids",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)}: cannot list device ids: {proc.stderr.strip()}")
    ids: list[str] = json.loads(proc.stdout.strip().splitlines()[-1])
    return ids


def users_for(compose_file: Path, site: Path, profiles: set[str]) -> list[User]:
    """Every user with its ACL, from the compose services active under ``profiles`` (plus those
    without a profile) and the site file."""
    doc = yaml.safe_load(compose_file.read_text())
    users: list[User] = []
    env = {k: v for k, v in os.environ.items() if k.startswith("BMSLINK_")}
    for name, svc in (doc.get("services") or {}).items():
        if svc.get("profiles") and not set(svc["profiles"]) & profiles:
            continue
        command = svc.get("command")
        if not command:
            continue
        argv = [
            interpolate(str(a), env)
            for a in (command.split() if isinstance(command, str) else command)
        ]
        if (
            not argv[0].startswith("bmslink-")
            or argv[0] == "bmslink-simulator"
            or argv[0].startswith("bmslink-sim-")
        ):
            continue
        svc_env = _as_env(svc.get("environment"))
        instance = _instance(argv, svc_env) or "main"
        service = argv[0].removeprefix("bmslink-")
        user = User(name, env_var_for(name), [f"topic write bmslink/{service}/{instance}/status"])
        if argv[0] in READERS:
            for dev in device_ids(argv, site):
                user.topics += [
                    f"topic readwrite bms/{dev}/state",
                    f"topic readwrite bms/{dev}/info",
                    f"topic readwrite bms/{dev}/availability",
                    f"topic read bms/{dev}/set",
                    f"topic write bms/{dev}/set/result",
                ]
        elif service == "bank-aggregator":
            user.topics += [
                "topic read bms/+/state",
                "topic read bms/+/availability",
                "topic read bms/+/info",
            ]
            for bank in device_ids(argv, site):
                user.topics += [
                    f"topic write bms/{bank}/state",
                    f"topic write bms/{bank}/info",
                    f"topic write bms/{bank}/availability",
                    f"topic read bms/{bank}/set",
                    f"topic write bms/{bank}/set/result",
                ]
        elif service == "can-inverter-emulator":
            user.topics += ["topic read bms/+/state", f"topic write bmslink/{service}/{instance}/#"]
        elif service == "hass-discovery":
            user.topics += [
                "topic read bms/+/info",
                "topic read bms/+/availability",
                "topic read bmslink/+/+/status",
                "topic readwrite homeassistant/#",
                f"topic readwrite bmslink/{service}/{instance}/#",  # index and sync topics
            ]
        users.append(user)
    users.append(
        User(
            "homeassistant",
            "MQTT_PASSWORD_HOMEASSISTANT",
            ["topic read #", "topic write bms/+/set", "topic write homeassistant/status"],
        )
    )
    users.append(
        User("healthcheck", "MQTT_PASSWORD_HEALTHCHECK", ["topic read $SYS/broker/uptime"])
    )
    return users


def read_env(path: Path) -> dict[str, str]:
    """``KEY=value`` lines of an ``.env`` file (comments and blanks skipped)."""
    if not path.exists():
        return {}
    out = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            out[key.strip()] = value.strip()
    return out


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.chmod(path, 0o600)


MOSQUITTO_UID = 1883
"""The eclipse-mosquitto image drops privileges to UID/GID 1883, which must own passwd/acl."""


def _give_to_broker(path: Path) -> bool:
    """chown ``path`` to the broker's UID (possible as root); returns whether it was done."""
    try:
        os.chown(path, MOSQUITTO_UID, MOSQUITTO_UID)
    except PermissionError:
        return False
    return True


def generate(
    compose_file: Path, site: Path, out_dir: Path, env_file: Path, profiles: set[str]
) -> list[User]:
    """Write passwd, acl and .env (keeping known passwords); returns the users."""
    users = users_for(compose_file, site, profiles)
    known = read_env(env_file)
    passwd_lines, acl_lines = [], ["# generated by `bmslink credentials` — do not edit, re-run it"]
    for user in users:
        assert user.env_var is not None
        password = known.get(user.env_var) or secrets.token_urlsafe(24)
        known[user.env_var] = password
        passwd_lines.append(f"{user.name}:{hash_password(password)}")
        acl_lines += ["", f"user {user.name}", *user.topics]
    _write_private(out_dir / "passwd", "\n".join(passwd_lines) + "\n")
    _write_private(out_dir / "acl", "\n".join(acl_lines) + "\n")
    env_lines = ["# generated by `bmslink credentials`; keep private, never commit"]
    env_lines += [f"{k}={v}" for k, v in sorted(known.items())]
    _write_private(env_file, "\n".join(env_lines) + "\n")
    return users


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register the ``credentials`` sub-command."""
    p = sub.add_parser("credentials", help="generate broker users, passwords and ACL for compose")
    p.add_argument("--compose", type=Path, default=Path("compose.yaml"))
    p.add_argument("--site", type=Path, default=Path("config/site.toml"))
    p.add_argument("--out", type=Path, default=Path("mosquitto"), help="where passwd and acl go")
    p.add_argument("--env-file", type=Path, default=Path(".env"))
    p.add_argument(
        "--profile",
        action="append",
        default=None,
        help="compose profile to include (repeatable; default: $COMPOSE_PROFILES, also from .env)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Generate the files and say what was written."""
    if not args.site.exists():
        print(
            f"site file {args.site} not found (cp config/site.example.toml config/site.toml)",
            file=sys.stderr,
        )
        return 2
    profiles = args.profile
    if profiles is None:
        raw = os.environ.get("COMPOSE_PROFILES") or read_env(args.env_file).get(
            "COMPOSE_PROFILES", ""
        )
        profiles = [p.strip() for p in raw.split(",") if p.strip()]
    users = generate(args.compose, args.site, args.out, args.env_file, set(profiles))
    written = f"{args.out / 'passwd'}, {args.out / 'acl'} and {args.env_file}"
    print(f"wrote {written} for {len(users)} users:")
    owned = all(_give_to_broker(args.out / name) for name in ("passwd", "acl"))
    if not owned:
        files = f"{args.out / 'passwd'} {args.out / 'acl'}"
        print(f"  run: sudo chown {MOSQUITTO_UID}:{MOSQUITTO_UID} {files}")
        print("  (the broker runs as UID 1883 and the files are private)")
    for user in users:
        print(f"  {user.name} ({len(user.topics)} ACL lines)")
    return 0
