"""Scenario 4: what identifying the caller costs, and its share of a read call.

`broker._peer.identify_peer` is timed in this process on the server end of a connected
AF_UNIX socket (listen + connect + accept, as the broker sees a caller), whole and by parts,
and through `asyncio.to_thread` as the server calls it. The broker identifies a caller once per
connection, so beside it stand a WhoAmI on a kept connection (scenario 1) and a WhoAmI on a
fresh connection each time (connect + call + close, what `linkadm` does), from inside a zone.
"""

from __future__ import annotations

import asyncio
import os
import select
import socket
import struct
import time
from collections.abc import Callable
from typing import Any

from bench._common import Broker, Config, Lab, WorkerPool, progress, ratio, summarize
from broker._peer import SO_PEERPIDFD, identify_peer
from broker._userns import is_zone_root
from broker._wire import encode_call

_UCRED = struct.Struct("iII")


def _time(fn: Callable[[], object], n: int, budget: float) -> list[float]:
    """Microseconds per call of fn, n times or until the budget (seconds) is spent."""
    fn()
    out: list[float] = []
    deadline = time.monotonic() + budget
    clock = time.perf_counter_ns
    for _ in range(n):
        t0 = clock()
        fn()
        out.append((clock() - t0) / 1000)
        if time.monotonic() > deadline:
            break
    return out


def run_ident(lab: Lab, cfg: Config, broker: Broker, pool: WorkerPool,
              whoami_kept_us: float) -> dict[str, Any]:
    path = str(lab.workdir / "ident.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(1)
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    client.connect(path)
    conn, _ = listener.accept()
    n, budget = cfg.ident_n, 10.0
    try:
        whole = _time(lambda: identify_peer(conn), n, budget)
        pid, uid, _gid = _UCRED.unpack(conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                                       _UCRED.size))

        def pidfd_open_close() -> None:
            os.close(conn.getsockopt(socket.SOL_SOCKET, SO_PEERPIDFD))

        pidfd = conn.getsockopt(socket.SOL_SOCKET, SO_PEERPIDFD)

        def poll_pidfd() -> None:
            p = select.poll()
            p.register(pidfd, select.POLLIN)
            p.poll(0)

        try:
            parts = {
                "SO_PEERCRED": _time(lambda: conn.getsockopt(
                    socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size), n, budget),
                "SO_PEERPIDFD + close": _time(pidfd_open_close, n, budget),
                "stat /proc/PID/ns/net": _time(lambda: os.stat(f"/proc/{pid}/ns/net"), n,
                                               budget),
                "groups from /proc/PID/status": _time(lambda: _read_groups(pid), n, budget),
                "is_zone_root": _time(lambda: is_zone_root(pid, uid, pidfd), n, budget),
                "poll pidfd": _time(poll_pidfd, n, budget),
            }
        finally:
            os.close(pidfd)

        async def hop() -> list[float]:
            await asyncio.to_thread(identify_peer, conn)
            out: list[float] = []
            for _ in range(min(n, 2000)):
                t0 = time.perf_counter_ns()
                await asyncio.to_thread(identify_peer, conn)
                out.append((time.perf_counter_ns() - t0) / 1000)
            return out

        threaded = asyncio.run(hop())
    finally:
        conn.close()
        client.close()
        listener.close()
        os.unlink(path)

    start_at = time.monotonic_ns() + 250_000_000
    fresh = pool.ask({"op": "loop", "path": broker.socket, "reconnect": True, "record": True,
                      "request": encode_call("io.linkbroker.WhoAmI", {}).decode(),
                      "start_at": start_at, "duration": cfg.lat_seconds,
                      "max_calls": cfg.lat_max_calls}, timeout=120)
    fresh_us = summarize([x / 1000 for x in fresh["latencies_ns"]])
    ident = summarize(whole)
    res: dict[str, Any] = {
        "identify_peer_us": ident,
        "identify_peer_via_to_thread_us": summarize(threaded),
        "parts_us": {k: summarize(v)["median"] for k, v in parts.items()},
        "whoami_kept_connection_us": whoami_kept_us,
        "whoami_fresh_connection_us": fresh_us,
        "share_of_fresh_call": ratio(summarize(threaded)["median"], fresh_us["median"]),
        "share_if_per_call": ratio(ident["median"], whoami_kept_us),
        "fresh_over_kept": ratio(fresh_us["median"], whoami_kept_us),
    }
    progress(f"ident: identify_peer {ident['median']:.1f} us in-process, "
             f"{res['identify_peer_via_to_thread_us']['median']:.1f} us via to_thread; "
             f"WhoAmI {whoami_kept_us:.1f} us kept, {fresh_us['median']:.1f} us on a fresh "
             f"connection")
    return res


def _read_groups(pid: int) -> None:
    with open(f"/proc/{pid}/status", "rb") as f:
        for line in f:
            if line.startswith(b"Groups:"):
                return
