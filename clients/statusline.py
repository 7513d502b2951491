#!/usr/bin/env python3
"""The credit left on a one-api / new-api key, as one short line for a status bar.

Claude Code's ``statusLine``, tmux's ``status-right`` and Waybar's custom module run this file. It needs
Python 3.8 or newer and nothing outside the standard library, so it can be copied to any machine and run
as ``python3 statusline.py``; ``--help`` lists the options.

What it reads: ``GET /v1/user/balance`` (``--scope key``: ``/v1/balance``) of any relay that answers the
gateways' documented balance fields (``success``, ``remain_balance``, ``used_balance``, ``unlimited_quota``,
and ``unit`` where the relay sends it), and balance-service's ``GET /v1/usage`` forecast where the relay has
that endpoint. Where: ``--base-url``/``--key``, else ``BALANCE_BASE_URL``/``BALANCE_KEY``, else Claude
Code's ``ANTHROPIC_BASE_URL`` with ``ANTHROPIC_AUTH_TOKEN`` (or ``ANTHROPIC_API_KEY``), else
``OPENAI_BASE_URL`` with ``OPENAI_API_KEY``. A key is only ever sent to the base URL it was configured
with.

It stays out of the way: answers are cached per user for ``--ttl`` seconds (file mode 0600, entries keyed by
a hash of base URL, scope and key, never the key), the network gets 2 seconds at most in all, and a failure
prints the last known value marked stale, or ``balance: unavailable (<reason>)``, and exits 0 unless
``--strict``. It prints no traceback and never the key.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import re
import sys
import threading
import time
from decimal import ROUND_DOWN, ROUND_HALF_UP, Decimal, InvalidOperation

USER_AGENT = "balance-statusline/1.0"
#: The most the network may take, in seconds, for every request of one call together.
MAX_TIMEOUT = 2.0
#: How long a Claude Code session document on stdin may take to arrive, and the most read of it.
STDIN_WAIT = 0.15
STDIN_LIMIT = 1 << 20
#: The most read of an answer.
ANSWER_LIMIT = 1 << 20
#: Cache entries not refreshed for this long are dropped.
CACHE_KEEP_SECONDS = 30 * 86400
#: Where the base URL and the key come from, in this order: (URL variable, key variables).
SOURCES = (
    ("BALANCE_BASE_URL", ("BALANCE_KEY",)),
    ("ANTHROPIC_BASE_URL", ("ANTHROPIC_AUTH_TOKEN", "ANTHROPIC_API_KEY")),
    ("OPENAI_BASE_URL", ("OPENAI_API_KEY",)),
)
PATHS = {"account": "/v1/user/balance", "key": "/v1/balance"}
LEVELS = ("ok", "warning", "critical")
ANSI = {"ok": "32", "warning": "33", "critical": "1;31", "unavailable": "33"}
TMUX = {"ok": "green", "warning": "yellow", "critical": "red", "unavailable": "yellow"}

WORDS = {
    "en": {
        "left": "{} left",
        "per_day": "{}/day",
        "days": "~{} days",
        "one_day": "~1 day",
        "session": "session {}",
        "stale": "(stale, {} ago)",
        "unavailable": "balance: unavailable ({})",
        "ages": ("s", "m", "h", "d"),
        "remaining": "Remaining",
        "used": "Used",
        "rate": "Spending (last 7 days)",
        "runs_out": "Runs out around",
        "account": "account",
        "key": "this key",
        "as_of": "As of",
        "failed": "Last refresh failed",
        "session_cost": "This session (Claude Code's estimate)",
        "unlimited": "unlimited",
    },
    "zh": {
        "left": "余额 {}",
        "per_day": "{}/天",
        "days": "约 {} 天",
        "one_day": "约 1 天",
        "session": "本次会话 {}",
        "stale": "（{}前的数据）",
        "unavailable": "余额：暂不可用（{}）",
        "ages": ("秒", "分钟", "小时", "天"),
        "remaining": "剩余",
        "used": "已用",
        "rate": "日均消耗（近 7 天）",
        "runs_out": "预计用完",
        "account": "账户",
        "key": "此密钥",
        "as_of": "更新于",
        "failed": "上次刷新失败",
        "session_cost": "本次会话（Claude Code 估算）",
        "unlimited": "无限额度",
    },
}


class Failure(Exception):
    """Why no balance could be had: a short reason shown in the line, e.g. ``401 Invalid token``."""


# --- where to ask ----------------------------------------------------------------------------------------------


def resolve(base_url: str | None, key: str | None, environ: dict) -> tuple[str, str]:
    """The base URL (without a trailing ``/`` or ``/v1``) and the key, from the options or the environment.

    The URL is ``--base-url`` or the first variable of ``SOURCES`` that is set; the key is ``--key`` or a key
    variable of that same source (``BALANCE_KEY`` for ``--base-url``), so that no key goes to another relay.
    """
    key_names: tuple[str, ...] = ("BALANCE_KEY",)
    url = (base_url or "").strip()
    if not url:
        for url_name, names in SOURCES:
            if environ.get(url_name, "").strip():
                url, key_names = environ[url_name].strip(), names
                break
        else:
            raise Failure("no base URL: set BALANCE_BASE_URL or --base-url")
    key = (key or "").strip() or next((environ[n].strip() for n in key_names if environ.get(n, "").strip()), "")
    if not key:
        raise Failure(f"no key: set {key_names[0]} or --key")
    if not re.match(r"https?://[^/?#]", url, re.IGNORECASE):
        raise Failure("the base URL must start with http:// or https://")
    url = url.rstrip("/")
    if url.lower().endswith("/v1"):
        url = url[:-3]
    return url, key


def entry_id(base_url: str, scope: str, key: str) -> str:
    """The cache entry's name: a hash, so that the cache file never holds the key."""
    return hashlib.sha256("\n".join((base_url, scope, key)).encode("utf-8")).hexdigest()


# --- asking ----------------------------------------------------------------------------------------------------


def _http_get(url: str, key: str, timeout: float) -> tuple[int, bytes]:
    """Status and body of ``GET url`` with the key; redirects are followed only to the same scheme, host and port."""
    import urllib.error
    import urllib.parse
    import urllib.request

    def origin(address):
        parts = urllib.parse.urlsplit(address)
        return parts.scheme.lower(), parts.hostname, parts.port

    class SameHost(urllib.request.HTTPRedirectHandler):
        # urllib copies the Authorization header into a redirected request: never to another host or port,
        # and never from https to plain http, where the key would cross the network readable.
        def redirect_request(self, req, fp, code, msg, headers, newurl):
            if origin(newurl) != origin(req.full_url):
                return None
            return super().redirect_request(req, fp, code, msg, headers, newurl)

    request = urllib.request.Request(
        url, headers={"Authorization": "Bearer " + key, "Accept": "application/json", "User-Agent": USER_AGENT}
    )
    opener = urllib.request.build_opener(SameHost)
    try:
        with opener.open(request, timeout=timeout) as response:
            return response.status, response.read(ANSWER_LIMIT)
    except urllib.error.HTTPError as e:
        try:
            body = e.read(ANSWER_LIMIT)
        except OSError:
            body = b""
        finally:
            e.close()
        return e.code, body


def _network_reason(error: BaseException) -> str:
    """A few words for a request that got no answer."""
    import socket
    import ssl

    reason = getattr(error, "reason", error)  # urllib.error.URLError wraps the socket's error
    if isinstance(reason, (socket.timeout, TimeoutError)):
        return "timed out"
    if isinstance(reason, ConnectionRefusedError):
        return "connection refused"
    if isinstance(reason, socket.gaierror):
        return "unknown host"
    if isinstance(reason, ssl.SSLError):
        return "TLS error"
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror.lower()
    return type(reason).__name__


class _Request(threading.Thread):
    """One GET in a daemon thread, so that the caller can give up at its deadline whatever the socket does."""

    def __init__(self, url: str, key: str, timeout: float) -> None:
        super().__init__(daemon=True)
        self.url, self.key, self.timeout = url, key, timeout
        self.answer: tuple[int, bytes] | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.answer = _http_get(self.url, self.key, self.timeout)
        except BaseException as e:  # noqa: BLE001 - handed to the caller, which words it
            self.error = e

    def result(self, deadline: float) -> tuple[int, bytes]:
        self.join(max(0.0, deadline - time.monotonic()))
        if self.is_alive():
            raise Failure("timed out")
        if self.error is not None:
            raise Failure(_network_reason(self.error))
        assert self.answer is not None
        return self.answer


def clean(text: str, key: str, limit: int = 80) -> str:
    """Text from a relay made safe for a terminal: no key, no control characters, one short line."""
    core = key[3:] if key.startswith("sk-") else key
    # The whole key first, then the key without "sk-", then without a channel suffix ("sk-<key>-<suffix>").
    for secret in (key, core, core.split("-", 1)[0]):
        if len(secret) >= 8:
            text = text.replace(secret, "sk-…")
    text = " ".join("".join(c if c.isprintable() else " " for c in text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _status_phrase(status: int) -> str:
    from http import HTTPStatus

    try:
        return f"{status} {HTTPStatus(status).phrase}"
    except ValueError:
        return f"HTTP {status}"


def _answer(status: int, body: bytes, key: str) -> dict:
    """The JSON object of a successful answer, or a Failure with the relay's message."""
    try:
        data = json.loads(body.decode("utf-8"), parse_float=Decimal)
    except (UnicodeDecodeError, ValueError):
        data = None
    if not isinstance(data, dict):
        raise Failure("bad JSON" if status == 200 else _status_phrase(status))
    if status == 200 and data.get("success") is True:
        return data
    message = data.get("message")
    if not isinstance(message, str) and isinstance(data.get("error"), dict):
        message = data["error"].get("message")  # OpenAI's error shape, which some relays use
    if not isinstance(message, str) or not message.strip():
        raise Failure(_status_phrase(status) if status != 200 else "success is false")
    message = clean(message, key)
    raise Failure(message if status == 200 else f"{status} {message}")


def _number(value: object) -> Decimal | None:
    if isinstance(value, bool) or not isinstance(value, (int, Decimal)):
        return None
    return Decimal(value)


def balance_value(data: dict) -> dict:
    """The documented balance fields, with amounts as exact decimal text (what the cache stores)."""
    remain = _number(data.get("remain_balance"))
    if remain is None:
        remain = _number(data.get("balance"))  # cc-switch's name for the same figure
    if remain is None:
        raise Failure("bad JSON: no remain_balance")
    used = _number(data.get("used_balance"))
    unit = data.get("unit")
    return {
        "remain": str(remain),
        "used": None if used is None else str(used),
        "unlimited": data.get("unlimited_quota") is True or remain == -1,
        "unit": unit if isinstance(unit, str) and unit.strip() else None,
    }


def forecast_value(data: dict) -> dict:
    """``daily_rate``, ``days_left`` and ``runs_out_on`` of a ``/v1/usage`` answer (each may be missing)."""
    forecast = data.get("forecast")
    if not isinstance(forecast, dict):
        return {}
    rate, days = _number(forecast.get("daily_rate")), _number(forecast.get("days_left"))
    runs_out = forecast.get("runs_out_on")
    return {
        "daily_rate": None if rate is None else str(rate),
        "days_left": None if days is None else str(days),
        "runs_out_on": runs_out if isinstance(runs_out, str) and re.fullmatch(r"\d{4}-\d\d-\d\d", runs_out) else None,
    }


def fetch(base_url: str, key: str, scope: str, timeout: float) -> dict:
    """The balance, and the forecast where the relay answers ``/v1/usage``, both asked at once within ``timeout``."""
    import datetime

    deadline = time.monotonic() + timeout
    today = datetime.date(*time.gmtime()[:3])  # the service's days are UTC days
    window = (today - datetime.timedelta(days=7), today + datetime.timedelta(days=1))  # the forecast's 7 days
    usage_url = f"{base_url}/v1/usage?scope={scope}&start_date={window[0]}&end_date={window[1]}"
    balance = _Request(base_url + PATHS[scope], key, timeout)
    usage = _Request(usage_url, key, timeout)
    balance.start()
    usage.start()
    value = balance_value(_answer(*balance.result(deadline), key))
    with contextlib.suppress(Failure):  # a relay without /v1/usage (404) or logs (409): no forecast
        value.update(forecast_value(_answer(*usage.result(deadline), key)))
    return value


# --- the cache -------------------------------------------------------------------------------------------------


def cache_path(environ: dict) -> str:
    base = environ.get("XDG_CACHE_HOME", "")
    if not os.path.isabs(base):  # the XDG spec says to ignore a relative path
        base = os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "balance-statusline", "cache.json")


def load_cache(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            entries = json.load(f)
    except (OSError, ValueError):
        return {}
    if not isinstance(entries, dict):
        return {}
    return {k: v for k, v in entries.items() if _valid_entry(v)}


def _valid_entry(entry: object) -> bool:
    """An entry as ``run`` writes it (a cache edited by hand or by another version is ignored, not trusted)."""
    if not isinstance(entry, dict) or not isinstance(entry.get("checked_at"), (int, float)):
        return False
    value = entry.get("value")
    if value is None:
        return isinstance(entry.get("error"), str)
    try:
        return isinstance(entry.get("fetched_at"), (int, float)) and Decimal(value["remain"]).is_finite()
    except (TypeError, KeyError, InvalidOperation):
        return False


def save_cache(path: str, entries: dict, now: float) -> None:
    """Write the entries atomically (a private temporary file, then a rename) with mode 0600; best effort."""
    import tempfile

    kept = {k: v for k, v in entries.items() if now - v["checked_at"] < CACHE_KEEP_SECONDS}
    directory = os.path.dirname(path)
    try:
        os.makedirs(directory, mode=0o700, exist_ok=True)
        fd, temporary = tempfile.mkstemp(dir=directory, prefix=".cache-", suffix=".tmp")  # mode 0600
    except OSError:
        return
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(kept, f, separators=(",", ":"))
        os.replace(temporary, path)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(temporary)


# --- the session document on stdin -----------------------------------------------------------------------------


def _read_bounded(fd: int, wait: float, limit: int) -> bytes:
    """What arrives on ``fd`` within ``wait`` seconds (up to end of file or ``limit`` bytes), never blocking."""
    chunks: list[bytes] = []
    size = 0
    deadline = time.monotonic() + wait
    if os.name == "posix":
        import select

        while size < limit:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                break
            chunk = os.read(fd, min(65536, limit - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        return b"".join(chunks)

    def reader() -> None:  # no select() on pipes elsewhere: a daemon thread that may be left behind
        with contextlib.suppress(OSError):
            chunks.append(os.read(fd, limit))

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    thread.join(wait)
    return b"".join(chunks) if not thread.is_alive() else b""


def session_cost(stream: object) -> Decimal | None:
    """``cost.total_cost_usd`` of the session JSON Claude Code pipes in; None for a terminal or anything else."""
    try:
        fd = stream.fileno()  # type: ignore[attr-defined]
        if os.isatty(fd):
            return None
        data = json.loads(_read_bounded(fd, STDIN_WAIT, STDIN_LIMIT).decode("utf-8"), parse_float=Decimal)
    except (AttributeError, OSError, ValueError):
        return None
    cost = data.get("cost") if isinstance(data, dict) else None
    amount = _number(cost.get("total_cost_usd")) if isinstance(cost, dict) else None
    return amount if amount is not None and amount >= 0 else None


# --- what it prints --------------------------------------------------------------------------------------------


def threshold(text: str) -> tuple[str, Decimal]:
    """``5`` (an amount in the balance's unit) or ``7d`` (days left at the recent rate)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(d|days?)?\s*", text, re.IGNORECASE)
    if not match:
        raise argparse.ArgumentTypeError(f"{text!r} is neither an amount (5) nor days (7d)")
    return ("days" if match.group(2) else "amount", Decimal(match.group(1)))


def level(value: dict, warn: tuple[str, Decimal] | None, critical: tuple[str, Decimal] | None) -> str:
    """``ok``, ``warning`` or ``critical``: exhausted credit is always critical, unlimited credit always ok."""
    if value["unlimited"]:
        return "ok"
    remain = Decimal(value["remain"])
    if remain <= 0:
        return "critical"
    days = value.get("days_left")
    for name, limit in (("critical", critical), ("warning", warn)):
        if limit is None:
            continue
        kind, amount = limit
        if (kind == "amount" and remain <= amount) or (kind == "days" and days is not None and Decimal(days) <= amount):
            return name
    return "ok"


def _symbol(unit: str | None) -> tuple[str, str]:
    """Prefix and suffix of an amount in ``unit`` (a relay that names none is taken to count in USD)."""
    name = (unit or "USD").strip()
    if name.upper() == "USD":
        return "$", ""
    if name.upper() in ("CNY", "RMB"):
        return "¥", ""
    if name.upper() in ("TOKENS", "QUOTA"):
        return "", " tokens"
    return clean(name, "", 8), ""  # a gateway's custom currency symbol


def amount_text(amount: Decimal, unit: str | None) -> str:
    """``$6.15``, ``¥0.0042`` (two significant digits below a cent), ``12.3M tokens``."""
    prefix, suffix = _symbol(unit)
    if suffix:  # whole tokens, shortened past 10,000
        whole = amount.to_integral_value(ROUND_HALF_UP)
        for size, letter in ((Decimal(10) ** 9, "B"), (Decimal(10) ** 6, "M"), (Decimal(10) ** 3, "k")):
            if abs(whole) >= size and abs(whole) >= 10000:
                return f"{(whole / size).quantize(Decimal('0.1'), ROUND_HALF_UP)}{letter}{suffix}"
        return f"{whole:,}{suffix}"
    if amount == 0 or abs(amount) >= Decimal("0.01"):
        return f"{prefix}{amount.quantize(Decimal('0.01'), ROUND_HALF_UP):,}"
    exponent = Decimal(1).scaleb(amount.adjusted() - 1)
    return f"{prefix}{amount.quantize(exponent, ROUND_HALF_UP):f}"


def days_text(days: Decimal, words: dict) -> str:
    if days < 1:
        return words["days"].format(days.quantize(Decimal("0.1"), ROUND_DOWN))
    whole = int(days.to_integral_value(ROUND_DOWN))
    return words["one_day"] if whole == 1 else words["days"].format(whole)


def age_text(seconds: float, words: dict) -> str:
    seconds_, minutes, hours, days = words["ages"]
    for size, suffix in ((86400, days), (3600, hours), (60, minutes)):
        if seconds >= size:
            return f"{int(seconds // size)}{suffix}"
    return f"{int(seconds)}{seconds_}"


def line_parts(value: dict, session: Decimal | None, words: dict) -> list[str]:
    unit = value.get("unit")
    remain = "∞" if value["unlimited"] else amount_text(Decimal(value["remain"]), unit)
    parts = [words["left"].format(remain)]
    rate = value.get("daily_rate")
    if rate is not None and Decimal(rate) > 0:
        parts.append(words["per_day"].format(amount_text(Decimal(rate), unit)))
    if value.get("days_left") is not None and not value["unlimited"]:
        parts.append(days_text(Decimal(value["days_left"]), words))
    if session is not None:
        parts.append(words["session"].format(amount_text(session, "USD")))
    return parts


def tooltip(value: dict | None, entry: dict, scope: str, session: Decimal | None, words: dict) -> str:
    lines = []
    if value is not None:
        unit = value.get("unit")
        remain = words["unlimited"] if value["unlimited"] else amount_text(Decimal(value["remain"]), unit)
        lines.append(f"{words['remaining']} ({words[scope]}): {remain}")
        if value.get("used") is not None:
            lines.append(f"{words['used']}: {amount_text(Decimal(value['used']), unit)}")
        if value.get("daily_rate") is not None:
            lines.append(f"{words['rate']}: {words['per_day'].format(amount_text(Decimal(value['daily_rate']), unit))}")
        if value.get("runs_out_on") and not value["unlimited"]:
            lines.append(f"{words['runs_out']}: {value['runs_out_on']}")
        if entry.get("fetched_at"):
            lines.append(f"{words['as_of']}: {time.strftime('%Y-%m-%d %H:%M', time.localtime(entry['fetched_at']))}")
    if entry.get("error"):
        lines.append(f"{words['failed']}: {entry['error']}")
    if session is not None:
        lines.append(f"{words['session_cost']}: {amount_text(session, 'USD')}")
    return "\n".join(lines)


def percentage(value: dict) -> int | None:
    """How much of the credit ever held is left, 0-100 (Waybar picks ``format-icons`` by it)."""
    if value["unlimited"]:
        return 100
    if value.get("used") is None:
        return None
    remain, used = max(Decimal(value["remain"]), Decimal(0)), max(Decimal(value["used"]), Decimal(0))
    if remain + used == 0:
        return None
    return int((remain * 100 / (remain + used)).to_integral_value(ROUND_HALF_UP))


def json_text(value: object) -> str:
    """JSON on one line, with Decimal amounts written with their exact digits.

    The standard library's ``json`` can only write numbers through ``float``; amounts here are ``Decimal``
    (money is never a float), and the file may use nothing outside the standard library.
    """
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, dict):
        return "{" + ",".join(json.dumps(str(k)) + ":" + json_text(v) for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(json_text(v) for v in value) + "]"
    return json.dumps(value)


def _markup(text: str) -> str:
    """Waybar reads ``text`` and ``tooltip`` as Pango markup."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def render(args: argparse.Namespace, entry: dict | None, failure: str | None, session: Decimal | None) -> str:
    """The line (or Waybar's JSON object) for a cache entry, or for a failure with nothing known."""
    words = WORDS[args.lang]
    value = entry.get("value") if entry else None
    error = failure or (entry or {}).get("error")
    if value is None:
        name, text = "unavailable", words["unavailable"].format(error)
    else:
        name = level(value, args.warn, args.critical)
        text = " · ".join(line_parts(value, session, words))
        if error:
            text += " " + words["stale"].format(age_text(max(0.0, time.time() - entry["fetched_at"]), words))
    if args.format == "json":
        body: dict = {
            "text": _markup(text),
            "tooltip": _markup(tooltip(value, entry or {"error": error}, args.scope, session, words) or text),
            "class": [name, "stale"] if value is not None and error else name,
        }
        if value is not None and percentage(value) is not None:
            body["percentage"] = percentage(value)
        numbers = {"scope": args.scope, "stale": value is not None and bool(error), "error": error}
        if value is not None:
            numbers.update(
                remain_balance=Decimal(value["remain"]),
                used_balance=None if value.get("used") is None else Decimal(value["used"]),
                unlimited_quota=value["unlimited"],
                unit=value.get("unit"),
                daily_rate=None if value.get("daily_rate") is None else Decimal(value["daily_rate"]),
                days_left=None if value.get("days_left") is None else Decimal(value["days_left"]),
                runs_out_on=value.get("runs_out_on"),
                fetched_at=int(entry["fetched_at"]),
            )
        if session is not None:
            numbers["session_cost_usd"] = session
        return json_text({**body, **numbers})
    if args.format == "tmux":
        return f"#[fg={TMUX[name]}]{text.replace('#', '##')}#[default]"
    if args.color:
        return f"\x1b[{ANSI[name]}m{text}\x1b[0m"
    return text


# --- the command -----------------------------------------------------------------------------------------------


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds")
    return value


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="Print the credit left on a one-api / new-api key as one short status line.",
        epilog="Without --base-url/--key: BALANCE_BASE_URL/BALANCE_KEY, else ANTHROPIC_BASE_URL with "
        "ANTHROPIC_AUTH_TOKEN (or ANTHROPIC_API_KEY), else OPENAI_BASE_URL with OPENAI_API_KEY.",
    )
    p.add_argument("--base-url", help="the relay's base URL, with or without /v1")
    p.add_argument("--key", help="the sk- key (seen by other local users in the process list: prefer BALANCE_KEY)")
    p.add_argument("--scope", choices=("account", "key"), default="account", help="account (default) or key")
    p.add_argument("--format", choices=("text", "tmux", "json"), default="text", help="json: Waybar's object")
    p.add_argument("--color", action="store_true", help="colour the text line with ANSI codes")
    p.add_argument("--lang", choices=tuple(WORDS), default="en")
    p.add_argument("--warn", type=threshold, default=threshold("7d"), help="an amount (5) or days (7d); default 7d")
    p.add_argument("--critical", type=threshold, default=threshold("2d"), help="as --warn; default 2d")
    p.add_argument("--ttl", type=_seconds, default=60.0, help="seconds an answer is reused (default 60)")
    p.add_argument("--timeout", type=_seconds, default=MAX_TIMEOUT, help="network seconds in all (at most 2)")
    p.add_argument("--strict", action="store_true", help="exit 1 when the figure is stale or unavailable")
    return p


def run(argv: list[str] | None, environ: dict, stdin: object) -> tuple[str, int]:
    """The line to print and the exit status."""
    args = parser().parse_args(argv)
    session = session_cost(stdin) if args.format == "text" else None
    try:
        base_url, key = resolve(args.base_url, args.key, environ)
    except Failure as e:
        return render(args, None, str(e), session), 1 if args.strict else 0
    path = cache_path(environ)
    entries = load_cache(path)
    name = entry_id(base_url, args.scope, key)
    now = time.time()
    entry = entries.get(name)
    if entry is None or not 0 <= now - entry["checked_at"] < args.ttl:
        try:
            value = fetch(base_url, key, args.scope, min(args.timeout, MAX_TIMEOUT))
            entry = {"checked_at": now, "fetched_at": now, "value": value, "error": None}
        except Failure as e:
            known = entry if entry and entry.get("value") else {}
            entry = {"checked_at": now, "fetched_at": known.get("fetched_at"), "value": known.get("value")}
            entry["error"] = clean(str(e), key)
        entries[name] = entry
        save_cache(path, entries, now)
    return render(args, entry, None, session), 1 if args.strict and entry.get("error") else 0


def main(argv: list[str] | None = None) -> int:
    strict = "--strict" in (sys.argv[1:] if argv is None else argv)
    try:
        line, status = run(argv, dict(os.environ), sys.stdin)
    except KeyboardInterrupt:
        return 130
    except Exception as e:  # noqa: BLE001 - a status line shows a short reason, never a traceback
        line, status = WORDS["en"]["unavailable"].format(f"internal error: {type(e).__name__}"), 1 if strict else 0
    try:
        sys.stdout.buffer.write(line.encode("utf-8") + b"\n")
        sys.stdout.flush()
    except (OSError, ValueError):
        pass
    return status


if __name__ == "__main__":
    sys.exit(main())
