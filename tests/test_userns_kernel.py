"""broker._userns against real user and network namespaces (root, unshare, setpriv): the
kernel tier of tests/unit/test_userns.py, whose tables need no privilege."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from broker._userns import is_zone_root

# --- real namespaces -----------------------------------------------------------------------------

NOBODY = 65534
AS_NOBODY = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]

needs_root = pytest.mark.skipif(
    os.geteuid() != 0 or not (shutil.which("unshare") and shutil.which("setpriv")),
    reason="needs root, unshare and setpriv",
)


@contextmanager
def started(argv: list[str]) -> Iterator[int]:
    """Run `argv` (an exec chain ending in `sleep`) and yield its pid once it sleeps.

    unshare and setpriv exec their command in place, so the pid is the same throughout and the
    namespaces are set up by the time `sleep` runs. Only this process is killed afterwards.
    """
    proc = subprocess.Popen([*argv, "sleep", "60"], stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                with open(f"/proc/{proc.pid}/comm") as f:
                    if f.read().strip() == "sleep":
                        break
            except OSError:
                pass
            if proc.poll() is not None:
                assert proc.stderr is not None
                pytest.skip(f"{argv} failed: {proc.stderr.read().decode().strip()}")
            if time.monotonic() > deadline:
                pytest.fail(f"{argv} did not reach sleep")
            time.sleep(0.01)
        yield proc.pid
    finally:
        proc.kill()
        proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()


@needs_root
@pytest.mark.parametrize(
    ("argv", "host_uid", "expected"),
    [
        # a user namespace that owns a network namespace, root inside it
        ([*AS_NOBODY, "unshare", "--user", "--map-root-user", "--net"], NOBODY, True),
        # the same, made by host root: host uid 0
        (["unshare", "--user", "--map-root-user", "--net"], 0, True),
        # a user namespace owning the network namespace, but with no uid mapped to root
        ([*AS_NOBODY, "unshare", "--user", "--net"], NOBODY, False),
        # root of a fresh user namespace, but still in the host's network namespace
        ([*AS_NOBODY, "unshare", "--user", "--map-root-user"], NOBODY, False),
        # a network namespace of the host's user namespace, entered as nobody
        (["unshare", "--net", *AS_NOBODY], NOBODY, False),
    ],
)
def test_real_namespaces(argv: list[str], host_uid: int, expected: bool) -> None:
    with started(argv) as pid:
        assert is_zone_root(pid, host_uid) is expected


@needs_root
def test_real_uid_mismatch_is_not_root() -> None:
    with started([*AS_NOBODY, "unshare", "--user", "--map-root-user", "--net"]) as pid:
        assert is_zone_root(pid, NOBODY)
        assert not is_zone_root(pid, NOBODY - 1)  # SO_PEERCRED said someone else


@needs_root
def test_real_pidfd_guards_against_reuse() -> None:
    """A pidfd whose process is gone means the pid may now name someone else: refused.

    Reuse of the very pid cannot be forced here, so the caller is played by a process that has
    exited and been reaped, and "its" pid by a live zone root.
    """
    with started([*AS_NOBODY, "unshare", "--user", "--map-root-user", "--net"]) as pid:
        live = os.pidfd_open(pid)
        try:
            with started([]) as other:
                gone = os.pidfd_open(other)
            try:
                assert is_zone_root(pid, NOBODY, live)
                assert not is_zone_root(pid, NOBODY, gone)
            finally:
                os.close(gone)
        finally:
            os.close(live)


@needs_root
def test_real_exited_caller_is_not_root() -> None:
    with started([*AS_NOBODY, "unshare", "--user", "--map-root-user", "--net"]) as pid:
        pidfd = os.pidfd_open(pid)
        try:
            os.kill(pid, 9)  # our own child; started() reaps it
            os.waitid(os.P_PIDFD, pidfd, os.WEXITED | os.WNOWAIT)
            assert not is_zone_root(pid, NOBODY, pidfd)  # a zombie has no namespaces left
        finally:
            os.close(pidfd)
