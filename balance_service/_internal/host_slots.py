"""At most N of some slow work at once on one host: a non-blocking semaphore shared by every worker process.

gunicorn's sync workers serve one request each, so a client sending slow
requests as fast as they are answered would hold every worker, and balances
would wait behind them. A cap per worker process (a semaphore) would not help
there: a sync worker never has two requests in flight. The cap has to be shared
by the workers, so that at most that many of them are busy with the slow work
(usage queries, test messages) and the others keep answering balances.

Each slot is a file, ``slot-<n>`` in a directory of this user's under the system
temporary directory, named after the work and the database (so the workers of
one service, preloaded or not, find the same slots, and tests on other databases
do not). A request takes the first slot whose file it can lock with ``flock``
without waiting, and the lock goes when its descriptor is closed, by the request
or by the kernel if the worker dies. ``flock`` locks belong to an open file, not
to a process, so the same slots also bound threads (``--threads``, the
development server). Nothing is waited for: when every slot is taken the answer
is a 503 with ``Retry-After`` at once. A feature no library offers: a
non-blocking semaphore shared by unrelated processes (``filelock`` is one lock,
not N slots); this is a dozen lines of ``os`` and ``fcntl``.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress

from flask import Flask
from werkzeug.exceptions import ServiceUnavailable

log = logging.getLogger(__name__)

#: Seconds a refused client is told to wait.
RETRY_AFTER_SECONDS = 1


class HostSlots:
    """``slots`` lock files in ``directory``; ``take()`` holds one for a ``with`` block or refuses with a 503
    saying ``busy_message``."""

    def __init__(self, directory: str, slots: int, busy_message: str, shared: bool = False) -> None:
        self.directory = directory
        self.busy_message = busy_message
        self.shared = shared  # under a parent of this user's that other services of the user use too
        self.paths = [os.path.join(directory, f"slot-{n}") for n in range(slots)]

    @classmethod
    def for_database(cls, url: str, kind: str, slots: int, busy_message: str) -> HostSlots:
        """The ``kind`` slots every process of this user shares for the database at ``url`` (only its hash is used)."""
        digest = hashlib.sha256(url.encode()).hexdigest()[:16]
        parent = os.path.join(tempfile.gettempdir(), f"balance-service-{os.getuid()}")
        return cls(os.path.join(parent, f"{kind}-{digest}"), slots, busy_message, shared=True)

    def prepare(self, directory: bool = True) -> None:
        """Make the directory (unless ``directory`` is false: then only a shared one's parent) as this user's own.

        A shared directory's parent must be this user's and writable by no one else, or ``PermissionError``.
        """
        if self.shared:
            parent = os.path.dirname(self.directory)
            with suppress(FileExistsError):
                os.mkdir(parent, 0o700)
            info = os.stat(parent, follow_symlinks=False)
            if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o022:
                raise PermissionError(f"{parent} is not a directory of this user's that only it can write")
        if directory:
            with suppress(FileExistsError):
                os.mkdir(self.directory, 0o700)

    def _open(self, path: str) -> int:
        flags = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW
        try:
            return os.open(path, flags, 0o600)
        except FileNotFoundError:  # the first usage query, or a cleaner of old temporary files removed the directory
            self.prepare()
            return os.open(path, flags, 0o600)

    def _acquire(self) -> int | None:
        """The descriptor of a slot now locked, or None when all are taken."""
        for path in self.paths:
            fd = self._open(path)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            return fd
        return None

    @contextmanager
    def take(self, busy_message: str | None = None) -> Iterator[None]:
        """Hold a slot for the block, or raise a JSON 503 with ``Retry-After`` at once (nothing is done), saying
        ``busy_message`` (the slots' own by default)."""
        fd = self._acquire()
        if fd is None:
            raise ServiceUnavailable(busy_message or self.busy_message, retry_after=RETRY_AFTER_SECONDS)
        try:
            yield
        finally:
            os.close(fd)  # releases the lock


def install(app: Flask, extension: str, host_slots: HostSlots) -> None:
    """Keep shared ``host_slots`` in ``app.extensions[extension]``; their directory is made by the first ``take``.

    If the shared parent directory cannot be had (another user owns it), the slots go into a private
    directory instead, shared only by the processes forked from this one (a preloaded gunicorn's workers).
    """
    try:
        host_slots.prepare(directory=False)
    except OSError as e:
        name = os.path.basename(host_slots.directory)
        log.warning("%s: %s; using a private directory instead", name, e)
        private = tempfile.mkdtemp(prefix=f"balance-service-{name}-")
        host_slots = HostSlots(private, len(host_slots.paths), host_slots.busy_message)
    app.extensions[extension] = host_slots
