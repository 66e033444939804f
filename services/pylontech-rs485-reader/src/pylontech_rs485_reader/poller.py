"""Polling logic: requests, retries, per-pack availability and the mapping to the schema.

No MQTT here: results go to a :class:`Sink`, so the logic is testable with a fake sink and a
real simulator. Protocol facts: ../shared/protocols/pylontech-rs485.md §5 (RTN), §7 (addresses),
§8 (replies), §10.3 (timing), §12 (Maple Leaf Beaver).
"""

from __future__ import annotations

import collections
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from bmslink.derived import complete
from bmslink.energy import EnergyStore
from bmslink.polling import PollStats, Reconnect
from bmslink.protocols import pylontech_rs485 as pylon
from bmslink.publisher import Availability
from bmslink.schema import BatteryInfo, BatteryState
from pylontech_rs485_reader.config import BusConfig
from pylontech_rs485_reader.transport import LinkError, SerialTransport

log = logging.getLogger(__name__)

PROTOCOL = "pylontech-rs485"
T = TypeVar("T")
STACK_ALL = 0xFF
SILENT_LIMIT = 2
"""Timeouts in a row after which an optional command is no longer sent to a pack."""


class Sink(Protocol):
    """Where the poller's results go (the MQTT publisher in production)."""

    def state(self, state: BatteryState) -> None:
        """A new reading of one pack."""

    def availability(self, device_id: str, online: bool) -> None:
        """A pack started or stopped answering."""

    def info(self, info: BatteryInfo) -> None:
        """A pack's identity (first answer, or changed)."""


PYLONTECH = "pylontech"
BEAVER = "beaver"


class _DialectSwitchError(Exception):
    """A pack answered in the other dialect (VER 0x21 vs 0x20): poll it again in that one."""


@dataclass
class Pack:
    """One pack on the bus: address, id, availability, dialect and what was last read.

    ``identified`` is False until identity (0x4F/0x93/0x96, and 0x51 for its group) has been
    read, and again after the pack went offline. ``unsupported`` holds CID2s it answered with
    RTN 0x04 (not asked again until it comes back online).
    """

    address: int
    id: str
    availability: Availability
    dialect: str = PYLONTECH
    info: BatteryInfo | None = None
    identified: bool = False
    ever_answered: bool = False
    serial: str | None = None
    firmware: str | None = None
    protocol_version: tuple[int, int] | None = None
    unsupported: set[int] = field(default_factory=set)
    silent: collections.Counter[int] = field(default_factory=collections.Counter)
    alarm: pylon.ModuleAlarm | None = None
    management: pylon.ManagementInfo | None = None
    parameters: pylon.SystemParameters | None = None
    next_management: float = 0.0
    next_parameters: float = 0.0

    def reset_identity(self) -> None:
        """Forget identity and unsupported commands (the pack went away; re-read them)."""
        self.identified = False
        self.unsupported.clear()
        self.silent.clear()
        self.next_management = self.next_parameters = 0.0


Stats = PollStats
"""Counters of requests, answers and refused frames (by error type)."""


class Poller:
    """Polls the packs of one bus and reports states, identities and availability.

    Per cycle and pack: 0x42 (analog) and 0x44 (alarms); 0x92 every ``management_interval``
    and 0x47 every ``parameters_interval``; identity (0x4F, 0x93, 0x96, and 0x51 once per
    group) after the first answer and after every reconnect. Beaver packs (doc §12): 0x42
    and 0x47 only. Every command waits ``command_gap`` after the previous one (§10.3).
    """

    def __init__(
        self,
        bus: BusConfig,
        transport: SerialTransport,
        sink: Sink,
        energy: EnergyStore,
        instance: str,
        stop: threading.Event | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.bus = bus
        self.transport = transport
        self.sink = sink
        self.energy = energy
        self.instance = instance
        self.stop = stop or threading.Event()
        self.stats = Stats()
        self.clock = clock
        self.packs: dict[int, Pack] = {}
        self.group_identity: dict[int, pylon.ManufacturerInfo] = {}
        for address in bus.addresses:
            self.pack_for(address)
        self._last_command = 0.0
        self.reconnect = Reconnect(transport.url, give_up_after=bus.exit_after_link_lost)
        self._last_silent = False

    def pack_for(self, address: int) -> Pack:
        """The pack at ``address`` (created for modules found beyond the configured ones)."""
        found = self.packs.get(address)
        if found is None:
            prefix = self.bus.id_prefix or self.instance
            device_id = self.bus.ids.get(str(address), f"{prefix}-{address}")
            dialect: str = self.bus.dialect
            if dialect == "auto":  # ADR 0/1 are reserved for Pylontech (§7.1): a Beaver there
                dialect = BEAVER if address in (0, 1) else PYLONTECH
            found = Pack(
                address, device_id, Availability(device_id, self.bus.offline_after), dialect
            )
            self.packs[address] = found
        return found

    # --- one cycle -------------------------------------------------------------------------

    def poll_once(self) -> None:
        """Poll every pack once (or the group once in ``ff`` mode)."""
        if not self._link_ready():
            return
        try:
            if self.bus.stack_query == "ff":
                with contextlib.suppress(_DialectSwitchError):  # re-polled next cycle
                    self._poll_stack(self.bus.addresses[0])
            else:
                for address in self.bus.addresses:
                    if self.stop.is_set():
                        return
                    self._poll_pack(self.pack_for(address))
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
        return True

    def _link_failed(self, exc: LinkError) -> None:
        self.stats.link_errors += 1
        self.reconnect.failed(exc)
        self.group_identity.clear()
        for pack in self.packs.values():
            pack.reset_identity()
            self._report(pack, pack.availability.lost())

    def _poll_pack(self, pack: Pack) -> None:
        try:
            self._poll_pack_once(pack)
        except _DialectSwitchError:
            with contextlib.suppress(_DialectSwitchError):  # flip-flopping: next cycle
                self._poll_pack_once(pack)

    def _poll_pack_once(self, pack: Pack) -> None:
        adr = pack.address
        if pack.dialect == BEAVER:
            beaver = self._request(pack, pylon.Cid2.ANALOG, pylon.BEAVER_REQUEST_INFO, _beaver)
            if beaver is None:
                self._failed(pack)
                return
            self._publish_beaver(pack, beaver)
            self._after_answer(pack)
            self._maybe_limits(pack)
            return
        analog = self._request(pack, pylon.Cid2.ANALOG, bytes([adr]), _decode_single)
        if analog is None:
            if self.bus.dialect == "auto" and not pack.ever_answered and adr in range(4):
                self._probe_beaver(pack)
            self._failed(pack)
            return
        pack.alarm = self._read_alarm(pack, bytes([adr]), _decode_alarm_single)
        self._publish_module(pack, analog.modules[0], analog.info_flag)
        # identity and limits after the state, so that slow or silent optional commands never
        # delay a reading; new limits go into the next state, a new identity out at once
        self._after_answer(pack)
        self._maybe_limits(pack)

    def _probe_beaver(self, pack: Pack) -> None:
        """Auto dialect: a silent pack at ADR 0..3 that never answered may be a Beaver that
        ignores VER 0x20; one VER 0x21 0x42 tells (doc §12)."""
        request = pylon.build_beaver_request(pack.address, pylon.Cid2.ANALOG)
        self._respect_gap()
        self.stats.requests += 1
        raw = self.transport.exchange(request, self.bus.timeout)
        self._last_command = time.monotonic()
        if raw is None:
            self.stats.timeouts += 1
            return
        try:
            frame = pylon.parse_frame(raw)
        except pylon.PylontechError as exc:
            self.stats.refused[type(exc).__name__] += 1
            return
        if frame.ver == pylon.BEAVER_VER and frame.adr == pack.address:
            self._switch_dialect(pack, BEAVER)
            raise _DialectSwitchError

    def _poll_stack(self, master: int) -> None:
        master_pack = self.pack_for(master)
        all_info = bytes([STACK_ALL])
        analog = self._request(master_pack, pylon.Cid2.ANALOG, all_info, _decode_stack)
        if analog is None:
            for pack in self.packs.values():
                self._failed(pack)
            return
        alarms: pylon.AlarmInfo | None = None
        alarms = self._optional(master_pack, pylon.Cid2.ALARM, all_info, _decode_alarm_stack)
        seen: list[Pack] = []
        for i, module in enumerate(analog.modules):
            pack = self.pack_for(master + i)
            seen.append(pack)
            if alarms is not None and i < len(alarms.modules):
                pack.alarm = alarms.modules[i]
            else:
                pack.alarm = None
            self._publish_module(pack, module, analog.info_flag)
        for pack in self.packs.values():
            if pack not in seen:
                self._failed(pack)
        for pack in seen:
            self._after_answer(pack)
            self._maybe_limits(pack)

    # --- commands --------------------------------------------------------------------------

    def _read_alarm(
        self, pack: Pack, info: bytes, decode: Callable[[pylon.Frame], pylon.AlarmInfo]
    ) -> pylon.ModuleAlarm | None:
        alarm = self._optional(pack, pylon.Cid2.ALARM, info, decode)
        return None if alarm is None else alarm.modules[0]

    def _after_answer(self, pack: Pack) -> None:
        """The pack answered its analog read: identify it if needed."""
        pack.ever_answered = True
        if not pack.identified:
            self._identify(pack)

    def _identify(self, pack: Pack) -> None:
        """Read 0x4F, 0x93, 0x96 and (once per group) 0x51; failures are tolerated (doc §7.4:
        0x51 is the group master's identity at any address, so 0x93 identifies the pack)."""
        adr = pack.address
        pack.identified = True
        info = pylon.BEAVER_REQUEST_INFO if pack.dialect == BEAVER else b""
        version = self._optional(pack, pylon.Cid2.PROTOCOL_VERSION, info, pylon.protocol_version)
        if version is not None:
            pack.protocol_version = version
        if pack.dialect == BEAVER:  # only 0x42 and 0x47 are known (§12)
            return
        serial = self._optional(pack, pylon.Cid2.SERIAL_NUMBER, bytes([adr]), _serial)
        if serial is not None:
            pack.serial = serial.serial
        firmware = self._optional(pack, pylon.Cid2.FIRMWARE_VERSION, bytes([adr]), _firmware)
        if firmware is not None:
            pack.firmware = firmware.text
        group = adr >> 4
        if group not in self.group_identity:
            maker = self._optional(pack, pylon.Cid2.MANUFACTURER_INFO, b"", _manufacturer)
            if maker is not None:
                self.group_identity[group] = maker
        if pack.info is not None:  # publish the identity now (the state went out already)
            self._publish_info(pack, None)
        log.info(
            "ADR %d: serial %s, firmware %s, protocol %s, group master %s",
            adr,
            pack.serial,
            pack.firmware,
            version,
            self.group_identity.get(group),
        )

    def _maybe_limits(self, pack: Pack) -> None:
        """0x92 and 0x47 on their own (slower) cadence."""
        now = self.clock()
        beaver = pack.dialect == BEAVER
        if not beaver and now >= pack.next_management:
            pack.next_management = now + self.bus.management_interval
            management = self._optional(
                pack, pylon.Cid2.CHARGE_DISCHARGE_MANAGEMENT, bytes([pack.address]), _management
            )
            if management is not None:
                pack.management = management
        if now >= pack.next_parameters:
            pack.next_parameters = now + self.bus.parameters_interval
            if beaver:
                params = self._request(
                    pack,
                    pylon.Cid2.SYSTEM_PARAMETERS,
                    pylon.BEAVER_REQUEST_INFO,
                    _beaver_parameters,
                )
            else:
                params = self._optional(pack, pylon.Cid2.SYSTEM_PARAMETERS, b"", _parameters)
            if params is not None:
                pack.parameters = params

    def _optional(
        self, pack: Pack, cid2: int, info: bytes, decode: Callable[[pylon.Frame], T]
    ) -> T | None:
        """A command besides 0x42: skipped once the pack answered it with RTN 0x04, or stayed
        silent on it :data:`SILENT_LIMIT` times in a row while answering 0x42 (old firmware,
        replayed captures); both reset when the pack comes back online."""
        if cid2 in pack.unsupported:
            return None
        result = self._request(pack, cid2, info, decode, retry_silence=False)
        if result is None and self._last_silent:
            pack.silent[cid2] += 1
            if pack.silent[cid2] >= SILENT_LIMIT:
                log.info("ADR %d: no answer to CID2 0x%02X, not asking again", pack.address, cid2)
                pack.unsupported.add(cid2)
        elif result is not None:
            pack.silent[cid2] = 0
        return result

    def _switch_dialect(self, pack: Pack, dialect: str) -> None:
        log.info("ADR %d answers in the %s dialect: switching", pack.address, dialect)
        self.stats.refused["dialect_switch"] += 1
        pack.dialect = dialect
        pack.reset_identity()
        pack.info = None

    def _request(
        self,
        pack: Pack,
        cid2: int,
        info: bytes,
        decode: Callable[[pylon.Frame], T],
        *,
        retry_silence: bool = True,
    ) -> T | None:
        """Send one command with retries; returns ``decode(frame)`` of the first verified answer,
        or None. Every refused frame is logged and counted by its error type; RTN errors that
        are not retryable (§5) end the attempts at once (RTN 0x04 also marks the command
        unsupported by this pack). In ``auto`` dialect mode a reply in the other VER switches
        the pack's dialect (raises :class:`_DialectSwitchError`). ``retry_silence=False``
        (optional commands) does not re-send after a timeout.
        """
        address = pack.address
        self._last_silent = False
        ver = pylon.BEAVER_VER if pack.dialect == BEAVER else pylon.DEFAULT_VER
        request = pylon.build_frame(ver, address, pylon.CID1_BATTERY, cid2, info)
        request_frame = pylon.Frame(ver, address, pylon.CID1_BATTERY, cid2, info)
        silent = True  # every attempt timed out
        for attempt in range(self.bus.retries + 1):
            self._respect_gap()
            self.stats.requests += 1
            deadline = time.monotonic() + self.bus.timeout
            raw = self.transport.exchange(request, self.bus.timeout)
            attempt_silent = raw is None
            silent = silent and attempt_silent
            retry = True
            while raw is not None:
                try:
                    frame = pylon.parse_response(raw, request_frame)
                    result = decode(frame)
                except pylon.RtnError as exc:
                    self.stats.refused[type(exc).__name__] += 1
                    self._maybe_switch(pack, exc.frame)
                    log.warning("ADR %d CID2 0x%02X: %s", address, cid2, exc)
                    if isinstance(exc, pylon.UnsupportedCommandError):
                        pack.unsupported.add(cid2)
                    retry = exc.retryable
                    break
                except pylon.PylontechError as exc:
                    self.stats.refused[type(exc).__name__] += 1
                    self._maybe_switch(pack, _peek(raw))
                    log.warning("ADR %d CID2 0x%02X: refused frame: %s", address, cid2, exc)
                    # a late reply to an earlier command of this pack may precede ours: read on
                    raw = self.transport.next_frame(max(0.0, deadline - time.monotonic()))
                    continue
                self._last_command = time.monotonic()
                self.stats.answers += 1
                return result
            self._last_command = time.monotonic()
            if attempt_silent:
                self.stats.timeouts += 1
                log.debug("ADR %d CID2 0x%02X: no answer (attempt %d)", address, cid2, attempt + 1)
                if not retry_silence:
                    break
            elif not retry:
                return None
        self._last_silent = silent
        return None

    def _maybe_switch(self, pack: Pack, frame: pylon.Frame | None) -> None:
        """In ``auto`` mode, a well-formed reply from the pack in the other VER switches it."""
        if self.bus.dialect != "auto" or frame is None or frame.adr != pack.address:
            return
        if frame.ver == pylon.BEAVER_VER and pack.dialect != BEAVER:
            self._switch_dialect(pack, BEAVER)
            raise _DialectSwitchError
        if frame.ver == pylon.DEFAULT_VER and pack.dialect == BEAVER:
            self._switch_dialect(pack, PYLONTECH)
            raise _DialectSwitchError

    def _respect_gap(self) -> None:
        wait = self._last_command + self.bus.command_gap - time.monotonic()
        if wait > 0:
            self.stop.wait(wait)

    # --- results ---------------------------------------------------------------------------

    def _failed(self, pack: Pack) -> None:
        self._report(pack, pack.availability.failed())

    def _report(self, pack: Pack, change: bool | None) -> None:
        if change is not None:
            if not change:  # re-read identity (and the group's 0x51) when it is back
                pack.reset_identity()
                self.group_identity.pop(pack.address >> 4, None)
            self.sink.availability(pack.id, change)

    def _publish_info(self, pack: Pack, cells: int | None, capacity: float | None = None) -> None:
        if pack.dialect == BEAVER:
            manufacturer, model = "Maple Leaf", "Beaver"
            protocol = f"{PROTOCOL}/beaver"
        else:
            manufacturer = "Pylontech"
            master = self.group_identity.get(pack.address >> 4)
            model = None
            if master is not None and (pack.address & 0x0F) == 2:
                model = master.device_name  # 0x51 is the master's identity (§7.4)
            protocol = PROTOCOL
        old = pack.info
        info = BatteryInfo(
            id=pack.id,
            manufacturer=manufacturer,
            model=model or (old.model if old else None),
            serial=pack.serial,
            firmware=pack.firmware,
            cell_count=cells if cells is not None else (old.cell_count if old else None),
            design_capacity=capacity
            if capacity is not None
            else (old.design_capacity if old else None),
            protocol=protocol,
            transport=self.transport.url,
            address=pack.address,
            service="pylontech-rs485-reader",
            instance=self.instance,
        )
        if info != old:
            pack.info = info
            self.sink.info(info)

    def _publish_module(self, pack: Pack, module: pylon.ModuleAnalog, info_flag: int) -> None:
        self._publish_info(pack, len(module.cell_voltages), round(module.full_capacity, 3) or None)
        self._report(pack, pack.availability.answered())
        state = module_state(
            pack.id,
            module,
            info_flag,
            alarm=pack.alarm,
            management=pack.management,
            parameters=pack.parameters,
        )
        self.sink.state(complete(state, self.energy.counter(pack.id)))
        self.energy.maybe_save()

    def _publish_beaver(self, pack: Pack, value: pylon.BeaverAnalog) -> None:
        self._publish_info(pack, len(value.cell_voltages), round(value.full_capacity, 2) or None)
        self._report(pack, pack.availability.answered())
        state = beaver_state(pack.id, value, parameters=pack.parameters)
        self.sink.state(complete(state, self.energy.counter(pack.id)))
        self.energy.maybe_save()

    def shutdown(self) -> None:
        """Report every pack offline (nobody reads them any more) and save the counters."""
        for pack in self.packs.values():
            if pack.availability.online:
                self._report(pack, pack.availability.lost())
        self.energy.save()
        self.transport.close()


def _limits(
    management: pylon.ManagementInfo | None, parameters: pylon.SystemParameters | None
) -> dict[str, float | bool | None]:
    """CVL/DVL/CCL/DCL and the enable flags: from 0x92 when known (doc §8.7), else the current
    limits of 0x47 (§8.6; its module voltage limits are alarm thresholds, not a CVL/DVL)."""
    out: dict[str, float | bool | None] = {}
    if management is not None:
        out["charge_voltage_limit"] = management.charge_voltage_limit
        out["discharge_voltage_limit"] = management.discharge_voltage_limit
        out["charge_current_limit"] = max(0.0, management.charge_current_limit)
        out["discharge_current_limit"] = abs(management.discharge_current_limit)
        out["charge_enabled"] = management.charge_enable
        out["discharge_enabled"] = management.discharge_enable
    elif parameters is not None:
        out["charge_current_limit"] = max(0.0, parameters.charge_current_limit)
        out["discharge_current_limit"] = abs(parameters.discharge_current_limit)
    return out


def module_state(
    device_id: str,
    module: pylon.ModuleAnalog,
    info_flag: int,
    *,
    alarm: pylon.ModuleAlarm | None = None,
    management: pylon.ManagementInfo | None = None,
    parameters: pylon.SystemParameters | None = None,
) -> BatteryState:
    """Map one decoded 0x42 module block (plus 0x44/0x92/0x47 when read) to a
    :class:`BatteryState` (schema units).

    Temperatures (V3.3 p.15): T1 is the BMS board, T2..T5 the cell groups, T6 (US5000) the
    MOSFET. ``temperatures`` lists the cell-group sensors. SoC = remaining / total (0x42 carries
    no SoC, reference §8.4). ``alarms``/``warnings`` from 0x44 (:func:`pylon.alarm_codes`);
    ``raw_status`` holds INFOFLAG, the 0x44 status bytes and the 0x92 status byte. Limits and
    charge/discharge enable (request flags, bits 7/6) from 0x92 (positive magnitudes), else
    current limits from 0x47. ``charge_switch``/``discharge_switch`` are the 0x44 MOSFET bits
    (Status2 bit 1 charge, bit 2 discharge MOSFET on, §8.5); a MOSFET state is not an allow
    flag, so without 0x92 ``charge_enabled``/``discharge_enabled`` stay ``None``.
    """
    temps = module.temperatures
    soc = None
    if module.full_capacity > 0:
        soc = round(min(100.0, max(0.0, module.remaining_capacity / module.full_capacity * 100)), 1)
    raw: dict[str, int] = {"info_flag": info_flag}
    alarms: list[str] = []
    warnings: list[str] = []
    limits = _limits(management, parameters)
    if alarm is not None:
        raw |= alarm.raw_status()
        alarms, warnings = pylon.alarm_codes(alarm)
    if management is not None:
        raw["management_status"] = management.status
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
        charge_switch=alarm.charge_mosfet_on if alarm is not None else None,
        discharge_switch=alarm.discharge_mosfet_on if alarm is not None else None,
        alarms=alarms,
        warnings=warnings,
        raw_status=raw,
        **limits,  # type: ignore[arg-type]
    )


def beaver_state(
    device_id: str,
    value: pylon.BeaverAnalog,
    *,
    parameters: pylon.SystemParameters | None = None,
) -> BatteryState:
    """Map a Beaver 0x42 reply (doc §12) to a :class:`BatteryState`: SOC and SOH as sent,
    every temperature in ``temperatures`` (sensor meanings unknown), current limits from the
    Beaver 0x47 when read. ``raw_status`` holds the leading byte and the capacity indicator.
    """
    return BatteryState(
        id=device_id,
        ts=time.time(),
        voltage=value.voltage,
        current=value.current,
        soc=float(value.soc),
        soh=float(value.soh),
        remaining_capacity=value.remaining_capacity,
        full_capacity=value.full_capacity,
        cycles=value.cycles,
        cell_voltages=list(value.cell_voltages),
        temperatures=list(value.temperatures),
        raw_status={"lead": value.lead, "capacity_indicator": value.capacity_indicator},
        **_limits(None, parameters),  # type: ignore[arg-type]
    )


def _peek(raw: bytes) -> pylon.Frame | None:
    try:
        return pylon.parse_frame(raw)
    except pylon.PylontechError:
        return None


def _decode_single(frame: pylon.Frame) -> pylon.AnalogValues:
    return pylon.decode_analog(frame.info, stack=False)


def _decode_stack(frame: pylon.Frame) -> pylon.AnalogValues:
    return pylon.decode_analog(frame.info, stack=True)


def _decode_alarm_single(frame: pylon.Frame) -> pylon.AlarmInfo:
    return pylon.decode_alarm(frame.info, stack=False)


def _decode_alarm_stack(frame: pylon.Frame) -> pylon.AlarmInfo:
    return pylon.decode_alarm(frame.info, stack=True)


def _serial(frame: pylon.Frame) -> pylon.SerialNumber:
    return pylon.decode_serial_number(frame.info)


def _firmware(frame: pylon.Frame) -> pylon.FirmwareVersion:
    return pylon.decode_firmware_version(frame.info)


def _manufacturer(frame: pylon.Frame) -> pylon.ManufacturerInfo:
    return pylon.decode_manufacturer_info(frame.info)


def _management(frame: pylon.Frame) -> pylon.ManagementInfo:
    return pylon.decode_management_info(frame.info)


def _parameters(frame: pylon.Frame) -> pylon.SystemParameters:
    return pylon.decode_system_parameters(frame.info)


def _beaver(frame: pylon.Frame) -> pylon.BeaverAnalog:
    return pylon.decode_beaver_analog(frame.info)


def _beaver_parameters(frame: pylon.Frame) -> pylon.SystemParameters:
    return pylon.decode_beaver_system_parameters(frame.info)
