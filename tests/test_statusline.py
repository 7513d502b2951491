"""clients/statusline.py as a status bar runs it: a subprocess, against the real service and a stand-in relay.

The real service is gunicorn on a SQLite gateway database seeded by the operator CLI, with the gateway's
``logs`` table holding seven days of spend, so ``/v1/usage`` has a forecast. The stand-in relay is the
least a relay can be: it answers only the doc page's ``GET /v1/user/balance`` (404 elsewhere) with the
documented fields. Claude Code's status-line input is the session JSON its documentation describes.
Tests that need gunicorn are marked ``e2e`` (the fast lane leaves them out); the stand-in relay's are not.
"""

from __future__ import annotations

import ast
import json
import os
import pty
import re
import select
import shutil
import stat
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.gateway_logs import CONSUME, GatewayTables, Log
from tests.helpers import REPO, clean_environment, created_key, flask_cli, running_gunicorn

SCRIPT = REPO / "clients" / "statusline.py"
QUOTA_PER_USD = 500000

#: Claude Code's status-line input, with the fields its documentation lists (values made up).
CLAUDE_CODE_SESSION = {
    "hook_event_name": "Status",
    "session_id": "0d1e2f3a-4b5c-6d7e-8f90-a1b2c3d4e5f6",
    "transcript_path": "/home/dev/.claude/projects/shop/0d1e2f3a.jsonl",
    "cwd": "/home/dev/shop",
    "model": {"id": "claude-sonnet-4-5-20250929", "display_name": "Sonnet 4.5"},
    "workspace": {"current_dir": "/home/dev/shop", "project_dir": "/home/dev/shop"},
    "version": "2.0.14",
    "output_style": {"name": "default"},
    "cost": {
        "total_cost_usd": 0.4218,
        "total_duration_ms": 182000,
        "total_api_duration_ms": 41000,
        "total_lines_added": 156,
        "total_lines_removed": 23,
    },
    "context_window": {
        "total_input_tokens": 15234,
        "total_output_tokens": 4521,
        "context_window_size": 200000,
        "current_usage": {"input_tokens": 8500, "output_tokens": 1200},
    },
}


@dataclass
class Result:
    line: str
    status: int
    stderr: str


def child_environment(home: Path, **settings: str) -> dict[str, str]:
    """A bare environment (no relay, key or proxy variables of the developer's) with a home and cache of the test's."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), "LANG": "C.UTF-8"}
    env["XDG_CACHE_HOME"] = str(home / "cache")
    env.update(settings)
    return env


def secrets_of(env: dict[str, str], args: tuple[str, ...]) -> list[str]:
    """The keys a call was given (without their ``sk-`` too): none may show up in its output or in the cache."""
    given = [v for v in [*env.values(), *args] if v.startswith("sk-")]
    return given + [v[3:] for v in given]


def cache_file(home: Path) -> Path:
    return home / "cache" / "balance-statusline" / "cache.json"


def statusline(
    home: Path, *args: str, env: dict[str, str] | None = None, stdin: bytes | int = subprocess.DEVNULL
) -> Result:
    """Run the script as a status bar would; checks that no key given to it is printed or cached."""
    env = child_environment(home, **(env or {}))
    command = [sys.executable, str(SCRIPT), *args]
    if isinstance(stdin, bytes):
        done = subprocess.run(command, env=env, input=stdin, capture_output=True, timeout=30)
    else:
        done = subprocess.run(command, env=env, stdin=stdin, capture_output=True, timeout=30)
    stdout, stderr = done.stdout.decode("utf-8"), done.stderr.decode("utf-8")
    cached = cache_file(home).read_text() if cache_file(home).exists() else ""
    for secret in secrets_of(env, args):
        assert secret not in stdout + stderr + cached
    assert "Traceback" not in stderr
    assert stdout.endswith("\n") and stdout.count("\n") == 1, stdout
    return Result(stdout[:-1], done.returncode, stderr)


# --- the stand-in relay ---------------------------------------------------------------------------------------


class Relay:
    """Serves only ``GET /v1/user/balance`` as the doc page shows it; records each request's path and key.

    ``answers`` maps a key to (status, body); an unknown key gets the documented 401. The answer ``HANG``
    never comes (until the relay stops).
    """

    HANG = (0, b"")

    def __init__(self) -> None:
        self.answers: dict[str, tuple[int, bytes]] = {}
        self.requests: list[tuple[str, str]] = []
        #: Where a 3xx answer sends the client.
        self.location = ""
        self.released = threading.Event()
        relay = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                key = self.headers.get("Authorization", "").partition("Bearer ")[2]
                relay.requests.append((self.path, key))
                if self.path != "/v1/user/balance":
                    status, body = 404, b"404 page not found"
                else:
                    status, body = relay.answers.get(key, (401, b'{"success":false,"message":"Invalid token"}'))
                if (status, body) == Relay.HANG:
                    relay.released.wait(30)
                    return
                self.send_response(status)
                if 300 <= status < 400:
                    self.send_header("Location", relay.location)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def documented(self, key: str, remain: str, used: str = "0", unlimited: bool = False, **extra: object) -> None:
        """The doc page's success body for ``key`` (numbers written as given)."""
        fields = (
            f'"success":true,"remain_balance":{remain},"used_balance":{used},"unlimited_quota":{str(unlimited).lower()}'
        )
        for name, value in extra.items():
            fields += f",{json.dumps(name)}:{json.dumps(value)}"
        self.answers[key] = (200, ("{" + fields + "}").encode())

    def stop(self) -> None:
        if not self.released.is_set():
            self.released.set()
            self.server.shutdown()
            self.server.server_close()
            self.thread.join()


@pytest.fixture
def relay():
    server = Relay()
    yield server
    server.stop()


@pytest.fixture
def home(tmp_path):
    (tmp_path / "home").mkdir()
    return tmp_path / "home"


RELAY_KEY = "sk-relay0000000000000000000000000000000000000000001"


# --- the real service ----------------------------------------------------------------------------------------


@dataclass
class Service:
    url: str
    key: str
    unlimited_key: str


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    """gunicorn on a SQLite gateway: alice has $10.00 (used $1.26), her key $2.00; both spent $0.18 a day
    over the last 7 whole UTC days, so the account has ~55 days left and the key ~11. A second key is unlimited."""
    directory = tmp_path_factory.mktemp("statusline-service")
    database = f"sqlite:///{directory / 'gateway.sqlite3'}"
    env = clean_environment(DATABASE_URL=database, WEB_CONCURRENCY="1", BALANCE_UNIT="USD")
    flask_cli(env, "init-db")
    flask_cli(env, "create-user", "alice", "--quota", str(10 * QUOTA_PER_USD))
    key = created_key(flask_cli(env, "create-token", "alice", "--quota", str(2 * QUOTA_PER_USD), "--name", "cli"))
    unlimited = created_key(flask_cli(env, "create-token", "alice", "--unlimited", "--name", "ci"))
    tables = GatewayTables(database).create_logs("new-api")
    with tables.engine.connect() as conn:
        from sqlalchemy import text

        token_id = conn.execute(text('SELECT id FROM tokens WHERE "key" = :k'), {"k": key[3:]}).scalar_one()
        user_id = conn.execute(text("SELECT id FROM users WHERE username = 'alice'")).scalar_one()
    midnight = int(time.time()) // 86400 * 86400
    daily = QUOTA_PER_USD * 18 // 100  # $0.18
    tables.add(
        Log(user_id, midnight - day * 86400 + 43200, CONSUME, daily, "claude-sonnet-4-5", "cli", token_id)
        for day in range(1, 8)
    )
    tables.execute(f"UPDATE users SET used_quota = {7 * daily} WHERE id = {user_id}")
    tables.engine.dispose()
    with running_gunicorn(env, directory / "gunicorn.log") as (url, _):
        yield Service(url, key, unlimited)


def service_env(service: Service, **more: str) -> dict[str, str]:
    return {"BALANCE_BASE_URL": service.url, "BALANCE_KEY": service.key, **more}


ACCOUNT_LINE = "$10.00 left · $0.18/day · ~55 days"


# --- the real service: formats and scopes ---------------------------------------------------------------------


@pytest.mark.e2e
@pytest.mark.parametrize("suffix", ["", "/", "/v1", "/v1/"])
def test_the_line_shows_the_credit_left_the_daily_spend_and_the_days_left_whatever_the_base_url_ends_with(
    service, home, suffix
):
    result = statusline(home, env={"BALANCE_BASE_URL": service.url + suffix, "BALANCE_KEY": service.key})
    assert (result.line, result.status) == (ACCOUNT_LINE, 0)


@pytest.mark.e2e
def test_the_key_scope_shows_the_keys_own_credit_and_forecast(service, home):
    assert statusline(home, "--scope", "key", env=service_env(service)).line == "$2.00 left · $0.18/day · ~11 days"


@pytest.mark.e2e
def test_an_unlimited_key_shows_infinity_and_no_days(service, home):
    env = {"BALANCE_BASE_URL": service.url, "BALANCE_KEY": service.unlimited_key}
    assert statusline(home, "--scope", "key", env=env).line == "∞ left"


@pytest.mark.e2e
def test_chinese_words_with_lang_zh(service, home):
    assert statusline(home, "--lang", "zh", env=service_env(service)).line == "余额 $10.00 · $0.18/天 · 约 55 天"


@pytest.mark.e2e
def test_color_is_ansi_only_when_asked_and_follows_the_thresholds(service, home):
    env = service_env(service)
    assert statusline(home, env=env).line == ACCOUNT_LINE  # no escape codes unless asked
    assert statusline(home, "--color", env=env).line == f"\x1b[32m{ACCOUNT_LINE}\x1b[0m"
    assert statusline(home, "--color", "--warn", "60d", env=env).line == f"\x1b[33m{ACCOUNT_LINE}\x1b[0m"
    assert statusline(home, "--color", "--critical", "10", env=env).line == f"\x1b[1;31m{ACCOUNT_LINE}\x1b[0m"


@pytest.mark.e2e
@pytest.mark.parametrize(
    ("thresholds", "colour"),
    [
        ((), "green"),
        (("--warn", "56d"), "yellow"),
        (("--warn", "55.5d"), "yellow"),  # 55.5 days left, shown as ~55
        (("--warn", "55d"), "green"),
        (("--warn", "10.01"), "yellow"),
        (("--warn", "9.99"), "green"),
        (("--warn", "20", "--critical", "60d"), "red"),
        (("--critical", "10"), "red"),
    ],
)
def test_tmux_format_colours_the_line_by_amount_or_days_left(service, home, thresholds, colour):
    result = statusline(home, "--format", "tmux", *thresholds, env=service_env(service))
    assert result.line == f"#[fg={colour}]{ACCOUNT_LINE}#[default]"


@pytest.mark.e2e
def test_waybar_json_has_the_custom_module_fields_and_the_exact_numbers(service, home):
    result = statusline(home, "--format", "json", env=service_env(service))
    body = json.loads(result.line)
    assert body["text"] == ACCOUNT_LINE
    assert body["class"] == "ok"
    assert body["percentage"] == 89  # $10.00 of the $11.26 ever held
    assert "Remaining (account): $10.00" in body["tooltip"] and "Used: $1.26" in body["tooltip"]
    assert {k: body[k] for k in ("unit", "unlimited_quota", "days_left", "stale", "error", "scope")} == {
        "unit": "USD",
        "unlimited_quota": False,
        "days_left": 55.5,
        "stale": False,
        "error": None,
        "scope": "account",
    }
    # The amounts keep the service's exact digits (never through a float).
    assert '"remain_balance":10.000000' in result.line and '"used_balance":1.260000' in result.line
    assert '"daily_rate":0.180000' in result.line


@pytest.mark.e2e
def test_waybar_json_of_the_key_scope(service, home):
    body = json.loads(
        statusline(home, "--format", "json", "--scope", "key", "--warn", "20d", env=service_env(service)).line
    )
    assert (body["text"], body["class"], body["scope"]) == ("$2.00 left · $0.18/day · ~11 days", "warning", "key")
    assert body["remain_balance"] == 2 and body["runs_out_on"] is not None


@pytest.mark.e2e
def test_claude_codes_session_json_on_stdin_adds_the_sessions_cost(service, home):
    session = json.dumps(CLAUDE_CODE_SESSION).encode()
    result = statusline(home, "--color", env=service_env(service), stdin=session)
    assert result.line == f"\x1b[32m{ACCOUNT_LINE} · session $0.42\x1b[0m"


@pytest.mark.e2e
def test_an_invalid_key_on_the_real_service_says_why_and_exits_0_unless_strict(service, home):
    env = {"BALANCE_BASE_URL": service.url, "BALANCE_KEY": "sk-" + "x" * 48}
    result = statusline(home, env=env)
    assert (result.line, result.status) == ("balance: unavailable (401 Invalid token)", 0)
    assert statusline(home, "--strict", "--ttl", "0", env=env).status == 1


# --- where it reads: options, then each environment group in order -------------------------------------------

GROUPS = {
    "BALANCE": {"BALANCE_BASE_URL": "{url}", "BALANCE_KEY": "sk-balance0000000000000000000000000000000000000001"},
    "ANTHROPIC_AUTH_TOKEN": {
        "ANTHROPIC_BASE_URL": "{url}",
        "ANTHROPIC_AUTH_TOKEN": "sk-authtoken000000000000000000000000000000000000002",
    },
    "ANTHROPIC_API_KEY": {"ANTHROPIC_API_KEY": "sk-apikey00000000000000000000000000000000000000003"},
    "OPENAI": {"OPENAI_BASE_URL": "{url}/v1", "OPENAI_API_KEY": "sk-openai00000000000000000000000000000000000000004"},
}
AMOUNTS = {"BALANCE": "1.00", "ANTHROPIC_AUTH_TOKEN": "2.00", "ANTHROPIC_API_KEY": "3.00", "OPENAI": "4.00"}


@pytest.mark.parametrize(
    ("groups", "used"),
    [
        (["BALANCE", "ANTHROPIC_AUTH_TOKEN", "ANTHROPIC_API_KEY", "OPENAI"], "BALANCE"),
        (["ANTHROPIC_AUTH_TOKEN", "ANTHROPIC_API_KEY", "OPENAI"], "ANTHROPIC_AUTH_TOKEN"),
        (["ANTHROPIC_API_KEY", "OPENAI"], "OPENAI"),  # ANTHROPIC_API_KEY without ANTHROPIC_BASE_URL: not a relay
        (["OPENAI"], "OPENAI"),
    ],
)
def test_the_environment_groups_are_read_in_order(relay, home, groups, used):
    env = {}
    for group in groups:
        env.update({name: value.format(url=relay.url) for name, value in GROUPS[group].items()})
    for group, amount in AMOUNTS.items():
        relay.documented(next(v for k, v in GROUPS[group].items() if "URL" not in k), amount)
    assert statusline(home, env=env).line == f"${AMOUNTS[used]} left"


def test_anthropic_api_key_is_read_when_there_is_no_auth_token(relay, home):
    key = GROUPS["ANTHROPIC_API_KEY"]["ANTHROPIC_API_KEY"]
    relay.documented(key, "3.00")
    openai = {name: value.format(url=relay.url) for name, value in GROUPS["OPENAI"].items()}
    env = {"ANTHROPIC_BASE_URL": relay.url, "ANTHROPIC_API_KEY": key, **openai}
    assert statusline(home, env=env).line == "$3.00 left"
    assert ("/v1/user/balance", key) in relay.requests


def test_the_options_win_over_the_environment(relay, home):
    relay.documented(RELAY_KEY, "5.00")
    env = {name: value.format(url="http://127.0.0.1:9") for name, value in GROUPS["BALANCE"].items()}
    assert statusline(home, "--base-url", relay.url, "--key", RELAY_KEY, env=env).line == "$5.00 left"
    # --key alone keeps the environment's base URL.
    env["BALANCE_BASE_URL"] = relay.url
    assert statusline(home, "--key", RELAY_KEY, "--ttl", "0", env=env).line == "$5.00 left"


def test_a_key_never_goes_to_the_base_url_of_another_group(relay, home):
    env = {"BALANCE_BASE_URL": relay.url, **{k: v.format(url=relay.url) for k, v in GROUPS["OPENAI"].items()}}
    result = statusline(home, env=env)
    assert result.line == "balance: unavailable (no key: set BALANCE_KEY or --key)"
    assert relay.requests == []


def test_without_any_configuration_it_says_what_to_set(home):
    result = statusline(home, "--strict")
    assert (result.line, result.status) == ("balance: unavailable (no base URL: set BALANCE_BASE_URL or --base-url)", 1)


# --- the stand-in relay: units, scopes, failures -------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "line"),
    [
        ({"remain": "6.15"}, "$6.15 left"),  # no unit: USD
        ({"remain": "14.6", "unit": "CNY"}, "¥14.60 left"),
        ({"remain": "1234.5", "unit": "USD"}, "$1,234.50 left"),
        ({"remain": "12345678", "unit": "tokens"}, "12.3M tokens left"),
        ({"remain": "4321", "unit": "tokens"}, "4,321 tokens left"),
        ({"remain": "0.004"}, "$0.0040 left"),
        ({"remain": "-1", "unlimited": True}, "∞ left"),
    ],
)
def test_a_relay_with_only_the_documented_endpoint_shows_the_balance_without_forecast(relay, home, fields, line):
    relay.documented(
        RELAY_KEY,
        fields["remain"],
        unlimited=fields.get("unlimited", False),
        **({"unit": fields["unit"]} if "unit" in fields else {}),
    )
    result = statusline(home, env={"BALANCE_BASE_URL": relay.url, "BALANCE_KEY": RELAY_KEY})
    assert (result.line, result.status) == (line, 0)
    # It asked for the forecast too, and took the 404 as "no forecast".
    assert sorted(path.partition("?")[0] for path, _ in relay.requests) == ["/v1/usage", "/v1/user/balance"]


def test_exhausted_credit_is_critical_in_every_format(relay, home):
    relay.documented(RELAY_KEY, "0", used="2.5")
    env = {"BALANCE_BASE_URL": relay.url, "BALANCE_KEY": RELAY_KEY}
    assert statusline(home, "--format", "tmux", env=env).line == "#[fg=red]$0.00 left#[default]"
    body = json.loads(statusline(home, "--format", "json", env=env).line)
    assert (body["class"], body["percentage"], body["remain_balance"]) == ("critical", 0, 0)


def test_the_key_scope_on_a_relay_without_it_says_not_found(relay, home):
    relay.documented(RELAY_KEY, "6.15")
    result = statusline(home, "--scope", "key", env={"BALANCE_BASE_URL": relay.url, "BALANCE_KEY": RELAY_KEY})
    assert result.line == "balance: unavailable (404 Not Found)"
    assert relay.requests[0][0] != "/v1/user/balance"


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        ((500, b'{"success":false,"message":"Failed to get used quota"}'), "500 Failed to get used quota"),
        ((502, b"<html><body>Bad gateway</body></html>"), "502 Bad Gateway"),
        ((503, b""), "503 Service Unavailable"),
        ((200, b"<html>sign in</html>"), "bad JSON"),
        ((200, b'{"success":true}'), "bad JSON: no remain_balance"),
        ((200, b'{"success":false,"message":"Failed to get user quota"}'), "Failed to get user quota"),
        ((403, b'{"error":{"message":"quota exhausted","type":"new_api_error"}}'), "403 quota exhausted"),
    ],
)
def test_each_failure_prints_a_short_reason_and_exits_0_unless_strict(relay, home, answer, reason):
    relay.answers[RELAY_KEY] = answer
    env = {"BALANCE_BASE_URL": relay.url, "BALANCE_KEY": RELAY_KEY}
    result = statusline(home, env=env)
    assert (result.line, result.status, result.stderr) == (f"balance: unavailable ({reason})", 0, "")
    assert statusline(home, "--strict", "--ttl", "0", env=env).status == 1
    body = json.loads(statusline(home, "--format", "json", env=env).line)
    assert (body["class"], body["error"], body["stale"]) == ("unavailable", reason, False)
    assert "remain_balance" not in body and "percentage" not in body


def test_a_relay_that_does_not_answer_is_given_up_on_at_the_timeout(relay, home):
    relay.answers[RELAY_KEY] = Relay.HANG
    started = time.monotonic()
    result = statusline(home, "--timeout", "0.3", env={"BALANCE_BASE_URL": relay.url, "BALANCE_KEY": RELAY_KEY})
    assert result.line == "balance: unavailable (timed out)"
    assert time.monotonic() - started < 2  # the interpreter's start included


def test_a_closed_port_is_connection_refused(relay, home):
    relay.stop()
    result = statusline(home, env={"BALANCE_BASE_URL": relay.url, "BALANCE_KEY": RELAY_KEY})
    assert (result.line, result.status) == ("balance: unavailable (connection refused)", 0)


def test_a_relays_message_is_shown_without_the_key_or_terminal_escapes(relay, home):
    message = f"\x1b[2J\x1b]0;owned\x07Invalid token {RELAY_KEY} (key {RELAY_KEY[3:]})"
    relay.answers[RELAY_KEY] = (401, json.dumps({"success": False, "message": message}).encode())
    result = statusline(home, env={"BALANCE_BASE_URL": relay.url, "BALANCE_KEY": RELAY_KEY})
    assert "\x1b" not in result.line and "\x07" not in result.line
    assert result.line.startswith("balance: unavailable (401 ") and "Invalid token sk-… (key sk-…)" in result.line


def test_a_relays_message_quoting_the_key_without_its_channel_suffix_shows_no_key(relay, home):
    key = RELAY_KEY + "-claude"
    message = f"Invalid token {RELAY_KEY[3:]}"
    relay.answers[key] = (401, json.dumps({"success": False, "message": message}).encode())
    result = statusline(home, env={"BALANCE_BASE_URL": relay.url, "BALANCE_KEY": key})
    assert RELAY_KEY[3:] not in result.line and "Invalid token sk-…" in result.line


def test_a_redirect_to_another_port_is_not_followed_so_the_key_stays_with_the_relay(relay, home):
    """urllib would copy the Authorization header into the redirected request: another port, another server."""
    other = Relay()
    try:
        other.documented(RELAY_KEY, "1")
        relay.location = other.url + "/v1/user/balance"
        relay.answers[RELAY_KEY] = (302, b"")
        result = statusline(home, env={"BALANCE_BASE_URL": relay.url, "BALANCE_KEY": RELAY_KEY})
    finally:
        other.stop()
    assert other.requests == []
    assert result.line.startswith("balance: unavailable")


# --- the cache -----------------------------------------------------------------------------------------------


def test_a_second_call_within_the_ttl_is_served_from_the_cache(relay, home):
    relay.documented(RELAY_KEY, "6.15")
    env = {"BALANCE_BASE_URL": relay.url, "BALANCE_KEY": RELAY_KEY}
    assert statusline(home, env=env).line == "$6.15 left"
    asked = len(relay.requests)
    relay.documented(RELAY_KEY, "5.00")
    assert statusline(home, env=env).line == "$6.15 left"
    assert len(relay.requests) == asked
    assert statusline(home, "--ttl", "0", env=env).line == "$5.00 left"
    assert len(relay.requests) > asked


def test_the_cache_file_is_private_and_holds_a_hash_instead_of_the_key(relay, home):
    relay.documented(RELAY_KEY, "6.15")
    statusline(home, env={"BALANCE_BASE_URL": relay.url, "BALANCE_KEY": RELAY_KEY})
    path = cache_file(home)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    entries = json.loads(path.read_text())
    assert len(entries) == 1 and re.fullmatch(r"[0-9a-f]{64}", next(iter(entries)))
    assert RELAY_KEY[3:] not in path.read_text() and relay.url not in path.read_text()
    assert [p.name for p in path.parent.iterdir()] == ["cache.json"]  # no temporary file left behind


def test_each_base_url_key_and_scope_has_its_own_entry(relay, home):
    other = "sk-other000000000000000000000000000000000000000000009"
    relay.documented(RELAY_KEY, "6.15")
    relay.documented(other, "1.50")
    assert statusline(home, env={"BALANCE_BASE_URL": relay.url, "BALANCE_KEY": RELAY_KEY}).line == "$6.15 left"
    assert statusline(home, env={"BALANCE_BASE_URL": relay.url, "BALANCE_KEY": other}).line == "$1.50 left"
    assert statusline(home, env={"BALANCE_BASE_URL": relay.url, "BALANCE_KEY": RELAY_KEY}).line == "$6.15 left"
    assert len(json.loads(cache_file(home).read_text())) == 2


def test_with_the_server_stopped_the_last_value_is_shown_marked_stale(relay, home):
    relay.documented(RELAY_KEY, "6.15")
    env = {"BALANCE_BASE_URL": relay.url, "BALANCE_KEY": RELAY_KEY}
    assert statusline(home, env=env).line == "$6.15 left"
    relay.stop()
    result = statusline(home, "--ttl", "0", env=env)
    assert re.fullmatch(r"\$6\.15 left \(stale, \d+s ago\)", result.line), result.line
    assert result.status == 0
    assert statusline(home, "--ttl", "0", "--strict", env=env).status == 1
    body = json.loads(statusline(home, "--format", "json", "--ttl", "0", env=env).line)
    assert (body["class"], body["stale"], body["error"]) == (["ok", "stale"], True, "connection refused")
    assert body["remain_balance"] == 6.15 and "Last refresh failed: connection refused" in body["tooltip"]
    # The failed attempt is remembered for the TTL too: no waiting on a dead relay at every refresh.
    assert re.fullmatch(
        r"#\[fg=green\]\$6\.15 left \(stale, \d+s ago\)#\[default\]", statusline(home, "--format", "tmux", env=env).line
    )


@pytest.mark.e2e
def test_the_real_service_stopped_leaves_the_last_value_marked_stale(home, tmp_path):
    database = f"sqlite:///{tmp_path / 'gateway.sqlite3'}"
    env = clean_environment(DATABASE_URL=database, WEB_CONCURRENCY="1")
    flask_cli(env, "init-db")
    flask_cli(env, "create-user", "bob", "--quota", "3075000")
    key = created_key(flask_cli(env, "create-token", "bob", "--quota", "100"))
    with running_gunicorn(env, tmp_path / "gunicorn.log") as (url, _):
        assert statusline(home, env={"BALANCE_BASE_URL": url, "BALANCE_KEY": key}).line == "$6.15 left"
    result = statusline(home, "--ttl", "0", "--lang", "zh", env={"BALANCE_BASE_URL": url, "BALANCE_KEY": key})
    assert re.fullmatch(r"余额 \$6\.15 （\d+秒前的数据）", result.line), result.line


def test_a_damaged_cache_file_is_replaced(relay, home):
    relay.documented(RELAY_KEY, "6.15")
    cache_file(home).parent.mkdir(parents=True)
    cache_file(home).write_text('{"x": {"checked_at": 1e300, "value": {"remain": "NaN"}}, "y": [')
    assert statusline(home, env={"BALANCE_BASE_URL": relay.url, "BALANCE_KEY": RELAY_KEY}).line == "$6.15 left"
    assert len(json.loads(cache_file(home).read_text())) == 1


# --- stdin -----------------------------------------------------------------------------------------------------


def test_a_stdin_pipe_left_open_without_data_is_not_waited_on(relay, home):
    relay.documented(RELAY_KEY, "6.15")
    env = child_environment(home, BALANCE_BASE_URL=relay.url, BALANCE_KEY=RELAY_KEY)
    started = time.monotonic()
    process = subprocess.Popen([sys.executable, str(SCRIPT)], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        printed = select.select([process.stdout], [], [], 10)[0]  # a script blocked on stdin prints nothing
        elapsed = time.monotonic() - started
        line = process.stdout.readline() if printed else b""
    finally:
        process.stdin.close()
        process.kill()
        process.wait(10)
        process.stdout.close()
    assert line.decode() == "$6.15 left\n"
    assert elapsed < 5  # the wait for stdin is 0.15 s; the rest is the interpreter and the relay on a busy machine


def test_a_terminal_on_stdin_is_not_read(relay, home):
    relay.documented(RELAY_KEY, "6.15")
    env = child_environment(home, BALANCE_BASE_URL=relay.url, BALANCE_KEY=RELAY_KEY)
    controller, terminal = pty.openpty()
    try:
        os.write(controller, json.dumps(CLAUDE_CODE_SESSION).encode() + b"\n")  # typed, never read
        done = subprocess.run([sys.executable, str(SCRIPT)], env=env, stdin=terminal, capture_output=True, timeout=30)
    finally:
        os.close(terminal)
        os.close(controller)
    assert done.stdout.decode() == "$6.15 left\n"


@pytest.mark.parametrize("stdin", [b"", b"not json", b"[1, 2]", b'{"cost": {"total_cost_usd": "a lot"}}'])
def test_stdin_that_is_not_a_session_is_ignored(relay, home, stdin):
    relay.documented(RELAY_KEY, "6.15")
    result = statusline(home, env={"BALANCE_BASE_URL": relay.url, "BALANCE_KEY": RELAY_KEY}, stdin=stdin)
    assert result.line == "$6.15 left"


# --- the file itself -------------------------------------------------------------------------------------------


def test_the_script_is_python_3_8_syntax():
    ast.parse(SCRIPT.read_text(), feature_version=(3, 8))


def test_the_script_imports_only_the_standard_library():
    imported = set()
    for node in ast.walk(ast.parse(SCRIPT.read_text())):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            imported.add(node.module.split(".")[0])
    assert imported <= set(sys.stdlib_module_names), imported - set(sys.stdlib_module_names)
    assert "json" in imported  # the walk saw the imports


# --- the README's set-ups, run as written ----------------------------------------------------------------------


def readme_section() -> str:
    text = (REPO / "README.md").read_text()
    return text.split("\n## In the terminal\n", 1)[1].split("\n## ", 1)[0]


def fenced(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", readme_section(), re.S)


@contextmanager
def installed(home: Path):
    """The file where the README puts it: ``~/.claude/balance-statusline.py``."""
    (home / ".claude").mkdir()
    shutil.copy(SCRIPT, home / ".claude" / "balance-statusline.py")
    yield


def shell(command: str, env: dict[str, str], stdin: bytes = b"") -> str:
    """``sh -c command``, as Claude Code, tmux and Waybar run their commands."""
    done = subprocess.run(["sh", "-c", command], env=env, input=stdin, capture_output=True, timeout=30)
    assert done.returncode == 0, done.stderr
    return done.stdout.decode()


@pytest.mark.e2e
def test_the_readme_claude_code_settings_run_as_written(service, home):
    settings = json.loads(fenced("json")[0])["statusLine"]
    assert settings["type"] == "command"
    env = child_environment(home, ANTHROPIC_BASE_URL=service.url, ANTHROPIC_AUTH_TOKEN=service.key)
    with installed(home):
        out = shell(settings["command"], env, json.dumps(CLAUDE_CODE_SESSION).encode())
    assert out == f"\x1b[32m{ACCOUNT_LINE} · session $0.42\x1b[0m\n"


@pytest.mark.e2e
def test_the_readme_tmux_line_runs_as_written(service, home):
    lines = fenced("tmux")[0].splitlines()
    status_right = next(line for line in lines if line.startswith("set -g status-right"))
    command = re.search(r"#\((.*?)\)", status_right).group(1)
    with installed(home):
        out = shell(command, child_environment(home, **service_env(service)))
    assert out == f"#[fg=green]{ACCOUNT_LINE}#[default]\n"


@pytest.mark.e2e
def test_the_readme_waybar_module_prints_what_waybar_reads(service, home):
    module = json.loads(fenced("json")[1])["custom/balance"]
    assert module["return-type"] == "json"
    with installed(home):
        out = shell(module["exec"], child_environment(home, **service_env(service)))
    assert out.count("\n") == 1  # Waybar reads one JSON object per line
    body = json.loads(out)
    assert isinstance(body["text"], str) and isinstance(body["tooltip"], str)
    assert body["class"] in ("ok", "warning", "critical", "unavailable")
    assert isinstance(body["percentage"], int) and 0 <= body["percentage"] <= 100
