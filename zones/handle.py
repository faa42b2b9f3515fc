"""How a zone's network namespace is found and held: one opener per zone kind.

Every opener returns a `ZoneHandle` holding an open fd of the namespace, so the broker keeps
talking to the namespace it checked even if a name under /run/netns or a pid is reused later.
Names from callers never create anything (pyroute2's `NetNS(name)` would create a missing
namespace; we only ever open existing files).
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass

__all__ = [
    "NETNS_DIR",
    "ZoneGone",
    "ZoneHandle",
    "host_netns_inode",
    "netns_inode_of_pid",
    "open_named_netns",
    "open_pid_netns",
    "pid_start_time",
]

NETNS_DIR = "/run/netns"
_NETNS_NAME = re.compile(r"[A-Za-z0-9_.-]{1,255}")


class ZoneGone(LookupError):
    """The namespace named does not exist (or no longer is the one that was booted)."""


@dataclass(slots=True)
class ZoneHandle:
    netns_fd: int
    netns_inode: int
    pid: int | None = None
    pid_start: int | None = None
    root: str | None = None

    def close(self) -> None:
        if self.netns_fd >= 0:
            os.close(self.netns_fd)
            self.netns_fd = -1


def host_netns_inode() -> int:
    return os.stat("/proc/self/ns/net").st_ino


def netns_inode_of_pid(pid: int) -> int:
    return os.stat(f"/proc/{pid}/ns/net").st_ino


def pid_start_time(pid: int) -> int:
    """Field 22 of /proc/PID/stat: with the pid, names one process across pid reuse."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError as exc:
        raise ZoneGone(f"process {pid} does not exist") from exc
    return int(data[data.rindex(b")") + 2 :].split()[19])


def open_named_netns(name: str, expect_inode: int | None = None) -> ZoneHandle:
    if not _NETNS_NAME.fullmatch(name) or name in (".", ".."):
        raise ZoneGone(f"no network namespace {name!r} under {NETNS_DIR}")
    try:
        fd = os.open(f"{NETNS_DIR}/{name}", os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except OSError as exc:
        raise ZoneGone(f"no network namespace {name!r} under {NETNS_DIR}") from exc
    st = os.fstat(fd)
    # An unmounted /run/netns/NAME is a plain empty file; a netns is an nsfs inode.
    if not stat.S_ISREG(st.st_mode) or st.st_dev == os.stat(NETNS_DIR).st_dev:
        os.close(fd)
        raise ZoneGone(f"{NETNS_DIR}/{name} is not a mounted network namespace")
    if expect_inode is not None and st.st_ino != expect_inode:
        os.close(fd)
        raise ZoneGone(f"{NETNS_DIR}/{name} is another namespace now")
    return ZoneHandle(netns_fd=fd, netns_inode=st.st_ino)


def open_pid_netns(
    pid: int, expect_start: int | None = None, expect_inode: int | None = None
) -> ZoneHandle:
    if pid <= 0:
        raise ZoneGone(f"process {pid} does not exist")
    start = pid_start_time(pid)
    if expect_start is not None and start != expect_start:
        raise ZoneGone(f"process {pid} is another process now")
    try:
        fd = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise ZoneGone(f"process {pid} does not exist") from exc
    # Checked again after the open: the fd is the namespace of the process we identified.
    if pid_start_time(pid) != start:
        os.close(fd)
        raise ZoneGone(f"process {pid} exited while being opened")
    inode = os.fstat(fd).st_ino
    if expect_inode is not None and inode != expect_inode:
        os.close(fd)
        raise ZoneGone(f"process {pid} is in another network namespace now")
    return ZoneHandle(
        netns_fd=fd, netns_inode=inode, pid=pid, pid_start=start, root=f"/proc/{pid}/root"
    )
