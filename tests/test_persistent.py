"""Persistent links (issue 5): kept in the configuration while their zone is down, shown as
absent to the global zone, and re-created with the same IDs when the zone boots again."""

from __future__ import annotations

from typing import Any

from broker.client import LinkSpec
from tests.conftest import BrokerProcess, run
from tests.test_broker import kernel_links


def test_persistent_links_return_on_boot_with_their_ids(broker: BrokerProcess, netns: Any,
                                                        names: Any, zone_caller: Any) -> None:
    ns = netns("pers")
    br, va, vb, temp = names.link("br"), names.link("a"), names.link("b"), names.link("t")
    with broker.client() as gz:
        gz.boot_zone("pers", netns=ns)
        red = zone_caller(ns)
        red.call("CreateLink", link={"name": br, "class": "bridge", "persistent": True,
                                     "mtu": 1400, "up": True})
        red.call("CreateLink", link={"name": va, "class": "veth", "peer": vb,
                                     "persistent": True, "master": br})
        red.call("CreateLink", link={"name": temp, "class": "bridge"})
        ids = {link.name: link.id for link in gz.list_links("pers")}
        gz.halt_zone("pers")
        assert not {br, va, vb, temp} & set(kernel_links(ns))
        kept = {link.name: link for link in gz.list_links("pers")}
        assert set(kept) == {br, va, vb}  # the temporary bridge is gone for good
        assert all(link.state == "absent" and link.persistent for link in kept.values())
        gz.boot_zone("pers", netns=ns)
        back = {link.name: link for link in gz.list_links("pers")}
        assert {n: back[n].id for n in (br, va, vb)} == {n: ids[n] for n in (br, va, vb)}
        assert back[br].state == "up" and back[br].mtu == 1400
        assert back[va].master == br and back[va].peer == vb
        k = kernel_links(ns)
        assert {br, va, vb} <= set(k) and k[va]["master"] == br
        gz.halt_zone("pers")


def test_global_persistent_link_returns_at_broker_start(broker: BrokerProcess,
                                                        names: Any) -> None:
    br = names.link("gp")
    with broker.client() as gz:
        made = gz.create_link(LinkSpec(name=br, class_="bridge", persistent=True))
    broker.stop()
    run("ip", "link", "del", br)  # as a host reboot would
    broker.start()
    with broker.client() as gz:
        again = gz.get_link(br)
        assert again.id == made.id and again.state != "absent"
        assert br in kernel_links(None)
        gz.delete_link(br)
    assert br not in kernel_links(None)


def test_persistent_assignment_is_restored_on_boot(broker: BrokerProcess, netns: Any,
                                                   names: Any) -> None:
    ns = netns("lend")
    host_end, other = names.link("h"), names.link("o")
    with broker.client() as gz:
        gz.boot_zone("lend", netns=ns)
        gz.create_link(LinkSpec(name=host_end, class_="veth", peer=other))
        gz.assign_link(host_end, "lend", persistent=True)
        gz.halt_zone("lend")
        assert gz.get_link(host_end).zone == "global"  # home while the zone is down
        gz.boot_zone("lend", netns=ns)
        again = gz.get_link(host_end, "lend")
        assert again.onloan and host_end in kernel_links(ns)
        gz.reclaim_link(host_end)
        gz.halt_zone("lend")
        gz.boot_zone("lend", netns=ns)  # reclaimed: no longer lent on boot
        assert gz.get_link(host_end).zone == "global"
        gz.halt_zone("lend")
        gz.delete_link(host_end)
