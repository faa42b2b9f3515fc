"""One zone's write held inside the kernel must not hold another zone's reads or writes.

rtnetlink does a request's work inside the sender's sendmsg() (a veth delete waits ~16 ms for
synchronize_net). These tests hold a write *inside* the netlink shell on purpose and check what
other zones can do meanwhile. Not timed: they check order (what finished before what).

- In-process, deterministic: the real broker objects, real namespaces and a real SQLite store;
  zone A's ZoneNetlink.exchange is wrapped so its RTM_DELLINK blocks on an event, as if the
  kernel took as long as the test likes. While it is held, zone B's reads answer and zone B's
  own write completes; zone A's link is still listed (a write shows when it commits).
- Through the real daemon: zone A deletes a real veth (the kernel's ~16 ms), and zone B's
  ListLinks, sent while that delete is in the kernel, is answered first.
"""

from __future__ import annotations

import asyncio
import json
import os
import select
import socket
import struct
import threading
import time
from pathlib import Path
from typing import Any

from broker import _create as creation
from broker import _lifecycle as lifecycle
from broker import _linkedit as linkedit
from broker._daemon import restore
from broker._names import GLOBAL_ZONE
from broker._params import BootZoneParams, CreateLinkParams, DeleteLinkParams, ListLinksParams
from broker._policy import AUTHORIZATIONS
from broker._rtnl import RTM_DELLINK
from broker._service import Broker, Caller
from broker._store import Store
from broker._types import LinkSpec
from broker._wire import encode_call
from tests.conftest import run
from zones.opener import open_zone

GLOBAL = Caller(zone=GLOBAL_ZONE, uid=0, gid=0, pid=os.getpid(),
                authorizations=frozenset(AUTHORIZATIONS))


def _names(reply: Any) -> set[str]:
    return {link["name"] for link in json.loads(bytes(reply))["links"]}


def test_held_kernel_write_does_not_hold_other_zones(tmp_path: Path, netns: Any,
                                                     names: Any) -> None:
    ns_a, ns_b = netns("wia"), netns("wib")
    va, vb, vc = names.link("a"), names.link("b"), names.link("c")

    async def scenario() -> None:
        store = Store(str(tmp_path / "state"))
        broker = Broker(store=store, socket_path=str(tmp_path / "unused.sock"))
        try:
            await restore(broker)
            for ns in (ns_a, ns_b):
                await lifecycle.boot_zone(broker, GLOBAL, BootZoneParams(name=ns, netns=ns),
                                          open_zone)
            for zone, name in ((ns_a, va), (ns_b, vb)):
                await creation.create_link(broker, GLOBAL, CreateLinkParams(link=LinkSpec(
                    name=name, class_="veth", zone=zone, peer=f"{name}p")))

            netlink = broker.runtimes[ns_a].netlink
            inside, release = threading.Event(), threading.Event()
            plain = netlink.exchange

            def held(build: Any, what: str) -> list[bytes]:
                if struct.unpack_from("=IH", build(0))[1] == RTM_DELLINK:
                    inside.set()
                    # Held as if the kernel took this long; let go after 30 s at most so a
                    # failing run ends.
                    release.wait(30)
                return plain(build, what)

            netlink.exchange = held  # type: ignore[method-assign]
            delete = asyncio.ensure_future(linkedit.delete_link(
                broker, GLOBAL, DeleteLinkParams(name=va, zone=ns_a)))
            loop = asyncio.get_running_loop()
            assert await loop.run_in_executor(None, inside.wait, 30), "the delete never ran"

            # Zone A's write is inside the kernel now. Zone B reads, and writes, meanwhile.
            listed = await broker.list_links(GLOBAL, ListLinksParams(zone=ns_b))
            assert _names(listed) == {vb, f"{vb}p"}
            assert not delete.done(), "zone B's read waited for zone A's delete"
            made = await creation.create_link(broker, GLOBAL, CreateLinkParams(link=LinkSpec(
                name=vc, class_="veth", zone=ns_b, peer=f"{vc}p")))
            assert made.link.name == vc and made.link.ifindex is not None
            # A's link is still there: the delete shows when it commits, in one step.
            in_a = await broker.list_links(GLOBAL, ListLinksParams(zone=ns_a))
            assert _names(in_a) == {va, f"{va}p"}
            assert not delete.done(), "zone A's delete finished while it was held"

            release.set()
            await asyncio.wait_for(delete, 30)
            gone = await broker.list_links(GLOBAL, ListLinksParams(zone=ns_a))
            assert _names(gone) == set()
            assert va not in run("ip", "-n", ns_a, "link", "show").stdout
        finally:
            broker.close()
            store.close()

    asyncio.run(scenario())


def test_read_answered_while_real_veth_delete_is_in_kernel(broker: Any, netns: Any,
                                                           names: Any, zone_caller: Any) -> None:
    ns_a, ns_b = netns("wra"), netns("wrb")
    with broker.client() as admin:
        admin.boot_zone(ns_a, netns=ns_a)
        admin.boot_zone(ns_b, netns=ns_b)
    calm = zone_caller(ns_b)
    calm.call("CreateLink", link={"name": names.link("q"), "class": "veth",
                                  "peer": names.link("r")})
    busy = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)  # global zone: deletes in A
    busy.settimeout(30)
    busy.connect(broker.socket)
    try:
        for _ in range(3):
            victim = names.link("v")
            with broker.client() as admin:
                admin.create_link(LinkSpec(name=victim, class_="veth", zone=ns_a,
                                           peer=names.link("w")))
            time.sleep(0.2)  # the zone monitor's resync of that create is over
            busy.sendall(encode_call("io.linkbroker.DeleteLink",
                                     {"name": victim, "zone": ns_a}))
            # Give the broker a moment to hand the delete to the kernel (it takes ~16 ms
            # there), then read from the other zone.
            time.sleep(0.002)
            listed = calm.call("ListLinks")
            assert len(listed["links"]) == 2
            ready, _, _ = select.select([busy], [], [], 0)
            assert not ready, "zone A's delete was answered before zone B's read"
            reply = busy.recv(1 << 16)
            assert reply.endswith(b"\0") and b'"error"' not in reply
    finally:
        busy.close()
