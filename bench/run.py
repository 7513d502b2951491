"""Throughput and latency of ``GET /v1/balance`` against a bare Flask app, both under gunicorn.

What it does, in one run:

1. creates a throw-away PostgreSQL database (127.0.0.1:5432, user postgres),
   makes the tables with ``flask --app wsgi init-db`` and COPYs in 10,000
   users and 20,000 keys;
2. starts the service with the project's ``gunicorn.conf.py`` on a free
   loopback port, and ``bench/bare_app.py`` (a constant JSON body) under the
   same config on another;
3. drives each with ``wrk`` (50 connections; a Lua script rotates the
   Authorization header over all 20,000 keys), after a warm-up;
4. prints requests/s, p50 and p99 latency of both and the ratio, the
   database's transactions per request, and the latency at 1 connection;
5. stops both servers and drops the database, also on Ctrl-C or an error.

The machine's cores are shared by wrk, gunicorn's workers and PostgreSQL, so
the figures are for the whole stack on this machine, not for the service alone.

Usage: ``bench/run.sh [--duration 20] [--warmup 5] [--connections 50]``
(or ``.venv/bin/python bench/run.py ...`` from the repository root).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import psycopg2

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
ADMIN_DSN = {"host": "127.0.0.1", "port": 5432, "user": "postgres", "dbname": "postgres", "connect_timeout": 3}
USERS, KEYS = 10_000, 20_000
PATH = "/v1/balance"

LUA = """
-- Rotate the Authorization header over every key; each thread starts elsewhere.
local keys = dofile("%(keys)s")
local n = #keys
local requests = {}
local i = 0

function setup(thread)
  thread:set("offset", math.random(1, n))
end

function init(args)
  for k = 1, n do
    requests[k] = wrk.format("GET", "%(path)s", {["Authorization"] = "Bearer sk-" .. keys[k]})
  end
  i = offset or 0
end

function request()
  i = i + 7919  -- a prime stride: successive requests hit keys far apart
  return requests[i %% n + 1]
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH {"requests": %%d, "duration_us": %%d, "p50_us": %%d, "p90_us": %%d, "p99_us": %%d, ' ..
    '"max_us": %%d, "socket_errors": %%d, "bad_status": %%d}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max, e.connect + e.read + e.write + e.timeout, e.status))
end
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        print("wrk is missing: installing the Debian package with apt-get")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        if subprocess.run(["apt-get", "install", "-y", "-q", "wrk"], env=env).returncode != 0:
            subprocess.run(["apt-get", "update", "-q"], env=env, check=True)
            subprocess.run(["apt-get", "install", "-y", "-q", "wrk"], env=env, check=True)
        return shutil.which("wrk") or sys.exit("wrk still not found after apt-get install")
    sys.exit("wrk is needed: install it with `sudo apt-get install wrk` (Debian/Ubuntu)")


def admin():
    conn = psycopg2.connect(**ADMIN_DSN)
    conn.autocommit = True
    return conn


def fill(dsn: str) -> list[str]:
    """COPY 10,000 users and 20,000 enabled keys (two per user) in; return the keys."""
    rng = random.Random(7)
    users = io.StringIO()
    for uid in range(1, USERS + 1):
        quota, used = rng.randrange(10**9), rng.randrange(10**8)
        users.write(f"{uid}\tbench{uid}\tBench {uid}\t1\t1\t{quota}\t{used}\t0\tdefault\n")
    keys = [secrets.token_hex(24) for _ in range(KEYS)]
    tokens = io.StringIO()
    now = int(time.time())
    for tid, key in enumerate(keys, start=1):
        uid = (tid - 1) % USERS + 1
        remain, used = rng.randrange(10**8), rng.randrange(10**7)
        tokens.write(f"{tid}\t{uid}\t{key}\t1\tkey{tid}\t{now}\t{now}\t-1\t{remain}\tf\t{used}\n")
    users.seek(0)
    tokens.seek(0)
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.copy_expert(
            'COPY users (id, username, display_name, role, status, quota, used_quota, request_count, "group") '
            "FROM STDIN",
            users,
        )
        cur.copy_expert(
            "COPY tokens (id, user_id, key, status, name, created_time, accessed_time, expired_time, "
            "remain_quota, unlimited_quota, used_quota) FROM STDIN",
            tokens,
        )
        for table in ("users", "tokens"):
            cur.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))")
    with contextlib.closing(psycopg2.connect(dsn)) as conn:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("ANALYZE users")
            cur.execute("ANALYZE tokens")
    return keys


def db_counters(name: str) -> dict[str, int]:
    """Transactions in the bench database and full scans of tokens, from PostgreSQL's statistics."""
    with contextlib.closing(admin()) as conn, conn.cursor() as cur:
        cur.execute("SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = %s", (name,))
        xacts = cur.fetchone()[0]
    with contextlib.closing(psycopg2.connect(**{**ADMIN_DSN, "dbname": name})) as conn, conn.cursor() as cur:
        cur.execute("SELECT coalesce(seq_scan, 0) FROM pg_stat_user_tables WHERE relname = 'tokens'")
        seq = cur.fetchone()[0]
    return {"xacts": xacts, "token_seq_scans": seq}


class Servers:
    """gunicorn processes started by this run, stopped (process group) at the end."""

    def __init__(self) -> None:
        self.procs: list[tuple[str, subprocess.Popen]] = []

    def start(self, label: str, app: str, env: dict[str, str], port: int, extra: list[str]) -> str:
        RESULTS.mkdir(parents=True, exist_ok=True)
        log = open(RESULTS / f"{label}.log", "w")  # noqa: SIM115 - kept open for the server's lifetime
        cmd = [str(ROOT / ".venv" / "bin" / "gunicorn"), "-c", "gunicorn.conf.py", *extra, app]
        env = {**os.environ, **env, "BIND": f"127.0.0.1:{port}"}
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.procs.append((label, proc))
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise SystemExit(f"{label} exited at start; see {RESULTS / (label + '.log')}")
            with contextlib.suppress(OSError), urllib.request.urlopen(url + "/healthz", timeout=1) as r:
                if r.status == 200:
                    return url
            time.sleep(0.2)
        raise SystemExit(f"{label} did not answer /healthz within 30 s")

    def pid(self, label: str) -> int:
        return next(proc.pid for name, proc in self.procs if name == label)

    def stop(self) -> None:
        for _, proc in self.procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        for label, proc in self.procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                print(f"{label} did not stop on SIGTERM; killing it")
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def profiler(master_pid: int, seconds: int) -> subprocess.Popen:
    """py-spy on gunicorn's workers, collapsed stacks (one line per stack, sample count last)."""
    spy = shutil.which("py-spy", path=f"{ROOT / '.venv' / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}")
    if spy is None:
        sys.exit("--profile needs py-spy: .venv/bin/pip install py-spy")
    out = RESULTS / "service-profile.txt"
    cmd = [
        spy,
        "record",
        "--subprocesses",
        "--format",
        "raw",
        "-o",
        str(out),
        "-d",
        str(seconds),
        "-p",
        str(master_pid),
    ]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def wrk(binary: str, url: str, script: Path, seconds: int, connections: int, threads: int) -> dict:
    cmd = [
        binary,
        f"-t{threads}",
        f"-c{connections}",
        f"-d{seconds}s",
        "--timeout",
        "5s",
        "-s",
        str(script),
        url + PATH,
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    line = next(x for x in out.splitlines() if x.startswith("BENCH "))
    result = json.loads(line[len("BENCH ") :])
    result["rps"] = result["requests"] / (result["duration_us"] / 1e6)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=20, help="measured seconds per server")
    parser.add_argument("--warmup", type=int, default=5, help="unmeasured seconds per server first")
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument(
        "--light-duration",
        type=int,
        default=10,
        help="seconds of a second, 1-connection run per server: latency without queueing (0 skips it)",
    )
    parser.add_argument("--gunicorn-arg", action="append", default=[], help="extra gunicorn argument (both servers)")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="sample the service's workers with py-spy during its measured run (slows it; figures are not comparable)",
    )
    args = parser.parse_args()

    binary = ensure_wrk()
    name = f"balance_bench_{secrets.token_hex(6)}"
    dsn = f"postgresql://postgres@127.0.0.1:5432/{name}"
    servers = Servers()
    workdir = Path(tempfile.mkdtemp(prefix="balance-bench-"))
    # SIGTERM/SIGHUP end the run through the same clean-up as Ctrl-C.
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.default_int_handler)
    with contextlib.closing(admin()) as conn, conn.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    try:
        env = {"DATABASE_URL": dsn, "LOG_LEVEL": "warning"}
        subprocess.run(
            [str(ROOT / ".venv" / "bin" / "flask"), "--app", "wsgi", "init-db"],
            cwd=ROOT,
            env={**os.environ, **env},
            check=True,
            stdout=subprocess.DEVNULL,
        )
        started = time.perf_counter()
        keys = fill(dsn)
        print(f"database {name}: {USERS} users, {KEYS} keys inserted in {time.perf_counter() - started:.1f} s")

        (workdir / "keys.lua").write_text("return {\n" + "".join(f'"{k}",\n' for k in keys) + "}\n")
        script = workdir / "rotate.lua"
        script.write_text(LUA % {"keys": workdir / "keys.lua", "path": PATH})

        extra = args.gunicorn_arg
        service = servers.start("service", "wsgi:app", env, free_port(), extra)
        bare_env = {"LOG_LEVEL": "warning"}
        bare = servers.start("bare", "bare_app:app", bare_env, free_port(), [*extra, "--pythonpath", "bench"])
        print(f"service on {service}, bare Flask on {bare}; {os.cpu_count()} cores shared with wrk and PostgreSQL")

        results = {}
        for label, url in (("bare", bare), ("service", service)):
            wrk(binary, url, script, args.warmup, args.connections, args.threads)
            time.sleep(1.5)  # PostgreSQL publishes its counters with a short delay
            before = db_counters(name)
            spy = profiler(servers.pid("service"), args.duration) if args.profile and label == "service" else None
            results[label] = wrk(binary, url, script, args.duration, args.connections, args.threads)
            if spy is not None:
                spy.wait()
                print(f"py-spy profile of the service workers: {RESULTS.relative_to(ROOT)}/service-profile.txt")
            time.sleep(1.5)  # PostgreSQL publishes its counters with a short delay
            after = db_counters(name)
            results[label]["db"] = {k: after[k] - before[k] for k in after}
            if args.light_duration:
                results[label]["light"] = wrk(binary, url, script, args.light_duration, 1, 1)
        report(results, args)
    finally:
        servers.stop()
        with contextlib.closing(admin()) as conn, conn.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        shutil.rmtree(workdir, ignore_errors=True)
        print(f"servers stopped, database {name} dropped")


def report(results: dict, args: argparse.Namespace) -> None:
    print(
        f"\nwrk: {args.connections} connections, {args.threads} threads, {args.duration} s measured "
        f"after {args.warmup} s warm-up; {os.cpu_count()} cores\n"
    )
    print(f"{'':10} {'req/s':>9} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'max ms':>8} {'errors':>7} {'non-2xx':>8}")
    for label in ("bare", "service"):
        r = results[label]
        print(
            f"{label:10} {r['rps']:9.0f} {r['p50_us'] / 1000:8.2f} {r['p90_us'] / 1000:8.2f} "
            f"{r['p99_us'] / 1000:8.2f} {r['max_us'] / 1000:8.1f} {r['socket_errors']:7d} {r['bad_status']:8d}"
        )
    if args.light_duration:
        print(f"\nthe same with 1 connection for {args.light_duration} s (no queueing in front of the workers):")
        for label in ("bare", "service"):
            r = results[label]["light"]
            print(
                f"{label:10} {r['rps']:9.0f} {r['p50_us'] / 1000:8.2f} {r['p90_us'] / 1000:8.2f} "
                f"{r['p99_us'] / 1000:8.2f} {r['max_us'] / 1000:8.1f} {r['socket_errors']:7d} {r['bad_status']:8d}"
            )
    ratio = results["service"]["rps"] / results["bare"]["rps"]
    db = results["service"]["db"]
    n = results["service"]["requests"]
    print(f"\nservice / bare throughput: {ratio:.0%}   (target >= 80%)")
    print(f"service p99: {results['service']['p99_us'] / 1000:.2f} ms   (target < 10 ms)")
    print(
        f"per service request: {db['xacts'] / n:.2f} database transactions (each autocommit statement is one); "
        f"{db['token_seq_scans']} sequential scans of tokens in all"
    )
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out = RESULTS / f"bench-{stamp}.json"
    out.write_text(json.dumps({"args": vars(args), "cores": os.cpu_count(), "results": results}, indent=2))
    print(f"raw figures: {out.relative_to(ROOT)}")


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit("interrupted")
