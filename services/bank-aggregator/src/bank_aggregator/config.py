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
    """One bank (``[banks.<instance>]``).

    - ``id``: the bank's device id (default: the instance name); ``name``: a display name.
    - ``members``: member ids; empty (default) means every battery seen on ``bms/+/state``.
    - ``packs``: per-member :class:`PackConfig`, keyed by member id.
    - ``stale_after`` (s): a member's state older than this does not count.
    - ``period`` (s): the bank state is published at least this often; ``min_interval`` (s): and
      never more often, also when member updates arrive faster.
    - ``strict_enable``: charge (discharge) only while EVERY counted member allows it (default:
      while at least one does).
    - ``max_charge_current``/``max_discharge_current`` (A), ``max_charge_voltage`` (V): bank caps.
    - ``chemistry``: default chemistry of members; ``default_capacity`` (Ah): weight of a member
      whose capacity neither config nor BMS gives.
    - ``taper``: scale the CCL down linearly from 1 at ``taper_start_cell_voltage`` to 0 at
      ``taper_end_cell_voltage`` (V, highest cell of any counted member).
    - ``soc_hold``: report at most ``soc_hold_value`` (%) until the bank is full: raw SoC 100 %
      and highest cell ≥ ``soc_full_cell_voltage`` (V); stays full until the raw SoC leaves 100 %.
    - ``max_override_ttl`` (s): longest lease accepted on ``bms/<bank>/set``.
    """

    id: DeviceId | None = None
    name: str | None = None
    members: Annotated[list[DeviceId], Meta(max_length=1024)] = msgspec.field(default_factory=list)
    packs: dict[DeviceId, PackConfig] = msgspec.field(default_factory=dict)
    stale_after: Annotated[float, Meta(gt=0, le=3600)] = 10.0
    period: Annotated[float, Meta(gt=0, le=60)] = 1.0
    min_interval: Annotated[float, Meta(ge=0, le=60)] = 0.05
    strict_enable: bool = False
    max_charge_current: Amps | None = None
    max_discharge_current: Amps | None = None
    max_charge_voltage: Volts | None = None
    chemistry: Chemistry = "lfp"
    default_capacity: AmpHours = 50.0
    taper: bool = False
    taper_start_cell_voltage: CellVolts = 3.45
    taper_end_cell_voltage: CellVolts = 3.55
    soc_hold: bool = False
    soc_hold_value: Annotated[float, Meta(ge=50, le=100)] = 99.0
    soc_full_cell_voltage: CellVolts = 3.45
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


def bank_id(bank: BankConfig, instance: str) -> str:
    """The bank's device id: ``id``, else the instance name."""
    return bank.id or instance


def device_ids(bank: BankConfig, instance: str) -> list[str]:
    """The ids this instance publishes (for ``--print-device-ids`` and the broker ACL)."""
    return [bank_id(bank, instance)]
