"""The published webhook address ranges (alerts/targets.py) are the ones the checks apply."""

import ipaddress

import pytest

from balance_service.alerts.targets import ALWAYS_REFUSED, INTERNAL_RANGES, describe_policy, is_allowed
from balance_service.openapi import document


def edges(cidr: str) -> list:
    """First and last address of a network, and IPv4's mapped IPv6 forms of both."""
    network = ipaddress.ip_network(cidr)
    found = [network[0], network[-1]]
    if network.version == 4:
        found += [ipaddress.IPv6Address(f"::ffff:{a}") for a in found]
    return found


@pytest.mark.parametrize("cidr", [n for r in ALWAYS_REFUSED for n in r.networks])
def test_every_always_refused_range_is_refused_even_with_private_targets_allowed(cidr):
    assert not any(is_allowed(address, allow_private) for address in edges(cidr) for allow_private in (False, True))


@pytest.mark.parametrize("cidr", [n for r in INTERNAL_RANGES for n in r.networks])
def test_every_internal_range_is_opened_by_the_setting_and_only_by_it(cidr):
    network = ipaddress.ip_network(cidr)
    for address in (network[0], network[-1]):
        assert not is_allowed(address, allow_private=False)
        assert is_allowed(address, allow_private=True)


def test_the_api_description_names_every_range_from_the_same_table():
    text = document()["components"]["schemas"]["AlertRequest"]["properties"]["webhook_url"]["description"]
    assert describe_policy() in text
    for listed in (*ALWAYS_REFUSED, *INTERNAL_RANGES):
        assert listed.kind in text
        assert all(network in text for network in listed.networks)
