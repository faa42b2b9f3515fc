"""The broker's handlers: decide with the pure rules, act on the kernel, then commit.

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
import errno
import logging
import os
import re
import secrets
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import msgspec

from broker import _addresses as addresses
from broker._errors import (
    HaltIncomplete,
    InvalidName,
    InvalidParameter,
    KernelError,
    LimitExceeded,
    LinkbrokerError,
    LinkExists,
    LinkNotFound,
    PermissionDenied,
    Unsupported,
    ZoneExists,
    ZoneNotFound,
)
from broker._events import EventBus, Subscription
from broker._monitor import ZoneMonitor
from broker._names import GLOBAL_ZONE, home_zone, validate_link_name, validate_zone_name
from broker._netlink import KernelLink, ZoneNetlink
from broker._policy import DEFAULT_POLICY, Policy
from broker._rules import (
    check_may_change,
    find_link,
    link_view,
    target_zone,
    visible_links,
    zone_view,
)
from broker._store import Intent, Store
from broker._table import LinkRecord, LinkTable, ZoneRecord, ZoneTable
from broker._types import (
    LINK_CLASSES,
    AssignLinkParams,
    BootZoneParams,
    CreateLinkParams,
    DeleteLinkParams,
    Empty,
    EventKind,
    GetLinkParams,
    GetZoneParams,
    HaltZoneParams,
    Link,
    LinkReply,
    LinkSpec,
    ListLinksParams,
    ReclaimLinkParams,
    RenameLinkParams,
    SetLinkPropertiesParams,
    SubscribeParams,
    WhoAmIReply,
    ZoneReply,
    ZonesReply,
)
from broker.kinds import KINDS, Resolved, classify
from broker.kinds._base import check_mac
from zones.handle import NETNS_DIR, ZoneGone, ZoneHandle, host_netns_inode

__all__ = ["Broker", "Caller", "Runtime"]

log = logging.getLogger("linkbroker")
_encode = msgspec.json.Encoder().encode
# BootZone's cni_container: a CNI container ID as the spec allows them.
_CNI_CONTAINER = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,255}")

def _same_link_class(link: LinkRecord, k: KernelLink) -> bool:
    """Whether a table row and a kernel link may be the same link. A row stored as phys
    before kinds without a module became `other` (issue 14) is corrected in place, ID kept."""
    cls = classify(k.kind, k.tun_tap)
    if link.cls == "phys" and cls == "other":
        link.cls, link.kind = "other", k.kind
        return True
    return cls in (link.cls, "phys")


def _snapshot(link: LinkRecord) -> LinkRecord:
    return LinkRecord(**{f: getattr(link, f) for f in LinkRecord.__slots__})


# Links a watched zone adopts per reconciliation pass (see reconcile_zone).
_ADOPT_PER_PASS = 128

# Classes the kernel will not move between namespaces (NETIF_F_NETNS_LOCAL).
NETNS_LOCAL = frozenset({"bridge"})
# Classes other links join as ports through `master` (a bond's ports: dladm's aggr links).
MASTER_CLASSES = frozenset({"bridge", "bond"})


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
    _zone_admin: asyncio.Lock = field(default_factory=asyncio.Lock)
    # Kernel links a zone holds beyond its link limit, left out of the table (see adopt);
    # they count against the limit all the same.
    unadopted: dict[str, int] = field(default_factory=dict)
    _beyond: dict[str, int] = field(default_factory=dict)  # of those, beyond the limit
    # Lent links whose ifindex left their zone (RTM_DELLINK): the lend is over, whatever the
    # zone makes next under that name and ifindex (issue 12, finding 8).
    _lends_ended: set[int] = field(default_factory=set)

    # ---- helpers ---------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _locked(self, *zones: str) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            for zone in sorted(set(zones)):
                await stack.enter_async_context(self._locks.setdefault(zone, asyncio.Lock()))
            yield

    def _view(self, caller: str, link: LinkRecord) -> Link:
        return link_view(caller, link, self.links)

    def _publish(self, kind: EventKind, link: LinkRecord, old_name: str | None = None,
                 zone: str | None = None, zone_sees: LinkRecord | None = None) -> None:
        """Publish a change; `zone_sees` is what non-global subscribers are shown instead
        (a link leaving their zone, as it was while it was theirs)."""
        self._views.clear()  # every change to a link is published: cached views are stale
        snapshot = _snapshot(link)
        theirs = snapshot if zone_sees is None else zone_sees
        self.events.publish(
            kind, zone or link.zone,
            lambda c: link_view(c, snapshot if c == GLOBAL_ZONE else theirs, self.links),
            old_name,
        )

    def _runtime(self, zone: str) -> Runtime:
        return self.runtimes[zone]

    def record_from_kernel(self, zone: str, owner: str, k: KernelLink,
                           link_id: int) -> LinkRecord:
        cls = classify(k.kind, k.tun_tap)
        return LinkRecord(
            id=link_id, name=k.name, cls=cls, zone=zone, owner=owner,
            ifindex=k.ifindex, mac=k.mac, mtu=k.mtu, up=k.up, mode=k.mode, vni=k.vni,
            remote=k.remote, local=k.local, port=k.port,
            kind=k.kind if cls == "other" else None,
        )

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

    def adopt(self, zone: str, found: list[KernelLink], room: int | None = None
              ) -> tuple[list[LinkRecord], list[LinkRecord]]:
        """Take kernel links the table lacks into it: owner the zone, class from the kind;
        at most `room` of them (the zone's link limit), oldest (lowest ifindex) first. The
        rest stay out of the table: the caller counts them against the limit.
        Returns (adopted, links already in the table that now name one of them as peer).
        O(n) in the links found."""
        if room == 0:
            return [], []  # a zone at its limit: not even a sort of what it holds
        new = sorted((k for k in found
                      if k.name != "lo" and not self.links.name_taken(zone, k.name)),
                     key=lambda k: k.ifindex)
        if room is not None:
            new = new[:max(room, 0)]
        pairs = [(self.record_from_kernel(zone, zone, k, self.links.allocate_id()), k)
                 for k in new]
        for link, _ in pairs:
            self.links.add(link)
        index = self.links.ifindexes(zone)
        touched: list[LinkRecord] = []
        for link, k in pairs:
            self.refresh(link, k, index)
            # Peer and parent within the same namespace (link_netnsid absent) can be named.
            if k.link and k.link_netnsid is None:
                other = index.get(k.link)
                if other is not None and link.cls == "veth":
                    link.peer_id, other.peer_id = other.id, link.id
                    touched.append(other)
                elif other is not None:
                    link.parent_id = other.id
        return [link for link, _ in pairs], touched

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
                data = views[link.id, is_global] = _encode(self._view(caller.zone, link))
            parts.append(data)
        return msgspec.Raw(b'{"links":[' + b",".join(parts) + b"]}")

    async def get_link(self, caller: Caller, p: GetLinkParams) -> LinkReply:
        link = find_link(caller.zone, p.name, p.zone, self.links, self.zones)
        return LinkReply(link=self._view(caller.zone, link))

    # ---- link writes -----------------------------------------------------------------------

    def _resolve_in(self, caller: str, zone: str, name: str, *, global_too: bool) -> LinkRecord:
        """A link the caller names as a parent or master: in `zone`, else (global) in global."""
        link = self.links.find(zone, name)
        if link is None and global_too and caller == GLOBAL_ZONE:
            link = self.links.find(GLOBAL_ZONE, name)
        if link is None or not link.present:
            raise LinkNotFound(name)
        return link

    def _check_limit(self, zone: str, adding: int, *, cls: str | None = None,
                     uplink: bool = False) -> None:
        """The zone's link limit (what it holds in the kernel beyond the table counts too),
        and its share of kernel objects every zone shares: ports on the host's bridges
        (`uplink`: one more) and macvtaps (`cls`)."""
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
        if cls == "macvtap":
            taps = self.policy.macvtaps_per_zone
            if sum(1 for x in self.links.in_zone(zone) if x.cls == "macvtap") >= taps:
                raise LimitExceeded("macvtaps", taps)

    async def create_link(self, caller: Caller, p: CreateLinkParams) -> LinkReply:
        spec = p.link
        kind = KINDS[spec.class_]
        kind.validate(spec)
        validate_link_name(spec.name)
        if spec.peer is not None:
            validate_link_name(spec.peer)
        zone = target_zone(caller.zone, spec.zone, self.zones)
        # zone_policy: the global zone asks to be held to the policy `zone` itself would face.
        asker = zone if spec.zone_policy and caller.zone == GLOBAL_ZONE else caller.zone
        if spec.uplink is None:
            peer_zone = target_zone(caller.zone, spec.peer_zone or zone, self.zones)
        elif spec.peer is not None and caller.zone != GLOBAL_ZONE:
            # A zone cannot see the global zone's names, so it cannot pick one there.
            raise InvalidParameter("link.peer")
        else:
            peer_zone = GLOBAL_ZONE
            # Refused before any lock: a zone's probe of the host's bridges must not queue
            # behind (or time) the global zone's writes.
            self._attachable_bridge(asker, spec.uplink)
        async with self._locked(zone, peer_zone):
            uplink = None
            if spec.uplink is not None:
                uplink = self._attachable_bridge(asker, spec.uplink)  # still there?
                if spec.peer is None:
                    spec = msgspec.structs.replace(spec, peer=self._random_global_name("lbu"))
            if spec.parent is not None and asker != caller.zone:
                self._check_zone_parent(asker, spec.parent)
            for z, name in ((zone, spec.name), (peer_zone, spec.peer)):
                if name is not None and self.links.name_taken(z, name):
                    raise LinkExists(name)
            if spec.peer is not None and zone == peer_zone and spec.peer == spec.name:
                raise LinkExists(spec.peer)
            self._check_limit(zone, 1 if peer_zone != zone or spec.peer is None else 2,
                              cls=spec.class_, uplink=uplink is not None)
            if peer_zone != zone and uplink is None:
                # An uplink's port counts against the zone that asked, not the host.
                self._check_limit(peer_zone, 1)
            try:
                link = await self._make(caller.zone, spec, zone, peer_zone,
                                        peer_master=uplink)
            except KernelError as exc:
                if uplink is None or spec.peer is None or caller.zone == GLOBAL_ZONE:
                    raise
                # The host end's name is the host's business, not the zone's.
                raise KernelError(exc.errno, exc.message.replace(
                    spec.peer, "the uplink's host end")) from None
            return LinkReply(link=self._view(caller.zone, link))

    def _check_zone_parent(self, zone: str, name: str) -> None:
        """Under zone_policy, a parent in the global zone must be one the policy hands to
        zones: a phys link listed in [assign] phys, or a bridge `zone` may attach to. A
        macvlan (passthru above all) over anything else would take another's traffic."""
        if self.links.find(zone, name) is not None:
            return  # the zone's own link
        parent = self.links.find(GLOBAL_ZONE, name)
        if parent is None:
            raise LinkNotFound(name)
        if not ((parent.cls == "phys" and self.policy.phys_assignable(name))
                or (parent.cls == "bridge" and self.policy.bridge_attachable(name, zone))):
            raise PermissionDenied("CreateLink", "link.assign")

    def _attachable_bridge(self, caller: str, name: str) -> LinkRecord:
        """A global bridge the caller may put a port on. Anything else is LinkNotFound, the
        answer for a name that exists nowhere: a zone learns nothing of the host's links."""
        bridge = self.links.find(GLOBAL_ZONE, name)
        if (bridge is None or bridge.cls != "bridge" or not bridge.present
                or not self.policy.bridge_attachable(name, caller)):
            raise LinkNotFound(name)
        return bridge

    async def _make(self, owner: str, spec: LinkSpec, zone: str, peer_zone: str,
                    ids: tuple[int, int | None] | None = None, *,
                    peer_master: LinkRecord | None = None) -> LinkRecord:
        """Make a validated spec in the kernel and the table; the zone locks are held.
        `ids` re-uses the IDs of a persistent link being re-created; `peer_master` is the
        bridge (in `peer_zone`) the peer end becomes a port of, up, as an uplink."""
        kind = KINDS[spec.class_]
        parent = master = None
        if spec.parent is not None:
            parent = self._resolve_in(owner, zone, spec.parent, global_too=True)
        if spec.master is not None:
            master = self._resolve_in(owner, zone, spec.master, global_too=False)
            if master.cls not in MASTER_CLASSES:
                raise InvalidParameter("link.master")
        resolved = Resolved(
            parent_ifindex=parent.ifindex if parent else None,
            master_ifindex=master.ifindex if master else None,
        )
        request = kind.request(spec, resolved)
        attrs = request.attrs
        if spec.mtu is not None:
            attrs["mtu"] = spec.mtu
        if spec.mac is not None:
            attrs["address"] = spec.mac
        if spec.up:
            attrs["state"] = "up"
        if master is not None:
            attrs["master"] = master.ifindex
        if spec.peer is not None:
            attrs["peer"] = dict(attrs["peer"])
            if spec.mtu is not None:
                attrs["peer"]["mtu"] = spec.mtu
            if peer_zone != zone:
                attrs["peer"]["net_ns_fd"] = self._runtime(peer_zone).netns_fd
                if attrs["peer"]["net_ns_fd"] is None:  # the peer goes to the host
                    attrs["peer"]["net_ns_fd"] = self._host_fd()
        # Where the message goes: to the parent's zone when the parent lives elsewhere
        # (the kernel places the new link straight into `zone`), else to `zone` itself.
        sender = self._runtime(parent.zone if parent and parent.zone != zone else zone)
        target_fd = None
        if parent is not None and parent.zone != zone:
            target_fd = self._runtime(zone).netns_fd
            if target_fd is None:
                target_fd = self._host_fd()

        if ids is None:
            link_id = self.links.allocate_id()
            peer_id = self.links.allocate_id() if spec.peer is not None else None
        else:
            link_id, peer_id = ids
        planned = [(zone, spec.name)] + ([(peer_zone, spec.peer)] if spec.peer else [])
        with self.store.transaction():
            self.store.set_next_seq(self.links.ids.next_seq)
            self.store.put_intent(Intent(link_id, planned))

        # One worker job: the RTM_NEWLINK (its echo is the read-back of the new link) and
        # the peer's read-back in its own namespace (to learn its ifindex and MAC).
        try:
            made, peer_made = await sender.netlink.create(
                spec.name, request, spec.class_, target_fd,
                made_in=self._runtime(zone).netlink if target_fd is not None else None,
                peer=(self._runtime(peer_zone).netlink, spec.peer) if spec.peer else None)
        except BaseException:
            # Refused, or undone on the worker: nothing of it is left in the kernel.
            with contextlib.suppress(LinkbrokerError, OSError):
                self.store.delete_intent(link_id)
            raise
        try:
            if request.ioctl_tap and (spec.mtu or spec.mac or spec.up or master):
                props = {k: v for k, v in attrs.items()
                         if k in ("mtu", "address", "master", "state")}
                made = await self._runtime(zone).netlink.set(
                    made.ifindex, f"configure {spec.name}", read_back=True, **props) or made
            if peer_made is not None and peer_master is not None:
                # The kernel ignores IFLA_MASTER inside the veth peer info: a second step.
                peer_made = await self._runtime(peer_zone).netlink.set(
                    peer_made.ifindex, f"attach {spec.peer} to bridge {peer_master.name}",
                    read_back=True, master=peer_master.ifindex, state=True) or peer_made
        except BaseException:
            await self._undo_create(zone, spec.name)
            with contextlib.suppress(LinkbrokerError, OSError):
                self.store.delete_intent(link_id)
            raise

        link = self.record_from_kernel(zone, owner, made, link_id)
        link.cls = spec.class_
        for name in ("mode", "vni", "remote", "local", "vid", "protocol", "miimon", "ttl"):
            if getattr(link, name) is None:  # not decoded from the kernel's reply: as asked
                setattr(link, name, getattr(spec, name))
        link.persistent = bool(spec.persistent)
        link.parent_id = parent.id if parent else None
        link.master_id = master.id if master else None
        if owner == GLOBAL_ZONE and zone != GLOBAL_ZONE:
            link.home_name = spec.name
        added = [link]
        if peer_made is not None and peer_id is not None:
            peer = self.record_from_kernel(peer_zone, owner, peer_made, peer_id)
            peer.persistent = link.persistent
            peer.peer_id, link.peer_id = link.id, peer.id
            peer.master_id = peer_master.id if peer_master else None
            if owner == GLOBAL_ZONE and peer_zone != GLOBAL_ZONE:
                peer.home_name = spec.peer
            added.append(peer)
        for rec in added:
            self.links.add(rec)
        with self.store.transaction():
            self.store.put_links(added)
            self.store.delete_intent(link_id)
        for rec in added:
            self._publish("link_added", rec)
        return link

    async def recreate_persistent(self, zone: str) -> list[str]:
        """Bring back the zone's absent persistent links, with their IDs (dlmgmtd's
        persistent configuration). A veth comes back when both its zones are booted."""
        plans: list[tuple[list[LinkRecord], LinkSpec, int | None]] = []
        seen: set[int] = set()
        # Specs first, for all of them: taking a record out of the table unlinks whatever
        # names it as master or peer.
        for link in sorted(self.links.in_zone(zone), key=self.links.order):
            if link.present or not link.persistent or link.id in seen:
                continue
            peer = self.links.get(link.peer_id)
            if peer is not None and (peer.present or peer.zone not in self.runtimes):
                continue
            parent = self.links.get(link.parent_id)
            master = self.links.get(link.master_id)
            plans.append(([link] + ([peer] if peer else []), LinkSpec(
                name=link.name, class_=link.cls,  # type: ignore[arg-type]
                zone=link.zone, persistent=True, mtu=link.mtu, mac=link.mac,
                up=link.up or None, peer=peer.name if peer else None,
                peer_zone=peer.zone if peer else None,
                parent=parent.name if parent else None, mode=link.mode, vni=link.vni,
                remote=link.remote, local=link.local, port=link.port,
                master=master.name if master else None, vid=link.vid,
                protocol=link.protocol, miimon=link.miimon, ttl=link.ttl,
            ), peer.master_id if peer else None))
            seen.update(rec.id for rec in plans[-1][0])
        errors: list[str] = []
        for saved, spec, uplink_id in plans:
            link, peer = saved[0], (saved[1] if len(saved) > 1 else None)
            # The peer's bridge by ID, now: it may have been re-created by an earlier plan.
            uplink = self.links.get(uplink_id)
            if uplink is not None and not uplink.present:
                uplink = None  # its bridge is not back: the peer comes back unbridged
            if uplink is not None and uplink.zone != link.owner and not (
                    self.policy.bridge_attachable(uplink.name, link.owner)):
                errors.append(f"link {link.name}: zone {link.owner} may no longer attach to "
                              f"bridge {uplink.name}")
                continue
            for rec in saved:
                self.links.remove(rec.id)
            try:
                async with self._locked(*(rec.zone for rec in saved)):
                    await self._make(link.owner, spec, link.zone,
                                     peer.zone if peer else link.zone,
                                     (link.id, peer.id if peer else None), peer_master=uplink)
            except (LinkbrokerError, OSError) as exc:
                errors.append(f"link {link.name}: {exc}")
                for rec in saved:
                    self.links.add(rec)
        return errors + await addresses.restore_configs(self, zone)

    async def relend(self, zone: str) -> list[str]:
        """Lend again the global zone's links persistently assigned to `zone`."""
        errors: list[str] = []
        for link in sorted(self.links.in_zone(GLOBAL_ZONE), key=self.links.order):
            if link.assigned_to != zone or not link.present:
                continue
            async with self._locked(GLOBAL_ZONE, zone):
                if self.links.name_taken(zone, link.name):
                    errors.append(f"link {link.name}: the zone has a link of that name")
                    continue
                try:
                    await self._lend(link, zone)
                except (LinkbrokerError, OSError) as exc:
                    errors.append(f"link {link.name}: {exc}")
        return errors + await addresses.restore_configs(self, zone)

    def _host_fd(self) -> int:
        handle = self._runtime(GLOBAL_ZONE).handle
        assert handle is not None, "the global runtime holds the host namespace fd"
        return handle.netns_fd

    async def _undo_create(self, zone: str, name: str) -> None:
        with contextlib.suppress(LinkbrokerError):
            found = await self._runtime(zone).netlink.get(name)
            if found is not None:
                await self._runtime(zone).netlink.delete(found.ifindex)

    async def delete_link(self, caller: Caller, p: DeleteLinkParams) -> Empty:
        """Both the active link and its configuration; `temporary`: the active link only
        (a persistent link stays, absent); `persistent`: the configuration only (an active
        link stays, temporary; an absent one is gone)."""
        if p.temporary and p.persistent:
            raise InvalidParameter("persistent")
        link = find_link(caller.zone, p.name, p.zone, self.links, self.zones)
        check_may_change(caller.zone, link, lent_ok=False)
        if p.persistent and not link.persistent:
            raise InvalidParameter("persistent")  # it has no configuration to remove
        peer = self.links.get(link.peer_id)
        zones = [link.zone] + ([peer.zone] if peer else [])
        async with self._locked(*zones):
            if self.links.get(link.id) is not link:  # deleted while we waited
                raise LinkNotFound(p.name)
            if p.persistent:
                self._unconfigure([link] + ([peer] if peer else []))
                return Empty()
            if p.temporary and link.persistent and not link.present:
                raise KernelError(errno.ENODEV, f"link {link.name} is absent from the kernel")
            if link.present and link.ifindex is not None and link.zone in self.runtimes:
                await self._runtime(link.zone).netlink.delete(link.ifindex)
            gone = [link] + ([peer] if peer else [])
            gone += await self._vanished_children(link)
            kept = [rec for rec in gone if p.temporary and rec.persistent]
            for rec in kept:
                rec.present, rec.ifindex = False, None
            self.store.put_links(kept)
            self._forget([rec for rec in gone if rec not in kept])
            for rec in kept:
                self._publish("link_changed", rec)
            return Empty()

    def _unconfigure(self, saved: list[LinkRecord]) -> None:
        """Take links out of the persistent configuration: active ones stay as temporary
        links, absent ones (nothing but configuration) are gone."""
        for rec in saved:
            rec.persistent = False
        self.store.put_links([rec for rec in saved if rec.present])
        self._forget([rec for rec in saved if not rec.present])
        for rec in saved:
            if rec.present:
                self._publish("link_changed", rec)

    async def _vanished_children(self, link: LinkRecord) -> list[LinkRecord]:
        """Links the kernel removed along with `link` (macvlans over it)."""
        gone = []
        for other in self.links:
            if other.parent_id == link.id and other.present and other.ifindex is not None:
                rt = self.runtimes.get(other.zone)
                if rt is None or await rt.netlink.get_index(other.ifindex) is None:
                    gone.append(other)
        return gone

    def _forget(self, gone: list[LinkRecord]) -> None:
        self.links.remove_many([rec.id for rec in gone])
        self.store.delete_links(rec.id for rec in gone)
        addresses.forget_links(self, [rec.id for rec in gone])
        for rec in gone:
            self._publish("link_removed", rec)

    async def rename_link(self, caller: Caller, p: RenameLinkParams) -> LinkReply:
        validate_link_name(p.new_name)
        link = find_link(caller.zone, p.name, p.zone, self.links, self.zones)
        check_may_change(caller.zone, link, lent_ok=False)
        async with self._locked(link.zone):
            if self.links.get(link.id) is not link:
                raise LinkNotFound(p.name)
            if p.new_name == link.name:
                return LinkReply(link=self._view(caller.zone, link))
            if self.links.name_taken(link.zone, p.new_name):
                raise LinkExists(p.new_name)
            old = link.name
            if link.present and link.ifindex is not None:
                await self._runtime(link.zone).netlink.set(
                    link.ifindex, f"rename {old} to {p.new_name}", ifname=p.new_name)
            self.links.place(link, link.zone, p.new_name)
            if link.home_name is not None and link.zone == GLOBAL_ZONE:
                link.home_name = None
            self.store.put_links([link])
            self._publish("link_renamed", link, old_name=old)
            return LinkReply(link=self._view(caller.zone, link))

    async def set_link_properties(self, caller: Caller, p: SetLinkPropertiesParams) -> LinkReply:
        link = find_link(caller.zone, p.name, p.zone, self.links, self.zones)
        owner_only = p.mac is not None or p.master is not None
        check_may_change(caller.zone, link, lent_ok=not owner_only)
        if p.mtu is not None and not 68 <= p.mtu <= 65535:
            raise InvalidParameter("mtu")
        if p.mac is not None:
            check_mac(p.mac, "mac")
        async with self._locked(link.zone):
            if self.links.get(link.id) is not link:
                raise LinkNotFound(p.name)
            master: LinkRecord | None = None
            if p.master:
                master = self.links.find(link.zone, p.master)
                if master is None:
                    raise LinkNotFound(p.master)
                if master.cls not in MASTER_CLASSES or master is link:
                    raise InvalidParameter("master")
            attrs: dict[str, object] = {}
            if p.mtu is not None:
                attrs["mtu"] = p.mtu
            if p.mac is not None:
                attrs["address"] = p.mac
            if p.up is not None:
                attrs["state"] = p.up
            if p.master is not None:
                attrs["master"] = master.ifindex if master else 0
            if not attrs:
                return LinkReply(link=self._view(caller.zone, link))
            if not link.present or link.ifindex is None:
                raise KernelError(errno.ENODEV, f"link {link.name} is absent from the kernel")
            rt = self._runtime(link.zone)
            now = await rt.netlink.set(link.ifindex, f"set properties of {link.name}",
                                       read_back=True, **attrs)
            if now is not None:
                self.refresh(link, now)
            self.store.put_links([link])
            self._publish("link_changed", link)
            return LinkReply(link=self._view(caller.zone, link))

    # ---- lending ---------------------------------------------------------------------------

    async def assign_link(self, caller: Caller, p: AssignLinkParams) -> LinkReply:
        link = find_link(caller.zone, p.name, GLOBAL_ZONE, self.links, self.zones)
        if p.zone == GLOBAL_ZONE:
            raise InvalidParameter("zone")
        zone = target_zone(caller.zone, p.zone, self.zones)
        if link.cls in NETNS_LOCAL:
            raise Unsupported(f"assigning a {link.cls}: the kernel cannot move it between zones")
        if link.cls == "other":
            # A kernel kind the broker does not know: never lent, least of all as phys.
            raise Unsupported(f"assigning a link of kernel kind {link.kind or 'unknown'}")
        if link.cls == "phys" and not self.policy.phys_assignable(link.name):
            raise PermissionDenied("AssignLink", "link.assign")
        async with self._locked(GLOBAL_ZONE, zone):
            if self.links.get(link.id) is not link or link.zone != GLOBAL_ZONE:
                raise LinkNotFound(p.name)
            if self.links.name_taken(zone, link.name):
                raise LinkExists(link.name)
            self._check_limit(zone, 1)
            await self._lend(link, zone, persistent=bool(p.persistent))
            return LinkReply(link=self._view(caller.zone, link))

    async def _lend(self, link: LinkRecord, zone: str, *, persistent: bool | None = None
                    ) -> None:
        """Move a global link into `zone` on loan, remembering its home name. `persistent`
        sets or clears the standing assignment; None keeps it as it is."""
        await self._move(link, zone, link.name)
        self._lends_ended.discard(link.id)  # a DELLINK from an earlier lend ended that one
        await self._relearn_netnsids(link)
        link.home_name = link.home_name or link.name
        if persistent is not None:
            link.assigned_to = zone if persistent else None
        self.store.put_links([link])
        self._publish("link_assigned", link)
        addresses.link_moved(self, link)

    async def _bring_home(self, link: LinkRecord, home: str) -> None:
        """Move a lent link back into the global zone as `home`."""
        zone = link.zone
        as_lent = _snapshot(link)  # what the zone saw: never the host's name or ifindex
        await self._move(link, GLOBAL_ZONE, home)
        link.home_name = None
        self.store.put_links([link])
        self._publish("link_reclaimed", link, zone=zone, zone_sees=as_lent)
        addresses.link_moved(self, link)
        await self._relearn_netnsids(link)

    async def _move(self, link: LinkRecord, zone: str, name: str) -> None:
        """The kernel moves the link (and it is read back where it arrived, in the same
        worker job); then the table changes in one step, with no await in between, so no
        read sees the link half-moved."""
        arrived = None
        if link.present and link.ifindex is not None:
            target_fd = self._runtime(zone).netns_fd
            if target_fd is None:
                target_fd = self._host_fd()
            arrived = await self._runtime(link.zone).netlink.move(
                link.ifindex, target_fd, name, f"move {link.name} to zone {zone}",
                read_back_in=self._runtime(zone).netlink)
        for other in self.links:  # a bridge's ports stay behind, a port leaves its bridge
            if other.master_id == link.id:
                other.master_id = None
        link.master_id = None
        self.links.place(link, zone, name)
        if arrived is not None:
            self.refresh(link, arrived)

    async def reclaim_link(self, caller: Caller, p: ReclaimLinkParams) -> LinkReply:
        if p.zone is not None:
            candidates = [find_link(caller.zone, p.name, p.zone, self.links, self.zones)]
        else:
            candidates = [x for x in self.links if x.onloan and x.name == p.name]
        candidates = [x for x in candidates if x.onloan]
        if not candidates:
            raise LinkNotFound(p.name)
        if len(candidates) > 1:
            raise InvalidParameter("zone")
        link = candidates[0]
        zone = link.zone
        async with self._locked(GLOBAL_ZONE, zone):
            if self.links.get(link.id) is not link or not link.onloan:
                raise LinkNotFound(p.name)
            home = link.home_name or link.name
            if self.links.name_taken(GLOBAL_ZONE, home):
                raise LinkExists(home)
            if not await self._lend_intact(link):
                # The zone deleted the lent link and made its own in its place: that one
                # never goes to the host. The lend is over; the table learns it now.
                self._lends_ended.add(link.id)
                with contextlib.suppress(LinkbrokerError):
                    self.reconcile_zone(zone, await self._runtime(zone).netlink.dump())
                raise LinkNotFound(p.name)
            standing, link.assigned_to = link.assigned_to, None  # no longer lent on boot
            try:
                await self._bring_home(link, home)
            except BaseException:
                link.assigned_to = standing  # the move failed: nothing changed
                raise
            return LinkReply(link=self._view(caller.zone, link))

    # ---- zones -----------------------------------------------------------------------------

    async def boot_zone(self, caller: Caller, p: BootZoneParams,
                        opener: Callable[[BootZoneParams], tuple[str, ZoneHandle, str | None]]
                        ) -> ZoneReply:
        validate_zone_name(p.name)
        given = [n for n in ("netns", "pid", "container") if getattr(p, n) is not None]
        if len(given) != 1:
            raise InvalidParameter(given[1] if given else "netns")
        if p.cni_container is not None and not _CNI_CONTAINER.fullmatch(p.cni_container):
            raise InvalidParameter("cni_container")
        async with self._zone_admin:
            if self.zones.get(p.name) is not None:
                raise ZoneExists(p.name)
            try:
                kind, handle, container = await asyncio.to_thread(opener, p)
            except ZoneGone as exc:
                raise KernelError(errno.ENOENT, str(exc)) from None
            try:
                other = self.zones.by_inode(handle.netns_inode)
                if other is not None or handle.netns_inode == host_netns_inode():
                    raise ZoneExists(other.name if other else GLOBAL_ZONE)
                zone = ZoneRecord(
                    name=p.name, kind=kind, netns_inode=handle.netns_inode,  # type: ignore[arg-type]
                    netns=p.netns, pid=handle.pid, pid_start=handle.pid_start,
                    container=container, root=handle.root, cni_container=p.cni_container,
                )
                await self.start_zone(zone, handle, attach=p.attach is not False)
            except BaseException:
                if p.name not in self.runtimes:
                    handle.close()
                raise
            self._publish_zone("zone_booted", zone.name)
            return ZoneReply(zone=zone_view(zone, self.links))

    async def start_zone(self, zone: ZoneRecord, handle: ZoneHandle | None, *,
                         attach: bool) -> None:
        """Open the zone's netlink socket, adopt its links, attach the socket, record it."""
        netlink = await ZoneNetlink.opened(handle.netns_fd if handle else None)
        try:
            found = await netlink.dump()
        except BaseException:
            netlink.close()
            raise
        self.runtimes[zone.name] = Runtime(handle, netlink)
        self.zones.add(zone)
        self.reconcile_zone(zone.name, found)
        for error in await self.recreate_persistent(zone.name):
            log.warning("zone %s: persistent link not re-created: %s", zone.name, error)
        for error in await self.relend(zone.name):
            log.warning("zone %s: persistent assignment not restored: %s", zone.name, error)
        self.watch(zone)
        if attach and zone.pid is not None:
            zone.attached = await self.attach(zone)
        if zone.name != GLOBAL_ZONE:
            self.store.put_zone(zone)

    def watch(self, zone: ZoneRecord) -> None:
        """Start the zone's monitor: its links, and the life of its namespace."""
        rt = self.runtimes[zone.name]
        rt.monitor = ZoneMonitor(zone.name, rt.netns_fd, self.resync, self.zone_gone,
                                 self._links_deleted)
        if zone.pid is not None:
            rt.monitor.watch_pid(zone.pid)
        elif zone.kind == "netns" and zone.netns is not None:
            path = f"{NETNS_DIR}/{zone.netns}"

            def still_there() -> bool:
                try:
                    return os.stat(path).st_ino == zone.netns_inode
                except OSError:
                    return False

            rt.monitor.watch_netns(still_there)

    async def resync(self, zone: str) -> None:
        """Re-read one zone from the kernel after change notifications (coalesced by the
        monitor: one call per burst). The dump is received and parsed on a thread."""
        async with self._locked(zone):
            rt = self.runtimes.get(zone)
            if rt is None:
                return
            try:
                if rt.monitor is not None and rt.monitor.take_overflow():
                    await self._check_lends(zone)  # deletions may have been lost
                found = await rt.netlink.dump()
            except LinkbrokerError as exc:
                log.warning("zone %s: resync failed: %s", zone, exc)
                return
            if zone in self.runtimes:
                if rt.monitor is not None:
                    rt.monitor.drain()  # deletions the dump already shows are known first
                self.reconcile_zone(zone, found)

    def _links_deleted(self, zone: str, indexes: list[int]) -> None:
        """RTM_DELLINK in `zone`: a lent link that left it is no longer lent, even if the
        zone makes a link with the same name and ifindex right after."""
        gone = set(indexes)
        for link in self.links.in_zone(zone):
            if link.onloan and link.ifindex in gone:
                self._lends_ended.add(link.id)

    def _lend_holds(self, link: LinkRecord, k: KernelLink) -> bool:
        """Whether kernel link `k` can still be the lent `link` (always true for links not
        on loan). A zone's root can delete a lent link and make its own under the same name
        and ifindex (`ip link add ... index N`); it cannot make a kind-less (phys) device, nor
        a veth whose other end is outside the zone."""
        if not link.onloan:
            return True
        if link.id in self._lends_ended or classify(k.kind, k.tun_tap) != link.cls:
            return False
        if link.lent_netnsid is not None and k.link_netnsid != link.lent_netnsid:
            return False  # its peer or parent is not where the lent one's was
        if link.cls == "veth":
            peer = self.links.get(link.peer_id)
            if peer is None or not peer.present or k.link != peer.ifindex:
                return False
            # Both ends in the zone (the global zone made the pair there): the zone could
            # make such a pair itself; the RTM_DELLINK of the lent one is what tells them apart.
            return (k.link_netnsid is None) == (peer.zone == link.zone)
        parent = self.links.get(link.parent_id)
        if parent is not None and parent.zone != link.zone:
            return k.link_netnsid is not None and k.link == parent.ifindex
        return True

    async def _lend_intact(self, link: LinkRecord) -> bool:
        """Before a lent link goes home: the kernel's own facts, read now. Beyond
        `_lend_holds`, a veth's other end (outside the zone, where the zone cannot reach)
        must still name this ifindex as its peer."""
        rt = self.runtimes.get(link.zone)
        if rt is not None and rt.monitor is not None:
            rt.monitor.drain()
        if rt is None or not link.present or link.ifindex is None:
            return False
        k = await rt.netlink.get_index(link.ifindex)
        if k is None or not self._lend_holds(link, k):
            return False
        if link.cls == "veth":
            peer = self.links.get(link.peer_id)
            other = self.runtimes.get(peer.zone) if peer is not None else None
            if peer is None or other is None or peer.ifindex is None:
                return False
            pk = await other.netlink.get_index(peer.ifindex)
            return pk is not None and pk.kind == "veth" and pk.link == link.ifindex
        return True

    async def _relearn_netnsids(self, moved: LinkRecord) -> None:
        """The broker moved `moved`: lent links whose peer or parent it is now see that
        namespace under another id (or none); read their new `lent_netnsid` now, before a
        reconciliation takes the change for a forgery."""
        for other in self.links:
            if (other.onloan and other.present and other.ifindex is not None
                    and moved.id in (other.peer_id, other.parent_id)):
                rt = self.runtimes.get(other.zone)
                k = None if rt is None else await rt.netlink.get_index(other.ifindex)
                if k is not None:
                    other.lent_netnsid = k.link_netnsid
                    self.store.put_links([other])

    async def _check_lends(self, zone: str) -> None:
        """Messages were lost (or the broker was down): verify every lent link of the zone
        by `_lend_intact`; the ones that fail are over."""
        for link in self.links.in_zone(zone):
            if (link.onloan and link.id not in self._lends_ended
                    and not await self._lend_intact(link)):
                log.warning("zone %s: link %s is no longer the link the host lent",
                            zone, link.name)
                self._lends_ended.add(link.id)

    async def zone_gone(self, zone: str) -> None:
        """The zone's namespace died: halt it as HaltZone would."""
        async with self._zone_admin:
            if self.zones.get(zone) is None or zone == GLOBAL_ZONE:
                return
            errors = await self.teardown_zone(zone, dying=True)
        log.info("zone %s halted: its namespace is gone%s", zone,
                 f" ({'; '.join(errors)})" if errors else "")

    def reconcile_zone(self, zone: str, found: list[KernelLink]) -> None:
        """Make the zone's table rows agree with what its kernel holds: match by ifindex
        (a rename keeps the ID), then by name; adopt the rest up to the zone's link limit;
        drop what vanished. O(n) in the links found; rows are written only for links that
        changed. Kernel links beyond the limit stay out of the table and are counted in
        `unadopted` (they count against the limit; logged when the count changes)."""
        by_index = {k.ifindex: k for k in found if k.name != "lo"}
        by_name = {k.name: k for k in found if k.name != "lo"}
        matched: dict[int, KernelLink] = {}
        links = self.links.in_zone(zone)
        for link in links:
            k = by_index.get(link.ifindex) if link.present and link.ifindex else None
            if k is not None and _same_link_class(link, k) and self._lend_holds(link, k):
                matched[link.id] = k
        taken = {k.ifindex for k in matched.values()}
        for link in links:
            if link.id in matched:
                continue
            k = by_name.get(link.name)
            if (k is not None and k.ifindex not in taken
                    and _same_link_class(link, k) and self._lend_holds(link, k)):
                matched[link.id] = k
                taken.add(k.ifindex)
        stale = [link for link in links if link.id not in matched and not link.persistent]
        absent = [link for link in links if link.id not in matched and link.persistent
                  and link.present]
        self.links.remove_many([link.id for link in stale])
        self._lends_ended.difference_update(link.id for link in stale)
        for link in absent:
            link.present, link.ifindex = False, None
        dirty: dict[int, LinkRecord] = {link.id: link for link in absent}
        changed: list[tuple[LinkRecord, str | None]] = []
        # Renames first, so a name freed by one link can be taken by another.
        renamed = [(link, matched[link.id]) for link in links if link.id in matched]
        for link, k in renamed:
            if link.name != k.name:
                changed.append((link, link.name))
                dirty[link.id] = link
                self.links.place(link, zone, f"\0{link.id}")  # out of the way
        before: dict[int, tuple[object, ...]] = {}
        for link, k in renamed:
            if link.name.startswith("\0"):
                self.links.place(link, zone, k.name)
            before[link.id] = (link.mtu, link.up, link.mac, link.master_id, link.present,
                               link.ifindex)
            link.ifindex, link.present = k.ifindex, True  # known to the index below
        limit = self.policy.links_allowed(zone)
        rest = [k for k in found if k.ifindex not in taken and k.name != "lo"]
        room = len(rest) if limit is None else max(0, min(len(rest),
                                                        limit - self.links.count(zone)))
        # A watched zone adopts at most _ADOPT_PER_PASS links per pass (~30 ms of the loop:
        # each new ID is an FF3-1 encryption) and asks its monitor for another pass; boot and
        # start-up take everything at once.
        monitor = self.runtimes[zone].monitor if zone in self.runtimes else None
        adopted, touched = self.adopt(
            zone, rest, room if monitor is None else min(room, _ADOPT_PER_PASS))
        if monitor is not None and len(adopted) == _ADOPT_PER_PASS < room:
            monitor.poke()
        index = self.links.ifindexes(zone)
        for link, k in renamed:
            self.refresh(link, k, index)
            if before[link.id] != (link.mtu, link.up, link.mac, link.master_id,
                                   link.present, link.ifindex):
                dirty[link.id] = link
                if not any(c[0] is link for c in changed):
                    changed.append((link, None))
        for link in touched + adopted:
            dirty[link.id] = link
        beyond = len(rest) - room  # beyond the limit, not merely not yet adopted
        if beyond != self._beyond.get(zone, 0):
            log.warning("zone %s holds %d kernel links beyond its limit of %s: not adopted, "
                        "counted against the limit", zone, beyond, limit)
        self._beyond[zone] = beyond
        if len(rest) > len(adopted):
            self.unadopted[zone] = len(rest) - len(adopted)
        else:
            self.unadopted.pop(zone, None)
        if stale or dirty:
            with self.store.transaction():
                self.store.delete_links(link.id for link in stale)
                self.store.put_links(dirty.values())
                if adopted:
                    self.store.set_next_seq(self.links.ids.next_seq)
        log.debug("zone %s reconciled: %d kernel links, %d adopted, %d changed, %d removed, "
                  "%d beyond the limit", zone, len(found), len(adopted), len(dirty) -
                  len(adopted), len(stale), beyond)
        for link in stale:
            self._publish("link_removed", link)
        for link in absent:
            self._publish("link_changed", link)
        for link, old_name in changed:
            self._publish("link_renamed" if old_name is not None else "link_changed", link,
                          old_name=old_name)
        for link in adopted:
            self._publish("link_added", link)

    async def attach(self, zone: ZoneRecord) -> bool:
        from zones.attach import attach_socket

        assert zone.pid is not None
        try:
            result = await asyncio.to_thread(attach_socket, self.socket_path, zone.pid,
                                            pid_start=zone.pid_start)
        except Exception as exc:
            log.warning("zone %s: socket not attached: %s", zone.name, exc)
            return False
        if not result.attached:
            log.warning("zone %s: socket not attached: %s", zone.name, result.reason)
        return result.attached

    def _publish_zone(self, kind: EventKind, zone: str) -> None:
        self.events.publish(kind, zone)

    async def halt_zone(self, caller: Caller, p: HaltZoneParams) -> Empty:
        if p.name == GLOBAL_ZONE:
            raise InvalidName(p.name, "the global zone cannot be halted")
        async with self._zone_admin:
            if self.zones.get(p.name) is None:
                raise ZoneNotFound(p.name)
            errors = await self.teardown_zone(p.name)
        if errors:
            raise HaltIncomplete(p.name, errors)
        return Empty()

    def _reaches_out(self, link: LinkRecord) -> bool:
        """Whether taking `link` out of its zone changes another zone: lent, or a veth
        with its other end elsewhere (an uplink's port on a host bridge)."""
        peer = self.links.get(link.peer_id)
        return link.onloan or (peer is not None and peer.zone != link.zone)

    async def teardown_zone(self, name: str, *, dying: bool = False) -> list[str]:
        """Every step runs even when an earlier one failed; the failures are returned.

        Three phases, so that a zone with thousands of links never holds the global lock
        across them: (1) under the global and zone locks, only what reaches into other
        zones (lent links go home, veths with an end elsewhere go), bounded by what the host
        lent and by `host_bridge_ports_per_zone`; (2) under the zone's lock alone, one
        netlink delete per own link (at most the zone's link limit); (3) under both locks
        again, briefly: the rows forgotten in one pass and one transaction, the zone gone.
        `dying`: the zone's namespace lost what made it a zone (its process exited, its
        /run/netns name went): its own links are not deleted one by one but go with the
        namespace when the broker lets go of it, all at once in the kernel."""
        errors: list[str] = []
        zone = self.zones.get(name)
        assert zone is not None

        def failed(link: LinkRecord, exc: Exception) -> None:
            errors.append(f"link {link.name}: {exc}")
            self._forget([link])

        async with self._locked(GLOBAL_ZONE, name):
            await self._teardown_outward(name, failed)
            rt = self.runtimes.get(name)
            if rt is not None and rt.monitor is not None:
                rt.monitor.close()  # no resync of what the halt itself deletes
        async with self._locked(name):
            # Newest first: ports and stacked links go before their bridges and parents, so
            # a persistent port is recorded still on its bridge.
            deleted: set[int] = set()
            for link in sorted(self.links.in_zone(name), key=self.links.order, reverse=True):
                if self.links.get(link.id) is not link or self._reaches_out(link):
                    continue  # handled in (1) and (3)
                if (not dying and link.id not in deleted and link.present
                        and link.ifindex is not None):
                    try:
                        await self._runtime(name).netlink.delete(link.ifindex)
                    except KernelError as exc:
                        if exc.errno != errno.ENODEV:  # ENODEV: gone with its parent
                            errors.append(f"link {link.name}: {exc}")
                    except (LinkbrokerError, OSError) as exc:
                        errors.append(f"link {link.name}: {exc}")
                deleted.update((link.id, link.peer_id or 0))
            if zone.attached and zone.pid is not None:
                try:
                    from zones.attach import detach_socket

                    await asyncio.to_thread(detach_socket, zone.pid, pid_start=zone.pid_start)
                except Exception as exc:
                    errors.append(f"detach socket: {exc}")
                zone.attached = False
        async with self._locked(GLOBAL_ZONE, name):
            await self._teardown_outward(name, failed)  # anything lent meanwhile
            own = self.links.in_zone(name)
            kept = [link for link in own if link.persistent]
            for link in kept:
                link.present, link.ifindex = False, None
            self.store.put_links(kept)
            self._forget([link for link in own if not link.persistent])
            rt = self.runtimes.pop(name, None)
            if rt is not None:
                rt.close()
            self.zones.remove(name)
            self.store.delete_zone(name)
            self.unadopted.pop(name, None)
            self._beyond.pop(name, None)
        self._publish_zone("zone_halted", name)
        self.events.forget_zone(name)
        return errors

    async def _teardown_outward(self, name: str,
                                failed: Callable[[LinkRecord, Exception], None]) -> None:
        """Phase (1) of `teardown_zone`: the zone's links that reach into other zones."""
        for link in sorted(self.links.in_zone(name), key=self.links.order, reverse=True):
            if self.links.get(link.id) is not link or not self._reaches_out(link):
                continue
            try:
                if link.onloan:
                    await self._return_home(link)
                else:
                    await self._remove_owned(link)
            except (LinkbrokerError, OSError) as exc:
                failed(link, exc)

    async def _return_home(self, link: LinkRecord) -> None:
        if not await self._lend_intact(link):
            # The zone replaced the lent link with one of its own: that one stays its own.
            log.warning("zone %s: link %s is no longer the link the host lent; not moved "
                        "to the host", link.zone, link.name)
            self._forget([link])
            return
        if link.cls in NETNS_LOCAL:
            # The kernel cannot move it out of the zone it was made in; it ends with the zone.
            await self._remove_owned(link)
            return
        home = link.home_name or link.name
        if self.links.name_taken(GLOBAL_ZONE, home):
            home = self._free_global_name("lb", link.id)
        await self._bring_home(link, home)

    def _random_global_name(self, stem: str) -> str:
        """A free global name that says nothing: not a count of anything (a counter-derived
        `lbu<N>` told every zone that made an uplink how many links the host had made)."""
        while True:
            candidate = stem + secrets.token_hex((15 - len(stem)) // 2)
            if not self.links.name_taken(GLOBAL_ZONE, candidate):
                return candidate

    def _free_global_name(self, stem: str, n: int) -> str:
        while True:
            candidate = f"{stem}{n}"
            if not self.links.name_taken(GLOBAL_ZONE, candidate):
                return candidate
            n += 1

    async def _remove_owned(self, link: LinkRecord) -> None:
        if link.present and link.ifindex is not None:
            await self._runtime(link.zone).netlink.delete(link.ifindex)
        if link.persistent:
            link.present, link.ifindex = False, None
            self.store.put_links([link])
            peer = self.links.get(link.peer_id)
            if peer is not None and peer.persistent:
                peer.present, peer.ifindex = False, None
                self.store.put_links([peer])
            return
        peer = self.links.get(link.peer_id)  # the kernel removed the other end too
        self._forget([link] + ([peer] if peer is not None else []))

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

