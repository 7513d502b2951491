"""Bounded work per usage request: a year at most, and only a few log queries at once per host.

The slots are lock files shared by every process of the service on one host
(balance_service/usage/limit.py, on balance_service/_internal/host_slots.py).
Here they are held by the test itself, as another worker busy with a usage
query would hold them, or, on PostgreSQL, by
real usage requests stuck behind a table lock the test holds: each test knows
exactly when the slots are taken, nothing sleeps to make a query slow.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

import psycopg2
import pytest
from sqlalchemy.engine import make_url
from werkzeug.exceptions import ServiceUnavailable

from balance_service._internal.host_slots import HostSlots
from balance_service.usage.limit import BUSY_MESSAGE, SLOTS, slots_for, usage_slots
from tests.helpers import clean_environment, running_gunicorn

USAGE = "/v1/usage?start_date=2025-11-01&end_date=2025-12-01"
DATED_BILLING = "/v1/dashboard/billing/usage?start_date=2025-11-01&end_date=2025-12-01"
LIFETIME_BILLING = "/v1/dashboard/billing/usage"
BALANCE = "/v1/balance"


@contextmanager
def every_slot_held(slots: HostSlots) -> Iterator[None]:
    """Take all the slots, as that many other requests in the middle of a usage query would."""
    with ExitStack() as stack:
        for _ in range(SLOTS):
            stack.enter_context(slots.take())
        yield


def assert_busy(response_status: int, headers, body: bytes) -> None:
    assert response_status == 503
    assert headers["Retry-After"] == "1"
    assert headers["Content-Type"] == "application/json"
    assert json.loads(body) == {"success": False, "message": BUSY_MESSAGE}


@pytest.mark.parametrize(
    "query", ["?start_date=0001-01-01&end_date=9999-12-31", "?start_date=2024-01-01&end_date=2025-01-02"]
)
def test_dated_billing_usage_over_more_than_366_days_is_refused_and_nothing_is_summed(
    client, auth, november, count_statements, query
):
    with count_statements() as statements:
        response = client.get(LIFETIME_BILLING + query, headers=auth(november.work))
    assert response.status_code == 400
    assert response.get_json() == {"success": False, "message": "The range may cover at most 366 days"}
    assert not [s for s in statements if "logs" in s.lower()]


def test_dated_billing_usage_of_366_days_is_answered(client, auth, november):
    response = client.get(LIFETIME_BILLING + "?start_date=2025-01-01&end_date=2026-01-02", headers=auth(november.work))
    assert response.status_code == 200 and response.get_json()["success"] is True


def test_while_every_slot_is_held_usage_answers_503_at_once_and_balances_keep_answering(
    app, client, auth, november, count_statements
):
    headers = auth(november.work)
    with app.app_context():
        slots = usage_slots()
    with every_slot_held(slots):
        for path in (USAGE, DATED_BILLING):
            with count_statements() as statements:
                response = client.get(path, headers=headers)
            assert_busy(response.status_code, response.headers, response.data)
            assert not [s for s in statements if "logs" in s.lower()], "a refused request must not query the logs"
        assert client.get(BALANCE, headers=headers).status_code == 200
        # Without dates the billing usage is the lifetime figure: no log query, no slot.
        assert client.get(LIFETIME_BILLING, headers=headers).status_code == 200
    assert client.get(USAGE, headers=headers).status_code == 200
    assert client.get(DATED_BILLING, headers=headers).status_code == 200


@pytest.mark.backend_independent
def test_a_browser_page_can_read_the_503_and_its_retry_after(app, client, auth, create_token):
    with app.app_context():
        slots = usage_slots()
    with every_slot_held(slots):
        response = client.get(USAGE, headers=auth(create_token(), Origin="https://dashboard.example"))
    assert response.status_code == 503
    assert response.headers["Access-Control-Allow-Origin"] in ("*", "https://dashboard.example")
    assert "Retry-After" in response.headers["Access-Control-Expose-Headers"]


@pytest.mark.backend_independent
def test_a_slot_is_free_again_when_its_request_ends_even_by_an_error(tmp_path):
    slots = HostSlots(str(tmp_path / "slots"), 1, BUSY_MESSAGE)
    with pytest.raises(RuntimeError), slots.take():
        raise RuntimeError("the query failed")
    with slots.take(), pytest.raises(ServiceUnavailable, match=BUSY_MESSAGE), slots.take():
        pass


@pytest.mark.backend_independent
def test_apps_on_the_same_log_database_share_the_slots_and_others_do_not(tmp_path):
    first = slots_for(f"sqlite:///{tmp_path / 'a.sqlite3'}")
    same = slots_for(f"sqlite:///{tmp_path / 'a.sqlite3'}")
    other = slots_for(f"sqlite:///{tmp_path / 'b.sqlite3'}")
    assert first.paths == same.paths and not set(first.paths) & set(other.paths)
    with every_slot_held(first):
        with pytest.raises(ServiceUnavailable, match=BUSY_MESSAGE), same.take():
            pass
        with other.take():
            pass


# --- real gunicorn, sync workers (the default deployment) -------------------------------------------------------


def get(base: str, path: str, headers: dict[str, str], timeout: float = 10) -> tuple[int, dict, bytes]:
    host, port = base.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        connection.request("GET", path, headers=headers)
        response = connection.getresponse()
        return response.status, dict(response.headers), response.read()
    finally:
        connection.close()


@contextmanager
def served(database_url: str, tmp_path, workers: int, **settings: str) -> Iterator[str]:
    env = clean_environment(DATABASE_URL=database_url, WEB_CONCURRENCY=str(workers), **settings)
    with running_gunicorn(env, tmp_path / "gunicorn.log") as (base, _):
        deadline = time.monotonic() + 30
        while True:
            try:
                if get(base, "/healthz", {}, timeout=2)[0] == 200:
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise
            time.sleep(0.05)
        yield base


@pytest.mark.e2e
@pytest.mark.backend_independent
def test_gunicorn_workers_share_the_slots_of_every_process_on_the_host(database_url, auth, november, tmp_path):
    """The slots a worker sees are those every process on the host sees for that database: the test's."""
    headers = auth(november.work)
    with served(database_url, tmp_path, workers=2) as base:
        with every_slot_held(slots_for(database_url)):
            for _ in range(4):  # whichever worker answers
                assert_busy(*get(base, USAGE, headers))
                assert get(base, BALANCE, headers)[0] == 200
        assert get(base, USAGE, headers)[0] == 200


def _waiting_on_logs(admin) -> int:
    """Queries of other sessions waiting for a lock on ``logs``."""
    with admin.cursor() as cur:
        cur.execute("SELECT count(*) FROM pg_locks WHERE relation = 'logs'::regclass AND NOT granted")
        return cur.fetchone()[0]


@pytest.mark.e2e
@pytest.mark.parametrize("backend", ["postgresql"])
def test_usage_queries_in_flight_leave_the_other_workers_to_balances(database_url, auth, november, tmp_path):
    """``SLOTS`` usage requests stuck in the database hold their workers; the next usage request is refused at
    once and the remaining workers answer balances. Stuck behind a lock the test holds, not made slow."""
    headers = auth(november.work)
    url = make_url(database_url)
    locker = psycopg2.connect(host=url.host, port=url.port or 5432, user=url.username, dbname=url.database)
    admin = psycopg2.connect(host=url.host, port=url.port or 5432, user=url.username, dbname=url.database)
    admin.autocommit = True
    answers: list[int] = []
    with served(database_url, tmp_path, workers=SLOTS + 2, DB_STATEMENT_TIMEOUT_MS="20000") as base:
        assert get(base, USAGE, headers)[0] == 200  # the layout of logs is read and cached before the lock
        with locker.cursor() as cur:
            cur.execute("LOCK TABLE logs IN ACCESS EXCLUSIVE MODE")
        stuck = [
            threading.Thread(target=lambda: answers.append(get(base, USAGE, headers, timeout=30)[0]))
            for _ in range(SLOTS)
        ]
        try:
            for thread in stuck:
                thread.start()
            deadline = time.monotonic() + 15
            while _waiting_on_logs(admin) < SLOTS:
                assert time.monotonic() < deadline, "the usage queries did not reach the database"
                time.sleep(0.02)
            started = time.monotonic()
            assert_busy(*get(base, USAGE, headers))
            assert_busy(*get(base, DATED_BILLING, headers))
            for _ in range(5):
                assert get(base, BALANCE, headers)[0] == 200
            assert time.monotonic() - started < 3
        finally:
            locker.rollback()  # the stuck queries go on
            for thread in stuck:
                thread.join(timeout=30)
            locker.close()
            admin.close()
    assert answers == [200] * SLOTS
