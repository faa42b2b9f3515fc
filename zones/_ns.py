"""Run one function inside a network namespace, on a thread of its own, and come back.

The daemon is threaded and runs an asyncio loop: it must never switch the namespace of the
loop's thread, and must never fork without exec (the dlmgmtd deadlock; pyroute2's `NetNS`
forks). setns(CLONE_NEWNET) changes only the calling thread, so a short-lived thread enters the
namespace, does its one thing (typically: create a netlink socket, which stays bound to that
namespace for its whole life) and leaves. Sockets made this way are the only way the broker
talks to a zone's kernel.

Hazards (as in containernetworking's pkg/ns): the function must not start threads or await
anything; it must not keep references to thread-local namespace state.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import TypeVar

__all__ = ["CLONE_NEWNET", "in_netns", "run_in_netns", "setns", "start_in_netns"]

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)
_T = TypeVar("_T")


def setns(fd: int, nstype: int) -> None:
    if _libc.setns(fd, nstype) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


def start_in_netns(netns_fd: int | None, fn: Callable[[], _T]) -> Future[_T]:
    """Start `fn` on a fresh thread inside the network namespace `netns_fd` (None: our own,
    called right here); its result or exception arrives in the returned Future. The caller
    never changes namespace, and an event loop can await the Future (asyncio.wrap_future)
    instead of blocking on it."""
    done: Future[_T] = Future()
    if netns_fd is None:
        try:
            done.set_result(fn())
        except BaseException as exc:
            done.set_exception(exc)
        return done

    def runner() -> None:
        try:
            home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        except BaseException as exc:
            done.set_exception(exc)
            return
        try:
            setns(netns_fd, CLONE_NEWNET)
            try:
                result = fn()
            finally:
                # A thread that cannot go home must not live on in the wrong namespace.
                setns(home, CLONE_NEWNET)
        except BaseException as exc:
            done.set_exception(exc)
        else:
            done.set_result(result)
        finally:
            os.close(home)

    threading.Thread(target=runner, name="linkbroker-netns", daemon=True).start()
    return done


def run_in_netns(netns_fd: int | None, fn: Callable[[], _T]) -> _T:
    """Call `fn` on a fresh thread inside the network namespace `netns_fd` (None: our own)
    and wait for it. Blocks the calling thread: from the event loop use `in_netns`."""
    return start_in_netns(netns_fd, fn).result()


async def in_netns(netns_fd: int | None, fn: Callable[[], _T]) -> _T:
    """`run_in_netns` for a coroutine: the event loop awaits the opener thread, never joins
    it."""
    return await asyncio.wrap_future(start_in_netns(netns_fd, fn))
