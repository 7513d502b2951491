"""Settings: every environment variable the service reads, parsed once at start-up into one ``Settings``.

Each field of ``Settings`` names its variable, its default and its parser; a
bad value stops the start-up with a message naming the variable, and so does a
variable earlier versions read (``REMOVED``): a setting is never silently
ignored. Nothing else in the package reads ``os.environ`` (the libraries read
their own: gunicorn's ``WEB_CONCURRENCY``, ``FORWARDED_ALLOW_IPS``,
``GUNICORN_CMD_ARGS``; prometheus_client's ``PROMETHEUS_MULTIPROC_DIR``).

This module imports nothing from the package, so that gunicorn's master can
load it by path (``gunicorn_conf.py``) without loading the service.
"""

from __future__ import annotations

import os
import re
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any, NamedTuple
from urllib.parse import parse_qsl, urlparse

from flask import current_app

#: The units BALANCE_UNIT may name, as the answers' ``unit`` field writes them (gateway/options.py maps them to the
#: gateway's display types USD, CNY and TOKENS, in this order).
UNITS = ("USD", "CNY", "tokens")
RATELIMIT_SCHEMES = ("memory", "redis", "rediss", "redis+unix", "unix")

#: Seconds to wait for a new database connection before a request answers 503.
DB_CONNECT_TIMEOUT = 3
#: A query of the gateway's logs (usage, dated billing, forecasts, the roll-up) may take this many times
#: DB_STATEMENT_TIMEOUT_MS: it sums up to a year of an account's rows where a balance lookup reads one.
LOG_STATEMENT_FACTOR = 2
#: Seconds a browser may keep a CORS preflight answer.
CORS_MAX_AGE = 86400


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


def _optional(parse: Callable[[str, str], Any]) -> Callable[[str, str], Any]:
    """``parse`` for a setting that may be unset: empty (after stripping) is None, else ``parse(name, stripped)``."""
    return lambda name, raw: parse(name, raw.strip()) if raw.strip() else None


def _unit(name: str, unit: str) -> str:
    """``BALANCE_UNIT``: USD, CNY or tokens (any case); unset (``_optional``) is the gateway's own unit."""
    matches = [u for u in UNITS if u.lower() == unit.lower()]
    if not matches:
        raise ConfigError(f"BALANCE_UNIT must be one of {', '.join(UNITS)}, got {unit!r}")
    return matches[0]


def _log_level(name: str, raw: str) -> str:
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


def _bool(name: str, raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("", "0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name} must be true or false, got {raw!r}")


#: ``https://*.example.com`` (optionally with a port): any subdomain of example.com, at any depth.
_DNS_LABEL = r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?"
_SUBDOMAIN_WILDCARD = re.compile(rf"(https?)://\*\.((?:{_DNS_LABEL}\.)+{_DNS_LABEL})(:\d{{1,5}})?")
#: What flask-cors would take as a regular expression in an origin string.
_REGEX_CHARACTERS = frozenset("*\\]?$^[()")


def _cors_origins(name: str, raw: str) -> str | tuple[str | re.Pattern[str], ...]:
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
    return tuple(origins)


#: What a Redis URL's query may set; anything else stops the start-up instead of being silently ignored.
_REDIS_QUERY = {"db"}
_REDISS_QUERY = {"db", "ssl_ca_certs", "ssl_cert_reqs"}


def redis_options(url: str) -> dict[str, Any]:
    """redis-py's connection options for a Redis URL of ``RATELIMIT_STORAGE_URI``, read by redis-py's own parser.

    ``redis://[[user]:password@]host[:port][/db]``; ``rediss://`` the same over
    TLS (``?ssl_ca_certs=/path/ca.pem``, ``?ssl_cert_reqs=none``);
    ``redis+unix:///path/to/socket[?db=N]``, the form the ``limits`` library
    documented, is redis-py's ``unix://``. What redis-py would silently ignore
    (or take ``socket_timeout`` and the like from, for URL parameters) stops
    the start-up. Error messages never repeat the URL: it may hold a password.
    """
    from redis.connection import parse_url  # here: only a Redis URL needs redis-py

    value = url.strip()
    scheme = urlparse(value).scheme.lower()
    if "cluster" in scheme or "sentinel" in scheme:
        raise ConfigError(
            f"RATELIMIT_STORAGE_URI: {scheme}:// is not supported; the limiter talks to one Redis server "
            "(redis://, rediss:// or redis+unix://), not to a Redis Cluster or through Sentinel"
        )
    if scheme not in RATELIMIT_SCHEMES or scheme == "memory":
        raise ConfigError(f"RATELIMIT_STORAGE_URI must be a redis://, rediss:// or redis+unix:// URL, not {scheme}://")
    if scheme == "redis+unix":
        value = "unix" + value[len(scheme) :]
    parsed = urlparse(value)
    allowed = _REDISS_QUERY if scheme == "rediss" else _REDIS_QUERY
    unknown = sorted({name for name, _ in parse_qsl(parsed.query, keep_blank_values=True)} - allowed)
    if unknown:
        raise ConfigError(
            f"RATELIMIT_STORAGE_URI: a {scheme}:// URL may set only {', '.join(sorted(allowed))}, "
            f"not {', '.join(unknown)}"
        )
    try:
        options = parse_url(value)
    except ValueError:  # its messages name the parameter, never the URL
        raise ConfigError("RATELIMIT_STORAGE_URI has an invalid port or database number") from None
    if options.get("username") and not options.get("password"):
        raise ConfigError(
            "RATELIMIT_STORAGE_URI names a Redis user without a password: redis://user:password@host, "
            "or redis://:password@host for the default user"
        )
    if scheme in ("unix", "redis+unix"):
        if parsed.hostname or not options.get("path", "").startswith("/") or options["path"] == "/":
            raise ConfigError(
                "RATELIMIT_STORAGE_URI must name the socket's absolute path: redis+unix:///path/to/socket"
            )
    elif parsed.path.strip("/") and "db" not in options:
        raise ConfigError("RATELIMIT_STORAGE_URI's database must be a number: redis://host:6379/0")
    if options.get("ssl_cert_reqs", "required").lower() not in ("required", "optional", "none"):
        raise ConfigError("RATELIMIT_STORAGE_URI's ssl_cert_reqs must be required (the default), optional or none")
    if options.get("ssl_ca_certs"):
        try:
            ssl.create_default_context(cafile=options["ssl_ca_certs"])
        except (OSError, ssl.SSLError) as e:
            raise ConfigError(f"RATELIMIT_STORAGE_URI's ssl_ca_certs cannot be used: {e}") from None
    return options


def _in_memory(storage_uri: str) -> bool:
    """Whether ``RATELIMIT_STORAGE_URI`` keeps the counts in each process: ``memory://``, in any case."""
    return urlparse(storage_uri).scheme.lower() == "memory"


def _ratelimit_storage_uri(name: str, raw: str) -> str:
    """``RATELIMIT_STORAGE_URI``: ``memory://`` (per process) or a Redis URL (shared by all workers)."""
    value = raw.strip() or "memory://"
    if not _in_memory(value):
        redis_options(value)  # raises ConfigError on a URL the limiter cannot use
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
    ``hide_parameters`` keeps API keys out of any logged SQL error. Every call
    has a deadline on the client side too, so a server that stopped answering
    (frozen, partitioned) fails one request instead of holding the worker:
    PostgreSQL's connections are ``db_deadline``'s (``statement_timeout`` +
    0.5 s), PyMySQL's socket timeouts are the statement timeout.
    """
    options: dict[str, Any] = {"pool_pre_ping": True, "hide_parameters": True}
    if url.startswith("postgresql"):
        # Imported here: gunicorn's master loads this module by path, without the package.
        from balance_service._internal import db_deadline

        options["pool_recycle"] = 1800
        options["connect_args"] = {
            "connect_timeout": connect_timeout,
            "options": f"-c statement_timeout={statement_timeout_ms}",
            "application_name": "balance-service",
            "connection_factory": db_deadline.connection_class(connect_timeout, statement_timeout_ms),
        }
    elif url.startswith("sqlite"):
        options["connect_args"] = {"timeout": max(connect_timeout, 1)}
    elif url.startswith(("mysql", "mariadb")):
        # Below the server's wait_timeout (8 h by default, often 5-10 min on
        # hosted MySQL) so the pool never hands out a connection it closed.
        options["pool_recycle"] = 280
        # MySQL has no per-session statement timeout that MariaDB shares, so bound each round trip on the
        # client side instead: DB_STATEMENT_TIMEOUT_MS as the socket timeouts (0: no limit, as in PostgreSQL).
        timeout = statement_timeout_ms / 1000 if statement_timeout_ms else None
        options["connect_args"] = {
            "connect_timeout": connect_timeout,
            "charset": "utf8mb4",
            "read_timeout": timeout,
            "write_timeout": timeout,
        }
    return options


def _log_database_url(name: str, url: str) -> str:
    """``LOG_DATABASE_URL``: a SQL database's URL, or ``clickhouse://`` (checked here: it must name a host)."""
    parsed = urlparse(url)
    scheme = parsed.scheme.lower()
    if scheme in ("tcp", "http", "https"):
        # new-api's other ClickHouse DSN forms: say what to write instead of failing on an unknown driver.
        raise ConfigError(
            "LOG_DATABASE_URL: tcp:// and http(s):// are new-api's ClickHouse DSN forms; this service reads ClickHouse "
            "over the native protocol: clickhouse://user:password@host:9000/database"
        )
    if scheme not in CLICKHOUSE_SCHEMES:
        return url
    try:
        parsed.port  # noqa: B018 - raises ValueError on a port that is not a number
    except ValueError:
        raise ConfigError("LOG_DATABASE_URL has an invalid port") from None
    if not parsed.hostname:
        raise ConfigError("LOG_DATABASE_URL must name a host: clickhouse://user:password@host:9000/database")
    return url


def _roles(name: str, raw: str) -> frozenset[int]:
    return frozenset(_int(name, part.strip()) for part in raw.split(",") if part.strip())


class NotifyScheme(NamedTuple):
    """An Apprise scheme alerts may use: the Apprise plugin module that speaks it, and who picks its server."""

    #: ``apprise.plugins.<plugin>``: imported alone, so a process loads one plugin, not Apprise's ~450 modules.
    plugin: str
    #: The URL names the server to call (self-hostable), so that host is checked like a webhook's at creation.
    user_host: bool


#: The Apprise schemes ``ALERT_NOTIFY_SCHEMES`` may name: chat and push services that Apprise reaches over
#: HTTP(S), so the connect-time address guard (``alerts/channels.py``) sees every connection they make.
#: Never here: plugins acting on the server itself (syslog, dbus, desktop notifications, files) and
#: ``mailto``/``mailtos`` (e-mail goes only through the operator's ``ALERT_SMTP_URL``).
NOTIFY_SCHEMES = {
    "tgram": NotifyScheme("telegram", False),
    "dingtalk": NotifyScheme("dingtalk", False),
    "feishu": NotifyScheme("feishu", False),
    "lark": NotifyScheme("lark", False),
    "wecombot": NotifyScheme("wecombot", False),
    "discord": NotifyScheme("discord", False),
    "slack": NotifyScheme("slack", False),
    "bark": NotifyScheme("bark", True),
    "barks": NotifyScheme("bark", True),
    "ntfy": NotifyScheme("ntfy", True),
    "ntfys": NotifyScheme("ntfy", True),
    "gotify": NotifyScheme("gotify", True),
    "gotifys": NotifyScheme("gotify", True),
    "json": NotifyScheme("custom_json", True),
    "jsons": NotifyScheme("custom_json", True),
}
#: ``ALERT_NOTIFY_SCHEMES``' default: every scheme above except json/jsons (a plain JSON POST to a host of
#: the user's choosing, unsigned: ``webhook_url`` does that with a signature).
DEFAULT_NOTIFY_SCHEMES = ",".join(scheme for scheme in NOTIFY_SCHEMES if scheme not in ("json", "jsons"))
#: Schemes named in ``ALERT_NOTIFY_SCHEMES`` that are refused with a reason, not merely as unknown.
_NEVER_NOTIFY = dict.fromkeys(("mailto", "mailtos"), "e-mail goes only through the operator's ALERT_SMTP_URL")


def _notify_schemes(name: str, raw: str) -> tuple[str, ...]:
    """``ALERT_NOTIFY_SCHEMES``: comma-separated schemes out of ``NOTIFY_SCHEMES`` (``tgram`` or ``tgram://``)."""
    schemes: list[str] = []
    for entry in (part.strip().lower().removesuffix("://") for part in raw.split(",")):
        if not entry or entry in schemes:
            continue
        if entry in _NEVER_NOTIFY:
            raise ConfigError(f"{name}: {entry} cannot be allowed: {_NEVER_NOTIFY[entry]}")
        if entry not in NOTIFY_SCHEMES:
            raise ConfigError(
                f"{name}: {entry!r} is not a scheme alerts can send through; choose from {', '.join(NOTIFY_SCHEMES)}"
            )
        schemes.append(entry)
    return tuple(schemes)


def _smtp_url(name: str, value: str) -> str:
    """``ALERT_SMTP_URL``: the operator's mail server as an Apprise ``mailto://`` or ``mailtos://`` URL.

    Only its form is checked here; the message never repeats the URL (it holds the mail password).
    """
    parsed = urlparse(value)
    if parsed.scheme.lower() not in ("mailto", "mailtos") or not parsed.netloc:
        raise ConfigError(f"{name} must be an Apprise mailto:// or mailtos:// URL such as mailtos://user:pass@host")
    return value


def _https_url(name: str, value: str) -> str:
    """``ALERT_TOPUP_URL``: an https:// link with a host (shown to people in alert messages)."""
    parsed = urlparse(value)
    if parsed.scheme.lower() != "https" or not parsed.hostname or any(c.isspace() for c in value):
        raise ConfigError(f"{name} must be an https:// URL with a host, got {value!r}")
    return value


def _setting(env: str, default: str, parse: Callable[[str, str], Any], secret: bool = False) -> Any:
    """A ``Settings`` field: ``parse(env, text)`` of the variable ``env`` (else ``default``); secret: not in repr."""
    return field(repr=not secret, metadata={"env": env, "default": default, "parse": parse})


@dataclass(frozen=True)
class Settings:
    """Every setting of the service, parsed; the README's configuration table describes each variable."""

    #: The gateway's database; None: the embedded SQLite file in the instance folder.
    database_url: str | None = _setting("DATABASE_URL", "", _optional(lambda name, url: url), secret=True)
    #: Where the gateway keeps its logs when apart (its LOG_SQL_DSN), or ClickHouse.
    log_database_url: str | None = _setting("LOG_DATABASE_URL", "", _optional(_log_database_url), secret=True)
    #: USD, CNY or tokens; None: the gateway's own display type.
    balance_unit: str | None = _setting("BALANCE_UNIT", "", _optional(_unit))
    unlimited_user_roles: frozenset[int] = _setting("UNLIMITED_USER_ROLES", "", _roles)
    cors_origins: str | tuple[str | re.Pattern[str], ...] = _setting("CORS_ORIGINS", "*", _cors_origins)
    #: None: the failed-auth limiter is off.
    auth_failure_limit: Rate | None = _setting("AUTH_FAILURE_LIMIT", "20/minute", lambda name, raw: parse_rate(raw))
    ratelimit_storage_uri: str = _setting("RATELIMIT_STORAGE_URI", "memory://", _ratelimit_storage_uri, secret=True)
    proxy_fix_x_for: int = _setting("PROXY_FIX_X_FOR", "0", _int)
    log_level: str = _setting("LOG_LEVEL", "INFO", _log_level)
    #: PostgreSQL's statement_timeout; the client's read/write timeout on MySQL/MariaDB (0: none).
    db_statement_timeout_ms: int = _setting(
        # At most 10^9: twice that (a log query's) is still within PostgreSQL's statement_timeout.
        "DB_STATEMENT_TIMEOUT_MS",
        "5000",
        lambda name, raw: _int(name, raw, maximum=1_000_000_000),
    )
    alert_allow_private_targets: bool = _setting("ALERT_ALLOW_PRIVATE_TARGETS", "false", _bool)
    #: The Apprise schemes a ``notify_url`` may use (out of ``NOTIFY_SCHEMES``); empty: no notify alerts.
    alert_notify_schemes: tuple[str, ...] = _setting("ALERT_NOTIFY_SCHEMES", DEFAULT_NOTIFY_SCHEMES, _notify_schemes)
    #: The operator's mail server for ``email`` alerts; None: ``email`` alerts are refused.
    alert_smtp_url: str | None = _setting("ALERT_SMTP_URL", "", _optional(_smtp_url), secret=True)
    #: A top-up page shown in alert messages; None: messages have no link.
    alert_topup_url: str | None = _setting("ALERT_TOPUP_URL", "", _optional(_https_url))
    #: Where gunicorn listens (read by gunicorn_conf.py; ``demo`` prints it).
    bind: str = _setting("BIND", "127.0.0.1:8000", lambda name, raw: raw.strip() or "127.0.0.1:8000")

    @property
    def limiter_in_memory(self) -> bool:
        """Whether the failed-auth counts are kept in each process rather than in Redis."""
        return _in_memory(self.ratelimit_storage_uri)

    @property
    def log_statement_timeout_ms(self) -> int:
        """The statement timeout of each query of the gateway's logs (0: none, as ``DB_STATEMENT_TIMEOUT_MS``)."""
        return LOG_STATEMENT_FACTOR * self.db_statement_timeout_ms

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **given: Any) -> Settings:
        """Parse ``env`` (``os.environ`` by default); ``given`` (tests, by variable name) overrides it.

        A given value that is text is parsed like the environment's; any other
        value is taken as the parsed value itself (``AUTH_FAILURE_LIMIT=None``).
        """
        env = os.environ if env is None else env
        removed = sorted(name for name in REMOVED if str(given.get(name, env.get(name, ""))).strip())
        if removed:
            raise ConfigError("; ".join(f"{name} is no longer read: {REMOVED[name]}" for name in removed))
        values = {}
        for spec in fields(cls):
            name = spec.metadata["env"]
            raw = given[name] if name in given else env.get(name, spec.metadata["default"])
            values[spec.name] = spec.metadata["parse"](name, raw) if isinstance(raw, str) else raw
        return cls(**values)


#: Every environment variable ``Settings`` reads (tests clear them all, so a developer's own settings
#: cannot change what a test sees).
ENV_SETTINGS = tuple(spec.metadata["env"] for spec in fields(Settings))

#: Variables earlier versions read, and what replaced each; any of them set (not empty) stops the start-up.
REMOVED = {
    "QUOTA_PER_UNIT": "the gateway's own QuotaPerUnit option is used (BALANCE_UNIT still chooses the unit)",
    "USD_EXCHANGE_RATE": "the gateway's own USDExchangeRate option is used (BALANCE_UNIT still chooses the unit)",
    "BILLING_SOURCE": "the billing endpoints follow the gateway's own DisplayTokenStatEnabled option",
    "GATEWAY_OPTIONS_TTL": "the gateway's options and table layout are read again every minute",
    "GATEWAY_LAYOUT_TTL": "the gateway's options and table layout are read again every minute",
    "CORS_MAX_AGE": f"browsers keep a preflight answer {CORS_MAX_AGE} seconds",
    "DB_CONNECT_TIMEOUT": f"a database connection is waited for {DB_CONNECT_TIMEOUT} seconds at most",
    "ALERT_MAX_PER_USER": "an account keeps at most 20 alerts",
    "ALERT_WEBHOOK_TIMEOUT": "check-alerts --timeout",
    "ALERT_WEBHOOK_ATTEMPTS": "check-alerts --attempts",
    "ALERT_RETRY_BACKOFF": "check-alerts --retry-backoff",
    "ALERT_DNS_TIMEOUT": "names are looked up for 2 seconds at most",
    "ALERT_DELIVERY_WORKERS": "check-alerts --workers",
    "ALERT_DELIVERY_DEADLINE": "check-alerts --deadline",
    "ALERT_FAILURE_BACKOFF_MAX": "check-alerts --max-backoff",
    "GUNICORN_TIMEOUT": 'GUNICORN_CMD_ARGS="--timeout N"',
    "GUNICORN_MAX_REQUESTS": 'GUNICORN_CMD_ARGS="--max-requests N" (0: never replace workers)',
    "GUNICORN_ACCESS_LOG": 'GUNICORN_CMD_ARGS="--access-logfile -"',
    "GUNICORN_PRELOAD": "the app is always preloaded; restart the master to deploy new code",
}

EXTENSION = "balance_settings"


def settings() -> Settings:
    """The current app's settings (needs an app context)."""
    return current_app.extensions[EXTENSION]


def flask_config(settings: Settings, instance_path: str) -> dict[str, Any]:
    """What Flask and Flask-SQLAlchemy read from ``app.config``, derived from ``settings``."""
    url = normalize_database_url(settings.database_url or "sqlite:///" + os.path.join(instance_path, "balance.sqlite3"))
    timeouts = (DB_CONNECT_TIMEOUT, settings.db_statement_timeout_ms)
    config: dict[str, Any] = {
        "SQLALCHEMY_DATABASE_URI": url,
        "SQLALCHEMY_ENGINE_OPTIONS": engine_options(url, *timeouts),
        # The only bodies the API reads are small alert definitions.
        "MAX_CONTENT_LENGTH": 16 * 1024,
    }
    log_url = settings.log_database_url
    if log_url and not is_clickhouse_url(log_url):
        # The gateway's request logs in a database of their own (its LOG_SQL_DSN): a second engine,
        # the "logs" bind, with the same pool and timeout settings as the main one.
        log_url = normalize_database_url(log_url)
        config["SQLALCHEMY_BINDS"] = {"logs": {"url": log_url, **engine_options(log_url, *timeouts)}}
    return config
