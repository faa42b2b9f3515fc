"""The pure half of addresses, routes and protection: the contract's syntax checks, the
rtnetlink messages (built, then read back by the same parsers the dumps use) and the
nftables ruleset (`nft --check`, which needs CAP_NET_ADMIN, is in tests/test_nospoof.py)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from broker._addrmsg import (
    RTM_DELROUTE,
    RTM_NEWADDR,
    RTM_NEWROUTE,
    address_message,
    addresses_in,
    parse_interface,
    route_message,
    route_spec,
    routes_in,
)
from broker._errors import InvalidAddress, InvalidParameter
from broker._nospoof import ProtectionConfig, chain_rules, check, ruleset


@pytest.mark.parametrize(("text", "reason"), [
    ("198.51.100.1", "prefix"),
    ("198.51.100.1/33", ""),
    ("198.51.100.300/24", ""),
    ("0.0.0.0/8", "unspecified"),
    ("224.0.0.1/4", "multicast"),
    ("127.0.0.1/8", "loopback"),
    ("::1/128", "loopback"),
    ("198.51.100.1/0", "every address"),
    ("2001:db8::1/129", ""),
    ("", "prefix"),
])
def test_bad_addresses_name_the_field(text: str, reason: str) -> None:
    with pytest.raises(InvalidAddress) as err:
        parse_interface(text)
    assert err.value.parameter == "address" and err.value.address == text
    assert reason in err.value.reason and err.value.reason


def test_route_checks() -> None:
    assert str(route_spec("default", None, None).destination) == "0.0.0.0/0"
    assert str(route_spec("default", "2001:db8::1", None).destination) == "::/0"
    assert str(route_spec("198.51.100.7", None, 5).destination) == "198.51.100.7/32"
    for dest, gw, field in (("198.51.100.1/24", None, "destination"),
                            ("203.0.113.0/24", "2001:db8::1", "gateway"),
                            ("203.0.113.0/24", "0.0.0.0", "gateway"),
                            ("nope", None, "destination")):
        with pytest.raises(InvalidAddress) as err:
            route_spec(dest, gw, None)
        assert err.value.parameter == field
    with pytest.raises(InvalidParameter):
        route_spec("default", "198.51.100.1", 1 << 32)


@given(st.ip_addresses(v=4) | st.ip_addresses(v=6), st.integers(1, 32),
       st.integers(1, 1 << 20))
def test_address_messages_read_back(ip: object, prefix: int, ifindex: int) -> None:
    text = f"{ip}/{prefix if getattr(ip, 'version', 4) == 4 else prefix * 4}"
    try:
        iface = parse_interface(text)
    except InvalidAddress:
        return
    (got,) = addresses_in([address_message(RTM_NEWADDR, 7, ifindex, iface)])
    assert (got.ifindex, got.address) == (ifindex, str(iface))


def test_route_messages_read_back() -> None:
    spec = route_spec("203.0.113.0/24", "198.51.100.1", 42)
    (got,) = routes_in([route_message(RTM_NEWROUTE, 1, spec, 3)])
    assert (got.destination, got.gateway, got.oif, got.metric, got.protocol) == (
        "203.0.113.0/24", "198.51.100.1", 3, 42, "static")
    default = route_spec("default", "2001:db8::1", None)
    (got,) = routes_in([route_message(RTM_NEWROUTE, 1, default, None)])
    assert (got.destination, got.gateway, got.oif) == ("::/0", "2001:db8::1", None)
    assert routes_in([route_message(RTM_DELROUTE, 1, spec, 3)]) == []  # not a NEWROUTE


def test_protection_values_are_checked() -> None:
    assert check(["restricted", "mac-nospoof"], ["198.51.100.1", "2001:db8::/64"]) == (
        ["mac-nospoof", "restricted"], ["198.51.100.1/32", "2001:db8::/64"])
    for bad in (["nospoof"], ["restricted", "restricted"]):
        with pytest.raises(InvalidParameter):
            check(bad, None)
    with pytest.raises(InvalidAddress) as err:
        check(["ip-nospoof"], ["198.51.100.1/24"])  # host bits set
    assert err.value.parameter == "allowed_ips"


def test_rules_follow_the_property() -> None:
    cfg = ProtectionConfig(["mac-nospoof", "ip-nospoof"], ["198.51.100.1/32"],
                           "02:00:5e:00:53:01")
    assert chain_rules(cfg) == [
        'ether saddr != 02:00:5e:00:53:01 counter drop comment "mac"',
        'meta protocol ip ip saddr != { 198.51.100.1/32 } counter drop comment "ip"',
        'meta protocol arp arp saddr ip != { 198.51.100.1/32 } counter drop comment "arp"',
        'meta protocol ip6 ip6 saddr != { fe80::/10, :: } counter drop comment "ip6"',
    ]
    assert chain_rules(ProtectionConfig(["ip-nospoof"], [], None))[:2] == [
        'meta protocol ip counter drop comment "ip"',
        'meta protocol arp counter drop comment "arp"']
    text = ruleset([(7, "lbuab12", cfg), (8, 'bad"name', cfg)])
    assert 'device "lbuab12"' in text and "chain link7 " in text and "link8" not in text
    assert ruleset([]) == "table netdev linkbroker\ndelete table netdev linkbroker\n"
