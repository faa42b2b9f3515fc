"""Reconciliation: make a zone's table rows agree with what its kernel holds.

Run at boot, at start-up and whenever the zone's monitor reports changes (coalesced, one pass
per burst). A kernel link keeps its ID through a rename (matched by ifindex first, then by
name); links the zone made itself are adopted, up to its link limit, the oldest first; what
vanished is dropped (persistent links stay, absent). Lent links are matched only while the
kernel's facts still say they are the links the host lent (broker._lending.lend_holds).
"""

from __future__ import annotations

import logging

from broker import _lending as lending
from broker._linkdump import parse_link_message
from broker._netlink import KernelLink
from broker._service import Broker
from broker._table import LinkRecord
from broker.kinds import classify

log = logging.getLogger("linkbroker")

# Links a watched zone adopts per reconciliation pass (see reconcile_zone).
_ADOPT_PER_PASS = 128


def _same_link_class(link: LinkRecord, k: KernelLink) -> bool:
    """Whether a table row and a kernel link may be the same link. A row stored as phys
    before kinds without a module became `other` (issue 14) is corrected in place, ID kept."""
    cls = classify(k.kind, k.tun_tap)
    if link.cls == "phys" and cls == "other":
        link.cls, link.kind = "other", k.kind
        return True
    return cls in (link.cls, "phys")


def adopt(broker: Broker, zone: str, found: list[KernelLink], room: int | None = None
          ) -> tuple[list[LinkRecord], list[LinkRecord]]:
    """Take kernel links the table lacks into it: owner the zone, class from the kind;
    at most `room` of them (the zone's link limit), oldest (lowest ifindex) first. The
    rest stay out of the table: the caller counts them against the limit.
    Returns (adopted, links already in the table that now name one of them as peer).
    O(n) in the links found."""
    if room == 0:
        return [], []  # a zone at its limit: not even a sort of what it holds
    new = sorted((k for k in found
                  if k.name != "lo" and not broker.links.name_taken(zone, k.name)),
                 key=lambda k: k.ifindex)
    if room is not None:
        new = new[:max(room, 0)]
    pairs = [(broker.record_from_kernel(zone, zone, k, broker.links.allocate_id()), k)
             for k in new]
    for link, _ in pairs:
        broker.links.add(link)
    index = broker.links.ifindexes(zone)
    touched: list[LinkRecord] = []
    for link, k in pairs:
        broker.refresh(link, k, index)
        # Peer and parent within the same namespace (link_netnsid absent) can be named.
        if k.link and k.link_netnsid is None:
            other = index.get(k.link)
            if other is not None and link.cls == "veth":
                link.peer_id, other.peer_id = other.id, link.id
                touched.append(other)
            elif other is not None:
                link.parent_id = other.id
    return [link for link, _ in pairs], touched


def known(broker: Broker, zone: str, heard: dict[int, bytes | None]) -> bool:
    """Whether the table already holds everything these notifications say of the zone's
    links (ifindex -> the last RTM_NEWLINK message, None: deleted), field for field
    as reconcile_zone would set it: then a dump and a reconciliation would change nothing.
    True only when that is certain: a link the table lacks, a rename, a class, MTU, state,
    address or master that differs, a message the parser cannot read, and any lent link
    (whose lend must be re-judged from a dump) all answer False. O(links in the zone +
    messages)."""
    if not heard:
        return True
    index = broker.links.ifindexes(zone)
    for ifindex, message in heard.items():
        link = index.get(ifindex)
        k = None if message is None else parse_link_message(message)
        if k is None and message is not None:
            return False
        if k is None or k.name == "lo":  # reconcile_zone leaves lo out of the table
            if link is not None:
                return False
            continue
        if link is None or link.onloan or link.name != k.name:
            return False
        if classify(k.kind, k.tun_tap) != link.cls:
            return False
        master = index.get(k.master) if k.master else None
        if (link.mtu, link.up, link.mac) != (k.mtu, k.up, k.mac) or (
                master.id if master is not None else None) != link.master_id:
            return False
    return True


def reconcile_zone(broker: Broker, zone: str, found: list[KernelLink]) -> None:
    """Make the zone's table rows agree with what its kernel holds: match by ifindex
    (a rename keeps the ID), then by name; adopt the rest up to the zone's link limit;
    drop what vanished. O(n) in the links found; rows are written only for links that
    changed. Kernel links beyond the limit stay out of the table and are counted in
    `unadopted` (they count against the limit; logged when the count changes)."""
    by_index = {k.ifindex: k for k in found if k.name != "lo"}
    by_name = {k.name: k for k in found if k.name != "lo"}
    matched: dict[int, KernelLink] = {}
    links = broker.links.in_zone(zone)
    for link in links:
        k = by_index.get(link.ifindex) if link.present and link.ifindex else None
        if k is not None and _same_link_class(link, k) and lending.lend_holds(broker, link, k):
            matched[link.id] = k
    taken = {k.ifindex for k in matched.values()}
    for link in links:
        if link.id in matched:
            continue
        k = by_name.get(link.name)
        if (k is not None and k.ifindex not in taken
                and _same_link_class(link, k) and lending.lend_holds(broker, link, k)):
            matched[link.id] = k
            taken.add(k.ifindex)
    stale = [link for link in links if link.id not in matched and not link.persistent]
    absent = [link for link in links if link.id not in matched and link.persistent
              and link.present]
    broker.links.remove_many([link.id for link in stale])
    broker.lends_ended.difference_update(link.id for link in stale)
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
            broker.links.place(link, zone, f"\0{link.id}")  # out of the way
    before: dict[int, tuple[object, ...]] = {}
    for link, k in renamed:
        if link.name.startswith("\0"):
            broker.links.place(link, zone, k.name)
        before[link.id] = (link.mtu, link.up, link.mac, link.master_id, link.present,
                           link.ifindex)
        link.ifindex, link.present = k.ifindex, True  # known to the index below
    limit = broker.policy.links_allowed(zone)
    rest = [k for k in found if k.ifindex not in taken and k.name != "lo"]
    room = len(rest) if limit is None else max(0, min(len(rest),
                                                      limit - broker.links.count(zone)))
    # A watched zone adopts at most _ADOPT_PER_PASS links per pass (~30 ms of the loop:
    # each new ID is an FF3-1 encryption) and asks its monitor for another pass; boot and
    # start-up take everything at once.
    monitor = broker.runtimes[zone].monitor if zone in broker.runtimes else None
    adopted, touched = adopt(broker, zone, rest,
                             room if monitor is None else min(room, _ADOPT_PER_PASS))
    if monitor is not None and len(adopted) == _ADOPT_PER_PASS < room:
        monitor.poke()
    index = broker.links.ifindexes(zone)
    for link, k in renamed:
        broker.refresh(link, k, index)
        if before[link.id] != (link.mtu, link.up, link.mac, link.master_id,
                               link.present, link.ifindex):
            dirty[link.id] = link
            if not any(c[0] is link for c in changed):
                changed.append((link, None))
    for link in touched + adopted:
        dirty[link.id] = link
    beyond = len(rest) - room  # beyond the limit, not merely not yet adopted
    if beyond != broker.beyond.get(zone, 0):
        log.warning("zone %s holds %d kernel links beyond its limit of %s: not adopted, "
                    "counted against the limit", zone, beyond, limit)
    broker.beyond[zone] = beyond
    if len(rest) > len(adopted):
        broker.unadopted[zone] = len(rest) - len(adopted)
    else:
        broker.unadopted.pop(zone, None)
    if stale or dirty:
        with broker.store.transaction():
            broker.store.delete_links(link.id for link in stale)
            broker.store.put_links(dirty.values())
            if adopted:
                broker.store.set_next_seq(broker.links.ids.next_seq)
    log.debug("zone %s reconciled: %d kernel links, %d adopted, %d changed, %d removed, "
              "%d beyond the limit", zone, len(found), len(adopted), len(dirty) -
              len(adopted), len(stale), beyond)
    for link in stale:
        broker.publish("link_removed", link)
    for link in absent:
        broker.publish("link_changed", link)
    for link, old_name in changed:
        broker.publish("link_renamed" if old_name is not None else "link_changed", link,
                       old_name=old_name)
    for link in adopted:
        broker.publish("link_added", link)
