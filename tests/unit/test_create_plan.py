"""broker._create_plan: what a CreateLink asks of the kernel and the table, decided as plain
data (issue 16). No broker, no namespace, no socket: specs and rows in, the exact plan out."""

from __future__ import annotations

from typing import Any

from broker._create_plan import CreatePlan, plan_create, records, row_from_kernel
from broker._linkdump import KernelLink
from broker._table import LinkRecord
from broker._types import LinkSpec
from broker.kinds import CreateRequest


def row(link_id: int, name: str, zone: str, cls: Any, ifindex: int) -> LinkRecord:
    return LinkRecord(id=link_id, name=name, cls=cls, zone=zone, owner=zone, ifindex=ifindex)


def kernel(ifindex: int, name: str, kind: str | None) -> KernelLink:
    return KernelLink(ifindex=ifindex, name=name, kind=kind, mac="02:00:5e:00:53:01",
                      mtu=1500, up=False, master=None, link=None, link_netnsid=None)


ETH0 = row(1, "eth0", "global", "phys", 2)
BR_RED = row(2, "br0", "red", "bridge", 7)
HOST_BR = row(3, "lbbr0", "global", "bridge", 9)


def test_a_veth_across_two_zones_is_one_message_from_its_own_zone() -> None:
    spec = LinkSpec(name="v0", class_="veth", peer="v0h", mtu=1400, up=True)
    plan = plan_create(spec, "red", "global", parent=None, master=None, peer_master=None)
    assert plan == CreatePlan(
        request=CreateRequest("veth", {"peer": {"ifname": "v0h", "mtu": 1400}, "mtu": 1400,
                                       "state": "up"}),
        send_from="red", place_in=None, peer_in="global",
        names=(("red", "v0"), ("global", "v0h")))


def test_both_ends_in_one_zone_need_no_placing() -> None:
    spec = LinkSpec(name="a", class_="veth", peer="b")
    plan = plan_create(spec, "red", "red", parent=None, master=None, peer_master=None)
    assert (plan.send_from, plan.place_in, plan.peer_in) == ("red", None, None)
    assert plan.names == (("red", "a"), ("red", "b"))


def test_a_macvlan_over_the_hosts_nic_is_sent_from_the_host_and_placed_in_the_zone() -> None:
    spec = LinkSpec(name="m0", class_="macvlan", parent="eth0", mode="bridge")
    plan = plan_create(spec, "red", "red", parent=ETH0, master=None, peer_master=None)
    assert (plan.send_from, plan.place_in, plan.peer_in) == ("global", "red", None)
    assert plan.request.attrs["link"] == ETH0.ifindex  # resolved in the sender's namespace
    assert plan.names == (("red", "m0"),)


def test_a_port_joins_its_master_in_the_same_message() -> None:
    spec = LinkSpec(name="v1", class_="veth", peer="v1p", master="br0")
    plan = plan_create(spec, "red", "red", parent=None, master=BR_RED, peer_master=None)
    assert plan.request.attrs["master"] == BR_RED.ifindex
    assert (plan.configure, plan.attach_peer_to) == ({}, None)


def test_an_uplinks_host_end_joins_its_bridge_in_a_second_step() -> None:
    spec = LinkSpec(name="up0", class_="veth", peer="lbu1")
    plan = plan_create(spec, "red", "global", parent=None, master=None, peer_master=HOST_BR)
    assert plan.attach_peer_to == HOST_BR.ifindex
    assert "master" not in plan.request.attrs["peer"]  # the kernel ignores it there


def test_a_tap_is_made_by_ioctl_and_configured_after() -> None:
    spec = LinkSpec(name="t0", class_="tap", mtu=1400, up=True)
    plan = plan_create(spec, "red", "red", parent=None, master=None, peer_master=None)
    assert plan.request.ioctl_tap and plan.request.kind == "tun"
    assert plan.configure == {"mtu": 1400, "state": "up"}
    bare = plan_create(LinkSpec(name="t1", class_="tap"), "red", "red", parent=None,
                       master=None, peer_master=None)
    assert bare.configure == {}


def test_planning_twice_shares_no_mutable_attributes() -> None:
    spec = LinkSpec(name="v0", class_="veth", peer="v0h")
    one = plan_create(spec, "red", "global", parent=None, master=None, peer_master=None)
    one.request.attrs["peer"]["net_ns_fd"] = 5  # what the executor adds
    two = plan_create(spec, "red", "global", parent=None, master=None, peer_master=None)
    assert "net_ns_fd" not in two.request.attrs["peer"]


def test_records_pair_the_ends_and_remember_home_names() -> None:
    spec = LinkSpec(name="v0", class_="veth", peer="v0h", persistent=True)
    rows = records(spec, "red", "global", "global", made=kernel(11, "v0", "veth"),
                   peer_made=kernel(12, "v0h", "veth"), ids=(100, 101), parent=None,
                   master=None, peer_master=HOST_BR)
    link, peer = rows
    assert (link.id, link.zone, link.owner, link.peer_id, link.home_name) == (
        100, "red", "global", 101, "v0")
    assert (peer.id, peer.zone, peer.peer_id, peer.master_id, peer.home_name) == (
        101, "global", 100, HOST_BR.id, None)
    assert link.persistent and peer.persistent and link.ifindex == 11


def test_records_keep_options_the_reply_does_not_carry_as_asked() -> None:
    spec = LinkSpec(name="x0", class_="vxlan", vni=42, remote="192.0.2.1")
    made = kernel(5, "x0", "vxlan")  # decoded without vni/remote, as from a bare reply
    (link,) = records(spec, "red", "red", "red", made=made, peer_made=None, ids=(7, None),
                      parent=None, master=None, peer_master=None)
    assert (link.cls, link.vni, link.remote, link.home_name) == ("vxlan", 42, "192.0.2.1",
                                                                 None)


def test_a_kernel_kind_the_broker_has_no_module_for_is_kept_as_other() -> None:
    assert (row_from_kernel("red", "red", kernel(3, "ifb0", "ifb"), 9).cls,
            row_from_kernel("red", "red", kernel(3, "ifb0", "ifb"), 9).kind) == ("other", "ifb")
    assert row_from_kernel("global", "global", kernel(2, "eth0", None), 1).kind is None
