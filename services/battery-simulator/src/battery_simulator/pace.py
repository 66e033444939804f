"""PACE BMS packs (Hubble Lithium AM2 and others) on one Modbus RTU bus: request in, reply out.

Protocol facts follow ``shared/protocols/pace-modbus-am2.md`` ("§n"); frames come from the shared
codecs :mod:`bmslink.protocols.modbus_rtu` and registers from :mod:`bmslink.protocols.pace_modbus`.

* :class:`ModbusRtuFramer` cuts a byte stream into RTU request frames for
  :class:`battery_simulator.line.Line` (by function code and length; a pause longer than
  ``idle_reset_s`` forgets a partial frame; a frame with a bad CRC is resynchronised byte by byte).
* :class:`PacePack` simulates one pack: SoC follows a current profile over wall time, cell
  voltages follow an NMC (AM2) or LFP open-circuit curve, temperatures drift slowly; it holds the
  whole register image 0..179 including the settings and strings.
* :class:`PaceBus` is the :class:`~battery_simulator.line.Responder`: several packs (slave
  addresses) on one line, absent/silent slaves stay silent, and per-address :class:`PaceFaults`
  (silence, exception replies, CRC errors, slow answers).

A slave answers FC 0x03 (and 0x04, same image) within the map 0..179 (reserved registers read 0;
count 1..125, else exception 3; past 179 exception 2), FC 0x10 to 60..114 when writes are enabled
(else exception 2; FC 0x06 is not listed by PACE: exception 1), other function codes with
exception 1; a request with a bad CRC or to broadcast address 0 gets no reply.
"""

from __future__ import annotations

import itertools
import logging
import math
import random
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from battery_simulator.pylontech import CurrentProfile, lfp_ocv
from bmslink.protocols import modbus_rtu as rtu
from bmslink.protocols import pace_modbus as pace

__all__ = [
    "PACE_MODELS",
    "ModbusRtuFramer",
    "PaceBus",
    "PaceFaults",
    "PaceModel",
    "PacePack",
    "PackSpec",
    "build_bus",
    "nmc_ocv",
    "parse_pack_spec",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PaceModel:
    """A PACE pack type.

    Attributes:
        name: model name (``AM2``, ``PACE16``).
        cells: number of cells in series (1..16).
        capacity_ah: design capacity, Ah.
        chemistry: ``nmc`` or ``lfp`` (open-circuit voltage curve).
        version: the version string of registers 150..159.
    """

    name: str
    cells: int
    capacity_ah: float
    chemistry: str
    version: str


PACE_MODELS: dict[str, PaceModel] = {
    # Hubble AM-2 48 V 5.5 kWh: 13S NMC, 105 Ah, firmware string from the AM2 library (§1).
    "AM2": PaceModel("AM2", 13, 105.0, "nmc", "P13S120A-12290-2.05T"),
    # A 16S LFP PACE pack (the Revov R100 of [SYSP #39]).
    "PACE16": PaceModel("PACE16", 16, 100.0, "lfp", "P16S100A-12720-4.05G"),
}

_NMC_OCV = ((0, 3.30), (5, 3.50), (10, 3.58), (20, 3.65), (40, 3.74), (60, 3.85), (80, 3.98))
_NMC_OCV_TOP = ((90, 4.05), (100, 4.15))


def _interp(points: tuple[tuple[float, float], ...], soc: float) -> float:
    soc = min(100.0, max(0.0, soc))
    for (s0, v0), (s1, v1) in itertools.pairwise(points):
        if soc <= s1:
            return v0 + (v1 - v0) * (soc - s0) / (s1 - s0)
    return points[-1][1]


def nmc_ocv(soc: float) -> float:
    """Open-circuit voltage of an NMC cell at ``soc`` % (V), piecewise linear 3.30..4.15 V."""
    return _interp(_NMC_OCV + _NMC_OCV_TOP, soc)


#: Settings of the simulated packs (§6.6), engineering units; AM2 values are plausible guesses
#: for a 13S NMC pack (no real settings dump is public).
def _settings(model: PaceModel) -> dict[str, float | int]:
    n = model.cells
    if model.chemistry == "nmc":
        cell_ov, cell_ov_p, cell_uv, cell_uv_p, full = 4.15, 4.25, 3.20, 3.00, 4.10
    else:
        cell_ov, cell_ov_p, cell_uv, cell_uv_p, full = 3.60, 3.70, 2.80, 2.60, 3.50
    return {
        "pack_ov_alarm": round(cell_ov * n, 3),
        "pack_ov_protect": round(cell_ov_p * n, 3),
        "pack_ov_release": round((cell_ov - 0.05) * n, 3),
        "pack_ov_delay": 1.0,
        "cell_ov_alarm": cell_ov,
        "cell_ov_protect": cell_ov_p,
        "cell_ov_release": round(cell_ov - 0.05, 3),
        "cell_ov_delay": 1.0,
        "pack_uv_alarm": round(cell_uv * n, 3),
        "pack_uv_protect": round(cell_uv_p * n, 3),
        "pack_uv_release": round((cell_uv + 0.1) * n, 3),
        "pack_uv_delay": 1.0,
        "cell_uv_alarm": cell_uv,
        "cell_uv_protect": cell_uv_p,
        "cell_uv_release": round(cell_uv + 0.1, 3),
        "cell_uv_delay": 1.0,
        "charge_oc_alarm": 100,
        "charge_oc_protect": 110,
        "charge_oc_delay": 1.0,
        "discharge_oc_alarm": 120,
        "discharge_oc_protect": 130,
        "discharge_oc_delay": 1.0,
        "discharge_oc2_protect": 200,
        "discharge_oc2_delay": 0.1,
        "charge_ot_alarm": 50.0,
        "charge_ot_protect": 55.0,
        "charge_ot_release": 50.0,
        "discharge_ot_alarm": 55.0,
        "discharge_ot_protect": 60.0,
        "discharge_ot_release": 55.0,
        "charge_ut_alarm": 2.0,
        "charge_ut_protect": 0.0,
        "charge_ut_release": 3.0,
        "discharge_ut_alarm": -15.0,
        "discharge_ut_protect": -20.0,
        "discharge_ut_release": -15.0,
        "mosfet_ot_alarm": 90.0,
        "mosfet_ot_protect": 100.0,
        "mosfet_ot_release": 85.0,
        "env_ot_alarm": 60.0,
        "env_ot_protect": 65.0,
        "env_ot_release": 60.0,
        "env_ut_alarm": -20.0,
        "env_ut_protect": -25.0,
        "env_ut_release": -20.0,
        "balance_start_voltage": round(full - 0.2, 3),
        "balance_start_delta": 0.03,
        "pack_full_charge_voltage": round(full * n, 3),
        "pack_full_charge_current": 2.0,
        "cell_sleep_voltage": cell_uv_p,
        "cell_sleep_delay": 60,
        "short_circuit_delay": 300,
        "soc_alarm_threshold": 10,
        "charge_oc2_protect": 150,
        "charge_oc2_delay": 0.1,
    }


@dataclass(frozen=True)
class PackSpec:
    """One simulated pack: slave ``address`` (1..15), ``model`` and initial ``soc`` (%)."""

    address: int
    model: PaceModel
    soc: float = 60.0


def parse_pack_spec(text: str) -> list[PackSpec]:
    """Parse ``ADDR[:MODEL[:SOC]],...`` e.g. ``1:AM2:86,2:AM2:60,5:PACE16``.

    MODEL defaults to AM2, SOC to 60 %. Raises ``ValueError`` naming the bad item (unknown
    model, address outside 1..15 or repeated, SoC outside 0..100).
    """
    specs: list[PackSpec] = []
    seen: set[int] = set()
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        parts = item.split(":")
        if len(parts) > 3:
            raise ValueError(f"{item!r}: expected ADDR[:MODEL[:SOC]]")
        try:
            address = int(parts[0])
        except ValueError:
            raise ValueError(f"{item!r}: address {parts[0]!r} is not a number") from None
        if not 1 <= address <= 15 or address in seen:
            raise ValueError(f"{item!r}: address must be 1..15 and unique")
        seen.add(address)
        model_name = parts[1].upper() if len(parts) > 1 and parts[1] else "AM2"
        if model_name not in PACE_MODELS:
            raise ValueError(f"{item!r}: unknown model (known: {', '.join(PACE_MODELS)})")
        soc = 60.0
        if len(parts) > 2:
            try:
                soc = float(parts[2])
            except ValueError:
                raise ValueError(f"{item!r}: SoC {parts[2]!r} is not a number") from None
            if not 0 <= soc <= 100:
                raise ValueError(f"{item!r}: SoC must be 0..100")
        specs.append(PackSpec(address, PACE_MODELS[model_name], soc))
    if not specs:
        raise ValueError("no pack given")
    return specs


class PacePack:
    """One simulated PACE pack and its register image 0..179 (§6).

    The current (A, + = charging) comes from ``current(t)``; SoC integrates it over the
    ``clock``; a full pack takes no charge and an empty one gives none (current clamped to 0,
    and register 11 shows the charge / discharge MOSFET off).
    Cell voltages = open-circuit voltage + current × 1.5 mΩ + fixed per-cell offsets (±5 mV)
    + ±1 mV noise; pack voltage = sum of the cells (10 mV resolution); temperatures drift around
    22 °C (``temperature_offset`` shifts them, e.g. −30 for a sub-zero test). ``overrides`` maps
    register-map names to fixed values (e.g. ``{"warning_flags": 1}``) applied last.
    """

    def __init__(
        self,
        spec: PackSpec,
        current: Callable[[float], float],
        *,
        clock: Callable[[], float] = time.monotonic,
        seed: int | None = None,
        temperature_offset: float = 0.0,
    ) -> None:
        self.spec = spec
        self.model = spec.model
        self.address = spec.address
        self.soc = spec.soc
        self._current_fn = current
        self._clock = clock
        self._last = clock()
        self._rng = random.Random(seed)
        self._offsets = [self._rng.uniform(-0.005, 0.005) for _ in range(self.model.cells)]
        self.cycles = 100 + spec.address * 7
        self.discharged_ah = 0.0
        self.temperature_offset = temperature_offset
        self.settings: dict[str, float | int] = _settings(self.model)
        self.version = self.model.version
        self.bms_serial = f"PACE{self.model.cells}S-{spec.address:04d}"
        self.pack_serial = f"Jun 23 2021,14:46:{spec.address:02d}"
        self.overrides: dict[str, pace.Value] = {}
        self._lock = threading.Lock()

    def _advance(self) -> float:
        now = self._clock()
        dt = max(0.0, now - self._last)
        self._last = now
        current = self._current_fn(now)
        if (current > 0 and self.soc >= 100.0) or (current < 0 and self.soc <= 0.0):
            current = 0.0
        delta_ah = current * dt / 3600.0
        self.soc = min(100.0, max(0.0, self.soc + delta_ah / self.model.capacity_ah * 100.0))
        if delta_ah < 0:
            self.discharged_ah -= delta_ah
            while self.discharged_ah >= self.model.capacity_ah:
                self.discharged_ah -= self.model.capacity_ah
                self.cycles += 1
        return current

    def values(self) -> dict[str, pace.Value]:
        """The current register values by map name (engineering units)."""
        with self._lock:
            current = self._advance()
            ocv = nmc_ocv if self.model.chemistry == "nmc" else lfp_ocv
            base = ocv(self.soc) + current * 0.0015
            cells = [
                round(min(4.5, max(2.0, base + off + self._rng.uniform(-0.001, 0.001))), 3)
                for off in self._offsets
            ]
            t = self._clock()
            drift = 1.5 * math.sin(t / 900.0 + self.address)
            temps = [round(22.0 + self.temperature_offset + drift + 0.1 * i, 1) for i in range(4)]
            cap = self.model.capacity_ah
            # reg 11 bits 10/11 (§6.4): the charge MOSFET opens when full, the discharge MOSFET
            # when empty (the same clamp as the current in _advance)
            status = (1 << pace.STATUS_CHARGE_MOSFET if self.soc < 100.0 else 0) | (
                1 << pace.STATUS_DISCHARGE_MOSFET if self.soc > 0.0 else 0
            )
            if current > 0.05:
                status |= 1 << pace.STATUS_CHARGING
            elif current < -0.05:
                status |= 1 << pace.STATUS_DISCHARGING
            balance = 0
            if cells and current > 0 and max(cells) - min(cells) > 0.004:
                balance = 1 << cells.index(max(cells))
            values: dict[str, pace.Value] = {
                "current": round(current, 2),
                "voltage": round(sum(cells), 2),
                "soc": round(self.soc),
                "soh": 100,
                "remaining_capacity": round(cap * self.soc / 100.0, 2),
                "full_capacity": cap,
                "design_capacity": cap,
                "cycles": self.cycles,
                "warning_flags": 0,
                "protection_flags": 0,
                "status_flags": status,
                "balance_flags": balance,
                "mosfet_temperature": round(temps[0] + 3.0, 1),
                "ambient_temperature": round(temps[0] + 1.5, 1),
                "version": self.version,
                "bms_serial": self.bms_serial,
                "pack_serial": self.pack_serial,
            }
            for i, v in enumerate(cells, 1):
                values[f"cell_voltage_{i}"] = v
            for i, v in enumerate(temps, 1):
                values[f"cell_temperature_{i}"] = v
            values.update(self.settings)
            values.update(self.overrides)
            return values

    def read(self, start: int, count: int) -> list[int]:
        """Registers ``start .. start+count-1`` (within 0..179) of the current image."""
        return pace.encode_block(start, count, self.values())

    def write(self, start: int, registers: Iterable[int]) -> None:
        """Store a write to the settings (60..114): decoded and kept in :attr:`settings`."""
        regs = list(registers)
        current = pace.encode_block(
            pace.SETTINGS_BLOCK.start, pace.SETTINGS_BLOCK.count, {**self.settings}
        )
        offset = start - pace.SETTINGS_BLOCK.start
        current[offset : offset + len(regs)] = regs
        decoded = pace.decode_settings(current)
        with self._lock:
            self.settings.update({k: v for k, v in decoded.values.items() if v is not None})


@dataclass
class PaceFaults:
    """Fault injection, per address; change the fields at any time (thread-safe enough: each
    field is read once per request).

    Attributes:
        silent: addresses that never answer (a pack present on the bus but mute).
        exception: address → exception code every request to it is answered with (e.g. 2).
        bad_crc: addresses whose replies carry a CRC off by one.
        slow: address → extra delay before its replies, s (e.g. 0.6 > the reader's timeout).
        truncate: addresses whose replies lose their last 3 bytes.
    """

    silent: set[int] = field(default_factory=set)
    exception: dict[int, int] = field(default_factory=dict)
    bad_crc: set[int] = field(default_factory=set)
    slow: dict[int, float] = field(default_factory=dict)
    truncate: set[int] = field(default_factory=set)

    def clear(self) -> None:
        """Remove every fault."""
        self.silent.clear()
        self.exception.clear()
        self.bad_crc.clear()
        self.slow.clear()
        self.truncate.clear()


class PaceBus:
    """PACE packs sharing one RS485 line (a :class:`~battery_simulator.line.Responder`).

    Args:
        packs: the simulated packs (one per slave address).
        faults: fault injection (a fresh :class:`PaceFaults` by default).
        allow_writes: answer FC 0x10 to the settings (60..114); otherwise exception 2.

    Attributes:
        requests: requests seen per slave address (including absent ones), for tests and the
            benchmark (transactions per pack).
    """

    def __init__(
        self,
        packs: Iterable[PacePack],
        *,
        faults: PaceFaults | None = None,
        allow_writes: bool = False,
    ) -> None:
        self.packs: dict[int, PacePack] = {p.address: p for p in packs}
        self.faults = faults if faults is not None else PaceFaults()
        self.allow_writes = allow_writes
        self.requests: dict[int, int] = {}
        self.bad_requests = 0
        self._delay = 0.0

    @property
    def extra_delay_s(self) -> float:
        """Delay before the reply to the request just answered (the ``slow`` fault), s."""
        return self._delay

    def respond(self, request: bytes) -> bytes | None:
        """The reply to one RTU request frame, or None (silence). Never raises."""
        self._delay = 0.0
        try:
            req = rtu.parse_request(request)
        except rtu.ModbusError as exc:
            self.bad_requests += 1
            log.debug("ignoring request %s: %s", request.hex(), exc)
            return None
        self.requests[req.slave] = self.requests.get(req.slave, 0) + 1
        pack = self.packs.get(req.slave)
        faults = self.faults
        if pack is None or req.slave in faults.silent:
            return None
        self._delay = faults.slow.get(req.slave, 0.0)
        code = faults.exception.get(req.slave)
        reply = (
            rtu.build_exception(req.slave, req.function, code)
            if code is not None
            else self._answer(pack, req)
        )
        if req.slave in faults.bad_crc:
            reply = reply[:-2] + bytes([reply[-2] ^ 0x01, reply[-1]])
        if req.slave in faults.truncate:
            reply = reply[:-3]
        return reply

    def _answer(self, pack: PacePack, req: rtu.Request) -> bytes:
        fc = req.function
        if fc in (rtu.FC_READ_HOLDING, rtu.FC_READ_INPUT):
            if not 1 <= req.count <= rtu.MAX_READ_REGISTERS:
                return rtu.build_exception(req.slave, fc, rtu.ExceptionCode.ILLEGAL_DATA_VALUE)
            if req.start + req.count > pace.MAP_END:
                return rtu.build_exception(req.slave, fc, rtu.ExceptionCode.ILLEGAL_DATA_ADDRESS)
            return rtu.build_read_response(req.slave, pack.read(req.start, req.count), fc)
        if fc == rtu.FC_WRITE_MULTIPLE:
            settings = pace.SETTINGS_BLOCK
            if (
                not self.allow_writes
                or req.start < settings.start
                or req.start + req.count > settings.end
            ):
                return rtu.build_exception(req.slave, fc, rtu.ExceptionCode.ILLEGAL_DATA_ADDRESS)
            pack.write(req.start, req.values)
            return rtu.build_write_response(req.slave, req.start, req.count)
        return rtu.build_exception(req.slave, fc, rtu.ExceptionCode.ILLEGAL_FUNCTION)


class ModbusRtuFramer:
    """Cuts a byte stream into Modbus RTU request frames (a line :class:`Framer`).

    The frame length follows from the function code (:func:`bmslink.protocols.modbus_rtu.
    request_length`). A frame whose CRC does not check is not returned; the framer drops its
    first byte and looks for a frame in the rest (resynchronisation after noise). A gap of more
    than ``idle_reset_s`` between chunks forgets a partial frame (RTU's silent interval; generous
    because a pty or TCP delivers a whole request at once).
    """

    def __init__(self, idle_reset_s: float = 0.05, max_buffer: int = 512) -> None:
        self.idle_reset_s = idle_reset_s
        self.max_buffer = max_buffer
        self._buf = bytearray()
        self._started_at = 0.0
        self._last_at = 0.0
        self.dropped = 0  #: bytes discarded as noise

    def reset(self) -> None:
        """Forget a partial frame (a new client connected)."""
        self.dropped += len(self._buf)
        self._buf.clear()

    def feed(self, data: bytes, now: float) -> list[tuple[bytes, float]]:
        """Add received bytes (arrived at monotonic ``now``); return complete frames with the
        arrival time of their first byte."""
        if self._buf and now - self._last_at > self.idle_reset_s:
            self.reset()
        if not self._buf:
            self._started_at = now
        self._last_at = now
        self._buf += data
        frames: list[tuple[bytes, float]] = []
        while self._buf:
            need = rtu.request_length(bytes(self._buf[:7]))
            if need is None or len(self._buf) < need:
                if len(self._buf) > self.max_buffer:
                    self.reset()
                break
            candidate = bytes(self._buf[:need])
            try:
                rtu.check_crc(candidate)
            except rtu.ModbusError:
                del self._buf[0]
                self.dropped += 1
                continue
            del self._buf[:need]
            frames.append((candidate, self._started_at))
            self._started_at = now
        return frames


def build_bus(
    specs: Iterable[PackSpec],
    profile: CurrentProfile | None = None,
    *,
    seed: int | None = None,
    clock: Callable[[], float] = time.monotonic,
    faults: PaceFaults | None = None,
    allow_writes: bool = False,
    overrides: Mapping[int, Mapping[str, pace.Value]] | None = None,
) -> PaceBus:
    """A :class:`PaceBus` of packs built from ``specs`` with a current ``profile`` (a sine of
    10 A amplitude over 600 s by default; each pack gets a ±3 % spread and its own phase)."""
    profile = profile or CurrentProfile()
    packs = []
    for i, spec in enumerate(specs):
        scale = 1.0 + 0.03 * ((i % 3) - 1)
        phase = i * 0.7

        def current(t: float, scale: float = scale, phase: float = phase) -> float:
            if profile.constant_a is not None:
                return profile.constant_a * scale
            return (
                profile.amplitude_a * scale * math.sin(2 * math.pi * t / profile.period_s + phase)
            )

        pack = PacePack(spec, current, clock=clock, seed=None if seed is None else seed + i)
        if overrides and spec.address in overrides:
            pack.overrides.update(overrides[spec.address])
        packs.append(pack)
    return PaceBus(packs, faults=faults, allow_writes=allow_writes)
