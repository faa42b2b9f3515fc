"""The broker core against a real linkbrokerd, real namespaces and real netlink (issue 3)."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from broker.client import (
    Client,
    InvalidName,
    InvalidParameter,
    LinkExists,
    LinkNotFound,
    LinkSpec,
    NotOwner,
    PermissionDenied,
    ZoneExists,
    ZoneNotFound,
    ZoneNotRegistered,
)
from tests.conftest import ROOT, BrokerProcess, ZoneCaller, run


def kernel_links(ns: str | None) -> dict[str, dict[str, Any]]:
    cmd = ["ip", "-d", "-j"] + ([] if ns is None else ["-n", ns]) + ["link", "show"]
    return {d["ifname"]: d for d in json.loads(run(*cmd).stdout)}


@dataclass
class Lab:
    broker: BrokerProcess
    gz: Client
    red_ns: str
    blue_ns: str
    red: ZoneCaller
    blue: ZoneCaller
    vred: str
    vblue: str


@pytest.fixture
def lab(broker: BrokerProcess, netns: Any, zone_caller: Any, names: Any) -> Iterator[Lab]:
    red_ns, blue_ns = netns("red"), netns("blue")
    with broker.client() as gz:
        gz.boot_zone("red", netns=red_ns)
        gz.boot_zone("blue", netns=blue_ns)
        vred, vblue = names.link("r"), names.link("b")
        gz.create_link(LinkSpec(name=vred, class_="veth", zone="red", peer=vblue,
                                peer_zone="blue"))
        yield Lab(broker, gz, red_ns, blue_ns, zone_caller(red_ns), zone_caller(blue_ns),
                  vred, vblue)


def names_of(reply: dict[str, Any]) -> set[str]:
    return {link["name"] for link in reply["links"]}


def test_each_zone_sees_only_its_own_end(lab: Lab) -> None:
    red = lab.red.call("ListLinks")["links"]
    assert [link["name"] for link in red] == [lab.vred]
    assert red[0]["zone"] == "red" and red[0]["owner"] == "global" and red[0]["onloan"]
    assert "peer" not in red[0] or red[0]["peer"] is None  # the peer lives in blue
    assert names_of(lab.blue.call("ListLinks")) == {lab.vblue}
    # The global zone sees both ends, each naming the other, and its own physical links.
    everything = {link.name: link for link in lab.gz.list_links()}
    assert everything[lab.vred].peer == lab.vblue and everything[lab.vblue].peer == lab.vred
    assert any(link.class_ == "phys" for link in everything.values())
    # And the kernel agrees.
    assert lab.vred in kernel_links(lab.red_ns) and lab.vblue in kernel_links(lab.blue_ns)


def test_no_oracle_for_other_zones_names(lab: Lab) -> None:
    """Naming blue's link or zone from red answers exactly as a name that exists nowhere."""
    link_calls: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
        ("GetLink", {"name": lab.vblue}, {"name": "nosuchlink0"}),
        ("DeleteLink", {"name": lab.vblue}, {"name": "nosuchlink0"}),
        ("SetLinkProperties", {"name": lab.vblue, "mtu": 1400},
         {"name": "nosuchlink0", "mtu": 1400}),
        ("RenameLink", {"name": lab.vblue, "new_name": "x0"},
         {"name": "nosuchlink0", "new_name": "x0"}),
    ]
    for method, hidden, missing in link_calls:
        a, b = lab.red.raw(method, **hidden), lab.red.raw(method, **missing)
        assert a["error"] == b["error"] == "io.linkbroker.LinkNotFound"
        assert a["parameters"]["name"] == hidden["name"]  # only what the caller sent
        assert b["parameters"]["name"] == missing["name"]
    zone_calls: list[tuple[str, dict[str, str]]] = [
        ("GetZone", {"name": "{}"}), ("ListLinks", {"zone": "{}"}),
        ("GetLink", {"name": "x", "zone": "{}"})]
    for method, params in zone_calls:
        seen = lab.red.raw(method, **{k: v.format("blue") for k, v in params.items()})
        unseen = lab.red.raw(method, **{k: v.format("nowhere") for k, v in params.items()})
        assert seen["error"] == unseen["error"] == "io.linkbroker.ZoneNotFound"
        assert set(seen["parameters"]) == set(unseen["parameters"]) == {"name"}
    assert [z["name"] for z in lab.red.call("ListZones")["zones"]] == ["red"]


def test_lent_links_up_and_mtu_but_not_rename_or_delete(lab: Lab) -> None:
    link = lab.red.call("SetLinkProperties", name=lab.vred, mtu=1400, up=True)["link"]
    assert link["mtu"] == 1400 and link["state"] == "up"
    k = kernel_links(lab.red_ns)[lab.vred]
    assert k["mtu"] == 1400 and "UP" in k["flags"]
    for method, params in [("DeleteLink", {}), ("RenameLink", {"new_name": "mine0"}),
                           ("SetLinkProperties", {"mac": "02:00:00:00:00:01"})]:
        with pytest.raises(NotOwner) as err:
            lab.red.call(method, name=lab.vred, **params)
        assert err.value.owner == "global"
    assert lab.vred in kernel_links(lab.red_ns)


def test_zone_manages_its_own_bridge_and_veth(lab: Lab, names: Any) -> None:
    br, va, vb, renamed = names.link("br"), names.link("a"), names.link("b"), names.link("n")
    lab.red.call("CreateLink", link={"name": br, "class": "bridge", "up": True})
    made = lab.red.call("CreateLink", link={"name": va, "class": "veth", "peer": vb})["link"]
    assert made["owner"] == "red" and not made["onloan"] and made["peer"] == vb
    enslaved = lab.red.call("SetLinkProperties", name=va, master=br)["link"]
    assert enslaved["master"] == br
    k = kernel_links(lab.red_ns)
    assert k[va]["master"] == br and k[br]["linkinfo"]["info_kind"] == "bridge"
    assert lab.red.call("RenameLink", name=va, new_name=renamed)["link"]["name"] == renamed
    assert renamed in kernel_links(lab.red_ns)
    lab.red.call("DeleteLink", name=renamed)
    lab.red.call("DeleteLink", name=br)
    k = kernel_links(lab.red_ns)
    assert not {renamed, vb, br} & set(k)
    assert names_of(lab.red.call("ListLinks")) == {lab.vred}
    # The other zone saw none of it.
    assert names_of(lab.blue.call("ListLinks")) == {lab.vblue}


def test_zone_cannot_create_in_other_zone_or_over_hidden_parent(lab: Lab, names: Any) -> None:
    with pytest.raises(ZoneNotFound):
        lab.red.call("CreateLink", link={"name": names.link("x"), "class": "bridge",
                                         "zone": "blue"})
    with pytest.raises(ZoneNotFound):
        lab.red.call("CreateLink", link={"name": names.link("x"), "class": "veth",
                                         "peer": names.link("y"), "peer_zone": "blue"})
    with pytest.raises(LinkNotFound):
        lab.red.call("CreateLink", link={"name": names.link("m"), "class": "macvlan",
                                         "parent": lab.vblue})


def test_assign_and_reclaim_move_the_kernel_link(lab: Lab, names: Any) -> None:
    host_end, other = names.link("h"), names.link("o")
    lab.gz.create_link(LinkSpec(name=host_end, class_="veth", peer=other))
    lent = lab.gz.assign_link(host_end, "red")
    assert lent.zone == "red" and lent.onloan and lent.owner == "global"
    assert host_end in kernel_links(lab.red_ns) and host_end not in kernel_links(None)
    assert host_end in names_of(lab.red.call("ListLinks"))
    back = lab.gz.reclaim_link(host_end)
    assert back.zone == "global" and not back.onloan
    assert host_end in kernel_links(None) and host_end not in kernel_links(lab.red_ns)
    lab.gz.delete_link(host_end)
    assert not {host_end, other} & set(kernel_links(None))


def test_halt_returns_lent_links_and_removes_own(lab: Lab, names: Any) -> None:
    own = names.link("own")
    lab.red.call("CreateLink", link={"name": own, "class": "bridge"})
    lab.gz.halt_zone("red")
    k = kernel_links(lab.red_ns)
    assert own not in k and lab.vred not in k
    home = lab.gz.get_link(lab.vred)
    assert home.zone == "global" and not home.onloan and lab.vred in kernel_links(None)
    assert all(z.name != "red" for z in lab.gz.list_zones())
    with pytest.raises(ZoneNotRegistered):
        lab.red.call("WhoAmI")
    lab.gz.delete_link(lab.vred)
    assert lab.vblue not in kernel_links(lab.blue_ns)


def test_bad_names_change_nothing(lab: Lab) -> None:
    before = kernel_links(lab.red_ns), lab.red.call("ListLinks")
    for bad, reason in [("", "empty"), ("x" * 16, "15 bytes"), ("a/b", "'/'"), ("a b", "' '"),
                        ("..", "'..'"), ("a:b", "':'")]:
        with pytest.raises(InvalidName) as err:
            lab.red.call("CreateLink", link={"name": bad, "class": "bridge"})
        assert err.value.name == bad and reason in err.value.reason
    with pytest.raises(InvalidName):
        lab.red.call("RenameLink", name=lab.vred, new_name="bad/name")
    with pytest.raises(InvalidParameter) as perr:
        lab.red.call("CreateLink", link={"name": "okname0", "class": "bridge", "vni": 5})
    assert perr.value.parameter == "link.vni"
    with pytest.raises(InvalidParameter) as perr:
        lab.red.call("CreateLink", link={"name": "okname0", "class": "veth"})
    assert perr.value.parameter == "link.peer"
    with pytest.raises(InvalidParameter) as perr:
        lab.red.call("CreateLink", link={"name": "okname0", "class": "bridge", "mtu": "big"})
    assert perr.value.parameter == "link.mtu"
    with pytest.raises(InvalidName):
        lab.gz.boot_zone("global", netns=lab.red_ns)
    assert (kernel_links(lab.red_ns), lab.red.call("ListLinks")) == before


def test_existing_names_give_link_exists(lab: Lab, names: Any) -> None:
    with pytest.raises(LinkExists):
        lab.red.call("CreateLink", link={"name": lab.vred, "class": "bridge"})
    br = names.link("br")
    lab.red.call("CreateLink", link={"name": br, "class": "bridge"})
    with pytest.raises(LinkExists):
        lab.red.call("RenameLink", name=br, new_name=lab.vred)
    # The same name in another zone is no clash.
    lab.blue.call("CreateLink", link={"name": br, "class": "bridge"})


def test_non_global_zones_may_not_administer(lab: Lab) -> None:
    for method, params in [("BootZone", {"name": "x", "netns": lab.blue_ns}),
                           ("HaltZone", {"name": "blue"}),
                           ("AssignLink", {"name": "eth0", "zone": "red"}),
                           ("ReclaimLink", {"name": lab.vred})]:
        with pytest.raises(PermissionDenied) as err:
            lab.red.call(method, **params)
        assert err.value.method == method
    assert {z.name for z in lab.gz.list_zones()} == {"global", "red", "blue"}


def test_boot_errors(lab: Lab, netns: Any) -> None:
    with pytest.raises(ZoneExists):
        lab.gz.boot_zone("red", netns=netns("other"))
    with pytest.raises(ZoneExists):  # the same namespace under another name
        lab.gz.boot_zone("red2", netns=lab.red_ns)
    with pytest.raises(InvalidParameter):
        lab.gz.boot_zone("two", netns=lab.red_ns, pid=1)
    with pytest.raises(ZoneNotFound):
        lab.gz.halt_zone("nowhere")


def test_unregistered_namespace_is_refused(broker: BrokerProcess, netns: Any,
                                           zone_caller: Any) -> None:
    stranger = zone_caller(netns("stranger"))
    # org.varlink.service answers, so a client can learn what it talks to.
    assert "io.linkbroker" in stranger.call("org.varlink.service.GetInfo")["interfaces"]
    reply = stranger.raw("ListLinks")
    assert reply["error"] == "io.linkbroker.ZoneNotRegistered"
    # ...and then the broker has nothing more to say to it: the connection is closed (the
    # next call on it finds it closed; zone_agent then reconnects).
    assert stranger.raw("org.varlink.service.GetInfo") == {"closed": True}
    assert "io.linkbroker" in stranger.call("org.varlink.service.GetInfo")["interfaces"]


def test_restart_after_kill9_keeps_zones_links_and_ids(lab: Lab, names: Any) -> None:
    br = names.link("br")
    lab.red.call("CreateLink", link={"name": br, "class": "bridge"})
    before = {(link.zone, link.name): link.id for link in lab.gz.list_links()}
    lab.gz.close()
    lab.broker.kill9()
    lab.broker.start()
    with lab.broker.client() as gz:
        after = {(link.zone, link.name): link.id for link in gz.list_links()}
        assert after == before
        assert {z.name for z in gz.list_zones()} == {"global", "red", "blue"}
        fresh = gz.create_link(LinkSpec(name=names.link("f"), class_="bridge"))
        # IDs are never reused, and the counter behind them went on where it was.
        assert fresh.id not in before.values()
        assert gz.list_links()[-1].id == fresh.id  # creation order: the newest comes last
        gz.delete_link(fresh.name)
    db = sqlite3.connect(f"{lab.broker.state_dir}/linkbroker.db")
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    db.close()


def test_restart_drops_zones_whose_namespace_is_gone(lab: Lab) -> None:
    lab.gz.close()
    lab.broker.stop()
    run("ip", "netns", "del", lab.blue_ns)
    lab.broker.start()
    with lab.broker.client() as gz:
        assert {z.name for z in gz.list_zones()} == {"global", "red"}
        assert lab.vblue not in {link.name for link in gz.list_links()}


def test_linkadm_in_a_zone_shows_only_that_zone(lab: Lab) -> None:
    def linkadm(ns: str, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["ip", "netns", "exec", ns, sys.executable, "-m", "clients.linkadm",
             "--socket", lab.broker.socket, *args],
            capture_output=True, text=True, cwd=ROOT, timeout=30, check=False)

    out = linkadm(lab.red_ns, "show-link")
    assert out.returncode == 0, out.stderr
    header, *rows = out.stdout.splitlines()
    assert header.split() == ["LINK", "CLASS", "ZONE", "OWNER", "STATE", "MTU", "OVER"]
    assert [r.split()[0] for r in rows] == [lab.vred]
    out = linkadm(lab.red_ns, "show-link", "-p", "-o", "link,class,zone")
    assert out.stdout == f"{lab.vred}:veth:red\n"
    out = linkadm(lab.red_ns, "show-link", "--json")
    assert [link["name"] for link in json.loads(out.stdout)] == [lab.vred]
    out = linkadm(lab.red_ns, "delete-link", lab.vblue)
    assert out.returncode == 1 and f"link {lab.vblue!r} not found" in out.stderr
    out = linkadm(lab.red_ns, "halt-zone", "blue")
    assert out.returncode == 1 and "HaltZone needs the authorization 'zone.admin'" in out.stderr


def test_stock_varlink_client_drives_every_method(lab: Lab, names: Any) -> None:
    """The reference `varlink` package, from the host (global) and from inside red."""
    import varlink

    address = f"unix:{lab.broker.socket}"
    with varlink.Client(address=address) as client, client.open("io.linkbroker") as gz:
        assert gz.WhoAmI()["zone"] == "global"
        assert {z["name"] for z in gz.ListZones()["zones"]} == {"global", "red", "blue"}
        assert gz.GetZone("red")["zone"]["netns"] == lab.red_ns
        assert lab.vred in {link["name"] for link in gz.ListLinks()["links"]}
        br = names.link("vb")
        made = gz.CreateLink({"name": br, "class": "bridge", "zone": "red"})["link"]
        assert made["zone"] == "red" and made["onloan"]
        assert gz.GetLink(br, "red")["link"]["id"] == made["id"]
        assert gz.SetLinkProperties(br, "red", 1400, None, True, None)["link"]["mtu"] == 1400
        assert gz.RenameLink(br, br + "x", "red")["link"]["name"] == br + "x"
        gz.DeleteLink(br + "x", "red")
        h, o = names.link("h"), names.link("o")
        gz.CreateLink({"name": h, "class": "veth", "peer": o})
        assert gz.AssignLink(h, "blue")["link"]["zone"] == "blue"
        assert gz.ReclaimLink(h)["link"]["zone"] == "global"
        gz.DeleteLink(h)
        ns = names.ns("vl")
        run("ip", "netns", "add", ns)
        try:
            assert gz.BootZone("vl", ns)["zone"]["kind"] == "netns"
            gz.HaltZone("vl")
        finally:
            run("ip", "netns", "del", ns, check=False)
        with pytest.raises(varlink.VarlinkError) as err:
            gz.GetLink("nosuch0")
        assert err.value.error() == "io.linkbroker.LinkNotFound"
    # The CLI of the reference package, from inside the zone.
    out = run("ip", "netns", "exec", lab.red_ns, sys.executable, "-m", "varlink.cli", "call",
              f"{address}/io.linkbroker.ListLinks", "{}")
    assert [link["name"] for link in json.loads(out.stdout)["links"]] == [lab.vred]
    out = run("ip", "netns", "exec", lab.red_ns, sys.executable, "-m", "varlink.cli", "help",
              f"{address}/io.linkbroker")
    assert "method CreateLink" in out.stdout


def test_broker_keeps_only_the_capabilities_it_needs(broker: BrokerProcess) -> None:
    from broker._privileges import KEPT, effective_capabilities

    assert broker.proc is not None
    effective = effective_capabilities(broker.proc.pid)
    assert effective & ~sum(1 << cap for cap in KEPT) == 0
    assert effective & (1 << 12)  # CAP_NET_ADMIN is kept; every other test shows it suffices
    with open(f"/proc/{broker.proc.pid}/status") as f:
        bounding = next(int(line.split()[1], 16) for line in f if line.startswith("CapBnd:"))
    assert bounding & ~sum(1 << cap for cap in KEPT) == 0
