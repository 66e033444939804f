"""The polling loop (asyncio): links, protocol detection, availability, MOSFET commands.

No MQTT here: results go to a :class:`Sink` (the MQTT publisher in production). Protocol and
behaviour facts: ../shared/protocols/daly.md §2 (detection, remembered per device), §3.1 (serial
timing), §3.2/§3.3 (BLE: reconnect with back-off, sleep, write mode), §7.6 (MOSFET writes).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from bmslink import schema
from bmslink.derived import complete
from bmslink.energy import EnergyStore
from bmslink.mqtt import RETAINED_COMMAND_REFUSED
from bmslink.publisher import Availability
from bmslink.schema import BatteryInfo, BatteryState, SetResult, SwitchCommand
from daly_ble_reader.channel import Channel, Stats
from daly_ble_reader.config import DalyConfig, DeviceConfig
from daly_ble_reader.handlers import (
    HANDLERS,
    PROTOCOL_NAMES,
    A5Handler,
    Handler,
    Memory,
    Reading,
    SwitchRefusedError,
    detect,
)
from daly_ble_reader.transport import BleLink, CaptureWriter, Link, LinkError, SerialLink

log = logging.getLogger(__name__)

SERVICE = "daly-ble-reader"


class Sink(Protocol):
    """Where the poller's results go (the MQTT publisher in production)."""

    def state(self, state: BatteryState) -> None:
        """A new reading of one device."""

    def availability(self, device_id: str, online: bool) -> None:
        """A device started or stopped answering."""

    def info(self, info: BatteryInfo) -> None:
        """A device's identity (first answer, or changed)."""

    def result(self, device_id: str, result: SetResult) -> None:
        """The answer to a command on ``bms/<id>/set``."""


class DeviceStore:
    """Remembered per-device facts (detected protocol, A5 host and polarity, BLE write mode) in
    ``<state_dir>/<name>-devices.json``; written atomically, unreadable files are ignored."""

    def __init__(self, state_dir: str | os.PathLike[str], name: str) -> None:
        self.path = Path(state_dir) / f"{name}-devices.json"
        self.data: dict[str, dict[str, Any]] = {}
        try:
            loaded = json.loads(self.path.read_text())
            if isinstance(loaded, dict):
                self.data = {k: v for k, v in loaded.items() if isinstance(v, dict)}
        except (OSError, ValueError):
            pass

    def memory(self, key: str) -> Memory:
        """The remembered facts of device ``key`` (empty when unknown)."""
        d = self.data.get(key, {})
        return Memory(
            protocol=d.get("protocol") if d.get("protocol") in HANDLERS else None,
            host=d.get("host") if isinstance(d.get("host"), int) else None,
            invert_current=d.get("invert_current")
            if isinstance(d.get("invert_current"), bool)
            else None,
            write_response=d.get("write_response")
            if isinstance(d.get("write_response"), bool)
            else None,
        )

    def save(self, key: str, memory: Memory) -> None:
        """Remember ``memory`` for ``key`` (best effort: a failure is logged)."""
        self.data[key] = memory.as_dict()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".daly-")
            with os.fdopen(fd, "w") as fh:
                json.dump(self.data, fh, indent=1, sort_keys=True)
            os.replace(tmp, self.path)
        except OSError as exc:
            log.warning("cannot save %s: %s", self.path, exc)


@dataclass
class Device:
    """One configured BMS and its runtime state."""

    cfg: DeviceConfig
    memory: Memory
    availability: Availability
    link: Link
    handler: Handler | None = None
    channel: Channel | None = None
    info: BatteryInfo | None = None
    pending: list[SwitchCommand] = field(default_factory=list)
    next_connect: float = 0.0
    backoff: float = 1.0
    next_detect: float = 0.0

    @property
    def key(self) -> str:
        """Store key: BLE address/name or serial board, plus the id."""
        return self.cfg.id


class Poller:
    """Polls every device of one adapter and publishes through ``sink``."""

    def __init__(
        self,
        cfg: DalyConfig,
        sink: Sink,
        energy: EnergyStore,
        instance: str,
        store: DeviceStore,
        capture: CaptureWriter | None = None,
        link_factory: Callable[[DeviceConfig], Link] | None = None,
    ) -> None:
        self.cfg = cfg
        self.sink = sink
        self.energy = energy
        self.instance = instance
        self.store = store
        self.capture = capture
        self.stats = Stats()
        self.ble = cfg.transport == "ble"
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        shared: Link | None = None
        if not self.ble:
            assert cfg.port is not None
            shared = SerialLink(cfg.port, cfg.baudrate, capture)
        self.devices: dict[str, Device] = {}
        for dcfg in cfg.devices:
            if link_factory is not None:
                link = link_factory(dcfg)
            elif shared is not None:
                link = shared
            else:
                link = BleLink(
                    dcfg.address,
                    dcfg.name,
                    adapter=cfg.adapter,
                    connect_timeout=cfg.connect_timeout,
                    capture=capture,
                )
            self.devices[dcfg.id] = Device(
                dcfg,
                store.memory(dcfg.id),
                Availability(dcfg.id, cfg.offline_after),
                link,
            )

    # --- commands (MQTT thread → loop) ----------------------------------------------------------

    def submit(self, device_id: str, payload: bytes) -> None:
        """Handle a payload of ``bms/<id>/set`` (any thread): refuse it at once with a result, or
        queue it for the loop (the result follows the next state)."""
        try:
            command: SwitchCommand = schema.decode(schema.SWITCH_DECODER, payload)
        except schema.MessageError as exc:
            self.stats.refused["bad_command"] += 1
            self._result(device_id, False, f"bad command: {exc}")
            return
        if device_id not in self.devices:
            self._result(device_id, False, "unknown device")
            return
        if not self.cfg.control:
            self._result(
                device_id,
                False,
                f"MOSFET control is disabled (set `control = true` in [daly.{self.instance}])",
            )
            return
        if command.charge_enabled is None and command.discharge_enabled is None:
            self._result(device_id, False, "nothing to do: give charge_enabled/discharge_enabled")
            return
        loop = self._loop
        if loop is None or loop.is_closed():
            self._result(device_id, False, "the reader is not running")
            return
        loop.call_soon_threadsafe(self._enqueue, device_id, command)

    def refuse_retained(self, device_id: str) -> None:
        """Answer a retained ``bms/<id>/set`` (any thread): never applied, counted as
        ``refused.retained_command``, ``ok: false`` on ``bms/<id>/set/result``."""
        self.stats.refused["retained_command"] += 1
        self._result(device_id, False, RETAINED_COMMAND_REFUSED)

    def _enqueue(self, device_id: str, command: SwitchCommand) -> None:
        self.devices[device_id].pending.append(command)
        if self._wake is not None:
            self._wake.set()

    def _result(self, device_id: str, ok: bool, error: str | None = None) -> None:
        self.sink.result(device_id, SetResult(ok=ok, ts=time.time(), error=error))

    # --- the loop ------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Poll until ``stop`` is set, then report every device offline and close the links."""
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        try:
            if self.ble and self.cfg.concurrent and len(self.devices) > 1:
                await asyncio.gather(*(self._device_loop(d, stop) for d in self.devices.values()))
            else:
                await self._sequential(stop)
        finally:
            await self.shutdown()

    async def _sequential(self, stop: asyncio.Event) -> None:
        one_at_a_time = self.ble and len(self.devices) > 1
        while not stop.is_set():
            started = time.monotonic()
            for device in self.devices.values():
                if stop.is_set():
                    return
                await self.poll_device(device)
                if one_at_a_time:
                    await device.link.close()
            await self._pause(stop, started)

    async def _device_loop(self, device: Device, stop: asyncio.Event) -> None:
        while not stop.is_set():
            started = time.monotonic()
            await self.poll_device(device)
            await self._pause(stop, started)

    async def _pause(self, stop: asyncio.Event, started: float) -> None:
        wake = self._wake
        assert wake is not None
        remaining = self.cfg.poll_interval - (time.monotonic() - started)
        if remaining <= 0 or any(d.pending for d in self.devices.values()):
            return
        wake.clear()
        stopper = asyncio.ensure_future(stop.wait())
        waker = asyncio.ensure_future(wake.wait())
        try:
            await asyncio.wait({stopper, waker}, timeout=remaining, return_when="FIRST_COMPLETED")
        finally:
            stopper.cancel()
            waker.cancel()

    # --- one device ----------------------------------------------------------------------------

    async def poll_device(self, device: Device) -> None:
        """Connect if needed, detect the protocol if unknown, run pending commands, read and
        publish one state. Never raises for what happens on the link."""
        try:
            if not await self._connected(device):
                return
            handler = await self._handler(device)
            if handler is None:
                return
            assert device.channel is not None
            switched = await self._run_commands(device, handler, device.channel)
            reading = await handler.read(device.channel)
            if reading is None:
                self._failed(device)
                await self._check_stale(device)
                if isinstance(handler, A5Handler) and not (
                    device.cfg.host_address or device.memory.host
                ):
                    handler.host = 0x80 if handler.host == 0x40 else 0x40
                for _command in switched:
                    self._result(device.cfg.id, False, "no state after the command")
                return
            self._publish(device, reading)
            for command in switched:
                self._acknowledge(device.cfg.id, command, reading.state)
        except LinkError as exc:
            self._link_failed(device, exc)
        except Exception:
            self.stats.refused["internal_error"] += 1
            log.exception("%s: poll failed", device.cfg.id)
            self._failed(device)

    async def _connected(self, device: Device) -> bool:
        link = device.link
        if link.is_open:
            return True
        now = time.monotonic()
        if now < device.next_connect:
            self._failed(device)
            return False
        try:
            await link.open()
        except LinkError as exc:
            self._link_failed(device, exc)
            return False
        if self.ble:
            self.stats.reconnects += 1
        device.backoff = 1.0
        if device.channel is not None:
            device.channel.last_rx = time.monotonic()
        return True

    def _link_failed(self, device: Device, exc: LinkError) -> None:
        self.stats.link_errors += 1
        now = time.monotonic()
        log.warning("%s: %s; retrying in %.0f s", device.cfg.id, exc, device.backoff)
        devices = list(self.devices.values()) if not self.ble else [device]
        for d in devices:
            d.next_connect = now + device.backoff
            if self.ble:
                self._failed(d)
            else:
                self._report(d, d.availability.lost())
        device.backoff = min(device.backoff * 2, self.cfg.reconnect_max)

    async def _check_stale(self, device: Device) -> None:
        """A BLE link that is connected but silent for ``stale_after`` s is torn down (doc §3.3:
        the module may also just be asleep; reconnecting is what wakes most of them)."""
        ch = device.channel
        if not self.ble or ch is None or not device.link.is_open:
            return
        if time.monotonic() - ch.last_rx >= self.cfg.stale_after:
            self.stats.stale_links += 1
            log.warning("%s: link connected but silent; reconnecting", device.cfg.id)
            await device.link.close()

    def _channel(self, device: Device) -> Channel:
        if device.channel is None:

            def remember_mode(mode: bool) -> None:
                device.memory.write_response = mode
                self.store.save(device.key, device.memory)

            device.channel = Channel(
                device.link,
                self.stats,
                timeout=self.cfg.reply_timeout,
                retries=self.cfg.retries,
                gap=0.0 if self.ble else self.cfg.command_gap,
                ble=self.ble,
                write_response=device.memory.write_response,
                on_write_mode=remember_mode,
            )
            device.channel.last_rx = time.monotonic()
        return device.channel

    async def _handler(self, device: Device) -> Handler | None:
        if device.handler is not None:
            return device.handler
        ch = self._channel(device)
        protocol = device.cfg.protocol if device.cfg.protocol != "auto" else device.memory.protocol
        if protocol is None:
            now = time.monotonic()
            if now < device.next_detect:
                self._failed(device)
                return None
            link = device.link

            async def kick() -> None:
                await link.write(b"", response=False)

            found = await detect(ch, device.cfg, self.cfg, kick if self.ble else None)
            if found is None:
                log.info("%s: no Daly protocol answered (asleep?); retrying later", device.cfg.id)
                device.next_detect = now + min(60.0, self.cfg.poll_interval * 4)
                self._failed(device)
                return None
            protocol, host = found
            device.memory.protocol = protocol
            if host is not None:
                device.memory.host = host
            self.store.save(device.key, device.memory)
            log.info("%s: detected %s", device.cfg.id, PROTOCOL_NAMES[protocol])

        def remember() -> None:
            self.store.save(device.key, device.memory)

        device.handler = HANDLERS[protocol](
            device.cfg, self.cfg, self.stats, device.memory, remember
        )
        return device.handler

    async def _run_commands(
        self, device: Device, handler: Handler, ch: Channel
    ) -> list[SwitchCommand]:
        done: list[SwitchCommand] = []
        while device.pending:
            command = device.pending.pop(0)
            try:
                if command.charge_enabled is not None:
                    await handler.switch(ch, True, command.charge_enabled)
                if command.discharge_enabled is not None:
                    await handler.switch(ch, False, command.discharge_enabled)
            except SwitchRefusedError as exc:
                self._result(device.cfg.id, False, str(exc))
                continue
            done.append(command)
        return done

    def _acknowledge(self, device_id: str, command: SwitchCommand, state: BatteryState) -> None:
        wrong = [
            name
            for name, wanted, got in (
                ("charge_enabled", command.charge_enabled, state.charge_switch),
                ("discharge_enabled", command.discharge_enabled, state.discharge_switch),
            )
            if wanted is not None and got is not None and wanted != got
        ]
        if wrong:
            self._result(device_id, False, f"the BMS still reports {', '.join(wrong)} unchanged")
        else:
            self._result(device_id, True)

    # --- results -------------------------------------------------------------------------------

    def _failed(self, device: Device) -> None:
        self._report(device, device.availability.failed())

    def _report(self, device: Device, change: bool | None) -> None:
        if change is not None:
            self.sink.availability(device.cfg.id, change)

    def _publish(self, device: Device, reading: Reading) -> None:
        assert device.handler is not None
        info = BatteryInfo(
            id=device.cfg.id,
            manufacturer="Daly",
            model=reading.model,
            firmware=reading.firmware,
            hardware=reading.hardware,
            cell_count=reading.cell_count,
            design_capacity=reading.design_capacity,
            protocol=device.handler.protocol,
            transport=device.link.describe(),
            address=device.cfg.board,
            service=SERVICE,
            instance=self.instance,
        )
        if info != device.info:
            device.info = info
            self.sink.info(info)
        self._report(device, device.availability.answered())
        self.sink.state(complete(reading.state, self.energy.counter(device.cfg.id)))
        self.energy.maybe_save()

    async def shutdown(self) -> None:
        """Report every device offline, save counters, close the links."""
        for device in self.devices.values():
            if device.availability.online:
                self._report(device, device.availability.lost())
        self.energy.save()
        for device in self.devices.values():
            with contextlib.suppress(Exception):
                await device.link.close()
