"""``bmslink scan pace-modbus --port PORT``: find PACE BMS packs (Hubble AM2, ...) on a bus.

Reads the live block (registers 0..36) of every slave address 1..15 in turn (PACE §3: four DIP
switches), respecting the PACE inter-frame gap (> 100 ms, §2); for each address that answers
(data or a Modbus exception) it reads the strings 150..179 and the settings 60..114 and prints
an identity line on stderr, then the ``[pace_modbus.<instance>]`` table to paste on stdout.
Exit status 0 when a pack was found, 1 when none answered, 2 when the port cannot be opened.

I/O here is pyserial (``serial_for_url``: device paths and ``socket://`` bridges); frames and
registers come from :mod:`bmslink.protocols.modbus_rtu` and :mod:`bmslink.protocols.pace_modbus`.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from typing import Any

from bmslink.cli.scan import Scanner
from bmslink.protocols import modbus_rtu as rtu
from bmslink.protocols import pace_modbus as pace


class _NoAnswer(Exception):  # noqa: N818
    pass


@dataclass
class _Link:
    port: Any
    timeout: float
    gap: float
    last: float = 0.0

    def read(self, slave: int, start: int, count: int) -> tuple[int, ...]:
        """One FC 0x03 transaction; raises _NoAnswer or the codec's typed errors."""
        wait = self.last + self.gap - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        request = rtu.build_read_request(slave, start, count)
        try:
            self.port.reset_input_buffer()
            self.port.write(request)
            expected = rtu.response_length(rtu.FC_READ_HOLDING, count)
            deadline = time.monotonic() + self.timeout
            buf = bytearray()
            while len(buf) < expected and time.monotonic() < deadline:
                self.port.timeout = max(0.001, deadline - time.monotonic())
                chunk = self.port.read(expected - len(buf))
                if not chunk:
                    break
                buf += chunk
                if len(buf) >= 2 and buf[1] & rtu.EXCEPTION_BIT:
                    expected = rtu.EXCEPTION_LENGTH
        finally:
            self.last = time.monotonic()
        if not buf:
            raise _NoAnswer
        return rtu.parse_read_response(bytes(buf), slave=slave, count=count)


def _addresses(text: str) -> list[int]:
    out: list[int] = []
    for item in text.split(","):
        lo, sep, hi = item.strip().partition("-")
        if not lo:
            continue
        out.extend(range(int(lo), int(hi) + 1) if sep else [int(lo)])
    if not out or any(not 1 <= a <= 247 for a in out):
        raise argparse.ArgumentTypeError(f"addresses must be within 1..247: {text!r}")
    return out


def _add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--port", required=True, help="device path or socket://host:port")
    p.add_argument("--baudrate", type=int, default=9600, help="Bd (PACE default 9600)")
    p.add_argument(
        "--addresses", type=_addresses, default=list(range(1, 16)), help="e.g. 1-15 or 1,2,5"
    )
    p.add_argument("--timeout", type=float, default=0.5, help="reply deadline, s (0.5)")
    p.add_argument("--gap", type=float, default=0.15, help="quiet time between frames, s (0.15)")
    p.add_argument("--instance", default="bus1", help="instance name in the printed table")


def _run(args: argparse.Namespace) -> int:
    import serial

    try:
        port = serial.serial_for_url(args.port, baudrate=args.baudrate, timeout=args.timeout)
    except (serial.SerialException, OSError, ValueError) as exc:
        print(f"bmslink scan: cannot open {args.port}: {exc}", file=sys.stderr)
        return 2
    link = _Link(port, args.timeout, args.gap)
    found: list[int] = []
    cells: set[int] = set()
    try:
        for slave in args.addresses:
            print(f"slave {slave}: ", end="", file=sys.stderr, flush=True)
            try:
                live = pace.decode_live(link.read(slave, 0, 37))
            except _NoAnswer:
                print("no answer", file=sys.stderr)
                continue
            except rtu.ExceptionReplyError as exc:
                found.append(slave)
                print(f"answers, but {exc} (RS485 protocol not PACE Modbus?)", file=sys.stderr)
                continue
            except (rtu.ModbusError, pace.PaceError) as exc:
                print(f"garbled reply: {type(exc).__name__}: {exc}", file=sys.stderr)
                continue
            found.append(slave)
            ident = pace.Identity()
            for count in (30, 20, 10):
                try:
                    ident = pace.decode_identity(link.read(slave, 150, count))
                    break
                except (_NoAnswer, rtu.ModbusError, pace.PaceError):
                    continue
            limits = ""
            try:
                s = pace.decode_settings(link.read(slave, 60, 55))
                limits = (
                    f", CVL {s.charge_voltage_limit} V, DVL {s.discharge_voltage_limit} V, "
                    f"CCL {s.charge_current_limit} A, DCL {s.discharge_current_limit} A"
                )
            except (_NoAnswer, rtu.ModbusError, pace.PaceError):
                pass
            parsed = pace.parse_version(ident.version)
            n = parsed[0] if parsed else sum(1 for v in live.cell_voltages if v)
            cells.add(n)
            print(
                f"{ident.version or '?'} (BMS SN {ident.bms_serial or '?'}, pack SN "
                f"{ident.pack_serial or '?'}), {n} cells, {live.voltage:.2f} V, "
                f"{live.current:+.2f} A, SoC {live.soc} %{limits}",
                file=sys.stderr,
            )
    finally:
        port.close()
    if not found:
        print("no PACE pack answered", file=sys.stderr)
        return 1
    print(f"[pace_modbus.{args.instance}]")
    print(f"port = {json.dumps(args.port)}")
    print(f"baudrate = {args.baudrate}")
    print(f"addresses = {json.dumps(found)}")
    print(f"cells = {max(cells) if cells else 13}")
    return 0


SCANNERS = [
    Scanner(
        "pace-modbus",
        "find PACE BMS / Hubble AM2 packs on a Modbus RTU bus (slave addresses 1..15)",
        _add_arguments,
        _run,
    )
]
