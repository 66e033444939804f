"""Configuration of one bank: the table ``[banks.<instance>]`` of the site file.

One aggregator process serves one bank; a site with several banks runs one instance per bank
(``--instance``). Keys, units and defaults are listed in the service README. The rules the keys
tune are ../shared/DESIGN.md "Bank rules" and ../shared/protocols/pylontech-can.md §8.1, §9.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Final, Literal

import msgspec
from msgspec import Meta

from bmslink.schema import DeviceId

Chemistry = Literal["lfp", "nmc", "lto"]

Amps = Annotated[float, Meta(ge=0, le=10000)]
Volts = Annotated[float, Meta(ge=0, le=1000)]
CellVolts = Annotated[float, Meta(gt=0, le=10)]
AmpHours = Annotated[float, Meta(gt=0, le=100000)]


@dataclass(frozen=True, slots=True)
class ChemistryDefaults:
    """Conservative per-chemistry values used when neither the BMS nor the config gives one.

    ``charge_c``/``discharge_c``: current limits as a C-rate (A per Ah of capacity);
    ``cell_cvl``/``cell_dvl``: charge/discharge voltage limits per cell (V), multiplied by the
    member's cell count when it is known.
    """

    charge_c: float
    discharge_c: float
    cell_cvl: float
    cell_dvl: float


CHEMISTRY_DEFAULTS: Final[dict[str, ChemistryDefaults]] = {
    # LFP: Pylontech/Hubble datasheets recommend 0.5 C; 0.3 C charge is the conservative side.
    # 3.50 V/cell CVL (52.5 V for 15 s, 56.0 V for 16 s); 3.00 V/cell DVL.
    "lfp": ChemistryDefaults(charge_c=0.3, discharge_c=0.5, cell_cvl=3.50, cell_dvl=3.00),
    "nmc": ChemistryDefaults(charge_c=0.2, discharge_c=0.5, cell_cvl=4.10, cell_dvl=3.30),
    "lto": ChemistryDefaults(charge_c=1.0, discharge_c=1.0, cell_cvl=2.70, cell_dvl=2.00),
}


class PackConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """What the site knows of one member, for BMSes that do not report it (all optional).

    ``capacity`` (Ah) is the weight of the pack (current share, SoC/SoH means) and wins over
    what the BMS reports; ``charge_current_limit``/``discharge_current_limit`` (A) and
    ``charge_voltage_limit``/``discharge_voltage_limit`` (V) are used when the BMS gives none;
    ``chemistry`` and ``cell_count`` pick the default limits when neither does.
    """

    capacity: AmpHours | None = None
    charge_current_limit: Amps | None = None
    discharge_current_limit: Amps | None = None
    charge_voltage_limit: Volts | None = None
    discharge_voltage_limit: Volts | None = None
    chemistry: Chemistry | None = None
    cell_count: Annotated[int, Meta(ge=1, le=1024)] | None = None


class BankConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """One bank (``[banks.<instance>]``). Every rule is explained in the service README.

    - ``id``: the bank's device id (default: the instance name); ``name``: a display name.
    - ``members``: member ids; empty (default) means every battery seen on ``bms/+/state``.
    - ``packs``: per-member :class:`PackConfig`, keyed by member id.
    - ``stale_after`` (s): a member's state older than this does not count (summary, degraded).
    - ``limits_stale_after`` (s): for the current limits a member whose state is older than this
      is treated as possibly disconnected (default: 3 s or 3 of its poll intervals, whichever is
      larger; never above ``stale_after``).
    - ``future_tolerance`` (s): a state stamped further than this ahead of now is refused.
    - ``period`` (s): the bank state is published at least this often; ``min_interval`` (s): and
      never more often, also when member updates arrive faster.
    - ``current_share_margin`` (0..1]: the weakest-link current × this when two or more members
      share a direction (packs in parallel do not split exactly by capacity).
    - ``warning_derate`` [0..1]: a member's limit in a direction × this while it raises a
      warning that would block that direction as an alarm.
    - ``max_charge_current``/``max_discharge_current`` (A), ``max_charge_voltage`` (V): bank caps.
    - ``chemistry``: chemistry of members without their own (else inferred from the BMS's CVL
      per cell, else LFP); ``default_capacity`` (Ah): weight of a member whose capacity neither
      config nor BMS gives.
    - ``taper``: scale the CCL down linearly from 1 at ``taper_start_cell_voltage`` to 0 at
      ``taper_end_cell_voltage`` (V, highest cell of a counted member); ``None`` (default): on
      for LFP members.
    - ``soc_hold``: report at most ``soc_hold_value`` (%) until the bank is full: raw SoC 100 %
      and highest cell ≥ ``soc_full_cell_voltage`` (V); stays full until the raw SoC leaves 100 %;
      ``None`` (default): on when every counted member is LFP.
    - ``min_window_overlap`` (0..1]: two members whose voltage windows (cells × the chemistry's
      per-cell DVL..CVL) overlap by less than this share of either window cannot sit on one bus
      bar (exit 2 at start, ``member_incompatible`` at run time);
      ``max_voltage_spread`` (V): at run time, a member whose pack voltage differs by more than
      this from most others is ``member_incompatible`` too.
    - ``max_override_ttl`` (s): longest lease accepted on ``bms/<bank>/set``.
    """

    id: DeviceId | None = None
    name: str | None = None
    members: Annotated[list[DeviceId], Meta(max_length=1024)] = msgspec.field(default_factory=list)
    packs: dict[DeviceId, PackConfig] = msgspec.field(default_factory=dict)
    stale_after: Annotated[float, Meta(gt=0, le=3600)] = 10.0
    limits_stale_after: Annotated[float, Meta(gt=0, le=3600)] | None = None
    future_tolerance: Annotated[float, Meta(ge=0, le=3600)] = 5.0
    period: Annotated[float, Meta(gt=0, le=60)] = 1.0
    min_interval: Annotated[float, Meta(ge=0, le=60)] = 0.05
    current_share_margin: Annotated[float, Meta(gt=0, le=1)] = 0.9
    warning_derate: Annotated[float, Meta(ge=0, le=1)] = 0.5
    max_charge_current: Amps | None = None
    max_discharge_current: Amps | None = None
    max_charge_voltage: Volts | None = None
    chemistry: Chemistry | None = None
    default_capacity: AmpHours = 50.0
    taper: bool | None = None
    taper_start_cell_voltage: CellVolts = 3.45
    taper_end_cell_voltage: CellVolts = 3.55
    soc_hold: bool | None = None
    soc_hold_value: Annotated[float, Meta(ge=50, le=100)] = 99.0
    soc_full_cell_voltage: CellVolts = 3.45
    min_window_overlap: Annotated[float, Meta(gt=0, le=1)] = 0.8
    max_voltage_spread: Annotated[float, Meta(gt=0, le=1000)] = 2.0
    max_override_ttl: Annotated[float, Meta(gt=0, le=3600)] = 3600.0

    def __post_init__(self) -> None:
        if self.taper_end_cell_voltage <= self.taper_start_cell_voltage:
            raise ValueError(
                f"taper_end_cell_voltage {self.taper_end_cell_voltage} V must be above "
                f"taper_start_cell_voltage {self.taper_start_cell_voltage} V "
                "- at `$.taper_end_cell_voltage`"
            )
        if self.min_interval > self.period:
            raise ValueError(
                f"min_interval {self.min_interval} s is above period {self.period} s "
                "- at `$.min_interval`"
            )
        if len(set(self.members)) != len(self.members):
            raise ValueError("a member is listed twice - at `$.members`")
        self._check_windows()

    def _check_windows(self) -> None:
        """Members whose configured cell count × chemistry cannot share one bus bar: an error."""
        known = {
            member_id: window(pack.chemistry or self.chemistry or "lfp", pack.cell_count)
            for member_id, pack in self.packs.items()
            if pack.cell_count is not None and (not self.members or member_id in self.members)
        }
        ids = sorted(known)
        for i, a in enumerate(ids):
            for b in ids[i + 1 :]:
                if not windows_compatible(known[a], known[b], self.min_window_overlap):
                    raise ValueError(
                        f"members {a!r} ({_describe(known[a])}) and {b!r} "
                        f"({_describe(known[b])}) cannot be in parallel on one bus bar: their "
                        f"voltage windows overlap by less than {self.min_window_overlap:.0%} "
                        f"- at `$.packs.{a}` and `$.packs.{b}`"
                    )


def window(chemistry: str, cell_count: int) -> tuple[float, float]:
    """A pack's nominal voltage window (V, V): cells × its chemistry's per-cell DVL and CVL
    (:data:`CHEMISTRY_DEFAULTS`)."""
    defaults = CHEMISTRY_DEFAULTS[chemistry]
    return cell_count * defaults.cell_dvl, cell_count * defaults.cell_cvl


def windows_compatible(a: tuple[float, float], b: tuple[float, float], min_overlap: float) -> bool:
    """Whether two voltage windows (low V, high V) overlap by at least ``min_overlap`` (0..1] of
    each window's width: 15S and 16S LFP (45–52.5 V, 48–56 V: 60 % / 56 %) do not; two 16S LFP
    packs do."""
    overlap = min(a[1], b[1]) - max(a[0], b[0])
    if overlap <= 0:
        return False
    return all(overlap >= min_overlap * (w[1] - w[0]) - 1e-9 for w in (a, b))


def _describe(w: tuple[float, float]) -> str:
    return f"{w[0]:.1f}–{w[1]:.1f} V"


def bank_id(bank: BankConfig, instance: str) -> str:
    """The bank's device id: ``id``, else the instance name."""
    return bank.id or instance


def device_ids(bank: BankConfig, instance: str) -> list[str]:
    """The ids this instance publishes (for ``--print-device-ids`` and the broker ACL)."""
    return [bank_id(bank, instance)]
