"""The programs as an operator meets them: linkadm's failures without a traceback (each with
its own exit code), --version, and linkbrokerd --check-config, against a real broker that is
stopped, frozen and killed under the client."""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from clients.linkadm import exits
from tests.conftest import ROOT, BrokerProcess


def linkadm(sock: str, *args: str, no_caps: bool = False) -> subprocess.CompletedProcess[str]:
    # Root without capabilities is held to the file modes like any user.
    prefix = ["setpriv", "--bounding-set=-all", "--inh-caps=-all"] if no_caps else []
    return subprocess.run(
        [*prefix, sys.executable, "-m", "clients.linkadm", "--socket", sock, *args],
        capture_output=True, text=True, cwd=ROOT, timeout=60, check=False,
        env={"PATH": os.environ["PATH"], "PYTHONPATH": str(ROOT)},
    )


def daemon(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "broker._daemon", *args], capture_output=True,
                          text=True, cwd=ROOT, timeout=60, check=False)


def one_line(out: subprocess.CompletedProcess[str]) -> str:
    """The single line of stderr a failure may print; never a traceback."""
    assert "Traceback" not in out.stderr, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    return lines[0]


def test_broker_killed_mid_call_is_one_line_and_exit_6(broker: BrokerProcess) -> None:
    assert broker.proc is not None
    # Frozen, the broker accepts nothing: the call waits in the backlog, then the broker dies
    # under it with the request unanswered.
    broker.proc.send_signal(signal.SIGSTOP)
    try:
        call = subprocess.Popen(
            [sys.executable, "-m", "clients.linkadm", "--socket", broker.socket, "show-link"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
        time.sleep(1.0)  # linkadm has connected and sent its call by now
        assert call.poll() is None
    finally:
        broker.proc.kill()
        broker.proc.wait(10)
    _, err = call.communicate(timeout=30)
    out = subprocess.CompletedProcess(call.args, call.returncode, "", err)
    line = one_line(out)
    assert out.returncode == exits.GONE
    assert line.startswith("linkadm: show-link: the broker closed the connection before "
                           "replying"), line
    assert "run the command again" in line


def test_watch_ends_with_one_line_when_the_broker_stops(broker: BrokerProcess) -> None:
    watch = subprocess.Popen(
        [sys.executable, "-m", "clients.linkadm", "--socket", broker.socket, "watch"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        time.sleep(1.0)
        broker.kill9()
        _, err = watch.communicate(timeout=30)
    finally:
        if watch.poll() is None:
            watch.kill()
            watch.wait(5)
    assert watch.returncode == exits.GONE
    assert "the broker closed the connection" in one_line(
        subprocess.CompletedProcess(watch.args, watch.returncode, "", err))


def test_stopped_and_crashed_broker_and_missing_socket(broker: BrokerProcess) -> None:
    broker.kill9()  # the socket file stays, nobody listens
    out = linkadm(broker.socket, "whoami")
    assert out.returncode == exits.NOT_RUNNING
    assert f"no broker is listening on {broker.socket}" in one_line(out)
    os.unlink(broker.socket)
    out = linkadm(broker.socket, "show-link")
    assert out.returncode == exits.SOCKET_MISSING
    assert f"no broker socket at {broker.socket}" in one_line(out)


def test_socket_not_permitted(broker: BrokerProcess) -> None:
    os.chmod(broker.socket, 0o000)
    out = linkadm(broker.socket, "whoami", no_caps=True)
    assert out.returncode == exits.NOT_PERMITTED, out.stderr
    assert f"not allowed to open {broker.socket}" in one_line(out)
    os.chmod(broker.socket, 0o666)
    assert linkadm(broker.socket, "whoami", no_caps=True).returncode == 0


@pytest.fixture
def impostor(tmp_path: Path) -> Iterator[str]:
    """A socket that answers like something else (an HTTP server's error), then closes."""
    path = str(tmp_path / "impostor.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(4)
    server.settimeout(30)

    def answer() -> None:
        try:
            conn, _ = server.accept()
        except OSError:
            return
        with conn:
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n\0")

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    yield path
    server.close()
    thread.join(5)


def test_something_else_on_the_socket(impostor: str) -> None:
    out = linkadm(impostor, "whoami")
    assert out.returncode == exits.NOT_A_BROKER
    assert "is not linkbrokerd" in one_line(out)


def test_exit_codes_are_distinct_and_documented() -> None:
    codes = [code for code, _ in exits.EXIT_CODES]
    assert len(codes) == len(set(codes))
    out = subprocess.run([sys.executable, "-m", "clients.linkadm", "--help"], capture_output=True,
                         text=True, cwd=ROOT, check=True)
    for code, meaning in exits.EXIT_CODES:
        assert f"  {code:<4} {meaning}" in out.stdout


def test_versions() -> None:
    for module, prog in (("clients.linkadm", "linkadm"), ("broker._daemon", "linkbrokerd")):
        out = subprocess.run([sys.executable, "-m", module, "--version"], capture_output=True,
                             text=True, cwd=ROOT, check=True)
        assert out.stdout.strip() == f"{prog} 0.1.0"


def test_check_config_good_and_first_start(tmp_path: Path) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text((ROOT / "docs/policy.example.toml").read_text())
    os.chmod(policy, 0o644)
    state = tmp_path / "state"
    out = daemon("--check-config", "--policy", str(policy), "--state-dir", str(state))
    assert out.returncode == 0, out.stderr
    assert "absent, will be created" in out.stdout and "configuration ok" in out.stdout
    assert not state.exists()  # nothing made


def test_check_config_reads_a_real_store(broker: BrokerProcess, netns: Any) -> None:
    with broker.client() as gz:
        gz.boot_zone("red", netns=netns("red"))
        links = len(gz.list_links())
    broker.stop()
    out = daemon("--check-config", "--state-dir", broker.state_dir)
    assert out.returncode == 0, out.stderr
    assert f"1 zones and {links} links" in out.stdout


def test_check_config_refuses_bad_policy(tmp_path: Path) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text("[limits\n")
    os.chmod(policy, 0o644)
    out = daemon("--check-config", "--policy", str(policy), "--state-dir", str(tmp_path))
    assert out.returncode == 2
    assert one_line(out).startswith(f"linkbrokerd: policy: {policy}")
    os.chmod(policy, 0o666)
    policy.write_text("")
    out = daemon("--check-config", "--policy", str(policy), "--state-dir", str(tmp_path))
    assert out.returncode == 2 and "lets group or others write it" in one_line(out)
    out = daemon("--check-config", "--policy", str(tmp_path / "typo.toml"))
    assert out.returncode == 2 and "cannot open" in one_line(out)


def test_check_config_refuses_bad_state(tmp_path: Path) -> None:
    not_dir = tmp_path / "file"
    not_dir.write_text("")
    out = daemon("--check-config", "--state-dir", str(not_dir))
    assert out.returncode == 3 and "not a directory" in one_line(out)
    out = daemon("--check-config", "--state-dir", str(tmp_path / "no" / "such"))
    assert out.returncode == 3 and "neither it nor its parent" in one_line(out)
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    (state / "linkbroker.db").write_bytes(b"not sqlite at all" * 100)
    out = daemon("--check-config", "--state-dir", str(state))
    assert out.returncode == 3 and "unreadable" in one_line(out)
    (state / "linkbroker.db").unlink()
    db = sqlite3.connect(state / "linkbroker.db")
    db.executescript("CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);"
                     "CREATE TABLE zones (name TEXT PRIMARY KEY, body BLOB NOT NULL);"
                     "CREATE TABLE links (id INTEGER PRIMARY KEY, body BLOB NOT NULL);"
                     "CREATE TABLE intents (id INTEGER PRIMARY KEY, body BLOB NOT NULL);"
                     "INSERT INTO zones VALUES ('red', x'00');")
    db.commit()
    db.close()
    out = daemon("--check-config", "--state-dir", str(state))
    assert out.returncode == 3 and "unreadable" in one_line(out)
