"""Per-principal upload areas under ``BASTION_HOME/staging/<principal id>/``."""

from __future__ import annotations

import os
import re
import shutil
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from bastion.errors import InvalidRequest, NotFound, PayloadTooLarge

if TYPE_CHECKING:
    from bastion.platform import Platform

_PART = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._\-]{0,254}$")
MAX_DEPTH = 16
MAX_PATH_CHARS = 1024


@dataclass(frozen=True)
class StagedFile:
    path: str
    size: int
    modified_ms: int


def clean_relative(text: str) -> str:
    """A relative path of plain parts (letters, digits, ``._-``; no ``..``, no hidden files).

    >>> clean_relative("models/llama/model.gguf")
    'models/llama/model.gguf'
    """
    parts = [p for p in text.strip().strip("/").split("/") if p]
    if (
        not parts
        or len(text) > MAX_PATH_CHARS
        or len(parts) > MAX_DEPTH
        or not all(_PART.match(p) and p not in (".", "..") for p in parts)
    ):
        raise InvalidRequest(
            f"Invalid staging path {text[:100]!r}: use up to {MAX_DEPTH} parts of letters, "
            "digits, '.', '_' or '-', each starting with a letter, digit or '_'."
        )
    return "/".join(parts)


class StagingArea:
    """Where principals upload files the platform may then read on their behalf.

    Files are written through :meth:`write` only (never linked, never from another path),
    bounded per file and per principal.
    """

    def __init__(self, root: Path, *, max_file_bytes: int, quota_bytes: int) -> None:
        self.root = root
        self.max_file_bytes = max_file_bytes
        self.quota_bytes = quota_bytes

    def directory(self, principal_id: int) -> Path:
        return self.root / str(int(principal_id))

    def path(self, principal_id: int, relative: str) -> Path:
        return self.directory(principal_id) / clean_relative(relative)

    def used_bytes(self, principal_id: int) -> int:
        total = 0
        for folder, _dirs, files in os.walk(self.directory(principal_id)):
            for name in files:
                total += (Path(folder) / name).lstat().st_size
        return total

    async def write(
        self, principal_id: int, relative: str, chunks: AsyncIterator[bytes], *, overwrite: bool
    ) -> StagedFile:
        """Stream an upload to the principal's area; nothing is left behind on failure."""
        target = self.path(principal_id, relative)
        if target.exists() and not overwrite:
            raise InvalidRequest(
                f"'{clean_relative(relative)}' exists in your staging area; pass overwrite=true."
            )
        if target.exists() and target.is_dir():
            raise InvalidRequest(f"'{clean_relative(relative)}' is a folder.")
        budget = min(self.max_file_bytes, self.quota_bytes - self.used_bytes(principal_id))
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.parent / f".upload-{uuid.uuid4().hex}"
        size = 0
        try:
            with partial.open("xb") as out:
                async for chunk in chunks:
                    size += len(chunk)
                    if size > budget:
                        raise PayloadTooLarge(
                            f"The upload is larger than allowed: at most "
                            f"{self.max_file_bytes} bytes per file and {self.quota_bytes} bytes "
                            "in a staging area; delete staged files you no longer need."
                        )
                    out.write(chunk)
            partial.replace(target)
        finally:
            partial.unlink(missing_ok=True)
        return self.describe(principal_id, target)

    def describe(self, principal_id: int, path: Path) -> StagedFile:
        stat = path.lstat()
        relative = path.relative_to(self.directory(principal_id)).as_posix()
        return StagedFile(relative, stat.st_size, int(stat.st_mtime * 1000))

    def list(self, principal_id: int, prefix: str | None = None) -> list[StagedFile]:
        base = self.directory(principal_id)
        start = base / clean_relative(prefix) if prefix else base
        out = []
        for folder, _dirs, files in os.walk(start):
            for name in sorted(files):
                if not name.startswith(".upload-"):
                    out.append(self.describe(principal_id, Path(folder) / name))
        return sorted(out, key=lambda f: f.path)

    def delete(self, principal_id: int, relative: str) -> None:
        target = self.path(principal_id, relative)
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        elif target.exists() or target.is_symlink():
            target.unlink()
        else:
            raise NotFound(f"'{clean_relative(relative)}' is not in your staging area.")


def staging_of(platform: Platform) -> StagingArea:
    """The platform's staging area (``platform.staging``), created on first use."""
    area = getattr(platform, "staging", None)
    if isinstance(area, StagingArea):
        return area
    settings = platform.settings
    area = StagingArea(
        settings.home / "staging",
        max_file_bytes=settings.staging_max_file_bytes,
        quota_bytes=settings.staging_quota_bytes,
    )
    platform.staging = area  # type: ignore[attr-defined]
    return area
