"""``GET /openapi.json``: the API description, without authentication."""

from flask import Blueprint, Response, current_app

from ..openapi import document

bp = Blueprint("docs", __name__)


@bp.get("/openapi.json")
def openapi_json() -> Response:
    """The document is served as it is: OpenAPI tools need it without a ``success`` wrapper.

    It never changes while the process runs, so it is serialized once per app.
    """
    body = current_app.extensions.get("openapi_json")
    if body is None:
        body = current_app.extensions["openapi_json"] = current_app.json.dumps(document())
    return Response(body, mimetype="application/json")
