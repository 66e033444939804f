"""``bmslink-sim-daly``: simulated Daly boards (A5, D2, 0x81) on a pty, TCP, or mocked BLE.

Serial: serves :class:`~battery_simulator.daly.A5Responder` (``--boards`` boards on one bus) or
:class:`~battery_simulator.daly.ModbusResponder` on a pty and/or a TCP port, paced at the baud
rate (9600 Bd, doc §3.1). BLE (``--ble``): plays the boards through python-dbusmock's bluez5
mock on the D-Bus at ``--bus-address`` (default ``$DBUS_SYSTEM_BUS_ADDRESS``); the bus and the
mock must run. Prints ``READY pty=<path|-> tcp=<host:port|-> ble=<MAC,...|->`` when it serves;
exits 0 on SIGTERM/SIGINT, 2 on bad arguments, 1 when a line cannot be opened.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import threading
from collections.abc import Callable, Sequence

from battery_simulator.cli_common import (
    ServedLines,
    add_line_arguments,
    cannot_open,
    line_options,
    setup_logging,
    stop_signals,
)
from battery_simulator.daly import (
    A5Framer,
    A5Responder,
    DalyPack,
    Faults,
    ModbusFramer,
    ModbusResponder,
)
from battery_simulator.line import Framer

__all__ = ["build_parser", "main"]

log = logging.getLogger("battery_simulator.daly")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``bmslink-sim-daly``."""
    p = argparse.ArgumentParser(
        prog="bmslink-sim-daly",
        description="Serve simulated Daly BMS boards (A5, D2, 0x81) on a pty, TCP or mocked BLE.",
    )
    p.add_argument("--protocol", choices=["a5", "d2", "p81"], default="a5")
    p.add_argument("--boards", type=int, default=1, help="A5: boards on the bus (1..16)")
    p.add_argument("--board", type=int, default=1, help="0x81: the board number")
    p.add_argument("--cells", type=int, default=16, help="cells in series (1..48)")
    p.add_argument("--sensors", type=int, default=2, help="temperature sensors (1..8)")
    p.add_argument("--capacity", type=float, default=280.0, help="Ah")
    p.add_argument("--soc", type=float, default=80.0, help="initial SoC, %%")
    p.add_argument("--current", type=float, default=None, help="constant current, A (+ = charging)")
    p.add_argument("--amplitude", type=float, default=20.0, help="sine current amplitude, A")
    p.add_argument("--period", type=float, default=600.0, help="sine current period, s")
    p.add_argument("--all-frames", action="store_true", help="A5: 0x95/0x96 send 16/3 frames")
    add_line_arguments(p)
    p.add_argument("--baud", type=int, default=9600)
    p.add_argument("--ble", action="store_true", help="serve over the mocked BlueZ")
    p.add_argument("--bus-address", default=None, help="D-Bus address of the mocked BlueZ")
    p.add_argument("--mac", default="AA:BB:CC:DD:A5:01", help="BLE address of the first board")
    p.add_argument("--name", default="DL-SIM", help="BLE advertised name of the first board")
    p.add_argument("--garbage", default="", help="hex bytes sent before every reply")
    p.add_argument("--bad-crc-every", type=int, default=0, help="corrupt every n-th reply")
    p.add_argument("--split", type=int, default=0, help="BLE: notification size limit, bytes")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--log-level", default="INFO")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run until SIGTERM/SIGINT; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(args.log_level)
    tcp = line_options(parser, args, required=False)
    try:
        faults = Faults(
            garbage=bytes.fromhex(args.garbage),
            bad_checksum_every=args.bad_crc_every,
            split=args.split,
        )
        if not 1 <= args.cells <= 48 or not 1 <= args.sensors <= 8 or not 1 <= args.boards <= 16:
            raise ValueError("--cells 1..48, --sensors 1..8, --boards 1..16")
    except ValueError as exc:
        parser.error(str(exc))
    if not (args.pty or args.pty_link or tcp or args.ble):
        parser.error("give --pty, --pty-link, --tcp and/or --ble")

    def pack(k: int) -> DalyPack:
        return DalyPack(
            cells=args.cells,
            sensors=args.sensors,
            capacity=args.capacity,
            soc=args.soc,
            current=args.current,
            amplitude=args.amplitude,
            period=args.period,
            seed=args.seed + k,
        )

    responder: A5Responder | ModbusResponder
    framer_factory: type[A5Framer] | None = None
    if args.protocol == "a5":
        responder = A5Responder(
            {k: pack(k) for k in range(1, args.boards + 1)},
            all_frames=args.all_frames or args.ble,
            faults=faults,
        )
        framer_factory = A5Framer
    else:
        responder = ModbusResponder(
            pack(1), protocol=args.protocol, board=args.board, faults=faults
        )

    def framer() -> Framer:
        if framer_factory is not None:
            return framer_factory()
        return ModbusFramer({0xD2} if args.protocol == "d2" else {0x80 + args.board})

    with stop_signals() as stop:
        try:
            served = ServedLines.open(
                responder,
                pty=args.pty,
                pty_link=args.pty_link,
                tcp=tcp,
                framer=framer,
                baud=args.baud,
            )
        except OSError as exc:
            return cannot_open("bmslink-sim-daly", exc)
        with served:
            ble_text = "-"
            ble_thread: threading.Thread | None = None
            try:
                if args.ble:
                    address = args.bus_address or os.environ.get("DBUS_SYSTEM_BUS_ADDRESS")
                    if not address:
                        parser.error("--ble needs --bus-address or DBUS_SYSTEM_BUS_ADDRESS")
                    ready = threading.Event()
                    ble_thread = threading.Thread(
                        target=_serve_ble,
                        args=(address, args.mac, args.name, responder, framer, stop, ready),
                        daemon=True,
                    )
                    ble_thread.start()
                    if not ready.wait(15):
                        print("bmslink-sim-daly: the mocked BlueZ did not answer", file=sys.stderr)
                        stop.set()
                        return 1
                    ble_text = args.mac
                served.print_ready(ble=ble_text)
                while not stop.wait(0.2):
                    pass
            finally:
                if ble_thread is not None:
                    ble_thread.join(5)
        return 0


def _serve_ble(
    address: str,
    mac: str,
    name: str,
    responder: A5Responder | ModbusResponder,
    framer: Callable[[], Framer],
    stop: threading.Event,
    ready: threading.Event,
) -> None:
    from battery_simulator.daly_ble import BleBoard, BlePeripheral

    async def serve() -> None:
        board = BleBoard(mac, name, responder, framer())
        peripheral = BlePeripheral(address, [board])
        await peripheral.start()
        ready.set()
        try:
            while not stop.is_set():
                await asyncio.sleep(0.2)
        finally:
            await peripheral.stop()

    try:
        asyncio.run(serve())
    except Exception:
        log.exception("BLE peripheral failed")


if __name__ == "__main__":
    sys.exit(main())
