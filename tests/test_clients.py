"""The service as its real callers use it: each client below sends and reads what that client does.

What each one sends and reads is in ../shared/clients.md; the code here is ours.
The paths without ``/v1`` are the same endpoints as those with it: same
answers, refusals, CORS, rate limiting and metrics.
"""

from __future__ import annotations

import datetime
import re
from decimal import ROUND_HALF_EVEN, Decimal

import pytest

from balance_service import create_app
from balance_service.gateway.tables import TOKEN_DISABLED, TOKEN_EXHAUSTED, TOKEN_EXPIRED, USER_DISABLED

DOCUMENTED_FIELDS = ["success", "remain_balance", "used_balance", "unlimited_quota"]
PAIRS = [("/v1/user/balance", "/user/balance"), ("/v1/balance", "/balance")]
DEAD_DATABASE = "sqlite:////nonexistent-dir/sub/balance.sqlite3"


class Failed(Exception):
    """What a client shows its user when the service says no."""


def documented_client(client, base: str, path: str, key: str) -> tuple[Decimal, Decimal, bool]:
    """A client written from the gateways' published doc page: it tests ``success``, not the status."""
    body = client.get(base + path, headers={"Authorization": f"Bearer {key}"}).get_json()
    if not body["success"]:
        raise Failed(body["message"])
    return body["remain_balance"], body["used_balance"], body["unlimited_quota"]


def cc_switch_general(client, base_url: str, key: str) -> Decimal:
    """cc-switch's default "General" usage script: ``{baseUrl}/user/balance``, top-level ``balance`` in USD."""
    response = client.get(
        f"{base_url}/user/balance", headers={"Authorization": f"Bearer {key}", "User-Agent": "cc-switch/1.0"}
    )
    body = response.get_json()
    if response.status_code != 200 or not body.get("success"):
        raise Failed(body.get("message", f"HTTP {response.status_code}"))
    return body["balance"]


def balance_monitor(client, base_url: str, key: str) -> dict:
    """The API-Balance-Monitor extension's custom template: reads balance, used, total, currency, is_active, message."""
    body = client.get(f"{base_url}/user/balance", headers={"Authorization": f"Bearer {key}"}).get_json()
    return {name: body.get(name) for name in ("balance", "used", "total", "currency", "is_active", "message")}


def nextchat_usage(client, base_url: str, key: str, today: datetime.date) -> tuple[Decimal, Decimal]:
    """NextChat's billing pair (no ``/v1``): used this month = total_usage / 100, total = hard_limit_usd.

    Both are rounded to cents as NextChat rounds them. A failure status is an
    error; on failure it looks for ``error.message`` in the body.
    """
    start = today.replace(day=1).isoformat()
    end = (today + datetime.timedelta(days=1)).isoformat()
    headers = {"Authorization": f"Bearer {key}"}
    used = client.get(f"{base_url}/dashboard/billing/usage?start_date={start}&end_date={end}", headers=headers)
    subscription = client.get(f"{base_url}/dashboard/billing/subscription", headers=headers)
    for response in (used, subscription):
        if not 200 <= response.status_code < 300:
            error = (response.get_json() or {}).get("error") or {}
            raise Failed(error.get("message") or f"failed to query usage (HTTP {response.status_code})")
    cents = used.get_json()["total_usage"].quantize(Decimal(1), rounding=ROUND_HALF_EVEN)
    total = subscription.get_json()["hard_limit_usd"].quantize(Decimal("0.01"), rounding=ROUND_HALF_EVEN)
    return cents / 100, total


@pytest.fixture
def account(create_user, create_token):
    """An account with 3 USD left and 0.5 USD spent, and a key on it with 1.5 USD left and 0.25 USD spent."""
    owner = create_user(quota=1500000, used_quota=250000)
    return create_token(user_id=owner, remain_quota=750000, used_quota=125000)


@pytest.mark.parametrize("paths", PAIRS)
def test_the_documented_client_reads_the_same_figures_on_both_paths(client, account, paths):
    expected = {
        "/v1/user/balance": (Decimal(3), Decimal("0.5"), False),
        "/v1/balance": (Decimal("1.5"), Decimal("0.25"), False),
    }[paths[0]]
    for path in paths:
        assert documented_client(client, "", path, account) == expected
    with_v1, without = (client.get(p, headers={"Authorization": f"Bearer {account}"}) for p in paths)
    assert with_v1.get_data() == without.get_data()
    assert list(without.get_json())[:4] == DOCUMENTED_FIELDS


def test_the_documented_client_sees_minus_one_for_an_unlimited_key(client, create_token):
    key = create_token(unlimited_quota=True, used_quota=500000)
    assert documented_client(client, "", "/balance", key) == (-1, 1, True)


@pytest.mark.parametrize("path", ["/user/balance", "/v1/user/balance", "/balance", "/v1/balance"])
def test_the_documented_client_gets_the_documented_messages(client, create_token, path):
    with pytest.raises(Failed, match="^Failed to get user quota$"):
        documented_client(client, "", path, create_token(user_id=987654321))
    dead = create_app({"TESTING": True, "DATABASE_URL": DEAD_DATABASE}).test_client()
    with pytest.raises(Failed, match="^Failed to get used quota$"):
        documented_client(dead, "", path, "sk-" + "a" * 48)
    response = client.get(path)
    assert (response.status_code, response.get_json()["message"]) == (401, "No Authorization header")


@pytest.mark.parametrize(
    "fields", [{"status": TOKEN_EXPIRED}, {"expired_time": 1}, {"status": TOKEN_EXHAUSTED, "remain_quota": 0}]
)
def test_expired_and_exhausted_keys_can_still_read_everything(client, create_token, fields):
    key = create_token(used_quota=500000, **{"remain_quota": 250000, **fields})
    for path in ("/balance", "/v1/balance", "/user/balance", "/v1/user/balance"):
        assert documented_client(client, "", path, key)[2] is False
    assert nextchat_usage(client, "", key, datetime.date(2026, 3, 14))[0] == 1


def test_an_expired_key_cannot_create_an_alert(client, auth, create_token):
    response = client.post(
        "/v1/user/balance/alerts",
        json={"threshold": 1, "webhook_url": "https://93.184.215.14/hook"},
        headers=auth(create_token(expired_time=1)),
    )
    assert (response.status_code, response.get_json()["message"]) == (403, "Token has expired")


def test_disabled_keys_and_disabled_owners_stay_refused(client, create_user, create_token):
    disabled = create_token(status=TOKEN_DISABLED, remain_quota=500000)
    blocked = create_token(user_id=create_user(status=USER_DISABLED), remain_quota=500000)
    for path in ("/balance", "/user/balance"):
        with pytest.raises(Failed, match="Token is disabled"):
            documented_client(client, "", path, disabled)
        with pytest.raises(Failed, match="User is disabled"):
            documented_client(client, "", path, blocked)


def test_cc_switch_reads_the_account_balance_from_a_base_url_without_v1(client, account):
    assert cc_switch_general(client, "", account) == 3


def test_cc_switch_with_a_base_url_ending_in_v1_reads_the_same(client, account):
    assert cc_switch_general(client, "/v1", account) == 3


def test_cc_switch_shows_the_message_of_a_refused_key(client):
    with pytest.raises(Failed, match="Invalid token"):
        cc_switch_general(client, "", "sk-" + "q" * 48)


def test_the_balance_monitor_extension_reads_balance_and_used(client, account):
    # total, currency and is_active are not ours to give: the extension shows what it gets.
    assert balance_monitor(client, "", account) == {
        "balance": 3,
        "used": Decimal("0.5"),
        "total": None,
        "currency": None,
        "is_active": None,
        "message": None,
    }
    assert balance_monitor(client, "", "sk-" + "q" * 48)["message"] == "Invalid token"


def test_nextchat_shows_the_key_usage_and_limit_without_v1(client, account):
    used, total = nextchat_usage(client, "", account, datetime.date(2026, 1, 31))
    assert (used, total) == (Decimal("0.25"), Decimal("1.75"))
    assert total - used == documented_client(client, "", "/balance", account)[0]


def test_nextchat_gets_a_failure_status_and_no_error_object_from_a_refusal(client):
    """Our refusals carry ``message`` at the top level, not OpenAI's ``error.message``: NextChat goes by the
    failure status and shows its own text."""
    with pytest.raises(Failed, match=r"^failed to query usage \(HTTP 401\)$"):
        nextchat_usage(client, "", "sk-" + "q" * 48, datetime.date(2026, 1, 31))


ORIGIN = "https://page.example"


@pytest.mark.backend_independent
@pytest.mark.parametrize("path", ["/user/balance", "/balance"])
def test_a_browser_page_may_call_the_paths_without_v1(client, account, path):
    preflight = client.options(
        path,
        headers={
            "Origin": ORIGIN,
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "authorization",
        },
    )
    assert preflight.status_code == 200
    assert preflight.headers["Access-Control-Allow-Origin"] in ("*", ORIGIN)
    for key in (account, "sk-" + "q" * 48):
        response = client.get(path, headers={"Authorization": f"Bearer {key}", "Origin": ORIGIN})
        assert response.headers["Access-Control-Allow-Origin"] in ("*", ORIGIN)


@pytest.mark.backend_independent
def test_failed_attempts_on_any_path_count_toward_one_limit(make_app, account):
    client = make_app(AUTH_FAILURE_LIMIT="2/minute").test_client()
    bad = {"Authorization": "Bearer sk-" + "q" * 48}
    assert client.get("/user/balance", headers=bad).status_code == 401
    assert client.get("/balance", headers=bad).status_code == 401
    for path in ("/v1/balance", "/balance", "/user/balance"):
        assert client.get(path, headers={"Authorization": f"Bearer {account}"}).status_code == 429


@pytest.mark.backend_independent
def test_metrics_label_the_paths_without_v1_by_their_own_route(client, account):
    for path in ("/user/balance", "/balance", "/balance"):
        client.get(path, headers={"Authorization": f"Bearer {account}"})
    text = client.get("/metrics").get_data(as_text=True)

    def count(route: str) -> float:
        pattern = (
            rf'balance_service_http_requests_total\{{method="GET",route="{re.escape(route)}",status="200"\}} (\S+)'
        )
        return float(re.search(pattern, text).group(1))

    assert (count("/user/balance"), count("/balance")) == (1, 2)
