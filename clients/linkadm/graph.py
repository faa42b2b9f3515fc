"""The picture of a caller's links, built from its own ListZones/ListLinks answers only. Pure.

Why it lives with linkadm and not in the daemon: only linkadm draws pictures, and it draws
them from the replies any client gets; the broker never builds a topology (moved from
broker/_topology.py, issue 16). The zone names it needs are the contract's (broker._names).

`linkadm show-topology` draws what the broker already shows the caller, nothing more: the
no-oracle rule holds for pictures because the only input is the caller's view, in which
`peer`, `parent` and `master` living in another zone are already absent. A veth end whose
other end the view does not name is drawn to an anonymous node outside every zone (an end
"elsewhere"), one per end, so a zone cannot even tell whether two of its veths lead to the
same place.

The view names a peer or a parent by name without its zone (names are unique per zone only),
so for the global zone the builder finds the other end the way a reader of `show-link` would:
a veth's peer is the veth that names it back; when several do (the same two names in several
zones), the one next to it in the listing (a pair is created in one step, and listings come in
creation order), else the one in the same zone; a choice counts only when both ends agree,
otherwise the end is drawn to a node that says its zone is unknown. A parent is looked up in
the link's zone, then in the global zone, as CreateLink looks it up.

Graph: zones (clusters, the global zone first, then by name), nodes (links in their zone, by
name; ends elsewhere) and edges (veth pairs, bridge ports, upper over lower), every identifier
a counter (`n1`, `x1`, `cluster_1`): names only ever appear in labels, escaped by the renderer.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from broker._names import GLOBAL_ZONE, home_zone
from broker._types import Link, Zone

__all__ = ["Edge", "EdgeKind", "Node", "Topology", "ZoneBox", "build"]

# Classes that always sit on a lower link: a view without `parent` hides it (vxlan may have none).
_ALWAYS_OVER = ("macvlan", "macvtap")

EdgeKind = Literal["veth", "port", "lower"]


@dataclass(frozen=True, slots=True)
class ZoneBox:
    """One cluster. `kind` None: a halted zone whose persistent links the global zone sees."""

    key: str
    name: str
    kind: str | None


@dataclass(frozen=True, slots=True)
class Node:
    """A link in its zone, or (link None) the far end of one of the caller's links that the
    view does not place: `name` is what the view called it (None: it named nothing)."""

    key: str
    zone: str | None
    link: Link | None = None
    name: str | None = None
    # Why the far end is unplaced: "hidden" (the view names nothing), "unlisted" (named, but
    # not in this listing: another zone under -z), "ambiguous" (several ends could be it).
    why: str = ""


@dataclass(frozen=True, slots=True)
class Edge:
    """veth: the two ends of a pair. port: a link -> its bridge. lower: upper -> lower link."""

    kind: EdgeKind
    tail: str
    head: str


@dataclass(frozen=True, slots=True)
class Topology:
    viewer: str
    zones: tuple[ZoneBox, ...]
    nodes: tuple[Node, ...]
    edges: tuple[Edge, ...]
    # Indexes, so renderers stay linear in the number of links.
    by_key: Mapping[str, Node] = field(default_factory=dict, compare=False, repr=False)
    by_zone: Mapping[str | None, tuple[Node, ...]] = field(default_factory=dict, compare=False,
                                                           repr=False)

    def __post_init__(self) -> None:
        grouped: dict[str | None, list[Node]] = {}
        for node in self.nodes:
            grouped.setdefault(node.zone, []).append(node)
        object.__setattr__(self, "by_key", {n.key: n for n in self.nodes})
        object.__setattr__(self, "by_zone", {z: tuple(ns) for z, ns in grouped.items()})

    def node(self, key: str) -> Node:
        return self.by_key[key]

    def in_zone(self, zone: str | None) -> tuple[Node, ...]:
        """The nodes drawn in `zone`'s box, by name (None: ends elsewhere, outside boxes)."""
        return self.by_zone.get(zone, ())


def _zone_order(zones: Sequence[Zone], links: Sequence[Link], viewer: str) -> list[ZoneBox]:
    kinds: dict[str, str | None] = {z.name: z.kind for z in zones}
    for link in links:
        kinds.setdefault(link.zone, None)
    if home_zone(viewer) == GLOBAL_ZONE and any(lk.zone == GLOBAL_ZONE for lk in links):
        kinds.setdefault(GLOBAL_ZONE, "global")
    names = sorted(kinds, key=lambda n: (n != GLOBAL_ZONE, n))
    return [ZoneBox(f"cluster_{i}", n, kinds[n]) for i, n in enumerate(names, 1)]


class _Builder:
    def __init__(self, viewer: str, links: Sequence[Link], boxes: list[ZoneBox]) -> None:
        self.viewer = viewer
        self.position = {(lk.zone, lk.name): i for i, lk in enumerate(links)}
        rank = {b.name: i for i, b in enumerate(boxes)}
        self.links = sorted(links, key=lambda lk: (rank[lk.zone], lk.name))
        self.key = {(lk.zone, lk.name): f"n{i}" for i, lk in enumerate(self.links, 1)}
        self.by_name: dict[str, list[Link]] = {}
        for link in self.links:
            self.by_name.setdefault(link.name, []).append(link)
        self.far: list[Node] = []
        self.edges: list[Edge] = []

    def find(self, zone: str, name: str) -> Link | None:
        for link in self.by_name.get(name, ()):
            if link.zone == zone:
                return link
        return None

    def far_end(self, name: str | None, why: str) -> str:
        node = Node(f"x{len(self.far) + 1}", None, None, name, why)
        self.far.append(node)
        return node.key

    def peer_choice(self, link: Link) -> Link | None:
        """The veth that names `link` back, told apart as the module docstring says."""
        if link.peer is None:
            return None
        mutual = [c for c in self.by_name.get(link.peer, ())
                  if c.class_ == "veth" and c.peer == link.name and c is not link]
        if len(mutual) <= 1:
            return mutual[0] if mutual else None
        here = self.position[(link.zone, link.name)]
        for narrowed in ([c for c in mutual if abs(self.position[(c.zone, c.name)] - here) == 1],
                         [c for c in mutual if c.zone == link.zone]):
            if len(narrowed) == 1:
                return narrowed[0]
        return None

    def add_veth(self, link: Link, done: set[tuple[str, str]]) -> None:
        me = (link.zone, link.name)
        if me in done:
            return
        if link.peer is None:
            if link.state != "absent":
                self.edges.append(Edge("veth", self.key[me], self.far_end(None, "hidden")))
            return
        other = self.peer_choice(link)
        if other is not None and self.peer_choice(other) is link:
            them = (other.zone, other.name)
            done.add(them)
            self.edges.append(Edge("veth", self.key[me], self.key[them]))
            return
        named = [c for c in self.by_name.get(link.peer, ()) if c.class_ == "veth"]
        why = "ambiguous" if len(named) > 1 else "unlisted"
        self.edges.append(Edge("veth", self.key[me], self.far_end(link.peer, why)))

    def add_lower(self, link: Link) -> None:
        me = self.key[(link.zone, link.name)]
        if link.parent is None:
            if link.class_ in _ALWAYS_OVER and link.state != "absent":
                self.edges.append(Edge("lower", me, self.far_end(None, "hidden")))
            return
        lower = self.find(link.zone, link.parent) or self.find(GLOBAL_ZONE, link.parent)
        head = (self.key[(lower.zone, lower.name)] if lower is not None
                else self.far_end(link.parent, "unlisted"))
        self.edges.append(Edge("lower", me, head))

    def add_port(self, link: Link) -> None:
        if link.master is None:
            return
        bridge = self.find(link.zone, link.master)  # the kernel keeps ports by their bridge
        head = (self.key[(bridge.zone, bridge.name)] if bridge is not None
                else self.far_end(link.master, "unlisted"))
        self.edges.append(Edge("port", self.key[(link.zone, link.name)], head))


def build(viewer: str, zones: Sequence[Zone], links: Sequence[Link]) -> Topology:
    """The graph of what `viewer` (WhoAmI's zone) was shown: `zones` from ListZones/GetZone,
    `links` from ListLinks, in the order the broker listed them."""
    boxes = _zone_order(zones, links, viewer)
    b = _Builder(viewer, links, boxes)
    done: set[tuple[str, str]] = set()
    for link in b.links:
        if link.class_ == "veth":
            b.add_veth(link, done)
        b.add_lower(link)
        b.add_port(link)
    nodes = [Node(b.key[(lk.zone, lk.name)], lk.zone, lk) for lk in b.links]
    return Topology(viewer, tuple(boxes), tuple(nodes + b.far), tuple(b.edges))
