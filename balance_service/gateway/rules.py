"""The gateway's rules for keys and balances, as plain Python (no Flask, no HTTP), as one-api / new-api define them.

The HTTP hook (``auth.py``), the alert checker and the operator commands all
ask here, and each turns the exceptions below into its own kind of answer.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from .tables import NEVER_EXPIRES, TOKEN_DISABLED, TOKEN_EXPIRED, USER_DISABLED

KEY_LENGTH = 48
_KEY_RE = re.compile(rf"[A-Za-z0-9]{{1,{KEY_LENGTH}}}")


class KeyRejected(Exception):
    """The key cannot be used (unknown, disabled); the message says why, for the caller."""


class InvalidKey(KeyRejected, ValueError):
    """The text is not shaped like a key at all (empty, wrong characters, too long)."""


class OwnerMissing(Exception):
    """The key is fine but the account it belongs to is gone."""


class OwnerDisabled(Exception):
    """The key is fine but the account it belongs to is disabled."""


def normalize_key(value: str) -> str:
    """``sk-<key>-<suffix>`` → ``<key>``, the form stored in ``tokens.key``; the suffix is a channel selector."""
    value = value.strip()
    if value.startswith("sk-"):
        value = value[3:]
    key = value.split("-", 1)[0]
    if not key:
        raise InvalidKey("Empty API key")
    if not _KEY_RE.fullmatch(key):
        raise InvalidKey("Malformed API key")
    return key


def token_refusal(status: int, expired_time: int, now: int) -> str | None:
    """Why a key may not be used for anything new (disabled, expired), or None; an exhausted key is still usable."""
    if status == TOKEN_DISABLED:
        return "Token is disabled"
    if status == TOKEN_EXPIRED or (expired_time != NEVER_EXPIRES and expired_time < now):
        return "Token has expired"
    return None


def read_refusal(token: Any) -> str | None:
    """Why a key may not read its figures, or None: only a disabled key is refused.

    As the gateways' own read-only token auth (new-api's ``/api/usage/token``):
    a key that expired or ran out is exactly when its owner looks at its figures.
    """
    if token.status == TOKEN_DISABLED:
        return "Token is disabled"
    return None


def alert_refusal(token: Any, now: int) -> str | None:
    """Why a key may not create an alert, or None: that is a new use of the key, so it must be usable
    (not disabled, not expired), as ``token_refusal`` says."""
    return token_refusal(token.status, token.expired_time, now)


def check_can_read(token: Any) -> None:
    """Refuse a key that may not read (``KeyRejected``); expired and exhausted keys may."""
    refusal = read_refusal(token)
    if refusal:
        raise KeyRejected(refusal)


#: The documented message for a missing or deleted owner; clients compare it, so nothing is appended.
OWNER_MISSING_MESSAGE = "Failed to get user quota"


def account_disabled(user: Any) -> bool:
    """The gateway disabled the account: none of its keys may be used, nor its balance read."""
    return user.status == USER_DISABLED


def check_owner(user: Any | None) -> Any:
    """The key's owner, if it exists and is enabled; ``OwnerMissing`` / ``OwnerDisabled`` otherwise."""
    if user is None:
        raise OwnerMissing(OWNER_MISSING_MESSAGE)
    if account_disabled(user):
        raise OwnerDisabled("User is disabled")
    return user


@dataclass(frozen=True)
class Balance:
    """What is left (may be negative: see ``Currency.balance``) and what was spent, in raw quota units."""

    remaining: int
    used: int
    unlimited: bool

    @classmethod
    def of_user(cls, user: Any, unlimited_roles: Collection[int]) -> Balance:
        """An account's balance: anything with ``quota``, ``used_quota`` and ``role`` (a User, a result row).

        The users table has no "unlimited" column: the roles in ``unlimited_roles``
        (``UNLIMITED_USER_ROLES``) count as unlimited.
        """
        return cls(int(user.quota), int(user.used_quota), user.role in unlimited_roles)

    @classmethod
    def of_token(cls, token: Any) -> Balance:
        """A key's own balance: anything with ``remain_quota``, ``used_quota`` and ``unlimited_quota``."""
        return cls(int(token.remain_quota), int(token.used_quota), bool(token.unlimited_quota))
