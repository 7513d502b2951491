"""The gateway's rules as plain functions: no app, no database, no HTTP."""

from types import SimpleNamespace

import pytest

from balance_service.gateway import (
    Balance,
    InvalidKey,
    KeyRejected,
    OwnerDisabled,
    OwnerMissing,
    check_owner,
    check_token,
    normalize_key,
)
from balance_service.models import NEVER_EXPIRES, ROLE_ROOT, TOKEN_DISABLED, TOKEN_EXHAUSTED, USER_DISABLED


@pytest.mark.parametrize(("text", "message"), [("sk-", "Empty API key"), ("sk-ab_c", "Malformed API key")])
def test_text_that_is_not_a_key_raises_invalid_key_with_the_reason(text, message):
    with pytest.raises(InvalidKey, match=message):
        normalize_key(text)


def test_a_disabled_key_is_rejected_and_an_exhausted_one_is_not():
    with pytest.raises(KeyRejected, match="Token is disabled"):
        check_token(SimpleNamespace(status=TOKEN_DISABLED, expired_time=NEVER_EXPIRES), now=0)
    check_token(SimpleNamespace(status=TOKEN_EXHAUSTED, expired_time=NEVER_EXPIRES), now=0)


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
