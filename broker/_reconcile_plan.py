"""What a reconciliation of one zone will do, decided without doing any of it (issue 16).

h11's lesson: decide without I/O. `plan_reconcile` reads a zone's table rows and what its
kernel holds (a dump), and returns a `ReconcilePlan`, plain data: which row is which kernel
link, which rows go, which stay absent, which kernel links are taken in and how many are
left out. Nothing is changed: broker._reconcile.commit_reconcile applies a plan to the table,
the store and the event bus in one place. So the matching rules (ifindex first, then name; a
lent link only while the kernel's facts still say it is the lent one; the link limit and the
per-pass cap) are tested as a table of inputs and plans (tests/unit/test_reconcile_plan.py),
with no broker, no SQLite and no kernel.

Matching, as dlmgmtd keeps a datalink's ID across renames: a row is first the kernel link
with its ifindex (a rename keeps the ID), else the one with its name (the link was made again,
or the broker restarted); a row may be any kernel link of its class, and a row is never
matched to a link another row took. A kernel link with no kind (`phys`) matches a row of any
class (the table's class came from the request that made it). `lo` is never in the table.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from broker._linkdump import KernelLink
from broker._table import LinkRecord
from broker.kinds import classify

__all__ = ["ReconcilePlan", "legacy_phys_rows", "plan_reconcile"]


@dataclass(frozen=True, slots=True)
class ReconcilePlan:
    """One zone's reconciliation, decided. IDs are the rows' link IDs."""

    # Each row that is still in the kernel -> the kernel link it is now (name, ifindex and
    # facts to copy; a different name is a rename).
    matched: Mapping[int, KernelLink]
    # Rows whose link is gone: dropped from the table and the store.
    stale: tuple[int, ...]
    # Persistent rows whose link is gone and that were present: kept, marked absent.
    absent: tuple[int, ...]
    # Kernel links the zone made that the table lacks, taken in in this order (their IDs
    # are allocated in this order too: oldest ifindex first).
    adopt: tuple[KernelLink, ...]
    # Kernel links beyond the zone's link limit (not adopted, counted against it).
    beyond: int
    # Kernel links left out of the table this pass (beyond the limit, or past the cap).
    unadopted: int
    # The per-pass cap stopped adoption short of the room the limit leaves: pass again.
    more: bool
    # How many kernel links the dump held (`lo` included): for the log.
    seen: int = 0


def _same_class(row: LinkRecord, k: KernelLink) -> bool:
    """Whether a row and a kernel link may be the same link (see the module docstring)."""
    return classify(k.kind, k.tun_tap) in (row.cls, "phys")


def legacy_phys_rows(rows: Sequence[LinkRecord], found: Sequence[KernelLink]
                     ) -> list[tuple[int, str | None]]:
    """Rows stored as `phys` before kinds without a module became `other` (issue 14) whose
    kernel link (by ifindex, else by name) is `other`, with that link's kernel kind: their
    class is corrected, ID kept, before they are matched (a data migration the caller
    applies)."""
    by_index = {k.ifindex: k for k in found}
    by_name = {k.name: k for k in found}
    out = []
    for row in rows:
        if row.cls != "phys":
            continue
        for k in (by_index.get(row.ifindex) if row.present and row.ifindex else None,
                  by_name.get(row.name)):
            if k is not None and classify(k.kind, k.tun_tap) == "other":
                out.append((row.id, k.kind))
                break
    return out


def plan_reconcile(
    rows: Sequence[LinkRecord], found: Sequence[KernelLink], *,
    holds: Callable[[LinkRecord, KernelLink], bool], limit: int | None,
    per_pass: int | None,
) -> ReconcilePlan:
    """Decide one zone's reconciliation. `rows`: the zone's table rows (classes already
    corrected by `legacy_phys_rows`); `found`: its kernel links; `holds`: whether a kernel
    link can still be a row that is on loan (broker._lending.lend_holds: true for the
    rest); `limit`: the zone's link limit (None: none); `per_pass`: the most links adopted
    in one pass (None: all, at boot and start-up). O(rows + links)."""
    by_index = {k.ifindex: k for k in found if k.name != "lo"}
    by_name = {k.name: k for k in found if k.name != "lo"}
    matched: dict[int, KernelLink] = {}
    for row in rows:
        k = by_index.get(row.ifindex) if row.present and row.ifindex else None
        if k is not None and _same_class(row, k) and holds(row, k):
            matched[row.id] = k
    taken = {k.ifindex for k in matched.values()}
    for row in rows:
        if row.id in matched:
            continue
        k = by_name.get(row.name)
        if k is not None and k.ifindex not in taken and _same_class(row, k) and holds(row, k):
            matched[row.id] = k
            taken.add(k.ifindex)
    stale = tuple(row.id for row in rows if row.id not in matched and not row.persistent)
    absent = tuple(row.id for row in rows
                   if row.id not in matched and row.persistent and row.present)
    # After the commit the zone holds its matched rows under their kernel names and its
    # unmatched persistent rows under theirs: a kernel link under one of those names is
    # not adopted (it counts against the limit all the same).
    names_after = {k.name for k in matched.values()} | {
        row.name for row in rows if row.id not in matched and row.persistent}
    rest = [k for k in found if k.ifindex not in taken and k.name != "lo"]
    held = len(rows) - len(stale)
    room = len(rest) if limit is None else max(0, min(len(rest), limit - held))
    take = room if per_pass is None else min(room, per_pass)
    adopt: tuple[KernelLink, ...] = ()
    if take:
        adopt = tuple(sorted((k for k in rest if k.name not in names_after),
                             key=lambda k: k.ifindex)[:take])
    return ReconcilePlan(
        matched=matched, stale=stale, absent=absent, adopt=adopt,
        beyond=len(rest) - room, unadopted=max(0, len(rest) - len(adopt)),
        more=per_pass is not None and len(adopt) == per_pass < room, seen=len(found),
    )
