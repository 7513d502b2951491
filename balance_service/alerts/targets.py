"""Which webhook URLs the service may call: http(s), a host, no credentials, no private addresses.

A webhook makes the service send a request wherever a key holder says, so an
unchecked URL would let anyone with a key reach the operator's internal network
(metadata endpoints, admin ports). Host names are resolved and every address
checked both when an alert is created and again right before each send, and the
send connects to exactly the address that was checked, so a name that changes
its answer later (DNS rebinding) cannot redirect the request.

The same policy judges the connections Apprise makes for chat and push alerts
(``channels._guarded_connection``), with ``field="notify_url"`` in its messages.

``INTERNAL_RANGES`` and ``ALWAYS_REFUSED`` below are the one written source of
the address policy: the checks use them, and the OpenAPI document's text
(``describe_policy``) and the README point to them.
"""

from __future__ import annotations

import contextvars
import ipaddress
import socket
import threading
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

MAX_URL_LENGTH = 2048
#: Seconds a host name may take to resolve (at creation and at every send).
DEFAULT_DNS_TIMEOUT = 2.0
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")


@dataclass(frozen=True)
class AddressRange:
    """Networks of one kind, with why the policy treats them as it does."""

    kind: str
    networks: tuple[str, ...]
    reason: str


#: What ALERT_ALLOW_PRIVATE_TARGETS opens, and nothing else: where an operator's internal receiver can live.
INTERNAL_RANGES = (
    AddressRange("private", ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7"), "an internal receiver"),
    AddressRange("loopback", ("127.0.0.0/8", "::1/128"), "a receiver on the same host"),
)

#: Refused even with ALERT_ALLOW_PRIVATE_TARGETS. ``is_public`` refuses these (and anything else the
#: ``ipaddress`` module does not call globally routable); ``is_allowed`` refuses them by name as well.
ALWAYS_REFUSED = (
    AddressRange("link-local", ("169.254.0.0/16", "fe80::/10"), "cloud metadata endpoints such as 169.254.169.254"),
    AddressRange("multicast", ("224.0.0.0/4", "ff00::/8"), "not one receiver"),
    AddressRange("unspecified", ("0.0.0.0/8", "::/128"), "this host, or no host at all"),
    AddressRange("reserved", ("240.0.0.0/4",), "not in use"),
    AddressRange("shared/CGNAT", ("100.64.0.0/10",), "a carrier's internal network"),
    AddressRange(
        "documentation",
        ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "2001:db8::/32"),
        "examples, never a real receiver",
    ),
    AddressRange("site-local", ("fec0::/10",), "IPv6's deprecated private range"),
)

#: IPv6 forms that stand for an IPv4 address; the address inside is judged too.
IPV6_WRAPPERS = ("IPv4-mapped ::ffff:a.b.c.d", "IPv4-compatible ::a.b.c.d", "6to4", "NAT64", "Teredo")

INTERNAL_NETWORKS = tuple(ipaddress.ip_network(n) for r in INTERNAL_RANGES for n in r.networks)
_REFUSED_NETWORKS = tuple(ipaddress.ip_network(n) for r in ALWAYS_REFUSED for n in r.networks)


def _listed(ranges: tuple[AddressRange, ...], with_reasons: bool = False) -> str:
    parts = []
    for r in ranges:
        reason = f": {r.reason}" if with_reasons else ""
        parts.append(f"{r.kind} ({', '.join(r.networks)}{reason})")
    return ", ".join(parts)


def describe_policy() -> str:
    """The address policy in one paragraph, for the API description."""
    return (
        "The host must resolve only to public addresses; refused are "
        f"{_listed(ALWAYS_REFUSED, with_reasons=True)} and every other address that is not globally routable, "
        f"also inside IPv6 ({', '.join(IPV6_WRAPPERS)}). ALERT_ALLOW_PRIVATE_TARGETS=true also allows "
        f"{_listed(INTERNAL_RANGES)}, and nothing else. The check is repeated before every send."
    )


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
    try:
        parts = urlsplit(url)
    except ValueError as e:  # e.g. "Invalid IPv6 URL" for an unclosed "["
        raise TargetError(f"webhook_url is not a valid URL: {e}") from None
    _, bracket, after_bracket = parts.netloc.partition("]")
    if bracket and after_bracket and not after_bracket.startswith(":"):
        raise TargetError("webhook_url is not a valid URL: text after the bracketed IPv6 address")
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise TargetError("webhook_url must start with http:// or https://")
    if "@" in parts.netloc:
        raise TargetError("webhook_url must not contain a user name or password")
    try:
        host = parts.hostname
        port = parts.port
    except ValueError:  # a port that is not a number from 0 to 65535
        raise TargetError("webhook_url has an invalid port") from None
    if not host:
        raise TargetError("webhook_url must have a host")
    if port == 0:
        raise TargetError("webhook_url has an invalid port")
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return Target(scheme, host.rstrip(".") or host, port or (443 if scheme == "https" else 80), path)


def _ipv4_inside(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address that an IPv4-mapped (``::ffff:a.b.c.d``) or IPv4-compatible (``::a.b.c.d``)
    address stands for; connecting to one reaches that IPv4 address. ``::`` and ``::1`` are not
    IPv4-compatible: they are IPv6's own unspecified and loopback addresses."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in _IPV4_COMPATIBLE and int(address) > 1:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address inside an IPv4-mapped, IPv4-compatible, 6to4 or NAT64 IPv6 address, if any."""
    embedded = _ipv4_inside(address) or address.sixtofour
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
        or (isinstance(address, ipaddress.IPv6Address) and address.is_site_local)
    )


def is_internal(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """In a private network or loopback (``INTERNAL_NETWORKS``), judging an IPv4-mapped or
    -compatible address by the IPv4 address it stands for.

    Everything else that is not public stays refused even with
    ALERT_ALLOW_PRIVATE_TARGETS: link-local holds the cloud metadata endpoints
    (169.254.169.254), the classic target of a forged webhook; multicast,
    unspecified, reserved, shared (CGNAT), Teredo and documentation addresses
    are not where an internal receiver lives.
    """
    if isinstance(address, ipaddress.IPv6Address):
        address = _ipv4_inside(address) or address
    return any(address in network for network in INTERNAL_NETWORKS)


def is_allowed(address: ipaddress.IPv4Address | ipaddress.IPv6Address, allow_private: bool) -> bool:
    """May a webhook be sent to this address? Public ones always; internal ones with the setting on."""
    judged = (_ipv4_inside(address) or address) if isinstance(address, ipaddress.IPv6Address) else address
    if any(judged in network for network in _REFUSED_NETWORKS):
        return False
    return is_public(address) or (allow_private and is_internal(address))


_INTERNAL_LIST = ", ".join(n for r in INTERNAL_RANGES for n in r.networks)


def _getaddrinfo_within(host: str, port: int, timeout: float, field: str = "webhook_url") -> list[Any]:
    """``socket.getaddrinfo`` with a deadline: it has no timeout of its own.

    A name server that never answers keeps the C library waiting for its full
    retry schedule (10 s and more), which would hold a gunicorn worker all that
    time. The lookup runs in a daemon thread; after ``timeout`` seconds the
    caller gives up and the thread ends by itself when the C library does. A
    sync worker serves one request at a time, so it leaves at most one such
    thread per ``timeout`` seconds behind.
    """
    outcome: dict[str, Any] = {}
    done = threading.Event()
    context = contextvars.copy_context()  # the caller's app context, for anything that wraps getaddrinfo

    def run() -> None:
        try:
            outcome["infos"] = context.run(socket.getaddrinfo, host, port, type=socket.SOCK_STREAM)
        except BaseException as e:  # noqa: BLE001 - handed to the caller below
            outcome["error"] = e
        finally:
            done.set()

    threading.Thread(target=run, name="webhook-dns", daemon=True).start()
    if not done.wait(timeout):
        raise TargetError(f"the {_noun(field)} host {host!r} did not resolve within {timeout:g} s", retryable=True)
    if "error" in outcome:
        raise outcome["error"]
    return outcome["infos"]


def _noun(field: str) -> str:
    """``webhook`` for ``webhook_url``, ``notify`` for ``notify_url``: how messages name the host's URL."""
    return field.removesuffix("_url")


def resolve(
    target: Target, allow_private: bool, dns_timeout: float = DEFAULT_DNS_TIMEOUT, field: str = "webhook_url"
) -> list[str]:
    """The addresses ``target.host`` resolves to now, every one of them allowed, or TargetError.

    The refusal does not say which address was found: the API caller must not
    be able to map internal host names to addresses with it. ``field`` is the
    request field the messages name (``notify_url`` for Apprise alerts).
    """
    try:
        infos = _getaddrinfo_within(target.host, target.port, dns_timeout, field)
    except (socket.gaierror, UnicodeError):
        raise TargetError(f"cannot resolve the {_noun(field)} host {target.host!r}", retryable=True) from None
    addresses: list[str] = []
    for *_, sockaddr in infos:
        text = str(sockaddr[0]).split("%", 1)[0]
        if text not in addresses:
            addresses.append(text)
    if not addresses:
        raise TargetError(f"cannot resolve the {_noun(field)} host {target.host!r}", retryable=True)
    if all(is_allowed(ipaddress.ip_address(text), allow_private) for text in addresses):
        return addresses
    if allow_private:
        raise TargetError(
            f"{field} is not allowed: it must point to a public address or to a private network or "
            f"loopback one ({_INTERNAL_LIST})"
        )
    raise TargetError(f"{field} is not allowed: it must point to a public address")


def check_url(url: object, allow_private: bool, dns_timeout: float = DEFAULT_DNS_TIMEOUT) -> Target:
    """Everything the API checks before storing a webhook URL: its form and where it resolves."""
    target = parse_url(url)
    resolve(target, allow_private, dns_timeout)
    return target
