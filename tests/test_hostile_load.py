"""Issue 12, finding 5: a zone's work is bounded. A default link limit that links made behind
the broker's back count against; bursts of such links cost a handful of dumps, not one per
link; a halting zone's deletes do not hold the global zone's lock; a zone's share of the
kernel objects everyone shares (ports on host bridges, macvtaps) is bounded.

Timing is never asserted here (bench/_hostile.py measures); the order of events is.
"""

from __future__ import annotations

import re
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from broker._policy import DEFAULT_LINKS_PER_ZONE
from broker.client import LimitExceeded, LinkSpec
from tests.conftest import PREFIX, BrokerProcess, ZoneCaller, run
from tests.test_monitor import eventually
from tests.test_policy_broker import start_with_policy


def batch(ns: str, lines: list[str]) -> None:
    """`ip -batch` inside the zone: how a zone's root makes links fast, behind the broker."""
    subprocess.run(["ip", "-n", ns, "-batch", "-"], input="\n".join(lines) + "\n",
                   text=True, check=True, capture_output=True, timeout=300)


def reconciles(broker: BrokerProcess, zone: str) -> list[tuple[int, int]]:
    """(kernel links, beyond the limit) of each reconciliation of `zone` the log shows."""
    return [(int(m[1]), int(m[2])) for m in re.finditer(
        rf"zone {zone} reconciled: (\d+) kernel links, .*?(\d+) beyond the limit",
        broker.log())]


def test_default_limit_counts_links_made_behind_the_brokers_back(
        broker: BrokerProcess, netns: Any, zone_caller: Any) -> None:
    """A zone makes more bridges than the default limit with `ip`, in one burst: the broker
    adopts up to the limit, counts the rest, refuses CreateLink, and needed only a few dumps."""
    ns = netns("burst")
    with broker.client() as gz:
        gz.boot_zone("burst", netns=ns)
    total = DEFAULT_LINKS_PER_ZONE + 40
    batch(ns, [f"link add {PREFIX}b{i} type bridge" for i in range(total)])
    zone: ZoneCaller = zone_caller(ns)

    def settled() -> bool:
        seen = reconciles(broker, "burst")
        return bool(seen) and seen[-1] == (total + 1, total - DEFAULT_LINKS_PER_ZONE)

    assert eventually(settled, 60.0)
    # Adopted over a few passes of at most 128 links (each pass a short stay on the loop).
    assert eventually(lambda: len(zone.call("ListLinks")["links"]) == DEFAULT_LINKS_PER_ZONE,
                      30.0)
    with pytest.raises(LimitExceeded) as refused:
        zone.call("CreateLink", link={"name": f"{PREFIX}x", "class": "bridge"})
    assert refused.value.limit == DEFAULT_LINKS_PER_ZONE
    assert "beyond its limit" in broker.log()
    # One burst of 1,064 RTM_NEWLINK messages: a handful of coalesced resyncs (the boot's
    # own reconciliation is the first line), the 8 adoption passes among them.
    time.sleep(1.0)
    bursts = len(reconciles(broker, "burst")) - 1
    print(f"\n{total} links in one burst: {bursts} resyncs")
    assert DEFAULT_LINKS_PER_ZONE // 128 <= bursts <= 30
    # Deleting behind the broker's back makes room again, and the remaining links are adopted.
    batch(ns, [f"link del {PREFIX}b{i}" for i in range(100)])
    assert eventually(lambda: len(zone.call("ListLinks")["links"]) == total - 100, 30.0)
    zone.call("CreateLink", link={"name": f"{PREFIX}x", "class": "bridge"})


def test_a_policy_limit_counts_unadopted_links(broker: BrokerProcess, tmp_path: Path,
                                               netns: Any, zone_caller: Any) -> None:
    start_with_policy(broker, tmp_path, "[limits.zones]\nsmall = 4\n")
    ns = netns("small")
    with broker.client() as gz:
        gz.boot_zone("small", netns=ns)
        batch(ns, [f"link add {PREFIX}s{i} type bridge" for i in range(10)])
        assert eventually(lambda: reconciles(broker, "small")[-1] == (11, 6), 10.0)
        shown = [link.name for link in gz.list_links("small")]
        assert shown == [f"{PREFIX}s{i}" for i in range(4)]  # oldest first
    zone: ZoneCaller = zone_caller(ns)
    with pytest.raises(LimitExceeded):
        zone.call("CreateLink", link={"name": f"{PREFIX}y", "class": "bridge"})
    batch(ns, [f"link del {PREFIX}s{i}" for i in range(7)])  # 3 left, all adopted
    assert eventually(lambda: len(zone.call("ListLinks")["links"]) == 3, 10.0)
    zone.call("CreateLink", link={"name": f"{PREFIX}y", "class": "bridge"})


def test_shared_kernel_objects_are_bounded_per_zone(broker: BrokerProcess, tmp_path: Path,
                                                    netns: Any, zone_caller: Any,
                                                    names: Any) -> None:
    bridge = names.link("br")
    start_with_policy(broker, tmp_path,
                      "[limits]\nhost_bridge_ports_per_zone = 2\nmacvtaps_per_zone = 1\n"
                      f'[bridges]\nattachable = {{ {bridge} = ["*"] }}\n')
    ns = netns("share")
    with broker.client() as gz:
        gz.create_link(LinkSpec(name=bridge, class_="bridge", up=True))
        gz.boot_zone("share", netns=ns)
        zone: ZoneCaller = zone_caller(ns)
        for i in range(2):
            zone.call("CreateLink", link={"name": f"{PREFIX}u{i}", "class": "veth",
                                          "uplink": bridge})
        with pytest.raises(LimitExceeded) as ports:
            zone.call("CreateLink", link={"name": f"{PREFIX}u2", "class": "veth",
                                          "uplink": bridge})
        assert (ports.value.what, ports.value.limit) == ("ports on the host's bridges", 2)
        assert len([x for x in gz.list_links("global") if x.master == bridge]) == 2
        zone.call("CreateLink", link={"name": f"{PREFIX}t0", "class": "macvtap",
                                      "parent": f"{PREFIX}u0"})
        with pytest.raises(LimitExceeded) as taps:
            zone.call("CreateLink", link={"name": f"{PREFIX}t1", "class": "macvtap",
                                          "parent": f"{PREFIX}u1"})
        assert (taps.value.what, taps.value.limit) == ("macvtaps", 1)
        assert run("ip", "-n", ns, "link", "show", f"{PREFIX}t1",
                   check=False).returncode != 0  # nothing was made
        gz.halt_zone("share")
        assert not [x for x in gz.list_links("global") if x.master == bridge]
        gz.delete_link(bridge)


def test_halting_a_big_zone_does_not_hold_the_global_zone(broker: BrokerProcess,
                                                          netns: Any, names: Any) -> None:
    """300 veth pairs (each delete waits ~16 ms in the kernel) take seconds to delete; the
    global zone's writes go on meanwhile instead of queueing behind the whole halt."""
    ns = netns("big")
    with broker.client() as gz:
        gz.boot_zone("big", netns=ns)
        batch(ns, [f"link add {PREFIX}v{i} type veth peer name {PREFIX}w{i}"
                   for i in range(300)])
        assert eventually(lambda: len(gz.list_links("big")) == 600, 30.0)
    done: dict[str, float] = {}
    global_bridge = names.link("g")

    def halt() -> None:
        with broker.client() as c:
            c.halt_zone("big")
        done["halt"] = time.monotonic()

    halting = threading.Thread(target=halt)
    halting.start()
    try:
        time.sleep(0.3)  # the halt is under way, deleting
        with broker.client() as gz:
            gz.create_link(LinkSpec(name=global_bridge, class_="bridge"))
            done["global write"] = time.monotonic()
            assert "halt" not in done, "the halt was over before the global write was tried"
    finally:
        halting.join(120)
    with broker.client() as gz:
        gz.delete_link(global_bridge)
        assert "big" not in {z.name for z in gz.list_zones()}
    assert done["global write"] < done["halt"]
    print(f"\nthe global write finished {done['halt'] - done['global write']:.2f} s "
          "before the halt")
