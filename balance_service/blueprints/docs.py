"""``GET /openapi.json``: the API description, without authentication."""

from flask import Blueprint, Response, jsonify

from ..openapi import document

bp = Blueprint("docs", __name__)


@bp.get("/openapi.json")
def openapi_json() -> Response:
    """The document is served as it is: OpenAPI tools need it without a ``success`` wrapper."""
    return jsonify(document())
