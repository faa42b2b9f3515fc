"""broker.kinds: every spec is validated completely before anything touches the kernel.

A field that does not apply to a class is refused naming `link.<field>`, values out of range
likewise, and each kind describes its kernel object as plain data. Accepting a spec is
checked by what it produces (the value reaches the kernel request), never by "nothing raised"
alone. The kernel encoding of the classes added for issue 14 is compared with iproute2's own
request in tests/test_kinds_kernel.py.
"""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from broker._errors import InvalidParameter, Unsupported
from broker._types import LINK_CLASSES, LinkSpec
from broker.kinds import KINDS, CreateRequest, Resolved, classify
from broker.kinds._base import _OPTIONAL_SPEC_FIELDS, COMMON_FIELDS, check_ip, check_mac
from broker.kinds._nla import attributes, u32
from broker.kinds.macvlan import MODES
from tests.unit.kinds_specs import (
    CREATABLE,
    REQUIRED,
    accepted,
    refused,
    sample,
    spec,
    verdict,
)

# --- the registry -------------------------------------------------------------------------------


def test_registry_covers_every_class_once() -> None:
    assert sorted(KINDS) == sorted(LINK_CLASSES)
    for cls, kind in KINDS.items():
        assert kind.cls == cls


def test_every_spec_field_is_either_common_or_checked() -> None:
    """A LinkSpec field added later must be refused by the kinds it does not apply to."""
    spec_fields = set(LinkSpec.__struct_fields__)
    assert spec_fields == COMMON_FIELDS | set(_OPTIONAL_SPEC_FIELDS)
    assert not COMMON_FIELDS & set(_OPTIONAL_SPEC_FIELDS)
    for cls in CREATABLE:
        assert KINDS[cls].extra_fields <= set(_OPTIONAL_SPEC_FIELDS)


@pytest.mark.parametrize(
    ("kernel_kind", "tun_tap", "cls"),
    [
        ("veth", False, "veth"),
        ("bridge", False, "bridge"),
        ("macvlan", False, "macvlan"),
        ("macvtap", False, "macvtap"),
        ("vxlan", False, "vxlan"),
        ("tun", True, "tap"),
        ("tun", False, "other"),  # a TUN (layer 3) device is no tap, and no NIC
        (None, False, "phys"),  # a real NIC has no kind
        ("ifb", False, "other"),  # the host's ifb0/ifb1 were listed as phys before issue 14
        ("vrf", False, "other"),
        ("team", False, "other"),
        ("", False, "other"),
        ("dummy", False, "dummy"),
        ("bond", False, "bond"),
        ("wireguard", False, "wireguard"),
        ("vlan", False, "vlan"),
        ("ipvlan", False, "ipvlan"),
        ("gre", False, "gre"),
        ("ipip", False, "ipip"),
        ("geneve", False, "geneve"),
        ("veth", True, "veth"),
    ],
)
def test_classify(kernel_kind: str | None, tun_tap: bool, cls: str) -> None:
    assert classify(kernel_kind, tun_tap) == cls


# --- fields that do not apply -------------------------------------------------------------------

NOT_APPLICABLE = [
    (cls, field)
    for cls in CREATABLE
    for field in _OPTIONAL_SPEC_FIELDS
    if field not in KINDS[cls].extra_fields
]
APPLICABLE = [(cls, field) for cls in CREATABLE for field in sorted(KINDS[cls].extra_fields)]


def test_the_applicability_table() -> None:
    """The contract's classes and what each adds to the common fields."""
    assert {cls: set(KINDS[cls].extra_fields) for cls in CREATABLE} == {
        "veth": {"peer", "peer_zone", "uplink"},
        "bridge": set(),
        "macvlan": {"parent", "mode"},
        "macvtap": {"parent", "mode"},
        "vxlan": {"parent", "vni", "remote", "local", "port"},
        "tap": set(),
        "vlan": {"parent", "vid", "protocol"},
        "ipvlan": {"parent", "mode"},
        "bond": {"mode", "miimon"},
        "dummy": set(),
        "gre": {"local", "remote", "ttl"},
        "ipip": {"local", "remote", "ttl"},
        "wireguard": set(),
        "geneve": {"vni", "remote"},
    }


@pytest.mark.parametrize(("cls", "field"), NOT_APPLICABLE)
def test_fields_that_do_not_apply_are_refused_by_name(cls: str, field: str) -> None:
    assert refused(cls, **{field: sample(cls, field)}) == f"link.{field}"


@pytest.mark.parametrize(("cls", "field"), APPLICABLE)
def test_fields_that_apply_change_the_request(cls: str, field: str) -> None:
    """An applicable field is accepted and reaches the kernel request: the request differs
    from the one without it (veth's peer_zone and uplink are the service's to place)."""
    value = sample(cls, field)
    with_it = accepted(cls, **{field: value})
    if field in ("peer_zone", "uplink"):
        assert with_it == accepted(cls)
        return
    if field == "parent":  # resolved by the service: its ifindex (3) is the lower link
        # (vxlan pins its underlay inside its own data: IFLA_VXLAN_LINK, number 3)
        assert with_it.attrs.get("link") == 3 or u32(3, 3) in with_it.attrs["info_data"]
        return
    base = {**REQUIRED[cls]}
    if field in base:  # required: compare with another valid value instead of none
        base[field] = {"peer": "v2", "vni": 8, "vid": 11, "remote": "192.0.2.9"}[field]
    assert with_it != accepted(cls, **{**base, field: base.get(field)})


def test_an_uplink_veth_needs_no_peer_and_takes_no_peer_zone() -> None:
    """The uplink puts the peer in the global zone (the broker may name it): a peer_zone
    would contradict it, and the missing peer name is the broker's to choose."""
    KINDS["veth"].validate(LinkSpec(name="l0", class_="veth", uplink="br0"))
    assert refused("veth", uplink="br0", peer_zone="red") == "link.peer_zone"
    with pytest.raises(InvalidParameter) as exc:
        KINDS["veth"].validate(LinkSpec(name="l0", class_="veth"))
    assert exc.value.parameter == "link.peer"


@pytest.mark.parametrize("cls", CREATABLE)
def test_common_fields_apply_to_every_class(cls: str) -> None:
    """Common fields are the service's to encode: the kind accepts them and its request is
    the same as without them."""
    assert accepted(cls, zone="red", persistent=True, mtu=1400, mac="02:00:00:00:00:01",
                    up=True, master="br0") == accepted(cls)


@pytest.mark.parametrize(
    ("cls", "missing"), [("veth", "peer"), ("macvlan", "parent"), ("macvtap", "parent"),
                         ("vxlan", "vni"), ("vlan", "parent"), ("vlan", "vid"),
                         ("ipvlan", "parent"), ("gre", "remote"), ("ipip", "remote"),
                         ("geneve", "vni"), ("geneve", "remote")],
)
def test_required_fields(cls: str, missing: str) -> None:
    assert refused(cls, **{missing: None}) == f"link.{missing}"


@pytest.mark.parametrize("cls", ["phys", "other"])
def test_phys_and_other_cannot_be_created(cls: str) -> None:
    """phys and other links are adopted from the kernel, never made; the wire already refuses
    the class (CreatableClass), the kind refuses it again."""
    kind = KINDS[cls]
    bare = LinkSpec(name="eth9", class_="bridge")
    with pytest.raises(Unsupported):
        kind.validate(bare)
    with pytest.raises(Unsupported):
        kind.request(bare, Resolved())
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert({"name": "x", "class": cls}, LinkSpec)


# --- mtu ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("cls", CREATABLE)
@pytest.mark.parametrize(("mtu", "ok"), [(68, True), (1500, True), (9000, True), (65535, True),
                                         (67, False), (0, False), (-1, False), (65536, False),
                                         (1 << 40, False)])
def test_mtu_range(cls: str, mtu: int, ok: bool) -> None:
    assert verdict(cls, mtu=mtu) == (None if ok else "link.mtu")


# --- mac ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "mac", ["02:00:00:00:00:01", "52:54:00:12:34:56", "02:AB:cd:EF:00:ff", "fe:ff:ff:ff:ff:ff"]
)
def test_unicast_macs_are_accepted(mac: str) -> None:
    assert verdict("bridge", mac=mac) is None


@pytest.mark.parametrize(
    "mac",
    [
        "01:00:5e:00:00:01",  # IPv4 multicast
        "33:33:00:00:00:01",  # IPv6 multicast
        "ff:ff:ff:ff:ff:ff",  # broadcast
        "03:00:00:00:00:00",
        "02:00:00:00:00",  # too short
        "02:00:00:00:00:00:00",  # too long
        "02-00-00-00-00-01",
        "0200.0000.0001",
        "020000000001",
        "2:0:0:0:0:1",
        "g2:00:00:00:00:01",
        " 02:00:00:00:00:01",
        "02:00:00:00:00:01\n",
        "",
        "０2:00:00:00:00:01",  # noqa: RUF001 - FULLWIDTH DIGIT ZERO, a digit to Python
    ],
)
def test_bad_macs_are_refused_by_name(mac: str) -> None:
    with pytest.raises(InvalidParameter) as exc:
        check_mac(mac, "mac")
    assert exc.value == InvalidParameter("mac")  # as SetLinkProperties names it
    assert refused("veth", mac=mac) == "link.mac"


@given(st.binary(min_size=6, max_size=6).filter(any), st.booleans())
def test_mac_accepted_iff_unicast(raw: bytes, upper: bool) -> None:
    mac = ":".join(f"{b:02x}" for b in raw)
    mac = mac.upper() if upper else mac
    assert verdict("veth", mac=mac) == ("link.mac" if raw[0] & 1 else None)


def test_the_zero_mac_is_refused() -> None:
    """The kernel's is_valid_ether_addr() refuses multicast *and* all-zero addresses; only the
    first is checked. `ip link add v0 address 00:00:00:00:00:00 type veth peer name p0` (and
    the same for bridge) gives EADDRNOTAVAIL, so CreateLink/SetLinkProperties answer
    KernelError(99) where InvalidParameter("link.mac"/"mac") is due.
    """
    with pytest.raises(InvalidParameter):
        check_mac("00:00:00:00:00:00", "mac")


# --- macvlan / macvtap --------------------------------------------------------------------------


@pytest.mark.parametrize("cls", ["macvlan", "macvtap"])
@pytest.mark.parametrize("mode", [*MODES, None])
def test_macvlan_modes_accepted(cls: str, mode: str | None) -> None:
    data = attributes(accepted(cls, mode=mode).attrs["info_data"])
    assert KINDS[cls].decode_info(data) == {"mode": mode or "bridge"}


@pytest.mark.parametrize("cls", ["macvlan", "macvtap"])
@pytest.mark.parametrize("mode", ["", "Bridge", "source", "vepa ", "802.1qbg"])
def test_macvlan_bad_modes_refused(cls: str, mode: str) -> None:
    assert refused(cls, mode=mode) == "link.mode"


def test_macvlan_modes_are_the_kernels() -> None:
    assert set(MODES) == {"bridge", "private", "vepa", "passthru"}


@pytest.mark.parametrize("cls", ["macvlan", "macvtap"])
def test_macvlan_request(cls: str) -> None:
    """The parent as IFLA_LINK, the mode (MACVLAN_MODE_*: bridge 4, vepa 2) in the data."""
    kind = KINDS[cls]
    assert kind.request(spec(cls), Resolved(parent_ifindex=3)) == CreateRequest(
        kind=cls, attrs={"link": 3, "info_data": bytes.fromhex("0800010004000000")})
    assert kind.request(spec(cls, mode="vepa"), Resolved(parent_ifindex=3)).attrs == {
        "link": 3, "info_data": bytes.fromhex("0800010002000000")}


# --- vxlan --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("vni", "ok"), [(0, True), (1, True), ((1 << 24) - 1, True),
                                         (1 << 24, False), (-1, False), (1 << 32, False)])
def test_vxlan_vni_range(vni: int, ok: bool) -> None:
    assert verdict("vxlan", vni=vni) == (None if ok else "link.vni")


@given(st.integers())
def test_vxlan_vni_accepted_iff_24_bits(vni: int) -> None:
    assert verdict("vxlan", vni=vni) == (None if 0 <= vni < 1 << 24 else "link.vni")


@pytest.mark.parametrize(("port", "ok"), [(1, True), (4789, True), (65535, True), (0, False),
                                          (-1, False), (65536, False)])
def test_vxlan_port_range(port: int, ok: bool) -> None:
    assert verdict("vxlan", port=port) == (None if ok else "link.port")


@pytest.mark.parametrize("field", ["remote", "local"])
@pytest.mark.parametrize(
    ("address", "ok"),
    [("192.0.2.1", True), ("2001:db8::1", True), ("239.1.1.1", True), ("10.0.0", False),
     ("example.com", False), ("", False), ("1.2.3.4/24", False), ("::ffff:1.2.3.4.5", False)],
)
def test_vxlan_addresses(field: str, address: str, ok: bool) -> None:
    assert verdict("vxlan", **{field: address}) == (None if ok else f"link.{field}")


def test_check_ip_names_the_parameter() -> None:
    with pytest.raises(InvalidParameter) as exc:
        check_ip("nope", "link.remote")
    assert exc.value == InvalidParameter("link.remote")


def test_vxlan_request() -> None:
    """IFLA_VXLAN_* in number order: id, group, link, local, port (4789 unless asked),
    group6, local6; the address attribute by the address's family."""
    kind = KINDS["vxlan"]
    assert kind.request(spec("vxlan"), Resolved()) == CreateRequest(
        kind="vxlan", attrs={"info_data": bytes.fromhex("080001002a000000" "06000f0012b50000")})
    v4 = kind.request(spec("vxlan", remote="192.0.2.1", local="192.0.2.2", port=8472),
                      Resolved(parent_ifindex=4))
    assert v4.attrs == {"info_data": bytes.fromhex(
        "080001002a000000" "08000200c0000201" "0800030004000000" "08000400c0000202"
        "06000f0021180000")}
    v6 = kind.request(spec("vxlan", remote="2001:db8::1", local="2001:db8::2"), Resolved())
    assert v6.attrs == {"info_data": bytes.fromhex(
        "080001002a000000" "06000f0012b50000"
        "1400100020010db8000000000000000000000001" "1400110020010db8000000000000000000000002")}


def test_vxlan_remote_and_local_of_different_families_are_refused() -> None:
    """The kernel's vxlan_config_validate refuses local and remote of different families
    (checked through pyroute2: vxlan_group=10.0.0.1 + vxlan_local6=::1 gives EINVAL), so the
    caller gets KernelError(22) instead of InvalidParameter.
    """
    with pytest.raises(InvalidParameter):
        KINDS["vxlan"].validate(spec("vxlan", remote="192.0.2.1", local="2001:db8::2"))


def test_scoped_ipv6_addresses_are_refused() -> None:
    """Python's ipaddress accepts a scope suffix, but a netlink address attribute cannot carry
    one: pyroute2's inet_pton raises OSError, which the netlink shell reports as KernelError(EIO)
    rather than the InvalidParameter("link.remote") the spec deserves.
    """
    with pytest.raises(InvalidParameter):
        KINDS["vxlan"].validate(spec("vxlan", remote="fe80::1%eth0"))


# --- veth, bridge, tap --------------------------------------------------------------------------


def test_veth_request_names_the_peer() -> None:
    assert KINDS["veth"].request(spec("veth", peer="p0"), Resolved()) == CreateRequest(
        kind="veth", attrs={"peer": {"ifname": "p0"}})


def test_requests_do_not_share_attrs() -> None:
    """The service adds mtu, address and master to `attrs`: each request needs its own dict."""
    kind = KINDS["bridge"]
    a, b = kind.request(spec("bridge"), Resolved()), kind.request(spec("bridge"), Resolved())
    a.attrs["mtu"] = 9000
    assert b.attrs == {}


def test_bridge_and_tap_requests() -> None:
    assert KINDS["bridge"].request(spec("bridge"), Resolved()) == CreateRequest(kind="bridge")
    tap = KINDS["tap"].request(spec("tap"), Resolved())
    assert tap == CreateRequest(kind="tun", ioctl_tap=True)


# --- from the wire ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "parameter"),
    [
        ({"name": "v0", "class": "veth", "peer": "v1", "vni": 5}, "link.vni"),
        ({"name": "br0", "class": "bridge", "peer": "x"}, "link.peer"),
        ({"name": "t0", "class": "tap", "port": 1}, "link.port"),
        ({"name": "m0", "class": "macvlan", "parent": "eth0", "mode": "bogus"}, "link.mode"),
        ({"name": "x0", "class": "vxlan", "vni": 16777216}, "link.vni"),
        ({"name": "b0", "class": "bridge", "mac": "01:00:00:00:00:00"}, "link.mac"),
    ],
)
def test_decoded_specs_are_refused_with_wire_names(body: dict[str, Any], parameter: str) -> None:
    link = msgspec.convert(body, LinkSpec)
    with pytest.raises(InvalidParameter) as exc:
        KINDS[link.class_].validate(link)
    assert exc.value == InvalidParameter(parameter)
