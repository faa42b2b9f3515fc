"""Keeps the table true when someone works behind the broker's back, without polling links.

Each booted zone gets a netlink socket (made inside the zone, like every other) subscribed to
RTNLGRP_LINK. Any link message there (new, deleted, renamed, moved in or out, MTU or state
changed) marks the zone dirty; a dirty zone gets one resync (a dump and a reconciliation under
the zone's lock, so it never interleaves with the broker's own writes) a moment later.
Coalesced: at most one resync per zone runs at a time, messages that arrive meanwhile make
exactly one more, and the next one waits at least as long as the last took, so a zone that
makes 20,000 links in a loop costs a handful of dumps and at most half of one core, not
20,000 dumps queued on its lock. A lost message (ENOBUFS) cannot make the table wrong: the
dump is the truth.

What the messages say is kept, the last message per ifindex (`_heard`): before dumping,
the resync asks whether every link heard of already stands in the table as the message
shows it (broker._lifecycle.resync, broker._reconcile.known). The broker's own writes are
followed by exactly such messages (its commit wrote the same facts), so under a zone's write
churn the monitor costs a comparison per message instead of a dump and a reconciliation of
the whole zone per burst. Anything that cannot be judged from the messages alone makes the
next resync dump: a message that could not be read whole, lost messages (ENOBUFS), a pass
that left work (`poke`). RTM_DELLINK's ifindex is also handed on at once (`deleted`),
because a link leaving the zone ends a lend for good, whatever the zone makes next under
the same name and ifindex; when messages were lost (`take_overflow`), the broker checks its
lent links' kernel facts instead.

A zone whose namespace dies is halted on its own: for a process or container zone, when its
process exits (its pidfd polls readable); for a netns zone, when /run/netns/NAME no longer
names the booted namespace (checked once a second: a bind mount has no exit notification).

The monitor's socket is made inside the zone by an opener thread (zones._ns): `opened` awaits
that thread, where the constructor without a socket would join it on the event loop. Its
tasks (resyncs, the halt, the poll) belong to the daemon's owner (broker._tasks, stage
ZONES): held, their failures logged, cancelled and awaited at shutdown. The monitor also
keeps its own, so that `close` (a halt) cancels this zone's work alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import socket
from collections.abc import Callable, Coroutine
from typing import Any

from broker._linkdump import link_notifications
from broker._tasks import Stage, Tasks, owner
from zones._ns import in_netns

__all__ = ["ZoneMonitor"]

log = logging.getLogger("linkbroker.monitor")
RTMGRP_LINK = 0x1
_DEBOUNCE = 0.05
_MAX_GAP = 2.0  # the longest a dirty zone waits, however slow its last resync was
_Job = Callable[[str], Coroutine[Any, Any, None]]


def _link_socket() -> socket.socket:
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_NONBLOCK
                         | socket.SOCK_CLOEXEC, socket.NETLINK_ROUTE)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    sock.bind((0, RTMGRP_LINK))
    return sock


class ZoneMonitor:
    def __init__(self, zone: str, sock: socket.socket, resync: _Job, gone: _Job,
                 deleted: Callable[[str, list[int]], None] | None = None, *,
                 tasks: Tasks | None = None) -> None:
        """`sock`: the zone's link socket, bound to RTMGRP_LINK inside the zone (`opened`
        makes it off the loop). `tasks`: the owner of its tasks (default: the loop's)."""
        self.zone = zone
        self._resync = resync
        self._gone = gone
        self._deleted = deleted
        self._dirty = False
        self._running = False
        self._overflow = False
        # The last message heard per ifindex since the last take_heard (None: deleted);
        # `_unsure` when the messages alone cannot tell what changed.
        self._heard: dict[int, bytes | None] = {}
        self._unsure = False
        self._delay = _DEBOUNCE
        self.resyncs = 0  # how many ran: the tests' proof that bursts are coalesced
        self._loop = asyncio.get_running_loop()
        self._owner = tasks if tasks is not None else owner()
        self._sock = sock
        self._loop.add_reader(self._sock.fileno(), self._on_link_message)
        self._pending: asyncio.TimerHandle | None = None
        self._pidfd: int | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False

    @classmethod
    async def opened(cls, zone: str, netns_fd: int | None, resync: _Job, gone: _Job,
                     deleted: Callable[[str, list[int]], None] | None = None, *,
                     tasks: Tasks | None = None) -> ZoneMonitor:
        """A monitor whose socket was made off the loop: the opener thread is awaited, not
        joined. The socket is bound (hearing the zone) when this returns, as with the
        constructor, so a caller that replies afterwards misses no change made after it."""
        sock = await in_netns(netns_fd, _link_socket)
        try:
            return cls(zone, sock, resync, gone, deleted, tasks=tasks)
        except BaseException:
            sock.close()
            raise

    def watch_pid(self, pid: int) -> None:
        try:
            self._pidfd = os.pidfd_open(pid)
        except OSError:
            self._spawn(self._gone(self.zone), "gone")
            return
        self._loop.add_reader(self._pidfd, self._on_exit)

    def watch_netns(self, still_there: Callable[[], bool]) -> None:
        async def poll() -> None:
            while not self._closed:
                await asyncio.sleep(1.0)
                if not self._closed and not still_there():
                    await self._gone(self.zone)
                    return

        self._spawn(poll(), "netns poll")

    def _spawn(self, coro: Coroutine[Any, Any, None], what: str) -> None:
        task = self._owner.spawn(coro, name=f"zone {self.zone}: {what}", stage=Stage.ZONES)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def drain(self) -> None:
        """Read every queued message now (also called right before a reconciliation, so
        a deletion the dump already reflects is known first)."""
        if self._closed:
            return
        gone: list[int] = []
        while True:
            try:
                data = self._sock.recv(1 << 16)
            except BlockingIOError:
                break
            except OSError as exc:
                if exc.errno != errno.ENOBUFS:
                    break
                # Messages lost: the dump covers links, not deletions.
                self._overflow = self._unsure = True
                self._dirty = True
                continue
            if not data:
                break
            self._dirty = True
            said, whole = link_notifications(data)
            self._unsure = self._unsure or not whole
            for ifindex, message in said:
                self._heard[ifindex] = message
                if message is None:
                    gone.append(ifindex)
        if gone and self._deleted is not None:
            self._deleted(self.zone, gone)

    def poke(self) -> None:
        """Ask for one more resync (a reconciliation that left work for a next pass)."""
        self._dirty = self._unsure = True
        self._schedule()

    def take_heard(self) -> dict[int, bytes | None] | None:
        """What the messages since the last call said, by ifindex; None when they cannot
        tell (a message unread, messages lost, a pass asked for): then only a dump can."""
        heard, unsure = self._heard, self._unsure
        self._heard, self._unsure, self._dirty = {}, False, False
        return None if unsure else heard

    def take_overflow(self) -> bool:
        """Whether messages were lost since the last call."""
        lost, self._overflow = self._overflow, False
        return lost

    def _on_link_message(self) -> None:
        self.drain()
        self._schedule()

    def _schedule(self) -> None:
        if (self._dirty and self._pending is None and not self._running
                and not self._closed):
            self._pending = self._loop.call_later(self._delay, self._fire)

    def _fire(self) -> None:
        self._pending = None
        self._dirty = False
        self._running = True
        self._spawn(self._run(), "resync")

    async def _run(self) -> None:
        started = self._loop.time()
        try:
            await self._resync(self.zone)
        finally:
            self.resyncs += 1
            self._running = False
            self._delay = min(max(_DEBOUNCE, self._loop.time() - started), _MAX_GAP)
            self._schedule()

    def _on_exit(self) -> None:
        if self._pidfd is not None:
            self._loop.remove_reader(self._pidfd)
        log.info("zone %s: its process exited", self.zone)
        self._spawn(self._gone(self.zone), "gone")

    def close(self) -> None:
        """Stop watching. Safe to call from within a callback of this monitor."""
        if self._closed:
            return
        self._closed = True
        if self._pending is not None:
            self._pending.cancel()
        self._loop.remove_reader(self._sock.fileno())
        self._sock.close()
        if self._pidfd is not None:
            self._loop.remove_reader(self._pidfd)
            with contextlib.suppress(OSError):
                os.close(self._pidfd)
        current = asyncio.current_task()
        for task in list(self._tasks):
            if task is not current:
                task.cancel()
