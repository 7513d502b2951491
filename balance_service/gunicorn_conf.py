"""gunicorn settings for balance-service; each can be overridden by an environment variable.

It imports nothing from the package, so gunicorn can read it as a file and its master process
stays free of the service's code: ``balance-service serve`` passes this file's path, and in a
checkout the top-level ``gunicorn.conf.py`` runs it. ``gunicorn -c python:balance_service.gunicorn_conf
balance_service.wsgi:app`` works too, with the package imported into the master.
"""

import multiprocessing
import os


def _positive_int(name: str, default: int) -> int:
    """A whole number from the environment, or a start-up error that names the variable."""
    raw = os.environ.get(name, str(default))
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise SystemExit(f"{name} must be a whole number of at least 1, got {raw!r}")
    return value


bind = os.environ.get("BIND", "127.0.0.1:8000")
# Requests are short and wait on one SQL round trip: sync workers, (2 × cores) + 1 of them.
workers = _positive_int("WEB_CONCURRENCY", multiprocessing.cpu_count() * 2 + 1)
worker_class = "sync"
timeout = _positive_int("GUNICORN_TIMEOUT", 30)
graceful_timeout = 30
keepalive = 5
# Recycle workers now and then so a slow leak can never grow without bound.
max_requests = 10000
max_requests_jitter = 1000
# Each worker builds its own app, engine and pool: nothing shared across fork.
preload_app = False
# The app writes one JSON line per request (logger balance_service.access), so
# gunicorn's own access log is off unless GUNICORN_ACCESS_LOG names a file or "-".
# It shows the path without the query string, and never a header.
accesslog = os.environ.get("GUNICORN_ACCESS_LOG") or None
access_log_format = '%(h)s "%(m)s %(U)s" %(s)s %(B)s %(M)sms'
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info").lower()
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")
# gunicorn >= 25 opens a control socket at one fixed path per user; several
# instances on one host (tests, benchmarks, blue/green) would fight over it.
control_socket_disable = True


def on_starting(server):
    """Prometheus multiprocess mode: start from an empty PROMETHEUS_MULTIPROC_DIR.

    Files left by a previous run would be added to this run's counts; only the
    ``*.db`` files prometheus_client writes are removed, nothing else there.
    """
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not directory:
        return
    os.makedirs(directory, exist_ok=True)
    for name in os.listdir(directory):
        if name.endswith(".db"):
            os.remove(os.path.join(directory, name))


#: AUTH_FAILURE_LIMIT values that switch the limiter off (as balance_service/config.py reads them).
_LIMIT_OFF = ("", "0", "off", "none", "false")


def when_ready(server):
    """Warn when several workers each keep failed-auth counts of their own (RATELIMIT_STORAGE_URI memory://).

    Each worker then allows a client the whole AUTH_FAILURE_LIMIT, and a worker
    recycled after ``max_requests`` forgets its counts. Read from the
    environment here, without importing the package (see the module docstring).
    """
    storage = os.environ.get("RATELIMIT_STORAGE_URI", "").strip() or "memory://"
    limit_on = os.environ.get("AUTH_FAILURE_LIMIT", "20/minute").strip().lower() not in _LIMIT_OFF
    if server.cfg.workers > 1 and limit_on and storage.startswith("memory"):
        server.log.warning(
            "AUTH_FAILURE_LIMIT is counted in memory by each of the %d workers: a client gets up to %d times "
            "the limit, and a recycled worker forgets its counts. Production sets RATELIMIT_STORAGE_URI to a "
            "Redis URL.",
            server.cfg.workers,
            server.cfg.workers,
        )


def child_exit(server, worker):
    """A worker is gone: drop its live-gauge files (its counters stay in the sums)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
