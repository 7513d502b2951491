"""Prometheus metrics at /metrics: requests by route template and status, latency, database errors."""

from __future__ import annotations

import os
import signal
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from balance_service import create_app
from tests.helpers import clean_environment, running_gunicorn

REQUESTS = "balance_service_http_requests_total"
LATENCY_COUNT = "balance_service_http_request_duration_seconds_count"
DB_ERRORS = "balance_service_database_errors_total"


def samples(text: str, name: str, **labels: str) -> float:
    """Sum of the samples called ``name`` whose labels include ``labels``."""
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
    )


def scrape(client) -> str:
    response = client.get("/metrics")
    assert response.status_code == 200
    return response.get_data(as_text=True)


@pytest.mark.backend_independent
def test_requests_are_counted_by_route_template_and_status(client, create_token, auth):
    key = create_token(remain_quota=10)
    for _ in range(3):
        assert client.get("/v1/balance", headers=auth(key)).status_code == 200
    for _ in range(2):
        assert client.get("/v1/balance", headers=auth("sk-" + "x" * 48)).status_code == 401
    text = scrape(client)
    assert samples(text, REQUESTS, method="GET", route="/v1/balance", status="200") == 3
    assert samples(text, REQUESTS, method="GET", route="/v1/balance", status="401") == 2
    assert samples(text, LATENCY_COUNT, route="/v1/balance") == 5


@pytest.mark.backend_independent
def test_unknown_paths_share_one_label_instead_of_one_series_each(client):
    for path in ("/v1/a", "/v1/b", "/v1/sk-" + "k" * 48, "/nothing"):
        assert client.get(path).status_code == 404
    text = scrape(client)
    assert samples(text, REQUESTS, route="unmatched", status="404") == 4
    assert "/v1/a" not in text
    assert "k" * 48 not in text


@pytest.mark.backend_independent
def test_invented_methods_are_counted_as_other(client):
    assert client.open("/v1/balance", method="BREW").status_code == 405
    text = scrape(client)
    assert samples(text, REQUESTS, method="other", status="405") == 1
    assert "BREW" not in text


@pytest.mark.backend_independent
def test_metrics_need_no_key_and_are_not_offered_to_other_origins(client):
    response = client.get("/metrics", headers={"Origin": "https://dashboard.example"})
    assert response.status_code == 200
    assert response.content_type.startswith("text/plain")
    assert "Access-Control-Allow-Origin" not in response.headers


@pytest.mark.parametrize(
    "url", ["sqlite:////nonexistent-dir/sub/balance.sqlite3", "postgresql://postgres@127.0.0.1:1/x"]
)
def test_database_errors_are_counted_for_requests_and_readiness_probes(url, auth):
    client = create_app({"TESTING": True, "DATABASE_URL": url, "AUTH_FAILURE_LIMIT": None}).test_client()
    assert client.get("/v1/balance", headers=auth("sk-" + "a" * 48)).status_code == 503
    assert client.get("/v1/user/balance", headers=auth("sk-" + "a" * 48)).status_code == 503
    assert client.get("/readyz").status_code == 503
    assert samples(scrape(client), DB_ERRORS) == 3


def test_a_healthy_database_counts_no_errors(client):
    assert client.get("/readyz").status_code == 200
    assert samples(scrape(client), DB_ERRORS) == 0


# --- several gunicorn workers -------------------------------------------------


def _children(pid: int) -> set[int]:
    """Live child processes of ``pid``, read from /proc (gunicorn's workers)."""
    found = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == pid and fields[0] != "Z":
            found.add(int(entry))
    return found


def _get(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.status, response.read().decode()


def _wait_until(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            result = condition()
        except OSError:
            result = None
        if result:
            return result
        time.sleep(0.1)
    pytest.fail(f"timed out waiting for {what}")


@contextmanager
def gunicorn_three_workers(tmp_path: Path, metrics_dir: Path):
    """A real gunicorn, 3 sync workers, multiprocess metrics in ``metrics_dir``; yields (base URL, master pid)."""
    env = clean_environment(
        PROMETHEUS_MULTIPROC_DIR=str(metrics_dir),
        DATABASE_URL=f"sqlite:///{tmp_path / 'balance.sqlite3'}",
    )
    with running_gunicorn(env, tmp_path / "gunicorn.log", "-w", "3") as (base, process):
        _wait_until(lambda: len(_children(process.pid)) == 3 and _get(base + "/metrics")[0] == 200, 30, "gunicorn")
        yield base, process.pid


@pytest.mark.e2e
def test_three_gunicorn_workers_report_one_total_even_after_every_worker_was_replaced(tmp_path):
    with gunicorn_three_workers(tmp_path, tmp_path / "prometheus") as (base, master):
        _count_across_workers_and_respawns(base, master)


def _count_across_workers_and_respawns(base: str, master: int) -> None:
    n = 45
    for _ in range(n):
        assert _get(base + "/healthz")[0] == 200  # a new connection each time: any worker may answer
    for _ in range(6):  # whichever worker answers the scrape, it reports all of them
        assert samples(_get(base + "/metrics")[1], REQUESTS, route="/healthz", status="200") == n

    # Replace every worker: the counts now live only in dead workers' files.
    original = _children(master)
    for pid in original:
        os.kill(pid, signal.SIGTERM)
    _wait_until(lambda: len(_children(master) - original) == 3 and not (_children(master) & original), 30, "respawn")
    text = _wait_until(lambda: _get(base + "/metrics")[1], 30, "a scrape")
    assert samples(text, REQUESTS, route="/healthz", status="200") == n
    assert samples(text, LATENCY_COUNT, route="/healthz") == n


@pytest.mark.e2e
def test_a_restarted_gunicorn_starts_counting_from_zero(tmp_path):
    metrics_dir = tmp_path / "prometheus"
    with gunicorn_three_workers(tmp_path, metrics_dir) as (base, _):
        for _ in range(5):
            _get(base + "/healthz")
    (metrics_dir / "README").write_text("not ours: must survive the clean-up")
    with gunicorn_three_workers(tmp_path, metrics_dir) as (base, _):
        assert samples(_get(base + "/metrics")[1], REQUESTS, route="/healthz") == 0
        _get(base + "/healthz")
        assert samples(_get(base + "/metrics")[1], REQUESTS, route="/healthz") == 1
    assert (metrics_dir / "README").exists()
