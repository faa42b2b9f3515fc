"""Kinds as drivers (issue 16): each kind encodes its IFLA_INFO_DATA and decodes it again.

Before issue 16 the shells did it by kind name (broker._rtnl encoded macvlan's mode and
vxlan's fields, broker._linkdump and broker._netlink decoded them). The requests below are
the bytes that older code sent, captured before the move and kept here as literals: the
kinds' own encoding must not change a byte of them. The decodings are what the lean parser
read from the same messages then. And the client-side class lists (broker._types), static by
necessity, are held equal to the registry here so they cannot drift from it.
"""

from __future__ import annotations

import dataclasses
import socket
import struct
from typing import Any, get_args

import pytest
from hypothesis import given
from hypothesis import strategies as st

from broker._linkdump import KernelLink, parse_link_message
from broker._rtnl import NLM_F_CREATE, NLM_F_EXCL, RTM_NEWLINK, link_attrs, link_message
from broker._types import LINK_CLASSES, CreatableClass, LinkClass, LinkSpec
from broker.kinds import BY_KERNEL_KIND, KINDS, Resolved, classify
from broker.kinds._nla import attributes, nla
from tests.unit.kinds_specs import CREATABLE, accepted

# KernelLink's fields a decoder may set: those after the ones every link has.
DECODED = {f.name for f in dataclasses.fields(KernelLink)} - {
    "ifindex", "name", "kind", "mac", "mtu", "up", "master", "link", "link_netnsid"}

# --- the class lists -----------------------------------------------------------------------------


def test_client_side_class_lists_are_the_registrys() -> None:
    """LINK_CLASSES and the LinkClass/CreatableClass Literals are written out for msgspec and
    mypy (and clients must not import the kinds): they name exactly what KINDS has."""
    assert set(LINK_CLASSES) == set(get_args(LinkClass)) == set(KINDS)
    assert len(LINK_CLASSES) == len(set(LINK_CLASSES))
    creatable = {cls for cls, kind in KINDS.items() if kind.creatable}
    assert set(get_args(CreatableClass)) == creatable == set(CREATABLE)
    assert {cls for cls, kind in KINDS.items() if not kind.creatable} == {"phys", "other"}


def test_by_kernel_kind() -> None:
    """Every kind one kernel kind stands for, by that kind string: tun is tap's."""
    assert {k: v.cls for k, v in BY_KERNEL_KIND.items()} == {
        cls: cls for cls in CREATABLE if cls != "tap"} | {"tun": "tap"}
    for kernel_kind, kind in BY_KERNEL_KIND.items():
        assert kind.kernel_kind == kernel_kind and classify(kernel_kind, True) == kind.cls


@pytest.mark.parametrize("cls", CREATABLE)
def test_requests_name_the_kinds_kernel_kind(cls: str) -> None:
    """What a kind asks the kernel to make is what it decodes when the kernel reports it."""
    assert accepted(cls).kind == KINDS[cls].kernel_kind


# --- the old bytes -------------------------------------------------------------------------------

# (class, spec fields, parent ifindex) -> the whole RTM_NEWLINK (seq 1) the shell sent for it
# before issue 16, as broker._create fills in the common attributes.
OLD_REQUESTS: list[tuple[str, dict[str, Any], int | None, str]] = [
    ("macvlan", {"parent": "eth0"}, 3,
     "4c000000100005060100000000000000000000000000000000000000000000000800050003000000"
     "070003006c3000001c0012000b0001006d6163766c616e000c0002000800010004000000"),
    ("macvlan", {"parent": "eth0", "mode": "private"}, 3,
     "4c000000100005060100000000000000000000000000000000000000000000000800050003000000"
     "070003006c3000001c0012000b0001006d6163766c616e000c0002000800010001000000"),
    ("macvtap", {"parent": "eth0", "mode": "vepa"}, 3,
     "4c000000100005060100000000000000000000000000000000000000000000000800050003000000"
     "070003006c3000001c0012000b0001006d616376746170000c0002000800010002000000"),
    ("macvtap", {"parent": "eth0", "mode": "passthru", "mtu": 1400}, 3,
     "54000000100005060100000000000000000000000000000000000000000000000800050003000000"
     "070003006c30000008000400780500001c0012000b0001006d616376746170000c0002000800010008"
     "000000"),
    ("vxlan", {"vni": 42}, None,
     "4c00000010000506010000000000000000000000000000000000000000000000070003006c300000"
     "240012000900010076786c616e00000014000200080001002a00000006000f0012b50000"),
    ("vxlan", {"vni": 42, "remote": "192.0.2.1", "local": "192.0.2.2", "port": 8472}, 4,
     "6400000010000506010000000000000000000000000000000000000000000000070003006c300000"
     "3c0012000900010076786c616e0000002c000200080001002a00000008000200c0000201080003000400"
     "000008000400c000020206000f0021180000"),
    ("vxlan", {"vni": 16777215, "remote": "2001:db8::1", "local": "2001:db8::2"}, None,
     "7400000010000506010000000000000000000000000000000000000000000000070003006c300000"
     "4c0012000900010076786c616e0000003c00020008000100ffffff0006000f0012b500001400100020"
     "010db80000000000000000000000011400110020010db8000000000000000000000002"),
    ("vxlan", {"vni": 0, "local": "2001:db8::2", "port": 1}, 7,
     "6800000010000506010000000000000000000000000000000000000000000000070003006c300000"
     "400012000900010076786c616e000000300002000800010000000000080003000700000006000f0000"
     "0100001400110020010db8000000000000000000000002"),
    ("veth", {"peer": "p0"}, None,
     "5400000010000506010000000000000000000000000000000000000000000000070003006c300000"
     "2c0012000800010076657468200002001c000100000000000000000000000000000000000700030070"
     "300000"),
    ("bridge", {"mac": "02:00:00:00:00:01", "mtu": 9000, "up": True}, None,
     "4c00000010000506010000000000000000000000000000000100000001000000070003006c300000"
     "08000400282300000a0001000200000000010000100012000a0001006272696467650000"),
    ("vlan", {"parent": "eth0", "vid": 10, "protocol": "802.1ad"}, 3,
     "50000000100005060100000000000000000000000000000000000000000000000800050003000000"
     "070003006c3000002000120008000100766c616e14000200060001000a0000000600050088a80000"),
    ("geneve", {"vni": 7, "remote": "2001:db8::1"}, None,
     "7000000010000506010000000000000000000000000000000000000000000000070003006c300000"
     "480012000a00010067656e65766500003800020008000100070000001400070020010db80000000000"
     "0000000000000108000b000000000005000300000000000500040000000000"),
]


def request_message(cls: str, fields: dict[str, Any], parent: int | None) -> bytes:
    """The RTM_NEWLINK the shell sends for a spec, common attributes as broker._create adds
    them (seq 1, no echo)."""
    spec = LinkSpec(name="l0", class_=cls, **fields)  # type: ignore[arg-type]
    KINDS[cls].validate(spec)
    request = KINDS[cls].request(spec, Resolved(parent_ifindex=parent))
    attrs = dict(request.attrs)
    for key, value in (("mtu", spec.mtu), ("address", spec.mac),
                       ("state", "up" if spec.up else None)):
        if value is not None:
            attrs[key] = value
    encoded, flags, change = link_attrs({"ifname": "l0", **attrs}, request.kind)
    return link_message(RTM_NEWLINK, 1, flags=NLM_F_CREATE | NLM_F_EXCL, ifi_flags=flags,
                        change=change, attrs=encoded)


@pytest.mark.parametrize(("cls", "fields", "parent", "old"), OLD_REQUESTS,
                         ids=[f"{c}-{i}" for i, (c, *_) in enumerate(OLD_REQUESTS)])
def test_requests_are_byte_for_byte_the_old_ones(cls: str, fields: dict[str, Any],
                                                 parent: int | None, old: str) -> None:
    assert request_message(cls, fields, parent).hex() == old


# --- round trips ---------------------------------------------------------------------------------


def decoded(cls: str, fields: dict[str, Any], parent: int | None = 3) -> dict[str, object]:
    """The kind's request for a spec, its IFLA_INFO_DATA decoded again by the kind."""
    spec = LinkSpec(name="l0", class_=cls, **fields)  # type: ignore[arg-type]
    KINDS[cls].validate(spec)
    data = KINDS[cls].request(spec, Resolved(parent_ifindex=parent)).attrs["info_data"]
    return KINDS[cls].decode_info(attributes(data))


@pytest.mark.parametrize("cls", ["macvlan", "macvtap"])
@pytest.mark.parametrize("mode", ["bridge", "private", "vepa", "passthru"])
def test_macvlan_round_trip(cls: str, mode: str) -> None:
    assert decoded(cls, {"parent": "eth0", "mode": mode}) == {"mode": mode}
    assert decoded(cls, {"parent": "eth0"}) == {"mode": "bridge"}  # the broker's default


_V4 = st.ip_addresses(v=4).map(str)
_V6 = st.ip_addresses(v=6).map(str)


def ntop(address: str | None) -> str | None:
    """An address as the decoders write it (inet_ntop: ::ffff:1.2.3.4, not ::ffff:102:304)."""
    if address is None:
        return None
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    return socket.inet_ntop(family, socket.inet_pton(family, address))


@given(vni=st.integers(0, (1 << 24) - 1), port=st.none() | st.integers(1, 65535),
       parent=st.none() | st.integers(1, (1 << 32) - 1),
       ends=st.one_of(st.tuples(st.none() | _V4, st.none() | _V4),
                      st.tuples(st.none() | _V6, st.none() | _V6)))
def test_vxlan_round_trip(vni: int, port: int | None, parent: int | None,
                          ends: tuple[str | None, str | None]) -> None:
    remote, local = ends
    fields = {"vni": vni, "port": port, "remote": remote, "local": local}
    expected = {"vni": vni, "port": port or 4789, "remote": ntop(remote), "local": ntop(local)}
    assert decoded("vxlan", fields, parent) == {k: v for k, v in expected.items()
                                               if v is not None}


@pytest.mark.parametrize(("tun_type", "tun_tap"), [(b"\x02", True), (b"\x01", False)])
def test_tap_decodes_the_tun_type(tun_type: bytes, tun_tap: bool) -> None:
    """A tap is made by ioctl (no IFLA_INFO_DATA to encode); the kernel reports IFLA_TUN_TYPE
    (IFF_TUN 1, IFF_TAP 2) and only a TAP is claimed as class tap."""
    data = attributes(nla(3, tun_type) + nla(4, b"\x00"))
    assert KINDS["tap"].decode_info(data) == {"tun_tap": tun_tap}
    assert classify("tun", tun_tap) == ("tap" if tun_tap else "other")


@pytest.mark.parametrize("cls", sorted(KINDS))
@given(data=st.dictionaries(st.integers(0, 40), st.binary(max_size=20)))
def test_decoders_never_raise_and_set_only_decoded_fields(cls: str,
                                                          data: dict[int, bytes]) -> None:
    """Kind data comes from whoever holds CAP_NET_ADMIN in the namespace: any attribute of
    any size is read without raising, and nothing a KernelLink lacks comes back."""
    out = KINDS[cls].decode_info(data)
    assert set(out) <= DECODED
    assert set(KINDS[cls].decode_info({k: memoryview(v) for k, v in data.items()})) <= DECODED


# --- the lean parser reads through the kinds, as it read before ---------------------------------


def rta(kind: int, value: bytes) -> bytes:
    return struct.pack("=HH", 4 + len(value), kind) + value + b"\0" * (-len(value) % 4)


def newlink(kernel_kind: str, data: bytes | None) -> bytes:
    """An RTM_NEWLINK of ifindex 7, name x0, with IFLA_LINKINFO (kind, and data if any)."""
    info = rta(1, kernel_kind.encode()) + (rta(2, data) if data is not None else b"")
    body = struct.pack("=BxHiII", 0, 1, 7, 0, 0) + rta(3, b"x0\0") + rta(18, info)
    return struct.pack("=IHHII", 16 + len(body), 16, 0, 0, 0) + body


_U32 = struct.Struct("=I").pack
_V6_ONE, _V6_TWO = bytes(15) + b"\x01", bytes(15) + b"\x02"
# What the lean parser read from these before issue 16 (its kind branches), field by field.
OLD_DECODINGS: list[tuple[str, bytes | None, dict[str, object]]] = [
    ("macvlan", rta(1, _U32(4)), {"mode": "bridge"}),
    ("macvtap", rta(1, _U32(16)), {"mode": "source"}),  # the kernel's; never made
    ("macvlan", rta(1, _U32(3)), {}),  # no single mode
    ("macvlan", rta(1, b"\x04\x00"), {}),  # wrong size
    ("macvlan", None, {}),
    ("vxlan", rta(1, _U32(42)) + rta(2, bytes([192, 0, 2, 1])) + rta(4, bytes([192, 0, 2, 2]))
     + rta(15, b"\x21\x18"), {"vni": 42, "remote": "192.0.2.1", "local": "192.0.2.2",
                              "port": 8472}),
    ("vxlan", rta(1, _U32(5)) + rta(16, _V6_ONE) + rta(17, _V6_TWO),
     {"vni": 5, "remote": "::1", "local": "::2"}),
    ("vxlan", rta(2, bytes([10, 0, 0, 1])) + rta(16, _V6_ONE), {"remote": "10.0.0.1"}),
    ("vxlan", rta(1, b"\x01") + rta(2, bytes(5)) + rta(15, b"\x01\x02\x03"), {}),
    ("tun", rta(3, b"\x02"), {"tun_tap": True}),
    ("tun", rta(3, b"\x01"), {}),
    ("tun", rta(3, b""), {}),
    ("bridge", rta(1, _U32(1500)), {}),
    ("veth", None, {}),
    ("ifb", rta(1, _U32(4)), {}),  # no module: its data is nobody's to read
]


@pytest.mark.parametrize(("kernel_kind", "data", "fields"), OLD_DECODINGS,
                         ids=[f"{k}-{i}" for i, (k, *_) in enumerate(OLD_DECODINGS)])
def test_lean_parser_decodes_as_before(kernel_kind: str, data: bytes | None,
                                       fields: dict[str, object]) -> None:
    link = parse_link_message(newlink(kernel_kind, data))
    assert link is not None and (link.ifindex, link.name, link.kind) == (7, "x0", kernel_kind)
    assert link == KernelLink(ifindex=7, name="x0", kind=kernel_kind, mac=None, mtu=None,
                              up=False, master=None, link=None, link_netnsid=None,
                              **fields)  # type: ignore[arg-type]
