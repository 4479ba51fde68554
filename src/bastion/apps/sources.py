"""Turning a deployment's ``source_code_path`` into a snapshot of files the server owns.

The source is either ``staging:<path>`` — a folder, or a ``.tar.gz`` the CLI uploaded, in the
caller's own staging area — or a folder under a source root the administrator configured
(``BASTION_APP_SOURCE_ROOTS``); it is resolved by the one function that turns user-given paths
into server paths (:func:`bastion.staging.resolve_source`). The snapshot is a copy: regular
files only (no links, devices or sockets), bounded in files and bytes.
"""

from __future__ import annotations

import os
import shutil
import stat
import tarfile
from dataclasses import dataclass
from pathlib import Path

from bastion.errors import InvalidRequest


@dataclass(frozen=True)
class SourceLimits:
    max_bytes: int = 1024**3
    max_files: int = 20_000


_SKIPPED = {"__pycache__", ".git", ".venv", "node_modules"}


def snapshot(source: Path, destination: Path, limits: SourceLimits) -> None:
    """Copy a folder, or extract a ``.tar.gz`` / ``.tar``, into ``destination`` (new)."""
    destination.mkdir(parents=True, exist_ok=False)
    try:
        if source.is_dir():
            _copy_tree(source, destination, limits)
        elif source.is_file() and source.name.endswith((".tar.gz", ".tgz", ".tar")):
            _extract(source, destination, limits)
        else:
            raise InvalidRequest(
                "An app's source is a folder or a .tar.gz of one (bastion apps deploy uploads "
                "a local folder as a tarball)."
            )
    except BaseException:
        shutil.rmtree(destination, ignore_errors=True)
        raise


def _copy_tree(source: Path, destination: Path, limits: SourceLimits) -> None:
    files = 0
    total = 0
    for folder, dirs, names in os.walk(source, followlinks=False):
        here = Path(folder)
        dirs[:] = [d for d in dirs if d not in _SKIPPED]
        for name in dirs:
            if (here / name).is_symlink():
                raise InvalidRequest(
                    f"The app folder holds a symbolic link ({(here / name).relative_to(source)})."
                )
        for name in names:
            path = here / name
            mode = path.lstat().st_mode
            if not stat.S_ISREG(mode):
                raise InvalidRequest(
                    f"The app folder holds {path.relative_to(source)}, which is not a regular "
                    "file (links, devices and sockets are refused)."
                )
            files += 1
            total += path.lstat().st_size
            _check(files, total, limits)
            target = destination / path.relative_to(source)
            target.parent.mkdir(parents=True, exist_ok=True)
            with path.open("rb") as src, target.open("xb") as dst:
                shutil.copyfileobj(src, dst, 1024 * 1024)


def _extract(archive: Path, destination: Path, limits: SourceLimits) -> None:
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = tar.getmembers()
            files = 0
            total = 0
            for member in members:
                if not (member.isreg() or member.isdir()):
                    raise InvalidRequest(
                        f"The app archive holds {member.name!r}, which is not a regular file "
                        "or folder (links and devices are refused)."
                    )
                if member.isreg():
                    files += 1
                    total += member.size
                    _check(files, total, limits)
            # The 'data' filter refuses absolute names, '..' and anything outside the folder.
            tar.extractall(destination, members=members, filter="data")
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise InvalidRequest(f"The app archive cannot be read: {exc}") from None


def _check(files: int, total: int, limits: SourceLimits) -> None:
    if files > limits.max_files or total > limits.max_bytes:
        raise InvalidRequest(
            f"The app is too large: at most {limits.max_files} files and {limits.max_bytes} bytes."
        )


def app_root(snapshot_dir: Path) -> Path:
    """Where the app is inside a snapshot: an archive of one top-level folder holds the app
    in that folder."""
    entries = [p for p in snapshot_dir.iterdir() if not p.name.startswith(".")]
    if len(entries) == 1 and entries[0].is_dir() and not (snapshot_dir / "app.yaml").exists():
        inner = entries[0]
        if any((inner / n).exists() for n in ("app.yaml", "app.yml")) or any(inner.glob("*.py")):
            return inner
    return snapshot_dir
