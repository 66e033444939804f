"""Daly MOSFET states → ``charge_switch``/``discharge_switch`` (doc daly.md §4.4, §5.2, §7.2).

The handlers read real frames of ../shared/vectors/daly.json through a replaying channel (the
request must match byte for byte), so the whole path codec → handler → BatteryState is checked.
A MOSFET state is a switch state: ``charge_enabled``/``discharge_enabled`` stay ``None``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

from bmslink.protocols import daly_d2 as d2
from bmslink.protocols import daly_sinowealth as sino
from daly_ble_reader.channel import Stats
from daly_ble_reader.config import DalyConfig, DeviceConfig
from daly_ble_reader.handlers import D2Handler, Handler, Memory, SinowealthHandler
from tests.vectors import load_vectors

T = TypeVar("T")
VECTORS: list[dict[str, Any]] = load_vectors("daly")["vectors"]


class Replay:
    """A :class:`~daly_ble_reader.channel.Channel` stand-in: each request gets its recorded
    response (or nothing)."""

    def __init__(self, answers: dict[bytes, bytes]) -> None:
        self.answers = answers
        self.asked: list[bytes] = []

    async def ask(
        self,
        request: bytes,
        parse_factory: Callable[[], Callable[[bytes], list[T]]],
        done: Callable[[list[T]], bool],
        **_: Any,
    ) -> list[T] | None:
        self.asked.append(request)
        response = self.answers.get(request)
        return (parse_factory()(response) or None) if response is not None else None


def _handler(cls: type[Handler], protocol: str) -> Handler:
    device = DeviceConfig(id="pack", protocol=protocol)  # type: ignore[arg-type]
    cfg = DalyConfig(transport="serial", port="/dev/null", devices=[device])
    return cls(device, cfg, Stats(), Memory(), lambda: None)


def _read(handler: Handler, answers: dict[bytes, bytes]) -> Any:
    reading = asyncio.run(handler.read(Replay(answers)))  # type: ignore[arg-type]
    assert reading is not None
    return reading.state


def _vector(command: str) -> dict[str, Any]:
    (v,) = [v for v in VECTORS if v["command"] == command]
    return v


def test_d2_real_frame_charge_mosfet_off_discharge_on() -> None:
    v = _vector("CMD_INFO")  # aiobmsble fixture: chrg_mosfet False, dischrg_mosfet True
    assert (v["source_values"]["chrg_mosfet"], v["source_values"]["dischrg_mosfet"]) == (
        False,
        True,
    )
    state = _read(
        _handler(D2Handler, "d2"), {bytes.fromhex(v["request"]): bytes.fromhex(v["response"])}
    )
    assert (state.charge_switch, state.discharge_switch) == (False, True)
    assert (state.charge_enabled, state.discharge_enabled) == (None, None)
    assert state.cycles == 57 and state.voltage == 14.0


def test_d2_real_frame_both_mosfets_on() -> None:
    v = _vector("STATUS_FRAME_80_REG_1")  # syssi 80-register fixture: registers 0x35/0x36 = 1
    handler = _handler(D2Handler, "d2")
    handler.device.status_registers = 80
    state = _read(handler, {d2.status_request(80): bytes.fromhex(v["response"])})
    assert (state.charge_switch, state.discharge_switch) == (True, True)
    assert state.charge_enabled is None and state.current == -2.5


def _sino_frame(command: int, value: int, size: int) -> bytes:
    request = sino.build_request(command)
    data = value.to_bytes(size, "big", signed=value < 0)
    return data + bytes([sino.crc8_smbus(request + data)])


def _sino_answers(pack_status: int | None) -> dict[bytes, bytes]:
    c = sino.Command
    answers = {
        sino.build_request(c.PACK_CONFIG): _sino_frame(c.PACK_CONFIG, 0x0001, 2),  # 4 cells
        sino.build_request(c.CURRENT): _sino_frame(c.CURRENT, -2500, 4),
        sino.build_request(c.RSOC): _sino_frame(c.RSOC, 55, 2),
    }
    for k in range(1, 5):
        answers[sino.build_request(k)] = _sino_frame(k, 3300, 2)
    if pack_status is not None:
        answers[sino.build_request(c.PACK_STATUS)] = _sino_frame(c.PACK_STATUS, pack_status, 2)
    return answers


def test_sinowealth_pack_status_mosfet_bits() -> None:
    # 0x15 = CHGMOS only (bit 0), then DSGMOS only (bit 1) plus DSGING (bit 3); doc §5.2
    state = _read(_handler(SinowealthHandler, "sinowealth"), _sino_answers(0x0001))
    assert (state.charge_switch, state.discharge_switch) == (True, False)
    state = _read(_handler(SinowealthHandler, "sinowealth"), _sino_answers(0x000A))
    assert (state.charge_switch, state.discharge_switch) == (False, True)
    assert state.raw_status["pack_status"] == 0x000A and state.charge_enabled is None


def test_sinowealth_without_pack_status_leaves_the_switches_unknown() -> None:
    # A 4S board returned nothing for 0x15 (doc §5.3, [PDB #21]): unknown, not open
    state = _read(_handler(SinowealthHandler, "sinowealth"), _sino_answers(None))
    assert (state.charge_switch, state.discharge_switch) == (None, None)
    assert state.voltage == 13.2
