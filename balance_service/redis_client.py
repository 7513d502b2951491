"""A minimal Redis client: RESP2 over one socket, for the failed-auth limiter's one call per request.

redis-py and the ``limits`` library on top of it cost every gunicorn worker
about 7.5 MB of memory and 115 modules for what is one script call per
request (issue 11); this is the standard library's ``socket`` and ``ssl`` only.

One connection per client, opened on first use, so never in gunicorn's master
before it forks; a forked child drops the one it inherited (sharing a socket
would hand one process's replies to another). Connecting and every read or
write wait at most ``timeout`` seconds. Any failure closes the connection and
the next call connects again; an error reply leaves it open.
"""

from __future__ import annotations

import hashlib
import os
import socket
import ssl
import threading
import weakref

from .config import ConfigError, RedisTarget

#: Longest reply line read (a status, a number, a length); bulk strings are read by their length.
_MAX_LINE = 64 * 1024


class RedisError(Exception):
    """Redis could not be reached, did not answer in time, or answered with an error."""


class ReplyError(RedisError):
    """An error reply such as ``-NOSCRIPT ...``: the command failed, the connection is fine."""


#: What a reply can be: simple and bulk strings come back as bytes, nil as None, error replies as ReplyError.
Reply = bytes | int | None | ReplyError | list


class Script:
    """A Lua script, called by its SHA1 (``EVALSHA``) and sent whole only when Redis does not know it yet."""

    def __init__(self, source: str) -> None:
        self.source = source.encode()
        self.sha = hashlib.sha1(self.source, usedforsecurity=False).hexdigest()  # a name, not a secret


def _encode(args: tuple[bytes | str | int, ...]) -> bytes:
    """One command as RESP: an array of bulk strings."""
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg if isinstance(arg, bytes) else str(arg).encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


class RedisClient:
    """One connection to the Redis of a :class:`~balance_service.config.RedisTarget`; safe to share between threads."""

    def __init__(self, target: RedisTarget, timeout: float) -> None:
        self._sock: socket.socket | None = None
        self._file = None
        self._lock = threading.Lock()
        self.target = target
        self.timeout = timeout
        self._tls = _tls_context(target) if target.tls else None
        _clients.add(self)

    def call(self, *args: bytes | str | int) -> Reply:
        """Send one command and return its reply; raise :class:`RedisError` (an error reply: :class:`ReplyError`)."""
        with self._lock:
            try:
                if self._sock is None:
                    self._connect()
                self._sock.sendall(_encode(args))
                reply = self._read()
            except (OSError, ValueError, RedisError) as e:  # OSError: also timeouts and ssl.SSLError
                self.close()
                if isinstance(e, RedisError):
                    raise
                raise RedisError(str(e) or type(e).__name__) from e
        if isinstance(reply, ReplyError):
            raise reply
        return reply

    def run(self, script: Script, keys: list[str], args: list[bytes | str | int]) -> Reply:
        """Run a Lua script: ``EVALSHA``, and ``EVAL`` (which also caches it) if Redis does not know it."""
        try:
            return self.call("EVALSHA", script.sha, len(keys), *keys, *args)
        except ReplyError as e:
            if not str(e).startswith("NOSCRIPT"):
                raise
        return self.call("EVAL", script.source, len(keys), *keys, *args)

    def close(self) -> None:
        """Close the connection, if any; the next call opens a new one."""
        sock, file, self._sock, self._file = self._sock, self._file, None, None
        if file is not None:
            file.close()
        if sock is not None:
            sock.close()

    def __del__(self) -> None:
        self.close()

    def _connect(self) -> None:
        """Connect, authenticate and select the database, the last two in one round trip."""
        target = self.target
        if target.unix_socket:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.settimeout(self.timeout)
                sock.connect(target.unix_socket)
            except OSError:
                sock.close()
                raise
        else:
            sock = socket.create_connection((target.host, target.port), timeout=self.timeout)
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                if self._tls is not None:
                    sock = self._tls.wrap_socket(sock, server_hostname=target.host)
            except OSError:
                sock.close()
                raise
        self._sock, self._file = sock, sock.makefile("rb")
        setup: list[tuple[str | int, ...]] = []
        if target.password is not None:
            setup.append(("AUTH", target.username, target.password) if target.username else ("AUTH", target.password))
        if target.db:
            setup.append(("SELECT", target.db))
        if setup:
            sock.sendall(b"".join(_encode(command) for command in setup))
            for _ in setup:
                reply = self._read()
                if isinstance(reply, ReplyError):
                    raise reply

    def _read(self) -> Reply:
        line = self._file.readline(_MAX_LINE)
        if line[-2:] != b"\r\n":
            raise RedisError("connection closed by Redis" if not line else "malformed reply")
        kind, body = line[:1], line[1:-2]
        if kind == b"+":
            return body
        if kind == b":":
            return int(body)
        if kind == b"$":
            size = int(body)
            if size < 0:
                return None
            data = self._file.read(size + 2)
            if len(data) != size + 2:
                raise RedisError("connection closed by Redis")
            return data[:size]
        if kind == b"*":
            size = int(body)
            return None if size < 0 else [self._read() for _ in range(size)]
        if kind == b"-":
            # Returned, not raised: the replies of a pipeline after this one must still be read.
            return ReplyError(body.decode(errors="replace"))
        raise RedisError("malformed reply")


def _tls_context(target: RedisTarget) -> ssl.SSLContext:
    """Certificates checked as redis-py checks them: against the system's CAs (or ``ca_file``), hostname included."""
    try:
        context = ssl.create_default_context(cafile=target.ca_file)
    except OSError as e:
        raise ConfigError(f"RATELIMIT_STORAGE_URI's ssl_ca_certs cannot be used: {e}") from None
    if not target.verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


#: Every client of this process, so that a forked child can drop the connections it inherited.
_clients: weakref.WeakSet[RedisClient] = weakref.WeakSet()


def _forget_inherited_connections() -> None:
    """In a forked child (a gunicorn worker): close this process's copy of the parent's sockets."""
    for client in list(_clients):
        client._lock = threading.Lock()  # a thread of the parent may have held it while forking
        client.close()


os.register_at_fork(after_in_child=_forget_inherited_connections)
