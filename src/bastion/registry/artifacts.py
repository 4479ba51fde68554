"""Model artifacts: detect what a source is, copy it under ``BASTION_HOME/artifacts``, hash it."""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from bastion.errors import InvalidRequest

GGUF_MAGIC = b"GGUF"


class ArtifactKind(StrEnum):
    GGUF = "gguf"
    MLFLOW_MODEL = "mlflow_model"
    EXTERNAL_MODEL = "external_model"


def detect_kind(source: Path) -> ArtifactKind:
    """A GGUF file (by its magic bytes) or an MLflow model directory (it has ``MLmodel``)."""
    if source.is_file() and not source.is_symlink():
        with source.open("rb") as handle:
            if handle.read(4) == GGUF_MAGIC:
                return ArtifactKind.GGUF
        raise InvalidRequest(f"'{source}' is not a GGUF file (its first bytes are not 'GGUF').")
    if source.is_dir():
        if (source / "MLmodel").is_file():
            return ArtifactKind.MLFLOW_MODEL
        raise InvalidRequest(f"'{source}' is a directory without an MLmodel file.")
    raise InvalidRequest(f"'{source}' is neither a file nor a directory.")


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1024 * 1024), b""):
            digest.update(chunk)
    return digest.hexdigest()


def tree_sha256(root: Path) -> str:
    """A hash over every file's relative path and content, in sorted order."""
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(file_sha256(path).encode() + b"\0")
    return digest.hexdigest()


@dataclass(frozen=True)
class ArtifactLimits:
    max_bytes: int = 64 * 1024**3
    max_files: int = 10_000


def _plan_copy(source: Path, limits: ArtifactLimits) -> list[Path]:
    """The regular files under ``source`` (relative), refusing links, devices, sockets and
    anything past the limits — before a byte is copied."""
    files: list[Path] = []
    total = 0
    for folder, dirs, names in os.walk(source, followlinks=False):
        here = Path(folder)
        for name in dirs:
            if (here / name).is_symlink():
                relative = (here / name).relative_to(source)
                raise InvalidRequest(
                    f"The model folder holds a symbolic link ({relative}); upload real files only."
                )
        for name in names:
            path = here / name
            mode = path.lstat().st_mode
            if stat.S_ISLNK(mode):
                raise InvalidRequest(
                    f"The model folder holds a symbolic link ({path.relative_to(source)}); "
                    "upload real files only."
                )
            if not stat.S_ISREG(mode):
                raise InvalidRequest(
                    f"The model folder holds {path.relative_to(source)}, which is not a regular "
                    "file (links, devices and sockets are refused)."
                )
            total += path.lstat().st_size
            files.append(path.relative_to(source))
            if len(files) > limits.max_files or total > limits.max_bytes:
                raise InvalidRequest(
                    f"The model is too large: at most {limits.max_files} files and "
                    f"{limits.max_bytes} bytes."
                )
    return files


def _copy_file(source: Path, target: Path) -> None:
    """A copy, never a link: the artifact must not change when its source does."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with source.open("rb") as src, target.open("xb") as dst:
        shutil.copyfileobj(src, dst, 1024 * 1024)


def import_artifact(
    source: Path, destination: Path, limits: ArtifactLimits | None = None
) -> tuple[ArtifactKind, Path, str]:
    """Copy ``source`` to ``destination`` (a fresh directory); return kind, location, hash."""
    limits = limits or ArtifactLimits()
    kind = detect_kind(source)
    if destination.exists():
        shutil.rmtree(destination)
    destination.mkdir(parents=True)
    if kind is ArtifactKind.GGUF:
        if source.stat().st_size > limits.max_bytes:
            raise InvalidRequest(f"The model is too large: at most {limits.max_bytes} bytes.")
        target = destination / source.name
        _copy_file(source, target)
        return kind, target, "sha256:" + file_sha256(target)
    target = destination / "model"
    for relative in _plan_copy(source, limits):
        _copy_file(source / relative, target / relative)
    return kind, target, "sha256:" + tree_sha256(target)
