"""Locate and load the real-frame test vectors.

Lookup order: a project copy in ``tests/vectors/`` (next to this file), then the shared
collection ``<repo>/../shared/vectors`` (``/work/shared/vectors`` in the workspace). If neither
exists the tests FAIL: vectors are ground truth and must never be silently skipped.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

_HERE = Path(__file__).resolve().parent
_CANDIDATES = (
    _HERE / "vectors",
    _HERE.parent.parent / "shared" / "vectors",
)


def vectors_dir() -> Path:
    """The directory holding the vector JSON files; raises FileNotFoundError if none exists."""
    for candidate in _CANDIDATES:
        if candidate.is_dir():
            return candidate
    tried = ", ".join(str(c) for c in _CANDIDATES)
    raise FileNotFoundError(f"test vectors not found (tried {tried})")


@cache
def load_vectors(name: str) -> dict[str, Any]:
    """Load ``name`` (with or without ``.json``) from :func:`vectors_dir` as a dict."""
    filename = name if name.endswith(".json") else f"{name}.json"
    path = vectors_dir() / filename
    if not path.is_file():
        raise FileNotFoundError(f"vector file {path} not found")
    with path.open(encoding="utf-8") as fh:
        data = json.load(fh)
    if not isinstance(data, dict):
        raise TypeError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data
