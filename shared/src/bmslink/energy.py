"""Energy counters (kWh) that never go backwards: integration, persistence, seeding.

:class:`EnergyCounter` integrates power samples (W, + = charging) into charged/discharged energy
(kWh) with the trapezoid rule; the time between samples is taken from a monotonic clock, so a
wall-clock step (NTP, a manual ``date``) neither stops nor inflates the integration (the state's
``ts`` stays Unix time, it is only a label).

:class:`EnergyStore` holds the counters of one service instance and persists them to
``<state_dir>/energy-<instance>.json``. The published counters never decrease:

- at start each counter is the larger of the file and the broker's retained
  ``bms/<id>/state`` (``energy_charged``/``energy_discharged``), read with a short subscription
  (:meth:`EnergyStore.seed_from_broker`; a device first seen later is read when it first
  appears). The file lags the published values by up to ``save_interval`` after a SIGKILL; the
  retained state is the last value any subscriber saw;
- the file is written atomically: a temp file in the same directory, fsync, rename, fsync of the
  directory; a crash leaves the old or the new file, never a torn one. Stale temp files (of a
  crash in the middle of a save) are removed at start;
- saves every ``save_interval`` s (at a published sample) and at shutdown;
- a full, read-only or missing state directory is logged once (and once more when saving works
  again); the service keeps running and its in-memory counters keep counting.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import math
import os
import re
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Protocol

import msgspec

from bmslink import topics

log = logging.getLogger(__name__)

SEED_TIMEOUT = 3.0
"""s to wait at start (connection included) for the broker's retained states."""

LAZY_SEED_TIMEOUT = 1.0
"""s to wait for the retained state of a device first seen after the start."""

_LEGACY_TMP = re.compile(r"^\.energy-[a-z0-9_]{8}$")
"""Temp files of older versions (``tempfile.mkstemp(prefix=".energy-")``)."""

Clock = Callable[[], float]


class RetainedReader(Protocol):
    """What :meth:`EnergyStore.seed_from_broker` reads the broker with
    (:meth:`bmslink.mqtt.MqttRuntime.read_retained`)."""

    def read_retained(self, topics: Iterable[str], timeout: float) -> dict[str, bytes]: ...


class EnergyCounter:
    """Charged/discharged energy in kWh integrated from power samples (W, + = charging).

    Trapezoid rule between consecutive samples, ``dt`` from ``clock`` (monotonic s; default
    :func:`time.monotonic`). A gap longer than ``max_gap`` s (an outage, a restart) is not
    integrated: the energy in it is unknown, not guessed. A sample at the same or an earlier
    clock reading, and a non-finite power, are ignored. The counters only ever increase.
    """

    __slots__ = ("charged", "clock", "discharged", "last_at", "last_power", "max_gap")

    def __init__(
        self,
        charged: float = 0.0,
        discharged: float = 0.0,
        max_gap: float = 120.0,
        clock: Clock = time.monotonic,
    ):
        self.charged = charged
        self.discharged = discharged
        self.max_gap = max_gap
        self.clock = clock
        self.last_at: float | None = None
        self.last_power: float | None = None

    def add(self, power: float, at: float | None = None) -> None:
        """Add a power sample (W) taken at monotonic time ``at`` (s; default: ``clock()`` now)."""
        if not math.isfinite(power):
            return
        now = self.clock() if at is None else at
        if self.last_at is not None and self.last_power is not None:
            dt = now - self.last_at
            if dt <= 0:
                return
            if dt <= self.max_gap:
                self._integrate(self.last_power, power, dt)
        self.last_at = now
        self.last_power = power

    def raise_to(self, charged: float, discharged: float) -> None:
        """Raise the counters to at least these values (kWh; non-finite or negative ignored)."""
        if math.isfinite(charged) and charged > self.charged:
            self.charged = charged
        if math.isfinite(discharged) and discharged > self.discharged:
            self.discharged = discharged

    def _integrate(self, p0: float, p1: float, dt: float) -> None:
        # Split the trapezoid at the zero crossing so charge and discharge are kept apart.
        if p0 * p1 >= 0:
            wh = (p0 + p1) / 2 * dt / 3600
            if p0 + p1 >= 0:
                self.charged += wh / 1000
            else:
                self.discharged += -wh / 1000
            return
        t0 = dt * abs(p0) / (abs(p0) + abs(p1))
        first = p0 / 2 * t0 / 3600 / 1000
        second = p1 / 2 * (dt - t0) / 3600 / 1000
        for part in (first, second):
            if part >= 0:
                self.charged += part
            else:
                self.discharged += -part


class _Saved(msgspec.Struct):
    charged: float
    discharged: float


class _Published(msgspec.Struct):
    """The two fields of a retained ``bms/<id>/state`` this module reads (others ignored)."""

    energy_charged: float | None = None
    energy_discharged: float | None = None


def published_counters(payload: bytes) -> tuple[float, float] | None:
    """``(energy_charged, energy_discharged)`` (kWh) of a state document, None if unusable.

    A missing, non-finite or negative value counts as 0 (it cannot raise a counter)."""
    try:
        doc = msgspec.json.decode(payload, type=_Published)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None

    def usable(value: float | None) -> float:
        return value if value is not None and math.isfinite(value) and value >= 0 else 0.0

    return usable(doc.energy_charged), usable(doc.energy_discharged)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    except OSError as exc:  # some filesystems cannot fsync a directory
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF):
            raise
    finally:
        os.close(fd)


class EnergyStore:
    """Energy counters of the devices of one service instance, persisted as JSON.

    File: ``<state_dir>/energy-<instance>.json`` mapping device id → ``{charged, discharged}``
    (kWh). ``save_interval`` (s, ≥ 1 by configuration) is the period of :meth:`maybe_save`;
    ``clock`` (monotonic s) times both the saves and the integration. A corrupt or unreadable
    file is logged and ignored (the broker's retained state still seeds the counters), never
    fatal. Thread-safe.
    """

    def __init__(
        self,
        state_dir: str | os.PathLike[str],
        instance: str,
        save_interval: float,
        *,
        clock: Clock = time.monotonic,
    ):
        self.path = Path(state_dir) / f"energy-{instance}.json"
        self.save_interval = save_interval
        self.clock = clock
        self.saves = 0
        self.save_failures = 0
        self._tmp_prefix = f".{self.path.name}."
        self._counters: dict[str, EnergyCounter] = {}
        self._last_save = clock()
        self._lock = threading.Lock()
        self._save_lock = threading.Lock()
        self._failing: str | None = None
        self._reader: RetainedReader | None = None
        self._read: set[str] = set()
        self._remove_stale_temp_files()
        self._loaded = self._load()

    # --- start ----------------------------------------------------------------------------

    def _remove_stale_temp_files(self) -> None:
        try:
            names = os.listdir(self.path.parent)
        except OSError:
            return
        for name in names:
            own = name.startswith(self._tmp_prefix) and name.endswith(".tmp")
            if own or _LEGACY_TMP.match(name):
                try:
                    os.unlink(self.path.parent / name)
                    log.info("removed stale temp file %s", self.path.parent / name)
                except OSError as exc:
                    log.warning("cannot remove stale temp file %s: %s", name, exc)

    def _load(self) -> dict[str, _Saved]:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return {}
        except OSError as exc:
            log.warning("cannot read %s: %s", self.path, exc)
            return {}
        try:
            return msgspec.json.decode(raw, type=dict[str, _Saved])
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            log.warning("ignoring corrupt energy file %s: %s", self.path, exc)
            return {}

    def seed_from_broker(
        self, reader: RetainedReader, device_ids: Iterable[str], timeout: float = SEED_TIMEOUT
    ) -> int:
        """Raise the counters of ``device_ids`` (and of every device in the file) to the
        broker's retained ``bms/<id>/state``; returns how many states were found.

        Blocks up to ``timeout`` s (nothing is found if the broker is not reached by then: the
        file's values stand). Devices first seen later are read when they first appear
        (:meth:`counter`, up to :data:`LAZY_SEED_TIMEOUT` s).
        """
        ids = list(dict.fromkeys([*device_ids, *self._loaded]))
        with self._lock:
            self._reader = reader
            self._read.update(ids)
        found = self._read_and_seed(ids, timeout)
        log.info(
            "energy counters: %d from %s, %d retained state(s) from the broker",
            len(self._loaded),
            self.path,
            found,
        )
        return found

    def _read_and_seed(self, ids: list[str], timeout: float) -> int:
        if self._reader is None or not ids:
            return 0
        by_topic = {topics.STATE.format(id=i): i for i in ids}
        try:
            retained = self._reader.read_retained(list(by_topic), timeout)
        except Exception:
            log.exception("reading the retained states failed")
            return 0
        found = 0
        for topic, payload in retained.items():
            device = by_topic.get(topic)
            values = published_counters(payload) if device is not None else None
            if device is None or values is None:
                continue
            found += 1
            self.seed(device, *values)
        return found

    # --- counters -------------------------------------------------------------------------

    def _get(self, device_id: str) -> tuple[EnergyCounter, bool]:
        """The counter of ``device_id`` (created from the file's values) and whether it still
        needs a read of the broker's retained state. Call with ``_lock`` held."""
        found = self._counters.get(device_id)
        if found is None:
            found = EnergyCounter(clock=self.clock)
            saved = self._loaded.get(device_id)
            if saved is not None:
                found.raise_to(saved.charged, saved.discharged)
            self._counters[device_id] = found
        unread = self._reader is not None and device_id not in self._read
        return found, unread

    def counter(self, device_id: str) -> EnergyCounter:
        """The counter of ``device_id``: the file's values, raised to the broker's retained
        state (read now, once, when this device was not read at start)."""
        with self._lock:
            found, unread = self._get(device_id)
            if unread:
                self._read.add(device_id)
        if unread:
            self._read_and_seed([device_id], LAZY_SEED_TIMEOUT)
        return found

    def seed(self, device_id: str, charged: float, discharged: float) -> None:
        """Raise a counter to values found elsewhere (e.g. the broker's retained state)."""
        with self._lock:
            self._get(device_id)[0].raise_to(charged, discharged)

    # --- saving ---------------------------------------------------------------------------

    def maybe_save(self) -> None:
        """Save if ``save_interval`` s (monotonic) have passed since the last save."""
        if self.clock() - self._last_save >= self.save_interval:
            self.save()

    def save(self) -> bool:
        """Write every counter now, atomically; returns whether it worked.

        Errors (full disk, read-only or missing directory, ...) are logged once while they
        last, never raised; the counters in memory are unaffected.
        """
        with self._save_lock:
            with self._lock:
                data = {
                    k: {"charged": c.charged, "discharged": c.discharged}
                    for k, c in self._counters.items()
                }
                for k, saved in self._loaded.items():
                    data.setdefault(k, {"charged": saved.charged, "discharged": saved.discharged})
                self._last_save = self.clock()
            tmp: str | None = None
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                fd, tmp = tempfile.mkstemp(
                    dir=self.path.parent, prefix=self._tmp_prefix, suffix=".tmp"
                )
                with os.fdopen(fd, "w") as fh:
                    json.dump(data, fh)
                    fh.flush()
                    os.fsync(fh.fileno())
                os.replace(tmp, self.path)
                tmp = None
                _fsync_dir(self.path.parent)
            except OSError as exc:
                self.save_failures += 1
                reason = f"{type(exc).__name__}: {exc.strerror or exc}"
                if self._failing is None:
                    log.warning(
                        "cannot save energy counters to %s (%s); counting on in memory, "
                        "retrying every %g s",
                        self.path,
                        reason,
                        self.save_interval,
                    )
                self._failing = reason
                if tmp is not None:
                    with contextlib.suppress(OSError):
                        os.unlink(tmp)
                return False
            self.saves += 1
            if self._failing is not None:
                log.info("energy counters saved to %s again", self.path)
                self._failing = None
            return True
