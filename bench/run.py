"""Throughput, latency, CPU and memory of ``GET /v1/balance`` against two references, all under gunicorn.

What it does, in one run (see bench/README.md):

1. creates a throw-away PostgreSQL database (127.0.0.1:5432, user postgres),
   makes the tables with ``flask --app wsgi init-db`` and COPYs in 10,000
   users and 20,000 keys;
2. starts four servers under the project's ``gunicorn.conf.py``, each on a
   free loopback port:

   - ``bare``: reference (a), ``bench/bare_app.py``, Flask returning a constant;
   - ``raw``: reference (b), ``bench/raw_app.py``, the same lookup on one raw
     psycopg2 connection per worker;
   - ``raw-prepared``: reference (b) with the statement prepared per connection;
   - ``service``: ``wsgi:app`` as production runs it: default settings (so the
     JSON access log is on), ``PROMETHEUS_MULTIPROC_DIR`` and ``PROXY_FIX_X_FOR=1``
     set, the failed-auth counts in Redis (127.0.0.1:6379, database 15) when it
     answers, every feature on;

3. drives each with ``wrk`` (50 connections after a warm-up, then 1 connection;
   a Lua script rotates the Authorization header over all 20,000 keys), one
   server at a time, ``--rounds`` times in turn; figures are the median of the rounds;
4. reads CPU time from /proc (the workers, PostgreSQL's backends for the bench
   database, wrk, and the whole machine) and the database's transaction count,
   and, after the last round, each worker's PSS and USS;
5. prints a markdown report (also written to ``bench/results/``) with the
   service as a percentage of (a) and (b) and the targets of issue 11;
6. stops the servers and drops the database, also on Ctrl-C or an error.

Everything is on loopback. The cores are shared by wrk, the workers and
PostgreSQL, so figures are for the whole stack on this machine; the "other"
CPU column shows how much else ran at the same time (it should be near 0).

Usage: ``bench/run.sh [--duration 20] [--warmup 5] [--rounds 1] ...`` (``--help``).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import random
import resource
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

import psycopg2

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from balance_service.config import ENV_SETTINGS  # noqa: E402 - needs ROOT on sys.path

RESULTS = ROOT / "bench" / "results"
ADMIN_DSN = {"host": "127.0.0.1", "port": 5432, "user": "postgres", "dbname": "postgres", "connect_timeout": 3}
USERS, KEYS = 10_000, 20_000
PATH = "/v1/balance"
#: Production keeps the failed-auth counts in Redis (README, deployment); database 15, away from the tests' 0.
REDIS_URL = "redis://127.0.0.1:6379/15"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
#: Where the CPU time of a measured run went: gunicorn, PostgreSQL's backends, wrk, everything else.
CPU_PARTS = ("workers", "database", "wrk", "other")
#: Settings read by gunicorn.conf.py; like the service's own, they come from --env/--service-env only.
GUNICORN_ENV = (
    "BIND",
    "WEB_CONCURRENCY",
    "GUNICORN_TIMEOUT",
    "GUNICORN_ACCESS_LOG",
    "FORWARDED_ALLOW_IPS",
    "GUNICORN_CMD_ARGS",
    "GUNICORN_PRELOAD",
)
#: Servers in the order they are measured; the first three are the references.
LABELS = ("bare", "raw", "raw-prepared", "service")
DESCRIPTIONS = {
    "bare": "(a) bare Flask, constant body",
    "raw": "(b) Flask + raw psycopg2",
    "raw-prepared": "(b) + prepared statement",
    "service": "service, production settings",
}

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


def _listening(url: str) -> bool:
    """Whether something accepts connections at the URL's host and port (Redis here)."""
    parts = urllib.parse.urlsplit(url)
    try:
        with socket.create_connection((parts.hostname, parts.port), timeout=1):
            return True
    except OSError:
        return False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        print("wrk is missing: installing the Debian package with apt-get", file=sys.stderr)
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        install = ["apt-get", "install", "-y", "-q", "-o", "DPkg::Lock::Timeout=120", "wrk"]
        if subprocess.run(install, env=env).returncode != 0:
            subprocess.run(["apt-get", "update", "-q"], env=env, check=True)
            subprocess.run(install, env=env, check=True)
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
            cur.execute("VACUUM ANALYZE users")
            cur.execute("VACUUM ANALYZE tokens")
    return keys


# --- /proc readings ---------------------------------------------------------------------------------------


def _stat_fields(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name (field 3 onwards), or None if it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw[raw.rindex(")") + 2 :].split()


def process_cpu(pid: int, with_children: bool = False) -> float:
    """CPU seconds of a process (user + system); with its reaped children's if asked."""
    fields = _stat_fields(pid)
    if fields is None:
        return 0.0
    ticks = int(fields[11]) + int(fields[12])  # utime, stime
    if with_children:
        ticks += int(fields[13]) + int(fields[14])  # cutime, cstime: workers that exited and were reaped
    return ticks / CLOCK_TICKS


def children(pid: int) -> list[int]:
    """Direct children of a process (gunicorn's workers of a master)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat_fields(int(entry.name))
            if fields is not None and int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def server_cpu(master: int) -> float:
    """CPU seconds of a gunicorn server so far: master, live workers, and workers recycled since it started.

    A recycled worker's time moves into the master's cutime when it is reaped,
    so the difference of two readings counts every worker exactly once.
    """
    return process_cpu(master, with_children=True) + sum(process_cpu(pid) for pid in children(master))


def machine_cpu() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, all cores, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]  # idle, iowait
    total = sum(values[:8])  # guest time is already inside user time
    return (total - idle) / CLOCK_TICKS, total / CLOCK_TICKS


def memory_mb(pid: int) -> tuple[float, float] | None:
    """(PSS, USS) of a process in MB, from /proc/PID/smaps_rollup.

    PSS counts each page shared with the master and the other workers in part;
    USS (private clean + private dirty) is what the worker alone holds, what
    stopping it would give back. RSS counts every shared page in full, so it says
    little about a preloaded worker's cost.
    """
    try:
        rollup = Path(f"/proc/{pid}/smaps_rollup")
        pss = int(_field(rollup, "Pss:").split()[0])
        uss = sum(int(_field(rollup, name).split()[0]) for name in ("Private_Clean:", "Private_Dirty:"))
    except (OSError, StopIteration):
        return None
    return pss / 1024, uss / 1024


def _field(path: Path, prefix: str) -> str:
    """What follows ``prefix`` on the first line of a /proc file that starts with it."""
    return next(line[len(prefix) :].strip() for line in path.read_text().splitlines() if line.startswith(prefix))


class BackendCPU:
    """CPU seconds spent by PostgreSQL's backends for one database while a run lasts.

    Backends come and go (a recycled worker's connection ends with it), so
    their times are sampled every 0.2 s: a backend counts from its first sample
    (or from 0 if it was born during the run) to its last one.
    """

    def __init__(self, database: str) -> None:
        self.database = database
        self.first: dict[int, float] = {}
        self.last: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._conn = admin()

    def _pids(self) -> list[int]:
        with self._conn.cursor() as cur:
            cur.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = %s AND backend_type = 'client backend'",
                (self.database,),
            )
            return [row[0] for row in cur.fetchall()]

    def _sample(self, initial: bool = False) -> None:
        for pid in self._pids():
            fields = _stat_fields(pid)
            if fields is None:
                continue
            seconds = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
            self.first.setdefault(pid, seconds if initial else 0.0)
            self.last[pid] = seconds

    def _loop(self) -> None:
        while not self._stop.wait(0.2):
            self._sample()

    def __enter__(self) -> BackendCPU:
        self._sample(initial=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()
        self._conn.close()

    @property
    def seconds(self) -> float:
        return sum(self.last[pid] - self.first[pid] for pid in self.last)


def transactions(database: str) -> int:
    """Committed and rolled-back transactions in the bench database (each autocommit statement is one)."""
    with contextlib.closing(admin()) as conn, conn.cursor() as cur:
        cur.execute("SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = %s", (database,))
        return cur.fetchone()[0]


# --- servers and load -------------------------------------------------------------------------------------


class Servers:
    """gunicorn processes started by this run, stopped (process group) at the end."""

    def __init__(self) -> None:
        self.procs: dict[str, subprocess.Popen] = {}
        self.urls: dict[str, str] = {}

    def start(self, label: str, app: str, env: dict[str, str], extra: list[str]) -> str:
        RESULTS.mkdir(parents=True, exist_ok=True)
        log = open(RESULTS / f"{label}.log", "w")  # noqa: SIM115 - kept open for the server's lifetime
        cmd = [str(ROOT / ".venv" / "bin" / "gunicorn"), "-c", "gunicorn.conf.py", *extra, app]
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.procs[label] = proc
        url = f"http://{env['BIND']}"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise SystemExit(f"{label} exited at start; see {RESULTS / (label + '.log')}")
            with contextlib.suppress(OSError), urllib.request.urlopen(url + "/healthz", timeout=1) as r:
                if r.status == 200:
                    self.urls[label] = url
                    return url
            time.sleep(0.2)
        raise SystemExit(f"{label} did not answer /healthz within 30 s")

    def pid(self, label: str) -> int:
        return self.procs[label].pid

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        for label, proc in self.procs.items():
            try:
                proc.wait(timeout=40)
            except subprocess.TimeoutExpired:
                print(f"{label} did not stop on SIGTERM; killing it", file=sys.stderr)
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def profiler(master_pid: int, seconds: int) -> subprocess.Popen:
    """py-spy on gunicorn's workers, collapsed stacks (one line per stack, sample count last)."""
    spy = shutil.which("py-spy", path=f"{ROOT / '.venv' / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}")
    if spy is None:
        sys.exit("--profile needs py-spy: .venv/bin/pip install py-spy")
    out = RESULTS / "service-profile.txt"
    cmd = [spy, "record", "--subprocesses", "--format", "raw", "-o", str(out), "-d", str(seconds)]
    cmd += ["-p", str(master_pid)]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def wrk(binary: str, url: str, script: Path, seconds: int, connections: int, threads: int) -> dict:
    """One wrk run; its figures, plus the CPU seconds wrk itself used."""
    cmd = [binary, f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--timeout", "5s", "-s", str(script)]
    cmd.append(url + PATH)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=seconds + 60).stdout
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    line = next(x for x in out.splitlines() if x.startswith("BENCH "))
    result = json.loads(line[len("BENCH ") :])
    result["rps"] = result["requests"] / (result["duration_us"] / 1e6)
    result["wrk_cpu_s"] = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return result


def measure(binary: str, label: str, servers: Servers, database: str, script: Path, args: argparse.Namespace) -> dict:
    """Warm-up, then the measured run at ``--connections`` with CPU readings around it, then 1 connection."""
    url, master = servers.urls[label], servers.pid(label)
    wrk(binary, url, script, args.warmup, args.connections, args.threads)
    time.sleep(1.5)  # PostgreSQL publishes its counters with a short delay
    xacts = transactions(database)
    spy = profiler(master, args.duration) if args.profile and label == "service" else None
    with BackendCPU(database) as backends:
        busy0, total0 = machine_cpu()
        workers0 = server_cpu(master)
        result = wrk(binary, url, script, args.duration, args.connections, args.threads)
        workers1 = server_cpu(master)
        busy1, total1 = machine_cpu()
    if spy is not None:
        spy.wait()
        print(f"py-spy profile of the service: {RESULTS.relative_to(ROOT)}/service-profile.txt", file=sys.stderr)
    time.sleep(1.5)
    n = result["requests"] or 1
    cpu = {
        "workers": workers1 - workers0,
        "database": backends.seconds,
        "wrk": result["wrk_cpu_s"],
        "machine": busy1 - busy0,
    }
    cpu["other"] = max(0.0, cpu["machine"] - cpu["workers"] - cpu["database"] - cpu["wrk"])
    result["cpu_us_per_request"] = {k: v * 1e6 / n for k, v in cpu.items()}
    result["machine_busy"] = (busy1 - busy0) / (total1 - total0) if total1 > total0 else 0.0
    result["xacts_per_request"] = (transactions(database) - xacts) / n
    if args.light_duration:
        result["light"] = wrk(binary, url, script, args.light_duration, 1, 1)
    return result


def memory(servers: Servers, label: str) -> dict:
    """PSS and USS of each worker, in MB, now."""
    readings = [m for pid in children(servers.pid(label)) if (m := memory_mb(pid)) is not None]
    return {"workers": len(readings), "pss": [p for p, _ in readings], "uss": [u for _, u in readings]}


# --- report -----------------------------------------------------------------------------------------------


def median(runs: list[dict], *path: str) -> float:
    values = []
    for run in runs:
        value = run
        for part in path:
            value = value[part]
        values.append(value)
    return statistics.median(values)


def machine_state(binary: str) -> list[str]:
    try:
        cpu_model = _field(Path("/proc/cpuinfo"), "model name").lstrip(":\t ")
    except StopIteration:
        cpu_model = platform.machine()
    mem_total = int(_field(Path("/proc/meminfo"), "MemTotal:").split()[0]) // 1024
    with contextlib.closing(admin()) as conn, conn.cursor() as cur:
        cur.execute("SHOW server_version")
        pg_version = cur.fetchone()[0]
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout
    dirty = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True).stdout
    wrk_version = subprocess.run([binary, "-v"], capture_output=True, text=True)
    load = os.getloadavg()
    return [
        f"- date: {time.strftime('%Y-%m-%d %H:%M:%S %Z')}; commit {commit.strip() or '?'}"
        f"{' (with uncommitted changes)' if dirty.strip() else ''}",
        f"- machine: {os.cpu_count()} cores ({cpu_model}), {mem_total} MB RAM; "
        f"load average before the run {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f}",
        f"- Python {platform.python_version()}, PostgreSQL {pg_version}, "
        f"{(wrk_version.stdout or wrk_version.stderr).split(' [', 1)[0].strip()}; all on loopback",
    ]


def report(results: dict, mem: dict, args: argparse.Namespace, state: list[str]) -> str:
    """The run as markdown: settings, one table, ratios and the targets."""
    lines = ["# balance-service benchmark", "", *state]
    lines.append(
        f"- wrk -t{args.threads} -c{args.connections}, {args.duration} s measured after {args.warmup} s warm-up, "
        f"then -t1 -c1 for {args.light_duration} s; {args.rounds} round(s), median shown; "
        f"Authorization rotating over {KEYS:,} keys"
    )
    workers = {label: mem[label]["workers"] for label in mem}
    lines.append(
        "- every server under `gunicorn.conf.py`, workers per server: "
        + ", ".join(f"{label} {count}" for label, count in workers.items())
    )
    if args.env or args.service_env or args.gunicorn_arg:
        lines.append(
            f"- overrides: env {args.env or '-'}, service env {args.service_env or '-'}, "
            f"gunicorn args {args.gunicorn_arg or '-'}"
        )
    c = args.connections
    lines += [
        "",
        f"| server | req/s, {c} conn. | p50 / p99 ms, {c} conn. | p50 / p99 ms, 1 conn. | errors | "
        "CPU µs/req: workers / PostgreSQL / wrk / other | DB xacts/req | MB/worker: PSS / USS (mean) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for label in LABELS:
        runs = results[label]
        light = (
            f"{median(runs, 'light', 'p50_us') / 1000:.2f} / {median(runs, 'light', 'p99_us') / 1000:.2f}"
            if args.light_duration
            else "-"
        )
        errors = sum(r["socket_errors"] + r["bad_status"] for r in runs)
        cpu = " / ".join(f"{median(runs, 'cpu_us_per_request', k):.0f}" for k in CPU_PARTS)
        m = mem[label]
        memory_text = f"{statistics.mean(m['pss']):.1f} / {statistics.mean(m['uss']):.1f}" if m["pss"] else "-"
        lines.append(
            f"| {DESCRIPTIONS[label]} | {median(runs, 'rps'):.0f} | "
            f"{median(runs, 'p50_us') / 1000:.2f} / {median(runs, 'p99_us') / 1000:.2f} | {light} | {errors} | "
            f"{cpu} | {median(runs, 'xacts_per_request'):.2f} | {memory_text} |"
        )
    service = median(results["service"], "rps")
    busy = max(median(results[label], "machine_busy") for label in LABELS)
    lines += ["", f"Machine CPU busy during the measured runs: up to {busy:.0%} of {os.cpu_count()} cores.", ""]
    lines.append(
        "Service throughput: "
        + ", ".join(f"{service / median(results[ref], 'rps'):.0%} of {DESCRIPTIONS[ref]}" for ref in LABELS[:3])
        + "."
    )
    lines += ["", "Targets (issue 11):", ""]
    p99 = median(results["service"], "p99_us")
    for ref in ("raw", "raw-prepared"):
        ratio = service / median(results[ref], "rps")
        verdict = "met" if ratio >= 0.9 else "NOT met"
        lines.append(f"- throughput >= 90 % of {DESCRIPTIONS[ref]}: {ratio:.0%}, {verdict}")
    for ref in ("raw", "raw-prepared"):
        ratio = p99 / median(results[ref], "p99_us")
        lines.append(
            f"- p99 at {c} connections <= 1.3 x that of {DESCRIPTIONS[ref]}: {p99 / 1000:.2f} ms = {ratio:.2f} x, "
            f"{'met' if ratio <= 1.3 else 'NOT met'}"
        )
    if args.light_duration:
        light99 = median(results["service"], "light", "p99_us") / 1000
        lines.append(f"- p99 at 1 connection <= 5 ms: {light99:.2f} ms, {'met' if light99 <= 5 else 'NOT met'}")
    if mem["service"]["pss"]:
        pss, uss = max(mem["service"]["pss"]), max(mem["service"]["uss"])
        lines.append(f"- memory per worker (PSS and USS, not RSS): at most {pss:.1f} MB PSS, {uss:.1f} MB USS")
    return "\n".join(lines) + "\n"


# --- main -------------------------------------------------------------------------------------------------


def _assignments(values: list[str], option: str) -> dict[str, str]:
    pairs = {}
    for value in values:
        name, sep, setting = value.partition("=")
        if not sep or not name:
            sys.exit(f"{option} takes NAME=VALUE, got {value!r}")
        pairs[name] = setting
    return pairs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=20, help="measured seconds per server and round (50 conn.)")
    parser.add_argument("--warmup", type=int, default=5, help="unmeasured seconds per server first")
    parser.add_argument("--light-duration", type=int, default=10, help="seconds at 1 connection (0 skips it)")
    parser.add_argument("--rounds", type=int, default=1, help="measure every server this many times, in turn")
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--env", action="append", default=[], help="NAME=VALUE for every server (WEB_CONCURRENCY=3)")
    parser.add_argument("--service-env", action="append", default=[], help="NAME=VALUE for the service only")
    parser.add_argument("--gunicorn-arg", action="append", default=[], help="extra gunicorn argument (every server)")
    parser.add_argument(
        "--only", action="append", choices=LABELS, help="measure only these servers (repeatable; the report needs all)"
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="sample the service's workers with py-spy during its measured run (slows it; figures are not comparable)",
    )
    parser.add_argument("--output", type=Path, help="also write the markdown report here")
    args = parser.parse_args()
    if min(args.duration, args.warmup, args.rounds, args.connections, args.threads) < 1 or args.light_duration < 0:
        sys.exit("durations, rounds, connections and threads must be at least 1 (--light-duration 0 skips)")
    labels = args.only or list(LABELS)
    per_server = args.warmup + args.duration + args.light_duration + 4
    print(
        f"about {len(labels) * args.rounds * per_server + 30} s: {len(labels)} servers x {args.rounds} round(s) "
        f"x ({args.warmup} + {args.duration} + {args.light_duration} s)",
        file=sys.stderr,
    )

    binary = ensure_wrk()
    name = f"balance_bench_{secrets.token_hex(6)}"
    dsn = f"postgresql://postgres@127.0.0.1:5432/{name}"
    servers = Servers()
    workdir = Path(tempfile.mkdtemp(prefix="balance-bench-"))
    # SIGTERM/SIGHUP end the run through the same clean-up as Ctrl-C.
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.default_int_handler)
    # The run is defined by this script and its options, not by the caller's shell.
    base_env = {k: v for k, v in os.environ.items() if k not in ENV_SETTINGS and k not in GUNICORN_ENV}
    base_env.update(_assignments(args.env, "--env"))
    # As the README's deployment section runs it: behind nginx (PROXY_FIX_X_FOR=1; nginx itself is not part
    # of the bench, it is in front of any app alike), failed-auth counts in Redis when one answers on loopback
    # (a database of its own, so that no test's counts can block the bench's address).
    service_env = {
        **base_env,
        "DATABASE_URL": dsn,
        "PROMETHEUS_MULTIPROC_DIR": str(workdir / "prometheus"),
        "PROXY_FIX_X_FOR": "1",
        **({"RATELIMIT_STORAGE_URI": REDIS_URL} if _listening(REDIS_URL) else {}),
        **_assignments(args.service_env, "--service-env"),
    }
    limiter = service_env.get("RATELIMIT_STORAGE_URI", "memory://")
    print(f"service: failed-auth limiter on {limiter}", file=sys.stderr)
    state = machine_state(binary)
    with contextlib.closing(admin()) as conn, conn.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    try:
        subprocess.run(
            [str(ROOT / ".venv" / "bin" / "flask"), "--app", "wsgi", "init-db"],
            cwd=ROOT,
            env={**base_env, "DATABASE_URL": dsn, "LOG_LEVEL": "WARNING"},
            check=True,
            stdout=subprocess.DEVNULL,
        )
        started = time.perf_counter()
        keys = fill(dsn)
        print(f"database {name}: {USERS} users, {KEYS} keys in {time.perf_counter() - started:.1f} s", file=sys.stderr)
        (workdir / "keys.lua").write_text("return {\n" + "".join(f'"{k}",\n' for k in keys) + "}\n")
        script = workdir / "rotate.lua"
        script.write_text(LUA % {"keys": workdir / "keys.lua", "path": PATH})

        bench_dir = ["--pythonpath", "bench"]
        plans = {
            "bare": ("bare_app:app", base_env, bench_dir),
            "raw": ("raw_app:app", {**base_env, "DATABASE_URL": dsn, "RAW_PREPARED": "0"}, bench_dir),
            "raw-prepared": ("raw_app:app", {**base_env, "DATABASE_URL": dsn, "RAW_PREPARED": "1"}, bench_dir),
            "service": ("wsgi:app", service_env, []),
        }
        for label in labels:
            app, env, extra = plans[label]
            url = servers.start(label, app, {**env, "BIND": f"127.0.0.1:{free_port()}"}, [*extra, *args.gunicorn_arg])
            print(f"{label}: {app} on {url}", file=sys.stderr)

        results: dict[str, list[dict]] = {label: [] for label in labels}
        for round_number in range(1, args.rounds + 1):
            for label in labels:
                run = measure(binary, label, servers, name, script, args)
                results[label].append(run)
                print(
                    f"round {round_number} {label}: {run['rps']:.0f} req/s, p99 {run['p99_us'] / 1000:.1f} ms, "
                    f"{run['cpu_us_per_request']['workers']:.0f} µs worker CPU/req",
                    file=sys.stderr,
                )
        mem = {label: memory(servers, label) for label in labels}
    finally:
        servers.stop()
        with contextlib.closing(admin()) as conn, conn.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        shutil.rmtree(workdir, ignore_errors=True)
        print(f"servers stopped, database {name} dropped", file=sys.stderr)

    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    raw = {"args": {k: str(v) for k, v in vars(args).items()}, "state": state, "results": results, "memory": mem}
    (RESULTS / f"bench-{stamp}.json").write_text(json.dumps(raw, indent=2))
    if set(labels) != set(LABELS):
        print(json.dumps({"results": results, "memory": mem}, indent=2))
        return
    text = report(results, mem, args, state)
    (RESULTS / f"bench-{stamp}.md").write_text(text)
    if args.output:
        args.output.write_text(text)
    print(text)
    print(f"written to {RESULTS.relative_to(ROOT)}/bench-{stamp}.md (raw figures: bench-{stamp}.json)", file=sys.stderr)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit("interrupted")
