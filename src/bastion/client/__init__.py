"""A Python client of Bastion's HTTP APIs (the CLI is a thin layer over it)."""

from bastion.client.http import BastionClient, Profile, load_profile

__all__ = ["BastionClient", "Profile", "load_profile"]
