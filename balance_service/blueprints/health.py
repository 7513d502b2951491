"""Liveness and readiness probes, without authentication."""

from flask import Blueprint, jsonify
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from .. import ratelimit
from ..extensions import db
from ..observability import count_database_error

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz():
    """The process is up and serving; says nothing about the database."""
    return jsonify(success=True, status="ok")


@bp.get("/readyz")
def readyz():
    """The database answers; a load balancer should stop sending traffic otherwise.

    ``limiter`` (``ratelimit.status``) does not change the status: a degraded limiter lets requests through.
    """
    try:
        db.session.execute(text("SELECT 1"))
    except SQLAlchemyError:
        db.session.rollback()
        count_database_error()
        message = "Database is not reachable"
        return jsonify(success=False, status="unavailable", message=message, limiter=ratelimit.status()), 503
    return jsonify(success=True, status="ready", limiter=ratelimit.status())
