"""Addresses and routes through the broker, against a real broker and real namespaces.

The point of issue 13: a zone with no capability at all (the lab's containers) configures its
own IP stack with linkadm through the socket, and reaches its peer; it learns nothing about
other zones' links doing so; persistent addresses and routes come back with their link.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from broker._errors import (
    AddressExists,
    InvalidAddress,
    LinkNotFound,
    PermissionDenied,
    RouteNotFound,
)
from broker.client import LinkSpec
from tests.conftest import BrokerProcess, ZoneCaller, run

# The capability-less prefix: bounding and inheritable sets empty, so the exec'd linkadm
# (uid 0, a root-owned file) holds no capability at all.
NO_CAPS = ("setpriv", "--bounding-set=-all", "--inh-caps=-all", "--")


def in_zone(ns: str, *cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return run("ip", "netns", "exec", ns, *NO_CAPS, *cmd, check=check)


def linkadm(ns: str, broker: BrokerProcess, *args: str,
            check: bool = True) -> subprocess.CompletedProcess[str]:
    return in_zone(ns, sys.executable, "-m", "clients.linkadm", "--socket", broker.socket,
                   *args, check=check)


# One ICMP echo over a ping socket (no CAP_NET_RAW needed): prints "reply", "timeout" or
# "error ERRNO" (no route: ENETUNREACH, 101).
_PING = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_ICMP)
s.settimeout(float(sys.argv[2]))
try:
    s.sendto(b"\\x08\\x00\\x00\\x00\\x00\\x00\\x00\\x01linkbroker", (sys.argv[1], 0))
    data, _ = s.recvfrom(2048)
    print("reply" if data[0] == 0 else "other")
except TimeoutError:
    print("timeout")
except OSError as exc:
    print(f"error {exc.errno}")
"""


def ping(ns: str, address: str, timeout: float = 5.0) -> str:
    return in_zone(ns, sys.executable, "-c", _PING, address, str(timeout)).stdout.strip()


def kernel_addrs(ns: str, dev: str) -> set[str]:
    out = json.loads(run("ip", "-n", ns, "-j", "addr", "show", "dev", dev).stdout)
    return {f"{a['local']}/{a['prefixlen']}" for d in out for a in d["addr_info"]
            if a["family"] == "inet" or not a["local"].startswith("fe80")}


def kernel_routes(ns: str) -> list[dict[str, Any]]:
    routes: list[dict[str, Any]] = json.loads(run("ip", "-n", ns, "-j", "route").stdout)
    return routes


@pytest.fixture
def pair(broker: BrokerProcess, netns: Any, zone_caller: Any, names: Any
         ) -> Iterator[dict[str, Any]]:
    """Zones red and blue joined by a veth the global zone made (each end lent to its zone),
    and a caller inside each zone."""
    red, blue = netns("red"), netns("blue")
    r, b = names.link("r"), names.link("b")
    with broker.client() as gz:
        gz.boot_zone("red", netns=red)
        gz.boot_zone("blue", netns=blue)
        gz.create_link(LinkSpec(name=r, class_="veth", zone="red", peer=b, peer_zone="blue"))
    yield {"red": red, "blue": blue, "r": r, "b": b,
           "cred": zone_caller(red), "cblue": zone_caller(blue)}


def test_a_zone_without_capabilities_addresses_its_veth_and_reaches_its_peer(
        broker: BrokerProcess, pair: dict[str, Any]) -> None:
    red, blue, r, b = pair["red"], pair["blue"], pair["r"], pair["b"]
    # The zone really holds no capability: the kernel refuses it the address itself.
    status = in_zone(red, "grep", "^CapEff", "/proc/self/status").stdout
    assert status.split()[1] == "0000000000000000", status
    refused = in_zone(red, "ip", "addr", "add", "198.51.100.9/24", "dev", r, check=False)
    assert refused.returncode != 0 and "not permitted" in refused.stderr.lower()
    # ICMP echo sockets for uid 0 (a sysctl of the zone's own, set by the test's setup).
    for ns in (red, blue):
        run("ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv4.ping_group_range=0 0")

    linkadm(red, broker, "set-linkprop", r, "--up")
    linkadm(blue, broker, "set-linkprop", b, "--up")
    linkadm(red, broker, "create-addr", "-a", "198.51.100.1/24", r)
    linkadm(blue, broker, "create-addr", "-a", "198.51.100.2/24", b)
    linkadm(blue, broker, "create-addr", "-a", "192.0.2.2/32", b)
    # 192.0.2.2 is off red's subnet: only the default route takes red there.
    linkadm(red, broker, "add-route", "default", "198.51.100.2")
    assert kernel_addrs(red, r) == {"198.51.100.1/24"}
    default = [x for x in kernel_routes(red) if x["dst"] == "default"]
    assert default == [{"dst": "default", "gateway": "198.51.100.2", "dev": r,
                        "protocol": "static", "flags": []}], default

    assert ping(red, "192.0.2.2") == "reply"

    shown = linkadm(red, broker, "show-addr", "-p", "-o", "link,address,family").stdout
    assert f"{r}:198.51.100.1/24:inet\n" in shown
    assert "198.51.100.2" not in shown  # blue's addresses stay blue's
    route = json.loads(linkadm(red, broker, "show-route", "--json").stdout)
    assert {"destination": "0.0.0.0/0", "family": "inet", "zone": "red",
            "persistent": False, "protocol": "static", "gateway": "198.51.100.2",
            "link": r} in route
    table = linkadm(red, broker, "show-route", "-p", "-o", "destination,gateway,link").stdout
    assert f"default:198.51.100.2:{r}\n" in table

    linkadm(red, broker, "delete-route", "default", "198.51.100.2")
    assert not [x for x in kernel_routes(red) if x["dst"] == "default"]
    assert ping(red, "192.0.2.2", 1.0) == "error 101"  # ENETUNREACH: no route any more
    linkadm(red, broker, "delete-addr", "-a", "198.51.100.1/24", r)
    assert kernel_addrs(red, r) == set()
    gone = linkadm(red, broker, "delete-addr", "-a", "198.51.100.1/24", r, check=False)
    assert gone.returncode != 0
    assert gone.stderr.strip() == ("linkadm: delete-addr: the link has no address "
                                   "198.51.100.1/24")


def test_another_zones_link_answers_as_a_missing_link(
        broker: BrokerProcess, pair: dict[str, Any], names: Any) -> None:
    cred: ZoneCaller = pair["cred"]
    b = pair["b"]  # blue's end: it exists, in another zone
    ghost = names.link("g")[:len(b)]
    assert len(ghost) == len(b)
    for method, params in (
            ("AddAddress", {"address": "198.51.100.7/24"}),
            ("RemoveAddress", {"address": "198.51.100.7/24"}),
            ("ListAddresses", {}),
            ("AddRoute", {"destination": "203.0.113.0/24"})):
        real = cred.raw(method, link=b, **params)
        fake = cred.raw(method, link=ghost, **params)
        assert real == json.loads(json.dumps(fake).replace(ghost, b)), (method, real, fake)
        assert real == {"error": "io.linkbroker.LinkNotFound", "parameters": {"name": b}}
    # Naming blue's zone answers as a zone that exists nowhere, too.
    real = cred.raw("AddAddress", link=pair["r"], address="198.51.100.7/24", zone="blue")
    fake = cred.raw("AddAddress", link=pair["r"], address="198.51.100.7/24", zone="qqqq")
    assert real["error"] == fake["error"] == "io.linkbroker.ZoneNotFound"
    assert real["parameters"] == {"name": "blue"} and fake["parameters"] == {"name": "qqqq"}
    assert kernel_addrs(pair["blue"], b) == set()


def test_bad_addresses_are_typed_errors_naming_the_field_and_change_nothing(
        broker: BrokerProcess, pair: dict[str, Any]) -> None:
    cred: ZoneCaller = pair["cred"]
    r = pair["r"]
    cases = [
        ("AddAddress", {"link": r, "address": "198.51.100.1"}, "address"),
        ("AddAddress", {"link": r, "address": "198.51.100.300/24"}, "address"),
        ("AddAddress", {"link": r, "address": "198.51.100.1/33"}, "address"),
        ("AddAddress", {"link": r, "address": "224.0.0.1/4"}, "address"),
        ("AddAddress", {"link": r, "address": "0.0.0.0/8"}, "address"),
        ("RemoveAddress", {"link": r, "address": "nope"}, "address"),
        ("AddRoute", {"destination": "198.51.100.1/24", "link": r}, "destination"),
        ("AddRoute", {"destination": "default", "gateway": "2001:db8::1", "link": r,
                      "metric": 1}, None),
        ("AddRoute", {"destination": "203.0.113.0/24", "gateway": "2001:db8::1"}, "gateway"),
        ("AddRoute", {"destination": "203.0.113.0/24", "gateway": "224.0.0.9"}, "gateway"),
    ]
    before = run("ip", "-n", pair["red"], "addr").stdout, kernel_routes(pair["red"])
    for method, params, field in cases:
        reply = cred.raw(method, **params)
        if field is None:  # well-formed (a v6 default over a link that is down): refused
            assert "error" in reply, reply
            continue
        assert reply["error"] == "io.linkbroker.InvalidAddress", (params, reply)
        assert reply["parameters"]["parameter"] == field, reply
        assert reply["parameters"]["reason"], reply
    reply = cred.raw("AddRoute", destination="203.0.113.0/24", link=r, metric=-1)
    assert reply == {"error": "org.varlink.service.InvalidParameter",
                     "parameters": {"parameter": "metric"}}
    assert (run("ip", "-n", pair["red"], "addr").stdout, kernel_routes(pair["red"])) == before
    with pytest.raises(InvalidAddress):
        cred.call("AddAddress", link=r, address="2001:db8::1/129")
    cred.call("AddAddress", link=r, address="2001:db8::1/64")
    with pytest.raises(AddressExists):
        cred.call("AddAddress", link=r, address="2001:db8::1/64")
    with pytest.raises(RouteNotFound):
        cred.call("RemoveRoute", destination="203.0.113.0/24", link=r)
    with pytest.raises(LinkNotFound):
        cred.call("ListAddresses", link="nosuch")


def test_persistent_addresses_and_routes_come_back_with_their_link(
        broker: BrokerProcess, netns: Any, names: Any, zone_caller: Any) -> None:
    ns = netns("pers")
    a, b = names.link("a"), names.link("b")
    with broker.client() as gz:
        gz.boot_zone("pers", netns=ns)
        zone = zone_caller(ns)
        zone.call("CreateLink", link={"name": a, "class": "veth", "peer": b, "up": True,
                                      "persistent": True})
        zone.call("SetLinkProperties", name=b, up=True)
        zone.call("AddAddress", link=a, address="198.51.100.1/24", persistent=True)
        zone.call("AddAddress", link=a, address="2001:db8::1/64", persistent=True)
        zone.call("AddAddress", link=a, address="198.51.100.5/24")  # temporary
        route = zone.call("AddRoute", destination="203.0.113.0/24", gateway="198.51.100.9",
                          link=a, metric=7, persistent=True)["route"]
        assert route == {"destination": "203.0.113.0/24", "family": "inet", "zone": "pers",
                         "persistent": True, "protocol": "static",
                         "gateway": "198.51.100.9", "link": a, "metric": 7}
        listed = zone.call("ListAddresses", link=a)["addresses"]
        assert {(x["address"], x["persistent"]) for x in listed if
                not x["address"].startswith("fe80")} == {
            ("198.51.100.1/24", True), ("2001:db8::1/64", True), ("198.51.100.5/24", False)}

        def configured() -> tuple[set[str], list[tuple[str, str, str, int]]]:
            routes = [(x["dst"], x.get("gateway", ""), x["dev"], x.get("metric", 0))
                      for x in kernel_routes(ns) if x.get("protocol") == "static"]
            return kernel_addrs(ns, a), routes

        persistent = ({"198.51.100.1/24", "2001:db8::1/64"},
                      [("203.0.113.0/24", "198.51.100.9", a, 7)])
        # The zone halts (its links leave the kernel) and boots again: they come back.
        gz.halt_zone("pers")
        assert a not in run("ip", "-n", ns, "link").stdout
        gz.boot_zone("pers", netns=ns)
        zone = zone_caller(ns)
        zone.call("SetLinkProperties", name=b, up=True)
        assert configured() == persistent
        # kill -9; the zone loses them behind the broker's back; the restart puts them back.
        broker.kill9()
        run("ip", "-n", ns, "addr", "flush", "dev", a)
        assert configured() == (set(), [])
        broker.start()
        assert configured() == persistent
        # RemoveAddress forgets it: the next boot leaves it out.
        zone = zone_caller(ns)
        zone.call("RemoveAddress", link=a, address="2001:db8::1/64")
        zone.call("RemoveRoute", destination="203.0.113.0/24", gateway="198.51.100.9",
                  link=a, metric=7)
        gz2 = broker.client()
        try:
            gz2.halt_zone("pers")
            gz2.boot_zone("pers", netns=ns)
            assert configured() == ({"198.51.100.1/24"}, [])
            # DeleteLink forgets the link's configuration with it.
            zone_caller(ns).call("DeleteLink", name=a)
            gz2.halt_zone("pers")
        finally:
            gz2.close()


_WATCH = """
import json, sys
from broker.client import Connection
conn = Connection(sys.argv[1], timeout=30)
params = {"addresses": True} if sys.argv[2] == "yes" else {}
for reply in conn.stream("io.linkbroker.Subscribe", params):
    print(json.dumps(reply["event"]), flush=True)
"""


def test_address_and_route_events_reach_only_their_zone_and_only_when_asked(
        broker: BrokerProcess, pair: dict[str, Any]) -> None:
    import threading
    import time

    from tests.conftest import ROOT

    watchers: dict[str, tuple[subprocess.Popen[str], list[dict[str, Any]]]] = {}
    for key, ns, flag in (("red", pair["red"], "yes"), ("red-plain", pair["red"], "no"),
                          ("blue", pair["blue"], "yes")):
        proc = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-c", _WATCH,
                                 broker.socket, flag], stdout=subprocess.PIPE, text=True,
                                cwd=ROOT, env={"PYTHONPATH": str(ROOT)})
        got: list[dict[str, Any]] = []
        out = proc.stdout
        assert out is not None
        threading.Thread(target=lambda o=out, g=got: g.extend(
            json.loads(x) for x in iter(o.readline, "")), daemon=True).start()
        watchers[key] = (proc, got)

    def wait(pred: Any) -> bool:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not pred():
            time.sleep(0.02)
        return bool(pred())

    try:
        cred, cblue, r, b = pair["cred"], pair["cblue"], pair["r"], pair["b"]
        # Subscriptions start asynchronously: a link event in each zone marks "subscribed".
        for caller, link in ((cred, r), (cblue, b)):
            for _ in range(100):
                caller.call("SetLinkProperties", name=link, mtu=1400)
                caller.call("SetLinkProperties", name=link, mtu=1500)
                if all(any(e["kind"] == "link_changed" for e in w[1])
                       for k, w in watchers.items() if k.startswith(
                           "red" if caller is cred else "blue")):
                    break
        cred.call("SetLinkProperties", name=r, up=True)
        cred.call("AddAddress", link=r, address="198.51.100.1/24")
        cred.call("AddRoute", destination="203.0.113.0/24", gateway="198.51.100.7")
        cred.call("RemoveRoute", destination="203.0.113.0/24", gateway="198.51.100.7")
        cred.call("RemoveAddress", link=r, address="198.51.100.1/24")
        cblue.call("SetLinkProperties", name=b, mtu=1400)  # blue's marker, after red's
        red = watchers["red"][1]
        assert wait(lambda: sum(e["kind"].startswith(("address", "route")) for e in red) == 4)
        kinds = [(e["kind"], e.get("address", {}).get("address")
                  or e.get("route", {}).get("destination")) for e in red
                 if e["kind"].startswith(("address", "route"))]
        assert kinds == [("address_added", "198.51.100.1/24"),
                         ("route_added", "203.0.113.0/24"),
                         ("route_removed", "203.0.113.0/24"),
                         ("address_removed", "198.51.100.1/24")]
        assert all(e["zone"] == "red" for e in red)
        assert next(e for e in red if e["kind"] == "address_added")["address"]["link"] == r
        blue = watchers["blue"][1]
        assert wait(lambda: sum(e["kind"] == "link_changed" for e in blue) >= 3)
        assert not [e for e in blue if e["zone"] != "blue" or not e["kind"].startswith("link")]
        plain = watchers["red-plain"][1]
        assert wait(lambda: any(e["kind"] == "link_changed" and e["link"]["state"] == "up"
                                for e in plain))
        assert all(e["kind"].startswith("link") for e in plain)  # never asked: never sent
    finally:
        for proc, _ in watchers.values():
            proc.kill()
            proc.wait(5)


def test_the_policy_revokes_addr_write_on_its_own(
        broker: BrokerProcess, tmp_path: Any, netns: Any, zone_caller: Any,
        names: Any) -> None:
    """addr.write is an authorization of its own: revoked, the zone reads but cannot write;
    a zone that lost only link.write still configures addresses (docs/protocol.md)."""
    from tests.test_policy_broker import start_with_policy

    start_with_policy(broker, tmp_path, '[[rule]]\nzone = "noaddr"\nrevoke = ["addr.write"]\n'
                      '[[rule]]\nzone = "nolinks"\nrevoke = ["link.write"]\n')
    callers = {}
    with broker.client() as gz:
        for zone in ("noaddr", "nolinks"):
            ns = netns(zone)
            gz.boot_zone(zone, netns=ns)
            link = names.link("v")
            gz.create_link(LinkSpec(name=link, class_="tap", zone=zone))
            callers[zone] = (zone_caller(ns), link)
    caller, link = callers["noaddr"]
    with pytest.raises(PermissionDenied) as err:
        caller.call("AddAddress", link=link, address="198.51.100.1/24")
    assert (err.value.method, err.value.authorization) == ("AddAddress", "addr.write")
    with pytest.raises(PermissionDenied):
        caller.call("AddRoute", destination="203.0.113.0/24", link=link)
    assert caller.call("ListAddresses", link=link) == {"addresses": []}
    caller, link = callers["nolinks"]
    with pytest.raises(PermissionDenied):
        caller.call("DeleteLink", name=link)
    assert caller.call("AddAddress", link=link, address="198.51.100.1/24")["address"][
        "address"] == "198.51.100.1/24"


def test_a_persistent_address_on_a_lent_link_comes_back_with_the_loan_only(
        broker: BrokerProcess, netns: Any, zone_caller: Any, names: Any) -> None:
    ns = netns("loan")
    tap = names.link("t")
    with broker.client() as gz:
        gz.boot_zone("loan", netns=ns)
        gz.create_link(LinkSpec(name=tap, class_="tap"))
        gz.assign_link(tap, "loan", persistent=True)
        zone_caller(ns).call("AddAddress", link=tap, address="198.51.100.4/24",
                             persistent=True)
        assert kernel_addrs(ns, tap) == {"198.51.100.4/24"}
        gz.halt_zone("loan")  # the tap goes home; the zone's address does not follow it
        assert gz.get_link(tap).zone == "global"
        assert "198.51.100.4" not in run("ip", "addr", "show", "dev", tap).stdout
        gz.boot_zone("loan", netns=ns)  # lent again, and its address with it
        assert gz.get_link(tap, "loan").onloan
        assert kernel_addrs(ns, tap) == {"198.51.100.4/24"}
        gz.halt_zone("loan")
        gz.delete_link(tap)


def test_removing_the_first_address_of_a_subnet_keeps_the_others(
        broker: BrokerProcess, pair: dict[str, Any]) -> None:
    """The kernel deletes a subnet's secondary IPv4 addresses along with its primary unless
    the link promotes them; RemoveAddress removes the one address it names (ipadm's
    delete-addr), so the broker turns promotion on first. Found by the isolation suite."""
    red, r = pair["red"], pair["r"]
    linkadm(red, broker, "create-addr", "-a", "198.51.100.2/24", r)  # the primary
    linkadm(red, broker, "create-addr", "-a", "198.51.100.1/24", r)  # a secondary
    linkadm(red, broker, "create-addr", "-a", "203.0.113.5/24", r)   # another subnet
    linkadm(red, broker, "delete-addr", "-a", "198.51.100.2/24", r)
    assert kernel_addrs(red, r) == {"198.51.100.1/24", "203.0.113.5/24"}
    shown = linkadm(red, broker, "show-addr", "-p", "-o", "address", r).stdout.split()
    assert sorted(shown) == ["198.51.100.1/24", "203.0.113.5/24"]
