"""Fixtures for real-kernel tests: a real linkbrokerd process, real network namespaces.

Everything a test makes is named with a per-run prefix and removed afterwards, even when the
test fails: processes by the pids we started, namespaces by name, host links by prefix.
"""

from __future__ import annotations

import json
import os
import secrets
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

from broker._errors import error_from_wire
from broker.client import Client

ROOT = Path(__file__).resolve().parent.parent
PREFIX = "lbt" + secrets.token_hex(2)


def run(*cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, check=check, capture_output=True, text=True, timeout=60)


def host_links() -> set[str]:
    out = run("ip", "-o", "link", "show").stdout
    return {line.split(": ")[1].split("@")[0] for line in out.splitlines()}


@dataclass
class BrokerProcess:
    """A linkbrokerd started by a test; it is ours to kill."""

    workdir: Path
    socket: str = ""
    state_dir: str = ""
    proc: subprocess.Popen[bytes] | None = None
    extra_args: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.socket = str(self.workdir / "broker.sock")
        self.state_dir = str(self.workdir / "state")

    def start(self) -> None:
        log = open(self.workdir / "broker.log", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "broker._daemon", "--socket", self.socket,
             "--state-dir", self.state_dir, "--log-level", "DEBUG", *self.extra_args],
            stdout=log, stderr=log, cwd=ROOT, stdin=subprocess.DEVNULL,
        )
        log.close()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"linkbrokerd exited {self.proc.returncode}:\n{self.log()}")
            probe = socket.socket(socket.AF_UNIX)
            try:
                probe.connect(self.socket)
                return
            except OSError:
                time.sleep(0.05)
            finally:
                probe.close()
        raise RuntimeError(f"linkbrokerd did not come up:\n{self.log()}")

    def log(self) -> str:
        return (self.workdir / "broker.log").read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(5)

    def kill9(self) -> None:
        self.stop(signal.SIGKILL)

    def client(self) -> Client:
        return Client(self.socket, timeout=30)


class ZoneCaller:
    """A process inside a network namespace that calls the broker for a test."""

    def __init__(self, netns: str, sock: str) -> None:
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", netns, sys.executable, str(ROOT / "tests/zone_agent.py"),
             sock],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )

    def raw(self, method: str, **parameters: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        full = method if "." in method else f"io.linkbroker.{method}"
        self.proc.stdin.write(json.dumps({"method": full, "parameters": parameters}) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("zone caller died")
        reply: dict[str, Any] = json.loads(line)
        return reply

    def call(self, method: str, **parameters: Any) -> dict[str, Any]:
        reply = self.raw(method, **parameters)
        if "error" in reply:
            raise error_from_wire(reply["error"], reply.get("parameters"))
        result: dict[str, Any] = reply.get("parameters") or {}
        return result

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)


@pytest.fixture(scope="session")
def prefix() -> str:
    return PREFIX


@pytest.fixture
def names(prefix: str) -> Iterator[Any]:
    """Unique names: names.ns('red') -> 'lbtXXXXred', names.link('v') -> short link names."""
    counter = iter(range(10_000))

    class Names:
        def ns(self, what: str) -> str:
            return f"{prefix}{what}"

        def link(self, what: str) -> str:
            return f"{prefix}{what}{next(counter)}"[:15]

    yield Names()


@pytest.fixture
def netns(prefix: str) -> Iterator[Any]:
    """Make network namespaces; all are deleted at the end (their links go with them)."""
    made: list[str] = []

    def make(name: str) -> str:
        full = name if name.startswith(prefix) else f"{prefix}{name}"
        run("ip", "netns", "add", full)
        made.append(full)
        run("ip", "-n", full, "link", "set", "lo", "up")
        return full

    yield make
    for name in made:
        run("ip", "netns", "del", name, check=False)


@pytest.fixture
def broker(tmp_path: Path, prefix: str) -> Iterator[BrokerProcess]:
    before = host_links()
    proc = BrokerProcess(tmp_path)
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()
        # Host links a failed test may have left: only ours, by prefix.
        for name in host_links() - before:
            if name.startswith(prefix):
                run("ip", "link", "del", name, check=False)


@pytest.fixture
def zone_caller(broker: BrokerProcess) -> Iterator[Any]:
    callers: list[ZoneCaller] = []

    def make(netns: str) -> ZoneCaller:
        caller = ZoneCaller(netns, broker.socket)
        callers.append(caller)
        return caller

    yield make
    for caller in callers:
        caller.close()
