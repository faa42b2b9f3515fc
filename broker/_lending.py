"""Lending: the global zone's links moved into a zone on loan (AssignLink), and home again
(ReclaimLink, HaltZone, a zone that dies).

A lent link is trusted to go home only on facts the zone cannot forge: its kind, the
namespace its peer or parent lives in (`lent_netnsid`), a veth's other end outside the zone
still naming it, and no RTM_DELLINK of it seen in the zone (`lends_ended`). A zone's root can
delete a lent link and make its own under the same name and ifindex; that one never goes to
the host (issue 12, finding 8; docs/security.md).
"""

from __future__ import annotations

import contextlib
import logging

from broker import _addresses as addresses
from broker._authorize import Assign, authorize
from broker._errors import (
    InvalidParameter,
    LinkbrokerError,
    LinkExists,
    LinkNotFound,
    Unsupported,
)
from broker._names import GLOBAL_ZONE
from broker._netlink import KernelLink
from broker._params import AssignLinkParams, ReclaimLinkParams
from broker._rules import asked_for, find_link_by, target_zone
from broker._service import Broker, Caller, snapshot
from broker._table import LinkRecord
from broker._types import LinkReply
from broker.kinds import KINDS, classify

log = logging.getLogger("linkbroker")


async def relend(broker: Broker, zone: str) -> list[str]:
    """Lend again the global zone's links persistently assigned to `zone`."""
    errors: list[str] = []
    for link in sorted(broker.links.in_zone(GLOBAL_ZONE), key=broker.links.order):
        if link.assigned_to != zone or not link.present:
            continue
        async with broker.locked(GLOBAL_ZONE, zone):
            if broker.links.name_taken(zone, link.name):
                errors.append(f"link {link.name}: the zone has a link of that name")
                continue
            try:
                await lend(broker, link, zone)
            except (LinkbrokerError, OSError) as exc:
                errors.append(f"link {link.name}: {exc}")
    return errors + await addresses.restore_configs(broker, zone)


async def assign_link(broker: Broker, caller: Caller, p: AssignLinkParams) -> LinkReply:
    link = find_link_by(caller.zone, p.name, GLOBAL_ZONE, broker.links, broker.zones, link_id=p.id)
    if p.zone == GLOBAL_ZONE:
        raise InvalidParameter("zone")
    zone = target_zone(caller.zone, p.zone, broker.zones)
    kind = KINDS[link.cls]
    if not kind.movable:
        raise Unsupported(f"assigning a {link.cls}: the kernel cannot move it between zones")
    if not kind.lendable:
        # A kernel kind the broker does not know: never lent, least of all as phys.
        raise Unsupported(f"assigning a link of kernel kind {link.kind or 'unknown'}")
    authorize(caller, "AssignLink", Assign(link.cls, link.name), policy=broker.policy)
    async with broker.locked(GLOBAL_ZONE, zone):
        if broker.links.get(link.id) is not link or link.zone != GLOBAL_ZONE:
            raise LinkNotFound(asked_for(p.name, p.id))
        if broker.links.name_taken(zone, link.name):
            raise LinkExists(link.name)
        broker.check_limit(zone, 1)
        await lend(broker, link, zone, persistent=bool(p.persistent))
        return LinkReply(link=broker.view(caller.zone, link))


async def lend(broker: Broker, link: LinkRecord, zone: str, *,
               persistent: bool | None = None) -> None:
    """Move a global link into `zone` on loan, remembering its home name. `persistent`
    sets or clears the standing assignment; None keeps it as it is."""
    broker.moving.add(link.id)
    try:
        await _move(broker, link, zone, link.name)
        broker.lends_ended.discard(link.id)  # a DELLINK from an earlier lend ended that one
        await _relearn_netnsids(broker, link)
    finally:
        broker.moving.discard(link.id)
    link.home_name = link.home_name or link.name
    if persistent is not None:
        link.assigned_to = zone if persistent else None
    broker.store.put_links([link])
    broker.publish("link_assigned", link)
    addresses.link_moved(broker, link)


async def bring_home(broker: Broker, link: LinkRecord, home: str) -> None:
    """Move a lent link back into the global zone as `home`."""
    zone = link.zone
    as_lent = snapshot(link)  # what the zone saw: never the host's name or ifindex
    broker.moving.add(link.id)
    try:
        await _move(broker, link, GLOBAL_ZONE, home)
        link.home_name = None
        broker.store.put_links([link])
        broker.publish("link_reclaimed", link, zone=zone, zone_sees=as_lent)
        addresses.link_moved(broker, link)
        await _relearn_netnsids(broker, link)
    finally:
        broker.moving.discard(link.id)


async def _move(broker: Broker, link: LinkRecord, zone: str, name: str) -> None:
    """The kernel moves the link (and it is read back where it arrived, in the same
    worker job); then the table changes in one step, with no await in between, so no
    read sees the link half-moved."""
    arrived = None
    if link.present and link.ifindex is not None:
        target_fd = broker.runtime(zone).netns_fd
        if target_fd is None:
            target_fd = broker.host_fd()
        arrived = await broker.runtime(link.zone).netlink.move(
            link.ifindex, target_fd, name, f"move {link.name} to zone {zone}",
            read_back_in=broker.runtime(zone).netlink)
    for other in broker.links:  # a bridge's ports stay behind, a port leaves its bridge
        if other.master_id == link.id:
            other.master_id = None
    link.master_id = None
    broker.links.place(link, zone, name)
    if arrived is not None:
        broker.refresh(link, arrived)


async def reclaim_link(broker: Broker, caller: Caller, p: ReclaimLinkParams) -> LinkReply:
    if p.zone is not None or p.id is not None or p.name is None:
        candidates = [find_link_by(caller.zone, p.name, p.zone, broker.links,
                                   broker.zones, link_id=p.id)]
    else:
        candidates = [x for x in broker.links if x.onloan and x.name == p.name]
    candidates = [x for x in candidates if x.onloan]
    if not candidates:
        raise LinkNotFound(asked_for(p.name, p.id))
    if len(candidates) > 1:
        raise InvalidParameter("zone")
    link = candidates[0]
    zone = link.zone
    async with broker.locked(GLOBAL_ZONE, zone):
        if broker.links.get(link.id) is not link or not link.onloan:
            raise LinkNotFound(asked_for(p.name, p.id))
        home = link.home_name or link.name
        if broker.links.name_taken(GLOBAL_ZONE, home):
            raise LinkExists(home)
        if not await lend_intact(broker, link):
            # The zone deleted the lent link and made its own in its place: that one
            # never goes to the host. The lend is over; the table learns it now.
            broker.lends_ended.add(link.id)
            with contextlib.suppress(LinkbrokerError):
                broker.reconcile_zone(zone, await broker.runtime(zone).netlink.dump())
            raise LinkNotFound(asked_for(p.name, p.id))
        standing, link.assigned_to = link.assigned_to, None  # no longer lent on boot
        try:
            await bring_home(broker, link, home)
        except BaseException:
            link.assigned_to = standing  # the move failed: nothing changed
            raise
        return LinkReply(link=broker.view(caller.zone, link))


def links_deleted(broker: Broker, zone: str, indexes: list[int]) -> None:
    """RTM_DELLINK in `zone`: a lent link that left it is no longer lent, even if the
    zone makes a link with the same name and ifindex right after."""
    gone = set(indexes)
    for link in broker.links.in_zone(zone):
        if link.onloan and link.ifindex in gone:
            broker.lends_ended.add(link.id)


def lend_holds(broker: Broker, link: LinkRecord, k: KernelLink) -> bool:
    """Whether kernel link `k` can still be the lent `link` (always true for links not
    on loan). A zone's root can delete a lent link and make its own under the same name
    and ifindex (`ip link add ... index N`); it cannot make a kind-less (phys) device, nor
    a veth whose other end is outside the zone."""
    if not link.onloan:
        return True
    if link.id in broker.lends_ended or classify(k.kind, k.tun_tap) != link.cls:
        return False
    if broker.moving and {link.peer_id, link.parent_id} & broker.moving:
        return True  # the broker is moving its other end: _relearn_netnsids settles it
    if link.lent_netnsid is not None and k.link_netnsid != link.lent_netnsid:
        return False  # its peer or parent is not where the lent one's was
    if KINDS[link.cls].paired:
        peer = broker.links.get(link.peer_id)
        if peer is None or not peer.present or k.link != peer.ifindex:
            return False
        # Both ends in the zone (the global zone made the pair there): the zone could
        # make such a pair itself; the RTM_DELLINK of the lent one is what tells them apart.
        return (k.link_netnsid is None) == (peer.zone == link.zone)
    parent = broker.links.get(link.parent_id)
    if parent is not None and parent.zone != link.zone:
        return k.link_netnsid is not None and k.link == parent.ifindex
    return True


async def lend_intact(broker: Broker, link: LinkRecord) -> bool:
    """Before a lent link goes home: the kernel's own facts, read now. Beyond
    `_lend_holds`, a veth's other end (outside the zone, where the zone cannot reach)
    must still name this ifindex as its peer."""
    rt = broker.runtimes.get(link.zone)
    if rt is not None and rt.monitor is not None:
        rt.monitor.drain()
    if rt is None or not link.present or link.ifindex is None:
        return False
    k = await rt.netlink.get_index(link.ifindex)
    if k is None or not lend_holds(broker, link, k):
        return False
    if KINDS[link.cls].paired:
        peer = broker.links.get(link.peer_id)
        other = broker.runtimes.get(peer.zone) if peer is not None else None
        if peer is None or other is None or peer.ifindex is None:
            return False
        pk = await other.netlink.get_index(peer.ifindex)
        return (pk is not None and classify(pk.kind, pk.tun_tap) == link.cls
                and pk.link == link.ifindex)
    return True


async def _relearn_netnsids(broker: Broker, moved: LinkRecord) -> None:
    """The broker moved `moved`: lent links whose peer or parent it is now see that
    namespace under another id (or none); read their new `lent_netnsid` now, before a
    reconciliation takes the change for a forgery."""
    for other in broker.links:
        if (other.onloan and other.present and other.ifindex is not None
                and moved.id in (other.peer_id, other.parent_id)):
            rt = broker.runtimes.get(other.zone)
            k = None if rt is None else await rt.netlink.get_index(other.ifindex)
            if k is not None:
                other.lent_netnsid = k.link_netnsid
                broker.store.put_links([other])


async def check_lends(broker: Broker, zone: str) -> None:
    """Messages were lost (or the broker was down): verify every lent link of the zone
    by `_lend_intact`; the ones that fail are over."""
    for link in broker.links.in_zone(zone):
        if (link.onloan and link.id not in broker.lends_ended
                and not await lend_intact(broker, link)):
            log.warning("zone %s: link %s is no longer the link the host lent",
                        zone, link.name)
            broker.lends_ended.add(link.id)
