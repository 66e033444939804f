"""What to ask each kind of Daly board and how its answers map to the schema.

One handler per protocol (A5, D2, 0x81, Sinowealth) reads a full state through a
:class:`~daly_ble_reader.channel.Channel` and switches the MOSFETs where the protocol allows it.
:func:`detect` chooses the protocol of an unknown device (../shared/protocols/daly.md §2).
Codecs: :mod:`bmslink.protocols.daly_a5`, ``daly_d2``, ``daly_81``, ``daly_sinowealth``.

MOSFET states fill ``charge_switch``/``discharge_switch`` (True on = closed): A5 0x93 bytes 1/2
(§4.4), D2 registers 0x35/0x36 (§7.2), 0x81 registers 0x52/0x53 (§8), Sinowealth 0x15 bits
CHGMOS/DSGMOS (§5.2). No Daly protocol has a separate "the BMS allows it" flag, so
``charge_enabled``/``discharge_enabled`` stay ``None``: a MOSFET that is off is an open switch
(the pack takes no current that way), not a refusal of the whole bank; the BMS's protections
arrive as ``alarms``. Caveat (§4.4): batmon saw a board whose 0x93 byte 2 "is NOT the actual
switch state"; bmslink still reads it as the discharge MOSFET, as every source labels it.
"""

from __future__ import annotations

import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bmslink.protocols import daly_81 as p81
from bmslink.protocols import daly_a5 as a5
from bmslink.protocols import daly_d2 as d2
from bmslink.protocols import daly_sinowealth as sino
from bmslink.protocols.daly_modbus import (
    DalyModbusError,
    DalyModbusStatus,
    ModbusStream,
    parse_frame,
    registers_from,
)
from bmslink.schema import BatteryState
from daly_ble_reader.channel import Channel, Stats
from daly_ble_reader.config import DalyConfig, DeviceConfig

log = logging.getLogger(__name__)

#: consecutive contradictions between the A5 current sign and the 0x93 state before the
#: polarity is flipped (doc §9)
POLARITY_FLIP_AFTER = 3
#: optional A5 commands are given up after this many consecutive timeouts (doc §4.9 end)
UNSUPPORTED_AFTER = 3
#: most frames a multi-frame A5 command can send (doc §4.4, §4.9): stop draining at this count
_MAX_FRAMES = {0x95: 16, 0x96: 3, 0x57: 5, 0x63: 2}


@dataclass
class Reading:
    """A full reading: the state (``id`` set, derived values not yet added) and identity."""

    state: BatteryState
    cell_count: int | None = None
    design_capacity: float | None = None
    model: str | None = None
    firmware: str | None = None
    hardware: str | None = None


@dataclass
class Memory:
    """What is remembered per device across restarts (the JSON device store): the detected
    ``protocol``, A5 ``host`` address and ``invert_current``, the BLE ``write_response`` mode."""

    protocol: str | None = None
    host: int | None = None
    invert_current: bool | None = None
    write_response: bool | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready view (None values left out)."""
        out = {
            "protocol": self.protocol,
            "host": self.host,
            "invert_current": self.invert_current,
            "write_response": self.write_response,
        }
        return {k: v for k, v in out.items() if v is not None}


class SwitchRefusedError(Exception):
    """A MOSFET command the device (or protocol) cannot carry out; the message says why."""


class Handler(ABC):
    """Reads one device of one protocol."""

    protocol: str = ""

    def __init__(
        self,
        device: DeviceConfig,
        cfg: DalyConfig,
        stats: Stats,
        memory: Memory,
        remember: Callable[[], None],
    ) -> None:
        self.device = device
        self.cfg = cfg
        self.stats = stats
        self.memory = memory
        self.remember = remember

    @abstractmethod
    async def read(self, ch: Channel) -> Reading | None:
        """Read a full state; None when a needed answer is missing (after retries)."""

    async def switch(self, ch: Channel, charge: bool, on: bool) -> None:
        """Switch the charge (``charge``) or discharge MOSFET ``on``/off and verify the echo.
        Raises :class:`SwitchRefusedError`."""
        raise SwitchRefusedError(f"MOSFET switching is not supported over {self.protocol}")

    def _state(self, **values: Any) -> BatteryState:
        return BatteryState(id=self.device.id, ts=time.time(), **values)


# ---------------------------------------------------------------------------------------------
# A5
# ---------------------------------------------------------------------------------------------


class A5Handler(Handler):
    """Legacy A5 boards (doc §4): 0x94 first (counts), 0x90, 0x93, 0x95, 0x96, then 0x97/0x98
    while supported; model (0x63) and rated capacity (0x50) once."""

    protocol = "daly-a5"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        ble = self.cfg.transport == "ble"
        self.default_host = a5.HOST_BLE if ble else a5.HOST_SERIAL
        self.host = self.device.host_address or self.memory.host or self.default_host
        self.misses: dict[int, int] = {}
        self.unsupported: set[int] = set()
        self.contradictions = 0
        self.model: str | None = None
        self.rated: float | None = None
        self.identity_read = False

    @property
    def request_address(self) -> int:
        """Host address + board − 1 (doc §4.3)."""
        return a5.host_address(self.device.board, self.host)

    @property
    def invert(self) -> bool:
        """The current polarity in use (config, else remembered, else the default False)."""
        if self.device.invert_current is not None:
            return self.device.invert_current
        return bool(self.memory.invert_current)

    async def frames(
        self, ch: Channel, command: int, *, need: int = 1, retries: int | None = None
    ) -> dict[int, bytes] | None:
        """Ask ``command``; returns data by frame number (single frames under key 0), or None.

        Multi-frame commands collect frames until every needed number is present, then drain
        until the line is quiet (doc §4.6)."""
        request = a5.build_request(command, self.request_address, self.cfg.a5_fill)
        multi = command in a5.MULTI_FRAME
        streams: list[a5.FrameStream] = []

        def factory() -> Callable[[bytes], list[a5.A5Frame]]:
            stream = a5.FrameStream(board=self.device.board, commands={command})
            streams.append(stream)
            return stream.feed

        def done(items: list[a5.A5Frame]) -> bool:
            if not multi:
                return bool(items)
            numbers = {f.data[0] for f in items}
            if 0 in numbers:  # tolerated 0-based numbering (decision #3)
                numbers = {n + 1 for n in numbers}
            return all(k in numbers for k in range(1, need + 1))

        items = await ch.ask(
            request,
            factory,
            done,
            what=f"{self.device.id} A5 0x{command:02X}",
            drain_quiet=0.1 if multi else None,
            drain_items=_MAX_FRAMES.get(command, 16),
            retries=retries,
        )
        self.stats.dropped_bytes += sum(s.dropped for s in streams)
        if items is None:
            return None
        if not multi:
            return {0: items[0].data}
        out: dict[int, bytes] = {}
        for f in items:
            out.setdefault(f.data[0], f.data)  # duplicates ignored (rule 4)
        return out

    async def _optional(self, ch: Channel, command: int) -> bytes | None:
        if command in self.unsupported:
            return None
        got = await self.frames(ch, command, retries=0)
        if got is None:
            self.misses[command] = self.misses.get(command, 0) + 1
            if self.misses[command] >= UNSUPPORTED_AFTER:
                log.info(
                    "%s: A5 0x%02X never answers; not polled any more", self.device.id, command
                )
                self.unsupported.add(command)
            return None
        self.misses[command] = 0
        return got[0]

    async def read(self, ch: Channel) -> Reading | None:
        got = await self.frames(ch, a5.Command.STATUS)
        if got is None:
            return None
        try:
            status = a5.decode_status(got[0])
            got = await self.frames(ch, a5.Command.SOC)
            if got is None:
                return None
            soc = a5.decode_soc(got[0], invert_current=self.invert)
            if soc.asleep:
                self.stats.refused["all_zero_0x90"] += 1
                log.info("%s: all-zero 0x90 (UART asleep?), ignored", self.device.id)
                return None
            mos_data = await self._optional(ch, a5.Command.MOSFET)
            mos = a5.decode_mosfet(mos_data) if mos_data else None
            cells: list[float] = []
            if status.cells:
                need = a5.frames_needed(status.cells, a5.CELLS_PER_FRAME)
                cell_frames = await self.frames(ch, a5.Command.CELL_VOLTAGES, need=need)
                if cell_frames is None:
                    return None
                cells = a5.assemble_cells(cell_frames, status.cells)
            temps: list[float] = []
            if status.sensors:
                need = a5.frames_needed(status.sensors, a5.TEMPERATURES_PER_FRAME)
                temp_frames = await self.frames(ch, a5.Command.TEMPERATURES, need=need)
                if temp_frames is None:
                    return None
                temps = a5.assemble_temperatures(temp_frames, status.sensors)
            bal_data = await self._optional(ch, a5.Command.BALANCING)
            alarm_data = await self._optional(ch, a5.Command.ALARMS)
            alarms = a5.decode_alarms(alarm_data) if alarm_data else None
            if not self.identity_read:
                await self._identity(ch)
        except a5.DalyA5Error as exc:
            self.stats.refused[type(exc).__name__] += 1
            log.warning("%s: refused A5 answer: %s", self.device.id, exc)
            return None
        current = self._checked_current(soc, mos)
        raw: dict[str, int] = {"current_raw": soc.current_raw, "dio": status.dio}
        if mos is not None:
            raw["state"] = mos.state
            raw["heartbeat"] = mos.heartbeat
        if alarms is not None:
            raw["alarm_bits"] = int.from_bytes(alarms.raw, "big")
            raw["fault_code"] = alarms.fault_code
        state = self._state(
            voltage=soc.total_voltage,
            current=current,
            soc=min(100.0, soc.soc),
            remaining_capacity=mos.remaining_capacity if mos else None,
            design_capacity=self.rated,
            cycles=status.cycles,
            cell_voltages=cells,
            temperatures=temps,
            charge_switch=mos.charge_mosfet if mos else None,
            discharge_switch=mos.discharge_mosfet if mos else None,
            balancing_cells=a5.decode_balancing(bal_data, status.cells) if bal_data else None,
            alarms=alarms.alarms if alarms else [],
            warnings=alarms.warnings if alarms else [],
            raw_status=raw,
        )
        return Reading(state, status.cells, self.rated, self.model)

    async def _identity(self, ch: Channel) -> None:
        self.identity_read = True
        rated = await self.frames(ch, a5.Command.RATED, retries=0)
        if rated is not None:
            capacity, _cell_v = a5.decode_rated(rated[0])
            self.rated = capacity if 0 < capacity < 100000 else None
        model = await self.frames(ch, a5.Command.MODEL, need=2, retries=0)
        if model is not None:
            self.model = a5.assemble_ascii(model) or None

    def _checked_current(self, soc: a5.SocValues, mos: a5.MosfetStatus | None) -> float:
        """The current with the automatic polarity check of doc §9 (when not configured)."""
        current = soc.current
        if self.device.invert_current is not None or mos is None or abs(current) < 1.0:
            return current
        if mos.state not in (1, 2):
            return current
        charging = mos.state == 1
        if (current > 0) == charging:
            self.contradictions = 0
            return current
        self.contradictions += 1
        if self.contradictions >= POLARITY_FLIP_AFTER:
            self.memory.invert_current = not self.invert
            self.contradictions = 0
            self.remember()
            log.warning(
                "%s: A5 current sign contradicted the 0x93 state %d times; polarity flipped "
                "(invert_current=%s, remembered)",
                self.device.id,
                POLARITY_FLIP_AFTER,
                self.memory.invert_current,
            )
            return -current
        return current

    async def switch(self, ch: Channel, charge: bool, on: bool) -> None:
        command = a5.Command.CHARGE_MOSFET if charge else a5.Command.DISCHARGE_MOSFET
        request = a5.build_switch(charge, on, self.request_address)

        def factory() -> Callable[[bytes], list[a5.A5Frame]]:
            return a5.FrameStream(board=self.device.board, commands={command}).feed

        items = await ch.ask(request, factory, bool, what=f"{self.device.id} A5 0x{command:02X}")
        if items is None:
            raise SwitchRefusedError("no answer to the MOSFET command")
        if items[0].data[0] != (1 if on else 0):
            raise SwitchRefusedError(
                f"the BMS answered state {items[0].data[0]}, requested {int(on)}"
            )


# ---------------------------------------------------------------------------------------------
# Modbus-style (D2, 0x81)
# ---------------------------------------------------------------------------------------------


class _ModbusHandler(Handler):
    address = 0
    reply_address = 0

    async def registers(self, ch: Channel, request: bytes, what: str) -> dict[int, int] | None:
        """Ask one FC 03 read; returns ``{register: value}`` or None."""
        start = int.from_bytes(request[2:4], "big")
        count = int.from_bytes(request[4:6], "big")
        length = 5 + 2 * count
        streams: list[ModbusStream] = []

        def factory() -> Callable[[bytes], list[bytes]]:
            stream = ModbusStream({self.reply_address})
            stream.max_length = length
            streams.append(stream)

            def parse(chunk: bytes) -> list[bytes]:
                out = []
                for raw in stream.feed(chunk):
                    if len(raw) == length and raw[1] == 0x03:
                        out.append(raw)
                    else:
                        self.stats.refused["unexpected_frame"] += 1
                return out

            return parse

        items = await ch.ask(request, factory, bool, what=f"{self.device.id} {what}")
        for s in streams:
            self.stats.dropped_bytes += s.dropped
            if s.crc_errors:
                self.stats.refused["CrcError"] += s.crc_errors
        if items is None:
            return None
        try:
            values = registers_from(parse_frame(items[0], address=self.reply_address), count)
        except DalyModbusError as exc:
            self.stats.refused[type(exc).__name__] += 1
            log.warning("%s: refused %s answer: %s", self.device.id, what, exc)
            return None
        return {start + i: v for i, v in enumerate(values)}

    def _from_status(self, s: DalyModbusStatus, extra_raw: dict[str, int]) -> BatteryState:
        raw = dict(extra_raw)
        if s.state is not None:
            raw["state"] = s.state
        if s.balancer is not None:
            raw["balancer"] = s.balancer
        if s.alarm_raw is not None:
            raw["alarm_bits"] = s.alarm_raw
        if s.extra:
            raw.update(s.extra)
        return self._state(
            voltage=s.voltage,
            current=s.current,
            soc=min(100.0, s.soc),
            remaining_capacity=s.remaining_capacity,
            cycles=s.cycles,
            cell_voltages=s.cell_voltages,
            temperatures=s.temperatures,
            charge_switch=s.charge_mosfet,
            discharge_switch=s.discharge_mosfet,
            mosfet_temperature=s.mosfet_temperature,
            bms_temperature=s.bms_temperature,
            balancing_cells=s.balancing_cells,
            alarms=s.alarms or [],
            warnings=s.warnings or [],
            raw_status=raw,
        )

    async def write_echo(self, ch: Channel, request: bytes, what: str) -> None:
        """Send an FC 06 write and require the exact echo (doc §7.6)."""

        def factory() -> Callable[[bytes], list[bytes]]:
            stream = ModbusStream({self.reply_address})
            stream.max_length = len(request)
            return lambda chunk: [f for f in stream.feed(chunk) if f[1] == 0x06]

        items = await ch.ask(request, factory, bool, what=f"{self.device.id} {what}")
        if items is None:
            raise SwitchRefusedError("no (valid) echo of the MOSFET write")
        if items[0] != request:
            raise SwitchRefusedError(f"the echo {items[0].hex()} differs from the request")


class D2Handler(_ModbusHandler):
    """D2 boards (doc §7): the 62- (or 80-) register status block, optionally 0x3E x 9; version
    strings once; MOSFET writes to 0xA5/0xA6."""

    protocol = "daly-d2"
    address = d2.ADDRESS
    reply_address = d2.ADDRESS

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.version: list[str] | None = None

    async def read(self, ch: Channel) -> Reading | None:
        regs = await self.registers(
            ch, d2.status_request(self.device.status_registers), "D2 status"
        )
        if regs is None:
            return None
        if self.device.status_registers == 62 and self.device.read_mosfet_block:
            more = await self.registers(ch, d2.mosfet_request(), "D2 0x3E block")
            if more:
                regs.update(more)
        if self.version is None:
            vregs = await self.registers(ch, d2.version_request(), "D2 version")
            data = b"".join(v.to_bytes(2, "big") for _, v in sorted((vregs or {}).items()))
            self.version = d2.decode_version(data) if vregs else []
        try:
            status = d2.decode_status(regs)
        except DalyModbusError as exc:
            self.stats.refused[type(exc).__name__] += 1
            log.warning("%s: refused D2 status: %s", self.device.id, exc)
            return None
        version = self.version or []
        return Reading(
            self._from_status(status, {}),
            status.cell_count,
            None,
            None,
            version[0] if version else None,
            version[1] if len(version) > 1 else None,
        )

    async def switch(self, ch: Channel, charge: bool, on: bool) -> None:
        await self.write_echo(ch, d2.build_switch(charge, on), "D2 MOSFET write")


class P81Handler(_ModbusHandler):
    """0x81/0x51 boards (doc §8): two status reads; no MOSFET writes (not specified)."""

    protocol = "daly-81"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.address = p81.request_address(self.device.board)
        self.reply_address = p81.response_address(self.device.board)

    async def read(self, ch: Channel) -> Reading | None:
        regs: dict[int, int] = {}
        for request in p81.status_requests(self.device.board):
            got = await self.registers(ch, request, "0x81 status")
            if got is None:
                return None
            regs.update(got)
        try:
            status = p81.decode_status(regs)
        except DalyModbusError as exc:
            self.stats.refused[type(exc).__name__] += 1
            log.warning("%s: refused 0x81 status: %s", self.device.id, exc)
            return None
        return Reading(self._from_status(status, {}), status.cell_count)


# ---------------------------------------------------------------------------------------------
# Sinowealth (serial only)
# ---------------------------------------------------------------------------------------------


class SinowealthHandler(Handler):
    """Sinowealth "BMStool" boards (doc §5): one 3-byte request per value; at most 10 cells."""

    protocol = "daly-sinowealth"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.cell_count: int | None = None

    async def value(self, ch: Channel, command: int, *, optional: bool = False) -> int | None:
        """The raw value of ``command`` (None when it does not answer)."""
        request = sino.build_request(command)
        size = request[2] + 1

        def factory() -> Callable[[bytes], list[bytes]]:
            buf = bytearray()

            def parse(chunk: bytes) -> list[bytes]:
                buf.extend(chunk)
                return [bytes(buf[:size])] if len(buf) >= size else []

            return parse

        items = await ch.ask(
            request,
            factory,
            bool,
            what=f"{self.device.id} Sinowealth 0x{command:02X}",
            retries=0 if optional else None,
        )
        if items is None:
            return None
        try:
            return sino.decode(request, items[0]).raw
        except sino.DalySinowealthError as exc:
            self.stats.refused[type(exc).__name__] += 1
            log.warning("%s: refused Sinowealth answer: %s", self.device.id, exc)
            return None

    async def read(self, ch: Channel) -> Reading | None:
        if self.cell_count is None:
            config = await self.value(ch, sino.Command.PACK_CONFIG)
            if config is None:
                return None
            self.cell_count = min((config & 0x07) + 3, 10)
        cells = []
        for k in range(1, self.cell_count + 1):
            mv = await self.value(ch, k)
            if mv is None:
                return None
            cells.append(mv / 1000)
        current = await self.value(ch, sino.Command.CURRENT)
        soc = await self.value(ch, sino.Command.RSOC)
        if current is None or soc is None:
            return None
        remaining = await self.value(ch, sino.Command.REMAINING_CAPACITY, optional=True)
        full = await self.value(ch, sino.Command.FULL_CAPACITY, optional=True)
        cycles = await self.value(ch, sino.Command.CYCLES, optional=True)
        pack = await self.value(ch, sino.Command.PACK_STATUS, optional=True)
        battery = await self.value(ch, sino.Command.BATTERY_STATUS, optional=True)
        temps = []
        for command in (sino.Command.EXTERNAL_TEMPERATURE_1, sino.Command.EXTERNAL_TEMPERATURE_2):
            raw = await self.value(ch, command, optional=True)
            if raw:
                temps.append(round(raw / 10 - 273.15, 2))
        raw_status: dict[str, int] = {}
        if pack is not None:
            raw_status["pack_status"] = pack
        if battery is not None:
            raw_status["battery_status"] = battery
        state = self._state(
            voltage=round(sum(cells), 3),
            current=current / 1000,
            soc=float(min(soc, 100)),
            remaining_capacity=remaining / 1000 if remaining is not None else None,
            full_capacity=full / 1000 if full else None,
            cycles=cycles,
            cell_voltages=cells,
            temperatures=temps,
            charge_switch=bool(pack & sino.PACK_CHGMOS) if pack is not None else None,
            discharge_switch=bool(pack & sino.PACK_DSGMOS) if pack is not None else None,
            alarms=sino.status_codes(battery) if battery is not None else [],
            raw_status=raw_status,
        )
        return Reading(state, self.cell_count)


HANDLERS: dict[str, type[Handler]] = {
    "a5": A5Handler,
    "d2": D2Handler,
    "p81": P81Handler,
    "sinowealth": SinowealthHandler,
}
PROTOCOL_NAMES = {
    "a5": "daly-a5",
    "d2": "daly-d2",
    "p81": "daly-81",
    "sinowealth": "daly-sinowealth",
}


# ---------------------------------------------------------------------------------------------
# Detection (doc §2)
# ---------------------------------------------------------------------------------------------


async def _probe_modbus(ch: Channel, request: bytes, reply_address: int, timeout: float) -> bool:
    count = int.from_bytes(request[4:6], "big")
    length = 5 + 2 * count

    def factory() -> Callable[[bytes], list[bytes]]:
        stream = ModbusStream({reply_address})
        stream.max_length = length
        return lambda chunk: [f for f in stream.feed(chunk) if len(f) == length]

    return (
        await ch.ask(request, factory, bool, what="probe", timeout=timeout, retries=0) is not None
    )


async def _probe_a5(ch: Channel, host: int, board: int, timeout: float) -> bool:
    request = a5.build_request(a5.Command.SOC, a5.host_address(board, host))

    def factory() -> Callable[[bytes], list[a5.A5Frame]]:
        return a5.FrameStream(board=board, commands={a5.Command.SOC}).feed

    return (
        await ch.ask(request, factory, bool, what="probe", timeout=timeout, retries=0) is not None
    )


async def _probe_sinowealth(ch: Channel, timeout: float) -> bool:
    request = sino.build_request(sino.Command.TOTAL_VOLTAGE)

    def factory() -> Callable[[bytes], list[bytes]]:
        buf = bytearray()

        def parse(chunk: bytes) -> list[bytes]:
            buf.extend(chunk)
            if len(buf) < 3:
                return []
            try:
                sino.parse_response(request, bytes(buf[:3]))
            except sino.DalySinowealthError:
                return []
            return [bytes(buf[:3])]

        return parse

    return (
        await ch.ask(request, factory, bool, what="probe", timeout=timeout, retries=0) is not None
    )


async def detect(
    ch: Channel, device: DeviceConfig, cfg: DalyConfig, kick: Callable[[], Any] | None = None
) -> tuple[str, int | None] | None:
    """The protocol of ``device`` and, for A5, the host address that answered; None when
    nothing answered (doc §2: BLE D2 → 0x81 → A5 0x80 → A5 0x40 (+ one kick write); serial A5
    0x40 → A5 0x80 → 0x81 → Sinowealth if enabled)."""
    board = device.board
    if cfg.transport == "ble":
        if await _probe_modbus(ch, d2.status_request(), d2.ADDRESS, 1.5):
            return "d2", None
        request = p81.status_requests(board)[0]
        if await _probe_modbus(ch, request, p81.response_address(board), 1.5):
            return "p81", None
        hosts = [device.host_address] if device.host_address else [a5.HOST_BLE, a5.HOST_SERIAL]
        for host in hosts:
            if await _probe_a5(ch, host, board, 2.0):
                return "a5", host
        if kick is not None:
            await kick()
            for host in hosts:
                if await _probe_a5(ch, host, board, 2.0):
                    return "a5", host
        return None
    hosts = [device.host_address] if device.host_address else [a5.HOST_SERIAL, a5.HOST_BLE]
    for host in hosts:
        if await _probe_a5(ch, host, board, 0.5):
            return "a5", host
    request = p81.PROBE_REQUEST if board == 1 else p81.status_requests(board)[0]
    if await _probe_modbus(ch, request, p81.response_address(board), 0.5):
        return "p81", None
    if cfg.probe_sinowealth and await _probe_sinowealth(ch, 0.5):
        return "sinowealth", None
    return None
