"""broker._teardown_plan: the order a halting zone's links are taken apart in, as plain data
(issue 16). Rows in, IDs in order out; no broker, no kernel."""

from __future__ import annotations

from typing import Any

from broker._table import LinkRecord
from broker._teardown_plan import leftovers, outward_steps, own_deletes, reaches_out


def row(link_id: int, name: str, *, owner: str = "red", zone: str = "red", cls: Any = "bridge",
        peer_id: int | None = None, present: bool = True, persistent: bool = False
        ) -> LinkRecord:
    return LinkRecord(id=link_id, name=name, cls=cls, zone=zone, owner=owner,
                      ifindex=link_id + 100 if present else None, present=present,
                      peer_id=peer_id, persistent=persistent)


# Creation order = the list order (IDs are opaque: the table's sequence decides).
BR = row(1, "br0")
PORT = row(2, "p0", cls="veth", peer_id=3)
PORT_PEER = row(3, "p0b", cls="veth", peer_id=2)
LENT = row(4, "l0", owner="global", cls="veth", peer_id=5)
UPLINK = row(6, "up0", cls="veth", peer_id=7)
GONE = row(8, "g0", present=False, persistent=True)
ROWS = [BR, PORT, PORT_PEER, LENT, UPLINK, GONE]
ZONES = {2: "red", 3: "red", 4: "global", 5: "global", 6: "red", 7: "global"}


def order(link: LinkRecord) -> int:
    return [x.id for x in ROWS].index(link.id)


def peer_zone(link: LinkRecord) -> str | None:
    return None if link.peer_id is None else ZONES[link.peer_id]


def test_what_reaches_out() -> None:
    assert [x.id for x in ROWS if reaches_out(x, peer_zone(x))] == [LENT.id, UPLINK.id]


def test_phase_one_sends_lent_links_home_and_removes_outward_veths_newest_first() -> None:
    assert outward_steps(ROWS, order=order, peer_zone=peer_zone) == [
        (UPLINK.id, "remove"), (LENT.id, "home")]


def test_phase_two_deletes_newest_first_once_per_pair_and_skips_absent_links() -> None:
    # The port's newer end (p0b) goes first and takes p0 with it; the bridge last.
    assert own_deletes(ROWS, order=order, peer_zone=peer_zone, dying=False) == [
        PORT_PEER.id, BR.id]


def test_a_dying_zone_deletes_nothing_one_by_one() -> None:
    assert own_deletes(ROWS, order=order, peer_zone=peer_zone, dying=True) == []


def test_phase_three_keeps_persistent_rows_and_forgets_the_rest() -> None:
    assert leftovers(ROWS) == ([GONE.id], [BR.id, PORT.id, PORT_PEER.id, LENT.id,
                                           UPLINK.id])
