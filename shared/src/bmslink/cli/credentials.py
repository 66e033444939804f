"""``bmslink credentials``: MQTT users, passwords and the broker ACL for every compose service.

Reads ``compose.yaml`` (the services that run a bmslink command, in every profile) and asks each
service which device ids it publishes (``<command> --print-device-ids``, with the site file), then
writes, never to be committed (they are in ``.gitignore``):

- ``mosquitto/passwd`` — Mosquitto 2 password file (PBKDF2-SHA512, 101 iterations, the format of
  ``mosquitto_passwd``), mode 0600;
- ``mosquitto/acl`` — one ``user`` block per service with exactly the topics it needs;
- ``.env`` — ``MQTT_PASSWORD_<SERVICE>`` for compose's interpolation, mode 0600.

- ``mosquitto/healthcheck/mosquitto_sub`` — the broker health check's ``-u``/``-P`` options
  (``mosquitto_sub`` reads them from ``$XDG_CONFIG_HOME/mosquitto_sub``), so the password is
  never on a command line, mode 0600;
- with ``--tls``: ``mosquitto/ca.key`` (the CA's private key, never mounted) and
  ``mosquitto/certs/`` — ``ca.crt`` (give it to the clients: ``[mqtt] ca_file``), ``broker.crt``
  and ``broker.key`` for the TLS listener (``mosquitto/listeners/tls/tls.conf``).

Existing passwords in ``.env`` (and an existing CA and broker certificate) are kept: re-running
after adding an adapter only adds users. Users: one per compose service (its name), plus
``homeassistant`` (read everything, write only ``bms/+/set`` and its birth message),
``healthcheck`` (read ``$SYS/broker/uptime``) and the read-only users given with ``--user``
(remembered in ``.env`` as ``MQTT_READ_ONLY_USERS``).

The broker makes every client's id its username (``use_username_as_clientid``), so no user can
take over another's session; a second connection with the same user replaces the first, which is
why each further client gets a user of its own.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import ipaddress
import json
import os
import re
import secrets
import socket
import subprocess
import sys
import tempfile
import tomllib
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


USER_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
"""A user name given with ``--user``: also its client id, and part of its ``.env`` variable."""

READ_ONLY_USERS = "MQTT_READ_ONLY_USERS"
"""``.env`` key remembering the ``--user`` names (comma-separated) across re-runs."""


def _hass_topics(site: Path, devices: list[str], previous: list[str]) -> list[str]:
    """hass-discovery's discovery ACL lines: exactly the config topics of the site's devices
    and inverter outputs (``<prefix>/device/bmslink_<id>/config`` in device mode,
    ``<prefix>/+/bmslink_<id>/+/config`` in entity mode; object ids as in
    ``hass_discovery.entities``), plus the ``previous`` such lines of the ACL being replaced, so
    a device that left the site can still be cleared from Home Assistant (no ghost)."""
    doc = tomllib.loads(site.read_text())
    hass = doc.get("hass") or {}
    prefix = str(hass.get("discovery_prefix", "homeassistant"))
    birth = str(hass.get("birth_topic") or f"{prefix}/status")
    objects = [f"bmslink_{dev}" for dev in devices]
    for instance, inverter in (doc.get("inverters") or {}).items():
        for output in (inverter.get("outputs") or {}) if isinstance(inverter, dict) else ():
            objects.append(f"bmslink_inverter_{instance}_{output}")
    lines = [f"topic read {birth}"]
    for obj in dict.fromkeys(objects):
        lines += [
            f"topic write {prefix}/device/{obj}/config",
            f"topic write {prefix}/+/{obj}/+/config",
        ]
    lines += [line for line in previous if line not in lines]
    return lines


def _previous_hass_lines(acl: Path, user: str) -> list[str]:
    """The discovery ``topic write`` lines of ``user``'s block in an existing ACL file."""
    if not acl.exists():
        return []
    out, current = [], None
    for line in acl.read_text().splitlines():
        if line.startswith("user "):
            current = line.removeprefix("user ").strip()
        elif current == user and re.match(r"^topic write \S+/bmslink_[^/]+/(\+/)?config$", line):
            out.append(line)
    return out


def users_for(
    compose_file: Path,
    site: Path,
    profiles: set[str],
    read_only: list[str] | None = None,
    previous_acl: Path | None = None,
) -> list[User]:
    """Every user with its ACL, from the compose services active under ``profiles`` (plus those
    without a profile) and the site file; ``read_only`` names extra read-only users;
    ``previous_acl`` is the ACL file being replaced (see :func:`_hass_topics`)."""
    doc = yaml.safe_load(compose_file.read_text())
    users: list[User] = []
    devices: list[str] = []
    hass_users: list[User] = []
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
                devices.append(dev)
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
                devices.append(bank)
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
                f"topic readwrite bmslink/{service}/{instance}/#",  # index and sync topics
            ]
            hass_users.append(user)  # discovery topics below, once every device is known
        users.append(user)
    for user in hass_users:
        previous = _previous_hass_lines(previous_acl, user.name) if previous_acl else []
        user.topics += _hass_topics(site, devices, previous)
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
    taken = {u.name for u in users}
    for name in read_only or []:
        if not USER_RE.match(name) or name in taken:
            raise SystemExit(
                f"--user {name!r}: not a new user name of [a-z0-9_-] (taken: {sorted(taken)})"
            )
        taken.add(name)
        users.append(User(name, env_var_for(name), ["topic read #"]))
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
    compose_file: Path,
    site: Path,
    out_dir: Path,
    env_file: Path,
    profiles: set[str],
    read_only: list[str] | None = None,
) -> list[User]:
    """Write passwd, acl, the health check's options and .env (keeping known passwords and the
    read-only users of earlier runs, adding ``read_only``); returns the users."""
    known = read_env(env_file)
    names = [n for n in known.get(READ_ONLY_USERS, "").split(",") if n]
    names += [n for n in read_only or [] if n not in names]
    users = users_for(compose_file, site, profiles, names, out_dir / "acl")
    if names:
        known[READ_ONLY_USERS] = ",".join(names)
    passwd_lines, acl_lines = [], ["# generated by `bmslink credentials` — do not edit, re-run it"]
    for user in users:
        assert user.env_var is not None
        password = known.get(user.env_var) or secrets.token_urlsafe(24)
        known[user.env_var] = password
        passwd_lines.append(f"{user.name}:{hash_password(password)}")
        acl_lines += ["", f"user {user.name}", *user.topics]
    _write_private(out_dir / "passwd", "\n".join(passwd_lines) + "\n")
    _write_private(out_dir / "acl", "\n".join(acl_lines) + "\n")
    health = known["MQTT_PASSWORD_HEALTHCHECK"]
    _write_private(out_dir / "healthcheck" / "mosquitto_sub", f"-u healthcheck\n-P {health}\n")
    env_lines = ["# generated by `bmslink credentials`; keep private, never commit"]
    env_lines += [f"{k}={v}" for k, v in sorted(known.items())]
    _write_private(env_file, "\n".join(env_lines) + "\n")
    return users


CA_DAYS = 3650
"""Validity of the CA certificate (days)."""
BROKER_DAYS = 825
"""Validity of the broker certificate (days; re-run ``--tls`` after deleting it to renew)."""


def default_tls_hosts() -> list[str]:
    """Names the broker certificate is valid for by default: this host's name, ``<name>.local``
    (mDNS), ``mosquitto`` (the compose service) and ``localhost``/``127.0.0.1``."""
    name = socket.gethostname()
    return list(dict.fromkeys([name, f"{name}.local", "mosquitto", "localhost", "127.0.0.1"]))


def _openssl(*args: str) -> None:
    try:
        proc = subprocess.run(["openssl", *args], capture_output=True, text=True, timeout=120)
    except FileNotFoundError:
        raise SystemExit("--tls needs the openssl command (apt-get install openssl)") from None
    if proc.returncode != 0:
        raise SystemExit(f"openssl {args[0]} failed: {proc.stderr.strip()}")


def _san(hosts: list[str]) -> str:
    out = []
    for host in hosts:
        try:
            ipaddress.ip_address(host)
        except ValueError:
            out.append(f"DNS:{host}")
        else:
            out.append(f"IP:{host}")
    return ",".join(out)


def make_tls(out_dir: Path, hosts: list[str]) -> list[Path]:
    """Create (unless present) a CA and a broker certificate signed by it, with the openssl
    command (OpenSSL ≥ 1.1.1; ECDSA P-256, SHA-256): ``out_dir/ca.key`` (mode 0600, stays on
    this machine), ``out_dir/certs/ca.crt``, ``out_dir/certs/broker.crt`` (subjectAltName:
    ``hosts``, DNS names or IP addresses — a client must reach the broker by one of them) and
    ``out_dir/certs/broker.key`` (0600). Returns the files created (empty: all were there).
    Raises SystemExit when openssl is missing or fails."""
    certs = out_dir / "certs"
    certs.mkdir(parents=True, exist_ok=True)
    ca_key, ca_crt = out_dir / "ca.key", certs / "ca.crt"
    key, crt = certs / "broker.key", certs / "broker.crt"
    made: list[Path] = []
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-sha256"]
    if not (ca_key.exists() and ca_crt.exists()):
        _openssl(
            "req", "-x509", *ec, "-keyout", str(ca_key), "-out", str(ca_crt),
            "-days", str(CA_DAYS), "-subj", "/O=bmslink/CN=bmslink broker CA",
            "-addext", "basicConstraints=critical,CA:TRUE,pathlen:0",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        )  # fmt: skip
        os.chmod(ca_key, 0o600)
        made += [ca_key, ca_crt]
        crt.unlink(missing_ok=True)  # a new CA: the old broker certificate is not signed by it
    if not (key.exists() and crt.exists()):
        with tempfile.TemporaryDirectory() as tmp:
            csr, ext = Path(tmp) / "broker.csr", Path(tmp) / "ext.cnf"
            ext.write_text(
                "basicConstraints=critical,CA:FALSE\n"
                "keyUsage=critical,digitalSignature,keyEncipherment\n"
                "extendedKeyUsage=serverAuth\n"
                f"subjectAltName={_san(hosts)}\n"
            )
            _openssl(
                "req", "-new", *ec, "-keyout", str(key), "-out", str(csr),
                "-subj", f"/O=bmslink/CN={hosts[0]}",
            )  # fmt: skip
            _openssl(
                "x509", "-req", "-in", str(csr), "-CA", str(ca_crt), "-CAkey", str(ca_key),
                "-set_serial", "0x" + secrets.token_hex(16), "-days", str(BROKER_DAYS),
                "-sha256", "-extfile", str(ext), "-out", str(crt),
            )  # fmt: skip
        os.chmod(key, 0o600)
        made += [key, crt]
    return made


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
    p.add_argument(
        "--user",
        action="append",
        default=[],
        metavar="NAME",
        help="add a read-only user (e.g. for mosquitto_sub or a second Home Assistant; "
        "each connection needs a user of its own); remembered in .env",
    )
    p.add_argument(
        "--tls",
        action="store_true",
        help="also create a CA and a broker certificate (mosquitto/certs/) for the TLS listener",
    )
    p.add_argument(
        "--tls-host",
        action="append",
        default=None,
        metavar="NAME",
        help="DNS name or IP address the broker certificate is valid for (repeatable; "
        "default: this host's name, NAME.local, mosquitto, localhost, 127.0.0.1)",
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
    users = generate(args.compose, args.site, args.out, args.env_file, set(profiles), args.user)
    written = f"{args.out / 'passwd'}, {args.out / 'acl'} and {args.env_file}"
    print(f"wrote {written} for {len(users)} users:")
    broker_files = [args.out / "passwd", args.out / "acl", args.out / "healthcheck/mosquitto_sub"]
    if args.tls:
        hosts = args.tls_host or default_tls_hosts()
        made = make_tls(args.out, hosts)
        certs = args.out / "certs"
        print(f"TLS: {', '.join(str(p) for p in made) or 'kept the existing CA and certificate'}")
        print(f"  clients: [mqtt] tls = true, ca_file = {certs / 'ca.crt'}, port = 8883")
        print("  broker: BMSLINK_BROKER_LISTENERS=tls in .env")
        broker_files.append(certs / "broker.key")
    chowned = [_give_to_broker(path) for path in broker_files]  # every file, not just the first
    owned = all(chowned)
    if not owned:
        files = " ".join(str(path) for path in broker_files)
        print(f"  run: sudo chown {MOSQUITTO_UID}:{MOSQUITTO_UID} {files}")
        print("  (the broker runs as UID 1883 and the files are private)")
    for user in users:
        print(f"  {user.name} ({len(user.topics)} ACL lines)")
    return 0
