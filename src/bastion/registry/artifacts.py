"""Model artifacts: detect what a source is, copy it under ``BASTION_HOME/artifacts``, hash it."""

from __future__ import annotations

import hashlib
import os
import shutil
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
    if source.is_file():
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


def _link_or_copy(source: Path, target: Path) -> None:
    try:
        os.link(source, target)  # same file system: no copy, and still immutable for us
    except OSError:
        shutil.copy2(source, target)


def import_artifact(source: Path, destination: Path) -> tuple[ArtifactKind, Path, str]:
    """Copy ``source`` to ``destination`` (a fresh directory); return kind, location, hash."""
    kind = detect_kind(source)
    if destination.exists():
        shutil.rmtree(destination)
    destination.mkdir(parents=True)
    if kind is ArtifactKind.GGUF:
        target = destination / source.name
        _link_or_copy(source, target)
        return kind, target, "sha256:" + file_sha256(target)
    target = destination / "model"
    shutil.copytree(source, target, copy_function=_link_or_copy)  # type: ignore[arg-type]
    return kind, target, "sha256:" + tree_sha256(target)
