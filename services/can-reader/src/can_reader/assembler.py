"""Assembling a BatteryState from the frames of one cycle, without I/O (reader rules of
pylontech-can.md §7.2).

Each frame is decoded as it arrives into a per-id cache with its arrival time; an id older than
``frame_expiry`` no longer counts. No frame order is assumed and no frame but 0x356 is required
(newer US5000 firmware drops 0x359 and 0x35C, §5: enables are then derived from CCL/DCL > 0).
A cycle is complete when the bus has been quiet for ``settle`` s after a burst, or as soon as an
id repeats (senders that spread the set round-robin). Times are passed in (monotonic ``now``,
Unix ``wall``) so tests drive a fake clock.
"""

from __future__ import annotations

from dataclasses import dataclass

from bmslink.protocols import pylontech_can as pc
from bmslink.schema import BatteryInfo, BatteryState
from can_reader.config import ReaderConfig

PROTOCOL = "pylontech-can"


@dataclass(slots=True)
class _Entry:
    frame: pc.DecodedFrame
    at: float


class Assembler:
    """The frames of one BMS and the states built from them.

    ``device_id`` is the battery's id; ``transport`` describes the link for :class:`BatteryInfo`.
    """

    def __init__(self, device_id: str, cfg: ReaderConfig, transport: str, instance: str) -> None:
        self.device_id = device_id
        self.cfg = cfg
        self.transport = transport
        self.instance = instance
        self.frames: dict[int, _Entry] = {}
        self.last_frame_at: float | None = None
        self._since_publish: set[int] = set()
        self._cycle_complete = False

    def feed(self, can_id: int, data: bytes, extended: bool, now: float) -> pc.DecodedFrame:
        """Decode and cache one frame received at monotonic ``now`` s.

        Raises:
            PylontechCanError: the frame does not decode (e.g. a DLC too short); nothing is
                cached then.
        """
        frame = pc.decode_frame(
            can_id, data, extended=extended, voltage_scale=self.cfg.voltage_scale
        )
        self.last_frame_at = now
        if extended or isinstance(frame, pc.InverterHeartbeat | pc.InverterInfo):
            return frame  # another node's frame (an inverter on a tapped bus)
        if can_id in self._since_publish:
            self._cycle_complete = True
        self._since_publish.add(can_id)
        self.frames[can_id] = _Entry(frame, now)
        return frame

    def due(self, now: float) -> bool:
        """Whether a cycle is complete: an id repeated, or ``settle`` s of quiet after frames."""
        if not self._since_publish:
            return False
        if self._cycle_complete:
            return True
        return self.last_frame_at is not None and now - self.last_frame_at >= self.cfg.settle

    def online(self, now: float) -> bool:
        """True while a frame arrived within ``offline_after`` s."""
        return self.last_frame_at is not None and now - self.last_frame_at <= self.cfg.offline_after

    def _fresh(self, now: float) -> dict[int, pc.DecodedFrame]:
        return {
            can_id: entry.frame
            for can_id, entry in self.frames.items()
            if now - entry.at <= self.cfg.frame_expiry
        }

    def take_state(self, now: float, wall: float) -> BatteryState | None:
        """The state of the frames fresh at ``now`` (ts = ``wall``), or None without a fresh
        0x356; starts a new cycle."""
        self._since_publish.clear()
        self._cycle_complete = False
        return build_state(self.device_id, self._fresh(now), wall, self.cfg.invert_current)

    def info(self, now: float) -> BatteryInfo:
        """Identity from 0x35E (manufacturer), 0x35F (firmware version, capacity) and 0x379."""
        fresh = self._fresh(now)
        manufacturer = fresh.get(pc.ID_MANUFACTURER)
        info_frame = fresh.get(pc.ID_BATTERY_INFO)
        firmware = None
        capacity = _capacity(fresh)
        if isinstance(info_frame, pc.BatteryInfoFrame) and info_frame.version is not None:
            firmware = f"{info_frame.version[0]}.{info_frame.version[1]}"
        return BatteryInfo(
            id=self.device_id,
            manufacturer=manufacturer.name or None
            if isinstance(manufacturer, pc.Manufacturer)
            else None,
            firmware=firmware,
            design_capacity=capacity,
            protocol=PROTOCOL,
            transport=self.transport,
            service="can-reader",
            instance=self.instance,
        )


def _capacity(frames: dict[int, pc.DecodedFrame]) -> float | None:
    installed = frames.get(pc.ID_INSTALLED_CAPACITY)
    if isinstance(installed, pc.InstalledCapacity) and installed.capacity > 0:
        return float(installed.capacity)
    info = frames.get(pc.ID_BATTERY_INFO)
    if isinstance(info, pc.BatteryInfoFrame) and info.capacity:
        return float(info.capacity)
    return None


def build_state(
    device_id: str, frames: dict[int, pc.DecodedFrame], wall: float, invert_current: bool
) -> BatteryState | None:
    """Map decoded frames (by id) to a :class:`BatteryState` (schema units, current + =
    charging after ``invert_current``). None without a 0x356.

    Enables come from 0x35C when present, else from CCL/DCL > 0 (§5); alarms and warnings are the
    union of 0x359 and 0x35A; cell extremes and temperature range from 0x373 when present,
    otherwise the 0x356 average temperature is the only sensor.
    """
    meas = frames.get(pc.ID_MEASUREMENTS)
    if not isinstance(meas, pc.Measurements):
        return None
    limits = frames.get(pc.ID_LIMITS)
    soc = frames.get(pc.ID_SOC_SOH)
    prot = frames.get(pc.ID_PROTECTION)
    pairs = frames.get(pc.ID_ALARM_PAIRS)
    flags = frames.get(pc.ID_REQUEST_FLAGS)
    extremes = frames.get(pc.ID_CELL_EXTREMES)
    raw: dict[str, int] = {}
    alarms: list[str] = []
    warnings: list[str] = []
    if isinstance(prot, pc.ProtectionAlarms):
        alarms += prot.alarms
        warnings += prot.warnings
        raw["protection"] = prot.protection1 | prot.protection2 << 8
        raw["alarm"] = prot.alarm1 | prot.alarm2 << 8
        if prot.module_count is not None:
            raw["module_count"] = prot.module_count
    if isinstance(pairs, pc.AlarmPairs):
        alarms += pairs.alarms
        warnings += pairs.warnings
        raw["alarm_pairs"] = int.from_bytes(pairs.raw[:4], "little")
        raw["warning_pairs"] = int.from_bytes(pairs.raw[4:], "little")
    charge_enabled: bool | None = None
    discharge_enabled: bool | None = None
    if isinstance(flags, pc.RequestFlags):
        charge_enabled, discharge_enabled = flags.charge_enable, flags.discharge_enable
        raw["request_flags"] = flags.raw
    elif isinstance(limits, pc.Limits):
        charge_enabled = limits.charge_current_limit > 0
        discharge_enabled = limits.discharge_current_limit > 0
    current = meas.current
    if current is not None and invert_current:
        current = -current
    state = BatteryState(
        id=device_id,
        ts=wall,
        voltage=max(0.0, meas.voltage),
        current=current,
        soc=None if not isinstance(soc, pc.SocSoh) else float(min(100, soc.soc)),
        soh=None if not isinstance(soc, pc.SocSoh) or soc.soh is None else float(min(100, soc.soh)),
        design_capacity=_capacity(frames),
        cycles=meas.cycles,
        charge_enabled=charge_enabled,
        discharge_enabled=discharge_enabled,
        alarms=list(dict.fromkeys(alarms)),
        warnings=list(dict.fromkeys(warnings)),
        raw_status=raw,
    )
    if isinstance(limits, pc.Limits):
        state.charge_voltage_limit = limits.charge_voltage_limit
        state.discharge_voltage_limit = limits.discharge_voltage_limit
        state.charge_current_limit = max(0.0, limits.charge_current_limit)
        state.discharge_current_limit = max(0.0, limits.discharge_current_limit)
    if isinstance(extremes, pc.CellExtremes):
        state.cell_min = extremes.cell_min
        state.cell_max = extremes.cell_max
        state.cell_delta = round(extremes.cell_max - extremes.cell_min, 4)
        state.temperature_min = extremes.temperature_min
        state.temperature_max = extremes.temperature_max
    elif meas.temperature is not None:
        state.temperatures = [meas.temperature]
    return state
