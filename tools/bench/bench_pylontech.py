"""Pylontech LV RS485 benchmarks (issue 3).

* **P1** decode speed of the same real 0x42 frames: bmslink's codec (``parse_response`` +
  ``decode_analog``) vs python-pylontech 0.3.3 (``_decode_hw_frame`` + ``_decode_frame`` +
  ``get_values_single_fmt``/``get_values_fmt``), in one run. Goal: ours ≥ 30× faster.
* **P3** one pack's full poll (0x42 + 0x44) through the reader's transport against the simulator
  on a pty paced at 115200 Bd: time vs the wire floor = (request + reply bytes) × 10 / baud +
  the simulator's turnaround per command. Goal ≤ 1.1×. The same figure is measured for
  python-pylontech's own read path (``get_values_single`` + ``send_cmd(0x44)``/``read_frame``),
  whose ``readline()`` waits for its 2 s timeout on every command (reference doc §10.1, §14).
* **F1** robustness: 100 000 mutated real frames through parse + every decoder; counts anything
  that is not a ``PylontechError`` (goal 0).
"""

from __future__ import annotations

import contextlib
import functools
import json
import random
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from battery_simulator.line import PtyLine
from battery_simulator.pylontech import ModelStack, parse_model_spec
from bmslink.protocols import pylontech_rs485 as pylon
from pylontech_rs485_reader.transport import SerialTransport
from tools.bench import Result, time_per_call
from tools.fuzz import mutate_ascii_frame

ROOT = Path(__file__).resolve().parents[2]
VECTORS = ROOT / "tests" / "vectors"  # the project copy of the reference vectors
BAUD = 115200
TURNAROUND_S = 0.002


def _frames() -> tuple[list[bytes], list[bytes]]:
    """(single-pack 0x42 replies, INFO=FF 0x42 replies) that both decoders accept."""
    vectors = json.loads((VECTORS / "pylontech_rs485.json").read_text())["vectors"]
    single: list[bytes] = []
    stack: list[bytes] = []
    for v in vectors:
        if v["command"] != "0x42" or "dialect" in v or not v.get("response"):
            continue
        raw = v["response"].encode()
        try:
            pylon.parse_frame(raw)
        except pylon.PylontechError:
            continue
        is_ff = bool(v.get("request")) and pylon.parse_frame(v["request"].encode()).info == b"\xff"
        (stack if is_ff else single).append(raw)
    capture = json.loads((VECTORS / "pylontech_rs485_capture.json").read_text())["frames"]
    stack += [f["frame"].encode() for f in capture[1:200:2]]
    return single, stack


def bench_p1(quick: bool) -> Result:
    """P1: decode of the same 0x42 frames, ours vs python-pylontech 0.3.3."""
    from pylontech import Pylontech  # type: ignore[import-untyped]

    single, stack = _frames()
    oracle = Pylontech.__new__(Pylontech)  # no serial port: decoding only

    def ours() -> None:
        for raw in single:
            pylon.decode_analog(pylon.parse_response(raw).info, stack=False)
        for raw in stack:
            pylon.decode_analog(pylon.parse_response(raw).info, stack=True)

    def theirs() -> None:
        for raw in single:
            f = oracle._decode_frame(oracle._decode_hw_frame(raw))
            oracle.get_values_single_fmt.parse(f.info[1:])
        for raw in stack:
            f = oracle._decode_frame(oracle._decode_hw_frame(raw))
            oracle.get_values_fmt.parse(f.info[1:])

    min_time = 0.3 if quick else 1.0
    t_ours = t_theirs = float("inf")
    for _ in range(3):  # interleaved, so that load from elsewhere hits both sides alike
        t_ours = min(t_ours, time_per_call(ours, min_time))
        t_theirs = min(t_theirs, time_per_call(theirs, min_time))
    n = len(single) + len(stack)
    ratio = t_theirs / t_ours
    return Result(
        "P1",
        "0x42 decode speed, bmslink vs python-pylontech 0.3.3",
        ratio,
        "x",
        ">= 30",
        ratio >= 30,
        {
            "frames": n,
            "bmslink_us_per_frame": t_ours / n * 1e6,
            "python_pylontech_us_per_frame": t_theirs / n * 1e6,
        },
    )


def _wire_floor(exchanges: list[tuple[bytes, bytes]]) -> float:
    return sum((len(req) + len(resp)) * 10 / BAUD + TURNAROUND_S for req, resp in exchanges)


def bench_p3(quick: bool) -> list[Result]:
    """P3: one pack's 0x42 + 0x44 poll on a wire-paced 115200 Bd pty, ours and theirs."""
    stack = ModelStack(parse_model_spec("US3000C"), seed=1, answer_ff=False)
    req42 = pylon.build_request(2, pylon.Cid2.ANALOG)
    req44 = pylon.build_request(2, pylon.Cid2.ALARM)
    results: list[Result] = []
    with PtyLine(stack, baud=BAUD, turnaround_s=TURNAROUND_S) as line:
        transport = SerialTransport(line.device_path, BAUD)
        transport.open()
        times: list[float] = []
        floors: list[float] = []
        for _ in range(20 if quick else 100):
            started = time.perf_counter()
            r42 = transport.exchange(req42, 1.0)
            r44 = transport.exchange(req44, 1.0)
            assert r42 is not None and r44 is not None
            pylon.decode_analog(pylon.parse_response(r42).info, stack=False)
            pylon.decode_alarm(pylon.parse_response(r44).info)
            times.append(time.perf_counter() - started)
            floors.append(_wire_floor([(req42, r42), (req44, r44)]))
        transport.close()
        ratio = statistics.median(times) / statistics.median(floors)
        results.append(
            Result(
                "P3",
                "one pack's 0x42+0x44 poll vs the 115200 Bd wire floor (bmslink)",
                ratio,
                "x floor",
                "<= 1.1",
                ratio <= 1.1,
                {
                    "median_s": statistics.median(times),
                    "floor_s": statistics.median(floors),
                    "turnaround_s": TURNAROUND_S,
                    "samples": len(times),
                },
            )
        )
        results.append(_p3_python_pylontech(line, req42, req44, 1 if quick else 3))
    return results


def _p3_python_pylontech(line: PtyLine, req42: bytes, req44: bytes, rounds: int) -> Result:
    from pylontech import Pylontech

    client = Pylontech(serial_port=line.device_path, baudrate=BAUD)
    times: list[float] = []
    try:
        for _ in range(rounds):
            started = time.perf_counter()
            client.get_values_single(2)
            client.send_cmd(2, 0x44, b"02")  # no 0x44 API in 0.3.3: its generic read path
            frame = client.read_frame()
            times.append(time.perf_counter() - started)
            assert len(frame.info) == 33  # US3000C 0x44 INFO (with the trailing 0x00)
    finally:
        client.s.close()
    # US3000C replies: 0x42 INFO 61 bytes, 0x44 INFO 33 bytes (18 framing characters each)
    floor = _wire_floor([(req42, bytes(18 + 2 * 61)), (req44, bytes(18 + 2 * 33))])
    ratio = statistics.median(times) / floor
    return Result(
        "P3-ref",
        "the same poll with python-pylontech 0.3.3's read path (readline: 2 s timeout)",
        ratio,
        "x floor",
        None,
        None,
        {"median_s": statistics.median(times), "floor_s": floor, "samples": len(times)},
    )


def bench_fuzz(quick: bool) -> Result:
    """F1: mutated real frames raise only ``PylontechError`` (count of other exceptions)."""
    vectors = json.loads((VECTORS / "pylontech_rs485.json").read_text())["vectors"]
    frames = [v["response"].encode() for v in vectors if v.get("response")]
    rng = random.Random(3)
    n = 20_000 if quick else 100_000
    decoders: list[Callable[[bytes], Any]] = [
        pylon.decode_analog,
        pylon.decode_alarm,
        functools.partial(pylon.decode_alarm, stack=True),
        pylon.decode_system_parameters,
        pylon.decode_management_info,
        pylon.decode_manufacturer_info,
        pylon.decode_serial_number,
        pylon.decode_firmware_version,
        pylon.decode_beaver_analog,
        pylon.decode_beaver_system_parameters,
    ]
    bad = 0
    started = time.perf_counter()
    for _ in range(n):
        try:
            frame = pylon.parse_frame(mutate_ascii_frame(rng, rng.choice(frames)))
        except pylon.PylontechError:
            continue
        except Exception:
            bad += 1
            continue
        for decode in decoders:
            try:
                decode(frame.info)
            except pylon.PylontechError:
                pass
            except Exception:
                bad += 1
    elapsed = time.perf_counter() - started
    return Result(
        "F1",
        f"{n} mutated real frames: exceptions other than PylontechError",
        bad,
        "count",
        "== 0",
        bad == 0,
        {"frames": n, "seconds": elapsed},
    )


def run(quick: bool) -> list[Result]:
    """Every Pylontech benchmark (see the module docstring)."""
    results = [bench_p1(quick)]
    results += bench_p3(quick)
    with contextlib.suppress(KeyboardInterrupt):
        results.append(bench_fuzz(quick))
    return results
