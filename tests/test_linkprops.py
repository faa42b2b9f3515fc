"""Link properties (issue 14, item 2) against a real kernel: every class this kernel has is
created from a zone, its properties read (dladm's rows), changed, checked in the kernel,
reset, renamed and deleted; a borrower may set only what the contract lets it."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

from broker._errors import InvalidParameter, NotOwner
from broker.client import LinkSpec
from tests.conftest import BrokerProcess, run


def kernel(ns: str, name: str) -> dict[str, Any]:
    found: list[dict[str, Any]] = json.loads(
        run("ip", "-n", ns, "-d", "-j", "link", "show", "dev", name).stdout)
    return found[0]


def props(caller: Any, name: str) -> dict[str, dict[str, str]]:
    rows = caller.call("GetLinkProperties", name=name)["properties"]
    return {r["property"]: r for r in rows}


# What each class this kernel has is made with, from inside the zone.
CLASSES: dict[str, dict[str, Any]] = {
    "veth": {"peer": "{n}p"},
    "bridge": {},
    "macvlan": {"parent": "{base}", "mode": "bridge"},
    "macvtap": {"parent": "{base}", "mode": "bridge"},
    "vxlan": {"vni": 42, "port": 4789},
    "tap": {},
}


@pytest.mark.parametrize("cls", sorted(CLASSES))
def test_each_class_is_made_read_changed_reset_renamed_and_deleted_from_a_zone(
        broker: BrokerProcess, netns: Any, zone_caller: Any, names: Any, cls: str) -> None:
    ns = netns(f"lp{cls[:4]}")
    with broker.client() as gz:
        gz.boot_zone("red", netns=ns)
    red = zone_caller(ns)
    base, n, renamed = names.link("b"), names.link("x"), names.link("r")
    red.call("CreateLink", link={"name": base, "class": "veth", "peer": f"{base}p"})
    extra = {k: (v.format(n=n, base=base) if isinstance(v, str) else v)
             for k, v in CLASSES[cls].items()}
    made = red.call("CreateLink", link={"name": n, "class": cls, **extra})["link"]
    assert made["class"] == cls
    listed = {x["name"]: x["class"] for x in red.call("ListLinks")["links"]}
    assert listed[n] == cls

    rows = props(red, n)
    for common in ("mtu", "state", "mac", "txqueuelen", "promisc", "alias"):
        assert rows[common]["perm"] == "rw", rows[common]
    assert rows["mtu"]["value"] == str(kernel(ns, n)["mtu"])
    queue = "500" if cls == "macvtap" else "1000"  # the kernel's default, by class
    assert (rows["txqueuelen"]["value"], rows["txqueuelen"]["default"]) == (queue, queue)
    if cls == "vxlan":
        assert (rows["vni"]["value"], rows["vni"]["perm"]) == ("42", "r-")
    if cls in ("macvlan", "macvtap"):
        assert (rows["mode"]["value"], rows["mode"]["perm"]) == ("bridge", "r-")

    red.call("SetLinkProperties", name=n, mtu=1400, txqueuelen=500, alias="lbt test",
             promisc=True)
    k = kernel(ns, n)
    assert (k["mtu"], k["txqlen"], k.get("ifalias"), "PROMISC" in k["flags"]) == (
        1400, 500, "lbt test", True)
    rows = props(red, n)
    assert [rows[p]["value"] for p in ("mtu", "txqueuelen", "alias", "promisc")] == [
        "1400", "500", "lbt test", "on"]

    red.call("ResetLinkProperties", name=n, properties=["mtu", "txqueuelen", "alias",
                                                        "promisc"])
    k = kernel(ns, n)
    assert (k["mtu"], k["txqlen"], k.get("ifalias", ""), "PROMISC" in k["flags"]) == (
        1500, int(queue), "", False)

    assert red.call("RenameLink", name=n, new_name=renamed)["link"]["name"] == renamed
    assert props(red, renamed)["mtu"]["value"] == "1500"
    red.call("DeleteLink", name=renamed)
    assert renamed not in {x["name"] for x in red.call("ListLinks")["links"]}


def test_a_borrower_sets_mtu_and_state_only_and_sees_it_in_perm(
        broker: BrokerProcess, netns: Any, zone_caller: Any, names: Any) -> None:
    ns = netns("lplend")
    v = names.link("v")
    with broker.client() as gz:
        gz.boot_zone("red", netns=ns)
        gz.create_link(LinkSpec(name=v, class_="veth", zone="red", peer=f"{v}h",
                                peer_zone="global"))
    red = zone_caller(ns)
    rows = props(red, v)
    assert {p: r["perm"] for p, r in rows.items() if r["perm"] == "rw"} == {
        "mtu": "rw", "state": "rw"}
    red.call("SetLinkProperties", name=v, mtu=1400)
    with pytest.raises(NotOwner):
        red.call("SetLinkProperties", name=v, txqueuelen=10)
    with pytest.raises(NotOwner):
        red.call("ResetLinkProperties", name=v, properties=["alias"])
    with pytest.raises(InvalidParameter):
        red.call("GetLinkProperties", name=v, properties=["vni"])  # not a veth's
    with pytest.raises(InvalidParameter):
        red.call("ResetLinkProperties", name=v, properties=["mac"])  # no default to restore
    with broker.client() as gz:
        assert {r.property: r.perm for r in gz.link_properties(v, "red")}["txqueuelen"] == "rw"


def test_linkadm_property_verbs_speak_dladm(broker: BrokerProcess, netns: Any,
                                            names: Any) -> None:
    ns = netns("lpadm")
    v = names.link("v")
    with broker.client() as gz:
        gz.boot_zone("red", netns=ns)

    def linkadm(*args: str) -> subprocess.CompletedProcess[str]:
        return run("ip", "netns", "exec", ns, sys.executable, "-m", "clients.linkadm",
                   "--socket", broker.socket, *args, check=False)

    assert linkadm("create-link", v, "--class", "veth", "--peer", f"{v}p").returncode == 0
    table = linkadm("show-linkprop", v)
    assert table.stdout.splitlines()[0].split() == ["LINK", "PROPERTY", "PERM", "VALUE",
                                                    "DEFAULT", "POSSIBLE"]
    done = linkadm("set-linkprop", "-p", "mtu=1280,txqueuelen=64,alias=web", v)
    assert done.returncode == 0, done.stderr
    line = linkadm("show-linkprop", "-c", "-o", "property,value", "-p", "mtu,alias", v)
    assert line.stdout.split() == ["mtu:1280", "alias:web"], line
    assert linkadm("reset-linkprop", "-p", "mtu,alias", v).returncode == 0
    assert kernel(ns, v)["mtu"] == 1500 and kernel(ns, v)["txqlen"] == 64
    bad = linkadm("set-linkprop", "-p", "speed=10", v)
    assert bad.returncode == 2 and "speed=10" in bad.stderr
    unknown = linkadm("show-linkprop", "-p", "vni", v)
    assert unknown.returncode == 2 and "no such property of a veth link" in unknown.stderr


def test_set_linkprop_t_changes_the_active_link_only(broker: BrokerProcess, netns: Any,
                                                     zone_caller: Any, names: Any) -> None:
    """dladm's set-linkprop -t (issue 14, item 5): a temporary change leaves a persistent
    link's configuration as it was, so the link comes back without it; a lasting one comes
    back with it."""
    ns = netns("lptemp")
    with broker.client() as gz:
        gz.boot_zone("red", netns=ns)
    red = zone_caller(ns)
    t, k = names.link("t"), names.link("k")
    for name in (t, k):
        red.call("CreateLink", link={"name": name, "class": "veth", "peer": f"{name}p",
                                     "persistent": True})
    red.call("SetLinkProperties", name=t, mtu=1400, up=True, temporary=True)
    red.call("SetLinkProperties", name=t, mtu=1300, temporary=True)  # still 1500 saved
    red.call("SetLinkProperties", name=k, mtu=1400, up=True)
    assert (kernel(ns, t)["mtu"], kernel(ns, k)["mtu"]) == (1300, 1400)
    with broker.client() as gz:
        gz.halt_zone("red")
        gz.boot_zone("red", netns=ns)  # the zone's persistent links are made again
        back = {lk.name: lk for lk in gz.list_links("red")}
    assert (back[t].mtu, back[t].state) == (1500, "down")
    assert (back[k].mtu, back[k].state) == (1400, "up")
    assert (kernel(ns, t)["mtu"], kernel(ns, k)["mtu"]) == (1500, 1400)


def test_a_phys_link_shows_speed_and_duplex_as_its_driver_reports_them(
        broker: BrokerProcess) -> None:
    with broker.client() as gz:
        phys = [lk for lk in gz.list_links("global") if lk.class_ == "phys"]
        if not phys:
            pytest.skip("no phys link on this host")
        rows = {r.property: r for r in gz.link_properties(phys[0].name, "global")}
    for key in ("speed", "duplex"):
        with open(f"/sys/class/net/{phys[0].name}/{key}", encoding="ascii") as f:
            try:
                raw = f.read().strip()
            except OSError:  # EINVAL: the driver has none
                raw = ""
        want = raw if raw not in ("", "-1", "unknown", "4294967295") else "--"
        assert (rows[key].value, rows[key].perm) == (want, "r-")
    assert "vni" not in rows and rows["mtu"].perm == "rw"
