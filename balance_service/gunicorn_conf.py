"""gunicorn settings for balance-service (``balance-service serve``; in a checkout, ``gunicorn.conf.py`` runs it).

The service's own settings (``BIND``, ``LOG_LEVEL``, the limiter's) come from
``config.Settings``; gunicorn's own variables (``WEB_CONCURRENCY``,
``FORWARDED_ALLOW_IPS``, ``GUNICORN_CMD_ARGS``, e.g. ``--timeout 60
--max-requests 0 --access-logfile -``) override what is set here.
"""

import gc
import importlib.util
import multiprocessing
import os
import sys
from pathlib import Path


def _service_settings():
    """The service's own settings (``config.py``), loaded by path: the same parser, without the package."""
    # This file's own path: the checkout's gunicorn.conf.py runs it with its own __file__, compiled under this name.
    here = Path(sys._getframe().f_code.co_filename)
    spec = importlib.util.spec_from_file_location("_balance_service_settings", here.with_name("config.py"))
    module = sys.modules[spec.name] = importlib.util.module_from_spec(spec)  # dataclasses look their module up
    spec.loader.exec_module(module)
    try:
        return module.Settings.from_env()
    except module.ConfigError as e:
        raise SystemExit(str(e)) from None


_settings = _service_settings()

bind = _settings.bind
# Sync workers: a request is ~0.3 ms of CPU around one SQL round trip, and a sync
# worker sits idle while its round trip is on the wire. Measured on 2 cores with
# the database on the same host (issue 17, bench/README.md), 2-3 workers served
# 10-15 % more than 5 and each worker left out saves ~25 MiB of PSS and two
# database connections: cores + 1 keeps every core busy while one waits. With a
# database on another host (0.3-1 ms per round trip) more may pay:
# WEB_CONCURRENCY (gunicorn's own variable) sets the number.
if "WEB_CONCURRENCY" not in os.environ:
    workers = multiprocessing.cpu_count() + 1
worker_class = "sync"
graceful_timeout = 30
keepalive = 5
# Recycle workers now and then so a slow leak can never grow without bound, but
# rarely: a new worker's first requests are slow (it connects to the database and
# Redis, prepares the lookup, reads the options and the table layout, and copies
# the master's pages it writes to), 50-95 ms for the first. At 10,000 requests a
# loaded worker was replaced every few seconds, and at one connection the p99 went
# from 2 ms to 43-68 ms (bench/README.md, issue 11). At 100,000 a worker serving
# 400 requests a second lives about four minutes. All workers take the same share
# of requests, so without jitter they would all reach the limit together; ±10 %
# spreads the restarts out. GUNICORN_CMD_ARGS="--max-requests 0" turns recycling off.
max_requests = 100000
max_requests_jitter = max_requests // 10
# The app is built once, in the master, and the workers are forked from it: they
# share its memory pages (copy-on-write) and start at once. Measured (issue 11,
# 2 workers after a short load): RSS per worker 64.0 -> 58.7 MB, PSS 50 -> 30 MB.
# Nothing connects to a database while the app is built, and post_fork drops any
# connection inherited through fork. The cost: code is loaded once, so a HUP
# restarts workers on the code already loaded; a deploy restarts the master.
preload_app = True
# The app writes one JSON line per request (logger balance_service.access), so
# gunicorn's own access log is off unless GUNICORN_CMD_ARGS="--access-logfile -".
# It shows the path without the query string, and never a header.
access_log_format = '%(h)s "%(m)s %(U)s" %(s)s %(B)s %(M)sms'
errorlog = "-"
loglevel = _settings.log_level.lower()
# gunicorn >= 25 opens a control socket at one fixed path per user; several
# instances on one host (tests, benchmarks, blue/green) would fight over it.
control_socket_disable = True


# A preloaded app creates its metric files while the master loads it, which is
# before on_starting runs: the directory must exist by then.
_metrics_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
if _metrics_dir:
    os.makedirs(_metrics_dir, exist_ok=True)


def on_starting(server):
    """Prometheus multiprocess mode: start from an empty PROMETHEUS_MULTIPROC_DIR.

    Files left by a previous run would be added to this run's counts; only the
    ``*.db`` files prometheus_client writes are removed, nothing else there, and
    not the master's own (made just now by a preloaded app).
    """
    if not _metrics_dir:
        return
    own = f"_{os.getpid()}.db"
    for name in os.listdir(_metrics_dir):
        if name.endswith(".db") and not name.endswith(own):
            os.remove(os.path.join(_metrics_dir, name))


def when_ready(server):
    """Warn when several workers each keep failed-auth counts of their own (RATELIMIT_STORAGE_URI memory://), and
    when a request's log queries may outlast gunicorn's worker timeout."""
    # A usage request runs up to two log queries, each with its own deadline (and a second's margin at most).
    log_seconds = _settings.log_statement_timeout_ms / 1000
    if log_seconds and server.cfg.timeout and 2 * (log_seconds + 1) >= server.cfg.timeout:
        server.log.warning(
            "DB_STATEMENT_TIMEOUT_MS=%d lets each log query run %g s, and a usage request runs up to two: "
            "gunicorn's timeout (%d s) would kill the worker first. Lower DB_STATEMENT_TIMEOUT_MS or raise "
            'GUNICORN_CMD_ARGS="--timeout N" above %g (and a proxy\'s read timeout above N).',
            _settings.db_statement_timeout_ms,
            log_seconds,
            server.cfg.timeout,
            2 * (log_seconds + 1),
        )
    if server.cfg.workers > 1 and _settings.auth_failure_limit is not None and _settings.limiter_in_memory:
        server.log.warning(
            "AUTH_FAILURE_LIMIT is counted in memory by each of the %d workers: a client gets up to %d times "
            "the limit, and a recycled worker forgets its counts. Production sets RATELIMIT_STORAGE_URI to a "
            "Redis URL.",
            server.cfg.workers,
            server.cfg.workers,
        )


def pre_fork(server, worker):
    """Freeze the master's objects (the preloaded app) before each fork.

    Frozen objects are left out of every garbage collection: the workers' full
    collections get short (they were the ~30 ms pauses seen at p99) and do not
    write to the pages shared with the master, which would copy them.
    """
    gc.freeze()


def post_fork(server, worker):
    """In each new worker, before anything else: let go of the connections inherited from the master
    (``balance_service.after_fork``), if the master loaded the package (see ``post_worker_init``)."""
    package = sys.modules.get("balance_service")
    if package is not None:
        package.after_fork()


def post_worker_init(worker):
    """Freeze the worker's app too, mask keys in gunicorn's log handlers again, and make its own errors JSON.

    After a ``kill -HUP`` gunicorn makes new handlers, and a preloaded app does
    not run its logging set-up a second time. gunicorn's answers to requests it
    cannot parse are the service's JSON (``_internal/gunicorn_errors.py``). An
    app that is not this service (the benchmark's reference apps run under this
    file too) never loads the package, and must not be made to: it would add the
    service's ~20 MB to each worker.
    """
    logging_setup = sys.modules.get("balance_service.logging_setup")
    if logging_setup is not None:
        logging_setup.mask_all_handlers()
        from balance_service._internal import gunicorn_errors

        gunicorn_errors.install(any_origin=_settings.cors_origins == "*")
    gc.freeze()


def child_exit(server, worker):
    """A worker is gone: drop its live-gauge files (its counters stay in the sums)."""
    if _metrics_dir:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
