"""Is the caller root of its zone? The one authorization fact that needs /proc.

A caller is root of its zone when its host uid is 0, or when it is uid 0 of a user namespace of
its own *and* that user namespace owns the caller's network namespace. The second condition
matters: anyone may `unshare --user --map-root-user` and be uid 0 of a fresh user namespace, but
that namespace owns no zone's network namespace, so it grants nothing. Conversely a container
whose user namespace made its network namespace is run by that namespace's root.

Split as the rest of the broker is: `host_uid_to_ns` and `decide` are pure and tested with
tables; `is_zone_root` gathers the facts from /proc and fails closed: any failure to read them
is "not root".
"""

from __future__ import annotations

import fcntl
import os
import signal
from dataclasses import dataclass

__all__ = ["NS_GET_USERNS", "NsFacts", "decide", "host_uid_to_ns", "is_zone_root"]

NS_GET_USERNS = 0xB701  # _IO(0xb7, 0x1), linux/nsfs.h: the user namespace owning a namespace

NsId = tuple[int, int]
"""A namespace's identity: (st_dev, st_ino) of its nsfs file."""


def host_uid_to_ns(host_uid: int, uid_map: str) -> int | None:
    """The uid inside a user namespace that maps to `host_uid`, from /proc/PID/uid_map text.

    Read from the host, each line is `inside outside count` with `outside` in the host's ids:
    host uid `outside + k` is uid `inside + k` inside, for 0 <= k < count. None when the uid is
    not mapped. Malformed text raises ValueError, for the caller to treat as "not root".
    """
    for line in uid_map.splitlines():
        if not line.strip():
            continue
        fields = line.split()
        if len(fields) != 3:
            raise ValueError(f"uid_map line {line!r} has {len(fields)} fields, not 3")
        inside, outside, count = (int(f) for f in fields)
        if min(inside, outside, count) < 0:
            raise ValueError(f"uid_map line {line!r} has a negative field")
        if outside <= host_uid < outside + count:
            return inside + (host_uid - outside)
    return None


@dataclass(frozen=True, slots=True)
class NsFacts:
    """What /proc says about a caller, gathered in one go so `decide` can stay pure."""

    host_userns: NsId  # the broker's own user namespace (the host's)
    caller_userns: NsId  # /proc/PID/ns/user
    netns_owner: NsId  # NS_GET_USERNS on /proc/PID/ns/net
    uid_map: str  # /proc/PID/uid_map, read from the host
    euid: int  # effective uid in /proc/PID/status (host view)


def decide(host_uid: int, facts: NsFacts) -> bool:
    """The rule of the module, on facts already read.

    `euid` must still be the uid SO_PEERCRED reported (effective uid at connect time): if the
    process changed ids since, or the pid now names another process, the facts are not about the
    caller, and the answer is no.
    """
    if host_uid == 0:
        return True
    if facts.euid != host_uid:
        return False
    if facts.caller_userns == facts.host_userns:
        return False
    if facts.netns_owner != facts.caller_userns:
        return False
    try:
        return host_uid_to_ns(host_uid, facts.uid_map) == 0
    except ValueError:
        return False


def is_zone_root(pid: int, host_uid: int, pidfd: int | None = None) -> bool:
    """Whether the caller `pid` (host view) with host uid `host_uid` is root of its zone.

    Everything is read through one directory fd of /proc/PID, so all facts come from the same
    process; with `pidfd` (SO_PEERPIDFD), the process is checked to be alive after that fd was
    opened, so the pid was not reused in between. Any failure is False: fail closed.
    """
    if host_uid == 0:
        return True
    try:
        return decide(host_uid, _read_facts(pid, pidfd))
    except (OSError, ValueError):
        return False


def _read_facts(pid: int, pidfd: int | None) -> NsFacts:
    proc = os.open(f"/proc/{pid}", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        if pidfd is not None:
            signal.pidfd_send_signal(pidfd, 0)  # raises ProcessLookupError once it has exited
        caller_userns = _ns_id(os.stat("ns/user", dir_fd=proc))
        net = os.open("ns/net", os.O_RDONLY | os.O_CLOEXEC, dir_fd=proc)
        try:
            owner = fcntl.ioctl(net, NS_GET_USERNS)
        finally:
            os.close(net)
        try:
            netns_owner = _ns_id(os.fstat(owner))
        finally:
            os.close(owner)
        uid_map = _read(proc, "uid_map")
        euid = _status_euid(_read(proc, "status"))
    finally:
        os.close(proc)
    return NsFacts(
        host_userns=_ns_id(os.stat("/proc/self/ns/user")),
        caller_userns=caller_userns,
        netns_owner=netns_owner,
        uid_map=uid_map,
        euid=euid,
    )


def _ns_id(st: os.stat_result) -> NsId:
    return (st.st_dev, st.st_ino)


def _read(dir_fd: int, name: str) -> str:
    fd = os.open(name, os.O_RDONLY | os.O_CLOEXEC, dir_fd=dir_fd)
    with os.fdopen(fd, "rb") as f:
        return f.read(65536).decode("ascii")


def _status_euid(status: str) -> int:
    """The effective uid from /proc/PID/status (`Uid: real effective saved fs`)."""
    for line in status.splitlines():
        if line.startswith("Uid:"):
            fields = line.split()
            if len(fields) != 5:
                raise ValueError(f"malformed status line {line!r}")
            return int(fields[2])
    raise ValueError("no Uid line in status")
