"""The OpenAPI 3.1 description of every endpoint, written by hand as plain data.

Kept next to the code and checked by tests/test_openapi.py against the app's
URL map and against real responses, so it cannot drift from what the service
does. No generator library: the API is small and a dict is easy to review.
"""

from __future__ import annotations

import copy
from typing import Any

from ._internal.host_slots import RETRY_AFTER_SECONDS
from .alerts.channels import MAX_EMAIL_LENGTH
from .alerts.models import CHANNELS, LANGUAGES, SCOPE_ACCOUNT, SCOPE_TOKEN, STATE_ABOVE, STATE_BELOW
from .alerts.store import MAX_ALERTS_PER_USER
from .alerts.targets import MAX_URL_LENGTH, describe_policy
from .blueprints.alerts import CHANNEL_FIELDS, TEST_BUSY_MESSAGE
from .config import DEFAULT_NOTIFY_SCHEMES, NOTIFY_SCHEMES
from .errors import DATABASE_ERROR_MESSAGE
from .gateway.money import BILLING_UNLIMITED_USD
from .gateway.options import LOG_CONSUME
from .usage.limit import BUSY_MESSAGE
from .usage.report import CONSUME_NOT_LOGGED, DEFAULT_RANGE_DAYS, MAX_RANGE_DAYS, NO_LOGS_TABLE
from .version import __version__

_JSON = "application/json"


def _ref(kind: str, name: str) -> dict[str, str]:
    return {"$ref": f"#/components/{kind}/{name}"}


def _json(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {_JSON: {"schema": schema}}}


def _object(properties: dict[str, Any], *, closed: bool = False, **extra: Any) -> dict[str, Any]:
    """An object schema requiring every one of its properties; ``closed`` refuses any other field."""
    schema: dict[str, Any] = {"type": "object", **extra, "required": list(properties)}
    if closed:
        schema["additionalProperties"] = False
    return {**schema, "properties": properties}


def _answer(properties: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    """A successful answer: ``success: true``, then these fields."""
    return _object({"success": {"const": True}, **properties}, **kwargs)


def _query(name: str, description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    """An optional query parameter, a date unless ``schema`` says otherwise."""
    schema = schema or {"type": "string", "format": "date"}
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}


def _error(description: str, **extra: Any) -> dict[str, Any]:
    """A refusal or failure: the ``Error`` body, and ``extra`` (headers)."""
    return {**_json(description, _ref("schemas", "Error")), **extra}


def _nullable(type_: str, description: str, **extra: Any) -> dict[str, Any]:
    return {"type": [type_, "null"], **extra, "description": description}


def _retry_after(description: str) -> dict[str, Any]:
    return {"Retry-After": {"schema": {"type": "integer", "minimum": 1}, "description": description}}


def _amount(description: str, **extra: Any) -> dict[str, Any]:
    """An exact decimal amount: written with up to 6 decimal places, integers in the tokens unit."""
    return {"type": "number", **extra, "description": description}


_UNIT = {
    "type": "string",
    "description": (
        "The display unit: `USD` or `CNY` amounts, or `tokens` (raw gateway quota units); under the gateway's "
        "CUSTOM display type, its custom currency symbol (amounts are USD times its custom rate). BALANCE_UNIT "
        "when set, else the gateway's own setting (its `options` table)."
    ),
}
_TIMESTAMP = {"type": "string", "format": "date-time", "description": "UTC, to the second (`2024-05-01T12:00:00Z`)."}
_LIMITER = {
    "enum": ["ok", "degraded", "off"],
    "description": (
        "The failed-authentication limiter of the worker that answered; it does not change `status`. `degraded`: "
        "it is not asking Redis for a few seconds after Redis failed, and lets requests through unchecked; "
        "`off`: AUTH_FAILURE_LIMIT is off."
    ),
}


def _alert_schema(with_secret: bool) -> dict[str, Any]:
    """An alert as the service shows it; the secret only in the answer that created it."""
    properties: dict[str, Any] = {
        "id": {"type": "integer", "minimum": 1},
        "scope": {"enum": [SCOPE_ACCOUNT, SCOPE_TOKEN]},
        "token_id": _nullable("integer", "The watched key's id (scope token); null for scope account."),
        "threshold": _nullable("number", "In `unit`; null for a forecast alert (one with `days_left`).", minimum=0),
        "days_left": _nullable(
            "number",
            "A forecast alert: notify when the forecast's days left drop below this; else null.",
            exclusiveMinimum=0,
            maximum=365,
        ),
        "unit": _UNIT,
        "channel": {
            "enum": list(CHANNELS),
            "description": "Where it sends: `webhook_url`, the Apprise `notify_url`, or the `email` address.",
        },
        "webhook_url": {
            "type": ["string", "null"],
            "format": "uri",
            "description": "A webhook alert's URL. Null for other channels, and for an alert this key did not "
            "create (the URL may carry the receiver's token): one stored before the service recorded which key "
            "created it, or one whose creating key the gateway deleted.",
        },
        "notify_url": {
            "type": ["string", "null"],
            "description": "A notify alert's Apprise URL, masked: the scheme and a self-hosted server's host and "
            "port, everything else (tokens, keys, passwords, topics, chat ids) as `****`. Null for other channels.",
        },
        "email": _nullable(
            "string", "An e-mail alert's address, masked (`a****@example.com`). Null for other channels."
        ),
        "lang": {"enum": list(LANGUAGES), "description": "The language of the messages people read."},
        "last_tested_at": _nullable("string", "When the test button last sent; null if never.", format="date-time"),
        "state": {
            "enum": [STATE_ABOVE, STATE_BELOW],
            "description": "Where the balance was at the last check; `above` means armed (notifies on falling below).",
        },
        "created_at": _TIMESTAMP,
        "last_notified_at": _nullable("string", "Null until a notification.", format="date-time"),
        "last_error": _nullable("string", "Why the last delivery failed; null after a success or before any."),
    }
    if with_secret:
        properties["secret"] = {
            "type": "string",
            "pattern": "^[0-9a-f]{64}$",
            "description": "The HMAC-SHA256 key of X-Balance-Signature. Shown only in this answer; keep it.",
        }
    return _object(properties, closed=True)


def _usage_schema() -> dict[str, Any]:
    """The answer of ``GET /v1/usage``."""
    used = _amount("Net spend (consumed minus refunded) in `unit`; negative if refunds exceed it.")
    requests = {"type": "integer", "minimum": 0, "description": "Requests charged (consume rows of the log)."}

    def listing(key: str, key_schema: dict[str, Any]) -> dict[str, Any]:
        return _object({key: key_schema, "used": used, "requests": requests}, closed=True)

    forecast = _object(
        {
            "daily_rate": _amount(
                "Net spend of the 7 days before today divided by 7, in `unit` (0 if none).", minimum=0
            ),
            "days_left": _nullable(
                "number", "Remaining credit of the scope divided by the daily rate, rounded down to 0.1 day.", minimum=0
            ),
            "runs_out_on": _nullable(
                "string", "Today plus the whole days left (UTC); null also when beyond the year 9999.", format="date"
            ),
        },
        closed=True,
        description=(
            "At the rate of the 7 whole UTC days before today. `days_left` and `runs_out_on` are null when the "
            "credit is unlimited or nothing was spent in those days."
        ),
    )
    return _answer(
        {
            "scope": {"enum": ["account", "key"]},
            "unit": _UNIT,
            "start_date": {"type": "string", "format": "date", "description": "First day, included."},
            "end_date": {"type": "string", "format": "date", "description": "Day after the last, excluded."},
            "total_used": _amount("Net spend of the whole range, in `unit`."),
            "days": {
                "type": "array",
                "maxItems": MAX_RANGE_DAYS,
                "items": listing("date", {"type": "string", "format": "date"}),
                "description": "Every UTC day of the range, oldest first; days without requests show 0.",
            },
            "models": {
                "type": "array",
                "items": listing("model", {"type": "string"}),
                "description": "Each model with spend or refunds in the range, largest spend first.",
            },
            "forecast": forecast,
        },
        closed=True,
    )


_SCHEMAS: dict[str, Any] = {
    "Error": _object(
        {
            "success": {"const": False},
            "message": {"type": "string", "description": "Why the request failed, for a human."},
        },
        description="Every refusal and failure has this body.",
    ),
    "Balance": _answer(
        {
            "remain_balance": _amount(
                "What is left, in `unit`; -1 means unlimited; an overdrawn balance shows 0.", minimum=-1
            ),
            "used_balance": _amount("What was spent so far, in `unit`.", minimum=0),
            "unlimited_quota": {"type": "boolean"},
            "unit": _UNIT,
            "balance": _amount("The same value as `remain_balance`.", minimum=-1),
            "used": _amount("The same value as `used_balance`.", minimum=0),
        },
        description=(
            "The fields of the gateways' published docs (`success`, `remain_balance`, `used_balance`, "
            "`unlimited_quota`, in that order), then `unit`, then `balance` and `used`: the same values under "
            "the names cc-switch and browser extensions read."
        ),
    ),
    "BillingSubscription": _answer(
        {
            "object": {"const": "billing_subscription"},
            "has_payment_method": {"const": True},
            **{
                name: _amount(
                    f"Total credit (remaining + used) in USD; {BILLING_UNLIMITED_USD} when unlimited. "
                    "An overdrawn balance counts as 0.",
                    minimum=0,
                )
                for name in ("soft_limit_usd", "hard_limit_usd", "system_hard_limit_usd")
            },
            "access_until": {
                "type": "integer",
                "minimum": 0,
                "description": "Unix seconds when the key expires; 0 when it never does, or when the account is shown.",
            },
        },
        description=(
            "OpenAI's subscription object, as one-api returns it. Clients show "
            "`hard_limit_usd - total_usage / 100` (from the usage endpoint) as the balance."
        ),
    ),
    "BillingUsage": _answer(
        {
            "object": {"const": "list"},
            "total_usage": _amount(
                "US cents: the net spend (consumed minus refunded) of the date range, or the lifetime usage "
                "without dates. Negative only if refunds in the range exceed what was spent in it."
            ),
        }
    ),
    "Usage": _usage_schema(),
    "Capabilities": _answer(
        {
            "usage_history": _object(
                {
                    "available": {"type": "boolean", "description": "Whether `GET /v1/usage` answers 200."},
                    "reason": {
                        "enum": [NO_LOGS_TABLE[0], CONSUME_NOT_LOGGED[0], None],
                        "description": (
                            f"Why not: `{NO_LOGS_TABLE[0]}` (no logs table, in LOG_DATABASE_URL if set) or "
                            f"`{CONSUME_NOT_LOGGED[0]}` (the gateway's {LOG_CONSUME} is off); null when available."
                        ),
                    },
                    "message": _nullable(
                        "string", "The same in words, as `GET /v1/usage`'s 409 says it; null when available."
                    ),
                },
                closed=True,
            ),
            "alerts": _object(
                {
                    "channels": {
                        "type": "array",
                        "items": {"enum": list(CHANNEL_FIELDS)},
                        "description": "The fields of `POST /v1/user/balance/alerts` naming where notifications go.",
                    },
                    "test": {"type": "boolean", "description": "Whether an alert can be sent a test notification."},
                },
                closed=True,
            ),
        },
        closed=True,
    ),
    "AlertRequest": {
        "type": "object",
        "description": (
            "A new alert: what to watch (`threshold` or `days_left`) and where to send (exactly one of "
            "`webhook_url`, `notify_url` and `email`). Unknown fields are refused (400); nothing is stored unless "
            "all is valid."
        ),
        "allOf": [
            {"oneOf": [{"required": ["threshold"]}, {"required": ["days_left"]}]},
            {"oneOf": [{"required": ["webhook_url"]}, {"required": ["notify_url"]}, {"required": ["email"]}]},
        ],
        "additionalProperties": False,
        "properties": {
            "threshold": {
                "type": "number",
                "minimum": 0,
                "description": (
                    "Notify when the balance falls below this, in the balances' `unit` (a whole number in tokens). "
                    'A JSON number; a string such as "5" is refused. Give this or `days_left`, not both.'
                ),
            },
            "days_left": {
                "type": "number",
                "exclusiveMinimum": 0,
                "maximum": 365,
                "description": (
                    "A forecast alert: notify when the spend forecast of the watched scope (as in `GET /v1/usage`: "
                    "the last 7 whole days' net spend against the balance left) says fewer days are left than this. "
                    "Days, at most one decimal place. A forecast that cannot be told (no logs, nothing spent, "
                    "unlimited credit) never fires. Give this or `threshold`, not both."
                ),
            },
            "webhook_url": {
                "type": "string",
                "format": "uri",
                "maxLength": MAX_URL_LENGTH,
                "description": (
                    "A signed JSON POST (X-Balance-Signature: t=…,d=…,v1=…). http:// or https://, with a host and "
                    "without user name or password. " + describe_policy()
                ),
            },
            "notify_url": {
                "type": "string",
                "maxLength": MAX_URL_LENGTH,
                "description": (
                    "A chat or push service as an Apprise URL (`tgram://bottoken/chat_id`, `dingtalk://token`, "
                    "`feishu://token`, `wecombot://key`, `bark://host/device_key`, `ntfys://host/topic`, "
                    "`discord://webhook_id/webhook_token`, `slack://…`), of a scheme the operator allows "
                    f"(ALERT_NOTIFY_SCHEMES; default {DEFAULT_NOTIFY_SCHEMES.replace(',', ', ')}; possible: "
                    f"{', '.join(NOTIFY_SCHEMES)}). Never mailto (use `email`). Checked with Apprise. Where the URL "
                    "names the server (bark, ntfy, gotify, json), its host must pass the webhook address policy, "
                    "and every connection a send makes passes it again, on the address it connects to."
                ),
            },
            "email": {
                "type": "string",
                "format": "email",
                "maxLength": MAX_EMAIL_LENGTH,
                "description": (
                    "An address, written to through the operator's own mail server (ALERT_SMTP_URL); "
                    "400 when the operator has set none."
                ),
            },
            "lang": {
                "enum": list(LANGUAGES),
                "description": (
                    "The language of the messages people read (notify and e-mail). Default: the best match of "
                    "the request's Accept-Language (zh, zh-CN: Chinese), else en."
                ),
            },
            "scope": {
                "enum": [SCOPE_ACCOUNT, SCOPE_TOKEN],
                "default": SCOPE_ACCOUNT,
                "description": "Watch the account's balance, or the balance of the key making this request.",
            },
        },
    },
    "Alert": _alert_schema(with_secret=False),
    "AlertWithSecret": _alert_schema(with_secret=True),
    "AlertCreated": _answer({"alert": _ref("schemas", "AlertWithSecret")}),
    "AlertList": _answer(
        {
            "alerts": {
                "type": "array",
                "items": _ref("schemas", "Alert"),
                "description": "The account's alerts (both scopes, from any of its keys), oldest first.",
            }
        }
    ),
    "AlertTested": _answer({"delivered": {"const": True}}),
    "AlertDeleted": _answer(
        {"deleted": {"type": "integer", "minimum": 1, "description": "The id of the alert that was deleted."}}
    ),
    "Health": _answer({"status": {"const": "ok"}}),
    "Ready": _answer({"status": {"const": "ready"}, "limiter": _LIMITER}),
    "NotReady": _object(
        {
            "success": {"const": False},
            "status": {"const": "unavailable"},
            "message": {"type": "string"},
            "limiter": _LIMITER,
        }
    ),
}

_RESPONSES: dict[str, Any] = {
    "Unauthorized": _error("No, malformed, unknown, deleted or disabled API key. Expired and exhausted keys can read."),
    "Forbidden": _error("The key's owner is disabled."),
    "OwnerNotFound": _error(
        "The key's owner does not exist or was deleted: `Failed to get user quota`. (The gateways' published "
        "examples answer this with 200; clients test `success`.)"
    ),
    "MethodNotAllowed": _error(
        "The path exists but not for this method; the Allow header lists the methods.",
        headers={"Allow": {"schema": {"type": "string"}, "description": "The methods the path accepts."}},
    ),
    "TooManyFailedAttempts": _error(
        "This client address had AUTH_FAILURE_LIMIT failed authentications (401) in the window; every "
        "request it makes to the authenticated endpoints is refused until Retry-After, valid keys included.",
        headers=_retry_after("Seconds until the oldest failure leaves the window."),
    ),
    "DatabaseUnavailable": _error(
        f"The gateway database did not answer: `{DATABASE_ERROR_MESSAGE}`. (The gateways' published examples "
        "answer this with 200; clients test `success`.)"
    ),
    "InternalError": _error("An unexpected error; details are only in the service log."),
    "LogsBusyOrDatabaseUnavailable": _error(
        f"`{BUSY_MESSAGE}` (with `Retry-After: {RETRY_AFTER_SECONDS}`) when as many slow requests "
        "(log queries and alert tests) as the host allows (half its cores) are running already: refused at once, "
        "nothing is queried, balances keep answering. Or the database (or the log store) did not answer: "
        f"`{DATABASE_ERROR_MESSAGE}`."
    ),
}

_AUTH_ERRORS = {
    "401": _ref("responses", "Unauthorized"),
    "403": _ref("responses", "Forbidden"),
    "404": _ref("responses", "OwnerNotFound"),
    "405": _ref("responses", "MethodNotAllowed"),
    "429": _ref("responses", "TooManyFailedAttempts"),
    "500": _ref("responses", "InternalError"),
    "503": _ref("responses", "DatabaseUnavailable"),
}
_PUBLIC_ERRORS = {"405": _ref("responses", "MethodNotAllowed"), "500": _ref("responses", "InternalError")}

_DATE_PARAMETERS = [
    _query(
        name,
        f"{text} (YYYY-MM-DD, a UTC day), as OpenAI clients send it. Give both for the net spend of "
        "[start_date, end_date) from the gateway's logs, or neither for the lifetime usage; without a logs "
        f"table or with the gateway's {LOG_CONSUME} off, the lifetime usage is reported either way.",
    )
    for name, text in (("start_date", "First day, included"), ("end_date", "Day after the last, excluded"))
]


def _secured(
    operation_id: str, summary: str, description: str, tag: str, responses: dict[str, Any], **extra: Any
) -> dict[str, Any]:
    """One operation behind the gateway key: its own answers plus every refusal authentication can give."""
    return {
        "operationId": operation_id,
        "summary": summary,
        "description": description,
        "tags": [tag],
        "security": [{"apiKey": []}],
        **extra,
        "responses": dict(sorted({**_AUTH_ERRORS, **responses}.items())),
    }


_ALERT_ID = {
    "name": "alert_id",
    "in": "path",
    "required": True,
    "schema": {"type": "integer", "minimum": 0},
    "description": "The `id` from the answer that created the alert.",
}
_NO_SUCH_ALERT = _error(
    "No such alert this key may manage (missing, or another live key's), or the key's owner does not exist."
)

_USER_BALANCE_TEXT = (
    "The owner's quota in the display unit; roles in UNLIMITED_USER_ROLES report -1 (unlimited). "
    "`/user/balance` is the same endpoint."
)
_TOKEN_BALANCE_TEXT = (
    "The key's remaining quota in the display unit; an unlimited key reports -1. `/balance` is the same endpoint."
)


def _read(
    operation_id: str, summary: str, description: str, schema: str, errors: dict[str, Any] | None = None, **extra: Any
) -> dict[str, Any]:
    """A GET behind the key whose 200 answer, described by the summary, is ``schema``."""
    responses = {"200": _json(summary, _ref("schemas", schema)), **(errors or {})}
    return _secured(operation_id, summary, description, "balance", responses, **extra)


def _v1_and_bare(path: str, operation: dict[str, Any]) -> dict[str, Any]:
    """The GET at ``/v1<path>`` and at ``path`` (clients use either); the second's operationId ends in WithoutV1."""
    return {
        f"/v1{path}": {"get": operation},
        path: {"get": {**operation, "operationId": operation["operationId"] + "WithoutV1"}},
    }


def _public(operation_id: str, summary: str, responses: dict[str, Any]) -> dict[str, Any]:
    return {
        "get": {
            "operationId": operation_id,
            "summary": summary,
            "tags": ["service"],
            "security": [],
            "responses": {**responses, **_PUBLIC_ERRORS},
        }
    }


_SUBSCRIPTION_TEXT = (
    "Total credit as OpenAI's billing subscription, always in USD: the key's credit, or the owner account's when "
    "the gateway's DisplayTokenStatEnabled option is off."
)
_USAGE_TEXT = (
    "Usage in US cents, of the key or the account per the gateway's DisplayTokenStatEnabled: the net spend of the "
    "date range when one is given (from the gateway's request logs; LOG_DATABASE_URL if they have a database of "
    "their own), else the lifetime usage."
)


_DOCUMENT: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "balance-service",
        "version": __version__,
        "summary": "How much credit is left on a one-api / new-api sk- key.",
        "license": {"name": "MIT", "identifier": "MIT"},
    },
    "tags": [
        {"name": "balance", "description": "Authenticated with the gateway key (`Authorization: Bearer sk-…`)."},
        {
            "name": "alerts",
            "description": (
                "Webhooks, chat and push messages (Apprise) or e-mail when a balance falls below a threshold or "
                "its forecast below a number of days; authenticated like `balance`."
            ),
        },
        {"name": "service", "description": "Probes and this document; no key needed."},
    ],
    "paths": {
        **_v1_and_bare(
            "/user/balance",
            _read("getUserBalance", "Balance of the account behind the key", _USER_BALANCE_TEXT, "Balance"),
        ),
        **_v1_and_bare(
            "/balance", _read("getTokenBalance", "Balance of the key itself", _TOKEN_BALANCE_TEXT, "Balance")
        ),
        **_v1_and_bare(
            "/dashboard/billing/subscription",
            _read(
                "getBillingSubscription",
                "Billing subscription (OpenAI-compatible)",
                _SUBSCRIPTION_TEXT,
                "BillingSubscription",
            ),
        ),
        **_v1_and_bare(
            "/dashboard/billing/usage",
            _read(
                "getBillingUsage",
                "Billing usage (OpenAI-compatible)",
                _USAGE_TEXT,
                "BillingUsage",
                {
                    "400": _error(
                        "A malformed date, only one of the two dates, end_date not after start_date, or more than "
                        f"{MAX_RANGE_DAYS} days."
                    ),
                    "503": _ref("responses", "LogsBusyOrDatabaseUnavailable"),
                },
                parameters=_DATE_PARAMETERS,
            ),
        ),
        "/v1/usage": {
            "get": _secured(
                "getUsage",
                "Spend per day and per model, and when the credit runs out",
                (
                    "From the gateway's request logs (LOG_DATABASE_URL when they have a database of their own, "
                    "SQL or ClickHouse). "
                    "Amounts are net spend (consumed minus refunded) in the balances' `unit`, with their "
                    "precision; a refund is negative spend on its own day and model. `days` lists every UTC day "
                    "of the range, days without requests included (zero), oldest first, so a chart needs no gaps "
                    "filled. `models` are ordered by spend, largest first. `forecast` divides the net spend of the "
                    "7 whole UTC days before today by 7 (today's partial day is not counted) and the scope's "
                    "remaining credit by that rate."
                ),
                "balance",
                {
                    "200": _json("Usage of the range.", _ref("schemas", "Usage")),
                    "400": _error(
                        f"A malformed date, end_date not after start_date, more than {MAX_RANGE_DAYS} days, or an "
                        "unknown scope."
                    ),
                    "409": _error(
                        "The gateway's logs cannot tell: there is no logs table (in LOG_DATABASE_URL, if set), or "
                        f"the gateway's {LOG_CONSUME} option is off."
                    ),
                    "503": _ref("responses", "LogsBusyOrDatabaseUnavailable"),
                },
                parameters=[
                    _query(
                        "start_date",
                        f"First UTC day, included (YYYY-MM-DD). Default: end_date minus {DEFAULT_RANGE_DAYS} days.",
                    ),
                    _query(
                        "end_date",
                        "UTC day after the last one, excluded (YYYY-MM-DD). Default: tomorrow, so that the "
                        f"default range is the last {DEFAULT_RANGE_DAYS} days, today included. At most "
                        f"{MAX_RANGE_DAYS} days after start_date.",
                    ),
                    _query(
                        "scope",
                        "The spend of the key's whole account, or of this key only.",
                        {"enum": ["account", "key"], "default": "account"},
                    ),
                ],
            )
        },
        "/v1/capabilities": {
            "get": _secured(
                "getCapabilities",
                "What this service can show for the key",
                "Whether the usage history exists (so that a page need not provoke `GET /v1/usage`'s 409) and which "
                "alert channels the service offers. Changes nothing; the balance answers are not affected.",
                "balance",
                {"200": _json("What is available.", _ref("schemas", "Capabilities"))},
            )
        },
        "/v1/user/balance/alerts": {
            "post": _secured(
                "createBalanceAlert",
                "Create a balance alert",
                "A message sent by `flask check-alerts` when the watched balance falls below `threshold`, "
                "or when its spend forecast's days left fall below `days_left`: a signed webhook, a chat or push "
                "message through Apprise, or an e-mail. "
                "Creating one sends nothing. The answer carries the webhook signing secret, once.",
                "alerts",
                {
                    "201": _json("Created; `alert.secret` is shown only here.", _ref("schemas", "AlertCreated")),
                    "403": _error(
                        "The key's owner is disabled, or the key has expired (an expired key can read but not "
                        "create alerts)."
                    ),
                    "400": _error(
                        "The body is not a JSON object, has an unknown field, gives not exactly one of webhook_url, "
                        "notify_url and email, or a field is invalid (including a host that does not resolve or "
                        "resolves to a refused address, a notify_url scheme the operator does not allow, or email "
                        "without ALERT_SMTP_URL). The message names the field. Nothing is stored."
                    ),
                    "409": _error(f"The account already has {MAX_ALERTS_PER_USER} alerts; delete one first."),
                },
                requestBody={"required": True, "content": {_JSON: {"schema": _ref("schemas", "AlertRequest")}}},
            ),
            "get": _secured(
                "listBalanceAlerts",
                "List the key's balance alerts",
                "The alerts this key created (an account-scoped one still watches the whole account), and, without "
                "their URL, the account's alerts no live key owns: stored before creators were recorded, or "
                "created by a key the gateway has since deleted (those never notify again). Never the secrets.",
                "alerts",
                {"200": _json("The alerts, oldest first.", _ref("schemas", "AlertList"))},
            ),
        },
        "/v1/user/balance/alerts/{alert_id}": {
            "delete": _secured(
                "deleteBalanceAlert",
                "Delete a balance alert",
                "Deletes one of the alerts this key may list: its own, or one of its account's that no live key "
                "owns. Another key's alert is answered like a missing one.",
                "alerts",
                {
                    "200": _json("Deleted.", _ref("schemas", "AlertDeleted")),
                    "404": _NO_SUCH_ALERT,
                },
                parameters=[_ALERT_ID],
            )
        },
        "/v1/user/balance/alerts/{alert_id}/test": {
            "post": _secured(
                "testBalanceAlert",
                "Send a test message now",
                "Sends a message marked as a test through the alert's channel (a webhook gets event "
                '`balance.test` with `"test": true`), while the request waits: one attempt, at most 10 s. '
                "At most one test per alert per minute, across all workers. The alert's state is not changed.",
                "alerts",
                {
                    "200": _json("Delivered.", _ref("schemas", "AlertTested")),
                    "403": _error(
                        "The key's owner is disabled, or the key has expired (an expired key cannot send tests)."
                    ),
                    "404": _NO_SUCH_ALERT,
                    "429": _error(
                        "This alert was tested less than a minute ago, or this client address had "
                        "AUTH_FAILURE_LIMIT failed authentications.",
                        headers=_retry_after("Seconds until a test may be sent again."),
                    ),
                    "502": _error(
                        "Not delivered; the message says why in words (an HTTP status, a refused address, a failed "
                        "connection), never the target's address or tokens."
                    ),
                    "503": _error(
                        f"`{TEST_BUSY_MESSAGE}` (with `Retry-After: {RETRY_AFTER_SECONDS}`) when the host "
                        "runs as many slow requests (tests and usage queries, half its cores) as it allows: refused "
                        "at once, nothing is sent and the alert's test of this minute is kept. Or the database did "
                        f"not answer: `{DATABASE_ERROR_MESSAGE}`."
                    ),
                },
                parameters=[_ALERT_ID],
            )
        },
        "/healthz": _public(
            "getHealth", "Liveness: the process serves requests", {"200": _json("Up.", _ref("schemas", "Health"))}
        ),
        "/readyz": _public(
            "getReadiness",
            "Readiness: the gateway database answers",
            {
                "200": _json("Ready.", _ref("schemas", "Ready")),
                "503": _json("The database does not answer.", _ref("schemas", "NotReady")),
            },
        ),
        "/metrics": _public(
            "getMetrics",
            "Prometheus metrics (requests by route and status, latency, database errors); keep it internal",
            {
                "200": {
                    "description": "Prometheus text exposition format.",
                    "content": {"text/plain": {"schema": {"type": "string"}}},
                }
            },
        ),
        "/openapi.json": _public(
            "getOpenApiDocument",
            "This OpenAPI document",
            {
                "200": _json(
                    "The document itself (unwrapped: it has no `success` field, so tools can read it).",
                    {"type": "object", "required": ["openapi", "info", "paths"]},
                )
            },
        ),
    },
    "components": {
        "schemas": _SCHEMAS,
        "responses": _RESPONSES,
        "securitySchemes": {
            "apiKey": {
                "type": "http",
                "scheme": "bearer",
                "description": "The gateway key, `sk-<48 characters>` (the `sk-` prefix and a `-suffix` are optional).",
            }
        },
    },
}


def document() -> dict[str, Any]:
    """A fresh copy of the document, so no caller can change what the next one is served."""
    return copy.deepcopy(_DOCUMENT)
