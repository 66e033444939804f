"""Shared fixtures: a real Mosquitto per test (random loopback port)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.broker import Broker


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    """A running Mosquitto on 127.0.0.1:<random port>, stopped after the test."""
    b = Broker(tmp_path)
    b.start()
    yield b
    b.stop()
