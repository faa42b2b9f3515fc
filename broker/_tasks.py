"""The one owner of the daemon's background tasks (issue 16, "Nothing owns the tasks").

Background work outlives the callback that starts it: a zone monitor's resync (started from
a reader callback), the halt of a zone whose namespace died, the poll of /run/netns, the
rebuild of the protection table after a link went (started from synchronous code), the
systemd watchdog. Each such task is spawned here, named, and held here until it ends, so:

- nothing is collected half-run (the event loop keeps only weak references to tasks);
- a task that ends with an exception is logged at once, with its name and traceback, never
  left for the garbage collector's "exception was never retrieved" (or lost);
- shutdown cancels and awaits them all, in a defined order (`Stage`), before the broker's
  runtimes and the store close under them.

Why not `asyncio.TaskGroup`: its rules are a request's, not a daemon's. One child failing
cancels every sibling and the group's body, so a bug in one zone's resync would stop the
broker for every zone; the group raises an ExceptionGroup out of the daemon's main coroutine,
which would also wrap the start-up errors `main` maps to exit codes (a second broker on the
socket, a bad passed socket); its exit waits for every child with no bound, so one task that
swallows its cancellation would hang shutdown; it has no order among children; and its
`create_task` is for code that holds the group, while these tasks are started by modules that
never see the daemon's locals. `Tasks` keeps what a TaskGroup gives (strong references, no
task outliving the daemon's `run`) with a daemon's rules: failures are logged and contained,
shutdown runs stage by stage, each bounded by `grace`.

How code finds it: one daemon runs one event loop, so the owner is the running loop's
(`owner()`). `broker._daemon.run` takes it first thing and closes it at shutdown; the monitor
and the protection rebuilds ask for it where they spawn, which needs no new field on the
Broker (`broker._service`) nor a parameter through `broker._lifecycle`. Code that drives the
service without the daemon (tests in-process) gets an owner made on first use; whatever it
still holds when `asyncio.run` ends is cancelled by asyncio.run, as before.
"""

from __future__ import annotations

import asyncio
import enum
import functools
import logging
import weakref
from collections.abc import Coroutine
from typing import Any

__all__ = ["Stage", "Tasks", "owner"]

log = logging.getLogger("linkbroker.tasks")


class Stage(enum.IntEnum):
    """What a task is for; shutdown cancels and awaits the stages in this order."""

    # A zone monitor's work: resyncs, halting a zone whose namespace died, the netns poll.
    # First: they may start host-wide follow-ups (a halt forgets protected links).
    ZONES = 0
    # Host-wide follow-ups of zone changes: rebuilds of the protection table (broker._nospoof).
    HOST = 1
    # The daemon's own: the systemd watchdog, last, so systemd hears the broker until the end.
    DAEMON = 2


class Tasks:
    """Spawns named tasks, holds them, logs how they fail, and ends them in `Stage` order."""

    def __init__(self, *, grace: float = 5.0) -> None:
        # Seconds each stage is given at shutdown to end after its cancellation.
        self.grace = grace
        self._live: dict[Stage, set[asyncio.Task[None]]] = {stage: set() for stage in Stage}
        self._shut: set[Stage] = set()  # stages whose shutdown began: new tasks never run

    def spawn(self, coro: Coroutine[Any, Any, None], *, name: str,
              stage: Stage) -> asyncio.Task[None]:
        """Run `coro` as a task of `stage`, held until it ends. Once that stage's shutdown
        began, the task is cancelled before its first step: the coroutine never runs, and
        nothing is left for asyncio to warn about."""
        task = asyncio.get_running_loop().create_task(coro, name=name)
        live = self._live[stage]
        live.add(task)
        task.add_done_callback(functools.partial(self._ended, live))
        if stage in self._shut:
            log.debug("task %s not started: shutting down", name)
            task.cancel()
        return task

    def running(self, stage: Stage | None = None) -> list[asyncio.Task[None]]:
        """The tasks not ended yet (of one stage, or all): for tests and the logs."""
        stages = list(Stage) if stage is None else [stage]
        return [t for s in stages for t in self._live[s] if not t.done()]

    @staticmethod
    def _ended(live: set[asyncio.Task[None]], task: asyncio.Task[None]) -> None:
        live.discard(task)
        if task.cancelled():
            return
        exc = task.exception()  # retrieved: asyncio's "never retrieved" stays quiet
        if exc is not None:
            log.error("task %s failed: %r", task.get_name(), exc, exc_info=exc)

    async def close(self) -> None:
        """Cancel and await every task, stage by stage. A stage's tasks that ignore their
        cancellation for `grace` seconds are logged and left, so shutdown always completes.
        Tasks spawned meanwhile into a stage not yet shut are ended with it; into one already
        shut, they never run. Must not be awaited from one of these tasks."""
        loop = asyncio.get_running_loop()
        for stage in Stage:
            self._shut.add(stage)
            deadline = loop.time() + self.grace
            while waiting := {t for t in self._live[stage] if not t.done()}:
                left = deadline - loop.time()
                if left <= 0:
                    log.warning("shutdown: %d %s task(s) did not end within %.1f s: %s",
                                len(waiting), stage.name.lower(), self.grace,
                                ", ".join(sorted(t.get_name() for t in waiting)))
                    break
                for task in waiting:
                    task.cancel()
                await asyncio.wait(waiting, timeout=left)


_owners: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Tasks] = (
    weakref.WeakKeyDictionary())


def owner() -> Tasks:
    """The running event loop's owner, made on first use (RuntimeError without a loop)."""
    loop = asyncio.get_running_loop()
    found = _owners.get(loop)
    if found is None:
        found = _owners[loop] = Tasks()
    return found
