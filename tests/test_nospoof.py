"""The `protection` link property against a real kernel (issue 13): frames a zone forges
never reach its peer, the host's nftables counters show them dropped, the rules go with the
link and come back after kill -9 and a restart that finds them gone.

The attacker is root in its zone's network namespace (`ip netns exec`: CAP_NET_ADMIN there),
which changes its own address and MAC as it likes; it cannot touch the host's namespace,
where the rules live.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from broker._errors import PermissionDenied, Unsupported
from broker._nospoof import ProtectionConfig, ruleset
from broker.client import LinkSpec
from tests.conftest import BrokerProcess, ZoneCaller, run

TABLE = ("netdev", "linkbroker")
PORT = 5555
_RECEIVE = f"""
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", {PORT}))
print("ready", flush=True)
while True:
    data, (src, _) = s.recvfrom(2048)
    print(data.decode(), src, flush=True)
"""
_SEND = f"""
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.sendto(sys.argv[2].encode(), (sys.argv[1], {PORT}))
"""


class Receiver:
    """A UDP listener in the peer zone: what actually arrived there, and from which source."""

    def __init__(self, ns: str) -> None:
        self.proc = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-c",
                                      _RECEIVE], stdout=subprocess.PIPE, text=True)
        out = self.proc.stdout
        assert out is not None and out.readline().strip() == "ready"
        self.got: list[tuple[str, str]] = []
        threading.Thread(target=lambda: self.got.extend(
            tuple(x.split()) for x in iter(out.readline, "")), daemon=True).start()  # type: ignore[misc]

    def arrived(self, payload: str, wait: float) -> str | None:
        """The source address `payload` arrived from, or None if it did not in `wait` s."""
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            for data, src in list(self.got):
                if data == payload:
                    return src
            time.sleep(0.02)
        return None

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait(5)


def send(ns: str, dest: str, payload: str) -> None:
    run("ip", "netns", "exec", ns, sys.executable, "-c", _SEND, dest, payload)


def counters(link_id: int) -> dict[str, int]:
    """Packets dropped per rule of the link's chain (keyed by what the rule matches)."""
    out = run("nft", "-j", "list", "chain", *TABLE, f"link{link_id}", check=False)
    if out.returncode != 0:
        return {}
    found: dict[str, int] = {}
    for item in json.loads(out.stdout)["nftables"]:
        rule = item.get("rule")
        if rule is None:
            continue
        packets = next(e["counter"]["packets"] for e in rule["expr"] if "counter" in e)
        found[rule["comment"]] = packets
    return found


def chain_exists(link_id: int) -> bool:
    return run("nft", "list", "chain", *TABLE, f"link{link_id}", check=False).returncode == 0


@pytest.fixture
def lab(broker: BrokerProcess, netns: Any, names: Any, zone_caller: Any
        ) -> Iterator[dict[str, Any]]:
    """Zones red and blue, each with a veth whose other end is a port of a host bridge."""
    red, blue = netns("red"), netns("blue")
    br, rz, rh, bz, bh = (names.link(x) for x in ("br", "rz", "rh", "bz", "bh"))
    with broker.client() as gz:
        gz.boot_zone("red", netns=red)
        gz.boot_zone("blue", netns=blue)
        gz.create_link(LinkSpec(name=br, class_="bridge", up=True))
        for zone, z, h in (("red", rz, rh), ("blue", bz, bh)):
            gz.create_link(LinkSpec(name=z, class_="veth", zone=zone, peer=h,
                                    peer_zone="global", up=True))
            gz.set_link_properties(h, master=br, up=True)
        red_link = gz.get_link(rz, "red")
    cred: ZoneCaller = zone_caller(red)
    cblue: ZoneCaller = zone_caller(blue)
    cred.call("AddAddress", link=rz, address="198.51.100.1/24")
    cblue.call("AddAddress", link=bz, address="198.51.100.2/24")
    receiver = Receiver(blue)
    try:
        yield {"red": red, "blue": blue, "rz": rz, "bz": bz, "br": br, "id": red_link.id,
               "mac": red_link.mac, "cred": cred, "receiver": receiver}
    finally:
        receiver.close()
        with broker.client() as gz:
            for name in (rz, bz, br):
                for link in gz.list_links():
                    if link.name == name:
                        gz.delete_link(name, link.zone)
    run("nft", "delete", "table", *TABLE, check=False)


def test_forged_addresses_and_macs_never_reach_the_peer(
        broker: BrokerProcess, lab: dict[str, Any]) -> None:
    red, rz, link_id, rx = lab["red"], lab["rz"], lab["id"], lab["receiver"]
    bz_mac = json.loads(run("ip", "-n", lab["blue"], "-j", "link", "show", lab["bz"]).stdout
                        )[0]["address"]
    # Red knows blue's MAC for good, so only the frames themselves decide (no ARP in between).
    run("ip", "-n", red, "neigh", "replace", "198.51.100.2", "lladdr", bz_mac, "dev", rz,
        "nud", "permanent")
    send(red, "198.51.100.2", "before")
    assert rx.arrived("before", 5) == "198.51.100.1"

    # A zone may read its protection but not set it: link.protect is the host's.
    with pytest.raises(PermissionDenied) as denied:
        lab["cred"].call("SetLinkProtection", name=rz, protection=[])
    assert denied.value.authorization == "link.protect"
    with broker.client() as gz:
        reply = gz.conn.call("io.linkbroker.SetLinkProtection", {
            "name": rz, "zone": "red", "protection": ["ip-nospoof", "mac-nospoof"],
            "allowed_ips": ["198.51.100.1/32"]})["protection"]
    assert reply == {"link": rz, "zone": "red", "protection": ["mac-nospoof", "ip-nospoof"],
                     "allowed_ips": ["198.51.100.1/32"], "mac": lab["mac"]}
    assert lab["cred"].call("GetLinkProtection", name=rz)["protection"] == reply
    send(red, "198.51.100.2", "allowed")
    assert rx.arrived("allowed", 5) == "198.51.100.1"
    assert counters(link_id) == {"mac": 0, "ip": 0, "arp": 0, "ip6": counters(link_id)["ip6"]}

    # ip-nospoof: the zone takes an address outside allowed_ips.
    run("ip", "-n", red, "addr", "del", "198.51.100.1/24", "dev", rz)
    run("ip", "-n", red, "addr", "add", "198.51.100.66/24", "dev", rz)
    run("ip", "-n", red, "neigh", "replace", "198.51.100.2", "lladdr", bz_mac, "dev", rz,
        "nud", "permanent")
    for i in range(3):
        send(red, "198.51.100.2", f"forged-ip-{i}")
    assert rx.arrived("forged-ip-2", 2) is None
    assert not [d for d, _ in rx.got if d.startswith("forged")]
    assert counters(link_id)["ip"] >= 3
    # Back on its allowed address, it is heard again: the path itself was never broken.
    run("ip", "-n", red, "addr", "del", "198.51.100.66/24", "dev", rz)
    run("ip", "-n", red, "addr", "add", "198.51.100.1/24", "dev", rz)
    run("ip", "-n", red, "neigh", "replace", "198.51.100.2", "lladdr", bz_mac, "dev", rz,
        "nud", "permanent")
    send(red, "198.51.100.2", "honest-again")
    assert rx.arrived("honest-again", 5) == "198.51.100.1"

    # mac-nospoof: the zone changes its MAC.
    run("ip", "-n", red, "link", "set", rz, "address", "02:00:5e:00:53:99")
    for i in range(3):
        send(red, "198.51.100.2", f"forged-mac-{i}")
    assert rx.arrived("forged-mac-2", 2) is None
    assert counters(link_id)["mac"] >= 3
    run("ip", "-n", red, "link", "set", rz, "address", lab["mac"])

    # kill -9, the host loses the table meanwhile: the restarted broker puts it back.
    broker.kill9()
    run("nft", "delete", "table", *TABLE)
    broker.start()
    assert chain_exists(link_id)
    run("ip", "-n", red, "link", "set", rz, "address", "02:00:5e:00:53:98")
    send(red, "198.51.100.2", "forged-after-restart")
    assert rx.arrived("forged-after-restart", 2) is None
    assert counters(link_id)["mac"] >= 1
    run("ip", "-n", red, "link", "set", rz, "address", lab["mac"])

    # The rules go with the link.
    with broker.client() as gz:
        gz.delete_link(rz, "red")
    deadline = time.monotonic() + 5
    while chain_exists(link_id) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not chain_exists(link_id)


def test_restricted_lets_only_ip_and_arp_through(broker: BrokerProcess,
                                                 lab: dict[str, Any]) -> None:
    red, rz, link_id = lab["red"], lab["rz"], lab["id"]
    linkadm = (sys.executable, "-m", "clients.linkadm", "--socket", broker.socket)
    run(*linkadm, "set-protection", "-z", "red", rz, "-P", "restricted")
    shown = run(*linkadm, "show-protection", "-z", "red", rz, "-p", "-o", "link,protection")
    assert shown.stdout == f"{rz}:restricted\n"
    # A raw frame of another EtherType (0x88b5, local experimental) from inside the zone.
    raw = ("import socket, sys\n"
           "s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)\n"
           "s.bind((sys.argv[1], 0))\n"
           "s.send(b'\\xff' * 6 + bytes(6) + b'\\x88\\xb5' + b'x' * 46)\n")
    for _ in range(3):
        run("ip", "netns", "exec", red, sys.executable, "-c", raw, rz)
    assert counters(link_id)["restricted"] >= 3
    send(red, "198.51.100.2", "ip-is-fine")
    assert lab["receiver"].arrived("ip-is-fine", 5) == "198.51.100.1"
    # Removing the property removes the chain.
    run(*linkadm, "set-protection", "-z", "red", rz, "-P", "none")
    assert not chain_exists(link_id)


def test_links_without_a_host_end_are_unsupported_and_bad_values_refused(
        broker: BrokerProcess, lab: dict[str, Any], names: Any) -> None:
    a, b = names.link("a"), names.link("b")
    with broker.client() as gz:
        gz.create_link(LinkSpec(name=a, class_="veth", zone="red", peer=b, peer_zone="blue"))
        try:
            with pytest.raises(Unsupported):
                gz.conn.call("io.linkbroker.SetLinkProtection",
                             {"name": a, "zone": "red", "protection": ["mac-nospoof"]})
            for bad, field in ((["nospoof"], "protection"),
                               (["ip-nospoof", "ip-nospoof"], "protection")):
                reply = gz.conn.call  # typed errors come back as exceptions
                with pytest.raises(Exception) as err:
                    reply("io.linkbroker.SetLinkProtection",
                          {"name": lab["rz"], "zone": "red", "protection": bad})
                assert getattr(err.value, "parameter", None) == field
            with pytest.raises(Exception) as err:
                gz.conn.call("io.linkbroker.SetLinkProtection",
                             {"name": lab["rz"], "zone": "red", "protection": ["ip-nospoof"],
                              "allowed_ips": ["198.51.100.1/24"]})
            assert getattr(err.value, "parameter", None) == "allowed_ips"
        finally:
            gz.delete_link(a, "red")
    assert not chain_exists(lab["id"])


def test_root_of_its_own_user_namespace_cannot_spoof_either(
        broker: BrokerProcess, lab: dict[str, Any], names: Any) -> None:
    """The issue's attacker exactly: a zone whose network namespace belongs to its own user
    namespace, where it is root with CAP_NET_ADMIN (and nothing in the host's)."""
    zone = subprocess.Popen(["unshare", "--user", "--map-root-user", "--net", "--fork",
                             "sleep", "600"], stdin=subprocess.DEVNULL)
    try:
        pid = zone.pid
        deadline = time.monotonic() + 5
        child = None
        while child is None and time.monotonic() < deadline:
            kids = run("pgrep", "-P", str(pid), check=False).stdout.split()
            child = int(kids[0]) if kids else None
            time.sleep(0.02)
        assert child is not None
        uz, uh = names.link("uz"), names.link("uh")
        with broker.client() as gz:
            gz.boot_zone("userns", pid=child, attach=False)
            gz.create_link(LinkSpec(name=uz, class_="veth", zone="userns", peer=uh,
                                    peer_zone="global", up=True))
            gz.set_link_properties(uh, master=lab["br"], up=True)
            # The global zone addresses the zone's link through the broker, too.
            gz.conn.call("io.linkbroker.AddAddress",
                         {"link": uz, "zone": "userns", "address": "198.51.100.7/24"})
            link_id = gz.get_link(uz, "userns").id
            gz.conn.call("io.linkbroker.SetLinkProtection", {
                "name": uz, "zone": "userns", "protection": ["ip-nospoof"],
                "allowed_ips": ["198.51.100.7/32"]})
        attacker = ("nsenter", "-t", str(child), "-U", "-n", "--preserve-credentials")
        ip = (*attacker, "ip")
        assert run(*attacker, "grep", "^CapEff", "/proc/self/status").stdout.split()[1] != (
            "0000000000000000")  # root with capabilities, in its own user namespace
        send_from = (*attacker, sys.executable, "-c", _SEND, "198.51.100.2")
        run(*send_from, "honest")
        assert lab["receiver"].arrived("honest", 5) == "198.51.100.7"
        run(*ip, "addr", "del", "198.51.100.7/24", "dev", uz)
        run(*ip, "addr", "add", "198.51.100.77/24", "dev", uz)
        for i in range(3):
            run(*send_from, f"forged-{i}")
        assert lab["receiver"].arrived("forged-2", 2) is None
        assert counters(link_id)["arp"] + counters(link_id)["ip"] >= 1
        with broker.client() as gz:
            gz.halt_zone("userns")
    finally:
        zone.kill()
        zone.wait(5)


def test_the_chain_follows_a_lent_link_home_and_back(broker: BrokerProcess,
                                                     lab: dict[str, Any]) -> None:
    rz, link_id = lab["rz"], lab["id"]
    with broker.client() as gz:
        gz.conn.call("io.linkbroker.SetLinkProtection",
                     {"name": rz, "zone": "red", "protection": ["restricted"]})
        assert chain_exists(link_id)
        gz.reclaim_link(rz, "red")  # home: the host's own link now, unfiltered

        def settled(want: bool) -> bool:
            deadline = time.monotonic() + 5
            while chain_exists(link_id) != want and time.monotonic() < deadline:
                time.sleep(0.05)
            return chain_exists(link_id) == want

        assert settled(False)
        gz.assign_link(rz, "red")  # lent again: protected again
        assert settled(True)


@pytest.mark.skipif(shutil.which("nft") is None, reason="nft is not installed")
def test_the_ruleset_is_valid_nftables() -> None:
    """nft --check needs CAP_NET_ADMIN: here, not in tests/unit."""
    cfgs = [ProtectionConfig(p, a, "02:00:5e:00:53:01") for p, a in (
        (["mac-nospoof", "ip-nospoof", "restricted"], ["198.51.100.0/28", "2001:db8::/64"]),
        (["ip-nospoof"], []), (["restricted"], []))]
    text = ruleset([(i, f"lbtdev{i}", cfg) for i, cfg in enumerate(cfgs)])
    done = subprocess.run(["nft", "--check", "-f", "-"], input=text, text=True,
                          capture_output=True, check=False)
    assert done.returncode == 0, done.stderr
