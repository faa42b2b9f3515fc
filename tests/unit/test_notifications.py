"""What the zone monitor reads out of RTNLGRP_LINK notifications, and when the table already
holds all of it (issue 19: the broker's own writes answered without a dump). Pure: crafted
datagrams and an in-memory table."""

from __future__ import annotations

import struct
from pathlib import Path

from broker._linkdump import link_notifications, parse_link_message
from broker._reconcile import known
from broker._service import Broker
from broker._store import Store
from broker._table import LinkRecord


def attr(kind: int, value: bytes) -> bytes:
    return struct.pack("=HH", 4 + len(value), kind) + value + b"\0" * (-len(value) % 4)


def msg(kind: int, index: int, name: str = "", mtu: int | None = None, *, up: bool = False,
        mac: str | None = None, master: int | None = None, link_kind: str | None = None
        ) -> bytes:
    """An RTM_NEWLINK (16) or RTM_DELLINK (17) as the kernel writes one."""
    attrs = attr(3, name.encode() + b"\0") if name else b""
    if mtu is not None:
        attrs += attr(4, struct.pack("=I", mtu))
    if mac is not None:
        attrs += attr(1, bytes.fromhex(mac.replace(":", "")))
    if master is not None:
        attrs += attr(10, struct.pack("=I", master))
    if link_kind is not None:
        attrs += attr(18, attr(1, link_kind.encode() + b"\0"))
    body = struct.pack("=BxHiII", 0, 1, index, 1 if up else 0, 0) + attrs
    return struct.pack("=IHHII", 16 + len(body), kind, 0, 0, 0) + body


def test_notifications_are_read_message_by_message() -> None:
    data = msg(16, 5, "eth1", 1400, up=True) + msg(17, 7) + msg(17, 9)
    said, whole = link_notifications(data)
    assert whole and [(i, k is None) for i, k in said] == [(5, False), (7, True), (9, True)]
    raw = said[0][1]
    assert raw is not None
    k = parse_link_message(raw)
    assert k is not None and (k.name, k.mtu, k.up) == ("eth1", 1400, True)
    assert parse_link_message(msg(17, 7)) is None  # a deletion is not a link to read
    assert parse_link_message(raw[:20]) is None
    # A message cut short ends the datagram, and says so: the monitor must dump.
    said, whole = link_notifications(data[:-1])
    assert not whole and [i for i, _ in said] == [5, 7]
    assert link_notifications(struct.pack("=IHHII", 8, 17, 0, 0, 0)) == ([], False)
    assert link_notifications(struct.pack("=IHHII", 16, 16, 0, 0, 0)) == ([], False)
    assert link_notifications(b"") == ([], True)


def kernel(ifindex: int, name: str, *, mtu: int = 1500, up: bool = False,
           mac: str = "02:00:00:00:00:01", master: int | None = None,
           link_kind: str = "veth") -> bytes:
    return msg(16, ifindex, name, mtu, up=up, mac=mac, master=master, link_kind=link_kind)


def test_known_only_when_the_table_holds_every_fact_said(tmp_path: Path) -> None:
    broker = Broker(store=Store(str(tmp_path / "state")), socket_path="/unused")
    table = broker.links
    a = LinkRecord(id=table.allocate_id(), name="a", cls="veth", zone="z", owner="z",
                   ifindex=4, mac="02:00:00:00:00:01", mtu=1500)
    br = LinkRecord(id=table.allocate_id(), name="br", cls="bridge", zone="z", owner="z",
                    ifindex=6, mac="02:00:00:00:00:02", mtu=1500, up=True)
    table.add(a)
    table.add(br)
    assert known(broker, "z", {})
    assert known(broker, "z", {4: kernel(4, "a")})  # what the broker's own commit wrote
    assert known(broker, "z", {9: None})  # a deletion the table already shows
    assert known(broker, "z", {1: msg(16, 1, "lo", 65536)})  # lo is never in the table
    assert not known(broker, "z", {4: None})  # deleted behind the broker's back
    assert not known(broker, "z", {5: kernel(5, "new")})  # a link the table lacks
    assert not known(broker, "z", {4: kernel(4, "renamed")})
    assert not known(broker, "z", {4: kernel(4, "a", mtu=1400)})
    assert not known(broker, "z", {4: kernel(4, "a", up=True)})
    assert not known(broker, "z", {4: kernel(4, "a", mac="02:00:00:00:00:09")})
    assert not known(broker, "z", {4: kernel(4, "a", link_kind="bridge")})
    assert not known(broker, "z", {4: kernel(4, "a", master=6)})  # joined br outside
    a.master_id = br.id
    assert known(broker, "z", {4: kernel(4, "a", master=6)})
    assert not known(broker, "z", {4: kernel(4, "a")})  # left br outside
    assert not known(broker, "z", {4: kernel(4, "a", master=6)[:40]})  # unreadable
    # One unknown fact among known ones is enough to need a dump.
    assert not known(broker, "z", {4: kernel(4, "a", master=6), 5: kernel(5, "new")})
    a.owner = "global"  # on loan to z: the lend is judged from a dump, always
    assert a.onloan and not known(broker, "z", {4: kernel(4, "a", master=6)})
