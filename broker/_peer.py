"""Who is calling: SO_PEERCRED for pid/uid/gid, SO_PEERPIDFD so a recycled pid cannot pose as
the caller, and the caller's network namespace inode, which names its zone.

The pidfd is taken from the socket itself (the kernel pins the process that connected), the
namespace is read through /proc/PID, and then the pidfd is checked to still name a live
process: if the caller exited and its pid was reused in between, the check fails and the
connection is refused instead of being attributed to the newcomer.
"""

from __future__ import annotations

import os
import select
import socket
import struct
from dataclasses import dataclass

from broker._userns import is_zone_root

__all__ = ["Peer", "PeerGone", "identify_peer"]

SO_PEERPIDFD = 77
_UCRED = struct.Struct("iII")


class PeerGone(Exception):
    """The peer process exited before it could be identified."""


@dataclass(frozen=True, slots=True)
class Peer:
    pid: int
    uid: int
    gid: int
    netns_inode: int
    gids: frozenset[int]
    zone_root: bool


def _groups(pid: int, gid: int) -> frozenset[int]:
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f:
                if line.startswith(b"Groups:"):
                    return frozenset({gid, *(int(g) for g in line.split()[1:])})
    except OSError:
        pass
    return frozenset({gid})


def identify_peer(sock: socket.socket) -> Peer:
    pid, uid, gid = _UCRED.unpack(sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                                  _UCRED.size))
    try:
        pidfd = sock.getsockopt(socket.SOL_SOCKET, SO_PEERPIDFD)
    except OSError as exc:
        raise PeerGone(f"no pidfd for peer {pid}: {exc}") from exc
    try:
        try:
            inode = os.stat(f"/proc/{pid}/ns/net").st_ino
        except OSError as exc:
            raise PeerGone(f"peer {pid} exited") from exc
        gids = _groups(pid, gid)
        zone_root = is_zone_root(pid, uid, pidfd)
        # A pidfd polls readable once its process has exited.
        poller = select.poll()
        poller.register(pidfd, select.POLLIN)
        if poller.poll(0):
            raise PeerGone(f"peer {pid} exited")
    finally:
        os.close(pidfd)
    return Peer(pid=pid, uid=uid, gid=gid, netns_inode=inode, gids=gids, zone_root=zone_root)
