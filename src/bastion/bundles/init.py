"""``bastion init TEMPLATE [DIR]``: a new project that starts governed.

Templates live in ``bastion/bundles/templates/<name>/``; ``__PROJECT__``, ``__NAME__`` and
``__ENDPOINT__`` in their files are replaced with the project's name, its SQL-identifier form
and its endpoint name.
"""

from __future__ import annotations

import re
from importlib import resources
from importlib.abc import Traversable
from pathlib import Path

from bastion.errors import InvalidRequest
from bastion.governance.securables import derived_part

TEMPLATES = {
    "agent": "An MLflow ResponsesAgent with a tool, its tests, and a bundle that registers and "
    "serves it with an inference table, rate limits and a red-team gate.",
}
_PROJECT = re.compile(r"^[A-Za-z][A-Za-z0-9_\-]{0,62}$")
_RENAMED = {"gitignore.template": ".gitignore"}


def _copy(source: Traversable, target: Path, replacements: dict[str, str]) -> list[Path]:
    written = []
    for item in sorted(source.iterdir(), key=lambda i: i.name):
        if item.name in ("__pycache__",) or item.name.endswith(".pyc"):
            continue
        destination = target / _RENAMED.get(item.name, item.name)
        if item.is_dir():
            destination.mkdir()
            written += _copy(item, destination, replacements)
            continue
        text = item.read_text(encoding="utf-8")
        for placeholder, value in replacements.items():
            text = text.replace(placeholder, value)
        destination.write_text(text, encoding="utf-8")
        written.append(destination)
    return written


def create_project(template: str, directory: Path, name: str | None = None) -> list[Path]:
    """Write ``template`` into ``directory`` (new or empty); return the files written."""
    if template not in TEMPLATES:
        raise InvalidRequest(f"Unknown template {template!r}; use one of: {', '.join(TEMPLATES)}.")
    project = name or directory.resolve().name
    if not _PROJECT.match(project):
        raise InvalidRequest(
            f"Invalid project name {project!r}: a letter, then letters, digits, '_' or '-'."
        )
    if directory.exists() and any(directory.iterdir()):
        raise InvalidRequest(f"{directory} is not empty; choose a new folder.")
    directory.mkdir(parents=True, exist_ok=True)
    source = resources.files("bastion.bundles").joinpath("templates", template)
    replacements = {
        "__PROJECT__": project,
        "__NAME__": derived_part(project),
        "__ENDPOINT__": project.lower().replace("_", "-"),
    }
    return _copy(source, directory, replacements)
