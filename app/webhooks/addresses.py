"""Which hosts a webhook may be sent to.

An endpoint URL is chosen by a user and then called by the service from inside its network, so
by default every address the host resolves to must be a public one: loopback, private, link-local
(cloud metadata lives there), shared (CGNAT), multicast, reserved and unspecified addresses are
refused. The check runs when the URL is stored and again before every delivery, and the delivery
connects to an address that passed it (so a name that re-resolves elsewhere meanwhile cannot
steer it). `OPENRFT_WEBHOOK_ALLOW_PRIVATE` turns the refusal off for a private deployment.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

ALLOW_PRIVATE_VARIABLE = "OPENRFT_WEBHOOK_ALLOW_PRIVATE"
MAX_URL_LENGTH = 2048


class UnsafeURL(Exception):
    """A URL the service will not send to; the message says why, for the user."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class Target:
    """Where a URL points: its host and port, and the addresses that passed the check."""

    url: str
    scheme: str
    host: str
    port: int
    addresses: tuple[IPAddress, ...]


def is_public(address: IPAddress) -> bool:
    """True for an address on the public internet (an IPv4-mapped IPv6 address is judged as the
    IPv4 address it carries)."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_global and not address.is_multicast


def split_url(url: str) -> tuple[str, str, int]:
    """Scheme, host and port of an http(s) URL; raises UnsafeURL for anything else."""
    if len(url) > MAX_URL_LENGTH:
        raise UnsafeURL(f"url must be at most {MAX_URL_LENGTH} characters.")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as error:
        raise UnsafeURL(f"url is not a valid URL: {error}.") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UnsafeURL("url must be an absolute http:// or https:// URL.")
    if any(character.isspace() or ord(character) < 32 for character in url):
        raise UnsafeURL("url must not contain spaces or control characters.")
    return parts.scheme, parts.hostname, port or (443 if parts.scheme == "https" else 80)


def resolve(host: str, port: int) -> tuple[IPAddress, ...]:
    """Every address `host` resolves to, in the resolver's order; raises UnsafeURL when none."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as error:
        raise UnsafeURL(f"url's host '{host}' could not be resolved ({error}).") from None
    addresses: list[IPAddress] = []
    for _family, _type, _proto, _name, sockaddr in infos:
        # an IPv6 sockaddr may carry a zone ("fe80::1%eth0")
        address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise UnsafeURL(f"url's host '{host}' resolved to no address.")
    return tuple(addresses)


def check_url(url: str, *, allow_private: bool) -> Target:
    """Resolve the URL's host and check every address it resolves to; raises UnsafeURL."""
    scheme, host, port = split_url(url)
    addresses = resolve(host, port)
    if not allow_private:
        refused = [str(address) for address in addresses if not is_public(address)]
        if refused:
            raise UnsafeURL(
                f"url's host '{host}' resolves to a loopback, private or link-local address "
                f"({', '.join(refused)}); webhooks are sent only to public addresses unless the "
                f"operator sets {ALLOW_PRIVATE_VARIABLE}=true."
            )
    return Target(url, scheme, host, port, addresses)
