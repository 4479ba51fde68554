"""Fingerprints: what decides whether a declared resource changed since the last deploy."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

_SKIP = {"__pycache__", ".git", ".venv", "node_modules", ".pytest_cache", ".mypy_cache"}


def of_value(value: Any) -> str:
    """A stable hash of JSON-like data (key order does not matter)."""
    text = json.dumps(value, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def of_path(path: Path) -> str:
    """A hash of a file, or of every file under a folder (names and contents)."""
    digest = hashlib.sha256()
    files = (
        [path]
        if path.is_file()
        else sorted(
            p
            for p in path.rglob("*")
            if p.is_file() and not (_SKIP & set(p.relative_to(path).parts))
        )
    )
    for file in files:
        digest.update((file.name if file == path else file.relative_to(path).as_posix()).encode())
        digest.update(b"\0")
        with file.open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()[:32]
