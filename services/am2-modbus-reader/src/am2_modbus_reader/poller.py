"""Polling logic: block reads, retries, gaps, per-pack availability, mapping to the schema.

No MQTT here: results go to a :class:`Sink`, so the logic is testable with a fake sink and the
simulator. Protocol facts: ``shared/protocols/pace-modbus-am2.md`` §2 (timing), §6 (map), §7
(reading strategy: three blocks, the live one every cycle), §10 (validation and plausibility).
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from am2_modbus_reader.config import BusConfig, device_id
from am2_modbus_reader.transport import LinkError, ModbusTransport, NoAnswer
from bmslink.derived import complete
from bmslink.energy import EnergyStore
from bmslink.polling import PollStats, Reconnect
from bmslink.protocols import modbus_rtu as rtu
from bmslink.protocols import pace_modbus as pace
from bmslink.publisher import Availability
from bmslink.schema import BatteryInfo, BatteryState

log = logging.getLogger(__name__)

PROTOCOL = "pace-modbus"
SERVICE = "am2-modbus-reader"
T = TypeVar("T")

#: Fallback runs when a firmware refuses a block with exception 2 (older map versions: V1.2 has
#: no 113-114 nor 170-179, V1.1 stops at 106, §6.6-6.7).
SETTINGS_RUNS = ((60, 55), (60, 53), (60, 47))
STRING_RUNS = ((150, 30), (150, 20), (150, 10))

CELL_RANGE = (2.0, 4.5)  # V, §10.3
TEMPERATURE_RANGE = (-40.0, 100.0)  # °C, §10.3
CELL_SUM_TOLERANCE = 0.5  # V, §10.3


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
    """One pack on the bus and what is cached about it."""

    address: int
    id: str
    availability: Availability
    identity: pace.Identity | None = None
    settings: pace.Settings | None = None
    settings_read_at: float = 0.0
    info: BatteryInfo | None = None


@dataclass
class Stats(PollStats):
    """Counters: transactions, answers, timeouts, link errors, refused replies by error type
    (``CrcError``, ``ExceptionReplyError:2``, ``FrameError``...) and implausible values by field."""

    implausible: collections.Counter[str] = field(default_factory=collections.Counter)


class Poller:
    """Polls the PACE packs of one bus, one after the other, and reports states/availability.

    Per pack and cycle: the live block 0..36 (one transaction); after it, the strings 150..179
    once per connection and the settings 60..114 every ``settings_interval`` — a first full read
    is three transactions (§7). A pack that is offline gets one attempt per cycle (no retries),
    so a dead pack costs one timeout per cycle.
    """

    def __init__(
        self,
        bus: BusConfig,
        transport: ModbusTransport,
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
            pid = device_id(bus, instance, address)
            self.packs[address] = Pack(address, pid, Availability(pid, bus.offline_after))
        self._last_frame = 0.0
        self.reconnect = Reconnect(transport.url, give_up_after=bus.exit_after_link_lost)

    # --- one cycle -------------------------------------------------------------------------

    def poll_once(self) -> None:
        """Poll every pack once."""
        if not self._link_ready():
            return
        try:
            for pack in self.packs.values():
                if self.stop.is_set():
                    return
                self._poll_pack(pack)
        except LinkError as exc:
            self._link_failed(exc)

    def _link_ready(self) -> bool:
        if self.transport.is_open:
            return True
        if not self.reconnect.due():
            return False
        try:
            self.transport.open()
        except LinkError as exc:
            self._link_failed(exc)
            return False
        self.reconnect.succeeded()
        for pack in self.packs.values():  # a new connection: re-read identity and settings
            pack.identity = None
            pack.settings = None
        return True

    def _link_failed(self, exc: LinkError) -> None:
        self.stats.link_errors += 1
        self.reconnect.failed(exc)
        for pack in self.packs.values():
            self._report(pack, pack.availability.lost())

    def _poll_pack(self, pack: Pack) -> None:
        retries = self.bus.retries if pack.availability.online is not False else 0
        block = pace.LIVE_BLOCK
        live = self._read(pack, block.start, block.count, pace.decode_live, retries)
        if live is None:
            self._report(pack, pack.availability.failed())
            return
        if pack.identity is None:
            pack.identity = self._read_runs(pack, STRING_RUNS, pace.decode_identity)
            if pack.identity is None:
                pack.identity = pace.Identity()  # unreadable: do not retry every cycle
        due = time.monotonic() - pack.settings_read_at >= self.bus.settings_interval > 0
        if pack.settings is None or due:
            settings = self._read_runs(pack, SETTINGS_RUNS, pace.decode_settings)
            pack.settings_read_at = time.monotonic()
            if settings is not None:
                pack.settings = settings
        self._publish(pack, live)

    def _read_runs(
        self,
        pack: Pack,
        runs: tuple[tuple[int, int], ...],
        decode: Callable[[list[int]], T],
    ) -> T | None:
        """Read the first run the firmware accepts (falling back on exception 2)."""
        for start, count in runs:
            try:
                return self._read(pack, start, count, decode, self.bus.retries, raise_illegal=True)
            except rtu.ExceptionReplyError:
                continue
        return None

    def _read(
        self,
        pack: Pack,
        start: int,
        count: int,
        decode: Callable[[list[int]], T],
        retries: int,
        *,
        raise_illegal: bool = False,
    ) -> T | None:
        """One block read with retries; ``decode(registers)`` of the first good reply, or None.

        Timeouts and CRC/frame errors are retried after ``retry_delay``; exception replies are
        not (the slave will answer the same). Every failure is logged and counted by type.
        """
        for attempt in range(retries + 1):
            if attempt:
                self.stop.wait(self.bus.retry_delay)
            self._respect_gap()
            self.stats.requests += 1
            try:
                registers = self.transport.read_registers(pack.address, start, count)
                result = decode(registers)
            except NoAnswer:
                self.stats.timeouts += 1
                log.debug(
                    "slave %d: no answer to %d+%d (try %d)", pack.address, start, count, attempt + 1
                )
                continue
            except rtu.ExceptionReplyError as exc:
                self.stats.refused[f"ExceptionReplyError:{exc.code}"] += 1
                level = logging.DEBUG if pack.availability.online is False else logging.WARNING
                log.log(level, "slave %d, registers %d+%d: %s", pack.address, start, count, exc)
                if raise_illegal and exc.code == rtu.ExceptionCode.ILLEGAL_DATA_ADDRESS:
                    raise
                return None
            except (rtu.ModbusError, pace.PaceError) as exc:
                self.stats.refused[type(exc).__name__] += 1
                log.warning(
                    "slave %d, registers %d+%d: refused reply: %s", pack.address, start, count, exc
                )
                continue
            finally:
                self._last_frame = time.monotonic()
            self.stats.answers += 1
            return result
        return None

    def _respect_gap(self) -> None:
        wait = self._last_frame + self.bus.frame_gap - time.monotonic()
        if wait > 0:
            self.stop.wait(wait)

    # --- results ---------------------------------------------------------------------------

    def _report(self, pack: Pack, change: bool | None) -> None:
        if change is not None:
            self.sink.availability(pack.id, change)

    def _publish(self, pack: Pack, live: pace.LiveData) -> None:
        info = self._info(pack, live)
        if pack.info != info:
            pack.info = info
            self.sink.info(info)
        self._report(pack, pack.availability.answered())
        state = pack_state(
            pack.id,
            live,
            self.bus.cells,
            pack.settings,
            self.bus.max_current,
            self.stats.implausible,
        )
        self.sink.state(complete(state, self.energy.counter(pack.id)))
        self.energy.maybe_save()

    def _info(self, pack: Pack, live: pace.LiveData) -> BatteryInfo:
        ident = pack.identity or pace.Identity()
        model = self.bus.model
        if model is None and ident.version:
            model = ident.version.split("-", 1)[0]
        return BatteryInfo(
            id=pack.id,
            manufacturer=self.bus.manufacturer,
            model=model,
            serial=ident.pack_serial or ident.bms_serial or None,
            firmware=ident.version or None,
            hardware=ident.bms_serial or None,
            cell_count=self.bus.cells,
            design_capacity=live.design_capacity or None,
            protocol=PROTOCOL,
            transport=self.transport.url,
            address=pack.address,
            service=SERVICE,
            instance=self.instance,
        )

    def shutdown(self) -> None:
        """Report every pack offline (nobody reads them any more) and save the counters."""
        for pack in self.packs.values():
            if pack.availability.online:
                self._report(pack, pack.availability.lost())
        self.energy.save()
        self.transport.close()


def _in(value: float, bounds: tuple[float, float]) -> bool:
    return bounds[0] <= value <= bounds[1]


def pack_state(
    pid: str,
    live: pace.LiveData,
    cells: int,
    settings: pace.Settings | None,
    max_current: float = 200.0,
    implausible: collections.Counter[str] | None = None,
) -> BatteryState:
    """Map a decoded live block (and the cached settings) to a :class:`BatteryState`.

    Plausibility (§10.3-10.5): a value outside its range is published as unknown (None) for the
    cycle, counted in ``implausible`` by field and logged: |current| > ``max_current`` A, pack
    voltage outside ``cells`` × 2.0..4.5 V, SoC/SoH invalid (non-zero high byte) or > 100 %,
    temperatures outside −40..+100 °C, remaining > 1.05 × full capacity. Cells: the first
    ``cells`` registers; a cell reading 0 stays 0 V and raises ``cell_fault`` (§10.5), any
    other cell outside 2.0..4.5 V makes the whole cell list unknown (empty) for the cycle. The
    cell sum is compared with register 1 (±0.5 V) and only logged.
    """
    bad = implausible if implausible is not None else collections.Counter()

    def check(name: str, value: float | None, ok: bool) -> float | None:
        if value is None or ok:
            return value
        bad[name] += 1
        log.warning("%s: implausible %s %r, published as unknown", pid, name, value)
        return None

    alarms, warnings = live.alarms()
    voltages = live.cells(cells)
    if any(v == 0.0 for v in voltages) and "cell_fault" not in alarms:
        alarms.append("cell_fault")
    if any(v != 0.0 and not _in(v, CELL_RANGE) for v in voltages):
        bad["cell_voltages"] += 1
        log.warning("%s: implausible cell voltages %s, published as unknown", pid, voltages)
        voltages = []
    elif voltages and abs(sum(voltages) - live.voltage) > CELL_SUM_TOLERANCE:
        bad["cell_sum"] += 1
        log.warning(
            "%s: cell sum %.3f V differs from pack voltage %.2f V", pid, sum(voltages), live.voltage
        )
    temps = [t for t in live.cell_temperatures if _in(t, TEMPERATURE_RANGE)]
    if len(temps) != len(live.cell_temperatures):
        bad["temperatures"] += 1
    soc = check("soc", live.soc, live.soc is not None and live.soc <= 100)
    soh = check("soh", live.soh, live.soh is not None and live.soh <= 100)
    full = live.full_capacity
    remaining = check(
        "remaining_capacity",
        live.remaining_capacity,
        full <= 0 or live.remaining_capacity <= full * 1.05,
    )
    status = {
        "warning_flags": live.warning_flags,
        "protection_flags": live.protection_flags,
        "status_flags": live.status_flags,
        "balance_flags": live.balance_flags,
    }
    return BatteryState(
        id=pid,
        ts=time.time(),
        voltage=check("voltage", live.voltage, _in(live.voltage, (2.0 * cells, 4.5 * cells))),
        current=check("current", live.current, abs(live.current) <= max_current),
        soc=soc,
        soh=soh,
        remaining_capacity=remaining,
        full_capacity=full or None,
        design_capacity=live.design_capacity or None,
        cycles=live.cycles,
        charge_voltage_limit=settings.charge_voltage_limit if settings else None,
        discharge_voltage_limit=settings.discharge_voltage_limit if settings else None,
        charge_current_limit=settings.charge_current_limit if settings else None,
        discharge_current_limit=settings.discharge_current_limit if settings else None,
        alarms=alarms,
        warnings=warnings,
        cell_voltages=voltages,
        temperatures=temps,
        mosfet_temperature=check(
            "mosfet_temperature",
            live.mosfet_temperature,
            _in(live.mosfet_temperature, TEMPERATURE_RANGE),
        ),
        ambient_temperature=check(
            "ambient_temperature",
            live.ambient_temperature,
            _in(live.ambient_temperature, TEMPERATURE_RANGE),
        ),
        balancing_cells=pace.balancing_cells(live.balance_flags, cells),
        charge_switch=live.charge_mosfet,
        discharge_switch=live.discharge_mosfet,
        raw_status=status,
    )
