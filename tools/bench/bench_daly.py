"""Daly benchmarks (issue 5).

* **P2** decode of the same A5 frame sets (one full 16S poll: 0x94, 0x90-0x93, six 0x95 frames,
  0x96, 0x97, 0x98 = 15 frames as received), bmslink (:func:`daly_a5.decode_poll`: checksums,
  headers, values) vs python-daly-bms 0.5.0 (``dalybms``) reading the same bytes through its own
  path (``get_*`` over an in-memory serial port: its ``_read`` framing + decoders). Goal ≥ 10×.
  The seed's payload-only decoders (``get_*(response_data=…)``, no framing, no checksum) are
  timed too, for reference.
* **B1** BLE, mocked BlueZ (bleak's real BlueZ backend, python-dbusmock): time from
  ``BleLink.open()`` (scan + connect + GATT + notify) to the first full D2 state, and per poll
  afterwards; the same for an A5 board (9 commands, 16 cell frames).
* **F2** robustness: mutated frames per Daly codec (1e5 each; 1e4 with ``--quick``) through
  parse + decoders; counts anything that is not the codec's own error (goal 0).
"""

from __future__ import annotations

import asyncio
import os
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from battery_simulator.daly import A5Framer, A5Responder, DalyPack, ModbusFramer, ModbusResponder
from bmslink.protocols import daly_a5 as a5
from bmslink.protocols import daly_d2 as d2
from bmslink.protocols import daly_sinowealth as sino
from bmslink.protocols.daly_modbus import DalyModbusError, parse_frame, registers_from
from tools.bench import Result, time_per_call

POLL = (0x94, 0x90, 0x91, 0x92, 0x93, 0x95, 0x96, 0x97, 0x98)


def _poll_replies() -> dict[int, bytes]:
    responder = A5Responder({1: DalyPack(current=-12.5, cells=16, sensors=2)})
    out = {}
    for command in POLL:
        reply = responder.respond(a5.build_request(command, a5.HOST_SERIAL))
        assert reply is not None
        out[command] = reply
    return out


class _FakeSerial:
    """An in-memory port answering every request with the recorded reply (for dalybms)."""

    is_open = True

    def __init__(self, replies: dict[int, bytes]) -> None:
        self.replies = replies
        self.buf = b""

    def reset_input_buffer(self) -> None:
        self.buf = b""

    def reset_output_buffer(self) -> None:
        pass

    def write(self, data: bytes) -> int:
        self.buf = self.replies[data[2]]
        return len(data)

    def read(self, n: int) -> bytes:
        out, self.buf = self.buf[:n], self.buf[n:]
        return out


def bench_p2(quick: bool) -> Result:
    """P2: one A5 poll from frame bytes to values, ours vs dalybms 0.5.0."""
    from dalybms import DalyBMS  # type: ignore[import-untyped]

    replies = _poll_replies()
    poll = a5.decode_poll(replies)
    assert len(poll.cells) == 16 and poll.soc.current == -12.5

    seed = DalyBMS(address=4)
    seed.serial = _FakeSerial(replies)

    def theirs_full() -> None:
        seed.get_status()
        seed.get_soc()
        seed.get_cell_voltage_range()
        seed.get_temperature_range()
        seed.get_mosfet_status()
        seed.get_cell_voltages()
        seed.get_temperatures()
        seed.get_balancing_status()
        seed.get_errors()

    payloads = {c: [r[i + 4 : i + 12] for i in range(0, len(r), 13)] for c, r in replies.items()}
    seed2 = DalyBMS(address=4)

    def theirs_payload() -> None:
        seed2.get_status(response_data=payloads[0x94][0])
        seed2.get_soc(response_data=payloads[0x90][0])
        seed2.get_cell_voltage_range(response_data=payloads[0x91][0])
        seed2.get_temperature_range(response_data=payloads[0x92][0])
        seed2.get_mosfet_status(response_data=payloads[0x93][0])
        seed2.get_cell_voltages(response_data=payloads[0x95])
        seed2.get_temperatures(response_data=payloads[0x96])
        seed2.get_balancing_status(response_data=payloads[0x97][0])
        seed2.get_errors(response_data=payloads[0x98][0])

    theirs_full()
    min_time = 0.6 if quick else 3.0
    ours_s = time_per_call(lambda: a5.decode_poll(replies), min_time)
    full_s = time_per_call(theirs_full, min_time)
    payload_s = time_per_call(theirs_payload, min_time)
    ratio = full_s / ours_s
    return Result(
        "P2",
        "A5 poll decode (15 frames) vs dalybms 0.5.0 read path",
        round(ratio, 2),
        "x",
        ">= 10",
        ratio >= 10,
        {
            "ours_us": round(ours_s * 1e6, 2),
            "dalybms_read_path_us": round(full_s * 1e6, 2),
            "dalybms_payload_only_us": round(payload_s * 1e6, 2),
            "ratio_vs_payload_only": round(payload_s / ours_s, 2),
            "note": "ours verifies 15 checksums and headers; the payload-only seed path does not",
        },
    )


def bench_b1(quick: bool) -> list[Result]:
    """B1: connect → first full state, and per poll, over the mocked BlueZ."""
    import sys

    root = Path(__file__).resolve().parents[2]
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    from battery_simulator.daly_ble import BleBoard
    from daly_ble_reader.channel import Channel, Stats
    from daly_ble_reader.config import DalyConfig, DeviceConfig
    from daly_ble_reader.handlers import A5Handler, D2Handler, Handler, Memory
    from daly_ble_reader.transport import BleLink
    from tests.bluez_mock import bluez_with

    boards = [
        BleBoard(
            "AA:BB:CC:00:D2:01",
            "DL-BENCHD2",
            ModbusResponder(DalyPack(current=-12.5)),
            ModbusFramer({0xD2}),
        ),
        BleBoard(
            "AA:BB:CC:00:A5:01",
            "DL-BENCHA5",
            A5Responder({1: DalyPack(current=5.0)}, all_frames=True),
            A5Framer(),
        ),
    ]
    polls = 5 if quick else 20
    results: list[Result] = []
    with tempfile.TemporaryDirectory() as tmp, bluez_with(Path(tmp), boards) as (bus, _p):
        os.environ["DBUS_SYSTEM_BUS_ADDRESS"] = bus.address
        for board, handler_type, name in (
            (boards[0], D2Handler, "D2"),
            (boards[1], A5Handler, "A5"),
        ):
            device = DeviceConfig(id=name.lower(), address=board.address)
            cfg = DalyConfig(transport="ble", devices=[device])

            async def run(
                device: DeviceConfig = device,
                cfg: DalyConfig = cfg,
                handler_type: type[Handler] = handler_type,
            ) -> tuple[float, list[float]]:
                link = BleLink(device.address, None, connect_timeout=10)
                stats = Stats()
                handler = handler_type(device, cfg, stats, Memory(), lambda: None)
                started = time.perf_counter()
                await link.open()
                ch = Channel(link, stats, timeout=1.5, retries=1, ble=True, write_response=False)
                first = await handler.read(ch)
                assert first is not None
                connect_to_state = time.perf_counter() - started
                per_poll = []
                for _ in range(polls):
                    t = time.perf_counter()
                    assert await handler.read(ch) is not None
                    per_poll.append(time.perf_counter() - t)
                await link.close()
                return connect_to_state, per_poll

            first_s, per_poll = asyncio.run(run())
            results.append(
                Result(
                    f"B1-{name}",
                    f"{name} over mocked BLE: connect (scan+GATT) to first full state",
                    round(first_s * 1000, 1),
                    "ms",
                    details={"includes": "scan, connect, notify, identity reads"},
                )
            )
            results.append(
                Result(
                    f"B1-{name}-poll",
                    f"{name} over mocked BLE: one full poll (median of {polls})",
                    round(statistics.median(per_poll) * 1000, 1),
                    "ms",
                    details={"max_ms": round(max(per_poll) * 1000, 1)},
                )
            )
    return results


def _mutate(rng: random.Random, frame: bytes) -> bytes:
    data = bytearray(frame)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(5)
        if op == 0 and data:
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        elif op == 1:
            data.insert(rng.randint(0, len(data)), rng.randrange(256))
        elif op == 2 and data:
            del data[rng.randrange(len(data))]
        elif op == 3:
            del data[rng.randint(0, len(data)) :]
        else:
            data += bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
    return bytes(data)


def bench_f2(quick: bool) -> Result:
    """F2: mutated frames per codec; anything but the codec's error counts."""
    runs = 10_000 if quick else 100_000
    replies = _poll_replies()
    a5_seeds = [r[i : i + 13] for r in replies.values() for i in range(0, len(r), 13)]
    d2_seeds = [ModbusResponder(DalyPack()).respond(d2.status_request()) or b""]
    sino_seeds = [bytes.fromhex("0a01020d03fd"), bytes.fromhex("0a0b02340d0f")]

    def a5_decode(frame: bytes) -> Any:
        f = a5.parse_frame(frame)
        a5.decode_status(f.data)
        a5.decode_alarms(f.data)
        return a5.decode_poll({0x94: frame, 0x90: frame})

    def d2_decode(frame: bytes) -> Any:
        return d2.decode_status(dict(enumerate(registers_from(parse_frame(frame)))))

    def sino_decode(frame: bytes) -> Any:
        return sino.decode(frame[:3], frame[3:])

    codecs: dict[str, tuple[Callable[[bytes], Any], type[Exception], list[bytes]]] = {
        "a5": (a5_decode, a5.DalyA5Error, a5_seeds),
        "d2": (d2_decode, DalyModbusError, d2_seeds),
        "sinowealth": (sino_decode, sino.DalySinowealthError, sino_seeds),
    }
    unexpected: dict[str, int] = {}
    rng = random.Random(55)
    for name, (decode, error, seeds) in codecs.items():
        bad = 0
        for _ in range(runs):
            try:
                decode(_mutate(rng, rng.choice(seeds)))
            except error:
                pass
            except Exception:
                bad += 1
        unexpected[name] = bad
    total = sum(unexpected.values())
    return Result(
        "F2",
        f"Daly codecs: {runs} mutated frames each, non-codec errors",
        total,
        "errors",
        "0",
        total == 0,
        {"per_codec": unexpected},
    )


def run(quick: bool) -> list[Result]:
    """Every Daly figure."""
    return [bench_p2(quick), *bench_b1(quick), bench_f2(quick)]
