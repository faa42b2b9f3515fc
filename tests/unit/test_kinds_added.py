"""The classes added for issue 14 (vlan, ipvlan, bond, dummy, gre, ipip, wireguard, geneve):
their ranges and the IFLA_INFO_DATA each builds. Their whole requests are compared with
iproute2's in tests/test_kinds_kernel.py."""

from __future__ import annotations

from typing import Any

import pytest

from broker.kinds import CreateRequest
from tests.unit.kinds_specs import accepted, refused, verdict


@pytest.mark.parametrize(("vid", "ok"), [(1, True), (4094, True), (0, False), (4095, False),
                                         (-1, False), (1 << 16, False)])
def test_vlan_vid_range(vid: int, ok: bool) -> None:
    assert verdict("vlan", vid=vid) == (None if ok else "link.vid")


@pytest.mark.parametrize(("protocol", "ethertype"), [(None, None), ("802.1q", b"\x81\x00"),
                                                     ("802.1ad", b"\x88\xa8")])
def test_vlan_request(protocol: str | None, ethertype: bytes | None) -> None:
    """IFLA_VLAN_ID (u16), then IFLA_VLAN_PROTOCOL (big-endian) only when asked."""
    request = accepted("vlan", vid=0x0102, protocol=protocol)
    assert request.kind == "vlan" and request.attrs["link"] == 3
    expected = b"\x06\x00\x01\x00\x02\x01\x00\x00"
    if ethertype is not None:
        expected += b"\x06\x00\x05\x00" + ethertype + b"\x00\x00"
    assert request.attrs["info_data"] == expected


@pytest.mark.parametrize("protocol", ["802.1Q ", "8021q", "", "0x8100", "802.1ah"])
def test_vlan_bad_protocols(protocol: str) -> None:
    assert refused("vlan", protocol=protocol) == "link.protocol"


@pytest.mark.parametrize(("mode", "number"), [(None, 1), ("l2", 0), ("l3", 1), ("l3s", 2)])
def test_ipvlan_modes(mode: str | None, number: int) -> None:
    data = accepted("ipvlan", mode=mode).attrs["info_data"]
    assert data == bytes([6, 0, 1, 0, number, 0, 0, 0, 6, 0, 2, 0, 0, 0, 0, 0])


@pytest.mark.parametrize(("cls", "mode"), [("ipvlan", "bridge"), ("ipvlan", "L2"),
                                           ("bond", "lacp"), ("bond", "l2"), ("bond", "")])
def test_modes_of_another_class_are_refused(cls: str, mode: str) -> None:
    assert refused(cls, mode=mode) == "link.mode"


def test_bond_request() -> None:
    """Nothing asked: no IFLA_INFO_DATA at all (as `ip link add b0 type bond`)."""
    assert accepted("bond") == CreateRequest(kind="bond")
    data = accepted("bond", mode="active-backup", miimon=100).attrs["info_data"]
    assert data == b"\x05\x00\x01\x00\x01\x00\x00\x00" + b"\x08\x00\x03\x00\x64\x00\x00\x00"


@pytest.mark.parametrize(("miimon", "ok"), [(0, True), ((1 << 31) - 1, True), (-1, False),
                                            (1 << 31, False)])
def test_bond_miimon_range(miimon: int, ok: bool) -> None:
    assert verdict("bond", miimon=miimon) == (None if ok else "link.miimon")


@pytest.mark.parametrize("cls", ["gre", "ipip"])
@pytest.mark.parametrize(("fields", "parameter"), [
    ({"remote": "2001:db8::1"}, "link.remote"),  # ip6gre/ip6tnl are other kinds
    ({"local": "2001:db8::1"}, "link.local"),
    ({"remote": "192.0.2"}, "link.remote"),
    ({"ttl": 256}, "link.ttl"),
    ({"ttl": -1}, "link.ttl"),
    ({"ttl": 0}, None),
    ({"ttl": 255, "local": "192.0.2.7"}, None),
])
def test_tunnel_fields(cls: str, fields: dict[str, Any], parameter: str | None) -> None:
    assert verdict(cls, **fields) == parameter


@pytest.mark.parametrize("cls", ["gre", "ipip"])
def test_tunnel_requests_carry_endpoints_and_ttl(cls: str) -> None:
    data = accepted(cls, local="192.0.2.7", ttl=64).attrs["info_data"]
    assert bytes([192, 0, 2, 7]) in data and bytes([192, 0, 2, 1]) in data
    assert b"\x05\x00" + bytes([8 if cls == "gre" else 4]) + b"\x00\x40" in data  # ttl


@pytest.mark.parametrize(("remote", "attribute"), [("192.0.2.1", 2), ("2001:db8::1", 7)])
def test_geneve_request(remote: str, attribute: int) -> None:
    data = accepted("geneve", vni=0xABCDEF, remote=remote).attrs["info_data"]
    assert data.startswith(b"\x08\x00\x01\x00\xef\xcd\xab\x00")
    assert data[8:12] == bytes([8 if attribute == 2 else 20, 0, attribute, 0])


@pytest.mark.parametrize(("vni", "ok"), [(0, True), ((1 << 24) - 1, True), (1 << 24, False),
                                         (-1, False)])
def test_geneve_vni_range(vni: int, ok: bool) -> None:
    assert verdict("geneve", vni=vni) == (None if ok else "link.vni")


@pytest.mark.parametrize("cls", ["dummy", "wireguard"])
def test_kind_only_requests(cls: str) -> None:
    assert accepted(cls) == CreateRequest(kind=cls)
