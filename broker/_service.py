"""The broker's state and the read handlers; the writes live one module per concern.

`Broker` holds the tables, the store, the event bus and each booted zone's runtime (its
namespace handle, netlink socket and monitor), plus the helpers every handler shares: the zone
locks, views, publishing, the link limit. The read methods (WhoAmI, ListZones, GetZone,
ListLinks, GetLink) are here because they are a few lines each and never await. The write
handlers take the broker as their first argument, as broker._addresses does:

- broker._create      CreateLink, and persistent links re-created at boot (`make`)
- broker._linkedit    DeleteLink, RenameLink, SetLinkProperties
- broker._lending     AssignLink, ReclaimLink, lends checked against the kernel's facts
- broker._reconcile   the table made to agree with a zone's kernel
- broker._lifecycle   BootZone, HaltZone, the monitor's callbacks, a zone that dies

Every write follows one order: validate and resolve everything (nothing touched yet); write an
intent when kernel objects will be created; make the kernel change in as few netlink messages
as the kernel allows; read back what the kernel made; only then change the table, the store
(one transaction) and publish events. A failure before the commit leaves the table as it was
and deletes whatever the kernel had already made.

Locks are per zone (dlmgmtd's per-table locks): a write takes the locks of the zones it
touches, in name order, so writes in unrelated zones run concurrently and reads take none.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import msgspec

from broker import _addresses as addresses
from broker._errors import (
    InvalidParameter,
    LimitExceeded,
    LinkNotFound,
)
from broker._events import EventBus, Subscription
from broker._monitor import ZoneMonitor
from broker._names import GLOBAL_ZONE, home_zone
from broker._netlink import KernelLink, ZoneNetlink
from broker._params import Empty, GetLinkParams, GetZoneParams, ListLinksParams, SubscribeParams
from broker._policy import DEFAULT_POLICY, Policy
from broker._rules import (
    find_link_by,
    link_view,
    target_zone,
    visible_links,
    zone_view,
)
from broker._store import Store
from broker._table import LinkRecord, LinkTable, ZoneTable
from broker._types import (
    LINK_CLASSES,
    EventKind,
    Link,
    LinkReply,
    WhoAmIReply,
    ZoneReply,
    ZonesReply,
)
from broker.kinds import KINDS
from zones.handle import ZoneHandle

__all__ = ["Broker", "Caller", "Runtime"]

log = logging.getLogger("linkbroker")
_encode = msgspec.json.Encoder().encode

def snapshot(link: LinkRecord) -> LinkRecord:
    return LinkRecord(**{f: getattr(link, f) for f in LinkRecord.__slots__})


# Cached ListLinks replies kept at most (a global caller may ask zone by zone and class by
# class); past it the cache starts over.
_MAX_REPLIES = 1024


@dataclass(frozen=True, slots=True)
class Caller:
    zone: str
    uid: int
    gid: int
    pid: int
    authorizations: frozenset[str]


@dataclass(slots=True)
class Runtime:
    """A booted zone's open resources: its namespace fd and its netlink socket."""

    handle: ZoneHandle | None
    netlink: ZoneNetlink
    monitor: ZoneMonitor | None = None

    @property
    def netns_fd(self) -> int | None:
        return None if self.handle is None else self.handle.netns_fd

    def close(self) -> None:
        if self.monitor is not None:
            self.monitor.close()
        self.netlink.close()
        if self.handle is not None:
            self.handle.close()


@dataclass
class Broker:
    store: Store
    socket_path: str
    policy: Policy = DEFAULT_POLICY
    links: LinkTable = field(default_factory=LinkTable)
    zones: ZoneTable = field(default_factory=ZoneTable)
    events: EventBus = field(default_factory=EventBus)
    runtimes: dict[str, Runtime] = field(default_factory=dict)
    _locks: dict[str, asyncio.Lock] = field(default_factory=dict)
    # Encoded link views by (link ID, caller is global), valid for one table version and
    # until the next event: a read between two writes encodes nothing.
    _views: dict[tuple[int, bool], bytes] = field(default_factory=dict)
    _views_version: int = -1
    # Whole ListLinks replies by (caller's view, zone asked, class asked), valid as long as
    # the views are and the set of zones is the same: a zone polling its links between two
    # writes costs a dict lookup, not a splice of every link (issue 19's 8-client reads).
    _replies: dict[tuple[str, str | None, str | None], msgspec.Raw] = field(
        default_factory=dict)
    _replies_stamp: tuple[int, int] = (-1, -1)
    zone_admin: asyncio.Lock = field(default_factory=asyncio.Lock)
    # Kernel links a zone holds beyond its link limit, left out of the table (see adopt);
    # they count against the limit all the same.
    unadopted: dict[str, int] = field(default_factory=dict)
    beyond: dict[str, int] = field(default_factory=dict)  # of those, beyond the limit
    # Lent links whose ifindex left their zone (RTM_DELLINK): the lend is over, whatever the
    # zone makes next under that name and ifindex (issue 12, finding 8).
    lends_ended: set[int] = field(default_factory=set)
    # Links the broker is moving between namespaces right now (broker._lending): until the
    # move and the re-read of the namespace ids it changes are done, a lent link whose peer
    # or parent is one of them is not judged by those ids (a resync of its zone may run in
    # between, and would take the broker's own move for a forgery).
    moving: set[int] = field(default_factory=set)
    # Monitor passes since start: "dumped" re-read the zone, "answered" found everything
    # the notifications said already in the table (broker._lifecycle.resync; a metric).
    resyncs: dict[str, int] = field(default_factory=lambda: {"dumped": 0, "answered": 0})

    # ---- helpers ---------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def locked(self, *zones: str) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            for zone in sorted(set(zones)):
                await stack.enter_async_context(self._locks.setdefault(zone, asyncio.Lock()))
            yield

    def view(self, caller: str, link: LinkRecord) -> Link:
        return link_view(caller, link, self.links)

    def publish(self, kind: EventKind, link: LinkRecord, old_name: str | None = None,
                zone: str | None = None, zone_sees: LinkRecord | None = None) -> None:
        """Publish a change; `zone_sees` is what non-global subscribers are shown instead
        (a link leaving their zone, as it was while it was theirs)."""
        self._views.clear()  # every change to a link is published: cached views are stale
        self._replies.clear()
        copy = snapshot(link)
        theirs = copy if zone_sees is None else zone_sees
        self.events.publish(
            kind, zone or link.zone,
            lambda c: link_view(c, copy if c == GLOBAL_ZONE else theirs, self.links),
            old_name,
        )

    def runtime(self, zone: str) -> Runtime:
        return self.runtimes[zone]

    def refresh(self, link: LinkRecord, k: KernelLink,
                index: dict[int, LinkRecord] | None = None) -> None:
        """`index`: the zone's links by ifindex, when many links are refreshed at once."""
        link.ifindex, link.mac, link.mtu, link.up = k.ifindex, k.mac, k.mtu, k.up
        link.present = True
        if not link.onloan:
            link.lent_netnsid = None
        elif link.lent_netnsid is None:  # the read-back on arrival (checked before, after)
            link.lent_netnsid = k.link_netnsid
        master = None
        if k.master:
            master = (index.get(k.master) if index is not None
                      else self.links.by_ifindex(link.zone, k.master))
        link.master_id = master.id if master else None

    def reconcile_zone(self, zone: str, found: list[KernelLink]) -> None:
        """broker._reconcile.reconcile_zone: the one entry, so that the metrics can count
        the drift it publishes (broker._metrics wraps it). Imported here: broker._reconcile
        imports this module."""
        from broker._reconcile import reconcile_zone

        reconcile_zone(self, zone, found)

    # ---- read methods ----------------------------------------------------------------------

    async def who_am_i(self, caller: Caller, _: Empty) -> WhoAmIReply:
        return WhoAmIReply(zone=home_zone(caller.zone), uid=caller.uid, gid=caller.gid,
                           pid=caller.pid, authorizations=sorted(caller.authorizations))

    async def list_zones(self, caller: Caller, _: Empty) -> ZonesReply:
        if caller.zone == GLOBAL_ZONE:
            shown = sorted(self.zones, key=lambda z: (z.name != GLOBAL_ZONE, z.name))
        else:
            shown = [z for z in self.zones if z.name == home_zone(caller.zone)]
        return ZonesReply(zones=[zone_view(z, self.links) for z in shown])

    async def get_zone(self, caller: Caller, p: GetZoneParams) -> ZoneReply:
        zone = self.zones.get(target_zone(caller.zone, p.name, self.zones))
        assert zone is not None
        return ZoneReply(zone=zone_view(zone, self.links))

    async def list_links(self, caller: Caller, p: ListLinksParams) -> msgspec.Raw:
        """The reply is spliced from cached encoded views (LinksReply on the wire)."""
        if p.class_ is not None and p.class_ not in LINK_CLASSES:
            raise InvalidParameter("class")
        stamp = (self.links.version, self.zones.version)
        if self._replies_stamp != stamp or len(self._replies) >= _MAX_REPLIES:
            self._replies.clear()
            self._replies_stamp = stamp
        key = (caller.zone, p.zone, p.class_)
        reply = self._replies.get(key)
        if reply is not None:
            return reply
        found = visible_links(caller.zone, p.zone, p.class_, self.links, self.zones)
        if self._views_version != self.links.version:
            self._views.clear()
            self._views_version = self.links.version
        is_global = caller.zone == GLOBAL_ZONE
        views = self._views
        parts = []
        for link in found:
            data = views.get((link.id, is_global))
            if data is None:
                data = views[link.id, is_global] = _encode(self.view(caller.zone, link))
            parts.append(data)
        reply = self._replies[key] = msgspec.Raw(b'{"links":[' + b",".join(parts) + b"]}")
        return reply

    async def get_link(self, caller: Caller, p: GetLinkParams) -> LinkReply:
        link = find_link_by(caller.zone, p.name, p.zone, self.links, self.zones, link_id=p.id)
        return LinkReply(link=self.view(caller.zone, link))

    # ---- shared by the write handlers -------------------------------------------------------

    def resolve_in(self, caller: str, zone: str, name: str, *, global_too: bool) -> LinkRecord:
        """A link the caller names as a parent or master: in `zone`, else (global) in global."""
        link = self.links.find(zone, name)
        if link is None and global_too and caller == GLOBAL_ZONE:
            link = self.links.find(GLOBAL_ZONE, name)
        if link is None or not link.present:
            raise LinkNotFound(name)
        return link

    def check_limit(self, zone: str, adding: int, *, cls: str | None = None,
                    uplink: bool = False) -> None:
        """The zone's link limit (what it holds in the kernel beyond the table counts too),
        and its share of kernel objects every zone shares: ports on the host's bridges
        (`uplink`: one more) and host character devices (`cls`: a macvtap's /dev/tapN, the
        one class with `host_chardev`, so the policy's key and the error say macvtaps)."""
        limit = self.policy.links_allowed(zone)
        held = self.links.count(zone) + self.unadopted.get(zone, 0)
        if limit is not None and held + adding > limit:
            raise LimitExceeded(f"links in zone {zone}", limit)
        if zone == GLOBAL_ZONE:
            return
        if uplink:
            ports = self.policy.host_bridge_ports_per_zone
            if sum(1 for x in self.links.in_zone(GLOBAL_ZONE) if x.owner == zone) >= ports:
                raise LimitExceeded("ports on the host's bridges", ports)
        if cls is not None and KINDS[cls].host_chardev:
            taps = self.policy.macvtaps_per_zone
            if sum(1 for x in self.links.in_zone(zone) if KINDS[x.cls].host_chardev) >= taps:
                raise LimitExceeded("macvtaps", taps)

    def host_fd(self) -> int:
        handle = self.runtime(GLOBAL_ZONE).handle
        assert handle is not None, "the global runtime holds the host namespace fd"
        return handle.netns_fd

    def forget(self, gone: list[LinkRecord]) -> None:
        self.links.remove_many([rec.id for rec in gone])
        self.store.delete_links(rec.id for rec in gone)
        addresses.forget_links(self, [rec.id for rec in gone])
        for rec in gone:
            self.publish("link_removed", rec)

    def publish_zone(self, kind: EventKind, zone: str) -> None:
        self.events.publish(kind, zone)

    def random_global_name(self, stem: str) -> str:
        """A free global name that says nothing: not a count of anything (a counter-derived
        `lbu<N>` told every zone that made an uplink how many links the host had made)."""
        while True:
            candidate = stem + secrets.token_hex((15 - len(stem)) // 2)
            if not self.links.name_taken(GLOBAL_ZONE, candidate):
                return candidate

    def free_global_name(self, stem: str, n: int) -> str:
        while True:
            candidate = f"{stem}{n}"
            if not self.links.name_taken(GLOBAL_ZONE, candidate):
                return candidate
            n += 1

    # ---- events ----------------------------------------------------------------------------

    def subscribe(self, caller: Caller, p: SubscribeParams) -> Subscription:
        zone = None if p.zone is None else target_zone(caller.zone, p.zone, self.zones)
        return self.events.subscribe(caller.zone, zone, addresses=bool(p.addresses))

    # ---- shutdown --------------------------------------------------------------------------

    def close(self) -> None:
        self.events.close_all()
        for rt in self.runtimes.values():
            rt.close()
        self.runtimes.clear()

