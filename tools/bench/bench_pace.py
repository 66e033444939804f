"""P4: a full read of one PACE/AM2 pack on a wire-paced 9600 Bd line, ours vs the seed's approach.

The simulator (``battery_simulator.pace``) serves one AM2 pack on a pty and paces every byte at
9600 Bd (8N1: 1.04 ms per byte) with a 10 ms turnaround (the BMS's think time; the real one is
unknown, PACE only bounds it at 200 ms, pace-modbus-am2.md §2).

* **ours**: the am2-modbus-reader's poller (minimalmodbus, block reads): a *full read* is the
  live block 0..36, the strings 150..179 and the settings 60..114 (3 transactions, §7); a
  *steady cycle* is the live block only. PACE's > 100 ms inter-frame gap is respected
  (``frame_gap`` 0.15 s).
* **seed**: ``hubble_lithium_am2`` re-implemented exactly as it reads (§11): one
  ``minimalmodbus.Instrument(port, 1, close_port_after_each_call=True)`` at 9600 Bd,
  ``read_registers(reg, 1)`` for each of registers 0-5, 7, 15-27, 31-36 (26 transactions) and
  ``read_registers(reg, 10)`` for 150, 160, 170 on the first read, each retried up to 5 times
  with 0.3 s sleeps. Measured twice: *as written* (minimalmodbus's 0.05 s timeout and 3.5-
  character gap, which violate PACE's timing) and *spec-compliant* (the same 0.5 s timeout and
  0.15 s gap as ours), which is how it would have to run on a real PACE bus.

Goals (issue 4): ≤ 3 transactions for a full read, ≥ 5× faster than the seed (spec-compliant).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import minimalmodbus  # type: ignore[import-untyped]

from am2_modbus_reader.config import BusConfig
from am2_modbus_reader.poller import Poller
from am2_modbus_reader.transport import ModbusTransport
from battery_simulator.line import PtyLine
from battery_simulator.pace import ModbusRtuFramer, PaceBus, build_bus, parse_pack_spec
from battery_simulator.pylontech import CurrentProfile
from bmslink.derived import EnergyStore
from tools.bench import Result

BAUD = 9600
TURNAROUND_S = 0.010
GAP_S = 0.15
SEED_LIVE_REGISTERS = (0, 1, 2, 3, 4, 5, 7, *range(15, 28), *range(31, 37))
SEED_STRING_REGISTERS = (150, 160, 170)


class _NullSink:
    def state(self, state: object) -> None:
        pass

    def availability(self, device_id: str, online: bool) -> None:
        pass

    def info(self, info: object) -> None:
        pass


def _ours(line: PtyLine, bus: PaceBus, state_dir: str) -> tuple[float, int, float, int]:
    """(full read s, transactions, steady cycle s, transactions) with the reader's poller."""
    cfg = BusConfig(port=line.device_path, baudrate=BAUD, addresses=[1], frame_gap=GAP_S)
    transport = ModbusTransport(cfg.port, cfg.baudrate, cfg.timeout)
    poller = Poller(cfg, transport, _NullSink(), EnergyStore(state_dir, "bench", 3600), "b")
    try:
        transport.open()
        # Count one inter-frame gap per transaction, as for the seed: the poller waits it
        # before each request, so start the clock right after a (virtual) previous frame.
        poller._last_frame = time.monotonic()
        before = bus.requests.get(1, 0)
        t0 = time.perf_counter()
        poller.poll_once()
        full = time.perf_counter() - t0
        mid = bus.requests.get(1, 0)
        t0 = time.perf_counter()
        poller.poll_once()
        steady = time.perf_counter() - t0
        after = bus.requests.get(1, 0)
    finally:
        transport.close()
    return full, mid - before, steady, after - mid


def _seed(line: PtyLine, bus: PaceBus, *, compliant: bool) -> tuple[float, int, float, int, int]:
    """(full read s, transactions, steady s, transactions, failed reads) the seed's way."""
    instrument = minimalmodbus.Instrument(line.device_path, 1, close_port_after_each_call=True)
    instrument.serial.baudrate = BAUD
    if compliant:
        instrument.serial.timeout = 0.5
    failures = 0

    def read(reg: int, count: int) -> None:
        nonlocal failures
        for _ in range(5):  # AM2_READ_RETRY
            if compliant:
                time.sleep(GAP_S)
            try:
                instrument.read_registers(registeraddress=reg, number_of_registers=count)
                return
            except Exception:
                failures += 1
                time.sleep(0.3)  # AM2_READ_DELAY

    def cycle(with_strings: bool) -> tuple[float, int]:
        before = bus.requests.get(1, 0)
        t0 = time.perf_counter()
        for reg in SEED_LIVE_REGISTERS:
            read(reg, 1)
        if with_strings:
            for reg in SEED_STRING_REGISTERS:
                read(reg, 10)
        return time.perf_counter() - t0, bus.requests.get(1, 0) - before

    try:
        full, n_full = cycle(True)
        steady, n_steady = cycle(False)
    finally:
        instrument.serial.close()
        minimalmodbus._serialports.pop(line.device_path, None)
    return full, n_full, steady, n_steady, failures


def _repeat(runs: int, fn: Callable[[], tuple[float, ...]]) -> list[tuple[float, ...]]:
    return [fn() for _ in range(runs)]


def run(quick: bool) -> list[Result]:
    """Measure P4 (see the module docstring); ``quick`` = one run each instead of three."""
    import tempfile

    runs = 1 if quick else 3
    bus = build_bus(parse_pack_spec("1:AM2:86"), CurrentProfile(constant_a=-3.0), seed=1)
    with (
        tempfile.TemporaryDirectory() as state_dir,
        PtyLine(bus, baud=BAUD, turnaround_s=TURNAROUND_S, framer=ModbusRtuFramer()) as line,
    ):
        ours = _repeat(runs, lambda: _ours(line, bus, state_dir))
        seed_c = _repeat(runs, lambda: _seed(line, bus, compliant=True))
        seed_w = _repeat(runs, lambda: _seed(line, bus, compliant=False))

    def med(rows: list[tuple[float, ...]], i: int) -> float:
        return float(statistics.median(r[i] for r in rows))

    ours_full, ours_n, ours_steady, ours_n_steady = (med(ours, i) for i in range(4))
    seed_full, seed_n, seed_steady, seed_n_steady = (med(seed_c, i) for i in range(4))
    raw_full, raw_n, raw_steady, _ = (med(seed_w, i) for i in range(4))
    details = {
        "baud": BAUD,
        "turnaround_s": TURNAROUND_S,
        "gap_s": GAP_S,
        "runs": runs,
        "ours": {
            "full_s": ours_full,
            "full_tx": ours_n,
            "steady_s": ours_steady,
            "steady_tx": ours_n_steady,
        },
        "seed_spec_compliant": {
            "full_s": seed_full,
            "full_tx": seed_n,
            "steady_s": seed_steady,
            "steady_tx": seed_n_steady,
            "failed_reads": med(seed_c, 4),
        },
        "seed_as_written": {
            "full_s": raw_full,
            "full_tx": raw_n,
            "steady_s": raw_steady,
            "failed_reads": med(seed_w, 4),
        },
    }
    speedup = seed_full / ours_full
    return [
        Result(
            "P4",
            f"PACE full pack read: transactions (ours; seed {seed_n:.0f})",
            ours_n,
            "transactions",
            "<= 3",
            ours_n <= 3,
            details,
        ),
        Result(
            "P4",
            "PACE full pack read: seed (spec gaps) / ours time",
            speedup,
            "x",
            ">= 5",
            speedup >= 5,
            details,
        ),
        Result(
            "P4-steady",
            "PACE poll cycle per pack: seed (spec gaps) / ours time",
            seed_steady / ours_steady,
            "x",
            None,
            None,
            {"ours_s": ours_steady, "seed_s": seed_steady},
        ),
        Result(
            "P4-raw",
            "PACE full read: seed as written (50 ms timeout, no gap) / ours",
            raw_full / ours_full,
            "x",
            None,
            None,
            {"ours_s": ours_full, "seed_s": raw_full, "failed_reads": med(seed_w, 4)},
        ),
        Result(
            "P4-ours",
            "PACE full pack read time, ours",
            ours_full,
            "s",
            None,
            None,
            {"steady_s": ours_steady},
        ),
    ]
