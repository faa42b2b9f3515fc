"""The exec'd, single-threaded half of :mod:`zones.attach`.

``setns(CLONE_NEWNS)`` is refused to a multi-threaded process and forking a threaded daemon
without exec is unsafe, so the broker clones its socket's mount with ``open_tree`` and hands the
fd to this fresh process, which joins the zone's mount namespace and mounts it there.

Rules this module keeps:

* The zone's process comes as a pidfd the broker opened and checked (pid plus start time), never
  as a bare pid. Its root (``/proc/PID/root``), mount namespace and mount table are opened
  before joining, PID read from the pidfd's fdinfo, and the pidfd still being alive afterwards
  proves all of them belong to that process, not to one that got its pid later.
* A zone in the host's mount namespace is refused: the host is both our namespace and, when
  the broker runs in a container of its own (compose), the initial one, /proc/1's. Mount IDs
  are unique to a namespace, so one the zone's table shares with either is that namespace.
  The peer groups checked below come from both tables too.
* Python runs in the zone's mount namespace, where every file is the zone's: an audit hook,
  armed right before setns, ends the helper (exit 70) at any import, exec, compile, dlopen,
  spawn, or open of a .py/.pyc/.so/.pth file: zone-planted code never runs as host root.
* Paths are resolved only below the zone's root, one component at a time, each relative to the fd
  of its already-checked parent, with symlinks and magic links refused by ``openat2``. What is
  unmounted or mounted is always named by an fd, never by a path the zone could swap.
* Nothing is unmounted or mounted when the mount holding the target shares a peer group with any
  mount of the host: mount and umount events would propagate into the host's table.
* A refusal is an answer, not an error: only failures of the helper itself (process gone, setns
  impossible, bad arguments) are reported as errors.

Usage (the only caller is :mod:`zones.attach`)::

    python -m zones._attach_helper attach PIDFD TARGET TREE_FD
    python -m zones._attach_helper detach PIDFD TARGET

It prints one JSON object on one line: ``{"status": S, "reason": R}`` where S is ``attached``,
``detached``, ``absent``, ``refused``, ``gone`` or ``error``.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import stat
import sys
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass

from zones import _syscalls as sc
from zones._audit_guard import arm_guard

__all__ = ["main"]

_RESOLVE = sc.RESOLVE_IN_ROOT | sc.RESOLVE_NO_SYMLINKS | sc.RESOLVE_NO_MAGICLINKS
# Bounds the detach loop: a zone that keeps stacking mounts on the target must not keep the
# helper (and the BootZone waiting for it) busy forever.
_MAX_STACKED = 64


class _Outcome(Exception):
    """Ends the run early with a status for the caller."""

    def __init__(self, status: str, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def _refused(reason: str) -> _Outcome:
    return _Outcome("refused", reason)


@dataclass(frozen=True, slots=True)
class _Zone:
    proc_self: int  # /proc/<this helper>, usable after setns whatever the zone's /proc is
    root: int  # the zone's root directory, as its process sees it
    host_groups: frozenset[int]  # peer groups any host mount sends to or receives from


def _kind(mode: int) -> str:
    kinds = {
        stat.S_IFDIR: "directory",
        stat.S_IFLNK: "symlink",
        stat.S_IFIFO: "FIFO",
        stat.S_IFCHR: "character device",
        stat.S_IFBLK: "block device",
        stat.S_IFSOCK: "socket",
        stat.S_IFREG: "regular file",
    }
    return kinds.get(stat.S_IFMT(mode), "special file")


def _read_at(dir_fd: int, name: str) -> str:
    fd = os.open(name, os.O_RDONLY | os.O_CLOEXEC, dir_fd=dir_fd)
    try:
        chunks = []
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
        return b"".join(chunks).decode("utf-8", "surrogateescape")
    finally:
        os.close(fd)


def _mnt_id(proc_self: int, fd: int) -> int:
    for line in _read_at(proc_self, f"fdinfo/{fd}").splitlines():
        key, _, value = line.partition(":")
        if key == "mnt_id":
            return int(value)
    raise OSError(errno.ENOTSUP, "no mnt_id in fdinfo")


def _propagation(dir_fd: int, name: str = "mountinfo") -> dict[int, list[str]]:
    """Map each mount ID of a mount table (ours by default) to its tags (shared:N, ...)."""
    tags: dict[int, list[str]] = {}
    for line in _read_at(dir_fd, name).splitlines():
        fields = line.split()
        if "-" in fields:
            tags[int(fields[0])] = fields[6 : fields.index("-")]
    return tags


def _groups(tags: list[str], prefixes: tuple[str, ...]) -> set[int]:
    return {int(tag.partition(":")[2]) for tag in tags if tag.startswith(prefixes)}


def _pid_of(proc_self: int, pidfd: int) -> int:
    """The pid a pidfd names in our pid namespace (fdinfo's Pid: -1 once it has exited)."""
    for line in _read_at(proc_self, f"fdinfo/{pidfd}").splitlines():
        key, _, value = line.partition(":")
        if key == "Pid":
            return int(value)
    raise OSError(errno.ENOTSUP, "no Pid in a pidfd's fdinfo")


def _host_tables(proc_self: int, proc: int) -> list[dict[int, list[str]]]:
    """The mount tables a zone's mount must not share with: ours, and the initial mount
    namespace's (/proc/1), which differs when the broker runs in a container of its own
    (compose: pid: host, so /proc/1 is the host's init). A /proc/1 we may not read leaves
    ours only: that is the case where the broker is not in a container, or sees no host."""
    tables = [_propagation(proc_self)]
    with suppress(PermissionError, FileNotFoundError, ProcessLookupError):
        tables.append(_propagation(proc, "1/mountinfo"))
    return tables


def _enter_zone(pidfd: int) -> _Zone:
    proc_self = os.open("/proc/self", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    proc = os.open("/proc", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    tables = _host_tables(proc_self, proc)
    host_ids = {mount_id for table in tables for mount_id in table}
    host_groups = frozenset(
        group
        for table in tables
        for tags in table.values()
        for group in _groups(tags, ("shared:", "master:"))
    )
    pid = _pid_of(proc_self, pidfd)
    if pid <= 0:
        raise _Outcome("gone", "the zone's process is gone")
    try:
        root = os.open(f"/proc/{pid}/root", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        mnt_ns = os.open(f"/proc/{pid}/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
        zone_ids = set(_propagation(proc, f"{pid}/mountinfo"))
        # The fds and the table name the pidfd's process only if it is still alive now (so
        # its pid was not reused in between).
        signal.pidfd_send_signal(pidfd, 0)
    except (FileNotFoundError, ProcessLookupError):
        raise _Outcome("gone", f"process {pid} is gone") from None
    finally:
        os.close(proc)
    with _closing(mnt_ns):
        ns, own = os.fstat(mnt_ns), os.stat("ns/mnt", dir_fd=proc_self)
        # A mount ID belongs to one namespace: one seen in a host table is that namespace.
        if (ns.st_dev, ns.st_ino) == (own.st_dev, own.st_ino) or zone_ids & host_ids:
            raise _refused("zone shares the host mount namespace")
        arm_guard()
        try:
            sc.setns(mnt_ns, sc.CLONE_NEWNS)
        except OSError as exc:
            raise _Outcome("error", f"cannot join the mount namespace of {pid}: {exc}") from exc
    return _Zone(proc_self=proc_self, root=root, host_groups=host_groups)


def _check_propagation(zone: _Zone, dir_fd: int, shown: str) -> None:
    """Refuse when a mount or umount below dir_fd would be copied into the host's table."""
    tags = _propagation(zone.proc_self).get(_mnt_id(zone.proc_self, dir_fd))
    if tags is None:
        raise _refused(f"the mount holding {shown} is not in the zone's mount namespace")
    if shared := _groups(tags, ("shared:",)) & zone.host_groups:
        raise _refused(
            f"the mount holding {shown} shares peer group {min(shared)} with the host: "
            "a mount there would propagate into the host"
        )


@contextmanager
def _closing(fd: int) -> Iterator[int]:
    try:
        yield fd
    finally:
        os.close(fd)


def _open_dir(dir_fd: int, name: str, shown: str, create: bool) -> int | None:
    """Open one directory below dir_fd, creating it when asked; None if missing."""
    for _attempt in range(2):
        try:
            return sc.openat2(dir_fd, name, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC, 0, _RESOLVE)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise _refused(f"{shown} is a symlink") from None
            if exc.errno == errno.ENOTDIR:
                raise _refused(f"{shown} is not a directory") from None
            if exc.errno != errno.ENOENT:
                raise _refused(f"cannot open {shown}: {exc.strerror}") from None
        if not create:
            return None
        try:
            os.mkdir(name, 0o755, dir_fd=dir_fd)
        except FileExistsError:
            pass
        except OSError as exc:
            raise _refused(f"cannot create {shown}: {exc.strerror}") from None
    raise _refused(f"{shown} keeps changing")


def _open_parent(zone: _Zone, parts: list[str], create: bool) -> int | None:
    fd = os.dup(zone.root)
    for depth, name in enumerate(parts[:-1], start=1):
        with _closing(fd):
            child = _open_dir(fd, name, "/" + "/".join(parts[:depth]), create)
        if child is None:
            return None
        fd = child
    return fd


def _open_target(parent: int, name: str, shown: str, create: bool) -> int | None:
    """O_PATH fd of the target's top-most inode (following mounts, never symlinks)."""
    for _attempt in range(2):
        try:
            return sc.openat2(parent, name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, 0, _RESOLVE)
        except OSError as exc:
            if exc.errno != errno.ENOENT:
                raise _refused(f"cannot open {shown}: {exc.strerror}") from None
        if not create:
            return None
        flags = os.O_RDONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            os.close(sc.openat2(parent, name, flags, 0o644, _RESOLVE))
        except FileExistsError:
            pass
        except OSError as exc:
            raise _refused(f"cannot create {shown}: {exc.strerror}") from None
    raise _refused(f"{shown} keeps changing")


def _unmount(zone: _Zone, fd: int) -> None:
    """Detach the mount fd sits on, by fd: no path is looked up again inside the zone.

    umount2 takes only a path, so the path is this helper's own /proc/PID/fd/N, reached from a
    cwd on our procfs (the zone may have no /proc). The trailing magic link must be followed, so
    UMOUNT_NOFOLLOW cannot be used; the link leads straight to the checked (mount, dentry).
    """
    os.fchdir(zone.proc_self)
    try:
        sc.umount2(f"fd/{fd}", sc.MNT_DETACH)
    finally:
        os.chdir("/")


def _clear_target(
    zone: _Zone, parent: int, name: str, shown: str, create: bool
) -> tuple[int | None, int]:
    """Detach every mount stacked on the target; return the bare target's fd and how many went.

    Only non-directories can be mounted on a non-directory, so a directory on top means the bare
    target is a directory too: that is refused without unmounting what the zone put there.
    """
    parent_mnt = _mnt_id(zone.proc_self, parent)
    detached = 0
    while True:
        fd = _open_target(parent, name, shown, create)
        if fd is None:
            return None, detached
        try:
            mode = os.fstat(fd).st_mode
            if stat.S_ISLNK(mode):
                raise _refused(f"{shown} is a symlink")
            if _mnt_id(zone.proc_self, fd) == parent_mnt:
                return fd, detached
            if stat.S_ISDIR(mode):
                raise _refused(f"{shown} has a {_kind(mode)} mounted on it")
            if detached >= _MAX_STACKED:
                raise _refused(f"more than {_MAX_STACKED} mounts are stacked on {shown}")
            try:
                _unmount(zone, fd)
            except OSError as exc:
                raise _refused(f"cannot detach the mount on {shown}: {exc.strerror}") from None
            detached += 1
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)


def _plural(count: int, what: str) -> str:
    return f"{count} {what}{'' if count == 1 else 's'}"


def attach(pidfd: int, target: str, tree_fd: int) -> tuple[str, str | None]:
    tree = os.fstat(tree_fd)
    if not stat.S_ISSOCK(tree.st_mode):
        raise _Outcome("error", f"fd {tree_fd} is a {_kind(tree.st_mode)}, not a socket")
    parts = target.split("/")[1:]
    zone = _enter_zone(pidfd)
    parent = _open_parent(zone, parts, create=True)
    if parent is None:
        raise _Outcome("error", f"could not create the directories of {target}")
    with _closing(parent):
        _check_propagation(zone, parent, target)
        fd, detached = _clear_target(zone, parent, parts[-1], target, create=True)
        if fd is None:
            raise _Outcome("error", f"could not create {target}")
        with _closing(fd):
            st = os.fstat(fd)
            if not (stat.S_ISSOCK(st.st_mode) or (stat.S_ISREG(st.st_mode) and st.st_size == 0)):
                raise _refused(
                    f"{target} is a {_kind(st.st_mode)}, not an empty regular file or a socket"
                )
            try:
                sc.move_mount(
                    tree_fd,
                    "",
                    fd,
                    "",
                    sc.MOVE_MOUNT_F_EMPTY_PATH | sc.MOVE_MOUNT_T_EMPTY_PATH,
                )
            except OSError as exc:
                raise _refused(f"cannot mount on {target}: {exc.strerror}") from None
        check = _open_target(parent, parts[-1], target, create=False)
        if check is None:
            raise _Outcome("error", f"{target} vanished right after the mount")
        with _closing(check):
            seen = os.fstat(check)
        if (seen.st_dev, seen.st_ino) != (tree.st_dev, tree.st_ino):
            raise _Outcome("error", f"{target} does not show the socket after the mount")
    if detached:
        return "attached", f"detached {_plural(detached, 'stale mount')} from {target} first"
    return "attached", None


def detach(pidfd: int, target: str) -> tuple[str, str | None]:
    parts = target.split("/")[1:]
    try:
        zone = _enter_zone(pidfd)
        parent = _open_parent(zone, parts, create=False)
        if parent is None:
            return "absent", f"{target} does not exist"
        with _closing(parent):
            _check_propagation(zone, parent, target)
            fd, detached = _clear_target(zone, parent, parts[-1], target, create=False)
    except _Outcome as outcome:
        if outcome.status != "refused":
            raise
        return "absent", f"nothing detached: {outcome.reason}"
    if fd is None:
        return "absent", f"{target} does not exist"
    os.close(fd)
    if not detached:
        return "absent", f"nothing mounted on {target}"
    return "detached", f"detached {_plural(detached, 'mount')} from {target}"


def _run(argv: list[str]) -> tuple[str, str | None]:
    if len(argv) == 4 and argv[0] == "attach":
        return attach(int(argv[1]), argv[2], int(argv[3]))
    if len(argv) == 3 and argv[0] == "detach":
        return detach(int(argv[1]), argv[2])
    raise _Outcome("error",
                   f"usage: attach PIDFD TARGET TREE_FD | detach PIDFD TARGET, got {argv}")


def main(argv: list[str] | None = None) -> int:
    os.umask(0o022)
    try:
        status, reason = _run(sys.argv[1:] if argv is None else argv)
    except _Outcome as outcome:
        status, reason = outcome.status, outcome.reason
    except (OSError, ValueError) as exc:
        status, reason = "error", f"{type(exc).__name__}: {exc}"
    print(json.dumps({"status": status, "reason": reason}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
