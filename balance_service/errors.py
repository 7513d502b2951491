"""One exception type for refusals and the handlers that render every error as JSON."""

from __future__ import annotations

import logging

from flask import Flask, Response, jsonify
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.exceptions import HTTPException

from .observability import count_database_error

log = logging.getLogger(__name__)


class ApiError(Exception):
    """A refusal with the HTTP status and the message the caller should see."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def error_body(message: str) -> dict:
    return {"success": False, "message": message}


def _api_error(e: ApiError) -> tuple[Response, int]:
    return jsonify(error_body(e.message)), e.status


def _http_error(e: HTTPException) -> Response:
    # Build on Werkzeug's own response so headers such as Allow (405) survive.
    response = e.get_response()
    response.set_data(jsonify(error_body(e.description or e.name)).get_data())
    response.content_type = "application/json"
    return response


#: The documented message for a database failure; clients compare it, so nothing is appended.
DATABASE_ERROR_MESSAGE = "Failed to get used quota"


def _database_error(e: SQLAlchemyError) -> tuple[Response, int]:
    # Parameters are hidden on the engine, so this line cannot carry a key.
    # The request id is on the line (logging_setup); the answer carries only the documented message.
    log.error("database error: %s: %s", type(e).__name__, getattr(e, "orig", None) or e.code)
    count_database_error()
    return jsonify(error_body(DATABASE_ERROR_MESSAGE)), 503


def _unexpected_error(e: Exception) -> tuple[Response, int]:
    log.exception("unhandled error")
    return jsonify(error_body("Internal server error")), 500


def register_error_handlers(app: Flask) -> None:
    app.register_error_handler(ApiError, _api_error)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(SQLAlchemyError, _database_error)
    app.register_error_handler(Exception, _unexpected_error)
