"""CPU instructions per ``GET /v1/balance`` inside one process, counted by valgrind: repeatable on a busy machine.

Wall-clock benchmarks need a quiet machine; instruction counts do not. This
script builds an app (the service as deployed, or one of the bench's reference
apps) on a throw-away PostgreSQL database, warms it up, then calls it as
gunicorn's sync worker would (the WSGI callable with a fresh environ per
request) ``--requests`` times. Under callgrind only those calls are counted:
they run inside ``itertools.starmap`` and callgrind collects only while that C
function is on the stack (``--toggle-collect``). The database server's own
work is not counted (another process); ``--server-cpu`` reports the CPU time
of the PostgreSQL backend per request from /proc instead.

    .venv/bin/python bench/instructions.py                    # service: instructions per request
    .venv/bin/python bench/instructions.py --app raw-prepared # reference (b) with PREPARE
    .venv/bin/python bench/instructions.py --profile out.cg   # keep callgrind's file (callgrind_annotate out.cg)
    .venv/bin/python bench/instructions.py --server-cpu       # no valgrind: PostgreSQL backend CPU µs/request
    .venv/bin/python bench/instructions.py --cprofile out.prof --requests 3000   # no valgrind: where the time goes
    .venv/bin/python bench/instructions.py --env LOG_LEVEL=WARNING  # what a feature costs: the service without it

Needs valgrind (Debian package ``valgrind``) and PostgreSQL on 127.0.0.1:5432.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import itertools
import os
import re
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg2

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from balance_service.config import ENV_SETTINGS  # noqa: E402 - needs ROOT on sys.path

ADMIN_DSN = {"host": "127.0.0.1", "port": 5432, "user": "postgres", "dbname": "postgres", "connect_timeout": 3}
APPS = ("service", "bare", "raw", "raw-prepared")
KEYS = 200


def _admin():
    conn = psycopg2.connect(**ADMIN_DSN)
    conn.autocommit = True
    return conn


def _environ(key: str) -> dict:
    """What gunicorn's sync worker hands the app for ``GET /v1/balance`` from a client on loopback."""
    return {
        "REQUEST_METHOD": "GET",
        "SCRIPT_NAME": "",
        "PATH_INFO": "/v1/balance",
        "RAW_URI": "/v1/balance",
        "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "REMOTE_PORT": "50000",
        "HTTP_HOST": "127.0.0.1:8000",
        "HTTP_USER_AGENT": "wrk",
        "HTTP_AUTHORIZATION": f"Bearer sk-{key}",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(b""),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": False,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
    }


def _build(app_name: str, dsn: str, workdir: Path):
    """The WSGI app to measure, configured as the bench runs it (service: default settings, metrics dir set)."""
    os.environ["DATABASE_URL"] = dsn
    if app_name == "service":
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(workdir)
        from wsgi import app

        return app
    sys.path.insert(0, str(ROOT / "bench"))
    os.environ["RAW_PREPARED"] = "1" if app_name == "raw-prepared" else "0"
    module = __import__("bare_app" if app_name == "bare" else "raw_app")
    return module.app


def _fill(dsn: str) -> list[str]:
    """Tables as the service makes them, one user and KEYS keys."""
    subprocess.run(
        [str(ROOT / ".venv" / "bin" / "flask"), "--app", "wsgi", "init-db"],
        cwd=ROOT,
        env={**os.environ, "DATABASE_URL": dsn, "LOG_LEVEL": "WARNING"},
        check=True,
        stdout=subprocess.DEVNULL,
    )
    keys = [secrets.token_hex(24) for _ in range(KEYS)]
    with contextlib.closing(psycopg2.connect(dsn)) as conn, conn, conn.cursor() as cur:
        cur.execute(
            'INSERT INTO users (id, username, display_name, role, status, quota, used_quota, request_count, "group") '
            "VALUES (1, 'bench', 'Bench', 1, 1, 123456789, 1234567, 0, 'default')"
        )
        for n, key in enumerate(keys, start=1):
            cur.execute(
                "INSERT INTO tokens (id, user_id, key, status, name, created_time, accessed_time, expired_time, "
                "remain_quota, unlimited_quota, used_quota) VALUES (%s, 1, %s, 1, 'k', 0, 0, -1, 7654321, false, 4321)",
                (n, key),
            )
    return keys


def _backend_cpu(conn_pids: list[int]) -> float:
    total = 0
    for pid in conn_pids:
        raw = Path(f"/proc/{pid}/stat").read_text()
        fields = raw[raw.rindex(")") + 2 :].split()
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def child(args: argparse.Namespace) -> None:
    """Inside valgrind (or not): build, warm up, then the counted requests."""
    workdir = Path(tempfile.mkdtemp(prefix="balance-instr-"))
    app = _build(args.app, args.dsn, workdir)
    keys = Path(args.keys).read_text().split()
    cycle = itertools.cycle(keys)
    statuses = []

    def one(key: str) -> None:
        body = app(_environ(key), lambda status, headers, exc_info=None: statuses.append(status))
        try:
            for _ in body:
                pass
        finally:
            if hasattr(body, "close"):
                body.close()

    for _ in range(args.warmup):
        one(next(cycle))
    if not all(s.startswith("200") for s in statuses):
        sys.exit(f"warm-up requests failed: {sorted(set(statuses))}")
    batch = [(next(cycle),) for _ in range(args.requests)]
    pids = []
    if args.server_cpu:
        with contextlib.closing(_admin()) as conn, conn.cursor() as cur:
            cur.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = %s AND backend_type = 'client backend'",
                (args.dsn.rsplit("/", 1)[1],),
            )
            pids = [row[0] for row in cur.fetchall()]
    profile = cProfile.Profile(time.process_time) if args.cprofile else None  # CPU, not waiting
    before, started = _backend_cpu(pids), time.process_time()
    if profile is not None:
        profile.enable()
    for _ in itertools.starmap(one, batch):  # counted by callgrind: see the module docstring
        pass
    if profile is not None:
        profile.disable()
        profile.dump_stats(args.cprofile)
    client = time.process_time() - started
    if args.server_cpu:
        server = _backend_cpu(pids) - before
        print(
            f"{args.app}: PostgreSQL backend {server * 1e6 / args.requests:.0f} µs/request, "
            f"this process {client * 1e6 / args.requests:.0f} µs/request ({len(pids)} backend(s))"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--app", choices=APPS, default="service")
    parser.add_argument("--requests", type=int, default=300, help="counted requests")
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--profile", type=Path, help="keep callgrind's output file here")
    parser.add_argument("--server-cpu", action="store_true", help="no valgrind; PostgreSQL backend CPU per request")
    parser.add_argument("--cprofile", help="no valgrind; write cProfile stats of the counted requests to this file")
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a setting of the measured app (repeatable; e.g. LOG_LEVEL=WARNING); by default none: the defaults",
    )
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--dsn", help=argparse.SUPPRESS)
    parser.add_argument("--keys", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    if args.server_cpu:
        args.requests = max(args.requests, 5000)
    name = f"balance_instr_{secrets.token_hex(6)}"
    dsn = f"postgresql://postgres@127.0.0.1:5432/{name}"
    with contextlib.closing(_admin()) as conn, conn.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    workdir = Path(tempfile.mkdtemp(prefix="balance-instr-"))
    try:
        keyfile = workdir / "keys"
        keyfile.write_text("\n".join(_fill(dsn)))
        cmd = [sys.executable, __file__, "--child", "--app", args.app, "--dsn", dsn, "--keys", str(keyfile)]
        cmd += ["--requests", str(args.requests), "--warmup", str(args.warmup)]
        env = {k: v for k, v in os.environ.items() if k not in ENV_SETTINGS}
        env.update(setting.split("=", 1) for setting in args.env)
        if args.server_cpu or args.cprofile:
            extra = ["--server-cpu"] if args.server_cpu else ["--cprofile", str(Path(args.cprofile).resolve())]
            subprocess.run([*cmd, *extra], check=True, env=env, stderr=subprocess.DEVNULL)
            return
        out = args.profile or workdir / "callgrind.out"
        valgrind = ["valgrind", "--tool=callgrind", "--collect-atstart=no", "--toggle-collect=starmap_next"]
        valgrind += [f"--callgrind-out-file={out}"]
        # The access log goes to stderr; it is part of the work, but not worth reading here.
        subprocess.run([*valgrind, *cmd], check=True, env=env, stderr=subprocess.DEVNULL)
        total = int(re.search(r"^(?:summary|totals): (\d+)", out.read_text(), re.M).group(1))
        print(f"{args.app}: {total / args.requests:,.0f} instructions per request ({args.requests} requests)")
    finally:
        with contextlib.closing(_admin()) as conn, conn.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
