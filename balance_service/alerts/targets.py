"""Which webhook URLs the service may call: http(s), a host, no credentials, no private addresses.

A webhook makes the service send a request wherever a key holder says, so an
unchecked URL would let anyone with a key reach the operator's internal network
(metadata endpoints, admin ports). Host names are resolved and every address
checked both when an alert is created and again right before each send, and the
send connects to exactly the address that was checked, so a name that changes
its answer later (DNS rebinding) cannot redirect the request. The operator
setting ALERT_ALLOW_PRIVATE_TARGETS opens private and loopback addresses (an
internal receiver) but never link-local ones (cloud metadata endpoints).
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

MAX_URL_LENGTH = 2048
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class TargetError(ValueError):
    """The URL cannot be used; the message is meant for the API caller.

    ``retryable`` is true only for a failed DNS lookup, which may succeed later.
    """

    def __init__(self, message: str, retryable: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.retryable = retryable


@dataclass(frozen=True)
class Target:
    """A parsed webhook URL: what to connect to and what to ask for."""

    scheme: str
    host: str
    port: int
    path: str


def parse_url(url: object) -> Target:
    """Check the URL's form (no network); raise TargetError saying what is wrong."""
    if not isinstance(url, str) or not url:
        raise TargetError("webhook_url is required and must be a string")
    if len(url) > MAX_URL_LENGTH:
        raise TargetError(f"webhook_url is longer than {MAX_URL_LENGTH} characters")
    if not url.isascii() or not url.isprintable() or any(c.isspace() for c in url):
        raise TargetError("webhook_url must be plain ASCII without spaces (use punycode for international hosts)")
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise TargetError("webhook_url must start with http:// or https://")
    if "@" in parts.netloc:
        raise TargetError("webhook_url must not contain a user name or password")
    host = parts.hostname
    if not host:
        raise TargetError("webhook_url must have a host")
    try:
        port = parts.port
    except ValueError:
        raise TargetError("webhook_url has an invalid port") from None
    if port == 0:
        raise TargetError("webhook_url has an invalid port")
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return Target(scheme, host.rstrip(".") or host, port or (443 if scheme == "https" else 80), path)


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address inside an IPv4-mapped, 6to4 or NAT64 IPv6 address, if any."""
    embedded = address.ipv4_mapped or address.sixtofour
    if embedded is None and address in _NAT64:
        embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return embedded


def is_public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """True only for globally routable unicast addresses, looking inside IPv6 wrappers of IPv4."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(address)
        if embedded is not None and not is_public(embedded):
            return False
        if address.teredo is not None and not all(is_public(a) for a in address.teredo):
            return False
    return address.is_global and not (
        address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
    )


def never_allowed(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Refused even with ALERT_ALLOW_PRIVATE_TARGETS: no internal receiver lives there.

    Link-local holds the cloud metadata endpoints (169.254.169.254), the classic
    target of a forged webhook; multicast and "unspecified" are not receivers.
    """
    if isinstance(address, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(address)
        if embedded is not None and never_allowed(embedded):
            return True
    return address.is_link_local or address.is_multicast or address.is_unspecified


def resolve(target: Target, allow_private: bool) -> list[str]:
    """The addresses ``target.host`` resolves to now, every one of them allowed, or TargetError."""
    try:
        infos = socket.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        raise TargetError(f"cannot resolve the webhook host {target.host!r}", retryable=True) from None
    addresses: list[str] = []
    for *_, sockaddr in infos:
        text = str(sockaddr[0]).split("%", 1)[0]
        if text not in addresses:
            addresses.append(text)
    if not addresses:
        raise TargetError(f"cannot resolve the webhook host {target.host!r}", retryable=True)
    for text in addresses:
        address = ipaddress.ip_address(text)
        if never_allowed(address) or not (allow_private or is_public(address)):
            raise TargetError(
                f"webhook_url must point to a public address; {target.host!r} resolves to {text}, "
                "a private, loopback, link-local, multicast or reserved address"
            )
    return addresses


def check_url(url: object, allow_private: bool) -> Target:
    """Everything the API checks before storing a webhook URL: its form and where it resolves."""
    target = parse_url(url)
    resolve(target, allow_private)
    return target
