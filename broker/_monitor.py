"""Keeps the table true when someone works behind the broker's back, without polling links.

Each booted zone gets a netlink socket (made inside the zone, like every other) subscribed to
RTNLGRP_LINK. Any link message there (new, deleted, renamed, moved in or out, MTU or state
changed) schedules one resync of that zone a moment later: a dump and a reconciliation under
the zone's lock, so it never interleaves with the broker's own writes. Messages are not
parsed: a dump of one zone is cheap, and a lost message (ENOBUFS) cannot make it wrong.

A zone whose namespace dies is halted on its own: for a process or container zone, when its
process exits (its pidfd polls readable); for a netns zone, when /run/netns/NAME no longer
names the booted namespace (checked once a second: a bind mount has no exit notification).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Awaitable, Callable

from zones._ns import run_in_netns

__all__ = ["ZoneMonitor"]

log = logging.getLogger("linkbroker.monitor")
RTMGRP_LINK = 0x1
_DEBOUNCE = 0.05


def _link_socket() -> socket.socket:
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_NONBLOCK
                         | socket.SOCK_CLOEXEC, socket.NETLINK_ROUTE)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    sock.bind((0, RTMGRP_LINK))
    return sock


class ZoneMonitor:
    def __init__(self, zone: str, netns_fd: int | None,
                 resync: Callable[[str], Awaitable[None]],
                 gone: Callable[[str], Awaitable[None]]) -> None:
        self.zone = zone
        self._resync = resync
        self._gone = gone
        self._loop = asyncio.get_running_loop()
        self._sock = run_in_netns(netns_fd, _link_socket)
        self._loop.add_reader(self._sock.fileno(), self._on_link_message)
        self._pending: asyncio.TimerHandle | None = None
        self._pidfd: int | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False

    def watch_pid(self, pid: int) -> None:
        try:
            self._pidfd = os.pidfd_open(pid)
        except OSError:
            self._spawn(self._gone(self.zone))
            return
        self._loop.add_reader(self._pidfd, self._on_exit)

    def watch_netns(self, still_there: Callable[[], bool]) -> None:
        async def poll() -> None:
            while not self._closed:
                await asyncio.sleep(1.0)
                if not self._closed and not still_there():
                    await self._gone(self.zone)
                    return

        self._spawn(poll())

    def _spawn(self, coro: Awaitable[None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _on_link_message(self) -> None:
        while True:
            try:
                if not self._sock.recv(1 << 16):
                    break
            except BlockingIOError:
                break
            except OSError:  # ENOBUFS: messages lost, the resync below covers them
                break
        if self._pending is None and not self._closed:
            self._pending = self._loop.call_later(_DEBOUNCE, self._fire)

    def _fire(self) -> None:
        self._pending = None
        self._spawn(self._resync(self.zone))

    def _on_exit(self) -> None:
        if self._pidfd is not None:
            self._loop.remove_reader(self._pidfd)
        log.info("zone %s: its process exited", self.zone)
        self._spawn(self._gone(self.zone))

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
