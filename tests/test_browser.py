"""The browser page in ``web/``, driven in real headless Chromium against a real gunicorn.

The page is served by a static HTTP server on one loopback port and the
service by gunicorn on another, so every call the page makes is cross-origin
and must pass a real CORS preflight, exactly as when a dashboard on another
host embeds it. Without ``/usr/bin/chromium`` these tests skip, except under
``CI=true`` where a missing browser is a failure. The accessibility checks load
axe-core (installed from npm by ``scripts/setup-venv`` into ``.venv/node``) into
the page in the test only; the same rule applies to it.
"""

from __future__ import annotations

import functools
import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import quote

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright
from sqlalchemy import create_engine, update

from balance_service import create_app
from balance_service.config import ENV_SETTINGS
from balance_service.extensions import db
from balance_service.gateway import operations
from balance_service.gateway.tables import Token, User
from balance_service.migrations import init_database
from tests.gateway_logs import CONSUME, REFUND, GatewayTables, Log
from tests.helpers import clean_environment, recording_receiver, running_gunicorn, serving

pytestmark = [pytest.mark.browser, pytest.mark.e2e]

REPO = Path(__file__).resolve().parent.parent
WEB = REPO / "web"
CHROMIUM = "/usr/bin/chromium"
AXE = REPO / ".venv" / "node" / "node_modules" / "axe-core" / "axe.min.js"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
INVALID_KEY = "sk-" + "Z" * 48


@dataclass
class Service:
    url: str
    log: Path
    keys: dict[str, str] = field(default_factory=dict)
    database_url: str = ""

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


class _QuietStaticHandler(SimpleHTTPRequestHandler):
    def log_message(self, format, *args):
        pass


def days_ago(n: int, hour: int = 12) -> int:
    """Unix seconds at ``hour`` o'clock UTC, ``n`` days before today."""
    today = datetime.now(UTC).replace(hour=hour, minute=0, second=0, microsecond=0)
    return int((today - timedelta(days=n)).timestamp())


def _seed_logs(database_url: str, alice: int, limited: int) -> None:
    """A month of Alice's requests in the gateway's ``logs`` (new-api's layout), in quota units (500000 = 1 USD).

    The 7 whole days before today: 300000 a day net (0.6 USD; 2100000 in all), so the account's 3000000
    left last 10.0 days. Earlier: 1000000 twelve days ago, 250000 less a 50000 refund twenty days ago,
    and 999999 forty days ago (outside the 30 days shown). Today: 100000.
    """
    rows = [Log(alice, days_ago(n), CONSUME, 200_000, "gpt-4o", "limited", limited) for n in range(1, 8)]
    rows += [Log(alice, days_ago(n, 13), CONSUME, 100_000, "claude-3", "limited", limited) for n in range(1, 8)]
    rows += [
        Log(alice, days_ago(12), CONSUME, 1_000_000, "gpt-4o-mini", "limited", limited),
        Log(alice, days_ago(20), CONSUME, 250_000, "gpt-4o", "limited", limited),
        Log(alice, days_ago(20, 14), REFUND, 50_000, "gpt-4o", "limited", limited),
        Log(alice, days_ago(40), CONSUME, 999_999, "gpt-4o", "limited", limited),
        Log(alice, days_ago(0, 0), CONSUME, 100_000, "gpt-4o", "limited", limited),
    ]
    tables = GatewayTables(database_url).create_logs("new-api")
    tables.add(rows)
    tables.set_options({"LogConsumeEnabled": "true", "USDExchangeRate": "7.1"})  # the gateway's CNY rate
    tables.engine.dispose()


def _seed(database_url: str) -> dict[str, str]:
    """Create the tables as init-db does, three accounts and their keys through the operator code path, Alice's logs."""
    app = create_app({"DATABASE_URL": database_url})
    with app.app_context():
        init_database(db.engine)
        alice = operations.create_user("alice", quota=3_000_000)
        db.session.execute(update(User).where(User.id == alice.id).values(used_quota=1_000_000))
        limited, limited_key = operations.create_token(alice, name="limited", quota=1_234_567)
        db.session.execute(update(Token).where(Token.id == limited.id).values(used_quota=250_000))
        db.session.commit()
        _, unlimited_key = operations.create_token(alice, name="unlimited", unlimited=True)
        bob = operations.create_user("bob", quota=5_000_000)  # 10 USD, ¥71 at 7.1
        _, bob_key = operations.create_token(bob, name="bob", quota=1_250_000)
        carol = operations.create_user("carol", quota=1_000_000)  # the refresh tests change her balance
        _, carol_key = operations.create_token(carol, name="carol", unlimited=True)
        ids = (alice.id, limited.id)
        db.session.remove()
        db.engine.dispose()
    _seed_logs(database_url, *ids)
    return {"limited": limited_key, "unlimited": unlimited_key, "bob": bob_key, "carol": carol_key}


def _wait_until_healthy(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            if time.monotonic() > deadline:
                raise
        time.sleep(0.05)


@pytest.fixture(scope="module")
def service(tmp_path_factory) -> Iterator[Service]:
    """gunicorn (one worker, the project's gunicorn.conf.py) on a free loopback port and a SQLite file."""
    tmp = tmp_path_factory.mktemp("browser-service")
    database_url = f"sqlite:///{tmp / 'balance.sqlite3'}"
    # Module-scoped, so it runs before conftest's per-test clean-up of the environment.
    with pytest.MonkeyPatch.context() as monkeypatch:
        for name in ENV_SETTINGS:
            monkeypatch.delenv(name, raising=False)
        keys = _seed(database_url)
    env = clean_environment(
        DATABASE_URL=database_url,
        BALANCE_UNIT="USD",
        CORS_ORIGINS="*",
        GUNICORN_CMD_ARGS="--access-logfile -",
        LOG_LEVEL="info",
    )
    log = tmp / "gunicorn.log"
    with running_gunicorn(env, log, "-w", "1") as (url, _):
        _wait_until_healthy(url)
        yield Service(url=url, log=log, keys=keys, database_url=database_url)


@pytest.fixture(scope="module", params=["CNY", "tokens"])
def service_in_unit(request, service, tmp_path_factory) -> Iterator[tuple[str, Service]]:
    """A second gunicorn on the same database that shows amounts in CNY (at 7.1) or in tokens."""
    unit = request.param
    env = clean_environment(
        DATABASE_URL=service.database_url,
        BALANCE_UNIT=unit,
        CORS_ORIGINS="*",
    )
    log = tmp_path_factory.mktemp(f"browser-{unit}") / "gunicorn.log"
    with running_gunicorn(env, log, "-w", "1") as (url, _):
        _wait_until_healthy(url)
        yield unit, Service(url=url, log=log, keys=service.keys, database_url=service.database_url)


@pytest.fixture(scope="module")
def page_origin() -> Iterator[str]:
    """``web/`` on its own loopback port: a different origin from the service."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietStaticHandler, directory=str(WEB)))
    with serving(server):
        yield f"http://127.0.0.1:{server.server_port}"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not os.path.exists(CHROMIUM):
        required(CHROMIUM, "apt-get install chromium")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@dataclass
class Traffic:
    """What the browser sent, seen from both Playwright and the DevTools network log."""

    requests: list = field(default_factory=list)  # (method, url, headers) from page.on("request")
    devtools_requests: list = field(default_factory=list)  # (method, url) including CORS preflights
    devtools_responses: list = field(default_factory=list)  # (resource type, status, url)


def required(what: str, fix: str) -> None:
    """Skip without ``what``, except under CI=true, where it is a failure."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"the browser tests must run in CI: {what} is missing: {fix}")
    pytest.skip(f"{what} is missing: {fix}")


@pytest.fixture
def page(browser) -> Iterator[Page]:
    """A fresh browser context per test, in American English: empty storage and preflight cache."""
    context = browser.new_context(locale="en-US")
    page = context.new_page()
    page.set_default_timeout(15_000)
    try:
        yield page
    finally:
        context.close()


@pytest.fixture
def traffic(page) -> Traffic:
    """Record requests. Playwright hides CORS preflights by design, so they come from DevTools' Network log."""
    seen = Traffic()
    page.on("request", lambda r: seen.requests.append((r.method, r.url, r.all_headers())))
    cdp = page.context.new_cdp_session(page)
    cdp.send("Network.enable")
    cdp.on(
        "Network.requestWillBeSent",
        lambda e: seen.devtools_requests.append((e["request"]["method"], e["request"]["url"])),
    )
    cdp.on(
        "Network.responseReceived",
        lambda e: seen.devtools_responses.append((e.get("type"), e["response"]["status"], e["response"]["url"])),
    )
    return seen


def open_page(page: Page, page_origin: str, service_url: str) -> None:
    page.goto(f"{page_origin}/index.html?api={quote(service_url, safe='')}")
    expect(page.locator("#balance-form")).to_have_attribute("data-ready", "true")


def check_balance(page: Page, key: str) -> None:
    """Fill in the key and check; agree to send it when the page asks (the service came from ``?api=``)."""
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Check balance").click()
    # The question is put up synchronously by the submit handler, before any request.
    if page.get_by_test_id("confirm-origin").is_visible():
        page.get_by_test_id("confirm-send").click()
    expect(page.get_by_test_id("results")).to_have_attribute("data-state", "done")


def card_text(page: Page, card: str, field_id: str) -> str:
    return page.get_by_test_id(card).get_by_test_id(field_id).inner_text()


def card_title(page: Page, card: str, field_id: str) -> str:
    """The tooltip (``title``): the exact amount behind a rounded one."""
    return page.get_by_test_id(card).get_by_test_id(field_id).get_attribute("title")


def service_json(service: Service, path: str, key: str) -> str:
    request = urllib.request.Request(service.url + path, headers={"Authorization": f"Bearer {key}"})
    with urllib.request.urlopen(request, timeout=5) as response:
        return response.read().decode()


def in_words(day: date) -> str:
    """A day as the page writes it in American English (Intl's medium date style): ``Dec 5, 2026``."""
    return f"{day:%b} {day.day}, {day.year}"


def in_chinese(day: date) -> str:
    """A day as the page writes it in Chinese: ``2026年12月5日``."""
    return f"{day.year}年{day.month}月{day.day}日"


def literal(raw_json: str, name: str) -> str:
    """A number exactly as the service wrote it in the JSON text."""
    return re.search(rf'"{name}":(-?[0-9.eE+-]+)', raw_json).group(1)


def test_page_shows_both_balances_exactly_as_the_service_sent_them(page, page_origin, service, tmp_path):
    key = service.keys["limited"]
    open_page(page, page_origin, service.url)
    check_balance(page, key)

    # Rounded for people, with the exact figure the service sent in the tooltip.
    assert card_text(page, "token-card", "balance") == "$2.47"
    assert card_title(page, "token-card", "balance") == "2.469134 USD"
    assert card_text(page, "token-card", "used") == "$0.50"
    assert card_title(page, "token-card", "used") == "0.500000 USD"
    assert card_text(page, "token-card", "unit") == "USD"
    assert card_text(page, "user-card", "balance") == "$6.00"
    assert card_text(page, "user-card", "used") == "$2.00"
    for card, path in (("token-card", "/v1/balance"), ("user-card", "/v1/user/balance")):
        raw = service_json(service, path, key)
        assert card_title(page, card, "balance") == literal(raw, "remain_balance") + " USD"
        assert card_title(page, card, "used") == literal(raw, "used_balance") + " USD"

    # 250000 of 1484567 quota used on the key; 1000000 of 4000000 on the account.
    assert card_text(page, "token-card", "bar-legend") == "16.8% used, 83.2% remaining"
    assert card_text(page, "user-card", "bar-legend") == "25% used, 75% remaining"
    user_bar = page.get_by_test_id("user-card").get_by_role("meter")
    expect(user_bar).to_have_attribute("aria-valuenow", "25")
    used_width = user_bar.locator(".bar-used").bounding_box()["width"]
    assert used_width == pytest.approx(user_bar.bounding_box()["width"] / 4, abs=1)

    shot = tmp_path / "balance.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000


def test_the_key_goes_cross_origin_only_after_a_cors_preflight_answered_200(page, traffic, page_origin, service):
    key = service.keys["limited"]
    open_page(page, page_origin, service.url)
    check_balance(page, key)
    expect(page.get_by_test_id("token-card").get_by_test_id("balance")).to_have_text("$2.47")

    for path in ("/v1/balance", "/v1/user/balance"):
        url = service.url + path
        assert ("OPTIONS", url) in traffic.devtools_requests
        assert ("Preflight", 200, url) in traffic.devtools_responses
        assert ("Fetch", 200, url) in traffic.devtools_responses
        gets = [headers for method, u, headers in traffic.requests if (method, u) == ("GET", url)]
        assert [h["authorization"] for h in gets] == [f"Bearer {key}"]
        assert all(h["origin"] == page_origin for h in gets)

    # Nothing was loaded from anywhere but the page's own server and the service.
    assert {u.split("/")[2] for _, u, _ in traffic.requests} == {page_origin[7:], service.url[7:]}
    log = service.log_text()
    assert re.search(r'"OPTIONS /v1/balance" 200', log)
    assert re.search(r'"OPTIONS /v1/user/balance" 200', log)
    assert key[3:] not in log and key not in log


def test_an_invalid_key_shows_the_services_message(page, page_origin, service):
    open_page(page, page_origin, service.url)
    check_balance(page, INVALID_KEY)

    for card in ("token-card", "user-card"):
        expect(page.get_by_test_id(card).get_by_test_id("error")).to_have_text("Invalid token")
        expect(page.get_by_test_id(card).get_by_test_id("balance")).to_have_count(0)
    assert json.loads(_error_body(service, INVALID_KEY))["message"] == "Invalid token"


def _error_body(service: Service, key: str) -> str:
    request = urllib.request.Request(service.url + "/v1/balance", headers={"Authorization": f"Bearer {key}"})
    try:
        urllib.request.urlopen(request, timeout=5)
    except urllib.error.HTTPError as e:
        with e:
            return e.read().decode()
    raise AssertionError("an invalid key was accepted")


def test_an_unlimited_key_shows_unlimited_and_no_bar(page, page_origin, service, tmp_path):
    open_page(page, page_origin, service.url)
    check_balance(page, service.keys["unlimited"])

    token = page.get_by_test_id("token-card")
    expect(token.get_by_test_id("balance")).to_have_text("Unlimited")
    expect(token.get_by_test_id("used")).to_have_text("$0.00")
    expect(token.get_by_role("meter")).to_have_count(0)
    # The owner's account is limited all the same.
    expect(page.get_by_test_id("user-card").get_by_test_id("balance")).to_have_text("$6.00")
    expect(page.get_by_test_id("user-card").get_by_role("meter")).to_have_count(1)
    page.screenshot(path=str(tmp_path / "unlimited.png"), full_page=True)


def test_an_unreachable_service_shows_a_network_error(page, page_origin):
    # A bound but not listening socket: connections to it are refused, and no one else can take the port.
    with socket.socket() as reserved:
        reserved.bind(("127.0.0.1", 0))
        dead_url = f"http://127.0.0.1:{reserved.getsockname()[1]}"
        open_page(page, page_origin, dead_url)
        check_balance(page, INVALID_KEY)

        for card in ("token-card", "user-card"):
            message = page.get_by_test_id(card).get_by_test_id("error")
            expect(message).to_contain_text(f"Could not reach {dead_url}")
            expect(message).to_contain_text("CORS")


def test_the_key_is_remembered_only_in_session_storage_and_only_when_asked(page, page_origin, service):
    key = service.keys["limited"]
    open_page(page, page_origin, service.url)
    check_balance(page, key)
    assert page.evaluate("() => [sessionStorage.length, localStorage.length, document.cookie]") == [0, 0, ""]

    page.get_by_label("Remember in this tab").check()
    check_balance(page, key)
    stored = page.evaluate("() => Object.values(sessionStorage)")
    assert [json.loads(value) for value in stored] == [{"key": key, "origin": service.url}]
    assert page.evaluate("() => localStorage.length") == 0
    assert page.context.cookies() == []

    page.reload()
    expect(page.get_by_label("API key")).to_have_value(key)
    expect(page.get_by_label("Remember in this tab")).to_be_checked()

    page.get_by_label("Remember in this tab").uncheck()
    assert page.evaluate("() => sessionStorage.length") == 0


def test_the_service_url_defaults_to_the_pages_own_origin(page, page_origin):
    page.goto(f"{page_origin}/index.html")
    expect(page.get_by_label("Service URL")).to_have_value(page_origin)
    expect(page.get_by_label("API key")).to_have_attribute("type", "password")
    expect(page.get_by_label("API key")).to_have_attribute("autocomplete", "off")


def service_requests(traffic: Traffic, service: Service) -> list:
    return [(method, url) for method, url, _ in traffic.requests if url.startswith(service.url + "/")]


def test_a_service_url_from_the_link_asks_before_the_key_is_sent(page, traffic, page_origin, service):
    """``?api=`` on someone else's link must not get a key in one click."""
    key = service.keys["limited"]
    open_page(page, page_origin, service.url)
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Check balance").click()

    question = page.get_by_test_id("confirm-origin")
    expect(question).to_be_visible()
    expect(question).to_contain_text(f"set the service to {service.url}")
    expect(page.get_by_test_id("confirm-send")).to_have_text(f"Send key to {service.url}")
    page.get_by_test_id("confirm-cancel").click()
    expect(question).to_be_hidden()
    expect(page.get_by_test_id("results")).to_be_hidden()

    # Asked again until the user agrees; nothing went to the service meanwhile.
    page.get_by_role("button", name="Check balance").click()
    expect(question).to_be_visible()
    page.wait_for_timeout(300)
    assert service_requests(traffic, service) == []

    page.get_by_test_id("confirm-send").click()
    expect(page.get_by_test_id("token-card").get_by_test_id("balance")).to_have_text("$2.47")
    # Agreed once for this origin on this page load: the next check goes straight out.
    page.get_by_role("button", name="Check balance").click()
    expect(question).to_be_hidden()
    expect(page.get_by_test_id("results")).to_have_attribute("data-state", "done")
    balance_paths = {service.url + e for e in ("/v1/balance", "/v1/user/balance")}
    gets = [r for r in service_requests(traffic, service) if r[0] == "GET" and r[1] in balance_paths]
    assert len(gets) == 4


def test_a_service_url_the_user_typed_is_not_asked_about(page, traffic, page_origin, service):
    page.goto(f"{page_origin}/index.html")
    expect(page.locator("#balance-form")).to_have_attribute("data-ready", "true")
    page.get_by_label("Service URL").fill(service.url)
    page.get_by_label("API key").fill(service.keys["limited"])
    page.get_by_role("button", name="Check balance").click()
    expect(page.get_by_test_id("token-card").get_by_test_id("balance")).to_have_text("$2.47")
    expect(page.get_by_test_id("confirm-origin")).to_be_hidden()


def test_a_link_naming_the_pages_own_origin_is_not_asked_about(page, traffic, page_origin):
    open_page(page, page_origin, page_origin)
    page.get_by_label("API key").fill(INVALID_KEY)
    page.get_by_role("button", name="Check balance").click()
    expect(page.get_by_test_id("results")).to_have_attribute("data-state", "done")
    expect(page.get_by_test_id("confirm-origin")).to_be_hidden()
    assert any(u == page_origin + "/v1/balance" for _, u, _ in traffic.requests)


def test_a_remembered_key_is_not_restored_for_another_service(page, traffic, page_origin, service):
    key = service.keys["limited"]
    open_page(page, page_origin, service.url)
    page.get_by_label("Remember in this tab").check()
    check_balance(page, key)

    # The same tab follows a link that names another service: the key stays out of the form.
    with socket.socket() as reserved:
        reserved.bind(("127.0.0.1", 0))
        other = f"http://127.0.0.1:{reserved.getsockname()[1]}"
        open_page(page, page_origin, other)
        expect(page.get_by_label("API key")).to_have_value("")
        expect(page.get_by_label("Remember in this tab")).not_to_be_checked()

    # Back on the service it was remembered for, it is there again.
    open_page(page, page_origin, service.url)
    expect(page.get_by_label("API key")).to_have_value(key)


def test_a_remembered_key_is_never_sent_to_another_origin(page, traffic, page_origin, service):
    key = service.keys["limited"]
    open_page(page, page_origin, service.url)
    page.get_by_label("Remember in this tab").check()
    check_balance(page, key)
    page.reload()
    expect(page.get_by_label("API key")).to_have_value(key)

    # The user (or a script on a shared screen) points the form elsewhere: the restored key is not sent.
    elsewhere = "http://127.0.0.2:9"
    page.get_by_label("Service URL").fill(elsewhere)
    before = len(traffic.requests)
    page.get_by_role("button", name="Check balance").click()
    error = page.get_by_test_id("form-error")
    expect(error).to_have_text(f"The remembered key belongs to {service.url}. Type the key to send it to {elsewhere}.")
    expect(page.get_by_label("API key")).to_have_value("")
    page.wait_for_timeout(300)
    assert [u for _, u, _ in traffic.requests[before:] if u.startswith(elsewhere)] == []


@pytest.mark.parametrize(
    ("pasted", "message"),
    [
        ("\u200b", "it contains an invisible character (such as a zero-width space)"),
        ("\ufeff", "it contains an invisible character"),
        (" x", "a key is sk- followed by letters and digits"),
        ("é", "a key is sk- followed by letters and digits"),
    ],
)
def test_a_malformed_key_is_named_as_such_before_anything_is_sent(page, traffic, page_origin, service, pasted, message):
    """A zero-width space cannot go in an HTTP header: fetch failed and the page blamed the network or CORS."""
    key = service.keys["limited"]
    open_page(page, page_origin, service.url)
    page.get_by_label("API key").fill(key[:10] + pasted + key[10:])
    page.get_by_role("button", name="Check balance").click()
    error = page.get_by_test_id("form-error")
    expect(error).to_contain_text("This API key is malformed")
    expect(error).to_contain_text(message)
    expect(page.get_by_label("API key")).to_have_attribute("aria-invalid", "true")
    expect(page.get_by_test_id("confirm-origin")).to_be_hidden()
    expect(page.get_by_test_id("results")).to_be_hidden()
    assert service_requests(traffic, service) == []


# --- usage history, forecast and refresh ------------------------------------------------------------------------------


def service_usage(service: Service, key: str) -> dict:
    """``GET /v1/usage`` (the account, the last 30 days) as the service answers it, numbers exact."""
    return json.loads(service_json(service, "/v1/usage", key), parse_float=Decimal)


def set_quota(service: Service, username: str, quota: int) -> None:
    """Change an account's balance in the database, as the gateway would when it bills or tops up."""
    engine = create_engine(service.database_url)
    try:
        with engine.begin() as connection:
            connection.execute(update(User).where(User.username == username).values(quota=quota))
    finally:
        engine.dispose()


def set_option(service: Service, name: str, value: str) -> None:
    tables = GatewayTables(service.database_url)
    tables.created.append("options")  # exists already: only the row changes
    tables.set_options({name: value})
    tables.engine.dispose()


def test_the_chart_has_a_bar_per_day_in_proportion_to_the_days_spend(page, page_origin, service, tmp_path):
    key = service.keys["limited"]
    open_page(page, page_origin, service.url)
    check_balance(page, key)
    usage = page.get_by_test_id("usage")
    expect(usage.get_by_test_id("forecast")).not_to_be_empty()

    answer = service_usage(service, key)
    bars = usage.get_by_test_id("day-bar")
    expect(bars).to_have_count(30)
    shown = bars.evaluate_all(
        "bars => bars.map(b => [b.dataset.date, b.dataset.used, b.getBBox().height, b.getBBox().x])"
    )
    assert [(date, used) for date, used, _, _ in shown] == [(d["date"], str(d["used"])) for d in answer["days"]]
    xs = [x for _, _, _, x in shown]
    assert xs == sorted(xs), "oldest day on the left"
    heights = [h for _, _, h, _ in shown]
    spent = [max(Decimal(used), 0) for _, used, _, _ in shown]
    assert spent[-13:] == [Decimal("2")] + [0] * 4 + [Decimal("0.6")] * 7 + [Decimal("0.2")]
    assert spent[-21] == Decimal("0.4")  # 250000 spent, 50000 refunded
    tallest = max(heights)
    assert tallest > 100
    for height, amount in zip(heights, spent, strict=True):
        assert height == pytest.approx(tallest * float(amount / max(spent)), abs=0.01)
    assert sum(1 for h in heights if h > 0) == 10
    title = bars.nth(29).locator("title").text_content()
    assert title == f"{in_words(date.fromisoformat(answer['days'][-1]['date']))}: $0.20 (1 request)"
    # The same days as a table, for those who cannot see the bars.
    usage.get_by_text("The days as a table").click()
    cells = usage.get_by_test_id("day-table").locator("tbody tr").nth(29).locator("th, td").all_inner_texts()
    assert cells == [in_words(date.fromisoformat(answer["days"][-1]["date"])), "$0.20", "1"]

    # Top models, biggest first, rounded with the exact figure in the tooltip.
    models = usage.get_by_test_id("model")
    expect(models).to_have_count(3)
    assert [m["model"] for m in answer["models"]] == ["gpt-4o", "gpt-4o-mini", "claude-3"]
    assert models.nth(0).inner_text().split("\n")[0] == "gpt-4o"
    gpt4o = models.nth(0).locator(".model-used")
    expect(gpt4o).to_have_text("$3.40")  # 7 × 0.4, 0.5 less a 0.1 refund, 0.2 today
    expect(gpt4o).to_have_attribute("title", f"{answer['models'][0]['used']} USD")
    expect(models.nth(0).locator(".model-requests")).to_have_text("9 requests")
    expect(usage.get_by_test_id("total-used")).to_have_text("$6.80")
    page.screenshot(path=str(tmp_path / "usage.png"), full_page=True)


def test_the_forecast_is_said_in_words_for_the_seeded_key(page, page_origin, service):
    open_page(page, page_origin, service.url)
    check_balance(page, service.keys["limited"])
    runs_out = in_words(datetime.now(UTC).date() + timedelta(days=10))
    assert service_usage(service, service.keys["limited"])["forecast"]["days_left"] == Decimal("10.0")
    expect(page.get_by_test_id("forecast")).to_have_text(
        f"At the last 7 days' rate ($0.60 a day), about 10 days left; runs out around {runs_out}."
    )

    # The key alone: 1234567 left at 300000 a day.
    page.get_by_test_id("usage-scope").select_option("key")
    key_runs_out = in_words(datetime.now(UTC).date() + timedelta(days=4))
    expect(page.get_by_test_id("forecast")).to_have_text(
        f"At the last 7 days' rate ($0.60 a day), about 4.1 days left; runs out around {key_runs_out}."
    )


def test_an_unlimited_or_idle_key_gets_a_forecast_that_makes_sense(page, page_origin, service):
    open_page(page, page_origin, service.url)
    check_balance(page, service.keys["unlimited"])
    page.get_by_test_id("usage-scope").select_option("key")
    expect(page.get_by_test_id("forecast")).to_have_text("Unlimited credit: it does not run out.")
    check_balance(page, service.keys["bob"])  # nothing ever spent
    expect(page.get_by_test_id("forecast")).to_have_text(
        "Nothing was spent in the last 7 days, so there is no forecast."
    )
    expect(page.get_by_test_id("day-bar")).to_have_count(30)
    expect(page.get_by_test_id("no-models")).to_be_visible()


def test_with_consume_logging_off_the_page_says_so_calmly_and_still_shows_the_balances(
    page, traffic, page_origin, service, tmp_path
):
    set_option(service, "LogConsumeEnabled", "false")
    # A service started after the change: a running one may trust the options it read for a minute.
    env = clean_environment(DATABASE_URL=service.database_url, BALANCE_UNIT="USD", CORS_ORIGINS="*")
    try:
        with running_gunicorn(env, tmp_path / "gunicorn.log", "-w", "1") as (url, _):
            _wait_until_healthy(url)
            _without_logs(page, traffic, page_origin, url, service.keys["limited"])
    finally:
        set_option(service, "LogConsumeEnabled", "true")


def _without_logs(page: Page, traffic: Traffic, page_origin: str, url: str, key: str) -> None:
    open_page(page, page_origin, url)
    check_balance(page, key)
    message = page.get_by_test_id("usage-message")
    expect(message).to_have_text(
        "This gateway does not record spending (its LogConsumeEnabled option is off), so there is no "
        "spending history to show."
    )
    expect(message).to_have_attribute("data-kind", "note")
    expect(page.get_by_test_id("chart")).to_be_hidden()
    assert not [u for _, u, _ in traffic.requests if "/v1/usage" in u], "the page did not provoke the 409"
    expect(page.get_by_test_id("token-card").get_by_test_id("balance")).to_have_text("$2.47")
    expect(page.get_by_test_id("user-card").get_by_test_id("balance")).to_have_text("$6.00")


def test_amounts_in_cny_and_tokens_are_rounded_with_the_exact_figure_in_the_tooltip(page, page_origin, service_in_unit):
    unit, service = service_in_unit
    open_page(page, page_origin, service.url)
    check_balance(page, service.keys["bob"])
    expected = {
        "CNY": {"user-card": ("¥71.00", "71.000000 CNY"), "token-card": ("¥17.75", "17.750000 CNY")},
        "tokens": {"user-card": ("5,000,000 tokens", "5000000 tokens"), "token-card": ("1,250,000 tokens", None)},
    }[unit]
    for card, (text, title) in expected.items():
        balance = page.get_by_test_id(card).get_by_test_id("balance")
        expect(balance).to_have_text(text)
        expect(balance).to_have_attribute("title", title or "1250000 tokens")
    # In Chinese: ¥ stays ¥ (not CN¥), and raw quota is counted in 额度 points.
    page.get_by_role("button", name="中文").click()
    chinese = {"CNY": "¥71.00", "tokens": "5,000,000 点额度"}[unit]
    expect(page.get_by_test_id("user-card").get_by_test_id("balance")).to_have_text(chinese)


def test_the_page_refreshes_itself_in_place_while_visible(page, page_origin, service):
    set_quota(service, "carol", 1_000_000)
    page.goto(f"{page_origin}/index.html?refresh=0.5&api={quote(service.url, safe='')}")
    expect(page.locator("#balance-form")).to_have_attribute("data-ready", "true")
    check_balance(page, service.keys["carol"])
    balance = page.get_by_test_id("user-card").get_by_test_id("balance")
    expect(balance).to_have_text("$2.00")
    # Watch for anything that would flicker: the figures replaced, or a "Loading…" shown again.
    page.evaluate(
        """() => {
          const dd = document.querySelector('#user-card [data-testid="balance"]');
          dd.dataset.original = "yes";
          window.blanked = 0;
          new MutationObserver(() => {
            if (document.querySelector('[data-testid="loading"]') || !document.querySelector('#user-card .figures')) {
              window.blanked++;
            }
          }).observe(document.getElementById("results"), { childList: true, subtree: true });
        }"""
    )
    set_quota(service, "carol", 1_750_000)
    expect(balance).to_have_text("$3.50", timeout=10_000)
    expect(balance).to_have_attribute("title", "3.500000 USD")
    assert balance.get_attribute("data-original") == "yes", "updated in place, not redrawn"
    assert page.evaluate("() => window.blanked") == 0
    expect(page.get_by_test_id("refresh-status")).to_contain_text("Updated")
    set_quota(service, "carol", 1_000_000)


def hide(page: Page, hidden: bool) -> None:
    """What the browser does when the tab goes to the background (or comes back): the Page Visibility API."""
    page.evaluate(
        """hidden => {
          const state = hidden ? "hidden" : "visible";
          Object.defineProperty(document, "visibilityState", { configurable: true, get: () => state });
          Object.defineProperty(document, "hidden", { configurable: true, get: () => hidden });
          document.dispatchEvent(new Event("visibilitychange"));
        }""",
        hidden,
    )


def test_a_hidden_tab_asks_nothing_and_refreshes_at_once_when_visible_again(page, traffic, page_origin, service):
    set_quota(service, "carol", 1_000_000)
    page.goto(f"{page_origin}/index.html?refresh=0.3&api={quote(service.url, safe='')}")
    expect(page.locator("#balance-form")).to_have_attribute("data-ready", "true")
    check_balance(page, service.keys["carol"])
    usage = page.get_by_test_id("usage")
    expect(usage).to_have_attribute("data-refreshes", re.compile(r"^[2-9]|\d\d"))  # refreshing on its own

    hide(page, True)
    page.wait_for_timeout(400)  # a refresh already on its way may land
    before = len(traffic.requests)
    refreshes = int(usage.get_attribute("data-refreshes"))
    set_quota(service, "carol", 2_500_000)
    page.wait_for_timeout(2_000)  # more than six refresh intervals
    assert traffic.requests[before:] == [], "a hidden tab sends no requests"
    assert int(usage.get_attribute("data-refreshes")) == refreshes
    balance = page.get_by_test_id("user-card").get_by_test_id("balance")
    expect(balance).to_have_text("$2.00")

    hide(page, False)
    expect(balance).to_have_text("$5.00", timeout=2_000)
    expect(usage).not_to_have_attribute("data-refreshes", str(refreshes))
    fetched = {u.split("?")[0].removeprefix(service.url) for m, u, _ in traffic.requests[before:] if m == "GET"}
    assert fetched >= {"/v1/balance", "/v1/user/balance", "/v1/usage"}
    set_quota(service, "carol", 1_000_000)


# --- the first run, the languages, the reminders, keyboard use and accessibility -------------------------------------

KEY_LINE = re.compile(r"^sk-[A-Za-z0-9]{48}$", re.M)
#: A webhook on loopback: the demo service allows private targets, and creating an alert sends nothing.
HOOK = "http://127.0.0.1:9/balance-hook"


@dataclass
class Demo:
    """A service started as a new user starts one: ``demo`` on a fresh database, then gunicorn."""

    url: str
    key: str
    printed: str


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Iterator[Demo]:
    tmp = tmp_path_factory.mktemp("browser-demo")
    env = clean_environment(DATABASE_URL=f"sqlite:///{tmp / 'demo.sqlite3'}", BIND="127.0.0.1:8000")
    made = subprocess.run(
        [sys.executable, "-m", "flask", "--app", "wsgi", "demo"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    key = KEY_LINE.findall(made.stdout)[0]
    env.update(CORS_ORIGINS="*", ALERT_ALLOW_PRIVATE_TARGETS="true")
    with running_gunicorn(env, tmp / "gunicorn.log", "-w", "1") as (url, _):
        _wait_until_healthy(url)
        yield Demo(url=url, key=key, printed=made.stdout)


@pytest.fixture(scope="module")
def no_logs_service(tmp_path_factory) -> Iterator[Service]:
    """A gateway database without a ``logs`` table (one that keeps no request logs)."""
    tmp = tmp_path_factory.mktemp("browser-no-logs")
    database_url = f"sqlite:///{tmp / 'gateway.sqlite3'}"
    with pytest.MonkeyPatch.context() as monkeypatch:
        for name in ENV_SETTINGS:
            monkeypatch.delenv(name, raising=False)
        app = create_app({"DATABASE_URL": database_url})
        with app.app_context():
            init_database(db.engine)
            _, key = operations.create_token(operations.create_user("dora", quota=2_000_000), quota=500_000)
            db.session.remove()
            db.engine.dispose()
    env = clean_environment(DATABASE_URL=database_url, CORS_ORIGINS="*")
    with running_gunicorn(env, tmp / "gunicorn.log", "-w", "1") as (url, _):
        _wait_until_healthy(url)
        yield Service(url=url, log=tmp / "gunicorn.log", keys={"dora": key}, database_url=database_url)


@dataclass
class Console:
    """What the browser itself reported: console messages and answers of 400 and above."""

    messages: list = field(default_factory=list)
    failures: list = field(default_factory=list)


def watch(page: Page) -> Console:
    seen = Console()
    page.on("console", lambda m: seen.messages.append((m.type, m.text)))
    page.on("response", lambda r: r.status >= 400 and seen.failures.append((r.status, r.url)))
    return seen


def api(url: str, path: str, key: str, method: str = "GET", body: dict | None = None) -> tuple[int, dict]:
    """The service's answer to the same request the page makes, numbers exact."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url + path, data=data, method=method)
    request.add_header("Authorization", f"Bearer {key}")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read(), parse_float=Decimal)
    except urllib.error.HTTPError as e:
        with e:
            return e.code, json.loads(e.read(), parse_float=Decimal)


def test_a_first_run_on_the_demo_data_shows_the_chart_the_forecast_and_the_top_models(page, page_origin, demo):
    assert "The service will be on http://127.0.0.1:8000; try:" in demo.printed
    seen = watch(page)
    open_page(page, page_origin, demo.url)
    check_balance(page, demo.key)

    usage = page.get_by_test_id("usage")
    answer = api(demo.url, "/v1/usage", demo.key)[1]
    bars = usage.get_by_test_id("day-bar")
    expect(bars).to_have_count(30)
    heights = bars.evaluate_all("bars => bars.map(b => b.getBBox().height)")
    assert sum(1 for h in heights if h > 0) >= 28, "a month of varied spend, not an empty chart"
    assert len(set(heights)) > 20
    runs_out = in_words(date.fromisoformat(answer["forecast"]["runs_out_on"]))
    expect(usage.get_by_test_id("forecast")).to_contain_text(f"days left; runs out around {runs_out}.")
    models = usage.get_by_test_id("model").locator(".model-name")
    expect(models).to_have_text(["gpt-4o", "claude-3-5-sonnet", "gpt-4o-mini", "deepseek-chat"])
    expect(page.get_by_test_id("usage-message")).to_be_hidden()
    expect(page.get_by_test_id("user-card").get_by_test_id("balance")).to_have_text("$10.00")
    assert seen.failures == [] and [m for m in seen.messages if m[0] == "error"] == []


def test_a_gateway_without_logs_gets_a_calm_note_and_no_error_in_the_console(
    page, traffic, page_origin, no_logs_service
):
    seen = watch(page)
    open_page(page, page_origin, no_logs_service.url)
    check_balance(page, no_logs_service.keys["dora"])
    note = page.get_by_test_id("usage-message")
    expect(note).to_have_text("This gateway keeps no request logs, so there is no spending history to show.")
    expect(note).to_have_attribute("data-kind", "note")
    assert note.evaluate("e => getComputedStyle(e).color") != page.get_by_test_id("form-error").evaluate(
        "e => getComputedStyle(e).color"
    ), "a note, not in the error colour"
    expect(page.get_by_test_id("chart")).to_be_hidden()
    expect(page.get_by_test_id("user-card").get_by_test_id("balance")).to_have_text("$4.00")
    page.wait_for_timeout(300)
    assert not [u for _, u, _ in traffic.requests if "/v1/usage" in u]
    assert seen.failures == [] and [m for m in seen.messages if m[0] == "error"] == []


def test_a_chinese_browser_gets_the_page_in_chinese_with_its_dates(browser, page_origin, demo):
    context = browser.new_context(locale="zh-CN")
    try:
        page = context.new_page()
        open_page(page, page_origin, demo.url)
        expect(page.locator("html")).to_have_attribute("lang", "zh-CN")
        expect(page.get_by_role("heading", level=1)).to_have_text("额度余额")
        page.get_by_label("API 密钥").fill(demo.key)
        page.get_by_role("button", name="查询余额").click()
        page.get_by_test_id("confirm-send").click()
        expect(page.get_by_test_id("confirm-send")).to_be_hidden()
        card = page.get_by_test_id("user-card")
        expect(card.get_by_text("余额", exact=True)).to_be_visible()
        expect(card.get_by_test_id("balance")).to_have_text("$10.00")
        answer = api(demo.url, "/v1/usage", demo.key)[1]
        rate = f"${Decimal(answer['forecast']['daily_rate']).quantize(Decimal('0.01'))}"
        runs_out = in_chinese(date.fromisoformat(answer["forecast"]["runs_out_on"]))
        expect(page.get_by_test_id("forecast")).to_contain_text(f"按最近 7 天的速度（每天 {rate}），还能用约")
        expect(page.get_by_test_id("forecast")).to_contain_text(f"约 {runs_out} 用完。")
        expect(page.get_by_role("heading", name="余额提醒")).to_be_visible()
        assert page.title() == "额度余额"
    finally:
        context.close()


def test_the_language_switch_changes_every_word_and_is_remembered(page, page_origin, service):
    open_page(page, page_origin, service.url)
    check_balance(page, service.keys["limited"])
    expect(page.get_by_role("button", name="English")).to_have_attribute("aria-pressed", "true")
    english = page.locator("main").inner_text()

    page.get_by_role("button", name="中文").click()
    expect(page.locator("html")).to_have_attribute("lang", "zh-CN")
    expect(page.get_by_role("button", name="中文")).to_have_attribute("aria-pressed", "true")
    expect(page.get_by_test_id("user-card").get_by_test_id("bar-legend")).to_have_text("已用 25%，剩余 75%")
    runs_out = in_chinese(datetime.now(UTC).date() + timedelta(days=10))
    expect(page.get_by_test_id("forecast")).to_have_text(
        f"按最近 7 天的速度（每天 $0.60），还能用约 10 天，约 {runs_out} 用完。"
    )
    expect(page.get_by_test_id("model").nth(0).locator(".model-requests")).to_have_text("9 次请求")
    chinese = page.locator("main").inner_text()
    # No English sentence is left: every word that is not a figure, a URL, a model or a unit changed.
    leftover = {w for w in re.findall(r"[A-Za-z]{4,}", chinese)} & set(re.findall(r"[A-Za-z]{4,}", english))
    assert leftover <= {"balance", "user", "usage", "alerts", "claude", "mini", "Webhook", "Apprise", "https"}, leftover

    # Remembered (the language only: the key never goes to localStorage), and used on the next visit.
    assert page.evaluate("() => Object.entries(localStorage)") == [["balance-service.lang", "zh-CN"]]
    page.reload()
    expect(page.locator("html")).to_have_attribute("lang", "zh-CN")
    expect(page.get_by_role("button", name="查询余额")).to_be_visible()
    page.get_by_role("button", name="English").click()
    expect(page.get_by_role("button", name="Check balance")).to_be_visible()
    expect(page.locator("html")).to_have_attribute("lang", "en")


def test_reminders_are_listed_created_and_deleted_against_the_real_api(page, page_origin, demo):
    open_page(page, page_origin, demo.url)
    check_balance(page, demo.key)
    panel = page.get_by_test_id("alerts")
    expect(panel.get_by_role("heading", name="Reminders")).to_be_visible()
    # What this service offers: a webhook and chat/push apps (e-mail needs the operator's mail server).
    expect(panel.get_by_label("Send by").locator("option")).to_have_text(["Webhook", "Chat or push app (Apprise URL)"])

    panel.get_by_label("Amount (USD)").fill("5")
    panel.get_by_label("Webhook URL").fill(HOOK)
    panel.get_by_role("button", name="Create reminder").click()
    expect(panel.get_by_test_id("alerts-status")).to_have_text("Reminder created: Account balance below $5.00.")
    expect(panel.get_by_test_id("alert-secret-value")).to_have_text(re.compile(r"^[0-9a-f]{64}$"))
    item = panel.get_by_test_id("alert").filter(has_text="Account balance below $5.00")
    expect(item).to_contain_text(f"Sends to {HOOK}. Waiting.")
    listed = api(demo.url, "/v1/user/balance/alerts", demo.key)[1]["alerts"]
    mine = [a for a in listed if a["threshold"] == Decimal(5) and a["webhook_url"] == HOOK]
    assert len(mine) == 1 and mine[0]["scope"] == "account"

    # A forecast reminder on the key itself.
    panel.get_by_label("the forecast says fewer days are left").check()
    panel.get_by_label("Days left").fill("2.5")
    panel.get_by_label("Watch").select_option("token")
    panel.get_by_label("Webhook URL").fill(HOOK)
    panel.get_by_role("button", name="Create reminder").click()
    expect(panel.get_by_test_id("alert").filter(has_text="This key: fewer than 2.5 days of credit left")).to_have_count(
        1
    )
    listed = api(demo.url, "/v1/user/balance/alerts", demo.key)[1]["alerts"]
    assert [(a["scope"], a["days_left"]) for a in listed if a["days_left"] is not None] == [("token", Decimal("2.5"))]

    # Refused by the service: its own words are shown, and nothing is stored.
    refused = {"threshold": 1, "webhook_url": "http://169.254.169.254/latest"}
    status, body = api(demo.url, "/v1/user/balance/alerts", demo.key, "POST", refused)
    assert status == 400
    panel.get_by_label("the balance falls below an amount").check()
    panel.get_by_label("Amount (USD)").fill("1")
    panel.get_by_label("Watch").select_option("account")
    panel.get_by_label("Webhook URL").fill(refused["webhook_url"])
    panel.get_by_role("button", name="Create reminder").click()
    expect(panel.get_by_test_id("alerts-error")).to_have_text(body["message"])
    assert len(api(demo.url, "/v1/user/balance/alerts", demo.key)[1]["alerts"]) == len(listed)

    # Not a number: said before anything is sent.
    panel.get_by_label("Amount (USD)").fill("five")
    panel.get_by_role("button", name="Create reminder").click()
    expect(panel.get_by_test_id("alerts-error")).to_have_text("Enter a number, such as 5 or 2.5.")

    # A chat/push reminder: listed with its target masked by the service.
    panel.get_by_label("Amount (USD)").fill("3")
    panel.get_by_label("Send by").select_option("notify_url")
    panel.get_by_label("Apprise URL").fill("ntfy://127.0.0.1:9/balance-topic")
    panel.get_by_role("button", name="Create reminder").click()
    chat = panel.get_by_test_id("alert").filter(has_text="Account balance below $3.00")
    expect(chat).to_have_count(1)  # created (the service checks a notify_url in a child process first)
    [stored] = [a for a in api(demo.url, "/v1/user/balance/alerts", demo.key)[1]["alerts"] if a["channel"] == "notify"]
    expect(chat).to_contain_text(f"Sends to {stored['notify_url']}.")
    panel.get_by_label("Send by").select_option("webhook_url")

    # The test button: a receiver that answers gets the test; one that does not is named in the API's words.
    with recording_receiver() as (url, received):
        panel.get_by_label("Amount (USD)").fill("4")
        panel.get_by_label("Webhook URL").fill(url)
        panel.get_by_role("button", name="Create reminder").click()
        panel.get_by_role("button", name="Send a test of reminder: Account balance below $4.00").click()
        expect(panel.get_by_test_id("alerts-status")).to_have_text("Test sent: Account balance below $4.00.")
        assert len(received) == 1
    # The same closed port behind the forecast reminder: the words the API gives (one test a minute per alert).
    [forecast] = [a for a in api(demo.url, "/v1/user/balance/alerts", demo.key)[1]["alerts"] if a["days_left"]]
    status, body = api(demo.url, f"/v1/user/balance/alerts/{forecast['id']}/test", demo.key, "POST")
    assert status == 502
    panel.get_by_role("button", name="Send a test of reminder: Account balance below $5.00").click()
    expect(panel.get_by_test_id("alerts-error")).to_have_text(body["message"])

    panel.get_by_role("button", name="Delete reminder: Account balance below $5.00").click()
    expect(panel.get_by_test_id("alerts-status")).to_have_text("Deleted: Account balance below $5.00.")
    expect(item).to_have_count(0)
    listed = api(demo.url, "/v1/user/balance/alerts", demo.key)[1]["alerts"]
    assert [a["id"] for a in listed if a["threshold"] == Decimal(5)] == []
    for alert in listed:  # leave the demo account as the other tests expect it
        api(demo.url, f"/v1/user/balance/alerts/{alert['id']}", demo.key, "DELETE")


def test_dark_mode_follows_the_system_setting(browser, page_origin, demo):
    colours = {}
    for scheme in ("light", "dark"):
        context = browser.new_context(locale="en-US", color_scheme=scheme)
        try:
            page = context.new_page()
            open_page(page, page_origin, demo.url)
            colours[scheme] = page.evaluate(
                "() => [getComputedStyle(document.body).backgroundColor, getComputedStyle(document.body).color]"
            )
        finally:
            context.close()
    assert colours["light"] == ["rgb(246, 247, 249)", "rgb(27, 31, 36)"]
    assert colours["dark"] == ["rgb(15, 17, 21)", "rgb(230, 232, 235)"]


def focused(page: Page) -> dict:
    """The focused element and whether its focus ring can be seen (an outline at least 2 px wide)."""
    return page.evaluate(
        """() => {
          const e = document.activeElement;
          const style = getComputedStyle(e);
          return {
            id: e.id, testid: e.dataset ? e.dataset.testid || "" : "", text: (e.textContent || "").trim(),
            label: e.getAttribute("aria-label") || "", tag: e.tagName,
            ring: style.outlineStyle !== "none" && parseFloat(style.outlineWidth) >= 2,
          };
        }"""
    )


def tab_to(page: Page, matches, limit: int = 40, key: str = "Tab") -> dict:
    """Press Tab (or ``key``) until the focused element matches; every stop on the way must show its focus."""
    for _ in range(limit):
        page.keyboard.press(key)
        now = focused(page)
        assert now["ring"], f"no visible focus on {now}"
        if matches(now):
            return now
    raise AssertionError("not reachable with the Tab key")


def test_everything_can_be_done_with_the_keyboard_alone_with_the_focus_always_visible(page, page_origin, demo):
    open_page(page, page_origin, demo.url)
    tab_to(page, lambda f: f["text"] == "中文")
    page.keyboard.press("Enter")
    expect(page.locator("html")).to_have_attribute("lang", "zh-CN")
    tab_to(page, lambda f: f["text"] == "English")
    page.keyboard.press("Space")
    expect(page.locator("html")).to_have_attribute("lang", "en")

    tab_to(page, lambda f: f["id"] == "api-key")
    page.keyboard.type(demo.key)
    page.keyboard.press("Enter")
    expect(page.get_by_test_id("confirm-cancel")).to_be_focused()  # the question, asked where the keyboard is
    page.keyboard.press("Shift+Tab")
    page.keyboard.press("Enter")
    expect(page.get_by_test_id("results")).to_have_attribute("data-state", "done")
    expect(page.get_by_test_id("alert-form")).to_be_visible()

    tab_to(page, lambda f: f["id"] == "usage-scope")
    page.keyboard.press("ArrowDown")  # a select changes with the arrow keys
    expect(page.get_by_test_id("usage-scope")).to_have_value("key")
    tab_to(page, lambda f: f["tag"] == "SUMMARY")
    page.keyboard.press("Enter")
    expect(page.get_by_test_id("day-table")).to_have_attribute("open", "")

    tab_to(page, lambda f: f["id"] == "alert-value")
    page.keyboard.type("3")
    tab_to(page, lambda f: f["id"] == "alert-target")
    page.keyboard.type(HOOK)
    page.keyboard.press("Enter")
    panel = page.get_by_test_id("alerts")
    expect(panel.get_by_test_id("alerts-status")).to_have_text("Reminder created: Account balance below $3.00.")

    tab_to(page, lambda f: f["label"] == "Delete reminder: Account balance below $3.00", key="Shift+Tab")
    page.keyboard.press("Enter")
    expect(panel.get_by_test_id("alerts-status")).to_have_text("Deleted: Account balance below $3.00.")
    expect(panel.get_by_role("heading", name="Reminders")).to_be_focused()  # not lost to the page's top


@pytest.fixture(scope="module")
def axe_script() -> Path:
    if not AXE.exists():
        required(str(AXE), "scripts/setup-venv requirements-dev.txt (npm install of axe-core)")
    return AXE


SIZES = {"desktop": {"width": 1280, "height": 900}, "mobile": {"width": 390, "height": 844}}


@pytest.mark.parametrize("scheme", ["light", "dark"])
@pytest.mark.parametrize("size", ["desktop", "mobile"])
@pytest.mark.parametrize("language", ["en-US", "zh-CN"])
def test_axe_finds_no_serious_or_critical_violation(browser, page_origin, demo, axe_script, language, size, scheme):
    """Everything shown: both balances, the chart and its table, a reminder in the list, the new-reminder form."""
    status, _ = api(demo.url, "/v1/user/balance/alerts", demo.key, "POST", {"threshold": 4, "webhook_url": HOOK})
    assert status == 201
    # bypass_csp: the page allows scripts of its own origin only, and axe is injected by the test.
    context = browser.new_context(
        locale=language, viewport=SIZES[size], color_scheme=scheme, is_mobile=size == "mobile", bypass_csp=True
    )
    try:
        page = context.new_page()
        open_page(page, page_origin, demo.url)
        page.locator("#api-key").fill(demo.key)
        page.locator("#check").click()
        page.get_by_test_id("confirm-send").click()
        expect(page.get_by_test_id("alert")).not_to_have_count(0)
        expect(page.get_by_test_id("day-bar")).to_have_count(30)
        page.locator(".day-table summary").click()
        page.add_script_tag(path=str(axe_script))
        results = page.evaluate("async () => await axe.run(document, { resultTypes: ['violations'] })")
        found = [
            (v["id"], v["impact"], [n["target"] for n in v["nodes"]][:3])
            for v in results["violations"]
            if v["impact"] in ("serious", "critical")
        ]
        assert found == []
        assert results["testEngine"]["version"]  # axe ran
    finally:
        context.close()
        for alert in api(demo.url, "/v1/user/balance/alerts", demo.key)[1]["alerts"]:
            api(demo.url, f"/v1/user/balance/alerts/{alert['id']}", demo.key, "DELETE")
