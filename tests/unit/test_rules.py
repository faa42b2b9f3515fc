"""broker._rules: what a zone sees and may change.

The no-oracle rule is checked the strict way: a non-global caller's every answer (result or
exception, compared with ==) must be the same in a world where other zones hold links and
zones as in one where they hold nothing. Built from the same world, views must hide `peer`,
`parent` and `master` living in another zone from a non-global caller, and show them to global.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from broker._errors import (
    InvalidParameter,
    LinkbrokerError,
    LinkNotFound,
    NotOwner,
    ZoneNotFound,
)
from broker._ids import LinkIds
from broker._rules import (
    check_may_change,
    find_link,
    find_link_by,
    link_view,
    target_zone,
    visible_links,
    zone_view,
)
from broker._table import LinkRecord, LinkTable, ZoneRecord, ZoneTable
from broker._types import LinkClass


def add(table: LinkTable, link_id: int, name: str, zone: str, owner: str, *,
        cls: LinkClass = "veth", **extra: Any) -> LinkRecord:
    link = LinkRecord(id=link_id, name=name, cls=cls, zone=zone, owner=owner, **extra)
    table.add(link)
    return link


def boot(zones: ZoneTable, name: str, inode: int) -> None:
    zones.add(ZoneRecord(name=name, kind="netns", netns_inode=inode, netns=name))


class World:
    """Zones global, red and blue, with links spread across them.

    Red's links are the same, with the same IDs, whether or not `others` is set; `others`
    adds blue, its links, and global's links, some of them peers and parents of red's.
    """

    def __init__(self, others: bool = True) -> None:
        # IDs written by hand are below legacy_max: they order by their own numbers.
        self.links = LinkTable(ids=LinkIds(secret=bytes(23), next_seq=101, legacy_max=100))
        self.zones = ZoneTable()
        boot(self.zones, "red", 1001)
        t = self.links
        # Red's own view of itself: identical in both worlds.
        self.vred = add(t, 3, "vred0", "red", "global", peer_id=4, up=True, mtu=1500,
                        mac="02:00:00:00:00:03", ifindex=5)
        self.mv = add(t, 5, "mv0", "red", "global", cls="macvlan", parent_id=1, mode="bridge")
        self.lent = add(t, 6, "lent0", "red", "global", cls="phys", home_name="eth1")
        self.own0 = add(t, 7, "own0", "red", "red", peer_id=8, master_id=9)
        self.own1 = add(t, 8, "own1", "red", "red", peer_id=7)
        self.br1 = add(t, 9, "br1", "red", "red", cls="bridge")
        self.stray = add(t, 12, "stray", "red", "red", master_id=2)  # master left for global
        if others:
            boot(self.zones, "blue", 1002)
            self.eth0 = add(t, 1, "eth0", "global", "global", cls="phys", ifindex=2)
            self.br0 = add(t, 2, "br0", "global", "global", cls="bridge")
            self.vglob = add(t, 4, "vglob0", "global", "global", peer_id=3)
            add(t, 10, "secret", "blue", "blue", peer_id=11)
            add(t, 11, "secret", "global", "global", peer_id=10)
            add(t, 13, "lent0", "blue", "global", cls="phys")  # same name, lent to blue


def outcome(fn: Callable[[], object]) -> object:
    """A call's result or the exception it raised, so the two can be compared with ==."""
    try:
        return fn()
    except LinkbrokerError as exc:
        return exc


# --- target_zone --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("caller", "zone", "expected"),
    [
        ("global", None, "global"),
        ("global", "global", "global"),
        ("global", "red", "red"),
        ("global", "blue", "blue"),
        ("global", "nosuch", ZoneNotFound("nosuch")),
        ("red", None, "red"),
        ("red", "red", "red"),
        ("red", "blue", ZoneNotFound("blue")),  # booted, but not red's to see
        ("red", "global", ZoneNotFound("global")),
        ("red", "nosuch", ZoneNotFound("nosuch")),
    ],
)
def test_target_zone(caller: str, zone: str | None, expected: object) -> None:
    w = World()
    assert outcome(lambda: target_zone(caller, zone, w.zones)) == expected


# --- no oracle ----------------------------------------------------------------------------------

PROBE_NAMES = ("vred0", "own0", "lent0", "secret", "eth0", "vglob0", "br0", "nothing")
PROBE_ZONES = (None, "red", "blue", "global", "nosuch")


PROBE_IDS = (1, 2, 3, 4, 5, 6, 7, 10, 11, 13, 99)  # red's own, lent to red, others', none


@pytest.mark.parametrize("link_id", PROBE_IDS)
@pytest.mark.parametrize("zone", PROBE_ZONES)
def test_find_link_by_id_tells_red_nothing_about_other_zones(link_id: int,
                                                             zone: str | None) -> None:
    """IDs as handles (issue 14): the same answer whether other zones exist or not, and an
    ID of another zone's link answers as one never handed out (99)."""
    full, bare = World(others=True), World(others=False)

    def ask(w: World, i: int) -> object:
        found = outcome(lambda: find_link_by("red", None, zone, w.links, w.zones, link_id=i))
        return link_view("red", found, w.links) if isinstance(found, LinkRecord) else found

    assert ask(full, link_id) == ask(bare, link_id)
    link = full.links.get(link_id)
    if zone in (None, "red") and (link is None or link.zone != "red"):
        assert ask(full, link_id) == LinkNotFound(f"#{link_id}")  # as for 99, never issued


def test_find_link_by_id_or_name_and_never_both() -> None:
    w = World()
    assert find_link_by("red", None, None, w.links, w.zones, link_id=7) is w.own0
    assert find_link_by("red", "own0", None, w.links, w.zones, link_id=None) is w.own0
    # The global zone finds any zone's link by ID without naming the zone; with a zone,
    # only there.
    assert find_link_by("global", None, None, w.links, w.zones, link_id=7) is w.own0
    assert outcome(lambda: find_link_by("global", None, "blue", w.links, w.zones,
                                        link_id=7)) == LinkNotFound("#7")
    assert outcome(lambda: find_link_by("red", "own0", None, w.links, w.zones,
                                        link_id=7)) == InvalidParameter("id")
    assert outcome(lambda: find_link_by("red", None, None, w.links, w.zones,
                                        link_id=None)) == InvalidParameter("name")


@pytest.mark.parametrize("name", PROBE_NAMES)
@pytest.mark.parametrize("zone", PROBE_ZONES)
def test_find_link_tells_red_nothing_about_other_zones(name: str, zone: str | None) -> None:
    """Same name, same zone argument: the same answer whether other zones exist or not."""
    full, bare = World(others=True), World(others=False)

    def ask(w: World) -> object:
        found = outcome(lambda: find_link("red", name, zone, w.links, w.zones))
        return link_view("red", found, w.links) if isinstance(found, LinkRecord) else found

    assert ask(full) == ask(bare)


@pytest.mark.parametrize(
    ("name", "zone", "expected"),
    [
        ("secret", None, LinkNotFound("secret")),  # exists in blue and in global
        ("eth0", None, LinkNotFound("eth0")),  # exists in global
        ("nothing", None, LinkNotFound("nothing")),  # exists nowhere
        ("secret", "blue", ZoneNotFound("blue")),  # a booted zone, holding that name
        ("secret", "nosuch", ZoneNotFound("nosuch")),  # a zone that does not exist
        ("eth0", "global", ZoneNotFound("global")),
    ],
)
def test_red_gets_exactly_the_error_of_a_missing_name(
    name: str, zone: str | None, expected: LinkbrokerError
) -> None:
    w = World()
    with pytest.raises(type(expected)) as exc:
        find_link("red", name, zone, w.links, w.zones)
    assert exc.value == expected
    assert exc.value.parameters() == expected.parameters()


@pytest.mark.parametrize("zone", PROBE_ZONES)
@pytest.mark.parametrize("cls", [None, "veth", "phys", "bridge", "macvlan", "nonsense"])
def test_visible_links_tell_red_nothing_about_other_zones(zone: str | None, cls: str | None
                                                          ) -> None:
    full, bare = World(others=True), World(others=False)

    def ask(w: World) -> object:
        found = outcome(lambda: visible_links("red", zone, cls, w.links, w.zones))
        if isinstance(found, list):
            return [link_view("red", link, w.links) for link in found]
        return found

    assert ask(full) == ask(bare)


# Other zones' contents, generated: (zone, name, class, peer into red?).
_other = st.tuples(
    st.sampled_from(["global", "blue", "green"]),
    st.sampled_from(["eth0", "own0", "vred0", "x", "y", "secret"]),
    st.sampled_from(["phys", "veth", "bridge"]),
    st.booleans(),
)


@given(st.lists(_other, max_size=12), st.sampled_from((*PROBE_NAMES, "x", "y")),
       st.sampled_from((*PROBE_ZONES, "green")))
def test_no_oracle_for_any_other_zone_contents(
    others: list[tuple[str, str, LinkClass, bool]], name: str, zone: str | None
) -> None:
    """Whatever other zones hold (even links naming red's links as peers), red sees the same."""
    bare, full = World(others=False), World(others=False)
    boot(full.zones, "blue", 1002)
    boot(full.zones, "green", 1003)
    for n, (z, link_name, cls, peer_into_red) in enumerate(others, start=100):
        if full.links.name_taken(z, link_name):
            continue
        add(full.links, n, link_name, z, "global" if z == "global" else z, cls=cls,
            peer_id=full.own1.id if peer_into_red else None)

    def ask(w: World) -> list[object]:
        found = outcome(lambda: find_link("red", name, zone, w.links, w.zones))
        listed = outcome(lambda: visible_links("red", zone, None, w.links, w.zones))
        return [
            link_view("red", found, w.links) if isinstance(found, LinkRecord) else found,
            [link_view("red", x, w.links) for x in listed] if isinstance(listed, list) else listed,
            outcome(lambda: target_zone("red", zone, w.zones)),
        ]

    assert ask(full) == ask(bare)


# --- link_view ----------------------------------------------------------------------------------


def test_veth_peer_in_another_zone_is_hidden_from_red_and_shown_to_global() -> None:
    w = World()
    assert link_view("red", w.vred, w.links).peer is None
    assert link_view("global", w.vred, w.links).peer == "vglob0"


def test_parent_in_another_zone_is_hidden_from_red_and_shown_to_global() -> None:
    w = World()
    assert link_view("red", w.mv, w.links).parent is None
    assert link_view("global", w.mv, w.links).parent == "eth0"


def test_master_in_another_zone_is_hidden_from_red_and_shown_to_global() -> None:
    w = World()
    assert link_view("red", w.stray, w.links).master is None
    assert link_view("global", w.stray, w.links).master == "br0"


def test_relations_within_the_zone_are_shown_to_it() -> None:
    w = World()
    view = link_view("red", w.own0, w.links)
    assert (view.peer, view.master) == ("own1", "br1")
    assert link_view("red", w.own1, w.links).peer == "own0"


def test_a_zone_sees_nothing_of_a_link_in_a_third_zone() -> None:
    """Blue looking at (if it ever could) red's veth whose peer is in global: peer hidden."""
    w = World()
    assert link_view("blue", w.vred, w.links).peer is None
    assert link_view("blue", w.own0, w.links).peer is None  # own1 is in red, not blue


def test_view_copies_every_field() -> None:
    w = World()
    view = link_view("global", w.vred, w.links)
    assert (view.id, view.name, view.class_, view.zone, view.owner) == (
        3, "vred0", "veth", "red", "global")
    assert (view.onloan, view.persistent, view.state, view.ifindex) == (True, False, "up", 5)
    assert (view.mac, view.mtu) == ("02:00:00:00:00:03", 1500)
    vx = LinkRecord(id=20, name="vx0", cls="vxlan", zone="global", owner="global", vni=42,
                    remote="10.0.0.1", local="10.0.0.2", port=4789, mode=None)
    vview = link_view("global", vx, w.links)
    assert (vview.vni, vview.remote, vview.local, vview.port) == (42, "10.0.0.1", "10.0.0.2", 4789)
    assert link_view("red", w.mv, w.links).mode == "bridge"


@pytest.mark.parametrize(
    ("present", "up", "state", "ifindex"),
    [(True, True, "up", 9), (True, False, "down", 9), (False, True, "absent", None),
     (False, False, "absent", None)],
)
def test_view_state(present: bool, up: bool, state: str, ifindex: int | None) -> None:
    """An absent (persistent, not in the kernel) link has no ifindex, whatever was recorded."""
    link = LinkRecord(id=1, name="p", cls="bridge", zone="global", owner="global",
                      persistent=True, present=present, up=up, ifindex=9)
    view = link_view("global", link, LinkTable())
    assert (view.state, view.ifindex) == (state, ifindex)


@pytest.mark.parametrize(
    ("owner", "zone", "onloan"),
    [("global", "red", True), ("red", "red", False), ("global", "global", False)],
)
def test_view_onloan(owner: str, zone: str, onloan: bool) -> None:
    link = LinkRecord(id=1, name="x", cls="phys", zone=zone, owner=owner)
    for caller in ("global", zone):
        view = link_view(caller, link, LinkTable())
        assert view.onloan is onloan
        assert view.owner == owner


# --- check_may_change ---------------------------------------------------------------------------

LENT_OK = True  # SetLinkProperties touching only up/mtu
OWNER_ONLY = False  # DeleteLink, RenameLink, SetLinkProperties with mac or master


def _link(w: World, which: str) -> LinkRecord:
    link: LinkRecord = getattr(w, which)
    return link


@pytest.mark.parametrize(
    ("caller", "which", "lent_ok", "expected"),
    [
        # The global zone may change anything.
        ("global", "lent", OWNER_ONLY, None),
        ("global", "own0", OWNER_ONLY, None),
        ("global", "eth0", OWNER_ONLY, None),
        # A zone may change what it owns.
        ("red", "own0", OWNER_ONLY, None),
        ("red", "own0", LENT_OK, None),
        # On a lent link: up and mtu only; everything else names the owner, global.
        ("red", "lent", LENT_OK, None),
        ("red", "lent", OWNER_ONLY, NotOwner("lent0", "global")),
        ("red", "vred", LENT_OK, None),  # a veth end global made inside red is lent too
        ("red", "vred", OWNER_ONLY, NotOwner("vred0", "global")),
        ("red", "mv", OWNER_ONLY, NotOwner("mv0", "global")),
        # Lent to red is not lent to blue; global's own links are lent to no one.
        ("blue", "lent", LENT_OK, NotOwner("lent0", "global")),
        ("red", "eth0", LENT_OK, NotOwner("eth0", "global")),
    ],
)
def test_check_may_change(caller: str, which: str, lent_ok: bool,
                          expected: NotOwner | None) -> None:
    w = World()
    assert outcome(lambda: check_may_change(caller, _link(w, which), lent_ok=lent_ok)) == expected


# --- visible_links ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("caller", "zone", "cls", "ids"),
    [
        ("global", None, None, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13]),
        ("global", "global", None, [1, 2, 4, 11]),
        ("global", "red", None, [3, 5, 6, 7, 8, 9, 12]),
        ("global", "blue", None, [10, 13]),
        ("global", None, "phys", [1, 6, 13]),
        ("global", "red", "veth", [3, 7, 8, 12]),
        ("global", None, "tap", []),
        ("global", None, "nonsense", []),
        ("red", None, None, [3, 5, 6, 7, 8, 9, 12]),
        ("red", "red", None, [3, 5, 6, 7, 8, 9, 12]),
        ("red", None, "bridge", [9]),
        ("red", None, "macvlan", [5]),
        ("blue", None, None, [10, 13]),
    ],
)
def test_visible_links(caller: str, zone: str | None, cls: str | None, ids: list[int]) -> None:
    w = World()
    assert [link.id for link in visible_links(caller, zone, cls, w.links, w.zones)] == ids


@pytest.mark.parametrize(("caller", "zone"), [("red", "blue"), ("red", "global"),
                                              ("red", "nosuch"), ("global", "nosuch")])
def test_visible_links_of_an_unseen_zone(caller: str, zone: str) -> None:
    w = World()
    with pytest.raises(ZoneNotFound) as exc:
        visible_links(caller, zone, None, w.links, w.zones)
    assert exc.value == ZoneNotFound(zone)


def test_visible_links_are_ordered_by_id_after_renames_and_moves() -> None:
    """The index keeps insertion order; renames and moves reshuffle it, the listing must not."""
    w = World()
    w.links.place(w.vred, "red", "zz")  # re-inserted last in red's index
    w.links.place(w.own0, "red", "aa")
    w.links.place(w.eth0, "red", "eth0")  # moved into red, re-inserted last
    ids = [link.id for link in visible_links("red", None, None, w.links, w.zones)]
    assert ids == [1, 3, 5, 6, 7, 8, 9, 12]
    assert [x.id for x in visible_links("global", None, None, w.links, w.zones)] == sorted(
        x.id for x in w.links)


@given(st.permutations(list(range(1, 11))))
def test_visible_links_sorted_whatever_the_insertion_order(order: list[int]) -> None:
    """Listings come in creation order (the ID's sequence), not in the order of the table."""
    legacy = LinkIds(secret=bytes(23), next_seq=1000, legacy_max=999)
    links, zones = LinkTable(ids=legacy), ZoneTable()
    for link_id in order:
        add(links, link_id, f"l{link_id}", "global" if link_id % 3 else "red", "global")
    for caller in ("global", "red"):
        ids = [x.id for x in visible_links(caller, None, None, links, zones)]
        assert ids == sorted(ids)
    keyed = LinkTable(ids=LinkIds(secret=bytes(23)))
    made = [keyed.allocate_id() for _ in range(20)]
    for link_id in reversed(made):
        add(keyed, link_id, f"k{link_id}", "red", "red")
    assert [x.id for x in visible_links("red", None, None, keyed, zones)] == made


# --- zone_view ----------------------------------------------------------------------------------


def test_zone_view_lists_its_links_by_name() -> None:
    w = World()
    zone = ZoneRecord(name="red", kind="container", netns_inode=1001, pid=42, container="abc",
                      root="/proc/42/root", attached=True)
    view = zone_view(zone, w.links)
    assert view.links == ["br1", "lent0", "mv0", "own0", "own1", "stray", "vred0"]
    assert (view.name, view.kind, view.netns_inode, view.pid, view.container, view.root,
            view.attached, view.netns) == ("red", "container", 1001, 42, "abc",
                                           "/proc/42/root", True, None)
    empty = zone_view(ZoneRecord(name="green", kind="netns", netns_inode=7), w.links)
    assert empty.links == []
