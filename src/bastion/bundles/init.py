"""``bastion init TEMPLATE [DIR]``: a new project that starts governed.

Templates live in ``bastion/bundles/templates/<name>/``; ``__PROJECT__``, ``__NAME__`` and
``__ENDPOINT__`` and ``__APP__`` in their files are replaced with the project's name, its
SQL-identifier form, its endpoint name and its app name.
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
    "serves it with an inference table, rate limits and a red-team gate, and a chat app that "
    "asks it as the signed-in user.",
    "app": "A minimal app run behind Bastion's sign-in that acts as the signed-in user, its "
    "tests, and a bundle that deploys and starts it.",
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


def app_name(project: str) -> str:
    """An app name from a project name: lower-case letters, digits and '-', short enough to
    leave room for development mode's ``dev-<you>-`` prefix and a ``-chat`` suffix."""
    slug = re.sub(r"[^a-z0-9]+", "-", project.lower()).strip("-")[:14].strip("-")
    return slug if len(slug) >= 2 else f"app-{slug}".strip("-")


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
        "__APP__": app_name(project),
    }
    return _copy(source, directory, replacements)
