"""Socket activation: the broker serves a socket its supervisor holds, so restarts do not move
the socket's inode, zones keep their mounts, and clients wait in the backlog instead of being
refused.

The test plays systemd's part: it binds the socket once and starts linkbrokerd again and again
with LISTEN_FDS=1 and LISTEN_PID set to the daemon's own pid (a shell execs the daemon in its
place, so `$$` is that pid, as systemd sets it between fork and exec). A process zone's client
calls WhoAmI in a loop meanwhile. The same run without activation measures the window that
exists without it. Both figures are printed (pytest -s) and quoted in docs/operations.md.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from broker.client import Client
from tests.conftest import ROOT

# The zone's client: one connection per call, as linkadm does. A connect that fails is a
# connection error (the window); a call whose connection broke after it was sent (a broker
# killed while answering) is repeated, since WhoAmI is a read, and counted as `repeated`.
LOOP_CLIENT = r"""
import json, select, sys, time
from broker.client import BrokerGone, BrokerNotRunning, Client, SocketMissing
stats = {"answered": 0, "connect_errors": 0, "repeated": 0, "other": 0, "max_gap": 0.0,
         "first_errors": []}
last = time.monotonic()
print("started", flush=True)
while not select.select([sys.stdin], [], [], 0)[0]:
    try:
        with Client("/run/linkbroker/broker.sock", timeout=30) as client:
            client.who_am_i()
    except (SocketMissing, BrokerNotRunning) as exc:
        stats["connect_errors"] += 1
        if len(stats["first_errors"]) < 3:
            stats["first_errors"].append(str(exc))
        time.sleep(0.005)
        continue
    except BrokerGone:
        stats["repeated"] += 1
        continue
    except Exception as exc:
        stats["other"] += 1
        stats["first_errors"].append(repr(exc))
        time.sleep(0.005)
        continue
    now = time.monotonic()
    stats["max_gap"] = max(stats["max_gap"], now - last)
    last = now
    stats["answered"] += 1
    time.sleep(0.005)
print(json.dumps(stats), flush=True)
"""


@dataclass
class Supervisor:
    """Starts linkbrokerd over and over; with `activated`, holds its listening socket."""

    workdir: Path
    activated: bool
    path: str = ""
    proc: subprocess.Popen[bytes] | None = None
    listener: socket.socket | None = None
    starts: int = 0
    pids: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.path = str(self.workdir / "broker.sock")
        if self.activated:
            self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.listener.bind(self.path)
            os.chmod(self.path, 0o666)
            self.listener.listen(socket.SOMAXCONN)

    def log(self) -> str:
        return (self.workdir / "broker.log").read_text(errors="replace")

    def start(self) -> None:
        daemon = [sys.executable, "-m", "broker._daemon", "--socket", self.path,
                  "--state-dir", str(self.workdir / "state"), "--log-level", "DEBUG"]
        with open(self.workdir / "broker.log", "ab") as log:
            if self.listener is not None:
                fd = self.listener.fileno()
                self.proc = subprocess.Popen(
                    ["/bin/sh", "-c", 'export LISTEN_PID=$$ LISTEN_FDS=1; exec "$0" "$@"',
                     *daemon],
                    stdout=log, stderr=log, stdin=subprocess.DEVNULL, cwd=ROOT,
                    close_fds=False,
                    # Between fork and exec, as systemd does; the test's threads take no locks.
                    preexec_fn=lambda: os.dup2(fd, 3))  # noqa: PLW1509
            else:
                self.proc = subprocess.Popen(daemon, stdout=log, stderr=log,
                                             stdin=subprocess.DEVNULL, cwd=ROOT)
        self.pids.append(self.proc.pid)
        self.starts += 1
        deadline = time.monotonic() + 30
        while self.log().count("INFO ready on ") < self.starts:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"linkbrokerd did not come up:\n{self.log()}")
            time.sleep(0.02)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def close(self) -> None:
        self.stop()
        if self.listener is not None:
            self.listener.close()


@pytest.fixture
def process_zone() -> Iterator[int]:
    """A process in new network and mount namespaces with a private /run: a zone whose
    socket the broker attaches by bind mount."""
    proc = subprocess.Popen(
        ["unshare", "--net", "--mount", "--propagation", "private", "--fork", "--kill-child",
         "sh", "-c", "mount -t tmpfs lbtzone /run && exec sleep 600"],
        stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with open(f"/proc/{proc.pid}/mountinfo") as f:
                if "lbtzone" in f.read():
                    break
            time.sleep(0.02)
        yield proc.pid
    finally:
        proc.kill()
        proc.wait(5)


def socket_mount(pid: int) -> tuple[str, int]:
    """The zone's mount of the broker socket (its mountinfo line, which starts with the mount
    ID) and the inode the zone sees there."""
    with open(f"/proc/{pid}/mountinfo") as f:
        lines = [line for line in f if " /run/linkbroker/broker.sock " in line]
    assert len(lines) == 1, lines
    return lines[0], os.stat(f"/proc/{pid}/root/run/linkbroker/broker.sock").st_ino


def restart_five_times(sup: Supervisor, zone_pid: int) -> dict[str, Any]:
    """Boot the zone, run its client through five restarts (SIGTERM and kill -9 in turn),
    return the client's figures and the zone's mount before and after."""
    sup.start()
    with Client(sup.path, timeout=30) as gz:
        assert gz.boot_zone("proc", pid=zone_pid).attached
    before = socket_mount(zone_pid)
    client = subprocess.Popen(
        ["nsenter", "-t", str(zone_pid), "-n", "-m", sys.executable, "-c", LOOP_CLIENT],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT,
        env={"PATH": os.environ["PATH"], "PYTHONPATH": str(ROOT)})
    try:
        assert client.stdout is not None and client.stdin is not None
        assert client.stdout.readline().strip() == "started"
        time.sleep(1.0)
        for i in range(5):
            sup.stop(signal.SIGTERM if i % 2 == 0 else signal.SIGKILL)
            sup.start()
            time.sleep(1.0)
        client.stdin.write("stop\n")
        client.stdin.flush()
        stats: dict[str, Any] = json.loads(client.stdout.readline())
    finally:
        if client.poll() is None:
            client.kill()
        client.wait(10)
    stats["mount_before"], stats["mount_after"] = before, socket_mount(zone_pid)
    with Client(sup.path, timeout=30) as gz:
        gz.halt_zone("proc")
    return stats


def test_restarts_under_socket_activation_keep_the_zone_mount(tmp_path: Path,
                                                              process_zone: int) -> None:
    sup = Supervisor(tmp_path, activated=True)
    try:
        stats = restart_five_times(sup, process_zone)
    finally:
        sup.close()
    print(f"\nwith socket activation: {json.dumps(stats)}")
    assert stats["connect_errors"] == 0, stats
    assert stats["other"] == 0, stats
    assert stats["answered"] > 100, stats
    assert stats["mount_after"] == stats["mount_before"]  # same mount ID, same inode
    assert sup.log().count("not re-attached") == 5
    assert len(set(sup.pids)) == 6


def test_restarts_without_activation_show_the_window(tmp_path: Path, process_zone: int) -> None:
    sup = Supervisor(tmp_path, activated=False)
    try:
        stats = restart_five_times(sup, process_zone)
    finally:
        sup.close()
    print(f"\nwithout socket activation: {json.dumps(stats)}")
    assert stats["connect_errors"] > 0, stats  # refused until the zone was re-attached
    assert stats["mount_after"][1] != stats["mount_before"][1]  # a new inode each start
    assert "not re-attached" not in sup.log()


def test_systemd_socket_activate_starts_a_working_broker(tmp_path: Path) -> None:
    sock = str(tmp_path / "broker.sock")
    with open(tmp_path / "broker.log", "ab") as log:
        proc = subprocess.Popen(
            ["systemd-socket-activate", "-l", sock, "-E", f"PYTHONPATH={ROOT}",
             sys.executable, "-m", "broker._daemon", "--state-dir", str(tmp_path / "state")],
            stdout=log, stderr=log, stdin=subprocess.DEVNULL, cwd=ROOT)
    try:
        deadline = time.monotonic() + 10
        while not os.path.exists(sock):
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.02)
        # This first connection makes systemd-socket-activate exec the broker in its place;
        # the call waits in the backlog until the broker accepts.
        with Client(sock, timeout=30) as client:
            assert client.who_am_i().zone == "global"
        log_text = (tmp_path / "broker.log").read_text()
        assert "(passed by the supervisor)" in log_text
        assert f"Execing {sys.executable}" in log_text
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)
    assert proc.returncode == 0
    assert os.path.exists(sock)  # the supervisor's file: the broker never unlinks it


@pytest.mark.parametrize("kind", ["not listening", "datagram", "unnamed"])
def test_a_passed_socket_that_cannot_serve_is_refused(tmp_path: Path, kind: str) -> None:
    if kind == "datagram":
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(str(tmp_path / "d.sock"))
    else:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        if kind == "not listening":
            sock.bind(str(tmp_path / "s.sock"))
        else:  # abstract: there is no file for zones to mount
            sock.bind(f"\0{tmp_path.name}-{os.getpid()}")
            sock.listen(1)
    try:
        fd = sock.fileno()
        out = subprocess.run(
            ["/bin/sh", "-c", 'export LISTEN_PID=$$ LISTEN_FDS=1; exec "$0" "$@"',
             sys.executable, "-m", "broker._daemon", "--state-dir", str(tmp_path / "state")],
            capture_output=True, text=True, cwd=ROOT, timeout=60, close_fds=False,
            preexec_fn=lambda: os.dup2(fd, 3), check=False)
    finally:
        sock.close()
    assert out.returncode == 4, out.stderr
    assert "Traceback" not in out.stderr
    assert out.stderr.startswith("linkbrokerd: socket activation: fd 3 ")
    assert not (tmp_path / "state").exists()  # refused before touching anything
