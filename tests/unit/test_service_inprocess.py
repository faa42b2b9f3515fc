"""The service driven in-process (issue 16): the handlers of broker._create, _lending,
_reconcile and _lifecycle against a kernel in memory (tests/unit/fake_kernel.py) and a real
SQLite file, no root, no namespaces. What the kernel-tier tests show on a real kernel is
checked here step by step, table, store and kernel after each: create, lend, reclaim,
reconcile, halt."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, cast

import msgspec

from broker import _create as creation
from broker import _lending as lending
from broker import _lifecycle as lifecycle
from broker import _linkedit as linkedit
from broker._errors import ZoneNotFound
from broker._params import (
    AssignLinkParams,
    CreateLinkParams,
    ListLinksParams,
    ReclaimLinkParams,
    SetLinkPropertiesParams,
)
from broker._policy import AUTHORIZATIONS
from broker._service import Broker, Caller, Runtime
from broker._store import Store
from broker._table import ZoneRecord
from broker._types import LinkSpec
from tests.unit.fake_kernel import FakeHandle, FakeKernel, FakeNetlink

GLOBAL = Caller(zone="global", uid=0, gid=0, pid=1, authorizations=frozenset(AUTHORIZATIONS))


class World:
    def __init__(self, tmp_path: Path) -> None:
        self.kernel = FakeKernel()
        self.store = Store(str(tmp_path / "state"))
        self.broker = Broker(store=self.store, socket_path=str(tmp_path / "unused.sock"))
        self.broker.links.ids = self.store.load().ids
        self.host = self.kernel.namespace()
        self.kernel.add(self.host.fd, "eth0", None)  # a NIC: no kernel kind, class phys

    async def attach(self, name: str, ns: FakeNetlink, kind: str) -> None:
        self.broker.zones.add(ZoneRecord(name=name, kind=kind,  # type: ignore[arg-type]
                                         netns_inode=ns.fd, netns=name))
        self.broker.runtimes[name] = Runtime(cast(Any, FakeHandle(ns.fd)), cast(Any, ns))
        self.broker.reconcile_zone(name, await ns.dump())

    def table(self, zone: str) -> dict[str, Any]:
        return {x.name: x for x in self.broker.links.in_zone(zone)}

    def stored(self) -> dict[int, Any]:
        return {x.id: x for x in self.store.load().links}


def run(body: Any) -> None:
    asyncio.run(body)


def test_create_lend_reclaim_reconcile_and_halt(tmp_path: Path) -> None:
    async def scenario() -> None:
        w = World(tmp_path)
        await w.attach("global", w.host, "global")
        assert w.table("global")["eth0"].cls == "phys"  # adopted from the kernel
        red = w.kernel.namespace()
        await w.attach("red", red, "netns")

        # create: one veth, one end in red, the other in the global zone, in one request.
        made = (await creation.create_link(w.broker, GLOBAL, CreateLinkParams(link=LinkSpec(
            name="v0", class_="veth", zone="red", peer="v0h", peer_zone="global")))).link
        assert (made.zone, made.owner, made.peer) == ("red", "global", "v0h")
        assert "v0" in w.kernel.names(red.fd) and "v0h" in w.kernel.names(w.host.fd)
        v0, v0h = w.table("red")["v0"], w.table("global")["v0h"]
        assert (v0.peer_id, v0h.peer_id) == (v0h.id, v0.id)
        assert {v0.id, v0h.id} <= set(w.stored())  # committed before the reply
        assert not w.store.load().intents

        # lend: a global veth end moves into red, on loan, and is read back there.
        await creation.create_link(w.broker, GLOBAL, CreateLinkParams(link=LinkSpec(
            name="l0", class_="veth", zone="global", peer="l0p")))
        lent = (await lending.assign_link(w.broker, GLOBAL, AssignLinkParams(
            name="l0", zone="red"))).link
        assert (lent.zone, lent.onloan) == ("red", True)
        assert "l0" in w.kernel.names(red.fd) and "l0" not in w.kernel.names(w.host.fd)
        assert w.stored()[lent.id].zone == "red"

        # reclaim: the kernel's facts still say it is the lent link: it goes home.
        home = (await lending.reclaim_link(w.broker, GLOBAL, ReclaimLinkParams(
            name="l0"))).link
        assert (home.zone, home.onloan) == ("global", False)
        assert "l0" in w.kernel.names(w.host.fd)

        # reconcile: what the zone made behind the broker's back is adopted as its own;
        # what vanished leaves the table and the store.
        w.kernel.add(red.fd, "mine0", "bridge")
        w.broker.reconcile_zone("red", await red.dump())
        mine = w.table("red")["mine0"]
        assert (mine.owner, mine.cls) == ("red", "bridge") and mine.id in w.stored()
        del red.links[mine.ifindex]
        w.broker.reconcile_zone("red", await red.dump())
        assert "mine0" not in w.table("red") and mine.id not in w.stored()

        # halt: what the global zone made or lent there comes home (v0 too: made by the
        # global zone in red, it is the global zone's), the zone's own links are deleted;
        # nothing of red is left in table or store.
        await lending.assign_link(w.broker, GLOBAL, AssignLinkParams(name="l0", zone="red"))
        w.kernel.add(red.fd, "own0", "bridge")
        w.broker.reconcile_zone("red", await red.dump())
        errors = await lifecycle.teardown_zone(w.broker, "red")
        assert errors == []
        assert w.kernel.names(red.fd) == set()
        assert w.kernel.names(w.host.fd) == {"eth0", "l0", "l0p", "v0", "v0h"}
        assert "own0" not in {x.name for x in w.broker.links}
        assert w.broker.zones.get("red") is None and "red" not in w.broker.runtimes
        assert all(x.zone != "red" for x in w.stored().values())
        assert not any(x.onloan for x in w.broker.links)
        assert w.table("global")["v0"].peer_id == w.table("global")["v0h"].id

    run(scenario())


def test_a_refused_create_leaves_table_store_and_kernel_as_they_were(tmp_path: Path) -> None:
    async def scenario() -> None:
        w = World(tmp_path)
        await w.attach("global", w.host, "global")
        red = w.kernel.namespace()
        await w.attach("red", red, "netns")
        w.kernel.add(red.fd, "taken", "bridge")  # in the kernel, not yet in the table
        before = (set(w.stored()), w.kernel.names(red.fd), set(w.table("red")))
        try:
            await creation.create_link(w.broker, GLOBAL, CreateLinkParams(link=LinkSpec(
                name="taken", class_="bridge", zone="red")))
        except Exception as exc:  # the kernel's EEXIST, as KernelError
            assert "exists" in str(exc)
        else:
            raise AssertionError("a name the kernel holds was created again")
        assert (set(w.stored()), w.kernel.names(red.fd), set(w.table("red"))) == before
        assert not w.store.load().intents  # the intent was withdrawn

    run(scenario())


def test_a_cached_list_links_reply_never_outlives_a_change(tmp_path: Path) -> None:
    """ListLinks replies are cached between writes (issue 19): every kind of change (a
    create, a property set, a link the zone made behind the broker's back, a zone halted)
    shows in the very next reply."""
    async def scenario() -> None:
        w = World(tmp_path)
        await w.attach("global", w.host, "global")
        red = w.kernel.namespace()
        await w.attach("red", red, "netns")
        red_caller = Caller(zone="red", uid=0, gid=0, pid=2,
                            authorizations=frozenset(AUTHORIZATIONS))

        async def listed(caller: Caller, zone: str | None = None) -> dict[str, Any]:
            raw = await w.broker.list_links(caller, ListLinksParams(zone=zone))
            return {x["name"]: x for x in msgspec.json.decode(raw)["links"]}

        assert await listed(red_caller) == {}
        assert await listed(red_caller) == {}  # a second read, from the cache
        await creation.create_link(w.broker, GLOBAL, CreateLinkParams(link=LinkSpec(
            name="c0", class_="bridge", zone="red")))
        assert set(await listed(red_caller)) == {"c0"}
        assert (await listed(red_caller))["c0"]["mtu"] == 1500
        await linkedit.set_link_properties(w.broker, GLOBAL, SetLinkPropertiesParams(
            name="c0", zone="red", mtu=1400))
        assert (await listed(red_caller))["c0"]["mtu"] == 1400
        w.kernel.add(red.fd, "own0", "bridge")
        w.broker.reconcile_zone("red", await red.dump())
        assert set(await listed(red_caller)) == {"c0", "own0"}
        assert set(await listed(GLOBAL, "red")) == {"c0", "own0"}
        assert await lifecycle.teardown_zone(w.broker, "red") == []
        try:
            await listed(GLOBAL, "red")
        except ZoneNotFound:
            pass
        else:
            raise AssertionError("a halted zone's links were still listed")

    run(scenario())
