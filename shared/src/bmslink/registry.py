"""Registries by name: plug-in modules discovered in a package (one override point per extension).

Adding a protocol's decoder, scanner or benchmark means adding a module to the right package;
nothing else lists them.
"""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType
from typing import Any


def discover(package: ModuleType, attribute: str) -> dict[str, Any]:
    """Collect the items of every module of ``package`` that defines ``attribute`` (a sequence of
    objects with a ``name``), keyed by name. Raises ``ValueError`` on a duplicate name."""
    found: dict[str, Any] = {}
    for info in pkgutil.iter_modules(package.__path__):
        module = importlib.import_module(f"{package.__name__}.{info.name}")
        for item in getattr(module, attribute, ()):
            if item.name in found:
                raise ValueError(f"{item.name!r} registered twice (second in {module.__name__})")
            found[item.name] = item
    return found
