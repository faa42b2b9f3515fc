"""Event subscription, as nwamd's: every change is published once, each subscriber gets the
events its zone may see, rendered as its zone sees them.

A subscriber owns a bounded queue. Publishing never waits: when a subscriber's queue is full it
is marked overflowed, its stream ends with LimitExceeded and it is dropped, so a stalled client
can never slow the broker or anyone else.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

from broker._names import GLOBAL_ZONE, home_zone
from broker._types import Address, Event, EventKind, Link, Route

__all__ = ["EventBus", "Subscription"]

# Renders a link as one caller zone sees it (peer/parent/master hidden when invisible).
LinkRenderer = Callable[[str], Link]


@dataclass(eq=False)
class Subscription:
    caller: str
    zone: str | None
    limit: int
    queue: asyncio.Queue[Event | None] = field(init=False)
    overflowed: bool = False
    # Address and route events go only to subscribers that asked (Subscribe(addresses)).
    addresses: bool = False

    def __post_init__(self) -> None:
        self.queue = asyncio.Queue(self.limit)

    def wants(self, zone: str) -> bool:
        if self.caller != GLOBAL_ZONE:
            return zone == home_zone(self.caller)
        return self.zone is None or self.zone == zone


class EventBus:
    def __init__(self, queue_limit: int = 1024) -> None:
        self.queue_limit = queue_limit
        self.seq = 0
        # A zone's own count: a non-global subscriber's seq must not count other zones'
        # events (gaps would tell it what happens elsewhere).
        self._zone_seq: dict[str, int] = {}
        self._subs: set[Subscription] = set()

    def subscribe(self, caller: str, zone: str | None, *, addresses: bool = False
                  ) -> Subscription:
        sub = Subscription(caller, zone, self.queue_limit, addresses=addresses)
        self._subs.add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        self._subs.discard(sub)

    def forget_zone(self, zone: str) -> None:
        """A halted zone's count ends with it: a zone booted later under the same name (maybe
        another tenant) starts from 1 and learns nothing of its predecessor's history."""
        self._zone_seq.pop(zone, None)

    def publish(
        self,
        kind: EventKind,
        zone: str,
        render: LinkRenderer | None = None,
        old_name: str | None = None,
        *,
        address: Address | None = None,
        route: Route | None = None,
    ) -> None:
        self.seq += 1
        zone_seq = self._zone_seq[zone] = self._zone_seq.get(zone, 0) + 1
        for sub in list(self._subs):
            if not sub.wants(zone) or ((address or route) and not sub.addresses):
                continue
            link = render(sub.caller) if render is not None else None
            seq = self.seq if sub.caller == GLOBAL_ZONE else zone_seq
            event = Event(kind=kind, zone=zone, seq=seq, link=link, old_name=old_name,
                          address=address, route=route)
            try:
                sub.queue.put_nowait(event)
            except asyncio.QueueFull:
                sub.overflowed = True
                self._subs.discard(sub)
                # Wake the stream so it notices; a full queue has no room, so drop one.
                sub.queue.get_nowait()
                sub.queue.put_nowait(None)

    def close_all(self) -> None:
        for sub in list(self._subs):
            self._subs.discard(sub)
            if sub.queue.full():
                sub.queue.get_nowait()
            sub.queue.put_nowait(None)
