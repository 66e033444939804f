"""``bmslink watch``: a live table of every ``bms/+/state`` on the broker (rich).

Shows each battery and bank with availability, voltage, current, power, SoC, the cell summary,
temperatures, limits and alarms, and the age of its last reading; below it, one row per bank
(members counted/configured, degraded/fail-safe, limits with their source and limiting member,
the override lease, missing members). ``--once N`` collects for N seconds, prints the tables
and exits (0 if at least one state arrived, else 1) — for scripts.
"""

from __future__ import annotations

import argparse
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table

from bmslink import schema, topics


@dataclass
class Device:
    """What the watcher knows of one device."""

    state: schema.BatteryState | schema.BankState | None = None
    info: schema.BatteryInfo | None = None
    availability: str | None = None
    received: float = 0.0


@dataclass
class Board:
    """Thread-safe collection of the latest messages per device id."""

    devices: dict[str, Device] = field(default_factory=dict)
    outputs: dict[tuple[str, str], dict[str, str]] = field(default_factory=dict)
    rejected: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def handle(self, topic: str, payload: bytes) -> None:
        """Store one message (bad payloads are counted, not fatal)."""
        for kind, pattern in (("link", topics.INVERTER_LINK), ("mode", topics.INVERTER_MODE)):
            found = pattern.match(topic)
            if found is not None:
                with self.lock:
                    key = (found["instance"], found["output"])
                    self.outputs.setdefault(key, {})[kind] = payload.decode(errors="replace")
                return
        for pattern in (topics.STATE, topics.INFO, topics.AVAILABILITY):
            found = pattern.match(topic)
            if found is None:
                continue
            with self.lock:
                dev = self.devices.setdefault(found["id"], Device())
                try:
                    if pattern is topics.STATE:
                        if not payload:
                            self.devices.pop(found["id"], None)
                            return
                        dev.state = schema.decode(schema.STATE_DECODER, payload)
                        dev.received = time.time()
                    elif pattern is topics.INFO:
                        dev.info = schema.decode(schema.INFO_DECODER, payload) if payload else None
                    else:
                        dev.availability = payload.decode(errors="replace")
                except schema.MessageError:
                    self.rejected += 1
            return


def _fmt(value: float | None, digits: int = 2, unit: str = "") -> str:
    return "–" if value is None else f"{value:.{digits}f}{unit}"


def render(board: Board, title: str) -> Table:
    """The table of every device, batteries first, then banks."""
    table = Table(title=title, expand=False, header_style="bold")
    for name, justify in [
        ("id", "left"),
        ("kind", "left"),
        ("avail", "left"),
        ("V", "right"),
        ("A", "right"),
        ("W", "right"),
        ("SoC %", "right"),
        ("cells min/max V", "right"),
        ("Δ mV", "right"),
        ("T °C", "right"),
        ("CCL/DCL A", "right"),
        ("E in/out kWh", "right"),
        ("alarms", "left"),
        ("age s", "right"),
    ]:
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    now = time.time()
    with board.lock:
        items = sorted(
            board.devices.items(), key=lambda kv: (isinstance(kv[1].state, schema.BankState), kv[0])
        )
        for dev_id, dev in items:
            s = dev.state
            if s is None:
                table.add_row(dev_id, "?", dev.availability or "?", *[""] * 11)
                continue
            avail = dev.availability or "?"
            style = "green" if avail == "online" else "red"
            kind = "bank" if isinstance(s, schema.BankState) else "battery"
            if isinstance(s, schema.BankState):
                kind = f"bank {len(s.members_online)}/{len(s.members)}" + (
                    " FAILSAFE" if s.failsafe else ""
                )
            cells = f"{_fmt(s.cell_min, 3)}/{_fmt(s.cell_max, 3)}"
            delta = "–" if s.cell_delta is None else f"{s.cell_delta * 1000:.0f}"
            temps = f"{_fmt(s.temperature_min, 1)}..{_fmt(s.temperature_max, 1)}"
            limits = f"{_fmt(s.charge_current_limit, 0)}/{_fmt(s.discharge_current_limit, 0)}"
            energy = f"{_fmt(s.energy_charged, 3)}/{_fmt(s.energy_discharged, 3)}"
            alarms = ", ".join(s.alarms) or ("warn: " + ", ".join(s.warnings) if s.warnings else "")
            table.add_row(
                dev_id,
                kind,
                f"[{style}]{avail}[/]",
                _fmt(s.voltage, 2),
                _fmt(s.current, 1),
                _fmt(s.power, 0),
                _fmt(s.soc, 1),
                cells,
                delta,
                temps,
                limits,
                energy,
                alarms,
                f"{now - s.ts:.1f}",
            )
    if board.rejected:
        table.caption = f"{board.rejected} malformed message(s) ignored"
    return table


def _limit(value: float | None, source: str | None, by: str | None, enabled: bool | None) -> str:
    text = _fmt(value, 1) + ("" if enabled is not False else " off")
    return text + f" ({source or '?'}{', ' + by if by else ''})"


def render_banks(board: Board) -> Table | None:
    """One row per bank: members counted/configured, state, limits with their source, the
    override lease and the missing members; None when there is no bank."""
    now = time.time()
    with board.lock:
        banks = sorted(
            (dev_id, dev.state)
            for dev_id, dev in board.devices.items()
            if isinstance(dev.state, schema.BankState)
        )
    if not banks:
        return None
    table = Table(title="banks", expand=False, header_style="bold")
    for name in ("bank", "members", "state", "CVL/DVL V", "CCL A", "DCL A", "override", "missing"):
        table.add_column(name)
    for dev_id, s in banks:
        if s.failsafe:
            status = "[red]FAILSAFE[/]"
        elif s.degraded:
            status = "[yellow]degraded[/]"
        else:
            status = "[green]ok[/]"
        lease = "–" if s.override_expires is None else f"{max(0.0, s.override_expires - now):.0f} s"
        missing = [m for m in s.members if m not in s.members_online]

        table.add_row(
            dev_id,
            f"{len(s.members_online)}/{len(s.members)}",
            status,
            f"{_fmt(s.charge_voltage_limit, 2)}/{_fmt(s.discharge_voltage_limit, 2)}",
            _limit(
                s.charge_current_limit, s.charge_limit_source, s.charge_limited_by, s.charge_enabled
            ),
            _limit(
                s.discharge_current_limit,
                s.discharge_limit_source,
                s.discharge_limited_by,
                s.discharge_enabled,
            ),
            lease,
            ", ".join(missing),
        )
    return table


def render_outputs(board: Board) -> Table | None:
    """The inverter outputs of the CAN emulator: link (0x305 seen) and mode (bank or fail-safe)."""
    with board.lock:
        outputs = sorted(board.outputs.items())
    if not outputs:
        return None
    table = Table(title="inverter outputs (can-inverter-emulator)", header_style="bold")
    for name in ("emulator", "output", "inverter link", "frames"):
        table.add_column(name)
    for (instance, output), values in outputs:
        link = values.get("link", "?")
        mode = values.get("mode", "?")
        table.add_row(
            instance,
            output,
            f"[{'green' if link == 'up' else 'red'}]{link}[/]",
            f"[{'green' if mode == 'normal' else 'red'}]{'bank' if mode == 'normal' else mode}[/]",
        )
    return table


def view(board: Board, title: str) -> RenderableType:
    """The device table, then the bank and inverter-output tables when there are any."""
    parts = [render(board, title), render_banks(board), render_outputs(board)]
    shown = [p for p in parts if p is not None]
    return shown[0] if len(shown) == 1 else Group(*shown)


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register the ``watch`` sub-command."""
    p = sub.add_parser("watch", help="live table of every bms/+/state on the broker")
    p.add_argument("--host", default=os.environ.get("BMSLINK_MQTT_HOST", "localhost"))
    p.add_argument("--port", type=int, default=int(os.environ.get("BMSLINK_MQTT_PORT", "1883")))
    p.add_argument("--username", default=os.environ.get("BMSLINK_MQTT_USERNAME"))
    p.add_argument("--password", default=os.environ.get("BMSLINK_MQTT_PASSWORD"))
    p.add_argument(
        "--once",
        type=float,
        default=None,
        metavar="SECONDS",
        help="print one table after SECONDS and exit",
    )
    p.add_argument(
        "--duration", type=float, default=None, metavar="SECONDS", help="stop after SECONDS"
    )
    p.set_defaults(func=run)


def wait_first_state(host: str, port: int, timeout: float) -> str | None:
    """Block until any ``bms/+/state`` arrives; return its topic, or None after ``timeout`` s."""
    got: list[str] = []
    event = threading.Event()
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"bmslink-wait-{os.getpid()}")
    client.on_connect = lambda c, *_: c.subscribe("bms/+/state")

    def on_message(_c: paho.Client, _u: Any, m: paho.MQTTMessage) -> None:
        got.append(m.topic)
        event.set()

    client.on_message = on_message
    client.connect_async(host, port)
    client.loop_start()
    try:
        event.wait(timeout)
        return got[0] if got else None
    finally:
        client.disconnect()
        client.loop_stop()


def run(args: argparse.Namespace) -> int:
    """Subscribe and show the table until Ctrl-C (or once)."""
    board = Board()
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"bmslink-watch-{os.getpid()}")
    if args.username:
        client.username_pw_set(args.username, args.password)

    def on_connect(c: paho.Client, *_: Any) -> None:
        c.subscribe(
            [
                ("bms/+/state", 0),
                ("bms/+/info", 0),
                ("bms/+/availability", 0),
                (topics.INVERTER_LINK.subscription, 0),
                (topics.INVERTER_MODE.subscription, 0),
            ]
        )

    client.on_connect = on_connect
    client.on_message = lambda _c, _u, m: board.handle(m.topic, bytes(m.payload))
    client.reconnect_delay_set(1, 5)
    client.connect_async(args.host, args.port)
    client.loop_start()
    title = f"bmslink — {args.host}:{args.port}"
    console = Console()
    if not console.is_terminal:
        console = Console(width=160)
    try:
        if args.once is not None:
            time.sleep(args.once)
            console.print(view(board, title))
            return 0 if any(d.state for d in board.devices.values()) else 1
        end = None if args.duration is None else time.monotonic() + args.duration
        if not console.is_terminal:
            # Not a terminal (a pipe, a log): a full table every 5 s instead of a live view.
            while end is None or time.monotonic() < end:
                time.sleep(5 if end is None else max(0.0, min(5.0, end - time.monotonic())))
                console.print(view(board, title))
            return 0
        with Live(view(board, title), console=console, refresh_per_second=2, screen=False) as live:
            while end is None or time.monotonic() < end:
                time.sleep(0.5)
                live.update(view(board, title))
        return 0
    except KeyboardInterrupt:
        return 0
    finally:
        client.disconnect()
        client.loop_stop()
