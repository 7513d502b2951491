"""The gateway's rules as plain functions: no app, no database, no HTTP."""

from types import SimpleNamespace

import pytest

from balance_service.gateway.rules import (
    Balance,
    InvalidKey,
    KeyRejected,
    OwnerDisabled,
    OwnerMissing,
    alert_refusal,
    check_can_read,
    check_owner,
    normalize_key,
)
from balance_service.gateway.tables import (
    NEVER_EXPIRES,
    ROLE_ROOT,
    TOKEN_DISABLED,
    TOKEN_ENABLED,
    TOKEN_EXHAUSTED,
    TOKEN_EXPIRED,
    USER_DISABLED,
)


@pytest.mark.parametrize(("text", "message"), [("sk-", "Empty API key"), ("sk-ab_c", "Malformed API key")])
def test_text_that_is_not_a_key_raises_invalid_key_with_the_reason(text, message):
    with pytest.raises(InvalidKey, match=message):
        normalize_key(text)


def test_only_a_disabled_key_may_not_read_expired_and_exhausted_ones_may():
    with pytest.raises(KeyRejected, match="Token is disabled"):
        check_can_read(SimpleNamespace(status=TOKEN_DISABLED, expired_time=NEVER_EXPIRES))
    check_can_read(SimpleNamespace(status=TOKEN_EXHAUSTED, expired_time=NEVER_EXPIRES))
    check_can_read(SimpleNamespace(status=TOKEN_EXPIRED, expired_time=NEVER_EXPIRES))
    check_can_read(SimpleNamespace(status=TOKEN_ENABLED, expired_time=5))


def test_an_alert_needs_a_key_that_is_neither_disabled_nor_expired():
    def key(status, expired_time=NEVER_EXPIRES):
        return SimpleNamespace(status=status, expired_time=expired_time)

    assert alert_refusal(key(TOKEN_DISABLED), now=10) == "Token is disabled"
    assert alert_refusal(key(TOKEN_EXPIRED), now=10) == "Token has expired"
    assert alert_refusal(key(TOKEN_ENABLED, expired_time=5), now=10) == "Token has expired"
    assert alert_refusal(key(TOKEN_ENABLED, expired_time=15), now=10) is None
    assert alert_refusal(key(TOKEN_EXHAUSTED), now=10) is None


def test_a_missing_owner_raises_the_documented_message_exactly():
    with pytest.raises(OwnerMissing) as missing:
        check_owner(None)
    assert str(missing.value) == "Failed to get user quota"


def test_a_missing_or_disabled_owner_raises_its_own_error():
    with pytest.raises(OwnerMissing):
        check_owner(None)
    with pytest.raises(OwnerDisabled):
        check_owner(SimpleNamespace(status=USER_DISABLED))


def test_a_balance_is_unlimited_by_role_for_accounts_and_by_flag_for_keys():
    root = SimpleNamespace(quota=-5, used_quota=7, role=ROLE_ROOT)
    assert Balance.of_user(root, {ROLE_ROOT}) == Balance(remaining=-5, used=7, unlimited=True)
    assert Balance.of_user(root, set()) == Balance(remaining=-5, used=7, unlimited=False)
    key = SimpleNamespace(remain_quota=3, used_quota=4, unlimited_quota=1)
    assert Balance.of_token(key) == Balance(remaining=3, used=4, unlimited=True)
