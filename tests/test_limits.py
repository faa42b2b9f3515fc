"""Connection limits (issue 6): a zone cannot take every connection, idle connections are
closed, a flood from one zone leaves another zone's calls answered, and pipelining is
answered in order with bounded memory."""

from __future__ import annotations

import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from broker._wire import FrameBuffer, decode_reply, encode_call
from broker.client import Client, LinkSpec
from tests.conftest import PREFIX, ROOT, BrokerProcess, ZoneCaller


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


_FLOOD = """
import os, sys
from broker.client import Client
calls = 0
with Client(sys.argv[1]) as c:
    c.list_links()
    print("up", flush=True)  # the test samples only once every flooder is calling
    while not os.path.exists(sys.argv[2]):
        c.list_links()
        calls += 1
print(calls)
"""


def test_flood_from_one_zone_leaves_another_answered(broker: BrokerProcess, netns: Any,
                                                     zone_caller: Any, tmp_path: Path) -> None:
    """Eight connections from zone `loud` call as fast as they can; zone `calm` is still
    answered, every call, and the test prints how much slower."""
    calm_ns, loud_ns = netns("calm"), netns("loud")
    with broker.client() as gz:
        gz.boot_zone("calm", netns=calm_ns)
        gz.boot_zone("loud", netns=loud_ns)
        for i in range(20):  # something to list
            gz.create_link(LinkSpec(name=f"{PREFIX}l{i}", class_="tap", zone="loud"))
    calm: ZoneCaller = zone_caller(calm_ns)

    def sample(n: int) -> list[float]:
        times = []
        for _ in range(n):
            t0 = time.perf_counter()
            assert calm.call("WhoAmI")["zone"] == "calm"
            times.append(time.perf_counter() - t0)
        return times

    quiet = sample(50)
    stop = tmp_path / "stop-flood"
    flooders = [subprocess.Popen(
        ["ip", "netns", "exec", loud_ns, sys.executable, "-c", _FLOOD, broker.socket, str(stop)],
        stdout=subprocess.PIPE, text=True, cwd=ROOT) for _ in range(8)]
    try:
        for proc in flooders:
            assert proc.stdout is not None and proc.stdout.readline() == "up\n"
        loud = sample(50)
    finally:
        stop.touch()
        counts = []
        for proc in flooders:
            out, _ = proc.communicate(timeout=30)
            counts.append(int(out.strip() or 0))
    # Every calm call was answered (sample() checks each reply) while the flood ran.
    assert sum(counts) > 0
    print(f"\ncalm zone WhoAmI p50: quiet {statistics.median(quiet) * 1e3:.2f} ms, "
          f"under an 8-connection ListLinks flood from zone loud "
          f"{statistics.median(loud) * 1e3:.2f} ms ({sum(counts)} flood calls)")


def broker_rss_kib(broker: BrokerProcess) -> int:
    assert broker.proc is not None
    with open(f"/proc/{broker.proc.pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_pipelined_calls_are_answered_one_at_a_time_in_order(broker: BrokerProcess) -> None:
    """Varlink lets a client send its next calls before the replies: the broker answers them
    in the order sent, an error in the middle included, and never two at once."""
    calls = [encode_call("io.linkbroker.GetLink", {"name": f"nx{i}"}) if i % 7 == 3
             else encode_call("io.linkbroker.WhoAmI") for i in range(500)]
    with socket.socket(socket.AF_UNIX) as sock:
        sock.connect(broker.socket)
        sock.settimeout(30)
        sock.sendall(b"".join(calls))
        frames = FrameBuffer()
        replies: list[bytes] = []
        while len(replies) < len(calls):
            data = sock.recv(1 << 16)
            assert data, "connection closed early"
            replies += frames.feed(data)
    for i, raw in enumerate(replies):
        reply = decode_reply(raw)
        if i % 7 == 3:
            assert (reply.error, reply.parameters) == ("io.linkbroker.LinkNotFound",
                                                       {"name": f"nx{i}"})
        else:
            assert reply.error is None and reply.parameters is not None
            assert reply.parameters["zone"] == "global"


def test_a_client_that_never_reads_replies_holds_bounded_memory(
        broker: BrokerProcess) -> None:
    """Back-pressure, not buffering: once the unread replies fill the socket, the broker
    stops reading that connection, so a pipelining client cannot make it hold more than a
    frame and a read buffer. Others are answered meanwhile, and every call is answered once
    the client reads."""
    call = encode_call("io.linkbroker.ListLinks")
    chunk = call * 1000
    before = broker_rss_kib(broker)
    pushed = 0
    with socket.socket(socket.AF_UNIX) as hog:
        hog.connect(broker.socket)
        hog.setblocking(False)
        stalled_since = None
        while True:  # push until the kernel refuses more for a full second
            try:
                # Whole calls only: resume a partly sent chunk where the kernel stopped.
                pushed += hog.send(chunk[pushed % len(chunk):])
                stalled_since = None
            except BlockingIOError:
                stalled_since = stalled_since or time.monotonic()
                if time.monotonic() - stalled_since > 1.0:
                    break
                time.sleep(0.01)
            if pushed > 256 << 20:
                raise AssertionError("the broker read 256 MiB without anyone reading replies")
        grown = broker_rss_kib(broker) - before
        with broker.client() as other:  # another connection is still answered
            assert other.who_am_i().zone == "global"
        print(f"\npipelined {pushed} bytes ({pushed // len(call)} calls) unread: "
              f"broker RSS grew {grown} KiB")
        # Measured: 0.44 MB accepted (mostly kernel socket buffers), RSS +0.1 MiB; with
        # asyncio's reader limit at the frame size it was 2.4 MB and +2.4 MiB.
        assert pushed < 4 << 20
        assert grown < 8 << 10
        # Reading now gets one reply per complete call sent, in order.
        hog.setblocking(True)
        hog.settimeout(30)
        complete = pushed // len(call)
        frames = FrameBuffer()
        answered = 0
        while answered < complete:
            data = hog.recv(1 << 20)
            assert data, f"closed after {answered} of {complete} replies"
            for raw in frames.feed(data):
                assert decode_reply(raw).error is None
                answered += 1
        assert answered == complete
