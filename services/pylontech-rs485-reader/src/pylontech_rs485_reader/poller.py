"""Polling logic: requests, retries, per-pack availability and the mapping to the schema.

No MQTT here: results go to a :class:`Sink`, so the logic is testable with a fake sink and a
real simulator. Protocol facts: ../shared/protocols/pylontech-rs485.md §5 (RTN), §7 (addresses),
§8.4 (0x42), §10.3 (timing).
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from bmslink.derived import EnergyStore, complete
from bmslink.protocols import pylontech_rs485 as pylon
from bmslink.publisher import Availability
from bmslink.schema import BatteryInfo, BatteryState
from pylontech_rs485_reader.config import BusConfig
from pylontech_rs485_reader.transport import LinkError, SerialTransport

log = logging.getLogger(__name__)

PROTOCOL = "pylontech-rs485"
T = TypeVar("T")
STACK_ALL = 0xFF


class Sink(Protocol):
    """Where the poller's results go (the MQTT publisher in production)."""

    def state(self, state: BatteryState) -> None:
        """A new reading of one pack."""

    def availability(self, device_id: str, online: bool) -> None:
        """A pack started or stopped answering."""

    def info(self, info: BatteryInfo) -> None:
        """A pack's identity (first answer, or changed)."""


@dataclass
class Pack:
    """One pack on the bus: its address, id, availability and last published identity."""

    address: int
    id: str
    availability: Availability
    info: BatteryInfo | None = None


@dataclass
class Stats:
    """Counters of requests, answers and refused frames (by error type)."""

    requests: int = 0
    answers: int = 0
    timeouts: int = 0
    link_errors: int = 0
    refused: collections.Counter[str] = field(default_factory=collections.Counter)

    def as_dict(self) -> dict[str, object]:
        """JSON-ready view."""
        return {
            "requests": self.requests,
            "answers": self.answers,
            "timeouts": self.timeouts,
            "link_errors": self.link_errors,
            "refused": dict(self.refused),
        }


class Poller:
    """Polls the packs of one bus with 0x42 and reports states and availability."""

    def __init__(
        self,
        bus: BusConfig,
        transport: SerialTransport,
        sink: Sink,
        energy: EnergyStore,
        instance: str,
        stop: threading.Event | None = None,
    ) -> None:
        self.bus = bus
        self.transport = transport
        self.sink = sink
        self.energy = energy
        self.instance = instance
        self.stop = stop or threading.Event()
        self.stats = Stats()
        self.packs: dict[int, Pack] = {}
        for address in bus.addresses:
            self.pack_for(address)
        self._last_command = 0.0
        self._link_down_since: float | None = None
        self._reopen_delay = 1.0
        self._next_open = 0.0

    def pack_for(self, address: int) -> Pack:
        """The pack at ``address`` (created for modules found beyond the configured ones)."""
        found = self.packs.get(address)
        if found is None:
            prefix = self.bus.id_prefix or self.instance
            device_id = self.bus.ids.get(str(address), f"{prefix}-{address}")
            found = Pack(address, device_id, Availability(device_id, self.bus.offline_after))
            self.packs[address] = found
        return found

    # --- one cycle -------------------------------------------------------------------------

    def poll_once(self) -> None:
        """Poll every pack once (or the group once in ``ff`` mode)."""
        if not self._link_ready():
            return
        try:
            if self.bus.stack_query == "ff":
                self._poll_stack(self.bus.addresses[0])
            else:
                for address in self.bus.addresses:
                    if self.stop.is_set():
                        return
                    self._poll_pack(address)
        except LinkError as exc:
            self._link_failed(exc)

    def _link_ready(self) -> bool:
        if self.transport.is_open:
            return True
        now = time.monotonic()
        if now < self._next_open:
            return False
        try:
            self.transport.open()
        except LinkError as exc:
            self._link_failed(exc)
            return False
        self._reopen_delay = 1.0
        if self._link_down_since is not None:
            log.info("%s is back after %.1f s", self.transport.url, now - self._link_down_since)
            self._link_down_since = None
        return True

    def _link_failed(self, exc: LinkError) -> None:
        self.stats.link_errors += 1
        now = time.monotonic()
        if self._link_down_since is None:
            self._link_down_since = now
            log.warning("%s; packs offline, reopening with back-off", exc)
        self._next_open = now + self._reopen_delay
        self._reopen_delay = min(self._reopen_delay * 2, 30.0)
        for pack in self.packs.values():
            self._report(pack, pack.availability.lost())

    def _poll_pack(self, address: int) -> None:
        pack = self.pack_for(address)
        analog = self._request(address, pylon.Cid2.ANALOG, bytes([address]), _decode_single)
        if analog is None:
            self._failed(pack)
            return
        self._publish_module(pack, analog.modules[0], analog.info_flag)

    def _poll_stack(self, master: int) -> None:
        analog = self._request(master, pylon.Cid2.ANALOG, bytes([STACK_ALL]), _decode_stack)
        if analog is None:
            for pack in self.packs.values():
                self._failed(pack)
            return
        seen = set()
        for i, module in enumerate(analog.modules):
            pack = self.pack_for(master + i)
            seen.add(pack.address)
            self._publish_module(pack, module, analog.info_flag)
        for pack in self.packs.values():
            if pack.address not in seen:
                self._failed(pack)

    def _request(
        self, address: int, cid2: int, info: bytes, decode: Callable[[pylon.Frame], T]
    ) -> T | None:
        """Send one command with retries; returns ``decode(frame)`` of the first verified answer,
        or None. Every refused frame is logged and counted by its error type; RTN errors that
        are not retryable (§5) end the attempts at once.
        """
        request = pylon.build_request(address, cid2, info)
        for attempt in range(self.bus.retries + 1):
            self._respect_gap()
            self.stats.requests += 1
            raw = self.transport.exchange(request, self.bus.timeout)
            self._last_command = time.monotonic()
            if raw is None:
                self.stats.timeouts += 1
                log.debug("ADR %d CID2 0x%02X: no answer (attempt %d)", address, cid2, attempt + 1)
                continue
            try:
                frame = pylon.parse_response(raw)
                if frame.adr != address:
                    raise pylon.FrameError(f"answer from ADR {frame.adr}, expected {address}")
                result = decode(frame)
            except pylon.RtnError as exc:
                self.stats.refused[type(exc).__name__] += 1
                log.warning("ADR %d CID2 0x%02X: %s", address, cid2, exc)
                if not exc.retryable:
                    return None
                continue
            except pylon.PylontechError as exc:
                self.stats.refused[type(exc).__name__] += 1
                log.warning("ADR %d CID2 0x%02X: refused frame: %s", address, cid2, exc)
                continue
            self.stats.answers += 1
            return result
        return None

    def _respect_gap(self) -> None:
        wait = self._last_command + self.bus.command_gap - time.monotonic()
        if wait > 0:
            self.stop.wait(wait)

    # --- results ---------------------------------------------------------------------------

    def _failed(self, pack: Pack) -> None:
        self._report(pack, pack.availability.failed())

    def _report(self, pack: Pack, change: bool | None) -> None:
        if change is not None:
            self.sink.availability(pack.id, change)

    def _publish_module(self, pack: Pack, module: pylon.ModuleAnalog, info_flag: int) -> None:
        cell_count = len(module.cell_voltages)
        if pack.info is None or pack.info.cell_count != cell_count:
            pack.info = BatteryInfo(
                id=pack.id,
                manufacturer="Pylontech",
                cell_count=cell_count,
                design_capacity=round(module.full_capacity, 3) or None,
                protocol=PROTOCOL,
                transport=self.transport.url,
                address=pack.address,
                service="pylontech-rs485-reader",
                instance=self.instance,
            )
            self.sink.info(pack.info)
        self._report(pack, pack.availability.answered())
        self.sink.state(
            complete(module_state(pack.id, module, info_flag), self.energy.counter(pack.id))
        )
        self.energy.maybe_save()

    def shutdown(self) -> None:
        """Report every pack offline (nobody reads them any more) and save the counters."""
        for pack in self.packs.values():
            if pack.availability.online:
                self._report(pack, pack.availability.lost())
        self.energy.save()
        self.transport.close()


def module_state(device_id: str, module: pylon.ModuleAnalog, info_flag: int) -> BatteryState:
    """Map one decoded 0x42 module block to a :class:`BatteryState` (schema units).

    Temperatures (V3.3 p.15): T1 is the BMS board, T2..T5 the cell groups, T6 (US5000) the
    MOSFET. ``temperatures`` lists the cell-group sensors. SoC = remaining / total (0x42 carries
    no SoC, reference §8.4).
    """
    temps = module.temperatures
    soc = None
    if module.full_capacity > 0:
        soc = round(min(100.0, max(0.0, module.remaining_capacity / module.full_capacity * 100)), 1)
    return BatteryState(
        id=device_id,
        ts=time.time(),
        voltage=module.voltage,
        current=module.current,
        soc=soc,
        remaining_capacity=module.remaining_capacity,
        full_capacity=module.full_capacity,
        cycles=module.cycles,
        cell_voltages=list(module.cell_voltages),
        temperatures=list(temps[1:5]),
        bms_temperature=temps[0] if temps else None,
        mosfet_temperature=temps[5] if len(temps) > 5 else None,
        raw_status={"info_flag": info_flag},
    )


def _decode_single(frame: pylon.Frame) -> pylon.AnalogValues:
    return pylon.decode_analog(frame.info, stack=False)


def _decode_stack(frame: pylon.Frame) -> pylon.AnalogValues:
    return pylon.decode_analog(frame.info, stack=True)
