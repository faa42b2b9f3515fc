"""The table stays true when someone works behind the broker's back (issue 5): links made,
renamed and deleted with `ip` inside a zone, and zones whose namespace dies."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from broker.client import Client, LinkNotFound, LinkSpec
from tests.conftest import BrokerProcess, ZoneCaller, run
from tests.test_metrics import scrape_unix, started, with_name


def eventually(pred: Callable[[], bool], timeout: float = 1.0) -> bool:
    """True if `pred` holds within `timeout` s (the issue's bound: within a second)."""
    deadline = time.monotonic() + timeout
    while True:
        if pred():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)


def names_in(gz: Client, zone: str) -> dict[str, int]:
    return {link.name: link.id for link in gz.list_links(zone)}


def test_links_made_behind_the_brokers_back(broker: BrokerProcess, netns: Any,
                                            names: Any) -> None:
    ns = netns("mon")
    a, b, c = names.link("a"), names.link("b"), names.link("c")
    with broker.client() as gz:
        gz.boot_zone("mon", netns=ns)
        run("ip", "-n", ns, "link", "add", a, "type", "veth", "peer", "name", b)
        assert eventually(lambda: {a, b} <= set(names_in(gz, "mon")))
        link = gz.get_link(a, "mon")
        assert link.owner == "mon" and link.class_ == "veth" and link.peer == b
        first_id = link.id
        run("ip", "-n", ns, "link", "set", a, "name", c)
        assert eventually(lambda: c in names_in(gz, "mon"))
        assert names_in(gz, "mon")[c] == first_id  # a rename keeps the link's ID
        run("ip", "-n", ns, "link", "set", c, "mtu", "1300", "up")
        assert eventually(lambda: gz.get_link(c, "mon").mtu == 1300)
        run("ip", "-n", ns, "link", "del", c)
        assert eventually(lambda: not {a, b, c} & set(names_in(gz, "mon")))


def test_process_zone_is_halted_when_its_process_exits(broker: BrokerProcess,
                                                       names: Any) -> None:
    proc = subprocess.Popen(["unshare", "--net", "sleep", "600"], stdin=subprocess.DEVNULL)
    try:
        # Synchronised on the kernel, not a sleep: booted before unshare() ran, the "zone"
        # would be the host's own namespace.
        host = os.stat("/proc/self/ns/net").st_ino
        assert eventually(lambda: os.stat(f"/proc/{proc.pid}/ns/net").st_ino != host, 10.0)
        with broker.client() as gz:
            gz.boot_zone("short", pid=proc.pid, attach=False)
            proc.kill()
            proc.wait(5)
            assert eventually(lambda: "short" not in {z.name for z in gz.list_zones()}, 2.0)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)


def test_netns_zone_is_halted_when_deleted(broker: BrokerProcess, netns: Any,
                                           names: Any) -> None:
    ns = netns("gone")
    host_end = names.link("h")
    host_had_eth0 = run("ip", "link", "show", "eth0", check=False).returncode == 0
    with broker.client() as gz:
        gz.boot_zone("gone", netns=ns)
        gz.create_link(LinkSpec(name=host_end, class_="veth", peer="eth0", peer_zone="gone"))
        run("ip", "netns", "del", ns)
        assert eventually(lambda: "gone" not in {z.name for z in gz.list_zones()}, 3.0)
        # The zone's end was lent (the global zone made it), so it came home; the host has
        # an eth0 of its own, so it came home under a fresh name.
        links = {link.name: link for link in gz.list_links("global")}
        peer = links[host_end].peer
        assert peer is not None and peer in links
        assert peer != "eth0" or not host_had_eth0
        gz.delete_link(host_end)
        with pytest.raises(LinkNotFound):
            gz.get_link(host_end)


def test_the_brokers_own_writes_cost_no_dump_and_outside_changes_still_land(
        tmp_path: Path, netns: Any, names: Any) -> None:
    """Issue 19: the monitor hears the creates and deletes a zone makes through the broker,
    and the resync finds in those messages nothing the table lacks, so it answers them
    without a dump (linkbroker_resyncs_total{outcome="answered"}); a change made with `ip`
    right after, in the same zone, still needs and gets a dump, and lands."""
    ns = netns("own")
    made = [names.link(f"o{i}") for i in range(6)]
    metrics = str(tmp_path / "metrics.sock")

    def resyncs() -> dict[str, float]:
        got = with_name(scrape_unix(metrics), "linkbroker_resyncs_total")
        return {dict(labels)["outcome"]: v for labels, v in got.items()}

    with started(tmp_path, "--metrics", f"unix:{metrics}") as broker:
        with broker.client() as gz:
            gz.boot_zone("own", netns=ns)
        zone = ZoneCaller(ns, broker.socket)
        try:
            for name in made:
                zone.call("CreateLink", link={"name": name, "class": "veth",
                                              "peer": name + "p"})
            zone.call("DeleteLink", name=made[0])
            assert eventually(lambda: resyncs()["answered"] >= 1, 3.0)
            quiet = resyncs()
            assert quiet["dumped"] == 0, quiet  # none of the zone's own writes needed one
            run("ip", "-n", ns, "link", "set", made[1], "mtu", "1280")
            with broker.client() as gz:
                assert eventually(lambda: gz.get_link(made[1], "own").mtu == 1280)
            assert resyncs()["dumped"] >= 1
        finally:
            zone.close()
