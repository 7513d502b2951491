"""Configuration, read from environment variables in one place.

Every setting the service understands is listed here (and in the README's
configuration table); nothing else in the package reads ``os.environ``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any, NamedTuple
from urllib.parse import parse_qsl, unquote, urlparse

#: Every environment variable this module reads (tests clear them all, so a
#: developer's own settings cannot change what a test sees).
ENV_SETTINGS = (
    "DATABASE_URL",
    "LOG_DATABASE_URL",
    "BALANCE_UNIT",
    "UNLIMITED_USER_ROLES",
    "CORS_ORIGINS",
    "CORS_MAX_AGE",
    "DB_CONNECT_TIMEOUT",
    "DB_STATEMENT_TIMEOUT_MS",
    "LOG_LEVEL",
    "AUTH_FAILURE_LIMIT",
    "RATELIMIT_STORAGE_URI",
    "PROXY_FIX_X_FOR",
    "PROMETHEUS_MULTIPROC_DIR",
    "ALERT_ALLOW_PRIVATE_TARGETS",
    "ALERT_MAX_PER_USER",
    "ALERT_WEBHOOK_TIMEOUT",
    "ALERT_WEBHOOK_ATTEMPTS",
    "ALERT_RETRY_BACKOFF",
    "ALERT_DNS_TIMEOUT",
    "ALERT_DELIVERY_WORKERS",
    "ALERT_DELIVERY_DEADLINE",
    "ALERT_FAILURE_BACKOFF_MAX",
)

#: Settings earlier versions read, with what replaces each; any of them set (not empty) stops start-up, saying so.
REMOVED = {
    "BILLING_SOURCE": "the billing endpoints follow the gateway's own DisplayTokenStatEnabled option",
    "QUOTA_PER_UNIT": "the gateway's own QuotaPerUnit option (its options table) is used",
    "USD_EXCHANGE_RATE": "the gateway's own USDExchangeRate option (its options table) is used",
    "GATEWAY_LAYOUT_TTL": "the gateway's table layout is read again every minute, not configurable",
    "GATEWAY_OPTIONS_TTL": "the gateway's options are read again every minute, not configurable",
}

UNITS = ("USD", "CNY", "tokens")
RATELIMIT_SCHEMES = ("memory", "redis", "rediss", "redis+unix")


class ConfigError(ValueError):
    """A setting has a value the service cannot run with; raised at start-up, not per request."""


def _int(name: str, raw: str, minimum: int = 0, maximum: int | None = None) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, got {raw!r}")
    if maximum is not None and value > maximum:
        raise ConfigError(f"{name} must be at most {maximum}, got {raw!r}")
    return value


def _unit(raw: str) -> str | None:
    """``BALANCE_UNIT``: USD, CNY or tokens (any case); empty or unset is ``None``, the gateway's own unit."""
    unit = raw.strip()
    if not unit:
        return None
    matches = [u for u in UNITS if u.lower() == unit.lower()]
    if not matches:
        raise ConfigError(f"BALANCE_UNIT must be one of {', '.join(UNITS)}, got {unit!r}")
    return matches[0]


def _log_level(raw: str) -> str:
    level = raw.strip().upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        raise ConfigError(f"LOG_LEVEL must be DEBUG, INFO, WARNING, ERROR or CRITICAL, got {raw!r}")
    return level


class Rate(NamedTuple):
    """``amount`` events per moving window of ``seconds``."""

    amount: int
    seconds: int


#: The units AUTH_FAILURE_LIMIT may name, singular or plural, in seconds (a month is 30 days, a year 360,
#: as the ``limits`` library that read this setting before counted them).
_RATE_UNITS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400, "month": 30 * 86400, "year": 360 * 86400}
#: ``20/minute``, ``20 per minute``, ``5/10 seconds``, ``100 per 2 hours``.
_RATE = re.compile(r"\s*([0-9]{1,9})\s*(?:/|per)\s*([0-9]{1,9})?\s*([a-z]+?)s?\s*", re.IGNORECASE)
_OFF = ("", "0", "off", "none", "false")


def parse_rate(raw: str) -> Rate | None:
    """``AUTH_FAILURE_LIMIT``'s rate such as ``20/minute`` or ``5 per 10 seconds``; ``None`` for ``0``/``off``."""
    if raw.strip().lower() in _OFF:
        return None
    match = _RATE.fullmatch(raw)
    if match is None or match[3].lower() not in _RATE_UNITS or int(match[1]) < 1 or int(match[2] or 1) < 1:
        raise ConfigError(f"AUTH_FAILURE_LIMIT must be one rate such as '20/minute', or 'off'; got {raw!r}")
    return Rate(int(match[1]), int(match[2] or 1) * _RATE_UNITS[match[3].lower()])


def auth_failure_limit(raw: str) -> str | None:
    """``AUTH_FAILURE_LIMIT``: a rate such as ``20/minute`` (see :func:`parse_rate`), or ``0``/``off`` (``None``)."""
    return None if parse_rate(raw) is None else raw.strip()


def _bool(name: str, raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("", "0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name} must be true or false, got {raw!r}")


def _seconds(name: str, raw: str, allow_zero: bool = False, maximum: int | None = None) -> float:
    """A duration for sockets and sleeps (time, not money, so a float is fine).

    ``maximum`` keeps huge values out: ``1e400`` would become ``float('inf')``,
    which socket timeouts reject with an OverflowError.
    """
    try:
        value = Decimal(raw)
    except InvalidOperation:
        raise ConfigError(f"{name} must be a number of seconds, got {raw!r}") from None
    if not value.is_finite() or value < 0 or (value == 0 and not allow_zero):
        raise ConfigError(f"{name} must be a {'non-negative' if allow_zero else 'positive'} number, got {raw!r}")
    if maximum is not None and value > maximum:
        raise ConfigError(f"{name} must be at most {maximum} seconds, got {raw!r}")
    return float(value)


#: ``https://*.example.com`` (optionally with a port): any subdomain of example.com, at any depth.
_DNS_LABEL = r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?"
_SUBDOMAIN_WILDCARD = re.compile(rf"(https?)://\*\.((?:{_DNS_LABEL}\.)+{_DNS_LABEL})(:\d{{1,5}})?")
#: What flask-cors would take as a regular expression in an origin string.
_REGEX_CHARACTERS = frozenset("*\\]?$^[()")


def cors_origins(raw: str) -> str | list[str | re.Pattern[str]]:
    """``CORS_ORIGINS``: ``*`` alone, or comma-separated exact origins and ``https://*.example.com`` entries.

    flask-cors reads any origin containing ``*``, ``?``, ``$``, brackets or a
    backslash as an unanchored regular expression, so ``https://*.example.com``
    would also allow ``https://xexample.com.attacker.net``. Such an entry is
    turned into an anchored, escaped pattern here (one or more subdomain
    labels, then exactly that domain and port; the bare domain is not
    included); every other entry with one of those characters stops the
    service at start-up.
    """
    value = raw.strip() or "*"
    if value == "*":
        return "*"
    origins: list[str | re.Pattern[str]] = []
    for entry in (part.strip() for part in value.split(",")):
        if not entry:
            continue
        if _REGEX_CHARACTERS.isdisjoint(entry):
            origins.append(entry)
            continue
        wildcard = _SUBDOMAIN_WILDCARD.fullmatch(entry.lower())
        if wildcard is None:
            raise ConfigError(
                "CORS_ORIGINS entries are exact origins (https://app.example.com), a subdomain wildcard "
                f"(https://*.example.com), or '*' alone; got {entry!r}"
            )
        scheme, domain, port = wildcard.groups()
        pattern = rf"{scheme}://(?:{_DNS_LABEL}\.)+{re.escape(domain + (port or ''))}\Z"
        origins.append(re.compile(pattern, re.IGNORECASE))
    return origins


class RedisTarget(NamedTuple):
    """Where and how to reach the Redis of ``RATELIMIT_STORAGE_URI`` (see :func:`redis_target`)."""

    host: str
    port: int
    #: The server's unix socket (``redis+unix://``); host and port are then unused.
    unix_socket: str | None
    username: str | None
    password: str | None
    db: int
    tls: bool
    #: CA certificates to check the server's certificate with (``ssl_ca_certs``); None: the system's.
    ca_file: str | None
    #: False only with ``ssl_cert_reqs=none``: any certificate is taken.
    verify: bool

    def __str__(self) -> str:
        """Where, for log lines: never the credentials."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        where = f"unix:{self.unix_socket}" if self.unix_socket else f"{host}:{self.port}"
        return f"{'rediss' if self.tls else 'redis'} {where} db {self.db}"


#: What a Redis URL's query may set; anything else stops the start-up instead of being silently ignored.
_REDIS_QUERY = {"db", "ssl_ca_certs", "ssl_cert_reqs"}


def redis_target(url: str) -> RedisTarget:
    """Parse a Redis URL of ``RATELIMIT_STORAGE_URI``, in the forms the service has always taken.

    ``redis://[[user]:password@]host[:port][/db]``; ``rediss://`` the same
    over TLS, the server's certificate checked against the system's CAs (or
    ``?ssl_ca_certs=/path/ca.pem``; ``?ssl_cert_reqs=none`` takes any), as
    redis-py did; ``redis+unix://[[user]:password@]/path/to/socket[?db=N]``,
    the form the ``limits`` library documented. ``?db=N`` may be given with
    any of them. Error messages never repeat the URL: it may hold a password.
    """
    parsed = urlparse(url.strip())
    scheme = parsed.scheme
    if scheme not in ("redis", "rediss", "redis+unix"):
        raise ConfigError(f"RATELIMIT_STORAGE_URI must be a redis://, rediss:// or redis+unix:// URL, not {scheme}://")
    query = dict(parse_qsl(parsed.query, keep_blank_values=True))
    allowed = _REDIS_QUERY if scheme == "rediss" else {"db"}
    unknown = sorted(set(query) - allowed)
    if unknown:
        raise ConfigError(
            f"RATELIMIT_STORAGE_URI: a {scheme}:// URL may set only {', '.join(sorted(allowed))}, "
            f"not {', '.join(unknown)}"
        )
    try:
        port = parsed.port or 6379
    except ValueError:
        raise ConfigError("RATELIMIT_STORAGE_URI has an invalid port") from None
    username = unquote(parsed.username) if parsed.username else None
    password = unquote(parsed.password) if parsed.password else None
    if username and not password:
        raise ConfigError(
            "RATELIMIT_STORAGE_URI names a Redis user without a password: redis://user:password@host, "
            "or redis://:password@host for the default user"
        )
    path = unquote(parsed.path)
    db = query.get("db")
    if scheme == "redis+unix":
        if parsed.hostname or not path.startswith("/") or path == "/":
            raise ConfigError(
                "RATELIMIT_STORAGE_URI must name the socket's absolute path: redis+unix:///path/to/socket"
            )
        unix_socket = path
    else:
        unix_socket = None
        if db is None and path.strip("/"):
            db = path.strip("/")
    if db is not None and not (db.isascii() and db.isdigit()):
        raise ConfigError("RATELIMIT_STORAGE_URI's database must be a number: redis://host:6379/0")
    verify = query.get("ssl_cert_reqs", "required").lower()
    if verify not in ("required", "none"):
        raise ConfigError("RATELIMIT_STORAGE_URI's ssl_cert_reqs must be required (the default) or none")
    return RedisTarget(
        host=parsed.hostname or "localhost",
        port=port,
        unix_socket=unix_socket,
        username=username,
        password=password,
        db=int(db or 0),
        tls=scheme == "rediss",
        ca_file=query.get("ssl_ca_certs") or None,
        verify=verify == "required",
    )


def ratelimit_storage_uri(raw: str) -> str:
    """``RATELIMIT_STORAGE_URI``: ``memory://`` (per process) or a Redis URL (shared by all workers)."""
    value = raw.strip() or "memory://"
    scheme = urlparse(value).scheme
    if scheme not in RATELIMIT_SCHEMES:
        raise ConfigError(f"RATELIMIT_STORAGE_URI must be memory:// or a redis:// URL, not {scheme}://")
    if scheme != "memory":
        redis_target(value)
    return value


#: URL schemes without a driver, and the driver this service ships for each.
_DRIVERS = {
    "postgres://": "postgresql+psycopg2://",
    "postgresql://": "postgresql+psycopg2://",
    "mysql://": "mysql+pymysql://",
    "mariadb://": "mariadb+pymysql://",
}


def normalize_database_url(url: str) -> str:
    """Pin URLs without a driver to the one this service ships (psycopg2, PyMySQL).

    SQLAlchemy maps a bare ``postgresql://`` to psycopg 3 and a bare
    ``mysql://`` to mysqlclient, neither of which is installed; hosting
    platforms often hand out ``postgres://``.
    """
    for prefix, replacement in _DRIVERS.items():
        if url.startswith(prefix):
            return replacement + url[len(prefix) :]
    return url


#: ``LOG_DATABASE_URL`` schemes that mean ClickHouse (native protocol; ``clickhouses`` with TLS).
CLICKHOUSE_SCHEMES = ("clickhouse", "clickhouses")


def is_clickhouse_url(url: str) -> bool:
    """Whether a ``LOG_DATABASE_URL`` points at ClickHouse rather than a SQL database."""
    return urlparse(url.strip()).scheme.lower() in CLICKHOUSE_SCHEMES


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
    elif url.startswith(("mysql", "mariadb")):
        # Below the server's wait_timeout (8 h by default, often 5-10 min on
        # hosted MySQL) so the pool never hands out a connection it closed.
        options["pool_recycle"] = 280
        options["connect_args"] = {
            "connect_timeout": connect_timeout,
            "charset": "utf8mb4",
            # MySQL has no per-session statement timeout that MariaDB shares,
            # so bound each round trip on the client side instead.
            "read_timeout": _timeout_from_ms(statement_timeout_ms),
            "write_timeout": _timeout_from_ms(statement_timeout_ms),
        }
    return options


def _timeout_from_ms(milliseconds: int) -> float | None:
    """A socket timeout from ``DB_STATEMENT_TIMEOUT_MS``; 0 means no limit, as in PostgreSQL."""
    return milliseconds / 1000 if milliseconds else None


def _clickhouse_url(raw: str) -> str:
    """A ``clickhouse://`` URL checked at start-up: it must name a host (the driver's port default is 9000)."""
    url = raw.strip()
    parsed = urlparse(url)
    try:
        parsed.port  # noqa: B018 - raises ValueError on a port that is not a number
    except ValueError:
        raise ConfigError("LOG_DATABASE_URL has an invalid port") from None
    if not parsed.hostname:
        raise ConfigError("LOG_DATABASE_URL must name a host: clickhouse://user:password@host:9000/database")
    return url


def from_env(env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Build the Flask config mapping from environment variables (``os.environ`` by default)."""
    env = os.environ if env is None else env
    roles_raw = env.get("UNLIMITED_USER_ROLES", "").strip()
    roles = frozenset(_int("UNLIMITED_USER_ROLES", r.strip()) for r in roles_raw.split(",") if r.strip())
    connect_timeout = _int("DB_CONNECT_TIMEOUT", env.get("DB_CONNECT_TIMEOUT", "3"), 1)
    statement_timeout = _int("DB_STATEMENT_TIMEOUT_MS", env.get("DB_STATEMENT_TIMEOUT_MS", "5000"), 0)
    url = env.get("DATABASE_URL", "").strip()  # normalized in finalize(), with URLs given by tests
    for name, replacement in REMOVED.items():
        if env.get(name, "").strip():
            raise ConfigError(f"{name} is no longer read: {replacement}")
    config: dict[str, Any] = {
        # Unset (None): the gateway's own options table decides (gateway/options.py).
        "BALANCE_UNIT": _unit(env.get("BALANCE_UNIT", "")),
        "UNLIMITED_USER_ROLES": roles,
        "CORS_ORIGINS": cors_origins(env.get("CORS_ORIGINS", "*")),
        "CORS_MAX_AGE": _int("CORS_MAX_AGE", env.get("CORS_MAX_AGE", "86400")),
        "DB_CONNECT_TIMEOUT": connect_timeout,
        "DB_STATEMENT_TIMEOUT_MS": statement_timeout,
        "LOG_LEVEL": _log_level(env.get("LOG_LEVEL", "INFO")),
        # The only bodies the API reads are small alert definitions.
        "MAX_CONTENT_LENGTH": 16 * 1024,
        "AUTH_FAILURE_LIMIT": auth_failure_limit(env.get("AUTH_FAILURE_LIMIT", "20/minute")),
        "RATELIMIT_STORAGE_URI": ratelimit_storage_uri(env.get("RATELIMIT_STORAGE_URI", "")),
        "PROXY_FIX_X_FOR": _int("PROXY_FIX_X_FOR", env.get("PROXY_FIX_X_FOR", "0")),
        "PROMETHEUS_MULTIPROC_DIR": env.get("PROMETHEUS_MULTIPROC_DIR", "").strip() or None,
        # Balance alerts (balance_service/alerts): webhook targets and delivery.
        "ALERT_ALLOW_PRIVATE_TARGETS": _bool(
            "ALERT_ALLOW_PRIVATE_TARGETS", env.get("ALERT_ALLOW_PRIVATE_TARGETS", "false")
        ),
        "ALERT_MAX_PER_USER": _int("ALERT_MAX_PER_USER", env.get("ALERT_MAX_PER_USER", "20"), 1),
        "ALERT_WEBHOOK_TIMEOUT": _seconds("ALERT_WEBHOOK_TIMEOUT", env.get("ALERT_WEBHOOK_TIMEOUT", "5"), maximum=60),
        "ALERT_WEBHOOK_ATTEMPTS": _int("ALERT_WEBHOOK_ATTEMPTS", env.get("ALERT_WEBHOOK_ATTEMPTS", "3"), 1, 10),
        "ALERT_RETRY_BACKOFF": _seconds(
            "ALERT_RETRY_BACKOFF", env.get("ALERT_RETRY_BACKOFF", "1"), allow_zero=True, maximum=60
        ),
        # getaddrinfo has no timeout: a name server that never answers is given up on after this.
        "ALERT_DNS_TIMEOUT": _seconds("ALERT_DNS_TIMEOUT", env.get("ALERT_DNS_TIMEOUT", "2"), maximum=30),
        # check-alerts: deliveries at once, the time one alert's delivery may take in all, and the
        # longest a failing alert is held back (its pause doubles from 60 s up to this).
        "ALERT_DELIVERY_WORKERS": _int("ALERT_DELIVERY_WORKERS", env.get("ALERT_DELIVERY_WORKERS", "8"), 1, 64),
        "ALERT_DELIVERY_DEADLINE": _seconds(
            "ALERT_DELIVERY_DEADLINE", env.get("ALERT_DELIVERY_DEADLINE", "30"), maximum=600
        ),
        "ALERT_FAILURE_BACKOFF_MAX": _int(
            "ALERT_FAILURE_BACKOFF_MAX", env.get("ALERT_FAILURE_BACKOFF_MAX", "3600"), 60, 7 * 86400
        ),
    }
    if url:
        config["SQLALCHEMY_DATABASE_URI"] = url
    log_url = env.get("LOG_DATABASE_URL", "").strip()
    if log_url:
        config["LOG_DATABASE_URL"] = log_url
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
    if urlparse(config.get("LOG_DATABASE_URL") or "").scheme.lower() in ("tcp", "http", "https"):
        # new-api's other ClickHouse DSN forms: say what to write instead of failing on an unknown driver.
        raise ConfigError(
            "LOG_DATABASE_URL: tcp:// and http(s):// are new-api's ClickHouse DSN forms; this service reads ClickHouse "
            "over the native protocol: clickhouse://user:password@host:9000/database"
        )
    if config.get("LOG_DATABASE_URL") and is_clickhouse_url(config["LOG_DATABASE_URL"]):
        # new-api's logs in ClickHouse: read by usage/clickhouse.py over the native protocol, no SQL bind.
        config["LOG_DATABASE_URL"] = _clickhouse_url(config["LOG_DATABASE_URL"])
    elif config.get("LOG_DATABASE_URL"):
        # The gateway's request logs in a database of their own (its LOG_SQL_DSN): a second engine,
        # the "logs" bind, with the same pool and timeout settings as the main one.
        log_url = config["LOG_DATABASE_URL"] = normalize_database_url(config["LOG_DATABASE_URL"])
        timeouts = (config.get("DB_CONNECT_TIMEOUT", 3), config.get("DB_STATEMENT_TIMEOUT_MS", 5000))
        binds = dict(config.get("SQLALCHEMY_BINDS") or {})
        binds.setdefault("logs", {"url": log_url, **engine_options(log_url, *timeouts)})
        config["SQLALCHEMY_BINDS"] = binds
    return config
