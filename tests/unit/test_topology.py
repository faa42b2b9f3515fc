"""clients.linkadm.graph and .render: the picture of a caller's view, pure (linkadm's own).

Tables of views (as ListLinks returns them) go in; the graph's zones, nodes and edges, the DOT
text and the text tree come out. Zone views are made by the broker's own pure rules
(broker._rules.link_view over a LinkTable), so the no-oracle check below composes the real
hiding with the real drawing: another zone's names never reach a zone's picture.
"""

from __future__ import annotations

import random
import re
from typing import Any

import pytest

from broker._ids import LinkIds
from broker._rules import link_view, visible_links
from broker._table import LinkRecord, LinkTable, ZoneRecord, ZoneTable
from broker._types import Link, Zone
from clients.linkadm.graph import Topology, build
from clients.linkadm.render import dot_string, printable, render_dot, render_text

QUOTED = re.compile(r'"(?:[^"\\]|\\.)*"')


def link(name: str, cls: Any, zone: str, owner: str | None = None, **extra: Any) -> Link:
    owner = owner or zone
    extra.setdefault("state", "up")
    extra.setdefault("persistent", False)
    return Link(id=abs(hash((zone, name))) % 2**31, name=name, class_=cls, zone=zone,
                owner=owner, onloan=owner == "global" and zone != "global", **extra)


def zone(name: str) -> Zone:
    return Zone(name=name, kind="global" if name == "global" else "netns", netns_inode=1,
                attached=True, links=[])


ZONES = [zone("global"), zone("red"), zone("blue")]


def edges(topo: Topology) -> set[tuple[str, str, str]]:
    """Edges as (kind, tail, head) with nodes named zone/name, or ?label for ends elsewhere."""
    def name(key: str) -> str:
        node = topo.node(key)
        if node.link is None:
            return f"?{node.name or ''}:{node.why}"
        return f"{node.link.zone}/{node.link.name}"
    return canon({(e.kind, name(e.tail), name(e.head)) for e in topo.edges})


def canon(found: set[tuple[str, str, str]]) -> set[tuple[str, str, str]]:
    """A veth pair's two ends in name order: the pair has no direction."""
    out = set()
    for kind, tail, head in found:
        ends = sorted((tail, head)) if kind == "veth" and "?" not in head else [tail, head]
        out.add((kind, ends[0], ends[1]))
    return out


def veth(a: str, za: str, b: str, zb: str, owner: str = "global", **extra: Any) -> list[Link]:
    return [link(a, "veth", za, owner, peer=b, **extra), link(b, "veth", zb, owner, peer=a)]


@pytest.mark.parametrize(("listing", "expected"), [
    pytest.param(veth("vred", "red", "vblue", "blue"),
                 {("veth", "red/vred", "blue/vblue")}, id="cross-zone veth"),
    pytest.param(veth("va", "red", "vb", "red", owner="red"),
                 {("veth", "red/va", "red/vb")}, id="same-zone veth"),
    pytest.param([link("br0", "bridge", "red"), link("p0", "veth", "red", peer="p1",
                                                      master="br0"),
                  link("p1", "veth", "red", peer="p0")],
                 {("veth", "red/p0", "red/p1"), ("port", "red/p0", "red/br0")},
                 id="bridge port"),
    pytest.param([link("eth0", "phys", "global"),
                  link("mv0", "macvlan", "red", "global", parent="eth0")],
                 {("lower", "red/mv0", "global/eth0")}, id="macvlan over a host link"),
    pytest.param([link("eth0", "phys", "global"), link("eth0", "phys", "red"),
                  link("mv0", "macvlan", "red", parent="eth0")],
                 {("lower", "red/mv0", "red/eth0")}, id="parent in its own zone first"),
    pytest.param([link("br0", "bridge", "red"),
                  link("vx0", "vxlan", "red", parent="br0", vni=42)],
                 {("lower", "red/vx0", "red/br0")}, id="vxlan over underlay"),
    pytest.param([link("hbr", "bridge", "global"),
                  link("net0", "veth", "red", peer="lbu1"),
                  link("lbu1", "veth", "global", "red", peer="net0", master="hbr"),
                  link("net0", "veth", "blue", peer="lbu2"),
                  link("lbu2", "veth", "global", "blue", peer="net0", master="hbr")],
                 {("veth", "red/net0", "global/lbu1"), ("port", "global/lbu1", "global/hbr"),
                  ("veth", "blue/net0", "global/lbu2"), ("port", "global/lbu2", "global/hbr")},
                 id="uplinks of two zones on one host bridge"),
    pytest.param(veth("a", "red", "b", "blue") + veth("b", "global", "a", "global"),
                 {("veth", "red/a", "blue/b"), ("veth", "global/b", "global/a")},
                 id="same names twice: told apart by creation order"),
    pytest.param([link("a", "veth", "red", peer="b"), link("x", "bridge", "global"),
                  link("b", "veth", "global", peer="a"), link("y", "bridge", "global"),
                  link("b", "veth", "blue", peer="a"), link("z", "bridge", "global"),
                  link("a", "veth", "cyan", peer="b")],
                 {("veth", "red/a", "?b:ambiguous"), ("veth", "global/b", "?a:ambiguous"),
                  ("veth", "blue/b", "?a:ambiguous"), ("veth", "cyan/a", "?b:ambiguous")},
                 id="cannot tell: says so, draws no guess"),
    pytest.param([link("v0", "veth", "red"), link("mv0", "macvlan", "red"),
                  link("vx0", "vxlan", "red", vni=7)],
                 {("veth", "red/v0", "?:hidden"), ("lower", "red/mv0", "?:hidden")},
                 id="a zone's view: other ends hidden, a vxlan may have no lower"),
    pytest.param([link("v0", "veth", "red", "global", peer="vblue")],
                 {("veth", "red/v0", "?vblue:unlisted")}, id="-z red from the global zone"),
    pytest.param([link("v0", "veth", "red", state="absent", persistent=True),
                  link("mv0", "macvlan", "red", state="absent", persistent=True)],
                 set(), id="absent links draw no far end"),
])
def test_edges_from_a_listing(listing: list[Link], expected: set[tuple[str, str, str]]
                              ) -> None:
    assert edges(build("global", ZONES, listing)) == canon(expected)


def test_zones_global_first_halted_and_empty_ones_kept() -> None:
    listing = [link("v0", "veth", "gone", state="absent", persistent=True),
               link("eth0", "phys", "global")]
    topo = build("global", [zone("global"), zone("red"), zone("blue")], listing)
    assert [(b.name, b.kind) for b in topo.zones] == [
        ("global", "global"), ("blue", "netns"), ("gone", None), ("red", "netns")]
    dot = render_dot(topo)
    assert "halted: persistent configuration" in dot and 'label="no links"' in dot
    assert render_text(topo).splitlines()[-1] == "└── (no links)"


def test_same_view_same_bytes_whatever_the_listing_order() -> None:
    listing = [link("hbr", "bridge", "global"), link("mv0", "macvlan", "red", parent="v1"),
               *veth("v1", "red", "v2", "blue"), link("br", "bridge", "blue")]
    first = render_dot(build("global", ZONES, listing))
    for seed in range(5):
        shuffled = listing[:]
        random.Random(seed).shuffle(shuffled)
        assert render_dot(build("global", ZONES, shuffled)) == first
    assert "digraph linkbroker {" in first and first.endswith("}\n")


@pytest.mark.parametrize(("text", "quoted"), [
    ("eth0", '"eth0"'),
    ('a"b', '"a\\"b"'),
    ("a\\N", '"a\\\\N"'),  # \N would be the node's name in a label
    ("x\x01y", '"x\\\\x01y"'),  # a control byte shows as \x01, never acts
    ("ré{}->;", '"ré{}->;"'),
])
def test_dot_string(text: str, quoted: str) -> None:
    assert dot_string(text) == quoted


def test_hostile_names_stay_inside_labels() -> None:
    evil = 'zz"];x->y[a="'
    listing = [link(evil, "bridge", "red"), link("p\\G{zz", "veth", "red", master=evil)]
    dot = render_dot(build("global", [zone("red")], listing))
    residue = QUOTED.sub("", dot)
    assert "zz" not in residue  # every bit of a name is inside a quoted string
    assert residue.count("->") == 2  # the port and the far end: nothing injected
    assert printable("a\x1b[2Jb") == "a\\x1b[2Jb"
    assert "\x1b" not in render_text(build("global", [zone("red")],
                                           [link("a\x1b[2J", "bridge", "red")]))


def test_marks_lent_owner_persistent_and_down() -> None:
    listing = [link("vl0", "veth", "red", "global", peer="vl1", persistent=True),
               link("vl1", "veth", "global", peer="vl0", state="down"),
               link("lbu1", "veth", "global", "red")]
    dot = render_dot(build("global", ZONES, listing))
    assert re.search(r'n\d+ \[label="vl0\\nveth\\nlent by global, persistent".*'
                     r'color="#e65100".*peripheries=2', dot)
    assert re.search(r'label="vl1\\nveth\\ndown".*fillcolor="#eeeeee"', dot)
    assert 'label="lbu1\\nveth\\nowner red"' in dot
    text = render_text(build("global", ZONES, listing))
    assert "vl0 (veth, lent by global, persistent)  -- global/vl1" in text
    assert "vl1 (veth, down)  -- red/vl0" in text


def test_text_tree_nests_ports_under_their_bridge() -> None:
    listing = [link("hbr", "bridge", "global"),
               link("lbu1", "veth", "global", "red", peer="net0", master="hbr"),
               link("net0", "veth", "red", peer="lbu1"),
               link("mv0", "macvlan", "red", parent="net0")]
    assert render_text(build("global", ZONES, listing)) == (
        "links the global zone sees\n"
        "global zone\n"
        "└── hbr (bridge)\n"
        "    └── lbu1 (veth, owner red)  -- red/net0\n"
        "zone blue (netns)\n"
        "└── (no links)\n"
        "zone red (netns)\n"
        "├── mv0 (macvlan)  over net0\n"
        "└── net0 (veth)  -- global/lbu1\n")


# ---- the no-oracle rule, through the broker's own views ----------------------------------

def _world(with_others: bool) -> tuple[LinkTable, ZoneTable]:
    links, zones = LinkTable(ids=LinkIds.fresh()), ZoneTable()
    for i, name in enumerate(("red", "blue", "cyan"), 2):
        zones.add(ZoneRecord(name=name, kind="netns", netns_inode=i, netns=name))
    made: dict[str, LinkRecord] = {}

    def add(name: str, cls: Any, zone: str, owner: str, **extra: Any) -> LinkRecord:
        rec = LinkRecord(id=links.allocate_id(), name=name, cls=cls, zone=zone, owner=owner,
                         up=True, **extra)
        links.add(rec)
        made[f"{zone}/{name}"] = rec
        return rec

    if with_others:
        add("hostbr", "bridge", "global", "global")
        add("hostuplk", "veth", "global", "red", master_id=made["global/hostbr"].id)
        add("cyanbr", "bridge", "cyan", "cyan")
        add("hosteth", "phys", "global", "global")
    net0 = add("net0", "veth", "red", "red")
    add("vred", "veth", "red", "global")
    add("br0", "bridge", "red", "red")
    add("va", "veth", "red", "red", master_id=made["red/br0"].id)
    vb = add("vb", "veth", "red", "red")
    made["red/va"].peer_id, vb.peer_id = vb.id, made["red/va"].id
    add("mv0", "macvlan", "red", "global",
        parent_id=made["global/hosteth"].id if with_others else None)
    if with_others:
        blue = add("vblue", "veth", "blue", "global")
        made["red/vred"].peer_id, blue.peer_id = blue.id, made["red/vred"].id
        up = made["global/hostuplk"]
        net0.peer_id, up.peer_id = up.id, net0.id
    return links, zones


def _pictures(viewer: str, with_others: bool) -> tuple[str, str]:
    links, zones = _world(with_others)
    views = [link_view(viewer, rec, links)
             for rec in visible_links(viewer, None, None, links, zones)]
    zone_list = [Zone(name=viewer, kind="netns", netns_inode=2, attached=True, links=[])]
    topo = build(viewer, zone_list, views)
    return render_dot(topo), render_text(topo)


def test_a_zone_picture_is_the_same_whatever_other_zones_hold() -> None:
    assert _pictures("red", True) == _pictures("red", False)
    dot, text = _pictures("red", True)
    for hidden in ("hostbr", "hostuplk", "cyanbr", "hosteth", "vblue", "blue", "cyan"):
        assert hidden not in dot and hidden not in text
    # Its two veths that lead out, and the macvlan's lower link: three anonymous ends.
    assert dot.count('label="elsewhere"') == 3
    assert "net0 (veth)  -- elsewhere" in text and "mv0 (macvlan, lent by global)  over " \
        "elsewhere" in text


def test_the_global_zone_sees_the_same_world_whole() -> None:
    links, zones = _world(True)
    views = [link_view("global", rec, links)
             for rec in visible_links("global", None, None, links, zones)]
    topo = build("global", [zone("global"), zone("red"), zone("blue"), zone("cyan")], views)
    assert edges(topo) == canon({
        ("port", "global/hostuplk", "global/hostbr"), ("veth", "red/net0", "global/hostuplk"),
        ("veth", "red/vred", "blue/vblue"), ("port", "red/va", "red/br0"),
        ("veth", "red/va", "red/vb"), ("lower", "red/mv0", "global/hosteth")})
    assert 'label="elsewhere"' not in render_dot(topo)
