"""Latency of ``GET /v1/usage`` on a big gateway ``logs`` table: raw, with doctor's recommendations, rolled up.

What it does, in one run:

1. creates a throw-away PostgreSQL database (127.0.0.1:5432, user postgres), makes
   ``users``/``tokens`` and the service's tables with ``flask --app wsgi init-db`` and the
   ``logs`` table as new-api's GORM creates it (its own indexes, among them ``user_id``,
   ``token_id``, ``idx_created_at_type`` and ``idx_user_id_id``);
2. COPYs in ``--rows`` log rows (2,000,000) in time order over the last 365 days: one
   heavy account with ``--heavy-rows`` (100,000) rows in each of its last ``--heavy-months``
   (6) 30-day months, half of them through one key, the rest from 10,000 other accounts;
   about 1 % of all rows are refunds, 2 % errors, the others consume rows;
3. starts the service with the project's ``gunicorn.conf.py`` on a free loopback port;
4. phase "gateway indexes": sends ``--requests`` (300) sequential requests for the heavy
   account's last 30 days (``/v1/usage``, the default range), as many for the key
   (``?scope=key``), and ``--year-requests`` (50) of each for the last 365 days, after
   ``--warmup`` (20) of each; prints p50/p99 and the plan PostgreSQL chose for the 30 days
   (``EXPLAIN (ANALYZE, BUFFERS)``);
5. phase "doctor's recommendations": runs the statements ``flask doctor`` recommends (the
   covering indexes and the day/model statistics), then ``ANALYZE``, and measures again;
6. phase "roll-up": runs ``flask --app wsgi rollup-usage --settle 0`` (the first run sums the
   whole table; its time and the roll-up's size are printed), then adds ``--late-rows``
   (100) rows of the heavy account after it, so that each request also reads raw rows, and
   measures again;
7. stops the server and drops the database, also on Ctrl-C or an error.

Usage: ``bench/usage.sh [--rows 2000000] [--heavy-rows 100000] [--requests 300]``; a quick
check of the script itself: ``bench/usage.sh --rows 50000 --heavy-rows 5000 --heavy-months 3``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import random
import secrets
import signal
import statistics
import subprocess
import sys
import time
import urllib.request
from datetime import UTC, datetime, timedelta

import psycopg2
from run import ADMIN_DSN, RESULTS, ROOT, Servers, admin, free_port

sys.path.insert(0, str(ROOT))

from balance_service.gateway.doctor import STATISTICS, UsageIndex  # noqa: E402
from tests.gateway_logs import logs_ddl  # noqa: E402

OTHER_USERS = 10_000
MODELS = ["gpt-4o", "gpt-4o-mini", "claude-3-5-sonnet", "deepseek-chat", "gemini-1.5-pro", "o1-mini"]
DAY = 86400


def fill(dsn: str, rows: int, heavy_rows: int, heavy_months: int) -> tuple[str, str]:
    """Users, keys and log rows; returns the heavy account's two keys (the measured one first)."""
    rng = random.Random(11)
    now = int(time.time())
    heavy_user, heavy_keys = 1, (1, 2)
    users = io.StringIO()
    for uid in range(1, OTHER_USERS + 2):
        users.write(
            f"{uid}\tbench{uid}\tBench {uid}\t1\t1\t{rng.randrange(10**9)}\t{rng.randrange(10**8)}\t0\tdefault\n"
        )
    keys = [secrets.token_hex(24) for _ in range(2)]
    tokens = io.StringIO()
    for tid, key in zip(heavy_keys, keys, strict=True):
        tokens.write(f"{tid}\t{heavy_user}\t{key}\t1\tkey{tid}\t{now}\t{now}\t-1\t{10**9}\tf\t0\n")

    logs = io.StringIO()
    n = 0

    def row(uid: int, tid: int, created: int) -> None:
        nonlocal n
        n += 1
        kind = rng.random()
        log_type, quota = (6, rng.randrange(1, 5000)) if kind < 0.01 else (5, 0) if kind < 0.03 else (2, 0)
        if log_type == 2:
            quota = rng.randrange(1, 20000)
        model = MODELS[rng.randrange(len(MODELS))]
        logs.write(f"{n}\t{uid}\t{created}\t{log_type}\t\tbench{uid}\tkey{tid}\t{model}\t{quota}\t{tid}\n")

    heavy_total = heavy_rows * heavy_months
    if heavy_total > rows:
        sys.exit(f"--heavy-rows × --heavy-months ({heavy_total}) is more than --rows ({rows})")
    # Day by day, oldest first and in time order within a day: the rows interleave on disk as the
    # gateway appends them, so the heavy account's rows are spread over the table's pages.
    days, heavy_days, others = 365, heavy_months * 30, rows - heavy_total
    for d in range(days):
        first = now - (days - d) * DAY
        count = others * (d + 1) // days - others * d // days
        day_rows = [(first + rng.randrange(DAY), rng.randrange(2, OTHER_USERS + 2)) for _ in range(count)]
        h = d - (days - heavy_days)
        if h >= 0:
            count = heavy_total * (h + 1) // heavy_days - heavy_total * h // heavy_days
            day_rows += [(first + rng.randrange(DAY), heavy_user) for _ in range(count)]
        for created, uid in sorted(day_rows):
            row(uid, heavy_keys[rng.randrange(2)] if uid == heavy_user else 100 + uid, created)
    for buffer in (users, tokens, logs):
        buffer.seek(0)
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        for statement in logs_ddl("new-api", "postgresql"):
            cur.execute(statement)
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
        cur.copy_expert(
            "COPY logs (id, user_id, created_at, type, content, username, token_name, model_name, quota, token_id) "
            "FROM STDIN",
            logs,
        )
        # COPY wrote the ids itself: move the sequence past them, as the gateway's own inserts would have.
        cur.execute("SELECT setval(pg_get_serial_sequence('logs', 'id'), max(id)) FROM logs")
    analyze(dsn)
    return keys[0], keys[1]


def analyze(dsn: str) -> None:
    with contextlib.closing(psycopg2.connect(dsn)) as conn:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("VACUUM ANALYZE logs")
            cur.execute("ANALYZE users")
            cur.execute("ANALYZE tokens")


def explain(dsn: str, where: str) -> str:
    """The plan of the usage query of the last 30 days (what /v1/usage runs), with timings."""
    today = datetime.now(UTC).date()
    start = int(datetime(today.year, today.month, today.day, tzinfo=UTC).timestamp()) - 29 * DAY
    sql = (
        "EXPLAIN (ANALYZE, BUFFERS) SELECT created_at / 86400, model_name, "
        "sum(CASE WHEN type = 2 THEN quota ELSE -quota END), sum(CASE WHEN type = 2 THEN 1 ELSE 0 END) "
        f"FROM logs WHERE {where} AND created_at >= {start} AND created_at < {start + 30 * DAY} "
        "AND type IN (2, 6) GROUP BY created_at / 86400, model_name"
    )
    with contextlib.closing(psycopg2.connect(dsn)) as conn, conn.cursor() as cur:
        cur.execute(sql)
        return "\n".join(line for (line,) in cur.fetchall())


def roll_up(dsn: str, env: dict[str, str]) -> dict:
    """The first ``rollup-usage`` run over the whole table: its time, output and the roll-up's size."""
    started = time.perf_counter()
    done = subprocess.run(
        [
            str(ROOT / ".venv" / "bin" / "flask"),
            "--app",
            "wsgi",
            "rollup-usage",
            "--settle",
            "0",
            "--max-batches",
            "100000",
        ],
        cwd=ROOT,
        env={**os.environ, **env},
        check=True,
        capture_output=True,
        text=True,
    )
    seconds = time.perf_counter() - started
    with contextlib.closing(psycopg2.connect(dsn)) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*), pg_total_relation_size('usage_rollup') FROM usage_rollup")
        buckets, size = cur.fetchone()
    print(f"rollup-usage: {done.stdout.strip()} in {seconds:.1f} s; {buckets:,} buckets, {size / 2**20:.1f} MiB")
    analyze(dsn)
    return {"seconds": seconds, "output": done.stdout.strip(), "buckets": buckets, "bytes": size}


def late_rows(dsn: str, count: int) -> None:
    """Rows of the heavy account written after the roll-up, over its last 30 days (a request reads them raw)."""
    rng = random.Random(12)
    now = int(time.time())
    with contextlib.closing(psycopg2.connect(dsn)) as conn, conn.cursor() as cur:
        for _ in range(count):
            cur.execute(
                "INSERT INTO logs (user_id, created_at, type, token_name, model_name, quota, token_id) "
                "VALUES (1, %s, 2, 'key1', %s, %s, 1)",
                (now - rng.randrange(30 * DAY), MODELS[rng.randrange(len(MODELS))], rng.randrange(1, 20000)),
            )
        conn.commit()


def measure(url: str, key: str, query: str, warmup: int, count: int) -> dict:
    """Sequential requests from one client: p50/p99 in ms of the whole HTTP exchange."""
    request = urllib.request.Request(url + "/v1/usage" + query, headers={"Authorization": f"Bearer sk-{key}"})
    samples = []
    for i in range(warmup + count):
        started = time.perf_counter()
        with urllib.request.urlopen(request, timeout=30) as response:
            body = json.loads(response.read())
        elapsed = (time.perf_counter() - started) * 1000
        if not body.get("success"):
            raise SystemExit(f"/v1/usage{query} failed: {body}")
        if i >= warmup:
            samples.append(elapsed)
    samples.sort()
    return {
        "requests": count,
        "p50_ms": statistics.median(samples),
        "p99_ms": samples[min(len(samples) - 1, int(len(samples) * 0.99))],
        "max_ms": samples[-1],
        "total_used": body["total_used"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=2_000_000, help="log rows in all")
    parser.add_argument("--heavy-rows", type=int, default=100_000, help="rows of the heavy account per month")
    parser.add_argument("--heavy-months", type=int, default=6, help="months of history of the heavy account")
    parser.add_argument("--requests", type=int, default=300, help="measured requests per scope and phase")
    parser.add_argument("--year-requests", type=int, default=50, help="measured requests of the 365-day lines")
    parser.add_argument("--warmup", type=int, default=20, help="unmeasured requests first")
    parser.add_argument("--late-rows", type=int, default=100, help="rows added after the roll-up, read raw")
    args = parser.parse_args()

    name = f"balance_bench_usage_{secrets.token_hex(6)}"
    dsn = f"postgresql://postgres@{ADMIN_DSN['host']}:{ADMIN_DSN['port']}/{name}"
    servers = Servers()
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
        account_key, _ = fill(dsn, args.rows, args.heavy_rows, args.heavy_months)
        print(f"database {name}: {args.rows:,} log rows in {time.perf_counter() - started:.1f} s")
        url = servers.start("usage-service", "wsgi:app", {**os.environ, **env, "BIND": f"127.0.0.1:{free_port()}"}, [])

        today = datetime.now(UTC).date()
        year = f"?start_date={today - timedelta(days=364)}&end_date={today + timedelta(days=1)}"
        lines = {  # name: (query, requests)
            "account": ("", args.requests),
            "key": ("?scope=key", args.requests),
            "account 365 d": (year, args.year_requests),
            "key 365 d": (year + "&scope=key", args.year_requests),
        }
        results: dict[str, dict] = {}
        for phase in ("gateway indexes", "doctor's recommendations", "roll-up"):
            if phase == "doctor's recommendations":
                with contextlib.closing(psycopg2.connect(dsn)) as conn:
                    conn.autocommit = True  # CREATE INDEX CONCURRENTLY cannot run in a transaction
                    with conn.cursor() as cur:
                        statements = [
                            UsageIndex("account", "user_id").statement("postgresql"),
                            UsageIndex("key", "token_id").statement("postgresql"),
                            *STATISTICS,
                        ]
                        for statement in statements:
                            print(f"running: {statement}")
                            cur.execute(statement)
                analyze(dsn)
            if phase == "roll-up":
                results["roll-up run"] = run = roll_up(dsn, env)
                before = {name: r["total_used"] for name, r in results["doctor's recommendations"].items()}
                run["same figures"] = same = {
                    name: measure(url, account_key, query, 0, 1)["total_used"] == before[name]
                    for name, (query, _) in lines.items()
                }
                print(f"rolled-up figures equal the raw ones: {same}")
                late_rows(dsn, args.late_rows)
            results[phase] = {
                name: measure(url, account_key, query, args.warmup, count) for name, (query, count) in lines.items()
            }
            newer = ""
            if phase == "roll-up":  # the raw part of a request: the rows after the watermark
                with contextlib.closing(psycopg2.connect(dsn)) as conn, conn.cursor() as cur:
                    cur.execute("SELECT watermark FROM usage_rollup_state")
                    newer = f" AND id > {cur.fetchone()[0]}"
            for scope, where in (("account", "user_id = 1" + newer), ("key", "token_id = 1" + newer)):
                plan = explain(dsn, where)
                results[phase][scope]["plan"] = plan
                print(f"\n{phase}, {scope}: EXPLAIN ANALYZE of the 30-day query\n{plan}")
        report(results, args)
    finally:
        servers.stop()
        with contextlib.closing(admin()) as conn, conn.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        print(f"server stopped, database {name} dropped")


def report(results: dict, args: argparse.Namespace) -> None:
    print(
        f"\n/v1/usage, {args.rows:,} log rows, heavy account {args.heavy_rows:,} rows a month "
        f"for {args.heavy_months} months; sequential requests; {os.cpu_count()} cores\n"
    )
    print(f"{'':26} {'line':14} {'requests':>8} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    for phase, lines in results.items():
        if phase == "roll-up run":
            continue
        for name, r in lines.items():
            print(f"{phase:26} {name:14} {r['requests']:8} {r['p50_ms']:8.1f} {r['p99_ms']:8.1f} {r['max_ms']:8.1f}")
    run = results["roll-up run"]
    print(f"\nfirst roll-up: {run['seconds']:.1f} s, {run['buckets']:,} buckets ({run['bytes'] / 2**20:.1f} MiB)")
    print(f"rolled-up figures equal the raw ones (before the late rows): {run['same figures']}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    out = RESULTS / f"usage-{stamp}.json"
    out.write_text(json.dumps({"args": vars(args), "cores": os.cpu_count(), "results": results}, indent=2))
    print(f"raw figures: {out.relative_to(ROOT)}")


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit("interrupted")
