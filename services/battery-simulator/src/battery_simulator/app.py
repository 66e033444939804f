"""Service entry point of the battery simulator: ``bmslink-simulator`` (see the README)."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from battery_simulator.cli_common import ServedLines, cannot_open, setup_logging, stop_signals
from battery_simulator.config import SimulatorConfig, parse_args
from battery_simulator.pylontech import CurrentProfile, ModelStack, PylontechStack, ReplayStack

__all__ = ["FaultsWatcher", "build_stack", "main"]

log = logging.getLogger("battery_simulator")


def build_stack(cfg: SimulatorConfig) -> PylontechStack:
    """The stack behaviour selected by ``cfg`` (replay or model).

    Raises:
        OSError: the capture file cannot be read.
        ValueError: the capture is malformed.
    """
    if cfg.replay is not None:
        return ReplayStack.from_file(
            cfg.replay, derive_per_address=cfg.derive_per_address, seed=cfg.seed
        )
    profile = CurrentProfile(
        constant_a=cfg.current_a,
        amplitude_a=cfg.current_amplitude_a,
        period_s=cfg.current_period_s,
    )
    return ModelStack(cfg.packs, profile=profile, answer_ff=cfg.answer_ff, seed=cfg.seed)


class FaultsWatcher:
    """Applies a JSON faults file to ``stack.faults`` whenever the file changes (``--faults-file``).

    A missing file clears every fault; a malformed one is logged and ignored (the previous
    faults stay), so a half-written file never stops the simulator.
    """

    def __init__(self, path: Path, stack: PylontechStack) -> None:
        self.path = path
        self.stack = stack
        self._seen: tuple[int, int] | None = None
        self.poll()

    def poll(self) -> None:
        """Re-read the file if its mtime/size changed."""
        try:
            st = self.path.stat()
        except OSError:
            if self._seen is not None:
                self.stack.faults.clear()
                log.info("faults file %s removed: faults cleared", self.path)
            self._seen = None
            return
        key = (st.st_mtime_ns, st.st_size)
        if key == self._seen:
            return
        self._seen = key
        try:
            values = json.loads(self.path.read_text(encoding="utf-8") or "{}")
            if not isinstance(values, dict):
                raise ValueError("expected a JSON object")
            self.stack.faults.update(values)
        except (OSError, ValueError) as exc:
            log.warning("faults file %s ignored: %s", self.path, exc)
            return
        log.info("faults now %s", self.stack.faults)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the simulator until SIGTERM/SIGINT; returns the exit status.

    Exit status: 0 after a signal, 2 for bad arguments (argparse) or an unusable ``--replay``
    file, 1 if a line cannot be opened (e.g. the TCP port is in use).
    """
    cfg = parse_args(argv)
    setup_logging(cfg.log_level)
    try:
        stack = build_stack(cfg)
    except (OSError, ValueError) as exc:
        print(f"bmslink-simulator: error: argument --replay: {exc}", file=sys.stderr)
        return 2
    with stop_signals() as stop:
        try:
            served = ServedLines.open(
                stack,
                pty=cfg.pty,
                pty_link=cfg.pty_link,
                tcp=cfg.tcp,
                baud=cfg.baud,
                turnaround_s=cfg.turnaround_s,
            )
        except OSError as exc:
            return cannot_open("bmslink-simulator", exc)
        try:
            with served:
                log.info(
                    "serving %s at %d Bd",
                    "replay" if cfg.replay else f"{len(cfg.packs)} packs",
                    cfg.baud,
                )
                served.print_ready()
                watcher = FaultsWatcher(cfg.faults_file, stack) if cfg.faults_file else None
                while not stop.wait(0.2):
                    if watcher is not None:
                        watcher.poll()
        except KeyboardInterrupt:
            pass
        return 0


if __name__ == "__main__":
    sys.exit(main())
