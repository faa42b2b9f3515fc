"""broker._events: who gets which event, rendered how, and what a stalled subscriber costs.

A non-global subscriber gets only its own zone's events, with links rendered as that zone sees
them; the global zone gets all, or one zone's. A subscriber whose queue fills is marked
overflowed, dropped and woken, and nobody else notices. Each test runs its body in its own
event loop through asyncio.run, as the broker does.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

from broker._events import EventBus, Subscription
from broker._rules import link_view
from broker._table import LinkRecord, LinkTable
from broker._types import Event, Link


def run(body: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(body())


def drain(sub: Subscription) -> list[Event | None]:
    items: list[Event | None] = []
    while not sub.queue.empty():
        items.append(sub.queue.get_nowait())
    return items


def events(sub: Subscription) -> list[Event]:
    items = drain(sub)
    assert None not in items
    return [e for e in items if e is not None]


def veth_pair() -> tuple[LinkTable, LinkRecord]:
    """v0 in red (made by global, so on loan) whose peer p0 stayed in global."""
    table = LinkTable()
    v0 = LinkRecord(id=1, name="v0", cls="veth", zone="red", owner="global", peer_id=2)
    table.add(v0)
    table.add(LinkRecord(id=2, name="p0", cls="veth", zone="global", owner="global", peer_id=1))
    return table, v0


def renderer(table: LinkTable, link: LinkRecord, calls: list[str]) -> Callable[[str], Link]:
    def render(caller: str) -> Link:
        calls.append(caller)
        return link_view(caller, link, table)

    return render


# --- who gets what ------------------------------------------------------------------------------

PUBLISHED = ["red", "blue", "global", "red", "green"]


@pytest.mark.parametrize(
    ("caller", "zone", "expected"),
    [
        ("red", None, ["red", "red"]),
        ("red", "red", ["red", "red"]),
        # Even if a caller's zone argument got this far, it cannot widen a zone's view.
        ("red", "blue", ["red", "red"]),
        ("red", "global", ["red", "red"]),
        ("blue", None, ["blue"]),
        ("global", None, PUBLISHED),
        ("global", "red", ["red", "red"]),
        ("global", "global", ["global"]),
        ("global", "nosuch", []),
    ],
)
def test_subscribers_get_the_zones_they_may_see(caller: str, zone: str | None,
                                                expected: list[str]) -> None:
    async def body() -> None:
        bus = EventBus()
        sub = bus.subscribe(caller, zone)
        for z in PUBLISHED:
            bus.publish("link_changed", z)
        assert [e.zone for e in events(sub)] == expected

    run(body)


def test_links_are_rendered_as_each_subscriber_sees_them() -> None:
    """Red gets v0 with its peer hidden (p0 is in global); global gets the peer's name."""

    async def body() -> None:
        table, v0 = veth_pair()
        bus = EventBus()
        red, host, blue = (bus.subscribe("red", None), bus.subscribe("global", None),
                           bus.subscribe("blue", None))
        calls: list[str] = []
        bus.publish("link_added", "red", renderer(table, v0, calls))
        (red_event,) = events(red)
        (host_event,) = events(host)
        assert events(blue) == []
        assert red_event.link is not None and host_event.link is not None
        assert red_event.link.peer is None
        assert host_event.link.peer == "p0"
        assert red_event.link == link_view("red", v0, table)
        assert sorted(calls) == ["global", "red"]  # never rendered for blue

    run(body)


def test_nothing_is_rendered_when_nobody_wants_the_event() -> None:
    async def body() -> None:
        table, v0 = veth_pair()
        bus = EventBus()
        bus.subscribe("blue", None)
        bus.subscribe("global", "blue")
        calls: list[str] = []
        bus.publish("link_added", "red", renderer(table, v0, calls))
        assert calls == []

    run(body)


def test_zone_events_carry_no_link() -> None:
    async def body() -> None:
        bus = EventBus()
        red, host = bus.subscribe("red", None), bus.subscribe("global", None)
        bus.publish("zone_booted", "red")
        expected = Event(kind="zone_booted", zone="red", seq=1)
        assert events(red) == [expected]
        assert events(host) == [expected]

    run(body)


def test_old_name_is_passed_through() -> None:
    async def body() -> None:
        table, v0 = veth_pair()
        bus = EventBus()
        sub = bus.subscribe("red", None)
        bus.publish("link_renamed", "red", renderer(table, v0, []), old_name="v9")
        (event,) = events(sub)
        assert (event.kind, event.old_name) == ("link_renamed", "v9")

    run(body)


def test_seq_grows_by_one_per_publication_and_is_shared() -> None:
    async def body() -> None:
        bus = EventBus()
        a, b = bus.subscribe("global", None), bus.subscribe("global", None)
        bus.publish("zone_booted", "red")  # nobody asked for red only: still numbered
        bus.publish("zone_booted", "blue")
        assert [e.seq for e in events(a)] == [1, 2]
        assert [e.seq for e in events(b)] == [1, 2]
        assert bus.seq == 2

    run(body)


def test_a_waiting_stream_is_woken_by_events_and_by_the_end() -> None:
    """The server's stream awaits queue.get(); publishing must wake it, and None ends it."""

    async def body() -> None:
        bus = EventBus()
        sub = bus.subscribe("red", None)
        got: list[Event] = []

        async def stream() -> None:
            while (event := await sub.queue.get()) is not None:
                got.append(event)

        task = asyncio.ensure_future(stream())
        await asyncio.sleep(0)
        bus.publish("link_added", "red")
        bus.publish("link_added", "blue")
        await asyncio.sleep(0)
        assert [e.seq for e in got] == [1]
        bus.close_all()
        await asyncio.wait_for(task, 1)
        assert not sub.overflowed

    run(body)


# --- overflow -----------------------------------------------------------------------------------


@pytest.mark.parametrize("limit", [1, 2, 5])
def test_overflow_marks_drops_and_wakes_only_the_stalled_subscriber(limit: int) -> None:
    async def body() -> None:
        bus = EventBus(queue_limit=limit)
        stalled = bus.subscribe("red", None)
        reader = bus.subscribe("red", None)  # same zone, keeps up
        host = bus.subscribe("global", None)  # keeps up
        idle = bus.subscribe("blue", None)  # never reads, never gets anything
        got_reader: list[Event] = []
        got_host: list[Event] = []
        for _ in range(limit + 3):
            bus.publish("link_changed", "red")
            got_reader += events(reader)
            got_host += events(host)
        assert stalled.overflowed
        backlog = drain(stalled)
        assert backlog[-1] is None  # the stream is woken to send LimitExceeded
        assert len(backlog) <= limit
        assert backlog[:-1] == [e for e in backlog[:-1] if e is not None]
        # Dropped for good: later events do not reach it.
        bus.publish("link_changed", "red")
        assert stalled.queue.empty()
        got_reader += events(reader)
        got_host += events(host)
        for sub, got in ((reader, got_reader), (host, got_host)):
            assert not sub.overflowed
            assert [e.seq for e in got] == list(range(1, limit + 5))
        assert not idle.overflowed
        assert events(idle) == []

    run(body)


def test_events_kept_for_an_overflowed_subscriber_stay_in_order() -> None:
    async def body() -> None:
        bus = EventBus(queue_limit=3)
        sub = bus.subscribe("global", None)
        for _ in range(4):
            bus.publish("link_changed", "red")
        seqs = [e.seq for e in drain(sub) if e is not None]
        assert seqs == sorted(seqs)
        assert all(1 <= s <= 4 for s in seqs)

    run(body)


def test_unsubscribe_stops_delivery_and_is_idempotent() -> None:
    async def body() -> None:
        bus = EventBus()
        sub = bus.subscribe("red", None)
        bus.unsubscribe(sub)
        bus.unsubscribe(sub)
        bus.publish("link_changed", "red")
        assert sub.queue.empty()

    run(body)


def test_unsubscribe_after_overflow_is_harmless() -> None:
    async def body() -> None:
        bus = EventBus(queue_limit=1)
        sub = bus.subscribe("red", None)
        bus.publish("link_changed", "red")
        bus.publish("link_changed", "red")
        assert sub.overflowed
        bus.unsubscribe(sub)  # the server's `finally` does this

    run(body)


def test_close_all_ends_every_stream_even_a_full_one() -> None:
    async def body() -> None:
        bus = EventBus(queue_limit=2)
        full, empty = bus.subscribe("red", None), bus.subscribe("global", "blue")
        bus.publish("link_changed", "red")
        bus.publish("link_changed", "red")
        assert full.queue.full()
        bus.close_all()
        for sub in (full, empty):
            assert drain(sub)[-1] is None
            assert not sub.overflowed  # a shutdown is not the subscriber's fault
        bus.publish("link_changed", "red")
        assert full.queue.empty()
        assert empty.queue.empty()

    run(body)


# --- no oracle ----------------------------------------------------------------------------------


def test_a_zones_event_stream_tells_it_nothing_about_other_zones() -> None:
    """The contract: no field tells a non-global zone what other zones hold or do. Red's
    stream should be the same whether or not blue was busy; but `seq` is one counter for the
    whole broker, so red receiving seq 1 then seq 3 learns that one event happened elsewhere
    (e.g. how many links blue created between two of red's changes).
    """

    async def body() -> None:
        quiet, busy = EventBus(), EventBus()
        red_quiet, red_busy = quiet.subscribe("red", None), busy.subscribe("red", None)
        quiet.publish("link_added", "red")
        quiet.publish("link_added", "red")
        busy.publish("link_added", "red")
        busy.publish("link_added", "blue")
        busy.publish("link_added", "red")
        assert events(red_busy) == events(red_quiet)

    run(body)
