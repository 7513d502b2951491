"""Which webhook URLs an alert may call: the policy in ``balance_service.alerts.targets``, as a function.

The policy needs no database and no HTTP request, so the address matrix is
checked here, once; ``tests/test_alerts.py`` keeps a few requests per backend
that prove the endpoint applies it. Names resolve offline (see conftest.py):
IP literals as themselves, ``localhost`` to loopback, anything else not at all.
"""

from __future__ import annotations

import pytest

from balance_service.alerts.targets import Target, TargetError, check_url

REFUSED = "must point to a public address"


@pytest.mark.parametrize(
    "webhook_url",
    [
        "http://127.0.0.1/hook",
        "http://127.1.2.3:8080/hook",
        "http://2130706433/hook",
        "http://10.0.0.1/hook",
        "http://192.168.1.10/hook",
        "http://172.16.0.1/hook",
        "http://100.64.0.1/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://0.0.0.0/hook",
        "http://224.0.0.1/hook",
        "http://240.0.0.1/hook",
        "http://[::1]/hook",
        "http://[fe80::1]/hook",
        "http://[fc00::1]/hook",
        "http://[::ffff:127.0.0.1]/hook",
        "http://[64:ff9b::a9fe:a9fe]/hook",
        "http://[fec0::1]/hook",
        "https://localhost/hook",
        "https://LOCALHOST./hook",
    ],
)
def test_private_and_loopback_targets_are_refused_by_default(webhook_url):
    with pytest.raises(TargetError, match=REFUSED):
        check_url(webhook_url, allow_private=False)


@pytest.mark.parametrize(
    "webhook_url",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://[fe80::1]/hook",
        "http://[::ffff:169.254.169.254]/hook",
        "http://[::a9fe:a9fe]/hook",  # IPv4-compatible form of 169.254.169.254
        "http://[::169.254.169.254]/hook",
        "http://[64:ff9b::a9fe:a9fe]/hook",
        "http://[2002:a9fe:a9fe::1]/hook",  # 6to4 around 169.254.169.254
        "http://224.0.0.1/hook",
        "http://[ff02::1]/hook",
        "http://0.0.0.0/hook",
        "http://[::]/hook",
        "http://240.0.0.1/hook",  # reserved
        "http://255.255.255.255/hook",
        "http://100.64.0.1/hook",  # shared address space (CGNAT)
        "http://198.51.100.7/hook",  # documentation
        "http://198.18.0.1/hook",  # benchmarking
        "http://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/hook",  # Teredo
        "http://[2001:db8::1]/hook",  # documentation
        "http://[fec0::1]/hook",  # deprecated site-local
    ],
)
def test_only_private_networks_and_loopback_are_opened_when_private_targets_are_allowed(webhook_url):
    with pytest.raises(TargetError, match=REFUSED):
        check_url(webhook_url, allow_private=True)


@pytest.mark.parametrize(
    "webhook_url",
    [
        "http://10.1.2.3/hook",
        "http://172.31.255.254/hook",
        "http://192.168.1.10/hook",
        "http://127.0.0.1/hook",
        "http://2130706433/hook",
        "http://[::1]/hook",
        "http://[fd12:3456::1]/hook",
        "http://[::ffff:10.0.0.1]/hook",
        "http://[::ffff:127.0.0.1]/hook",
        "https://localhost:8443/hook",
        "https://1.1.1.1/hook",
    ],
)
def test_private_networks_loopback_and_public_addresses_are_accepted_when_private_targets_are_allowed(webhook_url):
    assert isinstance(check_url(webhook_url, allow_private=True), Target)


def test_a_public_address_is_accepted_by_default():
    assert check_url("https://1.1.1.1/hook", allow_private=False) == Target("https", "1.1.1.1", 443, "/hook")


@pytest.mark.parametrize(
    ("webhook_url", "message"),
    [
        ("", "webhook_url is required"),
        (42, "webhook_url is required"),
        ("ftp://127.0.0.1/", "http:// or https://"),
        ("javascript:alert(1)", "http:// or https://"),
        ("127.0.0.1/hook", "http:// or https://"),
        ("http:///hook", "must have a host"),
        ("http://user:pw@127.0.0.1/", "user name or password"),
        ("http://127.0.0.1:99999/", "invalid port"),
        ("http://[::1]:99999/", "invalid port"),
        ("http://127.0.0.1:http/", "invalid port"),
        ("http://[::1/", "not a valid URL"),
        ("http://[::1]x/", "not a valid URL"),
        ("http://[not-an-address]/", "not a valid URL"),
        ("http://127.0.0.1/a b", "ASCII without spaces"),
        ("http://host.invalid/", "cannot resolve"),
    ],
)
def test_malformed_or_unresolvable_urls_are_refused_with_a_reason(webhook_url, message):
    with pytest.raises(TargetError) as refused:
        check_url(webhook_url, allow_private=True)
    assert message in refused.value.message
