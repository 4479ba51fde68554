"""A Python client of Bastion's HTTP APIs (the CLI is a thin layer over it).

``BastionClient`` is imported on first use, so that reading a profile costs no HTTP stack.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bastion.client.profiles import Profile, load_profile

if TYPE_CHECKING:
    from bastion.client.http import BastionClient

__all__ = ["BastionClient", "Profile", "load_profile"]


def __getattr__(name: str) -> Any:
    if name == "BastionClient":
        from bastion.client.http import BastionClient

        return BastionClient
    raise AttributeError(name)
