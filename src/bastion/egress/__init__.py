"""The egress policy: where the platform may send requests on an ordinary user's behalf.

Users give Bastion URLs — an external model's base URL today, webhooks and app resources
later — and Bastion then connects there from inside the network. So an ordinary user's URL
may only reach **public** addresses: loopback, private (RFC 1918, unique-local), link-local
(cloud metadata at ``169.254.169.254``), carrier-grade NAT, multicast and reserved ranges are
refused, however the name is spelt (IP literals, IPv4-mapped IPv6, DNS names that resolve
there). The check runs when the URL is written and again on every new connection (after DNS
resolution, connecting to exactly the address that was checked), so a name that later
resolves inward (DNS rebinding) is refused too.

Administrators are trusted with the network: URLs they write are not restricted. They can
also allow hosts for everyone (``BASTION_EGRESS_ALLOW_HOSTS``: names, ``*.suffix`` patterns,
IP addresses or CIDR ranges), e.g. an internal vLLM server.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from bastion.errors import PermissionDenied

if TYPE_CHECKING:
    from bastion.platform import Platform

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
_LOCAL_NAMES = ("localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback")


class EgressDenied(PermissionDenied):
    """A URL or address outside what the egress policy lets this principal reach."""


def is_public(address: IPAddress) -> bool:
    """Whether ``address`` is a globally routable unicast address.

    >>> is_public(ipaddress.ip_address("8.8.8.8")), is_public(ipaddress.ip_address("10.1.2.3"))
    (True, False)
    """
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is None and address.teredo is not None:
            embedded = address.teredo[1]
        if embedded is not None:
            return is_public(embedded)
    return address.is_global and not address.is_multicast


@dataclass(frozen=True)
class EgressPolicy:
    """``allow``: hosts every user may reach whatever their address (names, ``*.suffix``,
    IPs, CIDRs); ``allow_private`` lifts the address rule altogether (development only)."""

    allow: tuple[str, ...] = ()
    allow_private: bool = False

    def _host_allowed(self, host: str) -> bool:
        host = host.lower().rstrip(".")
        for entry in self.allow:
            pattern = entry.lower().strip()
            if pattern.startswith("*.") and host.endswith(pattern[1:]):
                return True
            if host == pattern:
                return True
        return False

    def _address_allowed(self, address: IPAddress) -> bool:
        if self.allow_private or is_public(address):
            return True
        for entry in self.allow:
            try:
                if address in ipaddress.ip_network(entry.strip(), strict=False):
                    return True
            except ValueError:
                continue
        return False

    def check_addresses(self, host: str, addresses: Iterable[str]) -> None:
        """Raise unless every address ``host`` resolved to may be reached."""
        if self._host_allowed(host):
            return
        resolved = [ipaddress.ip_address(a.split("%", 1)[0]) for a in addresses]
        if not resolved or not all(self._address_allowed(a) for a in resolved):
            raise EgressDenied(
                f"The host {host!r} may not be reached on a user's behalf: it resolves to a "
                "loopback, private, link-local or reserved address. An administrator can "
                "allow it (BASTION_EGRESS_ALLOW_HOSTS)."
            )

    def check_url(self, url: str, *, resolve: bool = True) -> None:
        """Check a URL when it is written: its literal host, and (``resolve``) what its name
        resolves to now. A name that does not resolve yet passes here; every connection is
        checked again when it is made."""
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        if parts.scheme not in ("http", "https") or not host:
            raise EgressDenied(f"The URL {url!r} is not an http(s) URL with a host.")
        if parts.username is not None or parts.password is not None:
            raise EgressDenied("URLs with credentials in them are not accepted.")
        if self._host_allowed(host):
            return
        if host in _LOCAL_NAMES or host.endswith(".localhost"):
            self.check_addresses(host, ["127.0.0.1"])
        try:
            literal = ipaddress.ip_address(host)
        except ValueError:
            literal = None
        if literal is not None:
            self.check_addresses(host, [str(literal)])
            return
        if not resolve:
            return
        try:
            infos = socket.getaddrinfo(host, parts.port or 443, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError):
            return
        self.check_addresses(host, [str(info[4][0]) for info in infos])

    async def resolve(self, host: str, port: int) -> list[str]:
        """The addresses a new connection to ``host`` may use (checked), for the gateway's
        upstream client to connect to directly."""
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError) as exc:
            raise EgressDenied(f"The host {host!r} cannot be resolved: {exc}") from None
        addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
        self.check_addresses(host, addresses)
        return addresses


def policy_of(platform: Platform) -> EgressPolicy:
    settings = platform.settings
    return EgressPolicy(tuple(settings.egress_allow_hosts), settings.egress_allow_private)


def require_egress(platform: Platform, principal_is_admin: bool, urls: Sequence[str]) -> None:
    """Raise :class:`EgressDenied` unless whoever writes ``urls`` may have Bastion call them."""
    if principal_is_admin:
        return
    policy = policy_of(platform)
    for url in urls:
        policy.check_url(url)
