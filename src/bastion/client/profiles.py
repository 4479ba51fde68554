"""Connection profiles: ``~/.bastion/config`` (or ``BASTION_CONFIG_FILE``), overridden by
``BASTION_HOST`` / ``BASTION_TOKEN``. No network code here, so commands that only read or
write a profile start fast."""

from __future__ import annotations

import configparser
import os
from dataclasses import dataclass
from pathlib import Path


def config_path() -> Path:
    return Path(os.environ.get("BASTION_CONFIG_FILE", Path.home() / ".bastion" / "config"))


@dataclass(frozen=True)
class Profile:
    host: str
    token: str | None


def load_profile(name: str = "DEFAULT") -> Profile:
    """Environment first (``BASTION_HOST``, ``BASTION_TOKEN``), then the config file profile."""
    parser = configparser.ConfigParser()
    path = config_path()
    if path.exists():
        parser.read(path)
    section = parser[name] if name in parser else parser["DEFAULT"]
    host = os.environ.get("BASTION_HOST") or section.get("host") or "http://127.0.0.1:8000"
    token = os.environ.get("BASTION_TOKEN") or section.get("token")
    return Profile(host=host.rstrip("/"), token=token)


def save_profile(profile: Profile, name: str = "DEFAULT") -> Path:
    path = config_path()
    parser = configparser.ConfigParser()
    if path.exists():
        parser.read(path)
    if name != "DEFAULT" and name not in parser:
        parser.add_section(name)
    parser[name]["host"] = profile.host
    if profile.token:
        parser[name]["token"] = profile.token
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    with path.open("w") as handle:
        parser.write(handle)
    return path
