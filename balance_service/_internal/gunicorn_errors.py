"""gunicorn's own error answers (a request it cannot parse) in the service's JSON shape: a feature gunicorn lacks.

gunicorn answers a request it cannot read (a bad request line or header, a
header too large) itself, before any application code runs, with an HTML page
written by ``gunicorn.util.write_error``; it has no setting or hook for that
body. A page calling the API could not read it, and behind nginx some of them
(a header value with a control character) reach the client as they are.
``install`` puts a writer of the same answer as JSON in that function's place,
in each worker (``gunicorn_conf.post_worker_init``): the same status and
reason, ``{"success": false, "message": ...}`` (keys masked), the CORS header a page needs
when any origin may read the API, and ``Connection: close`` as before.
"""

from __future__ import annotations

import json
import socket

from gunicorn import util

from ..logging_setup import redact


def install(any_origin: bool) -> None:
    """Make gunicorn write its own error answers as JSON from now on, in this process."""
    cors = "Access-Control-Allow-Origin: *\r\n" if any_origin else ""

    def write_error(sock: socket.socket, status_int: int, reason: str, mesg: str) -> None:
        # The message may quote the request line or a header: never a key, in an error body as in a log line.
        message = f"{reason}: {redact(mesg)}" if mesg else reason
        body = json.dumps({"success": False, "message": message}).encode()
        head = (
            f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\nContent-Type: application/json\r\n{cors}"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        util.write_nonblock(sock, head.encode("latin-1") + body)

    util.write_error = write_error
