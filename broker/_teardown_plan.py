"""The order a zone's links are taken apart in when it halts, decided as plain data (issue 16).

broker._lifecycle.teardown_zone runs in three phases with the locks let go in between (a
zone of thousands of links must not hold the global lock across its deletes), so each phase
plans from the table as it then stands and its executor re-checks every link before acting:

1. `outward_steps`: what reaches into other zones, newest first: a lent link goes home, a
   veth with its other end elsewhere (an uplink's port on a host bridge) is removed.
2. `own_deletes`: one kernel delete per link the zone holds itself, newest first (ports and
   stacked links before their bridges and parents, so a persistent port is recorded still on
   its bridge), and only one per veth pair (the kernel removes the other end with it).
3. `leftovers`: the rows that stay (persistent, now absent) and the rows forgotten.

Pure: rows, their creation order and where a peer lives in; the answer is IDs in order.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

from broker._table import LinkRecord

__all__ = ["leftovers", "outward_steps", "own_deletes", "reaches_out"]

Step = Literal["home", "remove"]


def reaches_out(link: LinkRecord, peer_zone: str | None) -> bool:
    """Whether taking `link` out of its zone changes another zone: lent, or a veth with its
    other end elsewhere. `peer_zone`: the zone its peer is in (None: no peer)."""
    return link.onloan or (peer_zone is not None and peer_zone != link.zone)


def outward_steps(rows: Sequence[LinkRecord], *, order: Callable[[LinkRecord], int],
                  peer_zone: Callable[[LinkRecord], str | None]) -> list[tuple[int, Step]]:
    """Phase 1: the links that reach out, newest first, each with what is done to it."""
    return [(link.id, "home" if link.onloan else "remove")
            for link in sorted(rows, key=order, reverse=True)
            if reaches_out(link, peer_zone(link))]


def own_deletes(rows: Sequence[LinkRecord], *, order: Callable[[LinkRecord], int],
                peer_zone: Callable[[LinkRecord], str | None], dying: bool) -> list[int]:
    """Phase 2: the zone's own links to delete in the kernel, newest first, one per veth
    pair. None when the zone is `dying` (its namespace is going: the kernel takes its links
    with it, all at once), nor for a link absent from the kernel."""
    if dying:
        return []
    out: list[int] = []
    covered: set[int] = set()
    for link in sorted(rows, key=order, reverse=True):
        if reaches_out(link, peer_zone(link)):
            continue  # phase 1's (and 3's)
        if link.id not in covered and link.present and link.ifindex is not None:
            out.append(link.id)
        covered.update((link.id, link.peer_id or 0))
    return out


def leftovers(rows: Sequence[LinkRecord]) -> tuple[list[int], list[int]]:
    """Phase 3: (kept: persistent rows, marked absent; forgotten: the rest)."""
    return ([link.id for link in rows if link.persistent],
            [link.id for link in rows if not link.persistent])
