"""Subscribe against a real broker: a zone streams only its own zone's events, and a
subscriber that never reads holds nobody up and is cut off when its queue overflows."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from broker._wire import FrameBuffer, decode_reply, encode_call
from broker.client import Client, LinkSpec
from tests.conftest import ROOT, BrokerProcess


def wait_for(pred: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.02)
    return pred()


def test_zone_subscriber_sees_only_its_zone(broker: BrokerProcess, netns: Any,
                                            names: Any) -> None:
    red_ns, blue_ns = netns("red"), netns("blue")
    with broker.client() as gz:
        gz.boot_zone("red", netns=red_ns)
        gz.boot_zone("blue", netns=blue_ns)
        watcher = subprocess.Popen(
            ["ip", "netns", "exec", red_ns, sys.executable, "-m", "clients.linkadm",
             "--socket", broker.socket, "watch", "--json"],
            stdout=subprocess.PIPE, text=True, cwd=ROOT)
        assert watcher.stdout is not None
        out = watcher.stdout
        lines: list[str] = []
        threading.Thread(target=lambda: lines.extend(iter(out.readline, "")),
                         daemon=True).start()
        try:
            mine, theirs = names.link("m")[:12], names.link("t")[:12]
            made: list[str] = []
            # Until the watcher has subscribed, events pass it by: keep making pairs.
            for i in range(50):
                made.append(f"{mine}{i}")
                gz.create_link(LinkSpec(name=f"{theirs}{i}", class_="bridge", zone="blue"))
                gz.create_link(LinkSpec(name=made[-1], class_="bridge", zone="red"))
                if wait_for(lambda: any('"link_added"' in x for x in lines), 0.3):
                    break
            gz.delete_link(made[-1], "red")
            assert wait_for(lambda: any('"link_removed"' in x for x in lines))
            events = [json.loads(x) for x in lines]
            assert all(e["zone"] == "red" for e in events)
            assert all(e["link"]["name"].startswith(mine) for e in events)
            assert [e["seq"] for e in events] == sorted(e["seq"] for e in events)
        finally:
            watcher.kill()
            watcher.wait(5)


def test_stalled_subscriber_is_cut_off_and_delays_nobody(broker: BrokerProcess,
                                                         names: Any) -> None:
    broker.stop()
    broker.extra_args = ["--event-queue-limit", "16"]
    broker.start()
    stalled = socket.socket(socket.AF_UNIX)
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stalled.connect(broker.socket)
    stalled.sendall(encode_call("io.linkbroker.Subscribe", {}, more=True))
    try:
        with Client(broker.socket, timeout=30) as gz:
            base = names.link("s")[:10]
            # 2 events a round: far more than socket buffers and a 16-event queue hold.
            for i in range(1200):
                gz.create_link(LinkSpec(name=f"{base}{i}", class_="tap"))
                gz.delete_link(f"{base}{i}")
                assert gz.who_am_i().zone == "global"  # everyone else is still answered
        stalled.settimeout(30)
        frames, buf = [], FrameBuffer()
        while chunk := stalled.recv(1 << 16):
            frames.extend(buf.feed(chunk))
        last = decode_reply(frames[-1])
        assert last.error == "io.linkbroker.LimitExceeded"
        assert last.parameters == {"what": "event queue", "limit": 16}
        assert all(decode_reply(f).continues for f in frames[:-1])
    finally:
        stalled.close()


def test_subscribe_needs_more(broker: BrokerProcess) -> None:
    with Client(broker.socket) as gz:
        gz.conn.send(encode_call("io.linkbroker.Subscribe", {}))
        assert decode_reply(gz.conn.receive()).error == "org.varlink.service.ExpectedMore"
