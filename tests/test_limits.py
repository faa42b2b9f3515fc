"""Connection limits (issue 6): a zone cannot take every connection, idle connections are
closed, and a flood from one zone leaves another zone's calls answered."""

from __future__ import annotations

import socket
import statistics
import threading
import time
from typing import Any

from broker._wire import FrameBuffer, decode_reply, encode_call
from broker.client import Client
from tests.conftest import BrokerProcess, ZoneCaller


def restart_with(broker: BrokerProcess, *args: str) -> None:
    broker.stop()
    broker.extra_args = list(args)
    broker.start()


def test_per_zone_connection_limit(broker: BrokerProcess, netns: Any,
                                   zone_caller: Any) -> None:
    restart_with(broker, "--max-connections-per-zone", "4")
    ns = netns("other")
    with broker.client() as gz:
        gz.boot_zone("other", netns=ns)
    held = [Client(broker.socket) for _ in range(4)]
    try:
        for c in held:
            assert c.who_am_i().zone == "global"
        extra = socket.socket(socket.AF_UNIX)
        extra.connect(broker.socket)
        extra.settimeout(10)
        frames = FrameBuffer().feed(extra.recv(4096))
        reply = decode_reply(frames[0])
        assert reply.error == "io.linkbroker.LimitExceeded"
        assert reply.parameters == {"what": "connections from this zone", "limit": 4}
        assert extra.recv(4096) == b""  # and closed
        extra.close()
        # Another zone still gets in.
        other: ZoneCaller = zone_caller(ns)
        assert other.call("WhoAmI")["zone"] == "other"
    finally:
        for c in held:
            c.close()
    with broker.client() as gz:  # slots come back when connections close
        assert gz.who_am_i().zone == "global"


def test_idle_connections_are_closed(broker: BrokerProcess) -> None:
    restart_with(broker, "--idle-timeout", "0.5")
    idle = socket.socket(socket.AF_UNIX)
    idle.connect(broker.socket)
    idle.settimeout(10)
    assert idle.recv(4096) == b""  # closed by the broker, nothing sent
    idle.close()
    busy = socket.socket(socket.AF_UNIX)
    busy.connect(broker.socket)
    busy.settimeout(10)
    for _ in range(3):  # a connection that keeps talking stays open
        time.sleep(0.3)
        busy.sendall(encode_call("io.linkbroker.WhoAmI"))
        assert decode_reply(FrameBuffer().feed(busy.recv(4096))[0]).error is None
    busy.close()


def test_flood_from_one_zone_leaves_another_answered(broker: BrokerProcess, netns: Any,
                                                     zone_caller: Any) -> None:
    ns = netns("calm")
    with broker.client() as gz:
        gz.boot_zone("calm", netns=ns)
    calm: ZoneCaller = zone_caller(ns)

    def sample(n: int) -> list[float]:
        times = []
        for _ in range(n):
            t0 = time.perf_counter()
            assert calm.call("WhoAmI")["zone"] == "calm"
            times.append(time.perf_counter() - t0)
        return times

    quiet = sample(50)
    stop = threading.Event()
    flooded = [0]

    def flood() -> None:
        with Client(broker.socket) as c:
            while not stop.is_set():
                c.list_links()
                flooded[0] += 1

    threads = [threading.Thread(target=flood) for _ in range(8)]
    for t in threads:
        t.start()
    try:
        time.sleep(0.2)
        loud = sample(50)
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    assert flooded[0] > 0 and len(loud) == 50  # every calm call answered during the flood
    print(f"\ncalm zone WhoAmI p50: quiet {statistics.median(quiet) * 1e3:.2f} ms, "
          f"under an 8-connection flood from the global zone "
          f"{statistics.median(loud) * 1e3:.2f} ms ({flooded[0]} flood calls)")
