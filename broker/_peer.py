"""Who is calling: SO_PEERCRED for pid/uid/gid, SO_PEERPIDFD so a recycled pid cannot pose as
the caller, and the caller's network namespace, which names its zone.

The identity of a connection is fixed at connect and must stay true for every later call, so
the namespace is not remembered by its inode number alone: an inode number is freed when its
namespace dies and the kernel hands the lowest free number to the next namespace, so a
connection from a dead namespace would later name whatever zone got the number (finding 1 of
the hostile-zone review, docs/security.md). The connection therefore *holds* the namespace: an
fd of the caller's `/proc/PID/ns/net` stays open until the connection closes, and a namespace
with an open fd cannot die, so its inode cannot be reused while anyone could speak from it.

The pidfd is taken from the socket itself (the kernel pins the process that connected); the
namespace, the groups and the capabilities are read through one directory fd of /proc/PID, and
then the pidfd is checked to still name a live process: if the caller exited and its pid was
reused in between, the check fails and the connection is refused instead of being attributed
to the newcomer.
"""

from __future__ import annotations

import contextlib
import functools
import os
import select
import socket
import struct
from dataclasses import dataclass, field

from broker._userns import is_zone_root

__all__ = ["CAP_NET_ADMIN", "Peer", "PeerFacts", "PeerGone", "identify_peer", "is_host_admin"]

SO_PEERPIDFD = 77
CAP_NET_ADMIN = 12
_UCRED = struct.Struct("iII")


class PeerGone(Exception):
    """The peer process exited before it could be identified."""


@dataclass(frozen=True, slots=True)
class PeerFacts:
    """What /proc says of the caller, read in one go through one /proc/PID directory fd."""

    gids: frozenset[int]
    cap_effective: int
    userns: tuple[int, int]  # (st_dev, st_ino) of /proc/PID/ns/user


def is_host_admin(facts: PeerFacts, host_userns: tuple[int, int]) -> bool:
    """CAP_NET_ADMIN, effective, in the initial user namespace: what `ip link` needs on the
    host, and so what administering the host's links through the broker needs (uid 0 alone is
    not enough: a root process stripped of its capabilities, or a root container without
    CAP_NET_ADMIN, is no administrator of the host's network)."""
    return facts.userns == host_userns and bool(facts.cap_effective >> CAP_NET_ADMIN & 1)


@dataclass(slots=True)
class Peer:
    pid: int
    uid: int
    gid: int
    netns_inode: int
    gids: frozenset[int]
    zone_root: bool
    host_admin: bool = False
    # The caller's network namespace, held open for the connection's life (see above).
    netns_fd: int | None = field(default=None, repr=False)

    def close(self) -> None:
        if self.netns_fd is not None:
            with contextlib.suppress(OSError):
                os.close(self.netns_fd)
            self.netns_fd = None


def _ns_id(st: os.stat_result) -> tuple[int, int]:
    return (st.st_dev, st.st_ino)


def _read_facts(proc: int, gid: int) -> PeerFacts:
    fd = os.open("status", os.O_RDONLY | os.O_CLOEXEC, dir_fd=proc)
    with os.fdopen(fd, "rb") as f:
        status = f.read(65536)
    gids = {gid}
    cap_effective = 0
    for line in status.splitlines():
        if line.startswith(b"Groups:"):
            gids.update(int(g) for g in line.split()[1:])
        elif line.startswith(b"CapEff:"):
            cap_effective = int(line.split()[1], 16)
    userns = _ns_id(os.stat("ns/user", dir_fd=proc))
    return PeerFacts(gids=frozenset(gids), cap_effective=cap_effective, userns=userns)


@functools.cache
def _host_userns() -> tuple[int, int]:
    return _ns_id(os.stat("/proc/self/ns/user"))


def identify_peer(sock: socket.socket) -> Peer:
    pid, uid, gid = _UCRED.unpack(sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                                  _UCRED.size))
    try:
        pidfd = sock.getsockopt(socket.SOL_SOCKET, SO_PEERPIDFD)
    except OSError as exc:
        raise PeerGone(f"no pidfd for peer {pid}: {exc}") from exc
    netns_fd: int | None = None
    try:
        try:
            proc = os.open(f"/proc/{pid}", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as exc:
            raise PeerGone(f"peer {pid} exited") from exc
        try:
            netns_fd = os.open("ns/net", os.O_RDONLY | os.O_CLOEXEC, dir_fd=proc)
            facts = _read_facts(proc, gid)
        except OSError as exc:
            raise PeerGone(f"peer {pid} exited") from exc
        finally:
            os.close(proc)
        inode = os.fstat(netns_fd).st_ino
        zone_root = is_zone_root(pid, uid, pidfd)
        # A pidfd polls readable once its process has exited: then the facts above may be
        # another process's (a recycled pid), so none of them is used.
        poller = select.poll()
        poller.register(pidfd, select.POLLIN)
        if poller.poll(0):
            raise PeerGone(f"peer {pid} exited")
    except BaseException:
        if netns_fd is not None:
            os.close(netns_fd)
        raise
    finally:
        os.close(pidfd)
    return Peer(pid=pid, uid=uid, gid=gid, netns_inode=inode, gids=facts.gids,
                zone_root=zone_root, host_admin=is_host_admin(facts, _host_userns()),
                netns_fd=netns_fd)
