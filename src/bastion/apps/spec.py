"""``app.yaml``: the command an app runs (a list, not run in a shell) and its environment.

>>> parse_app_yaml("command: ['streamlit', 'run', 'app.py']").command
('streamlit', 'run', 'app.py')
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from bastion.errors import InvalidRequest

SPEC_FILES = ("app.yaml", "app.yml")
PORT_VARIABLES = ("BASTION_APP_PORT", "DATABRICKS_APP_PORT")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
_PORT_REFERENCE = re.compile(r"\$\{?(BASTION_APP_PORT|DATABRICKS_APP_PORT)\}?")
MAX_SPEC_BYTES = 64 * 1024


@dataclass(frozen=True)
class AppSpec:
    command: tuple[str, ...]
    #: ``{"name": ..., "value": ...}`` or ``{"name": ..., "valueFrom": <resource name>}``.
    env: tuple[dict[str, str], ...]


def parse_app_yaml(text: str) -> AppSpec:
    try:
        document = yaml.safe_load(text) if text.strip() else {}
    except yaml.YAMLError as exc:
        raise InvalidRequest(f"app.yaml is not valid YAML: {exc}") from None
    if document is None:
        document = {}
    if not isinstance(document, dict):
        raise InvalidRequest("app.yaml must be a mapping with 'command' and 'env'.")
    unknown = set(document) - {"command", "env"}
    if unknown:
        raise InvalidRequest(f"app.yaml: unknown key(s) {', '.join(sorted(map(str, unknown)))}.")
    return AppSpec(_command(document.get("command")), _env(document.get("env")))


def _command(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise InvalidRequest(
            "app.yaml: 'command' must be a non-empty list of strings, e.g. "
            "['streamlit', 'run', 'app.py'] (it is not run in a shell)."
        )
    if len(value) > 256 or any(len(v) > 4096 or "\0" in v for v in value):
        raise InvalidRequest("app.yaml: 'command' is too long.")
    return tuple(value)


def _env(value: Any) -> tuple[dict[str, str], ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or len(value) > 256:
        raise InvalidRequest("app.yaml: 'env' must be a list of {name, value | valueFrom}.")
    out: list[dict[str, str]] = []
    for entry in value:
        if not isinstance(entry, dict) or set(entry) - {"name", "value", "valueFrom"}:
            raise InvalidRequest(
                "app.yaml: each 'env' entry is {name, value} or {name, valueFrom}."
            )
        name = entry.get("name")
        if not isinstance(name, str) or not _ENV_NAME.match(name):
            raise InvalidRequest(f"app.yaml: invalid environment variable name {name!r}.")
        if ("value" in entry) == ("valueFrom" in entry):
            raise InvalidRequest(f"app.yaml: env {name!r} needs exactly one of value, valueFrom.")
        if "value" in entry:
            raw = entry["value"]
            if isinstance(raw, bool) or not isinstance(raw, str | int | float):
                raise InvalidRequest(f"app.yaml: env {name!r} value must be a string.")
            out.append({"name": name, "value": str(raw)})
        else:
            source = entry["valueFrom"]
            if not isinstance(source, str) or not source:
                raise InvalidRequest(f"app.yaml: env {name!r} valueFrom must name a resource.")
            out.append({"name": name, "valueFrom": source})
    return tuple(out)


def load_spec(directory: Path) -> AppSpec:
    """The spec in ``directory`` (``app.yaml`` or ``app.yml``), with Databricks' default
    command (``python <first .py file>``) when none is given."""
    spec = AppSpec((), ())
    for name in SPEC_FILES:
        path = directory / name
        if path.is_file():
            if path.stat().st_size > MAX_SPEC_BYTES:
                raise InvalidRequest(f"{name} is larger than {MAX_SPEC_BYTES} bytes.")
            spec = parse_app_yaml(path.read_text(encoding="utf-8", errors="replace"))
            break
    if spec.command:
        return spec
    scripts = sorted(p.name for p in directory.glob("*.py") if p.is_file())
    if not scripts:
        raise InvalidRequest(
            "The app has no command: add app.yaml with 'command', or a .py file to run."
        )
    return AppSpec(("python", scripts[0]), spec.env)


def substitute_port(command: tuple[str, ...], port: int) -> list[str]:
    """``$BASTION_APP_PORT`` / ``$DATABRICKS_APP_PORT`` (or ``${...}``) → the port; nothing
    else is expanded (no shell)."""
    return [_PORT_REFERENCE.sub(str(port), part) for part in command]
