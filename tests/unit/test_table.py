"""broker._table: the link and zone tables, the broker's whole memory.

The contract leans on three table facts: link IDs are allocated once and never reused, a name
is unique within a zone (and only there), and `onloan` is exactly "owner is global, zone is
not". A stateful hypothesis run drives LinkTable through arbitrary add/remove/place sequences
against a dict model and checks the indexes never disagree with it.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from broker._ids import LinkIds
from broker._table import LinkRecord, LinkTable, ZoneRecord, ZoneTable
from broker._types import LinkClass


def rec(
    link_id: int, name: str, zone: str = "global", owner: str | None = None,
    cls: LinkClass = "veth", **extra: Any,
) -> LinkRecord:
    return LinkRecord(
        id=link_id, name=name, cls=cls, zone=zone, owner=owner or zone, **extra
    )


# --- LinkRecord ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("owner", "zone", "onloan"),
    [
        ("global", "global", False),  # the host's own link
        ("global", "red", True),  # made by global inside red, or assigned there
        ("red", "red", False),  # red's own link
        ("red", "global", False),  # not a state the broker makes, and still not "on loan"
        ("red", "blue", False),
    ],
)
def test_onloan_is_owner_global_and_zone_not(owner: str, zone: str, onloan: bool) -> None:
    assert rec(1, "x", zone=zone, owner=owner).onloan is onloan


def test_onloan_follows_a_move() -> None:
    table = LinkTable()
    link = rec(table.allocate_id(), "eth1", "global")
    table.add(link)
    assert not link.onloan
    table.place(link, "red", "eth1")
    assert link.onloan
    table.place(link, "global", "eth1")
    assert not link.onloan


# --- LinkTable: IDs -----------------------------------------------------------------------------


def test_ids_come_in_creation_order_under_a_permutation() -> None:
    """IDs look unrelated to each other, but `order` gives back creation order."""
    table = LinkTable(ids=LinkIds(secret=(1).to_bytes(23, "big")))
    made = [rec(table.allocate_id(), f"l{n}") for n in range(50)]
    for link in made:
        table.add(link)
    assert len({link.id for link in made}) == 50
    assert [link.id for link in made] != sorted(link.id for link in made)
    assert sorted(made, key=table.order) == made


def test_removed_ids_are_not_handed_out_again() -> None:
    table = LinkTable()
    ids = []
    for n in range(3):
        ids.append(table.allocate_id())
        table.add(rec(ids[-1], f"l{n}"))
    for link_id in ids:
        table.remove(link_id)
    assert len(table) == 0
    assert table.allocate_id() not in ids


def test_adding_a_restored_record_moves_the_counter_past_it() -> None:
    """Records loaded from the store keep their IDs; new ones must come after them."""
    source = LinkTable(ids=LinkIds(secret=(7).to_bytes(23, "big")))
    first, second, third = (source.allocate_id() for _ in range(3))
    table = LinkTable(ids=LinkIds(secret=(7).to_bytes(23, "big")))
    table.add(rec(second, "old"))
    assert table.allocate_id() == third
    table.add(rec(first, "older"))  # an earlier ID never pulls the counter back
    assert table.ids.next_seq == 4


def test_restored_counter_is_kept() -> None:
    table = LinkTable(ids=LinkIds(secret=(3).to_bytes(23, "big"), next_seq=100))
    assert table.ids.seq_of(table.allocate_id()) == 100


# --- LinkTable: indexes -------------------------------------------------------------------------


def test_find_get_and_membership() -> None:
    table = LinkTable()
    a = rec(1, "eth0", "global", cls="phys")
    b = rec(2, "eth0", "red")  # the same name in another zone is another link
    table.add(a)
    table.add(b)
    assert table.find("global", "eth0") is a
    assert table.find("red", "eth0") is b
    assert table.find("blue", "eth0") is None
    assert table.find("red", "eth1") is None
    assert table.get(1) is a
    assert table.get(3) is None
    assert table.get(None) is None
    assert table.name_taken("red", "eth0")
    assert not table.name_taken("blue", "eth0")
    assert len(table) == 2
    assert {link.id for link in table} == {1, 2}
    assert table.in_zone("red") == [b]
    assert table.in_zone("nowhere") == []


def test_a_name_is_unique_within_a_zone() -> None:
    table = LinkTable()
    table.add(rec(1, "x", "red"))
    with pytest.raises(AssertionError):
        table.add(rec(2, "x", "red"))


def test_an_id_is_unique() -> None:
    table = LinkTable()
    table.add(rec(1, "x", "red"))
    with pytest.raises(AssertionError):
        table.add(rec(1, "y", "red"))


def test_remove_frees_the_name_and_returns_the_record() -> None:
    table = LinkTable()
    link = rec(table.allocate_id(), "x", "red")
    table.add(link)
    assert table.remove(link.id) is link
    assert table.remove(link.id) is None
    assert table.find("red", "x") is None
    assert not table.name_taken("red", "x")
    again = rec(table.allocate_id(), "x", "red")
    table.add(again)
    assert again.id != link.id
    assert table.find("red", "x") is again


def test_remove_clears_references_to_the_removed_link() -> None:
    """No record keeps pointing at a link that left: a reused pointer would show a wrong name."""
    table = LinkTable()
    gone = rec(1, "br0", cls="bridge")
    peer = rec(2, "v0", peer_id=1)
    port = rec(3, "v1", master_id=1)
    child = rec(4, "mv0", cls="macvlan", parent_id=1)
    other = rec(5, "v2", peer_id=2, master_id=3, parent_id=4)
    for link in (gone, peer, port, child, other):
        table.add(link)
    table.remove(1)
    assert (peer.peer_id, port.master_id, child.parent_id) == (None, None, None)
    assert (other.peer_id, other.master_id, other.parent_id) == (2, 3, 4)


def test_place_renames_and_moves() -> None:
    table = LinkTable()
    link = rec(1, "a", "global")
    table.add(link)
    table.place(link, "global", "b")  # rename
    assert (link.zone, link.name) == ("global", "b")
    assert table.find("global", "a") is None
    assert table.find("global", "b") is link
    table.place(link, "red", "b")  # move
    assert table.find("global", "b") is None
    assert table.find("red", "b") is link
    assert table.in_zone("global") == []
    assert table.in_zone("red") == [link]
    table.place(link, "red", "b")  # to where it already is: a no-op, not a clash
    assert table.find("red", "b") is link


def test_place_refuses_a_taken_name() -> None:
    table = LinkTable()
    a, b = rec(1, "a", "red"), rec(2, "b", "red")
    table.add(a)
    table.add(b)
    with pytest.raises(AssertionError):
        table.place(a, "red", "b")


def test_by_ifindex_is_per_zone_and_skips_absent_links() -> None:
    """Ifindexes are per namespace; an absent (persistent, not in the kernel) link has none."""
    table = LinkTable()
    host = rec(1, "eth0", "global", ifindex=2)
    red = rec(2, "v0", "red", ifindex=2)
    ghost = rec(3, "old", "red", ifindex=7, present=False)
    for link in (host, red, ghost):
        table.add(link)
    assert table.by_ifindex("global", 2) is host
    assert table.by_ifindex("red", 2) is red
    assert table.by_ifindex("red", 7) is None
    assert table.by_ifindex("blue", 2) is None


def test_iteration_is_a_snapshot() -> None:
    """Removing while iterating (as zone teardown does) must not break the loop."""
    table = LinkTable()
    for n in range(1, 6):
        table.add(rec(n, f"l{n}", "red"))
    for link in table:
        table.remove(link.id)
    assert len(table) == 0


# --- LinkTable: any sequence of operations ------------------------------------------------------

ZONES = ("global", "red", "blue")
NAMES = ("a", "b", "c", "eth0")


class LinkTableMachine(RuleBasedStateMachine):
    """LinkTable against a plain model: {id: (zone, name)} plus every ID ever handed out."""

    def __init__(self) -> None:
        super().__init__()
        self.table = LinkTable()
        self.model: dict[int, tuple[str, str]] = {}
        self.ever: list[int] = []

    @initialize(start=st.integers(1, 1000))
    def restore(self, start: int) -> None:
        """The counter as a restarted broker reloads it from the store."""
        self.table = LinkTable(ids=LinkIds(secret=(start).to_bytes(23, "big"), next_seq=start))

    def _free(self, zone: str, name: str) -> bool:
        return (zone, name) not in self.model.values()

    @rule(zone=st.sampled_from(ZONES), name=st.sampled_from(NAMES), peer=st.booleans())
    def add(self, zone: str, name: str, peer: bool) -> None:
        if not self._free(zone, name):
            return
        link_id = self.table.allocate_id()
        assert link_id not in self.ever, f"ID {link_id} handed out twice"
        self.ever.append(link_id)
        peer_id = next(iter(self.model), None) if peer else None
        self.table.add(rec(link_id, name, zone, peer_id=peer_id))
        self.model[link_id] = (zone, name)

    @precondition(lambda self: bool(self.model))
    @rule(data=st.data())
    def remove(self, data: st.DataObject) -> None:
        link_id = data.draw(st.sampled_from(sorted(self.model)))
        removed = self.table.remove(link_id)
        assert removed is not None and removed.id == link_id
        del self.model[link_id]

    @rule(link_id=st.integers(-1, 50))
    def remove_unknown(self, link_id: int) -> None:
        if link_id not in self.model:
            assert self.table.remove(link_id) is None

    @precondition(lambda self: bool(self.model))
    @rule(data=st.data(), zone=st.sampled_from(ZONES), name=st.sampled_from(NAMES))
    def place(self, data: st.DataObject, zone: str, name: str) -> None:
        link_id = data.draw(st.sampled_from(sorted(self.model)))
        if self.model[link_id] != (zone, name) and not self._free(zone, name):
            return
        link = self.table.get(link_id)
        assert link is not None
        self.table.place(link, zone, name)
        self.model[link_id] = (zone, name)

    @invariant()
    def indexes_agree_with_the_model(self) -> None:
        assert len(self.table) == len(self.model)
        for link_id, (zone, name) in self.model.items():
            link = self.table.get(link_id)
            assert link is not None and (link.zone, link.name) == (zone, name)
            assert self.table.find(zone, name) is link
        for zone in ZONES:
            assert sorted(link.id for link in self.table.in_zone(zone)) == sorted(
                i for i, (z, _) in self.model.items() if z == zone
            )
            for name in NAMES:
                assert self.table.name_taken(zone, name) == (not self._free(zone, name))

    @invariant()
    def the_counter_is_past_every_id_ever_used(self) -> None:
        assert all(self.table.ids.seq_of(i) < self.table.ids.next_seq for i in self.ever)

    @invariant()
    def no_reference_dangles(self) -> None:
        for link in self.table:
            assert link.peer_id is None or link.peer_id in self.model


LinkTableMachine.TestCase.settings = settings(max_examples=150, stateful_step_count=40)
TestLinkTable = LinkTableMachine.TestCase


# --- ZoneTable ----------------------------------------------------------------------------------


def zone(name: str, inode: int) -> ZoneRecord:
    return ZoneRecord(name=name, kind="netns", netns_inode=inode, netns=name)


def test_zone_table_indexes_by_name_and_inode() -> None:
    zones = ZoneTable()
    red, blue = zone("red", 4026531001), zone("blue", 4026531002)
    zones.add(red)
    zones.add(blue)
    assert zones.get("red") is red
    assert zones.by_inode(4026531002) is blue
    assert zones.get("green") is None
    assert zones.by_inode(1) is None
    assert len(zones) == 2
    assert {z.name for z in zones} == {"red", "blue"}


def test_zone_table_remove_clears_both_indexes() -> None:
    zones = ZoneTable()
    red = zone("red", 11)
    zones.add(red)
    assert zones.remove("red") is red
    assert zones.get("red") is None
    assert zones.by_inode(11) is None
    assert zones.remove("red") is None
    zones.add(zone("red", 11))  # a halted zone's name and namespace can boot again


@pytest.mark.parametrize(("name", "inode"), [("red", 99), ("green", 11)])
def test_zone_table_refuses_a_second_zone_with_the_same_name_or_inode(
    name: str, inode: int
) -> None:
    zones = ZoneTable()
    zones.add(zone("red", 11))
    with pytest.raises(AssertionError):
        zones.add(zone(name, inode))


def test_zone_iteration_is_a_snapshot() -> None:
    zones = ZoneTable()
    for n in range(4):
        zones.add(zone(f"z{n}", n))
    for z in zones:
        zones.remove(z.name)
    assert len(zones) == 0
