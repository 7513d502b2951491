"""``GET /metrics``: Prometheus text exposition, without authentication (keep it off the public side of the proxy).

Under gunicorn, ``PROMETHEUS_MULTIPROC_DIR`` (prometheus_client's own
variable) makes every worker write its numbers to files there and this
endpoint adds them up, so a scrape that lands on any one worker still reports
the whole service.
"""

from flask import Blueprint, Response, current_app
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest, multiprocess

from ..observability import metrics

bp = Blueprint("metrics", __name__)


@bp.get("/metrics")
def metrics_endpoint() -> Response:
    collected = CollectorRegistry()
    try:
        multiprocess.MultiProcessCollector(collected)  # the directory prometheus_client writes to, if any
    except ValueError:  # not in multiprocess mode: this process's own numbers
        collected = metrics(current_app).registry
    return Response(generate_latest(collected), content_type=CONTENT_TYPE_LATEST)
