"""The repository stands on its own: its README, docs and code refer only to files inside it."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TEXT = ("*.md", "*.py", "*.toml", "Makefile", "*.yml", "*.yaml", "*.cfg")
OUTSIDE = re.compile(r"\.\./(?:shared|\.library)\b|/work/(?:shared|\.library)")
LINK = re.compile(r"\]\((?!https?://|mailto:|#)([^)#\s]+)(?:#[^)]*)?\)")


def _files() -> list[Path]:
    found: set[Path] = set()
    for pattern in TEXT:
        for path in ROOT.rglob(pattern):
            parts = path.relative_to(ROOT).parts
            if parts[0].startswith(".") or parts[0] in ("build", "dist") or "node_modules" in parts:
                continue
            found.add(path)
    return sorted(found)


def test_nothing_points_outside_the_repository() -> None:
    offenders = [
        f"{path.relative_to(ROOT)}:{n}"
        for path in _files()
        if path != Path(__file__).resolve()
        for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1)
        if OUTSIDE.search(line)
    ]
    assert offenders == []


def test_relative_links_in_markdown_resolve() -> None:
    broken = []
    for path in _files():
        if path.suffix != ".md":
            continue
        for target in LINK.findall(path.read_text()):
            if not (path.parent / target).exists():
                broken.append(f"{path.relative_to(ROOT)} → {target}")
    assert broken == []
