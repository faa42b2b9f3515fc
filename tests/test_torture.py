"""Crash torture (issue 5): random writes while the broker is SIGKILLed at random moments.

After every kill the broker is restarted and the invariants checked:
- table and kernel agree in every booted zone (no kernel link the table lacks, no present
  table link the kernel lacks);
- no orphan was adopted: every link the test's global zone made (names starting with the run's
  prefix) still has owner `global` — an interrupted CreateLink's kernel link is removed at
  start, never taken over as some zone's own;
- no persistent link whose creation was answered is lost;
- IDs are never reused (they are opaque, so "never reused" is checked against every ID seen).

The short run is part of CI; the long one (at least 200 kills) is
`LINKBROKER_TORTURE_KILLS=200 python3 -m pytest -m slow tests/test_torture.py`.
"""

from __future__ import annotations

import json
import os
import random
import threading
import time
from typing import Any

import pytest

from broker.client import Client, LinkbrokerError, LinkSpec
from tests.conftest import BrokerProcess, run


def kernel_names(ns: str | None) -> set[str]:
    cmd = ["ip", "-j"] + ([] if ns is None else ["-n", ns]) + ["link", "show"]
    return {d["ifname"] for d in json.loads(run(*cmd).stdout)} - {"lo"}


def torture(broker: BrokerProcess, netns: Any, prefix: str, kills: int, seed: int) -> None:
    rng = random.Random(seed)
    zones = {"tora": netns("tora"), "torb": netns("torb")}
    with broker.client() as gz:
        for zone, ns in zones.items():
            gz.boot_zone(zone, netns=ns)
    counter = 0
    # id -> the names it may have: creations that were answered, with any rename in flight.
    persistent: dict[int, set[str]] = {}
    seen_ids: set[int] = set()
    deleted_ids: set[int] = set()
    in_flight: set[int] = set()

    def fresh() -> str:
        nonlocal counter
        counter += 1
        return f"{prefix}{counter}"[:15]

    def one_op(gz: Client) -> None:
        op = rng.choice(["veth", "bridge", "bridge", "delete", "rename", "set"])
        zone = rng.choice(list(zones))
        if op == "veth":
            made = gz.create_link(LinkSpec(name=fresh(), class_="veth", zone=zone,
                                           peer=fresh(), peer_zone=rng.choice(list(zones))))
        elif op == "bridge":
            keep = rng.random() < 0.3
            made = gz.create_link(LinkSpec(name=fresh(), class_="bridge", zone=zone,
                                           persistent=keep or None))
            if keep:
                persistent[made.id] = {made.name}
        else:
            mine = [link for link in gz.list_links(zone) if link.name.startswith(prefix)]
            if not mine:
                return
            target = rng.choice(mine)
            if op == "delete":
                # Until the reply arrives the delete may or may not have happened.
                in_flight.add(target.id)
                gz.delete_link(target.name, zone)
                in_flight.discard(target.id)
                deleted_ids.add(target.id)
                persistent.pop(target.id, None)
                return
            if op == "rename":
                new_name = fresh()
                if target.id in persistent:
                    persistent[target.id].add(new_name)
                made = gz.rename_link(target.name, new_name, zone)
                if made.id in persistent:
                    persistent[made.id] = {made.name}
            else:
                made = gz.set_link_properties(target.name, zone, mtu=rng.choice([1400, 1500]))
        seen_ids.add(made.id)

    for _ in range(kills):
        killer = threading.Timer(rng.uniform(0.02, 0.4), broker.kill9)
        killer.start()
        try:
            with Client(broker.socket, timeout=10) as gz:
                while True:
                    one_op(gz)
        except (LinkbrokerError, OSError):
            pass  # the broker died under us (or refused an op the dice made invalid)
        finally:
            killer.join()
        for link_id in in_flight:
            persistent.pop(link_id, None)
        in_flight.clear()
        broker.kill9()
        broker.start()
        with broker.client() as gz:
            table = gz.list_links()
            for zone, ns in zones.items():
                present = {link.name for link in table if link.zone == zone
                           and link.state != "absent"}
                assert present == kernel_names(ns), f"zone {zone}: table and kernel differ"
            ours = [link for link in table if link.name.startswith(prefix)]
            assert all(link.owner == "global" for link in ours), "an orphan was adopted"
            by_id = {link.id: link for link in table}
            for link_id, names in persistent.items():
                assert link_id in by_id and by_id[link_id].name in names, f"lost {names}"
            assert not deleted_ids & set(by_id), "a deleted link's ID came back"
            next_made = gz.create_link(LinkSpec(name=fresh(), class_="bridge", zone="tora"))
            assert next_made.id not in seen_ids | deleted_ids, "an ID was reused"
            seen_ids.add(next_made.id)
    # Halting deletes every link left, one kernel delete each (~16-40 ms): hundreds of them
    # take longer than the client's usual 30 s.
    with Client(broker.socket, timeout=600) as gz:
        for zone in zones:
            gz.halt_zone(zone)


def test_torture_short(broker: BrokerProcess, netns: Any, prefix: str) -> None:
    torture(broker, netns, f"{prefix}t", kills=int(os.environ.get("LINKBROKER_TORTURE_KILLS",
                                                                 "8")), seed=1)


@pytest.mark.slow
# 200 kills take ~4.5 minutes here, and halting the zones at the end one kernel delete per
# link left (~40 ms for a bridge) adds up to a minute: more than the suite's 300 s default.
@pytest.mark.timeout(900)
def test_torture_long(broker: BrokerProcess, netns: Any, prefix: str) -> None:
    kills = max(200, int(os.environ.get("LINKBROKER_TORTURE_KILLS", "200")))
    # 200 kills leave ~1,300 links: more than a zone's default limit of 1,024 (issue 12),
    # which is not what this test is about. A policy that lifts it, owned by root, 0600.
    policy = broker.workdir / "policy.toml"
    policy.write_text("[limits]\nlinks_per_zone = 100000\n")
    policy.chmod(0o600)
    broker.stop()
    broker.extra_args = ["--policy", str(policy)]
    broker.start()
    t0 = time.monotonic()
    torture(broker, netns, f"{prefix}T", kills=kills, seed=int(time.time()))
    print(f"torture: {kills} kills in {time.monotonic() - t0:.0f} s")
