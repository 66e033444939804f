"""Container health = "published within N s"."""

from __future__ import annotations

import os
import time
from pathlib import Path

from bmslink import health


def test_heartbeat_and_check(tmp_path: Path) -> None:
    path = tmp_path / "hb"
    assert health.main(["--file", str(path)]) == 1  # never published
    beat = health.Heartbeat(path, min_interval=0)
    beat.beat()
    assert health.main(["--file", str(path), "--max-age", "30"]) == 0
    old = time.time() - 120
    os.utime(path, (old, old))
    assert health.main(["--file", str(path), "--max-age", "60"]) == 1
    assert health.age(path) is not None
    assert health.age(path) >= 119


def test_heartbeat_on_an_unwritable_path_does_not_raise(tmp_path: Path) -> None:
    health.Heartbeat(tmp_path / "missing-dir" / "hb", min_interval=0).beat()
    assert not (tmp_path / "missing-dir").exists()
