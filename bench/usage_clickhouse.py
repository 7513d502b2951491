"""Latency of ``GET /v1/usage`` with the gateway's logs in ClickHouse (``LOG_DATABASE_URL=clickhouse://…``).

What it does, in one run:

1. starts a private ClickHouse server (Debian's ``clickhouse-server``, unprivileged, on a free
   loopback port, data in a temporary directory: tests/clickhouse.py) and makes new-api's
   ``logs`` table there (MergeTree by month, ordered by ``(created_at, request_id)``);
2. generates ``--rows`` (20,000,000) log rows **inside ClickHouse** (``INSERT … SELECT … FROM
   numbers(N)``), spread evenly in time over the last 365 days: ``--heavy-percent`` (10 %) of
   them belong to one heavy account, half of those through one key; the rest to 10,000 other
   accounts; about 1 % refunds, 2 % errors, the others consume rows, over 6 models;
3. makes ``users``/``tokens`` in a SQLite file (``init-db`` plus the heavy account and its two
   keys; the balance lookup is not what is measured here) and starts the service with the
   project's ``gunicorn.conf.py`` on a free loopback port;
4. sends ``--requests`` (300) sequential requests for the heavy account's last 30 days
   (``/v1/usage``, the default range, which also holds the forecast window: one ClickHouse query
   per request) and as many for one key (``?scope=key``), after ``--warmup`` (20) of each;
   prints p50/p99 and, for each scope, the rows ClickHouse read and its own time for the query;
   then ``--year-requests`` (50) of each for the last 365 days (p50/p99 only);
5. stops the service and the ClickHouse server and removes the temporary directory, also on
   Ctrl-C or an error.

Usage: ``bench/usage_clickhouse.sh [--rows 20000000] [--heavy-percent 10] [--requests 300]``; a quick check
of the script itself: ``bench/usage_clickhouse.sh --rows 200000 --requests 50``.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from run import RESULTS, ROOT, Servers, free_port
from usage import measure

sys.path.insert(0, str(ROOT))

from clickhouse_driver import Client  # noqa: E402

from balance_service import create_app  # noqa: E402
from balance_service.extensions import db  # noqa: E402
from balance_service.gateway.tables import Token, User  # noqa: E402
from balance_service.usage.clickhouse import ClickHouseLogSource, ClickHousePool, client_options  # noqa: E402
from balance_service.usage.source import Scope  # noqa: E402
from tests.clickhouse import clickhouse_logs_ddl, reader_url, running_clickhouse  # noqa: E402

OTHER_USERS = 10_000
DAY = 86400
HEAVY_USER, HEAVY_KEYS = 1, (1, 2)

# One statement, run by the server: number → a log row. cityHash64 of the row number with a salt gives
# each row its type, model and quota deterministically (the same rows on every run). `%%` is ClickHouse's
# modulo, doubled because the driver substitutes the %(name)s parameters.
GENERATE = """
INSERT INTO logs (id, user_id, created_at, type, username, token_name, model_name, quota, token_id, request_id)
SELECT 0, uid, created, kind, concat('bench', toString(uid)), concat('key', toString(tid)), model,
       multiIf(kind = 2, toInt32(cityHash64(number, 1) %% 20000 + 1),
               kind = 6, toInt32(cityHash64(number, 1) %% 5000 + 1), toInt32(0)),
       tid, hex(cityHash64(number, 3))
FROM (
    SELECT number,
           toInt64(%(first)s + intDiv(number * %(span)s, %(rows)s)) AS created,
           toInt32(if(number %% 100 < %(heavy_percent)s, 1, 2 + cityHash64(number, 4) %% %(others)s)) AS uid,
           toInt32(if(uid = 1, 1 + intDiv(number, 100) %% 2, 100 + uid)) AS tid,
           toInt32(multiIf(cityHash64(number, 5) %% 100 < 1, 6, cityHash64(number, 5) %% 100 < 3, 5, 2)) AS kind,
           arrayElement(['gpt-4o', 'gpt-4o-mini', 'claude-3-5-sonnet', 'deepseek-chat', 'gemini-1.5-pro', 'o1-mini'],
                        cityHash64(number, 2) %% 6 + 1) AS model
    FROM numbers(%(rows)s)
)
"""


def fill_logs(url: str, rows: int, heavy_percent: int) -> None:
    client = Client.from_url(url + "?send_receive_timeout=3600")
    try:
        client.execute(clickhouse_logs_ddl("new-api"))
        now = int(time.time())
        params = {
            "first": now - 365 * DAY,
            "span": 365 * DAY,
            "rows": rows,
            "heavy_percent": heavy_percent,
            "others": OTHER_USERS,
        }
        client.execute(GENERATE, params)
    finally:
        client.disconnect()


def fill_main(database_url: str) -> str:
    """The heavy account and its two keys in a SQLite main database; returns the first key (sk- less)."""
    app = create_app({"DATABASE_URL": database_url, "LOG_LEVEL": "WARNING"})
    keys = [secrets.token_hex(24) for _ in HEAVY_KEYS]
    with app.app_context():
        db.create_all()
        db.session.add(User(id=HEAVY_USER, username="bench1", quota=10**12, used_quota=10**9))
        for tid, key in zip(HEAVY_KEYS, keys, strict=True):
            db.session.add(
                Token(id=tid, user_id=HEAVY_USER, key=key, name=f"key{tid}", remain_quota=10**11, created_time=1)
            )
        db.session.commit()
        db.engine.dispose()
    return keys[0]


def server_side(url: str, scope: Scope) -> dict:
    """The 30-day daily query run once directly: result rows, rows ClickHouse read, and its own time."""
    today = datetime.now(UTC).date()
    start, end = today - timedelta(days=29), today + timedelta(days=1)
    pool = ClickHousePool(*client_options(url, 3, 30000))
    source = ClickHouseLogSource(pool, 60000)
    statement, params = source.daily_statement(scope, start, end)
    with pool.client() as client:
        result = client.execute(statement, params)
        info = {
            "result_rows": len(result),
            "rows_read": client.last_query.progress.rows,
            "elapsed_ms": client.last_query.elapsed * 1000,
        }
    pool.close()
    return info


def count_rows(url: str, where: str) -> int:
    client = Client.from_url(url)
    try:
        return client.execute(f"SELECT count() FROM logs WHERE {where}")[0][0]
    finally:
        client.disconnect()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=20_000_000, help="log rows in all")
    parser.add_argument("--heavy-percent", type=int, default=10, help="share of the rows of the heavy account")
    parser.add_argument("--requests", type=int, default=300, help="measured requests per scope")
    parser.add_argument("--year-requests", type=int, default=50, help="measured requests of the 365-day lines")
    parser.add_argument("--warmup", type=int, default=20, help="unmeasured requests first")
    args = parser.parse_args()
    if not 0 < args.heavy_percent < 100:
        sys.exit("--heavy-percent must be between 1 and 99")

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.default_int_handler)
    servers = Servers()
    with tempfile.TemporaryDirectory(prefix="balance-bench-clickhouse-") as tmp:
        try:
            with running_clickhouse(Path(tmp) / "clickhouse") as url:
                started = time.perf_counter()
                fill_logs(url, args.rows, args.heavy_percent)
                print(f"ClickHouse {url}: {args.rows:,} log rows generated in {time.perf_counter() - started:.1f} s")
                database_url = f"sqlite:///{tmp}/main.sqlite3"
                key = fill_main(database_url)
                env = {"DATABASE_URL": database_url, "LOG_DATABASE_URL": reader_url(url), "LOG_LEVEL": "warning"}
                service = servers.start(
                    "usage-clickhouse-service",
                    "wsgi:app",
                    {**os.environ, **env, "BIND": f"127.0.0.1:{free_port()}"},
                    [],
                )
                today = datetime.now(UTC).date()
                month_start = int(datetime(today.year, today.month, today.day, tzinfo=UTC).timestamp()) - 29 * DAY
                results = {}
                for scope, query, where, sc in (
                    ("account", "", f"user_id = {HEAVY_USER}", Scope(user_id=HEAVY_USER)),
                    ("key", "?scope=key", f"token_id = {HEAVY_KEYS[0]}", Scope(user_id=HEAVY_USER, token_id=1)),
                ):
                    results[scope] = measure(service, key, query, args.warmup, args.requests)
                    results[scope]["rows_in_30_days"] = count_rows(url, f"{where} AND created_at >= {month_start}")
                    results[scope]["server_side"] = server_side(url, sc)
                year = f"?start_date={today - timedelta(days=364)}&end_date={today + timedelta(days=1)}"
                for scope, query in (("account 365 d", year), ("key 365 d", year + "&scope=key")):
                    results[scope] = measure(service, key, query, min(args.warmup, 5), args.year_requests)
                servers.stop()
            report(results, args)
        finally:
            servers.stop()
    print("service and ClickHouse stopped, temporary directory removed")


def report(results: dict, args: argparse.Namespace) -> None:
    print(
        f"\n/v1/usage (last 30 days) from ClickHouse, {args.rows:,} log rows over 365 days, heavy account "
        f"{args.heavy_percent} % of them; {args.requests} sequential requests per line; {os.cpu_count()} cores\n"
    )
    print(f"{'scope':8} {'rows/30d':>10} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'CH read':>10} {'CH ms':>7}")
    for scope, r in results.items():
        s = r.get("server_side")
        if s is None:  # the 365-day lines: latency only
            print(f"{scope:14} {r['p50_ms']:8.1f} {r['p99_ms']:8.1f} {r['max_ms']:8.1f}")
            continue
        print(
            f"{scope:8} {r['rows_in_30_days']:10,} {r['p50_ms']:8.1f} {r['p99_ms']:8.1f} {r['max_ms']:8.1f} "
            f"{s['rows_read']:10,} {s['elapsed_ms']:7.1f}"
        )
    p99 = max(r["p99_ms"] for scope, r in results.items() if "server_side" in r)
    print(f"\np99 (worse scope): {p99:.1f} ms   (target < 200 ms)")
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    out = RESULTS / f"usage-clickhouse-{stamp}.json"
    out.write_text(json.dumps({"args": vars(args), "cores": os.cpu_count(), "results": results}, indent=2))
    print(f"raw figures: {out.relative_to(ROOT)}")


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit("interrupted")
