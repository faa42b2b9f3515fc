"""The link table and the zone table: the broker's whole memory, with no I/O.

Records are plain mutable dataclasses owned by the tables; only the service mutates them: a
write after the kernel has confirmed its change (an await on the netlink worker, then the
table in one step), a reconciliation to what a dump or a notification showed, and persistent
configuration of a halted zone, which is kept `present=False` and is no kernel fact.
Indexes: links by ID, and by (zone, name) so a zone's lookups and listings cost the same
whatever the other zones hold.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from broker._ids import LinkIds
from broker._names import GLOBAL_ZONE
from broker._types import LinkClass, ZoneKind

__all__ = ["LinkRecord", "LinkTable", "ZoneRecord", "ZoneTable"]


@dataclass(slots=True)
class LinkRecord:
    id: int
    name: str
    cls: LinkClass
    zone: str
    owner: str
    persistent: bool = False
    present: bool = True
    # The name the link returns home under when it is on loan (its name in the global zone).
    home_name: str | None = None
    # A persistent assignment: the zone this link is lent to whenever that zone is booted.
    assigned_to: str | None = None
    ifindex: int | None = None
    mac: str | None = None
    mtu: int | None = None
    up: bool = False
    peer_id: int | None = None
    parent_id: int | None = None
    master_id: int | None = None
    mode: str | None = None
    vni: int | None = None
    remote: str | None = None
    local: str | None = None
    port: int | None = None
    # Added (issue 14): vlan, bond and tunnel parameters as asked; the kernel kind of `other`.
    vid: int | None = None
    protocol: str | None = None
    miimon: int | None = None
    ttl: int | None = None
    kind: str | None = None
    # While lent: IFLA_LINK_NETNSID as the zone saw it when it arrived (the id the zone's
    # namespace gives the peer's or parent's namespace). A zone cannot give that id to a
    # namespace of its own while the real one lives: a device it makes in the lent one's
    # place cannot show it (issue 12, finding 8).
    lent_netnsid: int | None = None
    # Added (issue 14): what the persistent configuration holds where a temporary change
    # (SetLinkProperties temporary, dladm's set-linkprop -t) made the active link differ:
    # any of mtu, mac, up, master_id. Re-creation takes these; the fields above stay the
    # active link's.
    saved: dict[str, int | str | bool | None] | None = None

    def configured(self, field: str) -> Any:
        """The persistent configuration's value of `field` (see `saved`)."""
        return (self.saved or {}).get(field, getattr(self, field))

    @property
    def onloan(self) -> bool:
        return self.owner == GLOBAL_ZONE and self.zone != GLOBAL_ZONE


@dataclass(slots=True)
class ZoneRecord:
    name: str
    kind: ZoneKind
    netns_inode: int
    netns: str | None = None
    pid: int | None = None
    # Start time of `pid` (clock ticks since boot): a recycled pid has another one.
    pid_start: int | None = None
    container: str | None = None
    root: str | None = None
    attached: bool = False
    # The runtime's container ID when linkbroker-cni booted the zone (CNI_CONTAINERID).
    cni_container: str | None = None


class ZoneTable:
    """Booted zones by name and by network namespace inode."""

    def __init__(self) -> None:
        self._by_name: dict[str, ZoneRecord] = {}
        self._by_inode: dict[int, ZoneRecord] = {}
        # Bumped by every add and remove: which zone names exist decides some replies
        # (ZoneNotFound, a halted zone's configuration), so cached replies key on it.
        self.version = 0

    def add(self, zone: ZoneRecord) -> None:
        assert zone.name not in self._by_name and zone.netns_inode not in self._by_inode
        self._by_name[zone.name] = zone
        self._by_inode[zone.netns_inode] = zone
        self.version += 1

    def remove(self, name: str) -> ZoneRecord | None:
        zone = self._by_name.pop(name, None)
        if zone is not None:
            self._by_inode.pop(zone.netns_inode, None)
        self.version += 1
        return zone

    def get(self, name: str) -> ZoneRecord | None:
        return self._by_name.get(name)

    def by_inode(self, inode: int) -> ZoneRecord | None:
        return self._by_inode.get(inode)

    def __iter__(self) -> Iterator[ZoneRecord]:
        return iter(list(self._by_name.values()))

    def __len__(self) -> int:
        return len(self._by_name)


@dataclass
class LinkTable:
    """Links by ID and by (zone, name). IDs come from a counter that only grows, handed out
    under a secret permutation (`_ids`); `order` gives back creation order."""

    ids: LinkIds = field(default_factory=LinkIds.fresh)
    # Bumped by every add, remove and place: lets readers cache what they derive.
    version: int = 0
    _by_id: dict[int, LinkRecord] = field(default_factory=dict)
    _by_zone: dict[str, dict[str, int]] = field(default_factory=dict)
    # Each link's creation sequence, inverted once at add: every listing sorts by it.
    _seq: dict[int, int] = field(default_factory=dict)

    def allocate_id(self) -> int:
        return self.ids.allocate()

    def order(self, link: LinkRecord) -> int:
        """Creation order: parents and masters before what was made on them."""
        return self._seq[link.id]

    def add(self, link: LinkRecord) -> None:
        names = self._by_zone.setdefault(link.zone, {})
        assert link.name not in names, f"{link.zone}/{link.name} already in the table"
        assert link.id not in self._by_id
        self._by_id[link.id] = link
        names[link.name] = link.id
        self._seq[link.id] = self.ids.saw(link.id)
        self.version += 1

    def remove(self, link_id: int) -> LinkRecord | None:
        removed = self.remove_many([link_id])
        return removed[0] if removed else None

    def remove_many(self, link_ids: list[int]) -> list[LinkRecord]:
        """Take links out, and every reference to them, in one pass over the table: a zone
        of 20,000 links leaving costs O(n), not 20,000 passes."""
        gone: list[LinkRecord] = []
        for link_id in link_ids:
            link = self._by_id.pop(link_id, None)
            self._seq.pop(link_id, None)
            if link is not None:
                gone.append(link)
                names = self._by_zone.get(link.zone, {})
                if names.get(link.name) == link_id:
                    del names[link.name]
        self.version += 1
        if gone:
            ids = {link.id for link in gone}
            for other in self._by_id.values():
                if other.peer_id in ids:
                    other.peer_id = None
                if other.master_id in ids:
                    other.master_id = None
                if other.parent_id in ids:
                    other.parent_id = None
        return gone

    def place(self, link: LinkRecord, zone: str, name: str) -> None:
        """Move and/or rename a link in the indexes."""
        self.version += 1
        old = self._by_zone.get(link.zone, {})
        if old.get(link.name) == link.id:
            del old[link.name]
        link.zone, link.name = zone, name
        names = self._by_zone.setdefault(zone, {})
        assert name not in names, f"{zone}/{name} already in the table"
        names[name] = link.id

    def get(self, link_id: int | None) -> LinkRecord | None:
        return None if link_id is None else self._by_id.get(link_id)

    def find(self, zone: str, name: str) -> LinkRecord | None:
        link_id = self._by_zone.get(zone, {}).get(name)
        return None if link_id is None else self._by_id[link_id]

    def by_ifindex(self, zone: str, ifindex: int) -> LinkRecord | None:
        for link_id in self._by_zone.get(zone, {}).values():
            link = self._by_id[link_id]
            if link.ifindex == ifindex and link.present:
                return link
        return None

    def ifindexes(self, zone: str) -> dict[int, LinkRecord]:
        """The zone's present links by ifindex: one pass, for work over many links."""
        out: dict[int, LinkRecord] = {}
        for link_id in self._by_zone.get(zone, {}).values():
            link = self._by_id[link_id]
            if link.ifindex is not None and link.present:
                out[link.ifindex] = link
        return out

    def count(self, zone: str) -> int:
        return len(self._by_zone.get(zone, {}))

    def in_zone(self, zone: str) -> list[LinkRecord]:
        return [self._by_id[i] for i in self._by_zone.get(zone, {}).values()]

    def name_taken(self, zone: str, name: str) -> bool:
        return name in self._by_zone.get(zone, {})

    def __iter__(self) -> Iterator[LinkRecord]:
        return iter(list(self._by_id.values()))

    def __len__(self) -> int:
        return len(self._by_id)
