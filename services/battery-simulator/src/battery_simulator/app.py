"""Service entry point of the battery simulator: ``bmslink-simulator`` (see the README)."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from battery_simulator.config import SimulatorConfig, parse_args
from battery_simulator.line import Line, PtyLine, TcpLine
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


def _make_link(link: Path, target: str) -> None:
    """Create (or replace a stale) symlink ``link`` → ``target``."""
    if link.is_symlink():
        link.unlink()
    link.symlink_to(target)


def _remove_link(link: Path, target: str) -> None:
    """Remove ``link`` if it still points at ``target``."""
    with contextlib.suppress(OSError):
        if link.is_symlink() and os.readlink(link) == target:
            link.unlink()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the simulator until SIGTERM/SIGINT; returns the exit status.

    Exit status: 0 after a signal, 2 for bad arguments (argparse) or an unusable ``--replay``
    file, 1 if a line cannot be opened (e.g. the TCP port is in use).
    """
    cfg = parse_args(argv)
    logging.basicConfig(
        level=cfg.log_level,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        stack = build_stack(cfg)
    except (OSError, ValueError) as exc:
        print(f"bmslink-simulator: error: argument --replay: {exc}", file=sys.stderr)
        return 2

    stop = threading.Event()
    previous: dict[signal.Signals, object] = {}

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("signal %d: stopping", signum)
        stop.set()

    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous[sig] = signal.signal(sig, on_signal)

    lines: list[Line] = []
    link_target: str | None = None
    try:
        try:
            pty_line: PtyLine | None = None
            if cfg.pty:
                pty_line = PtyLine(stack, baud=cfg.baud, turnaround_s=cfg.turnaround_s)
                lines.append(pty_line)
                if cfg.pty_link is not None:
                    _make_link(cfg.pty_link, pty_line.device_path)
                    link_target = pty_line.device_path
            tcp_line: TcpLine | None = None
            if cfg.tcp is not None:
                host, port = cfg.tcp
                tcp_line = TcpLine(
                    stack, host=host, port=port, baud=cfg.baud, turnaround_s=cfg.turnaround_s
                )
                lines.append(tcp_line)
        except OSError as exc:
            print(f"bmslink-simulator: error: cannot open line: {exc}", file=sys.stderr)
            return 1
        for line in lines:
            line.start()
        pty_text = "-"
        if pty_line is not None:
            pty_text = str(cfg.pty_link) if cfg.pty_link is not None else pty_line.device_path
        tcp_text = tcp_line.address if tcp_line is not None else "-"
        log.info(
            "serving %s at %d Bd", "replay" if cfg.replay else f"{len(cfg.packs)} packs", cfg.baud
        )
        print(f"READY pty={pty_text} tcp={tcp_text}", flush=True)
        watcher = FaultsWatcher(cfg.faults_file, stack) if cfg.faults_file else None
        while not stop.wait(0.2):
            if watcher is not None:
                watcher.poll()
        return 0
    except KeyboardInterrupt:
        return 0
    finally:
        for line in lines:
            line.stop()
        if cfg.pty_link is not None and link_target is not None:
            _remove_link(cfg.pty_link, link_target)
        for sig, handler in previous.items():
            with contextlib.suppress(ValueError, TypeError):
                signal.signal(sig, handler)  # type: ignore[arg-type]


if __name__ == "__main__":
    sys.exit(main())
