"""Reconciliation: make a zone's table rows agree with what its kernel holds.

Run at boot, at start-up and whenever the zone's monitor reports changes (coalesced, one pass
per burst). A kernel link keeps its ID through a rename (matched by ifindex first, then by
name); links the zone made itself are adopted, up to its link limit, the oldest first; what
vanished is dropped (persistent links stay, absent). Lent links are matched only while the
kernel's facts still say they are the links the host lent (broker._lending.lend_holds).
"""

from __future__ import annotations

import functools
import logging

from broker import _lending as lending
from broker._create_plan import row_from_kernel
from broker._linkdump import parse_link_message
from broker._netlink import KernelLink
from broker._reconcile_plan import ReconcilePlan, legacy_phys_rows, plan_reconcile
from broker._service import Broker
from broker._table import LinkRecord
from broker.kinds import KINDS, classify

log = logging.getLogger("linkbroker")

# Links a watched zone adopts per reconciliation pass (see reconcile_zone).
_ADOPT_PER_PASS = 128


def adopt(broker: Broker, zone: str, new: list[KernelLink]
          ) -> tuple[list[LinkRecord], list[LinkRecord]]:
    """Take the kernel links a plan chose into the table (broker._reconcile_plan decides
    which, and in which order): owner the zone, class from the kind, IDs allocated in that
    order; then name each one's peer or parent within the zone.
    Returns (adopted, links already in the table that now name one of them as peer).
    O(n) in the links adopted plus the zone's links."""
    if not new:
        return [], []
    pairs = [(row_from_kernel(zone, zone, k, broker.links.allocate_id()), k)
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
            if other is not None and KINDS[link.cls].paired:
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
    """Make the zone's table rows agree with what its kernel holds: decided by
    broker._reconcile_plan.plan_reconcile (match by ifindex, then by name; adopt the rest
    up to the zone's link limit; drop what vanished), then applied by `commit_reconcile`.
    O(n) in the links found; rows are written only for links that changed. Kernel links
    beyond the limit stay out of the table and are counted in `unadopted` (they count
    against the limit; logged when the count changes)."""
    rows = broker.links.in_zone(zone)
    for link_id, kind in legacy_phys_rows(rows, found):
        link = broker.links.get(link_id)
        assert link is not None
        link.cls, link.kind = "other", kind
    # A watched zone adopts at most _ADOPT_PER_PASS links per pass (~30 ms of the loop:
    # each new ID is an FF3-1 encryption) and asks its monitor for another pass; boot and
    # start-up take everything at once.
    monitor = broker.runtimes[zone].monitor if zone in broker.runtimes else None
    plan = plan_reconcile(rows, found, holds=functools.partial(lending.lend_holds, broker),
                          limit=broker.policy.links_allowed(zone),
                          per_pass=None if monitor is None else _ADOPT_PER_PASS)
    commit_reconcile(broker, zone, plan)
    if plan.more and monitor is not None:
        monitor.poke()


def commit_reconcile(broker: Broker, zone: str, plan: ReconcilePlan) -> None:
    """Apply a reconciliation plan: the table first (renames through a placeholder name, so
    a name one link frees can be taken by another; adoptions after, IDs in plan order), then
    one store transaction for what changed, then the events. No await: no read sees the
    zone half-reconciled."""
    rows = broker.links.in_zone(zone)
    by_id = {link.id: link for link in rows}
    stale = [by_id[i] for i in plan.stale]
    absent = [by_id[i] for i in plan.absent]
    broker.links.remove_many(list(plan.stale))
    broker.lends_ended.difference_update(plan.stale)
    for link in absent:
        link.present, link.ifindex = False, None
    dirty: dict[int, LinkRecord] = {link.id: link for link in absent}
    changed: list[tuple[LinkRecord, str | None]] = []
    renamed = [(by_id[i], k) for i, k in plan.matched.items()]
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
    adopted, touched = adopt(broker, zone, list(plan.adopt))
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
    if plan.beyond != broker.beyond.get(zone, 0):
        log.warning("zone %s holds %d kernel links beyond its limit of %s: not adopted, "
                    "counted against the limit", zone, plan.beyond,
                    broker.policy.links_allowed(zone))
    broker.beyond[zone] = plan.beyond
    if plan.unadopted:
        broker.unadopted[zone] = plan.unadopted
    else:
        broker.unadopted.pop(zone, None)
    if stale or dirty:
        with broker.store.transaction():
            broker.store.delete_links(link.id for link in stale)
            broker.store.put_links(dirty.values())
            if adopted:
                broker.store.set_next_seq(broker.links.ids.next_seq)
    log.debug("zone %s reconciled: %d kernel links, %d adopted, %d changed, %d removed, "
              "%d beyond the limit", zone, plan.seen, len(adopted),
              len(dirty) - len(adopted), len(stale), plan.beyond)
    for link in stale:
        broker.publish("link_removed", link)
    for link in absent:
        broker.publish("link_changed", link)
    for link, old_name in changed:
        broker.publish("link_renamed" if old_name is not None else "link_changed", link,
                       old_name=old_name)
    for link in adopted:
        broker.publish("link_added", link)
