"""Real receivers on loopback for alert messages: an HTTP one (ntfy-style and Apprise JSON) and an SMTP server.

Apprise's ntfy plugin posts ``{"topic", "title", "message"}`` to
``http://host:port``; its json plugin posts ``{"title", "message", …}`` to
``http://host:port/path``; its e-mail plugin talks SMTP to the operator's
server. Nothing leaves the machine.
"""

from __future__ import annotations

import email
import email.policy
import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from aiosmtpd.controller import Controller

from balance_service.config import DEFAULT_NOTIFY_SCHEMES
from tests.helpers import serving


@dataclass
class Posted:
    path: str
    json: dict


@dataclass
class HttpReceiver:
    """Records every POST; ``status``, ``delay`` and ``redirect`` (a Location) change how it answers."""

    port: int = 0
    posts: list[Posted] = field(default_factory=list)
    status: int = 200
    delay: float = 0.0
    redirect: str | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def ntfy_url(self, host: str = "127.0.0.1", topic: str = "balance") -> str:
        return f"ntfy://{host}:{self.port}/{topic}"

    def json_url(self, host: str = "127.0.0.1", path: str = "alerts/in") -> str:
        return f"json://{host}:{self.port}/{path}"


@contextmanager
def http_receiver() -> Iterator[HttpReceiver]:
    state = HttpReceiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            time.sleep(state.delay)
            with state.lock:
                state.posts.append(Posted(self.path, json.loads(body or b"{}")))
            if state.redirect is not None:
                self.send_response(302)
                self.send_header("Location", state.redirect)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            payload = b'{"id":"1"}'
            self.send_response(state.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.port = server.server_address[1]
    with serving(server):
        yield state


@dataclass
class Mail:
    sender: str
    recipients: list[str]
    subject: str
    text: str
    #: The HTML part, when the mail has one.
    html: str | None = None


@dataclass
class SmtpServer:
    port: int
    mails: list[Mail] = field(default_factory=list)

    def url(self, sender: str = "alerts@example.com") -> str:
        """ALERT_SMTP_URL for this server: plain SMTP on loopback (Apprise's mode=insecure), from ``sender``."""
        return f"mailto://127.0.0.1:{self.port}?from={sender}&mode=insecure"


class _Recorder:
    def __init__(self, server: SmtpServer) -> None:
        self.server = server

    async def handle_DATA(self, server, session, envelope):
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        text = message.get_body(preferencelist=("plain",)).get_content()
        html = message.get_body(preferencelist=("html",))
        self.server.mails.append(
            Mail(
                envelope.mail_from,
                list(envelope.rcpt_tos),
                str(message["Subject"]),
                text,
                None if html is None else html.get_content(),
            )
        )
        return "250 OK"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def smtp_server() -> Iterator[SmtpServer]:
    """An aiosmtpd server on a free loopback port that keeps every mail it is given."""
    state = SmtpServer(free_port())
    controller = Controller(_Recorder(state), hostname="127.0.0.1", port=state.port)
    controller.start()
    try:
        yield state
    finally:
        controller.stop()


@dataclass
class Proxy:
    url: str
    #: The request line of every request the proxy was asked to forward.
    requests: list[str] = field(default_factory=list)


@contextmanager
def recording_proxy() -> Iterator[Proxy]:
    """An HTTP proxy on a free loopback port that forwards nothing: it notes each request line, answers 502."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    server = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    state = Proxy(f"http://127.0.0.1:{server.server_port}")

    class Handler(BaseHTTPRequestHandler):
        def _refuse(self) -> None:
            state.requests.append(self.requestline)
            self.send_error(502)

        do_GET = do_POST = do_PUT = do_CONNECT = _refuse

        def log_message(self, *args: object) -> None:
            pass

    server.RequestHandlerClass = Handler
    with serving(server):
        yield state


#: The top-up page alert messages link to in the channel tests.
TOPUP = "https://gateway.example.com/topup"
#: Every default scheme, and Apprise's JSON target for the JSON receiver.
SCHEMES = DEFAULT_NOTIFY_SCHEMES + ",json"


def channel_settings(mail: SmtpServer) -> dict[str, object]:
    """Settings for an app whose alerts may reach these receivers on loopback: every scheme, ``mail`` as the
    operator's mail server, the ``TOPUP`` link."""
    return {
        "ALERT_ALLOW_PRIVATE_TARGETS": True,
        "ALERT_NOTIFY_SCHEMES": SCHEMES,
        "ALERT_SMTP_URL": mail.url(),
        "ALERT_TOPUP_URL": TOPUP,
    }


def create(app, key, headers=None, **fields):
    """``POST /v1/user/balance/alerts`` with ``key`` (threshold 5 unless given); the response."""
    fields.setdefault("threshold", 5)
    headers = {"Authorization": f"Bearer {key}", **(headers or {})}
    return app.test_client().post("/v1/user/balance/alerts", json=fields, headers=headers)


def created(app, key, headers=None, **fields):
    """The alert ``create`` made (it must be a 201)."""
    response = create(app, key, headers, **fields)
    assert response.status_code == 201, response.get_json()
    return response.get_json()["alert"]
