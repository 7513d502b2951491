"""Soak: the service under steady load for a while, with its database and Redis restarted and frozen once each.

    .venv/bin/python bench/soak.py                  # 300 s
    .venv/bin/python bench/soak.py --seconds 60     # what CI runs (.ci/run)

Everything runs on loopback and is started here: a private PostgreSQL
(tests/private_servers.py: initdb in a temporary directory, its own port), a
private ``redis-server`` (its own port, no persistence), and gunicorn with the
service as deployed (``gunicorn.conf.py``, the failed-auth limiter counting in
that Redis, ``PROXY_FIX_X_FOR=1`` so each load thread is a client address of
its own). A few threads send requests with ``http.client``, each at most
``--rate`` a second: valid keys on ``/v1/balance``, and on one thread a mix of
bad keys (from 256 addresses, under the failed-auth limit), ``/v1/usage``, billing
and ``/readyz``. Meanwhile, at fixed points of the run, one fault at a time:
PostgreSQL stopped and started again, PostgreSQL frozen (SIGSTOP of every
server process) for ``--freeze`` seconds, then the same two for Redis.

The report (stdout, markdown): requests by status; per fault its window, the
503s during it and after it ended, and how long after its end the last 503
came; each worker's PSS (``/proc/PID/smaps_rollup``) after the warm-up and at
the end. The exit status is 1 when any request got a 500 or no HTTP answer, a
database 503 came more than ``--late`` (2 s) after the fault before it ended
(or with no fault before it), a worker was replaced (``--max-requests 0``: the
same workers all along) or logged ``WORKER TIMEOUT``, or a worker's PSS grew by
more than ``--pss-growth`` (10 %).

``DB_STATEMENT_TIMEOUT_MS`` is 1000 here (``--statement-timeout-ms``), so the
client's deadline (1.5 s; 2.5 s for a log query already running when the server
stopped) ends each frozen request inside the freeze.
"""

from __future__ import annotations

import argparse
import collections
import http.client
import itertools
import json
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg2
import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.gateway_logs import GatewayTables  # noqa: E402 - needs ROOT on sys.path
from tests.helpers import clean_environment, running_gunicorn  # noqa: E402
from tests.private_servers import children, free_port, frozen, running_postgres  # noqa: E402

KEYS = 50
#: The message of a database 503 (a busy usage slot answers 503 with another one).
DATABASE_UNAVAILABLE = "Failed to get used quota"


class PrivateRedis:
    """redis-server on a port of its own, without persistence; started again on the same port after a stop."""

    def __init__(self, directory: Path) -> None:
        self.directory, self.port = directory, free_port()
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 30) -> None:
        command = ["redis-server", "--bind", "127.0.0.1", "--port", str(self.port), "--save", "", "--appendonly"]
        command += ["no", "--dir", str(self.directory), "--logfile", str(self.directory / "redis.log")]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis(port=self.port, socket_timeout=1, socket_connect_timeout=1)
        deadline = time.monotonic() + timeout
        try:
            while True:
                try:
                    client.ping()
                    return
                except redis.RedisError:
                    if self.process.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError("redis-server did not start") from None
                    time.sleep(0.05)
        finally:
            client.close()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
            self.process.terminate()
            self.process.wait(timeout=30)


@dataclass
class Fault:
    name: str
    start: float = 0.0
    end: float = 0.0


@dataclass
class Results:
    """Each request as (seconds since the start when its answer came, status or "no answer", database 503,
    seconds it took)."""

    requests: list[tuple[float, int | str, bool, float]] = field(default_factory=list)
    samples: dict[int | str, str] = field(default_factory=dict)


def _prepare(dsn: str, env: dict[str, str]) -> list[str]:
    """The service's tables (``init-db``), the gateway's ``logs`` table, one user and ``KEYS`` keys."""
    subprocess.run(
        [sys.executable, "-m", "flask", "--app", "wsgi", "init-db"],
        cwd=ROOT,
        env={**env, "LOG_LEVEL": "WARNING"},
        check=True,
        stdout=subprocess.DEVNULL,
    )
    GatewayTables(dsn).create_logs("new-api").engine.dispose()
    keys = [secrets.token_hex(24) for _ in range(KEYS)]
    conn = psycopg2.connect(dsn)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(
                "INSERT INTO users (id, username, display_name, role, status, quota, used_quota, request_count, "
                "\"group\") VALUES (1, 'soak', 'Soak', 1, 1, 123456789, 1234567, 0, 'default')"
            )
            for n, key in enumerate(keys, start=1):
                cur.execute(
                    "INSERT INTO tokens (id, user_id, key, status, name, created_time, accessed_time, expired_time, "
                    "remain_quota, unlimited_quota, used_quota) "
                    "VALUES (%s, 1, %s, 1, 'k', 0, 0, -1, 7654321, false, 0)",
                    (n, key),
                )
    finally:
        conn.close()
    return ["sk-" + key for key in keys]


def _plans(threads: int, keys: list[str]) -> list[Iterator[tuple[str, dict[str, str]]]]:
    """For each thread an endless series of (path, headers); each thread is a client address of its own."""
    valid = itertools.cycle(keys)

    def balances(n: int):
        while True:
            yield "/v1/balance", {"Authorization": f"Bearer {next(valid)}", "X-Forwarded-For": f"10.1.0.{n}"}

    def mixed():
        bad = (f"10.2.0.{n}" for n in itertools.cycle(range(256)))  # each address far under 20 failures a minute
        for n in itertools.count():
            key, address = next(valid), "10.3.0.1"
            choice = n % 6
            if choice == 0:
                yield (
                    "/v1/balance",
                    {"Authorization": f"Bearer sk-{secrets.token_hex(24)}", "X-Forwarded-For": next(bad)},
                )
                continue
            path = {
                1: "/v1/usage?start_date=2025-11-01&end_date=2025-12-01",
                2: "/v1/dashboard/billing/subscription",
                3: "/v1/dashboard/billing/usage",
                4: "/v1/user/balance",
                5: "/readyz",
            }[choice]
            yield path, {"Authorization": f"Bearer {key}", "X-Forwarded-For": address}

    return [balances(n) for n in range(1, threads)] + [mixed()]


def _load(base: str, plan, rate: float, started: float, stop: threading.Event, results: Results) -> None:
    host, port = base.removeprefix("http://").split(":")
    interval = 1 / rate
    next_at = time.monotonic()
    for path, headers in plan:
        if stop.is_set():
            return
        connection = http.client.HTTPConnection(host, int(port), timeout=15)
        database_503 = False
        sent = time.monotonic()
        try:
            connection.request("GET", path, headers=headers)
            response = connection.getresponse()
            body = response.read()
            status: int | str = response.status
            if status == 503:
                database_503 = json.loads(body).get("message") == DATABASE_UNAVAILABLE or path == "/readyz"
            if status >= 500 and status not in results.samples:
                results.samples[status] = f"{path}: {body[:200]!r}"
        except (OSError, http.client.HTTPException) as e:
            status = "no answer"
            results.samples.setdefault(status, f"{path}: {type(e).__name__}: {e}")
        finally:
            connection.close()
        answered = time.monotonic()
        results.requests.append((answered - started, status, database_503, answered - sent))  # append: thread-safe
        next_at = max(next_at + interval, time.monotonic() - 1)
        time.sleep(max(0.0, next_at - time.monotonic()))


def _pss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1])
    raise RuntimeError(f"no Pss in /proc/{pid}/smaps_rollup")


def _workers(master: int, count: int, timeout: float = 30) -> list[int]:
    deadline = time.monotonic() + timeout
    while len(pids := children(master)) < count:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{count} gunicorn workers did not start")
        time.sleep(0.05)
    return sorted(pids)


def _late_503s(results: Results, faults: list[Fault], late: float) -> list[tuple[float, Fault | None]]:
    """Database 503s that came more than ``late`` seconds after the end of the last fault begun before them."""
    found = []
    for at, _status, database_503, _took in results.requests:
        if not database_503:
            continue
        before = [f for f in faults if f.start <= at]
        last = before[-1] if before else None
        if last is None or at > last.end + late:
            found.append((at, last))
    return found


def run(args: argparse.Namespace) -> int:
    workdir = Path(tempfile.mkdtemp(prefix="balance-soak-"))
    redis_server = PrivateRedis(workdir)
    try:
        with running_postgres() as postgres:
            redis_server.start()
            env = clean_environment(
                DATABASE_URL=postgres.url,
                RATELIMIT_STORAGE_URI=redis_server.url,
                AUTH_FAILURE_LIMIT="20/minute",
                PROXY_FIX_X_FOR="1",
                DB_STATEMENT_TIMEOUT_MS=str(args.statement_timeout_ms),
                WEB_CONCURRENCY=str(args.workers),
                # The same workers all along, so that their memory can be compared (production replaces
                # a worker after ~100,000 requests, which this run does not reach anyway).
                GUNICORN_CMD_ARGS="--max-requests 0",
            )
            keys = _prepare(postgres.url, env)
            log = workdir / "gunicorn.log"
            with running_gunicorn(env, log) as (base, process):
                return _soak(args, base, process, log, postgres, redis_server, keys)
    finally:
        redis_server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def _soak(args, base, process, log, postgres, redis_server, keys) -> int:
    results = Results()
    stop = threading.Event()
    started = time.monotonic()
    threads = [
        threading.Thread(target=_load, args=(base, plan, args.rate, started, stop, results), daemon=True)
        for plan in _plans(args.threads, keys)
    ]
    for thread in threads:
        thread.start()
    workers = _workers(process.pid, args.workers)
    time.sleep(args.warmup)
    pss_start = {pid: _pss_kib(pid) for pid in workers}

    def restart_postgres() -> None:
        postgres.stop()
        time.sleep(args.down)
        postgres.start()

    def freeze_postgres() -> None:
        with frozen(postgres.pids()):
            time.sleep(args.freeze)

    def restart_redis() -> None:
        redis_server.stop()
        time.sleep(args.down)
        redis_server.start()

    def freeze_redis() -> None:
        with frozen([redis_server.process.pid]):
            time.sleep(args.freeze)

    schedule = [
        (0.15, Fault("PostgreSQL restart"), restart_postgres),
        (0.35, Fault("PostgreSQL frozen"), freeze_postgres),
        (0.55, Fault("Redis restart"), restart_redis),
        (0.75, Fault("Redis frozen"), freeze_redis),
    ]
    faults = []
    for share, fault, act in schedule:
        time.sleep(max(0.0, started + share * args.seconds - time.monotonic()))
        fault.start = time.monotonic() - started
        act()
        fault.end = time.monotonic() - started
        faults.append(fault)
    time.sleep(max(0.0, started + args.seconds - time.monotonic()))
    stop.set()
    for thread in threads:
        thread.join(timeout=30)
    elapsed = time.monotonic() - started
    final_workers = _workers(process.pid, args.workers)
    pss_end = {pid: _pss_kib(pid) for pid in final_workers if pid in pss_start}
    gunicorn_log = log.read_text(errors="replace")
    return _report(args, elapsed, results, faults, pss_start, pss_end, workers, final_workers, gunicorn_log)


def _report(args, elapsed, results, faults, pss_start, pss_end, workers, final_workers, gunicorn_log) -> int:
    statuses = collections.Counter(status for _at, status, *_ in results.requests)
    failures = []
    print(f"# Soak: {elapsed:.0f} s, {args.workers} workers, {args.threads} threads at most {args.rate:g}/s each\n")
    slowest = max(took for *_, took in results.requests)
    print(f"{len(results.requests)} requests ({len(results.requests) / elapsed:.0f}/s), the slowest {slowest:.2f} s\n")
    print("| status | requests |\n| --- | ---: |")
    for status, count in sorted(statuses.items(), key=lambda item: str(item[0])):
        print(f"| {status} | {count} |")
    for status, sample in results.samples.items():
        print(f"\nfirst {status}: {sample}")
    if statuses.get(500):
        failures.append(f"{statuses[500]} answers 500")
    if statuses.get("no answer"):
        failures.append(f"{statuses['no answer']} requests without an HTTP answer")

    print("\n| fault | from (s) | to (s) | database 503s during | after its end | last 503 after its end (s) |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for n, fault in enumerate(faults):
        until = faults[n + 1].start if n + 1 < len(faults) else elapsed
        during = [at for at, _s, db, _t in results.requests if db and fault.start <= at <= fault.end]
        after = [at for at, _s, db, _t in results.requests if db and fault.end < at <= until]
        last = f"{max(after) - fault.end:.2f}" if after else "-"
        print(f"| {fault.name} | {fault.start:.1f} | {fault.end:.1f} | {len(during)} | {len(after)} | {last} |")
    late = _late_503s(results, faults, args.late)
    if late:
        first_at, first_fault = late[0]
        after = (
            f"{first_at - first_fault.end:.2f} s after {first_fault.name} ended" if first_fault else "before any fault"
        )
        failures.append(f"{len(late)} database 503s later than {args.late:g} s after a fault (first: {after})")

    print("\n| worker | PSS after warm-up (KiB) | PSS at the end (KiB) | growth |\n| --- | ---: | ---: | ---: |")
    for pid in workers:
        if pid not in pss_end:
            print(f"| {pid} | {pss_start[pid]} | (replaced) | |")
            continue
        growth = pss_end[pid] / pss_start[pid] - 1
        print(f"| {pid} | {pss_start[pid]} | {pss_end[pid]} | {growth:+.1%} |")
        if growth > args.pss_growth:
            failures.append(f"worker {pid}: PSS grew {growth:.1%}")
    if sorted(final_workers) != sorted(workers):
        failures.append("a worker was replaced")
    if "WORKER TIMEOUT" in gunicorn_log:
        failures.append("gunicorn logged WORKER TIMEOUT")

    print("\nresult: " + ("FAILED: " + "; ".join(failures) if failures else "ok"))
    return 1 if failures else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=300, help="length of the run (at least 30)")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers")
    parser.add_argument("--threads", type=int, default=4, help="load threads (one of them sends the mix)")
    parser.add_argument("--rate", type=float, default=40, help="requests a second per thread, at most")
    parser.add_argument("--warmup", type=float, default=3, help="seconds of load before the first PSS reading")
    parser.add_argument("--down", type=float, default=2, help="seconds a restarted server stays down")
    parser.add_argument("--freeze", type=float, default=4, help="seconds a server stays frozen")
    parser.add_argument("--statement-timeout-ms", type=int, default=1000, help="the service's DB_STATEMENT_TIMEOUT_MS")
    parser.add_argument("--late", type=float, default=2, help="a database 503 later than this after a fault fails")
    parser.add_argument("--pss-growth", type=float, default=0.10, help="a worker's PSS growing more than this fails")
    args = parser.parse_args()
    if args.seconds < 30 or args.threads < 2:
        parser.error("--seconds must be at least 30 and --threads at least 2")
    sys.exit(run(args))


if __name__ == "__main__":
    main()
