"""Chat, push and e-mail alerts through Apprise, with the webhook address policy on every connection they make.

An alert's ``notify_url`` is an Apprise URL (``tgram://…``, ``ntfys://host/topic``)
whose scheme the operator allows (``ALERT_NOTIFY_SCHEMES``, out of
``config.NOTIFY_SCHEMES``); an ``email`` alert goes to its address through the
operator's own mail server (``ALERT_SMTP_URL``), never through a server a user names.

Apprise is imported lazily, and only the one plugin a URL needs
(``apprise.plugins.<module>``, ``config.NOTIFY_SCHEMES``), never Apprise's
plugin manager, which loads all of its ~450 modules (+15 MB). Even one plugin
costs a process ~190 modules and ~8.5 MB (``ru_maxrss`` around the import),
which a serving worker at 59 of its 60 MB cannot carry: the API runs the Apprise
steps in a child process (``isolated.py``); ``check-alerts`` calls this module
itself. The rest of this module (form checks, masking) needs no Apprise.

The address guard: while an alert is sent, every connection urllib3 opens in
that thread (Apprise's HTTP plugins all use ``requests``) goes through
``_guarded_connection``: the host is resolved with the webhook DNS timeout,
every address judged by ``targets.resolve`` (the webhook policy), and the
socket connects to exactly the address that was judged. A redirect, a second
request, a name that changes its answer (DNS rebinding) or a fixed service host
(api.telegram.org) all pass the same check. TLS still verifies the URL's host
name, since only the socket is made here. The sockets are shut down when the
alert's deadline is reached.
"""

from __future__ import annotations

import importlib
import logging
import re
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any
from urllib.parse import urlsplit

from ..config import NOTIFY_SCHEMES
from .delivery import DeliveryResult, Retry, retrying
from .targets import DEFAULT_DNS_TIMEOUT, MAX_URL_LENGTH, Target, TargetError, resolve

log = logging.getLogger(__name__)

#: The e-mail plugin's module, for ALERT_SMTP_URL (mailto:// and mailtos://).
EMAIL_PLUGIN = "email"
MAX_EMAIL_LENGTH = 254
#: An address: one @, no spaces or brackets, a dotted domain. Deliverability is the mail server's business.
_EMAIL = re.compile(r"[^@\s<>(),;:\"\[\]]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?\.[A-Za-z]{2,63}")
_MASK = "****"


class ChannelError(ValueError):
    """A notify_url or email that cannot be used; the message names the field and is meant for the API caller."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


# --- Without Apprise: what the API checks in its own process, and how targets are shown ---------------------


def notify_scheme(url: object, allowed: tuple[str, ...]) -> str:
    """The scheme of a ``notify_url`` of an allowed kind, or ChannelError saying what is wrong with its form."""
    if not isinstance(url, str) or not url:
        raise ChannelError("notify_url must be a string (an Apprise URL such as tgram://bottoken/chat_id)")
    if len(url) > MAX_URL_LENGTH:
        raise ChannelError(f"notify_url is longer than {MAX_URL_LENGTH} characters")
    if not url.isascii() or not url.isprintable() or any(c.isspace() for c in url):
        raise ChannelError("notify_url must be plain ASCII without spaces")
    scheme, separator, rest = url.partition("://")
    scheme = scheme.lower()
    if not separator:
        raise ChannelError("notify_url is not an Apprise URL (scheme://…)")
    if scheme not in allowed:
        refused = "e-mail alerts take an email field instead" if scheme in ("mailto", "mailtos") else "not allowed"
        listed = ", ".join(allowed) or "none"
        raise ChannelError(f"notify_url: the scheme {scheme!r} is {refused} on this server (allowed: {listed})")
    if not rest:
        raise ChannelError(f"notify_url has nothing after {scheme}://")
    return scheme


def chosen_host(url: str) -> Target | None:
    """The server a self-hostable scheme's URL names (checked like a webhook's host), or None for a fixed service."""
    scheme = urlsplit(url).scheme.lower()
    if not NOTIFY_SCHEMES[scheme].user_host:
        return None
    try:
        parts = urlsplit(url)
        host, port = parts.hostname, parts.port
    except ValueError:
        raise ChannelError("notify_url has an invalid host or port") from None
    if not host:
        raise ChannelError(f"notify_url must name the {scheme} server: {scheme}://host/…")
    secure = scheme.endswith("s")
    return Target("https" if secure else "http", host.rstrip(".") or host, port or (443 if secure else 80), "/")


def check_email(address: object) -> str:
    """The address, or ChannelError (``email`` in the message)."""
    if not isinstance(address, str) or len(address) > MAX_EMAIL_LENGTH or not _EMAIL.fullmatch(address):
        raise ChannelError("email must be one e-mail address such as name@example.com")
    return address


def mask_notify_url(url: str) -> str:
    """The URL with its secrets hidden: the scheme, and a self-hosted server's host and port; nothing else.

    Tokens, keys, passwords, topics, chat ids, device keys and the query all
    become ``****``: which of them is a secret differs from service to service.
    """
    try:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme in NOTIFY_SCHEMES and NOTIFY_SCHEMES[scheme].user_host and parts.hostname:
            host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
            port = f":{parts.port}" if parts.port else ""
            login = f"{_MASK}@" if "@" in parts.netloc else ""
            path = f"/{_MASK}" if parts.path.strip("/") or parts.query else ""
            return f"{scheme}://{login}{host}{port}{path}"
    except ValueError:
        pass
    return f"{url.partition('://')[0].lower()}://{_MASK}"


def mask_email(address: str) -> str:
    """``a****@example.com``: enough for its owner to recognise it, not the whole address."""
    local, _, domain = address.rpartition("@")
    return f"{local[:1]}{_MASK}@{domain}"


# --- With Apprise: building a plugin and sending through it ----------------------------------------------------


def _plugin_class(module_name: str, scheme: str) -> Any:
    """The Apprise plugin class for ``scheme`` in ``apprise.plugins.<module_name>``, imported alone."""
    module = importlib.import_module(f"apprise.plugins.{module_name}")
    base = importlib.import_module("apprise.plugins.base").NotifyBase
    for candidate in vars(module).values():
        if isinstance(candidate, type) and issubclass(candidate, base) and candidate is not base:
            protocols: list[str] = []
            for value in (candidate.protocol, candidate.secure_protocol):
                protocols += [value] if isinstance(value, str) else list(value or ())
            if scheme in protocols:
                return candidate
    raise LookupError(f"apprise.plugins.{module_name} has no plugin for {scheme}://")


def _build(plugin: Any, arguments: dict[str, Any] | None, what: str) -> Any:
    if not arguments:
        raise ChannelError(f"{what} is not a valid {plugin.service_name} URL")
    try:
        return plugin(**arguments)
    except TypeError as e:  # how Apprise's plugins refuse their arguments; the text may quote a token
        log.debug("%s refused by Apprise: %s", what, type(e).__name__)
        raise ChannelError(f"{what} is not a valid {plugin.service_name} URL") from None


def notifier(url: str) -> Any:
    """An Apprise plugin instance for a ``notify_url`` (its scheme one of ``NOTIFY_SCHEMES``), or ChannelError."""
    scheme = url.partition("://")[0].lower()
    plugin = _plugin_class(NOTIFY_SCHEMES[scheme].plugin, scheme)
    return _build(plugin, plugin.parse_url(url), "notify_url")


def mailer(smtp_url: str, address: str) -> Any:
    """An Apprise e-mail instance that sends to ``address`` through the operator's ``smtp_url``."""
    scheme = smtp_url.partition("://")[0].lower()
    plugin = _plugin_class(EMAIL_PLUGIN, scheme)
    arguments = plugin.parse_url(smtp_url)
    if arguments:
        arguments["targets"] = [address]
    return _build(plugin, arguments, "ALERT_SMTP_URL")


@dataclass
class _Guard:
    """One thread's sending: the policy its connections must pass, what it refused, the sockets it opened."""

    allow_private: bool
    dns_timeout: float
    left: Callable[[], float]
    refused: TargetError | None = None
    sockets: list[socket.socket] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


_current = threading.local()
_installed = threading.Lock()
_original_create_connection: Callable[..., socket.socket] | None = None


def _guarded_connection(address: tuple[str, int], *args: Any, **kwargs: Any) -> socket.socket:
    """urllib3's ``create_connection`` for alert sends: judged addresses only, and the socket remembered."""
    assert _original_create_connection is not None
    guard: _Guard | None = getattr(_current, "guard", None)
    if guard is None:  # not an alert send (no other part of the service uses urllib3)
        return _original_create_connection(address, *args, **kwargs)
    host, port = address
    try:
        addresses = resolve(
            Target("https", host.strip("[]"), port, "/"),
            guard.allow_private,
            min(guard.dns_timeout, guard.left()),
            field="notify_url",
        )
    except TargetError as e:
        guard.refused = e
        raise OSError(e.message) from None
    error: OSError | None = None
    for checked in addresses:
        try:
            sock = _original_create_connection((checked, port), *args, **kwargs)
        except OSError as e:
            error = e
            continue
        with guard.lock:
            guard.sockets.append(sock)
        return sock
    assert error is not None
    raise error


def _ignore_environment_proxies_when_guarded() -> None:
    """An alert send connects to its target itself, never through ``HTTP(S)_PROXY``/``ALL_PROXY``.

    Through a proxy the guard would judge only the proxy's address while the
    proxy connected wherever the URL (or a redirect) said: every path by which
    requests (which Apprise posts with) takes proxies from the environment asks
    ``should_bypass_proxies`` first, so a guarded thread is told to bypass them.
    """
    from requests import utils  # here: only a process that sends alerts needs requests

    original = utils.should_bypass_proxies

    def should_bypass_proxies(url: str, no_proxy: str | None = None) -> bool:
        return getattr(_current, "guard", None) is not None or original(url, no_proxy=no_proxy)

    utils.should_bypass_proxies = should_bypass_proxies


def install_guard() -> None:
    """Route urllib3's connections through ``_guarded_connection``, keep Apprise's sentences out of the log (once)."""
    global _original_create_connection
    from urllib3.util import connection  # here: only a process that sends alerts needs urllib3

    with _installed:
        if _original_create_connection is None:
            _original_create_connection = connection.create_connection
            connection.create_connection = _guarded_connection
            _ignore_environment_proxies_when_guarded()
            # Apprise's own sentences quote topics, chat ids and hosts: they reach ``_Reasons`` only, never
            # the service's log (the NullHandler keeps Python's last-resort handler from printing them).
            apprise_log = logging.getLogger("apprise")
            apprise_log.propagate = False
            apprise_log.addHandler(logging.NullHandler())


@contextmanager
def _guarded(allow_private: bool, dns_timeout: float, left: Callable[[], float]) -> Iterator[_Guard]:
    """This thread's connections pass the address policy; all of them are cut when the time left is up."""
    install_guard()
    guard = _Guard(allow_private, dns_timeout, left)

    def cut() -> None:
        with guard.lock:
            for sock in guard.sockets:
                with suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    watchdog = threading.Timer(min(left(), threading.TIMEOUT_MAX), cut)
    watchdog.daemon = True
    watchdog.start()
    _current.guard = guard
    try:
        yield guard
    finally:
        _current.guard = None
        watchdog.cancel()


class _Reasons(logging.Handler):
    """Collects what Apprise logs at WARNING and above in one thread while it sends (its only failure report)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.thread = threading.get_ident()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.thread == self.thread:
            self.messages.append(record.getMessage())


#: The messages are plain text: Apprise escapes them for a service that takes HTML or Markdown (e-mail, Telegram),
#: so a key or account name such as ``<a href=…>`` is shown as written, never as markup.
_TEXT = "text"

#: Apprise's failure warnings end in ``error=<HTTP status>``; the rest may quote a topic, a chat id or a host.
_HTTP_STATUS = re.compile(r"error=(\d{3})\b")


def _in_words(service: str, reasons: list[str]) -> str:
    """Why the service did not take the notification, told from Apprise's warnings without quoting them.

    Only the HTTP status, or that the connection failed or timed out: Apprise's
    own sentences may carry the topic, chat id or host, which are the user's secrets.
    """
    said = " ".join(reasons)
    status = _HTTP_STATUS.search(said)
    if status is not None:
        code = int(status.group(1))
        phrase = HTTPStatus(code).phrase if code in HTTPStatus._value2member_map_ else ""
        why = f"it answered HTTP {code} {phrase}".rstrip()
    elif "timed out" in said.lower() or "timeout" in said.lower():
        why = "it did not answer in time"
    elif "connect" in said.lower():
        why = "the connection failed"
    else:
        return f"{service} did not accept the notification"
    return f"{service} did not accept the notification: {why}"


@contextmanager
def _listening() -> Iterator[_Reasons]:
    reasons = _Reasons()
    apprise_log = logging.getLogger("apprise")
    apprise_log.addHandler(reasons)
    try:
        yield reasons
    finally:
        apprise_log.removeHandler(reasons)


@dataclass(frozen=True)
class Sending:
    """How one alert is sent: the options of ``check-alerts`` (``DeliveryOptions``) and the address policy."""

    allow_private: bool
    timeout: float
    attempts: int
    backoff: float
    deadline: float | None
    dns_timeout: float = DEFAULT_DNS_TIMEOUT


def send(build: Callable[[], Any], title: str, body: str, how: Sending, guarded: bool = True) -> DeliveryResult:
    """Send ``title`` and ``body`` through the Apprise instance ``build()`` makes; never raises for a failure.

    Retried like a webhook (``delivery.retrying``): a refused address or an
    unusable URL ends the delivery, any other failure is tried again.
    ``guarded`` is false only for the operator's own mail server (ALERT_SMTP_URL),
    which may well be internal.
    """

    install_guard()

    def attempt(left: Callable[[], float]) -> None:
        try:
            instance = build()
        except ChannelError as e:
            raise TargetError(e.message) from None
        instance.socket_connect_timeout = instance.socket_read_timeout = min(how.timeout, left())
        with _listening() as reasons:
            if guarded:
                with _guarded(how.allow_private, how.dns_timeout, left) as guard:
                    sent = instance.notify(body=body, title=title, body_format=_TEXT)
                if guard.refused is not None:
                    raise guard.refused
            else:
                sent = instance.notify(body=body, title=title, body_format=_TEXT)
        if not sent:
            raise Retry(_in_words(instance.service_name, reasons.messages))

    return retrying(attempt, attempts=how.attempts, backoff=how.backoff, deadline=how.deadline, what="notification")


def send_notify(url: str, title: str, body: str, how: Sending) -> DeliveryResult:
    """A ``notify`` alert's message to its Apprise URL."""
    return send(lambda: notifier(url), title, body, how)


def send_email(smtp_url: str | None, address: str, title: str, body: str, how: Sending) -> DeliveryResult:
    """An ``email`` alert's message, through the operator's mail server."""
    if smtp_url is None:
        return DeliveryResult(False, 0, "e-mail alerts are off on this server (ALERT_SMTP_URL is not set)")
    return send(lambda: mailer(smtp_url, address), title, body, how, guarded=False)
