"""Persistent configuration you can manage (issue 14, item 5), against a real broker.

A halted zone's saved links are listed, read and removed by the global zone, even when the
zone's namespace is gone for good; DeleteLink's `temporary` removes only the active link and
`persistent` only the configuration (linkadm delete-link -t / -P).
"""

from __future__ import annotations

import errno
import subprocess
import sys
from typing import Any

import pytest

from broker.client import (
    InvalidParameter,
    KernelError,
    LinkNotFound,
    ZoneNotFound,
)
from tests.conftest import ROOT, BrokerProcess, run
from tests.test_broker import kernel_links


def linkadm(broker: BrokerProcess, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "clients.linkadm", "--socket", broker.socket,
                           *args], capture_output=True, text=True, cwd=ROOT, timeout=60,
                          check=False)


def test_halted_zones_saved_links_are_listed_and_removed(broker: BrokerProcess, netns: Any,
                                                         names: Any, zone_caller: Any) -> None:
    ns = netns("gone")
    br, va, vb, temp = names.link("br"), names.link("a"), names.link("b"), names.link("t")
    with broker.client() as gz:
        gz.boot_zone("gone", netns=ns)
        zone = zone_caller(ns)
        zone.call("CreateLink", link={"name": br, "class": "bridge", "persistent": True})
        zone.call("CreateLink", link={"name": va, "class": "veth", "peer": vb,
                                      "persistent": True})
        zone.call("CreateLink", link={"name": temp, "class": "bridge"})
        ids = {link.name: link.id for link in gz.list_links("gone")}
        gz.halt_zone("gone")
    run("ip", "netns", "del", ns)  # the container will never come back
    with broker.client() as gz:
        saved = {link.name: link for link in gz.list_links("gone")}
        assert set(saved) == {br, va, vb}
        assert all(x.state == "absent" and x.persistent and x.zone == "gone"
                   for x in saved.values())
        assert gz.get_link(br, "gone").id == ids[br]  # ZoneNotFound before issue 14
        with pytest.raises(LinkNotFound):
            gz.get_link(temp, "gone")
        gz.delete_link(br, "gone")
        assert {x.name for x in gz.list_links("gone")} == {va, vb}
    # From linkadm too: one end of the veth takes the other with it.
    done = linkadm(broker, "delete-link", va, "-z", "gone")
    assert done.returncode == 0, done.stderr
    with broker.client() as gz, pytest.raises(ZoneNotFound):
        gz.list_links("gone")  # nothing saved is left: the name means nothing
    broker.stop()
    broker.start()
    with broker.client() as gz:
        with pytest.raises(ZoneNotFound):
            gz.list_links("gone")
        assert not {br, va, vb} & {x.name for x in gz.list_links()}
        again = netns("gone2")
        gz.boot_zone("gone", netns=again)  # a new zone of that name gets nothing back
        assert gz.list_links("gone") == []
        assert not {br, va, vb} & set(kernel_links(again))
        gz.halt_zone("gone")


def test_a_halted_zones_links_are_not_a_zones_business(broker: BrokerProcess, netns: Any,
                                                       names: Any, zone_caller: Any) -> None:
    """Only the global zone reaches a halted zone's configuration: another zone naming it
    gets ZoneNotFound, as for a zone that never was."""
    ns, other = netns("hz"), netns("hzo")
    br = names.link("br")
    with broker.client() as gz:
        gz.boot_zone("hz", netns=ns)
        gz.boot_zone("hzo", netns=other)
        zone_caller(ns).call("CreateLink", link={"name": br, "class": "bridge",
                                                 "persistent": True})
        gz.halt_zone("hz")
        nosy = zone_caller(other)
        for method, params in (("ListLinks", {"zone": "hz"}),
                               ("GetLink", {"name": br, "zone": "hz"}),
                               ("DeleteLink", {"name": br, "zone": "hz"})):
            assert nosy.raw(method, **params) == {
                "error": "io.linkbroker.ZoneNotFound", "parameters": {"name": "hz"}}
        assert gz.get_link(br, "hz").state == "absent"
        gz.delete_link(br, "hz", persistent=True)  # configuration only: all there was
        with pytest.raises(ZoneNotFound):
            gz.list_links("hz")
        gz.halt_zone("hzo")


def test_delete_temporary_and_persistent(broker: BrokerProcess, netns: Any, names: Any,
                                         zone_caller: Any) -> None:
    ns = netns("tp")
    keep, drop, temp = names.link("k"), names.link("d"), names.link("t")
    with broker.client() as gz:
        gz.boot_zone("tp", netns=ns)
        zone = zone_caller(ns)  # the zone's own links: they stay in its configuration
        for name in (keep, drop):
            zone.call("CreateLink", link={"name": name, "class": "bridge", "persistent": True})
        zone.call("CreateLink", link={"name": temp, "class": "bridge"})
        kept_id = gz.get_link(keep, "tp").id

        # -t: the active link goes, the configuration stays (absent), and comes back on boot.
        done = linkadm(broker, "delete-link", keep, "-z", "tp", "-t")
        assert done.returncode == 0, done.stderr
        assert keep not in kernel_links(ns)
        now = gz.get_link(keep, "tp")
        assert (now.state, now.persistent, now.id) == ("absent", True, kept_id)
        with pytest.raises(KernelError) as exc:  # nothing active left to remove
            gz.delete_link(keep, "tp", temporary=True)
        assert exc.value.errno == errno.ENODEV

        # -P: the configuration goes, the active link stays as a temporary one.
        done = linkadm(broker, "delete-link", drop, "-z", "tp", "-P")
        assert done.returncode == 0, done.stderr
        now = gz.get_link(drop, "tp")
        assert (now.persistent, now.state != "absent") == (False, True)
        assert drop in kernel_links(ns)
        with pytest.raises(InvalidParameter) as bad:  # it has no configuration left
            gz.delete_link(drop, "tp", persistent=True)
        assert bad.value.parameter == "persistent"
        with pytest.raises(InvalidParameter) as bad:
            gz.delete_link(temp, "tp", temporary=True, persistent=True)
        assert bad.value.parameter == "persistent"
        assert temp in kernel_links(ns)  # refused: nothing changed

        # -t on a temporary link removes it for good, as a plain delete.
        gz.delete_link(temp, "tp", temporary=True)
        with pytest.raises(LinkNotFound):
            gz.get_link(temp, "tp")

        gz.halt_zone("tp")
        gz.boot_zone("tp", netns=ns)
        back = {x.name: x for x in gz.list_links("tp")}
        assert set(back) == {keep} and back[keep].id == kept_id
        assert keep in kernel_links(ns) and drop not in kernel_links(ns)
        gz.delete_link(keep, "tp")
        gz.halt_zone("tp")
        with pytest.raises(ZoneNotFound):
            gz.list_links("tp")


def test_linkadm_says_which_lifetime_is_the_default() -> None:
    create = subprocess.run([sys.executable, "-m", "clients.linkadm", "create-link", "--help"],
                            capture_output=True, text=True, cwd=ROOT, timeout=60, check=True)
    assert "the default: the link lasts until deleted" in " ".join(create.stdout.split())
    both = subprocess.run([sys.executable, "-m", "clients.linkadm", "delete-link", "x", "-t",
                           "-P"], capture_output=True, text=True, cwd=ROOT, timeout=60,
                          check=False)
    assert both.returncode == 2 and "not allowed with" in both.stderr
