"""What a person reads in a chat, push or e-mail alert: a title and a body, in English or Simplified Chinese.

The webhook keeps its machine body (``checker._payload``); the notify and
e-mail channels send these texts. They name the account or the key by its
name (never the key itself), say the balance left in the balances' unit, the
threshold or the forecast's days left, and link the operator's top-up page
(ALERT_TOPUP_URL) when there is one.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from ..gateway.money import Currency
from .models import LANGUAGES

#: Symbols written before an amount; any other unit (a gateway's custom currency symbol) is written as given.
_SYMBOLS = {"USD": "$", "CNY": "¥"}

_TEXTS = {
    "en": {
        "account": 'account "{name}"',
        "token": 'key "{name}"',
        "below_title": "Balance below {threshold}: {balance} left",
        "below_body": "The balance of {who} is {balance}, below the alert threshold of {threshold}.",
        "forecast_title": "Balance runs out in about {days} days",
        "forecast_body": (
            "At the spend of the last 7 days, the balance of {who} ({balance}) lasts about {days} more days, "
            "fewer than the {watched} days this alert watches for."
        ),
        "test_title": "[Test] Balance alert",
        "test_body": (
            "This is a test message: the balance alert of {who} reaches you here. It is sent when {condition}."
        ),
        "condition_threshold": "the balance falls below {threshold}",
        "condition_forecast": "the forecast says fewer than {watched} days are left",
        "balance_now": "Balance now: {balance}.",
        "topup": "Top up: {url}",
    },
    "zh-CN": {
        "account": "账户“{name}”",
        "token": "令牌“{name}”",
        "below_title": "余额低于 {threshold}：剩余 {balance}",
        "below_body": "{who}的余额为 {balance}，已低于提醒阈值 {threshold}。",
        "forecast_title": "余额预计约 {days} 天后用完",
        "forecast_body": (
            "按最近 7 天的消耗，{who}的余额（{balance}）预计还能用约 {days} 天，少于本提醒设定的 {watched} 天。"
        ),
        "test_title": "【测试】余额提醒",
        "test_body": "这是一条测试消息：{who}的余额提醒会发送到这里。提醒条件：{condition}。",
        "condition_threshold": "余额低于 {threshold}",
        "condition_forecast": "预计剩余天数少于 {watched} 天",
        "balance_now": "当前余额：{balance}。",
        "topup": "充值：{url}",
    },
}
if set(_TEXTS) != set(LANGUAGES):
    raise RuntimeError("every alert language needs its texts")


def money(currency: Currency, quota: int) -> str:
    """An amount as people write it, exact: ``$2.50``, ``¥18.123456``, ``2500 tokens``, ``€3.00``.

    The figure is ``Currency.amount`` (exact, 6 places), shown with at least 2
    decimals and no trailing zeros beyond them; never below 0, like ``balance``.
    """
    amount = currency.amount(max(int(quota), 0))
    if currency.rate is None:
        return f"{amount} tokens"
    text = f"{Decimal(amount).normalize():f}"
    whole, _, fraction = text.partition(".")
    text = f"{whole}.{fraction.ljust(2, '0')}"
    symbol = _SYMBOLS.get(currency.unit, currency.unit)
    return f"{symbol}{text}"


@dataclass(frozen=True)
class Facts:
    """What a message says; ``quota`` and ``threshold`` in quota units, days as Decimals."""

    currency: Currency
    #: ``account`` or ``token``, and that account's user name or that key's name.
    scope: str
    name: str
    #: The balance left; None when it is not known (a test of an alert whose key is gone).
    quota: int | None
    threshold: int | None = None
    #: The alert's ``days_left`` (a forecast alert), and the forecast's days left when it fired.
    watched_days: Decimal | None = None
    forecast_days: Decimal | None = None
    topup_url: str | None = None


def _days(value: Decimal | None) -> str:
    return "?" if value is None else f"{Decimal(value).normalize():f}"


def compose(facts: Facts, lang: str, test: bool = False) -> tuple[str, str]:
    """``(title, body)`` in ``lang`` (``en`` when unknown); ``test`` marks the test button's message."""
    texts = _TEXTS.get(lang, _TEXTS["en"])
    values = {
        "who": texts[facts.scope].format(name=facts.name),
        "balance": "?" if facts.quota is None else money(facts.currency, facts.quota),
        "threshold": "" if facts.threshold is None else money(facts.currency, facts.threshold),
        "days": _days(facts.forecast_days),
        "watched": _days(facts.watched_days),
    }
    if test:
        condition = "condition_forecast" if facts.watched_days is not None else "condition_threshold"
        values["condition"] = texts[condition].format(**values)
        title = texts["test_title"]
        lines = [texts["test_body"].format(**values)]
        if facts.quota is not None:
            lines.append(texts["balance_now"].format(**values))
    elif facts.watched_days is not None:
        title = texts["forecast_title"].format(**values)
        lines = [texts["forecast_body"].format(**values)]
    else:
        title = texts["below_title"].format(**values)
        lines = [texts["below_body"].format(**values)]
    if facts.topup_url:
        lines.append(texts["topup"].format(url=facts.topup_url))
    return title, "\n".join(lines)
