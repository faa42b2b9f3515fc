"""Zones attaching to the global zone's bridges (`[bridges] attachable` in the policy, issue 6):
a veth whose peer end the broker puts on a host bridge, for the zones the policy lists only."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from broker.client import InvalidParameter, LinkNotFound, LinkSpec
from tests.conftest import BrokerProcess, ZoneCaller, run
from tests.test_policy_broker import start_with_policy

_UDP_ECHO = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], 7007))
print("ready", flush=True)
s.settimeout(20)
data, addr = s.recvfrom(100)
s.sendto(data.upper(), addr)
"""
_UDP_SEND = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(5)
for _ in range(10):
    s.sendto(b"hello", (sys.argv[1], 7007))
    try:
        print(s.recv(100).decode())
        break
    except TimeoutError:
        pass
"""


def kernel_link(name: str, ns: str | None = None) -> dict[str, Any] | None:
    cmd = ["ip", "-j", "-d"] + ([] if ns is None else ["-n", ns]) + ["link", "show"]
    for link in json.loads(run(*cmd).stdout):
        if link["ifname"] == name:
            found: dict[str, Any] = link
            return found
    return None


@pytest.fixture
def bridged(broker: BrokerProcess, tmp_path: Path, netns: Any, zone_caller: Any,
            names: Any) -> tuple[str, dict[str, tuple[str, ZoneCaller]]]:
    """A host bridge the zones `up1` and `up2` may attach to, and a zone `no` that may not."""
    bridge = names.link("br")
    start_with_policy(broker, tmp_path,
                      f'[bridges]\nattachable = {{ {bridge} = ["up1", "up2"] }}\n')
    zones: dict[str, tuple[str, ZoneCaller]] = {}
    with broker.client() as gz:
        gz.create_link(LinkSpec(name=bridge, class_="bridge", up=True))
        for zone in ("up1", "up2", "no"):
            ns = netns(zone)
            gz.boot_zone(zone, netns=ns)
            zones[zone] = (ns, zone_caller(ns))
    return bridge, zones


def test_a_listed_zone_plugs_into_the_host_bridge(
        broker: BrokerProcess, bridged: tuple[str, dict[str, tuple[str, ZoneCaller]]],
        names: Any) -> None:
    bridge, zones = bridged
    addr = {"up1": "198.51.100.11", "up2": "198.51.100.12"}
    made = {}
    for zone in ("up1", "up2"):
        ns, caller = zones[zone]
        name = names.link("u")
        if zone == "up1":
            link = caller.call("CreateLink", link={"name": name, "class": "veth", "up": True,
                                                   "uplink": bridge})["link"]
        else:  # the CLI, as a user in the zone would
            link = json.loads(run(
                "ip", "netns", "exec", ns, sys.executable, "-m", "clients.linkadm", "--socket",
                broker.socket, "create-link", name, "--class", "veth", "--uplink", bridge,
                "--up", "--json").stdout)
        # The zone sees its end only: no peer, no master, nothing of the host's names.
        assert (link["zone"], link["owner"], link["onloan"]) == (zone, zone, False)
        assert link.get("peer") is None and link.get("master") is None
        made[zone] = name
        run("ip", "-n", ns, "addr", "add", f"{addr[zone]}/24", "dev", name)
    with broker.client() as gz:
        ports = {link.peer: link for link in gz.list_links("global")
                 if link.master == bridge}
        assert set(ports) == set(made.values())
        for port in ports.values():
            assert port.owner in ("up1", "up2") and port.state == "up"
            kernel = kernel_link(port.name)
            assert kernel is not None and kernel["master"] == bridge
    # Traffic between the two zones crosses the host bridge.
    echo = subprocess.Popen(["ip", "netns", "exec", zones["up2"][0], sys.executable, "-c",
                             _UDP_ECHO, addr["up2"]], stdout=subprocess.PIPE, text=True)
    try:
        assert echo.stdout is not None and echo.stdout.readline().strip() == "ready"
        sent = run("ip", "netns", "exec", zones["up1"][0], sys.executable, "-c", _UDP_SEND,
                   addr["up2"])
        assert sent.stdout.strip() == "HELLO"
    finally:
        echo.kill()
        echo.wait(5)
    # Deleting the zone's end removes the host port with it.
    zones["up1"][1].call("DeleteLink", name=made["up1"])
    with broker.client() as gz:
        left = [link.peer for link in gz.list_links("global") if link.master == bridge]
        assert left == [made["up2"]]


def test_an_unlisted_zone_gets_the_answer_for_a_name_that_exists_nowhere(
        broker: BrokerProcess, bridged: tuple[str, dict[str, tuple[str, ZoneCaller]]],
        names: Any) -> None:
    bridge, zones = bridged
    _, no = zones["no"]
    nowhere = "x" * len(bridge)
    replies = []
    for target in (bridge, nowhere, "eth0"):
        reply = no.raw("CreateLink", link={"name": names.link("n"), "class": "veth",
                                           "uplink": target})
        replies.append(json.dumps(reply).replace(target, "NAME"))
    assert replies[0] == replies[1] == replies[2]
    assert json.loads(replies[0])["error"] == "io.linkbroker.LinkNotFound"
    assert no.call("ListLinks")["links"] == []
    # A listed zone may not name the host-side end itself: it cannot see the host's names.
    with pytest.raises(InvalidParameter) as err:
        zones["up1"][1].call("CreateLink", link={"name": names.link("p"), "class": "veth",
                                                 "peer": "eth0", "uplink": bridge})
    assert err.value.parameter == "link.peer"
    with broker.client() as gz:
        assert not [link for link in gz.list_links("global") if link.master == bridge]
        with pytest.raises(LinkNotFound):
            gz.create_link(LinkSpec(name=names.link("g"), class_="veth", zone="no",
                                    uplink="eth0"))


def test_a_persistent_uplink_comes_back_when_the_zone_boots_again(
        broker: BrokerProcess, bridged: tuple[str, dict[str, tuple[str, ZoneCaller]]],
        names: Any) -> None:
    bridge, zones = bridged
    ns, caller = zones["up1"]
    name = names.link("p")
    caller.call("CreateLink", link={"name": name, "class": "veth", "persistent": True,
                                    "uplink": bridge})
    with broker.client() as gz:
        gz.halt_zone("up1")
        # The zone's end and the host port are configuration now, both absent.
        absent = [link for link in gz.list_links() if link.owner == "up1"]
        assert {link.state for link in absent} == {"absent"} and len(absent) == 2
        assert not [k for k in json.loads(run("ip", "-j", "link", "show").stdout)
                    if k.get("master") == bridge]
        gz.boot_zone("up1", netns=ns)
        port = next(link for link in gz.list_links("global") if link.owner == "up1")
        assert port.master == bridge and port.state == "up" and port.peer == name
        kernel = kernel_link(port.name)
        assert kernel is not None and kernel["master"] == bridge
        assert kernel_link(name, ns) is not None


def test_a_persistent_veth_whose_peer_is_on_the_zones_own_bridge_comes_back_bridged(
        broker: BrokerProcess, bridged: tuple[str, dict[str, tuple[str, ZoneCaller]]],
        names: Any) -> None:
    """The peer's bridge is re-applied for a zone's own bridges too, with no policy needed."""
    _, zones = bridged
    ns, caller = zones["no"]  # a zone the policy lists nowhere
    br, a, b = names.link("zb"), names.link("za"), names.link("zp")
    caller.call("CreateLink", link={"name": br, "class": "bridge", "persistent": True})
    caller.call("CreateLink", link={"name": a, "class": "veth", "peer": b, "persistent": True})
    caller.call("SetLinkProperties", name=b, master=br)
    with broker.client() as gz:
        gz.halt_zone("no")
        gz.boot_zone("no", netns=ns)
    back = {link["name"]: link for link in caller.call("ListLinks")["links"]}
    assert back[b]["master"] == br and back[a].get("master") is None
    kernel = kernel_link(b, ns)
    assert kernel is not None and kernel["master"] == br
