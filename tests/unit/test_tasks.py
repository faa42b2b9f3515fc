"""The owner of the daemon's background tasks (broker._tasks, issue 16 "Nothing owns the
tasks"): failures logged and contained, shutdown in stage order and always bounded, and the
monitor's and the protection rebuilds' tasks going through it."""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import Any, cast

import pytest

from broker import _nospoof as nospoof
from broker._monitor import ZoneMonitor
from broker._tasks import Stage, Tasks, owner


def test_a_failing_task_is_logged_by_name_and_harms_no_other(
        caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        tasks = Tasks()
        ran = asyncio.Event()

        async def broken() -> None:
            raise RuntimeError("a bug in one zone")

        async def sibling() -> None:
            await asyncio.sleep(0.01)
            ran.set()

        tasks.spawn(broken(), name="zone red: resync", stage=Stage.ZONES)
        tasks.spawn(sibling(), name="zone blue: resync", stage=Stage.ZONES)
        await asyncio.wait_for(ran.wait(), 5)
        assert not tasks.running()  # both ended, neither is held any more
        await tasks.close()

    with caplog.at_level(logging.ERROR, logger="linkbroker.tasks"):
        asyncio.run(scenario())
    failed = [r for r in caplog.records if "zone red: resync" in r.getMessage()]
    assert failed and failed[0].exc_info is not None
    assert "a bug in one zone" in failed[0].getMessage()


def test_close_ends_the_stages_in_order_and_catches_late_spawns() -> None:
    async def scenario() -> list[str]:
        tasks = Tasks()
        ended: list[str] = []

        async def forever(name: str) -> None:
            try:
                await asyncio.Event().wait()
            finally:
                ended.append(name)

        async def zone_work() -> None:
            try:
                await asyncio.Event().wait()
            finally:
                ended.append("zone")
                # A halt interrupted at shutdown may still ask for a host-wide follow-up:
                # its stage is not shut yet, so it is ended with it, not left behind.
                tasks.spawn(forever("late rebuild"), name="rebuild", stage=Stage.HOST)

        tasks.spawn(forever("watchdog"), name="watchdog", stage=Stage.DAEMON)
        tasks.spawn(forever("rebuild"), name="rebuild", stage=Stage.HOST)
        tasks.spawn(zone_work(), name="zone red: gone", stage=Stage.ZONES)
        await asyncio.sleep(0)
        await tasks.close()
        assert not tasks.running()
        return ended

    ended = asyncio.run(scenario())
    assert ended[0] == "zone" and ended[-1] == "watchdog"
    assert set(ended[1:3]) == {"rebuild", "late rebuild"}


def test_a_task_spawned_into_a_shut_stage_never_runs() -> None:
    async def scenario() -> bool:
        tasks = Tasks()
        await tasks.close()
        ran = False

        async def body() -> None:
            nonlocal ran
            ran = True

        task = tasks.spawn(body(), name="too late", stage=Stage.ZONES)
        await asyncio.gather(task, return_exceptions=True)
        assert task.cancelled()
        return ran

    assert asyncio.run(scenario()) is False


def test_shutdown_completes_past_a_task_that_ignores_cancellation(
        caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        tasks = Tasks(grace=0.1)
        release = asyncio.Event()

        async def stubborn() -> None:
            while not release.is_set():
                try:
                    await asyncio.sleep(10)
                except asyncio.CancelledError:
                    continue

        stuck = tasks.spawn(stubborn(), name="stubborn", stage=Stage.HOST)
        await asyncio.sleep(0)
        await asyncio.wait_for(tasks.close(), 5)
        assert not stuck.done()
        release.set()
        stuck.cancel()
        await asyncio.wait([stuck], timeout=5)

    with caplog.at_level(logging.WARNING, logger="linkbroker.tasks"):
        asyncio.run(scenario())
    assert any("stubborn" in r.getMessage() for r in caplog.records)


def test_the_owner_is_the_running_loops() -> None:
    async def get() -> Tasks:
        first = owner()
        assert owner() is first
        return first

    assert asyncio.run(get()) is not asyncio.run(get())
    with pytest.raises(RuntimeError):
        owner()


def test_monitor_resyncs_go_through_the_owner_and_survive_a_failing_one(
        caplog: pytest.LogCaptureFixture) -> None:
    """Coalesced as before (one resync per poke burst), each a task of stage ZONES; a resync
    that raises is logged and the next poke still resyncs."""

    async def scenario() -> int:
        tasks = Tasks()
        calls: list[str] = []
        done = asyncio.Event()

        async def resync(zone: str) -> None:
            calls.append(zone)
            if len(calls) == 1:
                raise RuntimeError("resync bug")
            done.set()

        async def gone(zone: str) -> None:
            pass

        # A quiet socket in place of the zone's: the host's own link changes (anything
        # else running on this machine) must not count as resyncs here.
        quiet, other = socket.socketpair()
        quiet.setblocking(False)
        monitor = ZoneMonitor("z", quiet, resync, gone, tasks=tasks)
        try:
            monitor.poke()
            monitor.poke()  # coalesced with the first
            while not calls:
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.1)
            assert monitor.resyncs == 1
            monitor.poke()
            await asyncio.wait_for(done.wait(), 5)
            assert all(t.get_name() == "zone z: resync" for t in tasks.running(Stage.ZONES))
        finally:
            monitor.close()
            other.close()
            await tasks.close()
        return len(calls)

    with caplog.at_level(logging.ERROR, logger="linkbroker.tasks"):
        assert asyncio.run(scenario()) == 2
    assert any("zone z: resync" in r.getMessage() for r in caplog.records)


def test_a_monitor_opened_off_the_loop_hears_its_zone() -> None:
    async def scenario() -> None:
        async def job(zone: str) -> None:
            pass

        monitor = await ZoneMonitor.opened("global", None, job, job)
        try:
            assert monitor._sock.family == socket.AF_NETLINK
        finally:
            monitor.close()

    asyncio.run(scenario())


def test_protection_rebuild_after_a_forget_is_the_owners(monkeypatch: pytest.MonkeyPatch
                                                         ) -> None:
    async def scenario() -> list[str]:
        rebuilt = asyncio.Event()

        async def rebuild(broker: Any) -> None:
            rebuilt.set()
            await asyncio.Event().wait()  # still running when the daemon shuts down

        monkeypatch.setattr(nospoof, "rebuild", rebuild)
        nospoof.forget(cast(Any, object()), [7])
        await asyncio.wait_for(rebuilt.wait(), 5)
        names = [t.get_name() for t in owner().running(Stage.HOST)]
        await owner().close()
        assert not owner().running()
        return names

    assert asyncio.run(scenario()) == ["protection rebuild"]
