"""``bmslink scan daly-ble``: nearby Daly BMSes over Bluetooth LE, with RSSI and protocol.

A device is a Daly when (../shared/protocols/daly.md §3.4) its name starts with ``DL-`` or
``JHB-``, or it advertises service ``fff0``, or its manufacturer data ends in ``DL`` (``44 4c``)
or ``JHB`` (``4a 48 42``). With ``--probe`` (default) each one is connected once and its protocol
detected as the reader does (§2). Needs bleak and the daly-ble-reader package (both installed
with the workspace). Progress goes to stderr, the ``devices`` entries to paste on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
from dataclasses import dataclass
from typing import Any

from bmslink.cli.scan import Scanner

FFF0 = "0000fff0-0000-1000-8000-00805f9b34fb"
_SUFFIXES = (bytes.fromhex("444c"), bytes.fromhex("4a4842"))


@dataclass
class Found:
    """One nearby Daly device: MAC ``address``, advertised ``name``, ``rssi`` in dBm and the
    detected ``protocol`` (None when not probed or nothing answered)."""

    address: str
    name: str | None
    rssi: int | None
    protocol: str | None = None


def is_daly(name: str | None, service_uuids: list[str], manufacturer: dict[int, bytes]) -> bool:
    """The advertisement matching rule of doc §3.4."""
    if name and name.startswith(("DL-", "JHB-")):
        return True
    if FFF0 in [u.lower() for u in service_uuids]:
        return True
    return any(bytes(data).endswith(_SUFFIXES) for data in manufacturer.values())


def _slug(text: str) -> str:
    slug = re.sub(r"[^a-z0-9_-]+", "-", text.lower()).strip("-")
    return (slug or "daly")[:48]


async def _discover(timeout: float, adapter: str | None) -> list[Found]:
    from bleak import BleakScanner

    kwargs: dict[str, Any] = {"bluez": {"adapter": adapter}} if adapter else {}
    seen = await BleakScanner.discover(timeout=timeout, return_adv=True, **kwargs)
    out = []
    for device, adv in seen.values():
        name = adv.local_name or device.name
        if is_daly(name, list(adv.service_uuids), dict(adv.manufacturer_data)):
            out.append(Found(device.address, name, adv.rssi))
    return sorted(out, key=lambda f: -(f.rssi or -999))


async def _probe(found: Found, adapter: str | None, timeout: float) -> None:
    from daly_ble_reader.channel import Channel, Stats
    from daly_ble_reader.config import DalyConfig, DeviceConfig
    from daly_ble_reader.handlers import detect
    from daly_ble_reader.transport import BleLink, LinkError

    device = DeviceConfig(id=_slug(found.name or found.address), address=found.address)
    cfg = DalyConfig(transport="ble", adapter=adapter, devices=[device])
    link = BleLink(found.address, None, adapter=adapter, connect_timeout=timeout)
    try:
        await link.open()
        channel = Channel(link, Stats(), timeout=1.5, retries=0, ble=True)
        result = await detect(channel, device, cfg)
        found.protocol = result[0] if result else None
    except LinkError as exc:
        print(f"  {found.address}: {exc}", file=sys.stderr)
    finally:
        await link.close()


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--timeout", type=float, default=5.0, help="scan time, s")
    parser.add_argument("--adapter", default=None, help="Bluetooth adapter (e.g. hci0)")
    parser.add_argument(
        "--no-probe",
        dest="probe",
        action="store_false",
        help="do not connect to detect the protocol",
    )


def _run(args: argparse.Namespace) -> int:
    try:
        import bleak  # noqa: F401
    except ImportError:
        print("bmslink scan daly-ble: bleak is not installed", file=sys.stderr)
        return 2

    async def scan() -> list[Found]:
        print(f"scanning {args.timeout:.0f} s for Daly BLE devices ...", file=sys.stderr)
        found = await _discover(args.timeout, args.adapter)
        if args.probe:
            for item in found:
                print(f"  probing {item.address} ({item.name})", file=sys.stderr)
                await _probe(item, args.adapter, max(args.timeout, 5.0))
        return found

    found = asyncio.run(scan())
    if not found:
        print("no Daly device found", file=sys.stderr)
        return 1
    print("# paste into [daly.<instance>] devices = [ ... ]")
    for item in found:
        protocol = f', protocol = "{item.protocol}"' if item.protocol else ""
        print(
            f'  {{ id = "{_slug(item.name or item.address)}", address = "{item.address}"'
            f"{protocol} }},  # {item.name or '?'} RSSI {item.rssi} dBm"
        )
    return 0


SCANNERS = [
    Scanner(
        "daly-ble",
        "nearby Daly BMSes over Bluetooth LE (RSSI, detected protocol)",
        _add_arguments,
        _run,
    )
]
