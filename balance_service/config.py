"""Configuration, read from environment variables in one place.

Every setting the service understands is listed here (and in the README's
configuration table); nothing else in the package reads ``os.environ``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

UNITS = ("USD", "CNY", "tokens")


class ConfigError(ValueError):
    """A setting has a value the service cannot run with; raised at start-up, not per request."""


def _decimal(name: str, raw: str) -> Decimal:
    try:
        value = Decimal(raw)
    except InvalidOperation:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None
    if not value.is_finite() or value <= 0:
        raise ConfigError(f"{name} must be a positive number, got {raw!r}")
    return value


def _int(name: str, raw: str, minimum: int = 0) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, got {raw!r}")
    return value


def _bool(name: str, raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("", "0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name} must be true or false, got {raw!r}")


def _seconds(name: str, raw: str, allow_zero: bool = False) -> float:
    """A duration for sockets and sleeps (time, not money, so a float is fine)."""
    try:
        value = Decimal(raw)
    except InvalidOperation:
        raise ConfigError(f"{name} must be a number of seconds, got {raw!r}") from None
    if not value.is_finite() or value < 0 or (value == 0 and not allow_zero):
        raise ConfigError(f"{name} must be a {'non-negative' if allow_zero else 'positive'} number, got {raw!r}")
    return float(value)


def normalize_database_url(url: str) -> str:
    """Pin PostgreSQL URLs without a driver to psycopg2, and accept the ``postgres://`` spelling.

    SQLAlchemy 2.1 maps a bare ``postgresql://`` to psycopg 3, which this
    service does not ship; hosting platforms often hand out ``postgres://``.
    """
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg2://" + url[len(prefix) :]
    return url


def engine_options(url: str, connect_timeout: int, statement_timeout_ms: int) -> dict[str, Any]:
    """Pool settings that suit short requests in forked gunicorn workers.

    ``pool_pre_ping`` replaces connections the database dropped (restart,
    failover) instead of failing one request per dead connection;
    ``hide_parameters`` keeps API keys out of any logged SQL error.
    """
    options: dict[str, Any] = {"pool_pre_ping": True, "hide_parameters": True}
    if url.startswith("postgresql"):
        options["pool_recycle"] = 1800
        options["connect_args"] = {
            "connect_timeout": connect_timeout,
            "options": f"-c statement_timeout={statement_timeout_ms}",
            "application_name": "balance-service",
        }
    elif url.startswith("sqlite"):
        options["connect_args"] = {"timeout": max(connect_timeout, 1)}
    elif url.startswith("mysql"):
        options["pool_recycle"] = 1800
        options["connect_args"] = {"connect_timeout": connect_timeout}
    return options


def from_env(env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Build the Flask config mapping from environment variables (``os.environ`` by default)."""
    env = os.environ if env is None else env
    unit = env.get("BALANCE_UNIT", "USD").strip()
    matches = [u for u in UNITS if u.lower() == unit.lower()]
    if not matches:
        raise ConfigError(f"BALANCE_UNIT must be one of {', '.join(UNITS)}, got {unit!r}")
    roles_raw = env.get("UNLIMITED_USER_ROLES", "").strip()
    roles = frozenset(_int("UNLIMITED_USER_ROLES", r.strip()) for r in roles_raw.split(",") if r.strip())
    origins_raw = env.get("CORS_ORIGINS", "*").strip() or "*"
    origins: str | list[str] = "*" if origins_raw == "*" else [o.strip() for o in origins_raw.split(",") if o.strip()]
    connect_timeout = _int("DB_CONNECT_TIMEOUT", env.get("DB_CONNECT_TIMEOUT", "3"), 1)
    statement_timeout = _int("DB_STATEMENT_TIMEOUT_MS", env.get("DB_STATEMENT_TIMEOUT_MS", "5000"), 0)
    url = normalize_database_url(env.get("DATABASE_URL", "").strip())
    config: dict[str, Any] = {
        "BALANCE_UNIT": matches[0],
        "QUOTA_PER_UNIT": _decimal("QUOTA_PER_UNIT", env.get("QUOTA_PER_UNIT", "500000")),
        "USD_EXCHANGE_RATE": _decimal("USD_EXCHANGE_RATE", env.get("USD_EXCHANGE_RATE", "7.3")),
        "UNLIMITED_USER_ROLES": roles,
        "CORS_ORIGINS": origins,
        "CORS_MAX_AGE": _int("CORS_MAX_AGE", env.get("CORS_MAX_AGE", "86400")),
        "DB_CONNECT_TIMEOUT": connect_timeout,
        "DB_STATEMENT_TIMEOUT_MS": statement_timeout,
        "LOG_LEVEL": env.get("LOG_LEVEL", "INFO").upper(),
        # Balance alerts (balance_service/alerts): webhook targets and delivery.
        "ALERT_ALLOW_PRIVATE_TARGETS": _bool(
            "ALERT_ALLOW_PRIVATE_TARGETS", env.get("ALERT_ALLOW_PRIVATE_TARGETS", "false")
        ),
        "ALERT_MAX_PER_USER": _int("ALERT_MAX_PER_USER", env.get("ALERT_MAX_PER_USER", "20"), 1),
        "ALERT_WEBHOOK_TIMEOUT": _seconds("ALERT_WEBHOOK_TIMEOUT", env.get("ALERT_WEBHOOK_TIMEOUT", "5")),
        "ALERT_WEBHOOK_ATTEMPTS": _int("ALERT_WEBHOOK_ATTEMPTS", env.get("ALERT_WEBHOOK_ATTEMPTS", "3"), 1),
        "ALERT_RETRY_BACKOFF": _seconds("ALERT_RETRY_BACKOFF", env.get("ALERT_RETRY_BACKOFF", "1"), allow_zero=True),
    }
    if url:
        config["SQLALCHEMY_DATABASE_URI"] = url
    return config


def finalize(config: dict[str, Any], instance_path: str) -> dict[str, Any]:
    """Fill in what depends on other settings: the default SQLite file and engine options."""
    if not config.get("SQLALCHEMY_DATABASE_URI"):
        config["SQLALCHEMY_DATABASE_URI"] = "sqlite:///" + os.path.join(instance_path, "balance.sqlite3")
    config["SQLALCHEMY_DATABASE_URI"] = normalize_database_url(config["SQLALCHEMY_DATABASE_URI"])
    config.setdefault(
        "SQLALCHEMY_ENGINE_OPTIONS",
        engine_options(
            config["SQLALCHEMY_DATABASE_URI"],
            config.get("DB_CONNECT_TIMEOUT", 3),
            config.get("DB_STATEMENT_TIMEOUT_MS", 5000),
        ),
    )
    return config
