"""Make the broker's socket appear inside a zone's root, as dlmgmt_door_attach does on illumos.

The socket is bind-mounted into the zone's mount namespace, so ``linkadm`` finds it at
:data:`ZONE_SOCKET_PATH` in every zone whatever ``--socket`` says on the host.

Why a helper process: joining a mount namespace (``setns(CLONE_NEWNS)``) is refused to a
multi-threaded process, and the daemon (asyncio plus worker threads) must never fork without
exec. So this side clones the socket's mount with ``open_tree`` (a detached mount that touches
no mount table), makes the clone private, and passes its fd to ``python -m
zones._attach_helper``, which joins the zone and mounts it there; see that module for the rules
it keeps (resolution only below the zone's root, no symlinks, mounts named by fd, nothing done
where the zone's mount would propagate into the host).

Both calls block for one process spawn (about 30 ms here); from the event loop run them with
``asyncio.to_thread``.

Errors::

    AttachError      the helper could not do its job at all: process gone (attach only),
                     timeout, crash, host socket unusable. After a timeout or crash the
                     target's mounts are unknown; the next attach or detach repairs them.
    AttachResult(attached=False, reason=...)
                     a definite answer: the zone's path is unsafe or unusable, and nothing was
                     mounted anywhere (directories on the way may have been created).
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from zones import _syscalls as sc

__all__ = [
    "ZONE_SOCKET_PATH",
    "AttachError",
    "AttachResult",
    "attach_socket",
    "detach_socket",
]

ZONE_SOCKET_PATH = "/run/linkbroker/broker.sock"

# The directory holding the ``zones`` package, so the helper imports this very copy even when
# the package is not installed (tests, a source checkout).
_PACKAGE_ROOT = str(Path(__file__).resolve().parent.parent)


class AttachError(Exception):
    """The helper failed as a process, so nothing is known about the zone's mounts.

    Distinct from a refusal (``AttachResult.attached is False``): a caller may retry or halt the
    zone on an AttachError, while a refusal is the zone's own doing and is reported as is.
    """


@dataclass(frozen=True, slots=True)
class AttachResult:
    """What the helper did; ``reason`` says why not attached or what was detached."""

    attached: bool
    reason: str | None


def _check_call(pid: int, target: str) -> None:
    if pid <= 0:
        raise ValueError(f"pid must be positive, got {pid}")
    parts = target.split("/")
    if (
        not target.startswith("/")
        or "\0" in target
        or any(part in ("", ".", "..") for part in parts[1:])
    ):
        raise ValueError(f"target must be an absolute path without . or .. parts: {target!r}")


def _zone_pidfd(pid: int, pid_start: int | None) -> int | None:
    """A pidfd of the zone's process, or None when it is gone.

    The helper gets this fd, never the bare pid: a pidfd names one process for good. With
    `pid_start` (field 22 of /proc/PID/stat, as the broker recorded at boot) it is checked to be
    the process the zone was booted with, and alive after the check, so a pid recycled since is
    noticed instead of targeted."""
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return None
    try:
        if pid_start is not None:
            from zones.handle import ZoneGone, pid_start_time

            try:
                if pid_start_time(pid) != pid_start:
                    raise ZoneGone(f"process {pid} is another process now")
            except ZoneGone:
                os.close(pidfd)
                return None
        signal.pidfd_send_signal(pidfd, 0)
    except ProcessLookupError:
        os.close(pidfd)
        return None
    return pidfd


def _run_helper(
    args: list[str], timeout: float, pass_fds: tuple[int, ...] = ()
) -> tuple[str, str | None]:
    """Run the helper and return its (status, reason); AttachError if it gave no answer."""
    # -P: no cwd on sys.path; -S: no site (its .pth files cost half the ~50 ms start-up), the
    # helper needs only the standard library and this package, found through PYTHONPATH.
    command = [sys.executable, "-P", "-S", "-m", "zones._attach_helper", *args]
    try:
        done = subprocess.run(
            command,
            pass_fds=pass_fds,
            close_fds=True,
            capture_output=True,
            timeout=timeout,
            cwd="/",
            env={"PYTHONPATH": _PACKAGE_ROOT, "LC_ALL": "C.UTF-8"},
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise AttachError(f"attach helper timed out after {timeout} s ({' '.join(args)})") from None
    except OSError as exc:
        raise AttachError(f"cannot start the attach helper: {exc}") from exc
    lines = done.stdout.decode("utf-8", "replace").strip().splitlines()
    try:
        reply = json.loads(lines[-1]) if done.returncode == 0 and lines else None
    except ValueError:
        reply = None
    if isinstance(reply, dict):
        status, reason = reply.get("status"), reply.get("reason")
        if isinstance(status, str) and (reason is None or isinstance(reason, str)):
            return status, reason
    stderr = done.stderr.decode("utf-8", "replace").strip().splitlines()[-3:]
    raise AttachError(
        f"attach helper failed (exit {done.returncode}): {' | '.join(stderr) or 'no output'}"
    )


def attach_socket(
    host_socket: str,
    pid: int,
    target: str = ZONE_SOCKET_PATH,
    timeout: float = 10.0,
    *,
    pid_start: int | None = None,
) -> AttachResult:
    """Bind-mount host_socket at target inside the root and mount namespace of pid.

    Idempotent: mounts already on the target (a stale broker socket, or this one) are detached
    first, so exactly one mount is left. `pid_start` (the zone's recorded start time) makes a
    recycled pid an AttachError ("gone") rather than another process's namespace.
    """
    _check_call(pid, target)
    pidfd = _zone_pidfd(pid, pid_start)
    if pidfd is None:
        raise AttachError(f"process {pid} is gone")
    try:
        return _attach(host_socket, pidfd, target, timeout)
    finally:
        os.close(pidfd)


def _attach(host_socket: str, pidfd: int, target: str, timeout: float) -> AttachResult:
    try:
        tree = sc.open_tree(sc.AT_FDCWD, host_socket, sc.OPEN_TREE_CLONE | sc.OPEN_TREE_CLOEXEC)
    except OSError as exc:
        raise AttachError(f"cannot clone the host socket {host_socket}: {exc.strerror}") from exc
    try:
        if not stat.S_ISSOCK(os.fstat(tree).st_mode):
            raise AttachError(f"{host_socket} is not a socket")
        # The clone would join the peer group of a shared host mount, so a mount the zone made on
        # top of it would propagate back onto the host's socket path.
        sc.mount_setattr(
            tree,
            "",
            sc.AT_EMPTY_PATH,
            attr_set=sc.MOUNT_ATTR_NOSUID | sc.MOUNT_ATTR_NODEV | sc.MOUNT_ATTR_NOEXEC,
            propagation=sc.MS_PRIVATE,
        )
        status, reason = _run_helper(
            ["attach", str(pidfd), target, str(tree)], timeout, pass_fds=(tree, pidfd)
        )
    except OSError as exc:
        raise AttachError(f"cannot prepare the mount of {host_socket}: {exc.strerror}") from exc
    finally:
        os.close(tree)
    if status == "attached":
        return AttachResult(attached=True, reason=reason)
    if status == "refused":
        return AttachResult(attached=False, reason=reason)
    raise AttachError(reason or f"attach helper answered {status!r}")


def detach_socket(
    pid: int,
    target: str = ZONE_SOCKET_PATH,
    timeout: float = 10.0,
    *,
    pid_start: int | None = None,
) -> AttachResult:
    """Detach every mount stacked on target in the zone of pid (the file left behind stays).

    Repeatable, like a CNI Del: a missing process, directory or mount is success, and so is a
    path the zone made unsafe (nothing of ours can be behind a symlink). ``attached`` is always
    False and ``reason`` says what happened ("detached 1 mount from ...", "nothing mounted on
    ...", "process N is gone").
    """
    _check_call(pid, target)
    pidfd = _zone_pidfd(pid, pid_start)
    if pidfd is None:
        return AttachResult(attached=False, reason=f"process {pid} is gone")
    try:
        status, reason = _run_helper(["detach", str(pidfd), target], timeout, pass_fds=(pidfd,))
    finally:
        os.close(pidfd)
    if status in ("detached", "absent", "gone", "refused"):
        return AttachResult(attached=False, reason=reason)
    raise AttachError(reason or f"attach helper answered {status!r}")
