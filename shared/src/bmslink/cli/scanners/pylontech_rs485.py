"""``bmslink scan pylontech-rs485 --port URL``: find the Pylontech (and Maple Leaf Beaver) packs
on one RS485 bus and print the ``[pylontech_rs485.<instance>]`` lines to paste.

Two strategies (reference ``pylontech-rs485.md`` §10.5):

* default (smart): per group, probe 0x93 at ADR 0x10·g + 2 .. 0x10·g + ``--max-address`` with a
  0.5 s deadline and stop after 2 silent addresses beyond the last responder; Beaver packs are
  probed with a VER 0x21 0x42 at ADR 0..3 (doc §12);
* ``--full``: every ADR 0..255 with a short deadline (``--timeout``, 0.1 s), 0x93 then, at ADR
  0..3, the Beaver probe.

For each pack found it reads 0x42 (cell count, capacity), 0x93 (serial), 0x96 (firmware) and,
once per group, 0x51 (the master's model, §7.4). Progress goes to stderr, results and config
lines to stdout. Exit status 0 when something answered, 1 when nothing did, 2 for bad usage.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from bmslink.cli.scan import Scanner
from bmslink.protocols import pylontech_rs485 as pylon

T = TypeVar("T")
SILENT_AFTER_LAST = 2
"""Smart scan: stop a group after this many silent addresses beyond the last responder."""


@dataclass
class Found:
    """One pack found on the bus."""

    address: int
    dialect: str
    serial: str | None = None
    firmware: str | None = None
    model: str | None = None
    cells: int | None = None
    capacity: float | None = None


class Link:
    """A minimal half-duplex link (device path or ``socket://``/``rfc2217://`` URL): send a
    request, read one frame to CR against a deadline, skipping an echo (doc §10.1)."""

    def __init__(self, url: str, baudrate: int) -> None:
        import serial

        self._serial = serial
        try:
            self.port: Any = serial.serial_for_url(url, baudrate=baudrate, timeout=0.05)
        except (serial.SerialException, OSError, ValueError) as exc:
            raise OSError(f"cannot open {url}: {exc}") from exc

    def exchange(self, request: bytes, timeout: float) -> bytes | None:
        """The first frame other than ``request`` within ``timeout`` s, or None."""
        port = self.port
        port.reset_input_buffer()
        port.write(request)
        deadline = time.monotonic() + timeout
        buffer = bytearray()
        while True:
            cr = buffer.find(b"\r")
            while cr >= 0:
                raw = bytes(buffer[: cr + 1])
                del buffer[: cr + 1]
                start = raw.rfind(b"~")
                if start >= 0 and raw[start:] != request:
                    return raw[start:]
                cr = buffer.find(b"\r")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            port.timeout = min(remaining, 0.05)
            chunk = port.read(max(1, port.in_waiting))
            if chunk:
                buffer += chunk

    def close(self) -> None:
        """Close the port."""
        self.port.close()


class Prober:
    """Sends probes with a minimum gap between commands (doc §10.3)."""

    def __init__(self, link: Link, timeout: float, gap: float) -> None:
        self.link = link
        self.timeout = timeout
        self.gap = gap
        self._last = 0.0

    def ask(
        self, request: bytes, decode: Callable[[pylon.Frame], T], timeout: float | None = None
    ) -> T | None:
        """Send ``request``; the decoded reply, or None (silence, refused frame, RTN != 0)."""
        wait = self._last + self.gap - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        raw = self.link.exchange(request, self.timeout if timeout is None else timeout)
        self._last = time.monotonic()
        if raw is None:
            return None
        try:
            return decode(pylon.parse_response(raw, pylon.parse_frame(request)))
        except pylon.PylontechError:
            return None


def _probe(prober: Prober, adr: int, timeout: float, beaver: bool) -> Found | None:
    """Whether a pack answers at ``adr``: 0x93 (Pylontech), then the Beaver 0x42 at 0..3."""

    def any_reply(frame: pylon.Frame) -> pylon.Frame:
        return frame

    got = prober.ask(pylon.build_request(adr, pylon.Cid2.SERIAL_NUMBER), any_reply, timeout)
    if got is not None:
        return Found(adr, "pylontech")
    if beaver and adr in pylon.BEAVER_ADDRESSES:
        request = pylon.build_beaver_request(adr, pylon.Cid2.ANALOG)
        if prober.ask(request, any_reply, timeout) is not None:
            return Found(adr, "beaver")
    return None


def _details(prober: Prober, found: Found, groups: dict[int, str | None]) -> None:
    adr = found.address
    if found.dialect == "beaver":
        request = pylon.build_beaver_request(adr, pylon.Cid2.ANALOG)
        beaver = prober.ask(request, lambda f: pylon.decode_beaver_analog(f.info))
        if beaver is not None:
            found.cells, found.capacity = len(beaver.cell_voltages), beaver.full_capacity
        found.model = "Maple Leaf Beaver"
        return
    serial = prober.ask(
        pylon.build_request(adr, pylon.Cid2.SERIAL_NUMBER),
        lambda f: pylon.decode_serial_number(f.info),
    )
    found.serial = serial.serial if serial else None
    firmware = prober.ask(
        pylon.build_request(adr, pylon.Cid2.FIRMWARE_VERSION),
        lambda f: pylon.decode_firmware_version(f.info),
    )
    found.firmware = firmware.text if firmware else None
    analog = prober.ask(
        pylon.build_request(adr, pylon.Cid2.ANALOG),
        lambda f: pylon.decode_analog(f.info, stack=False),
    )
    if analog is not None:
        module = analog.modules[0]
        found.cells, found.capacity = len(module.cell_voltages), module.full_capacity
    group = adr >> 4
    if group not in groups:
        maker = prober.ask(
            pylon.build_request(adr, pylon.Cid2.MANUFACTURER_INFO),
            lambda f: pylon.decode_manufacturer_info(f.info),
        )
        groups[group] = maker.device_name if maker else None
    if (adr & 0x0F) == 2:  # 0x51 is the group master's identity (§7.4)
        found.model = groups[group]


def _addresses(args: argparse.Namespace) -> list[list[int]]:
    """Address lists to probe: one list per group (smart) or one list 0..255 (full)."""
    if args.full:
        return [list(range(256))]
    return [list(range(0x10 * g + 2, 0x10 * g + args.max_address + 1)) for g in args.groups]


def scan(args: argparse.Namespace, progress: Callable[[str], None]) -> list[Found]:
    """Scan the bus described by ``args``; returns the packs found, ADR order.

    Raises:
        OSError: the port cannot be opened.
    """
    timeout = args.timeout if args.timeout is not None else (0.1 if args.full else 0.5)
    link = Link(args.port, args.baud)
    prober = Prober(link, max(timeout, 0.5), args.gap)
    found: list[Found] = []
    try:
        plans = _addresses(args)
        total = sum(len(p) for p in plans)
        done = 0
        if not args.full and args.beaver:  # Beaver packs live at 0..3 (§12)
            for adr in pylon.BEAVER_ADDRESSES:
                progress(f"probing Beaver ADR {adr}")
                request = pylon.build_beaver_request(adr, pylon.Cid2.ANALOG)
                if prober.ask(request, lambda f: f, timeout) is not None:
                    found.append(Found(adr, "beaver"))
        for plan in plans:
            last_hit: int | None = None
            for adr in plan:
                done += 1
                progress(f"[{done}/{total}] ADR {adr} (0x{adr:02X}): {len(found)} found")
                hit = _probe(prober, adr, timeout, beaver=args.full and args.beaver)
                if hit is not None:
                    found.append(hit)
                    last_hit = adr
                    continue
                if not args.full:
                    beyond = adr - (last_hit if last_hit is not None else plan[0] - 1)
                    if beyond >= SILENT_AFTER_LAST and last_hit is not None:
                        break
        groups: dict[int, str | None] = {}
        for item in found:
            progress(f"reading identity of ADR {item.address}")
            _details(prober, item, groups)
    finally:
        link.close()
    return sorted(found, key=lambda f: f.address)


def config_lines(found: list[Found], args: argparse.Namespace) -> list[str]:
    """The site.toml section for what was found (one bus = one reader instance)."""
    dialects = {f.dialect for f in found}
    lines = [
        f"[pylontech_rs485.{args.instance}]",
        f'port = "{args.port}"',
        f"baudrate = {args.baud}",
        f"addresses = [{', '.join(str(f.address) for f in found)}]",
    ]
    if dialects == {"beaver"}:
        lines.append('dialect = "beaver"')
    elif len(dialects) > 1:
        lines.append('dialect = "auto"           # Pylontech and Beaver packs on one bus')
    return lines


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``bmslink scan pylontech-rs485``."""
    p.add_argument(
        "--port", required=True, help="device path (/dev/serial/by-id/...) or socket:// URL"
    )
    p.add_argument("--baud", type=int, default=115200, help="Bd (115200, or 9600)")
    p.add_argument(
        "--full",
        action="store_true",
        help="probe every ADR 0..255 (short --timeout) instead of 2..--max-address per group",
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=None,
        help="s per address probe (default 0.5, with --full 0.1)",
    )
    p.add_argument(
        "--groups",
        type=lambda t: [int(x, 0) for x in t.split(",")],
        default=[0],
        help="smart scan: groups to probe, e.g. 0,1 (ADR 0x10*g+2..)",
    )
    p.add_argument(
        "--max-address",
        type=int,
        default=13,
        help="smart scan: last position in a group (2..15, default 13)",
    )
    p.add_argument(
        "--no-beaver",
        dest="beaver",
        action="store_false",
        help="do not probe Maple Leaf Beaver packs (VER 0x21) at ADR 0..3",
    )
    p.add_argument("--gap", type=float, default=0.1, help="s between commands (default 0.1)")
    p.add_argument("--instance", default="rack1", help="instance name for the config lines")


def run(args: argparse.Namespace) -> int:
    """Scan, print one line per pack and the config lines; 0 found, 1 none, 2 bad usage."""
    if not 2 <= args.max_address <= 15 or args.baud <= 0 or args.gap < 0:
        print("bmslink scan: --max-address must be 2..15, --baud > 0, --gap ≥ 0", file=sys.stderr)
        return 2
    if any(not 0 <= g <= 15 for g in args.groups):
        print("bmslink scan: --groups must be 0..15", file=sys.stderr)
        return 2

    def progress(text: str) -> None:
        print(f"\r\x1b[K{text}" if sys.stderr.isatty() else text, file=sys.stderr, end="")
        if not sys.stderr.isatty():
            print(file=sys.stderr)

    try:
        found = scan(args, progress)
    except OSError as exc:
        print(f"bmslink scan: {exc}", file=sys.stderr)
        return 1
    if sys.stderr.isatty():
        print(file=sys.stderr)
    if not found:
        print("no pack answered (check A/B wiring, baud rate, termination)", file=sys.stderr)
        return 1
    for f in found:
        print(
            f"# ADR {f.address} (0x{f.address:02X}) {f.dialect}: model {f.model or '?'}, "
            f"serial {f.serial or '?'}, firmware {f.firmware or '?'}, "
            f"{f.cells or '?'} cells, {f.capacity or '?'} Ah"
        )
    print("\n".join(config_lines(found, args)))
    return 0


SCANNERS = [
    Scanner(
        "pylontech-rs485",
        "Pylontech LV / Maple Leaf Beaver packs on an RS485 bus",
        add_arguments,
        run,
    ),
]
