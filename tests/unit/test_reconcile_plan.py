"""broker._reconcile_plan: a zone's reconciliation decided as plain data, no broker, no store,
no kernel (issue 16). Each case is table rows and kernel links in, the exact plan out."""

from __future__ import annotations

from typing import Any

import pytest

from broker._linkdump import KernelLink
from broker._reconcile_plan import ReconcilePlan, legacy_phys_rows, plan_reconcile
from broker._table import LinkRecord


def row(link_id: int, name: str, ifindex: int | None, cls: Any = "bridge", *,
        persistent: bool = False, present: bool = True, onloan: bool = False) -> LinkRecord:
    # On loan: made by the global zone, held by red.
    return LinkRecord(id=link_id, name=name, cls=cls, zone="red",
                      owner="global" if onloan else "red", persistent=persistent,
                      present=present, ifindex=ifindex)


def kernel(ifindex: int, name: str, kind: str | None = "bridge") -> KernelLink:
    return KernelLink(ifindex=ifindex, name=name, kind=kind, mac=None, mtu=1500, up=False,
                      master=None, link=None, link_netnsid=None)


def always(_row: LinkRecord, _k: KernelLink) -> bool:
    return True


def plan(rows: list[LinkRecord], found: list[KernelLink], *, limit: int | None = None,
         per_pass: int | None = None, holds: Any = always) -> ReconcilePlan:
    return plan_reconcile(rows, found, holds=holds, limit=limit, per_pass=per_pass)


LO = kernel(1, "lo", None)


def test_a_rename_keeps_the_row_matched_by_ifindex() -> None:
    p = plan([row(10, "old", 5)], [LO, kernel(5, "new")])
    assert dict(p.matched) == {10: kernel(5, "new")}
    assert (p.stale, p.absent, p.adopt, p.beyond, p.unadopted, p.more) == ((), (), (), 0, 0,
                                                                         False)
    assert p.seen == 2


def test_a_link_made_again_is_matched_by_name() -> None:
    p = plan([row(10, "br0", 5)], [kernel(9, "br0")])
    assert dict(p.matched) == {10: kernel(9, "br0")}


def test_ifindex_wins_over_name_and_a_kernel_link_is_matched_once() -> None:
    # Row 10 holds ifindex 5 (now named "b"); row 11 is named "b" but its ifindex is gone:
    # ifindex 5 is taken by row 10, so row 11 has nothing and goes.
    p = plan([row(10, "a", 5), row(11, "b", 6)], [kernel(5, "b")])
    assert dict(p.matched) == {10: kernel(5, "b")}
    assert p.stale == (11,)


def test_vanished_rows_go_and_persistent_ones_stay_absent() -> None:
    rows = [row(10, "gone", 5), row(11, "kept", 6, persistent=True),
            row(12, "already", None, persistent=True, present=False)]
    p = plan(rows, [LO])
    assert (dict(p.matched), p.stale, p.absent) == ({}, (10,), (11,))


def test_a_kernel_link_of_another_class_is_not_the_row() -> None:
    p = plan([row(10, "x", 5, "bridge")], [kernel(5, "x", "veth")])
    assert (dict(p.matched), p.stale) == ({}, (10,))
    assert p.adopt == (kernel(5, "x", "veth"),)  # the zone's own new link


def test_a_kind_less_kernel_link_matches_a_row_of_any_class() -> None:
    p = plan([row(10, "eth1", 5, "veth")], [kernel(5, "eth1", None)])
    assert dict(p.matched) == {10: kernel(5, "eth1", None)}


def test_a_lent_link_is_matched_only_while_it_holds() -> None:
    lent = row(10, "l0", 5, "veth", onloan=True)
    assert plan([lent], [kernel(5, "l0", "veth")], holds=lambda r, k: False).stale == (10,)
    assert dict(plan([lent], [kernel(5, "l0", "veth")]).matched) == {10: kernel(5, "l0", "veth")}


def test_adoption_is_oldest_first_within_the_limit_and_counts_the_rest() -> None:
    found = [LO, kernel(9, "c"), kernel(7, "a"), kernel(8, "b")]
    p = plan([row(10, "mine", 6)], [*found, kernel(6, "mine")], limit=3)
    assert [k.name for k in p.adopt] == ["a", "b"]  # 3 - 1 held = room for 2, by ifindex
    assert (p.beyond, p.unadopted, p.more) == (1, 1, False)


def test_the_per_pass_cap_asks_for_another_pass() -> None:
    found = [kernel(i, f"n{i}") for i in range(10, 20)]
    p = plan([], found, per_pass=4)
    assert [k.ifindex for k in p.adopt] == [10, 11, 12, 13]
    assert (p.beyond, p.unadopted, p.more) == (0, 6, True)
    last = plan([], found[:4], per_pass=4)
    assert (len(last.adopt), last.more) == (4, False)  # exactly the cap: nothing left


def test_a_zone_at_its_limit_adopts_nothing() -> None:
    p = plan([row(10, "a", 5)], [kernel(5, "a"), kernel(6, "b")], limit=1)
    assert (p.adopt, p.beyond, p.unadopted) == ((), 1, 1)


def test_a_name_an_absent_persistent_row_keeps_is_not_adopted() -> None:
    # The persistent row's link went and another kind took its name: the row keeps the
    # name (absent), the newcomer stays out of the table but counts.
    rows = [row(10, "p0", 5, "veth", persistent=True)]
    p = plan(rows, [kernel(6, "p0", "bridge")])
    assert (p.absent, p.adopt, p.unadopted) == ((10,), (), 1)


@pytest.mark.parametrize(("kind", "expected"), [("ifb", [(10, "ifb")]), ("bridge", []),
                                                 (None, [])])
def test_rows_stored_as_phys_before_other_existed_are_corrected(
        kind: str | None, expected: list[tuple[int, str]]) -> None:
    rows = [row(10, "ifb0", 5, "phys"), row(11, "br0", 6, "bridge")]
    assert legacy_phys_rows(rows, [kernel(5, "ifb0", kind), kernel(6, "br0")]) == expected
