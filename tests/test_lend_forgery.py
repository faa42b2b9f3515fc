"""Issue 12, finding 8 (lent links): a zone's root deletes a link the host lent it and makes
its own in its place, same name and even same ifindex (`ip link add ... index N`). Before the
fix the broker matched the lent link by ifindex and name only, so ReclaimLink (or HaltZone)
moved the zone's device into the host's namespace under the host's name.

Now the lend ends when its ifindex leaves the zone (RTM_DELLINK), and facts the zone cannot
forge are checked when the table is reconciled and again before the move home: the kind, a
veth's other end outside the zone naming it as peer, a macvlan's parent outside the zone and
the namespace id the zone gives that parent's namespace.
"""

from __future__ import annotations

import json
import subprocess
from functools import partial
from typing import Any

import pytest

from broker.client import Client, LinkNotFound, LinkSpec
from tests.conftest import BrokerProcess, run
from tests.test_monitor import eventually


def kernel(ns: str | None) -> dict[str, dict[str, Any]]:
    cmd = ["ip", "-j", "-d"] + ([] if ns is None else ["-n", ns]) + ["link", "show"]
    return {link["ifname"]: link for link in json.loads(run(*cmd).stdout)}


def owner(gz: Client, name: str, zone: str) -> str | None:
    """The link's owner, None while the table has no such link (between two resyncs)."""
    try:
        return gz.get_link(name, zone).owner
    except LinkNotFound:
        return None


def mtu_is(gz: Client, name: str, zone: str, mtu: int) -> bool:
    return gz.get_link(name, zone).mtu == mtu


def test_a_lent_veth_replaced_by_the_zone_never_goes_to_the_host(
        broker: BrokerProcess, netns: Any, names: Any) -> None:
    ns = netns("thief")
    host_end, other, fake_peer = names.link("h"), names.link("o"), names.link("f")
    with broker.client() as gz:
        gz.boot_zone("thief", netns=ns)
        gz.create_link(LinkSpec(name=host_end, class_="veth", peer=other))
        lent = gz.assign_link(host_end, "thief")
        index = lent.ifindex
        # The zone's root swaps it in one go: the broker's next dump sees only the result.
        swap = (f"link del {host_end}\n"
                f"link add {host_end} index {index} type veth peer name {fake_peer}\n"
                f"link set {host_end} address 02:00:00:00:00:01\n")
        subprocess.run(["ip", "-n", ns, "-batch", "-"], input=swap, text=True, check=True,
                       timeout=30)
        assert kernel(ns)[host_end]["ifindex"] == index  # the forgery is in place
        # The table learns that the lend is over: the zone's device is the zone's own.
        assert eventually(lambda: owner(gz, host_end, "thief") == "thief", 5.0)
        with pytest.raises(LinkNotFound):
            gz.reclaim_link(host_end)
        assert host_end in kernel(ns) and host_end not in kernel(None)
        assert other not in kernel(None)  # the host's end died with the lent one
        gz.halt_zone("thief")  # the halt does not bring it home either
        assert host_end not in kernel(None)


def test_a_lent_macvlan_replaced_while_the_broker_was_down_never_goes_to_the_host(
        broker: BrokerProcess, netns: Any, names: Any) -> None:
    """No RTM_DELLINK reaches a broker that is not running: the kernel facts decide. The
    zone's device even has its parent in another namespace (one the zone made), as the lent
    macvlan had; only the namespace id tells them apart."""
    ns, private = netns("thief2"), netns("priv")
    a, b, mv, fake_parent = (names.link(x) for x in ("a", "b", "m", "p"))
    with broker.client() as gz:
        gz.boot_zone("thief2", netns=ns)
        gz.create_link(LinkSpec(name=a, class_="veth", peer=b, up=True))
        gz.create_link(LinkSpec(name=mv, class_="macvlan", parent=a, mode="bridge"))
        lent = gz.assign_link(mv, "thief2")
        index = lent.ifindex
    assert kernel(ns)[mv].get("link_netnsid") is not None
    broker.stop()
    run("ip", "-n", ns, "link", "del", mv)
    run("ip", "-n", private, "link", "add", fake_parent, "type", "bridge")
    run("ip", "-n", private, "link", "add", mv, "index", str(index), "link", fake_parent,
        "type", "macvlan", "mode", "bridge")
    run("ip", "-n", private, "link", "set", mv, "netns", ns)
    forged = kernel(ns)[mv]
    assert forged["ifindex"] == index and forged.get("link_netnsid") is not None
    broker.start()
    with broker.client() as gz:
        assert gz.get_link(mv, "thief2").owner == "thief2"
        with pytest.raises(LinkNotFound):
            gz.reclaim_link(mv)
        assert mv in kernel(ns) and mv not in kernel(None)
        gz.halt_zone("thief2")
        assert mv not in kernel(None)
        gz.delete_link(a)


def test_an_intact_lend_still_comes_home(broker: BrokerProcess, netns: Any,
                                         names: Any) -> None:
    """The checks refuse nothing genuine: lent, used, renamed back and forth by the host's
    broker, reclaimed; lent again and brought home by a halt."""
    ns = netns("honest")
    a, b, mv = names.link("a"), names.link("b"), names.link("m")
    with broker.client() as gz:
        gz.boot_zone("honest", netns=ns)
        gz.create_link(LinkSpec(name=a, class_="veth", peer=b, up=True))
        gz.create_link(LinkSpec(name=mv, class_="macvlan", parent=a, mode="bridge"))
        for link in (b, mv):
            gz.assign_link(link, "honest")
            run("ip", "-n", ns, "link", "set", link, "mtu", "1400", "up")
            assert eventually(partial(mtu_is, gz, link, "honest", 1400))
            back = gz.reclaim_link(link)
            assert back.zone == "global" and link in kernel(None)
        gz.assign_link(b, "honest")
        gz.assign_link(mv, "honest")
        gz.halt_zone("honest")
        assert {b, mv} <= set(kernel(None))
        gz.delete_link(a)


def test_moving_a_lent_links_peer_does_not_end_its_lend(broker: BrokerProcess, netns: Any,
                                                        names: Any) -> None:
    """The broker moving one end of a veth changes the namespace id the other end (lent)
    sees its peer under: that is not a forgery (found by tests/test_isolation.py)."""
    ns = netns("pair")
    here, there = names.link("h"), names.link("t")
    with broker.client() as gz:
        gz.boot_zone("pair", netns=ns)
        gz.create_link(LinkSpec(name=here, class_="veth", peer=there, peer_zone="pair"))
        run("ip", "-n", ns, "link", "set", there, "mtu", "1450")  # reconciled while apart
        assert eventually(partial(mtu_is, gz, there, "pair", 1450))
        gz.assign_link(here, "pair")  # both ends in the zone now, both lent
        run("ip", "-n", ns, "link", "set", there, "mtu", "1400")  # a resync follows
        assert eventually(partial(mtu_is, gz, there, "pair", 1400))
        assert {gz.get_link(x, "pair").owner for x in (here, there)} == {"global"}
        gz.reclaim_link(here)
        run("ip", "-n", ns, "link", "set", there, "mtu", "1300")
        assert eventually(partial(mtu_is, gz, there, "pair", 1300))
        assert gz.get_link(there, "pair").owner == "global"
        gz.reclaim_link(there)
        gz.delete_link(here)
