"""Readiness and liveness as systemd sees them: a real linkbrokerd talks to a NOTIFY_SOCKET
this test binds (a datagram socket, as systemd's), and the messages' order and content are
checked against what the broker can do at that moment."""

from __future__ import annotations

import itertools
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from broker.client import Client
from tests.conftest import ROOT, run

WATCHDOG_USEC = 400_000  # pings expected every 0.2 s


class NotifySocket:
    """systemd's end: a datagram socket and a thread that timestamps each message on arrival
    (a watchdog ping is about when it was sent, not when the test got round to reading)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.sock.settimeout(0.2)
        self.messages: list[tuple[float, dict[str, str]]] = []
        self.pings: list[float] = []
        self._seen = 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._collect, daemon=True)
        self._thread.start()

    def _collect(self) -> None:
        while not self._done.is_set():
            try:
                data = self.sock.recv(4096).decode()
            except TimeoutError:
                continue
            msg = dict(line.split("=", 1) for line in data.split("\n"))
            if msg == {"WATCHDOG": "1"}:
                self.pings.append(time.monotonic())
            else:
                self.messages.append((time.monotonic(), msg))

    def next(self, timeout: float = 30) -> dict[str, str]:
        """The next message that is not a watchdog ping."""
        deadline = time.monotonic() + timeout
        while len(self.messages) <= self._seen:
            assert time.monotonic() < deadline, "no sd_notify message"
            time.sleep(0.01)
        self._seen += 1
        return self.messages[self._seen - 1][1]

    def close(self) -> None:
        self._done.set()
        self._thread.join(5)
        self.sock.close()


@pytest.fixture
def notify(tmp_path: Path) -> Iterator[NotifySocket]:
    sock = NotifySocket(str(tmp_path / "notify.sock"))
    yield sock
    sock.close()


def start(tmp_path: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    with open(tmp_path / "broker.log", "ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "broker._daemon", "--socket", str(tmp_path / "broker.sock"),
             "--state-dir", str(tmp_path / "state"), "--log-level", "DEBUG"],
            stdout=log, stderr=log, stdin=subprocess.DEVNULL, cwd=ROOT,
            env={**os.environ, **env})


def test_ready_reload_stopping_watchdog(tmp_path: Path, notify: NotifySocket,
                                        netns: Any, names: Any) -> None:
    sock = str(tmp_path / "broker.sock")
    env = {"NOTIFY_SOCKET": notify.path}
    first = start(tmp_path, env)
    try:
        msg = notify.next()
        assert msg["READY"] == "1" and msg["STATUS"].startswith("serving 1 zones, ")
        red = netns("red")
        with Client(sock, timeout=30) as gz:
            gz.boot_zone("red", netns=red)
    finally:
        first.send_signal(signal.SIGTERM)
        first.wait(20)
    assert notify.next() == {"STOPPING": "1", "STATUS": "stopping"}

    # While the broker is down, a link appears in the zone behind its back: READY=1 must
    # not come before start-up reconciliation has adopted it.
    bridge = names.link("br")
    run("ip", "-n", red, "link", "add", bridge, "type", "bridge")
    broker = start(tmp_path, {**env, "WATCHDOG_USEC": str(WATCHDOG_USEC)})
    try:
        msg = notify.next()
        assert msg["READY"] == "1" and msg["STATUS"].startswith("serving 2 zones, ")
        with Client(sock, timeout=30) as gz:  # at READY the broker answers, reconciled
            assert [link.name for link in gz.list_links("red")] == [bridge]
        time.sleep(1.5)
        broker.send_signal(signal.SIGHUP)
        reloading = notify.next()
        now_usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        assert reloading["RELOADING"] == "1"
        assert 0 < now_usec - int(reloading["MONOTONIC_USEC"]) < 10_000_000
        ready = notify.next()  # links: other tests' host links come and go meanwhile
        assert ready["READY"] == "1" and ready["STATUS"].startswith("serving 2 zones, ")
        broker.send_signal(signal.SIGTERM)
        assert notify.next() == {"STOPPING": "1",
                                                           "STATUS": "stopping"}
        assert broker.wait(20) == 0
    finally:
        if broker.poll() is None:
            broker.kill()
            broker.wait(5)
    # Pinged at half WATCHDOG_USEC: over ~1.5 s about 7 pings; bounds loose for a busy CI.
    pings = notify.pings
    assert len(pings) >= 4, pings
    gaps = [b - a for a, b in itertools.pairwise(pings)]
    assert 0.1 < sorted(gaps)[len(gaps) // 2] < 0.4, gaps


def test_no_notify_socket_no_datagram(tmp_path: Path, notify: NotifySocket) -> None:
    """Started by hand (no NOTIFY_SOCKET), the broker sends nothing anywhere."""
    broker = start(tmp_path, {"WATCHDOG_USEC": str(WATCHDOG_USEC)})
    try:
        deadline = time.monotonic() + 20
        while "INFO ready on" not in (tmp_path / "broker.log").read_text():
            assert broker.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        time.sleep(0.5)
        assert notify.messages == [] and notify.pings == []
    finally:
        broker.send_signal(signal.SIGTERM)
        broker.wait(20)
