"""A lean RTM_GETLINK dump: struct over a raw rtnetlink socket, only the attributes the broker
keeps. pyroute2 parses every attribute of every link (~0.1-0.3 ms a link); this is what makes
start-up and reconciliation with 10,000 links affordable. Statistics are not even sent
(IFLA_EXT_MASK with RTEXT_FILTER_SKIP_STATS).

Everything in a dump is input from whoever holds CAP_NET_ADMIN in that namespace: a zone's
root chooses its links' names byte by byte (the kernel refuses only '/', ':', whitespace and
NUL), so the parser trusts no length and no encoding. A name that is not UTF-8 gets a wire
form (`wire_name`) that no kernel name can be; an attribute of the wrong size is ignored, not
unpacked; a message cut short ends the datagram, never the broker. The receiving and parsing
run on a thread (`dump_links`), off the event loop: a zone of 20,000 links is ~0.2 s of
parsing that no other zone's call should wait behind.

What a kind's IFLA_INFO_DATA says (a macvlan's mode, a vxlan's VNI, whether a tun device is a
TAP...) is the kind's to read: the parser splits the data and hands it to the kind the
kernel's kind string names (broker.kinds.BY_KERNEL_KIND, `LinkKind.decode_info`), and knows no
kind by name itself.
"""

from __future__ import annotations

import asyncio
import errno
import os
import select
import socket
import struct
import threading
import weakref
from dataclasses import dataclass

from broker._errors import KernelError
from broker.kinds import BY_KERNEL_KIND

__all__ = ["KernelLink", "dump_links", "link_notifications", "newlink_attrs",
           "parse_dump", "parse_link_message", "wire_name"]

@dataclass(frozen=True, slots=True)
class KernelLink:
    """What the broker keeps of a kernel link: only the attributes the contract shows.
    The fields after `link_netnsid` come from the kinds' decoders (`decode_info`)."""

    ifindex: int
    name: str
    kind: str | None
    mac: str | None
    mtu: int | None
    up: bool
    master: int | None
    link: int | None
    link_netnsid: int | None
    mode: str | None = None
    vni: int | None = None
    remote: str | None = None
    local: str | None = None
    port: int | None = None
    tun_tap: bool = False



_NLMSG = struct.Struct("=IHHII")  # len, type, flags, seq, pid
_IFINFO = struct.Struct("=BxHiII")  # family, type, index, flags, change
_RTA = struct.Struct("=HH")
_U32 = struct.Struct("=I")
_I32 = struct.Struct("=i")
RTM_NEWLINK, RTM_DELLINK, RTM_GETLINK = 16, 17, 18
NLMSG_ERROR, NLMSG_DONE = 2, 3
NLM_F_REQUEST, NLM_F_DUMP, NLM_F_DUMP_INTR = 0x1, 0x300, 0x10
IFLA_ADDRESS, IFLA_IFNAME, IFLA_MTU, IFLA_LINK, IFLA_MASTER = 1, 3, 4, 5, 10
IFLA_LINKINFO, IFLA_EXT_MASK, IFLA_LINK_NETNSID = 18, 29, 37
IFLA_INFO_KIND, IFLA_INFO_DATA = 1, 2
RTEXT_FILTER_SKIP_STATS = 1 << 3
_IFF_UP = 0x1


def _attrs(data: bytes | memoryview, start: int, end: int) -> dict[int, memoryview]:
    out: dict[int, memoryview] = {}
    view = memoryview(data)
    end = min(end, len(view))
    while start + 4 <= end:
        length, kind = _RTA.unpack_from(view, start)
        if length < 4 or start + length > end:
            break  # cut short: what came before is kept, nothing past the message is read
        out[kind & 0x3FFF] = view[start + 4:start + length]
        start += (length + 3) & ~3
    return out


def newlink_attrs(msg: bytes) -> tuple[int, dict[int, memoryview]] | None:
    """ifi_flags and the top-level attributes of one RTM_NEWLINK message (None for another
    message, or one too short for its ifinfomsg), for the few readers that want what the
    lean parser leaves out: statistics (broker._statistics), txqueuelen and alias
    (broker._properties)."""
    if len(msg) < 32:
        return None
    length, kind = _NLMSG.unpack_from(msg)[:2]
    if kind != RTM_NEWLINK or length < 32:
        return None
    return _IFINFO.unpack_from(msg, 16)[3], _attrs(msg, 32, length)


def _u32(a: dict[int, memoryview], key: int) -> int | None:
    v = a.get(key)
    return _U32.unpack(v)[0] if v is not None and len(v) == 4 else None


def _cstr(v: memoryview) -> bytes:
    return bytes(v).split(b"\0", 1)[0]


def _escape(raw: bytes) -> str:
    """Printable ASCII as itself (backslash doubled), any other byte as \\xHH."""
    return "".join(chr(b) if 0x20 < b < 0x7F and b != 0x5C else
                   "\\\\" if b == 0x5C else f"\\x{b:02x}" for b in raw)


def wire_name(raw: bytes, ifindex: int) -> str:
    """The name the broker holds and shows for a kernel link.

    A UTF-8 name is itself. Any other (a zone's root may pick any bytes but '/', ':',
    whitespace and NUL) is its bytes escaped, then '/', then the ifindex: `\\xff\\xfe/7`.
    No kernel name contains '/', so this form never equals a real name, and the ifindex
    (unique in a namespace) keeps two such links apart even when their bytes escape alike.
    Callers can name the link by it (GetLink, DeleteLink, RenameLink to a proper name).
    """
    if raw:
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            pass
    return f"{_escape(raw)}/{ifindex}"


def _kind(v: memoryview) -> str:
    """The kernel writes kinds (rtnl_link_ops), not zones; decoded so that no byte fails."""
    return _cstr(v).decode("ascii", "replace")


def _link(data: bytes, offset: int, length: int) -> KernelLink | None:
    if length < 32:
        return None  # no room for the ifinfomsg: not a link message we can read
    _, _, index, flags, _ = _IFINFO.unpack_from(data, offset + 16)
    a = _attrs(data, offset + 32, offset + length)
    kind: str | None = None
    extra: dict[str, object] = {}
    if IFLA_LINKINFO in a:
        info = _attrs(a[IFLA_LINKINFO], 0, len(a[IFLA_LINKINFO]))
        kind = _kind(info[IFLA_INFO_KIND]) if IFLA_INFO_KIND in info else None
        driver = BY_KERNEL_KIND.get(kind) if kind is not None else None
        if driver is not None and IFLA_INFO_DATA in info:
            raw = info[IFLA_INFO_DATA]
            extra = driver.decode_info(_attrs(raw, 0, len(raw)))
    # A hardware address is at most MAX_ADDR_LEN (32) bytes; anything longer is not one.
    mac = bytes(a[IFLA_ADDRESS]).hex(":") if IFLA_ADDRESS in a and (
        0 < len(a[IFLA_ADDRESS]) <= 32) else None
    netnsid = a.get(IFLA_LINK_NETNSID)
    return KernelLink(
        ifindex=index,
        name=wire_name(_cstr(a[IFLA_IFNAME]) if IFLA_IFNAME in a else b"", index),
        kind=kind,
        mac=mac,
        mtu=_u32(a, IFLA_MTU),
        up=bool(flags & _IFF_UP),
        master=_u32(a, IFLA_MASTER),
        link=_u32(a, IFLA_LINK),
        link_netnsid=_I32.unpack(netnsid)[0] if netnsid is not None and len(netnsid) == 4
        else None,
        **extra,  # type: ignore[arg-type]
    )


def parse_dump(data: bytes, seq: int, into: list[KernelLink]) -> tuple[bool, bool]:
    """Append the links in one datagram. Returns (done, interrupted): done once NLMSG_DONE
    was seen; interrupted when the kernel flagged the dump inconsistent (NLM_F_DUMP_INTR:
    links changed while it ran), in which case it must be done again."""
    offset = 0
    interrupted = False
    while offset + 16 <= len(data):
        length, kind, flags, msg_seq, _ = _NLMSG.unpack_from(data, offset)
        if length < 16:
            break
        if msg_seq == seq:
            interrupted = interrupted or bool(flags & NLM_F_DUMP_INTR)
            if kind == NLMSG_DONE:
                return True, interrupted
            if kind == NLMSG_ERROR:
                code = -_I32.unpack_from(data, offset + 16)[0] if length >= 20 else errno.EIO
                if code:
                    raise KernelError(code, f"dump links: {os.strerror(code)}")
                return True, interrupted
            if kind == RTM_NEWLINK:
                link = _link(data, offset, min(length, len(data) - offset))
                if link is not None:
                    into.append(link)
        offset += (length + 3) & ~3
    return False, interrupted


def link_notifications(data: bytes) -> tuple[list[tuple[int, bytes | None]], bool]:
    """What one datagram of RTNLGRP_LINK notifications says, message by message: (ifindex,
    the RTM_NEWLINK message) for a link made or changed, (ifindex, None) for RTM_DELLINK.
    Only the headers are read here (the monitor keeps the last message per ifindex and
    parses it with `parse_link_message` when it judges it: one parse per burst, not per
    message). The flag is False when a message could not be read whole (cut short, a lying
    length, an ifinfomsg missing): what came before it is returned, and the reader must not
    trust the datagram to be complete (broker._monitor then re-reads the zone)."""
    out: list[tuple[int, bytes | None]] = []
    offset = 0
    while offset < len(data):
        if offset + 16 > len(data):
            return out, False
        length, kind = _NLMSG.unpack_from(data, offset)[:2]
        if length < 16 or offset + length > len(data):
            return out, False
        if kind in (RTM_NEWLINK, RTM_DELLINK):
            if length < 32:
                return out, False
            index = _I32.unpack_from(data, offset + 20)[0]
            out.append((index, data[offset:offset + length] if kind == RTM_NEWLINK
                        else None))
        offset += (length + 3) & ~3
    return out, True


def parse_link_message(msg: bytes) -> KernelLink | None:
    """One RTM_NEWLINK message (a notification's has a dump entry's layout) as the lean
    parser reads it; None if it is not one it can read."""
    if len(msg) < 32:
        return None
    length, kind = _NLMSG.unpack_from(msg)[:2]
    if kind != RTM_NEWLINK or length < 32 or length > len(msg):
        return None
    return _link(msg, 0, length)


def _request(seq: int) -> bytes:
    ifinfo = _IFINFO.pack(socket.AF_UNSPEC, 0, 0, 0, 0)
    ext = _RTA.pack(8, IFLA_EXT_MASK) + _U32.pack(RTEXT_FILTER_SKIP_STATS)
    body = ifinfo + ext
    return _NLMSG.pack(16 + len(body), RTM_GETLINK, NLM_F_REQUEST | NLM_F_DUMP, seq, 0) + body


def _dump_blocking(sock: socket.socket, seq: int) -> list[KernelLink]:
    """The dump on the calling thread: the socket stays non-blocking (the loop shares it in
    other places), so each receive waits in poll() first, at most 10 s."""
    with _SOCKET_LOCKS.setdefault(sock, threading.Lock()):
        return _dump_locked(sock, seq)


# One dump per socket at a time, even when the awaiting task was cancelled and a new dump
# starts while the old one's thread still reads: two readers would steal each other's parts.
_SOCKET_LOCKS: weakref.WeakKeyDictionary[socket.socket, threading.Lock] = (
    weakref.WeakKeyDictionary())


def _dump_locked(sock: socket.socket, seq: int) -> list[KernelLink]:
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    for attempt in range(5):
        links: list[KernelLink] = []
        request_seq = seq * 8 + attempt
        sock.sendall(_request(request_seq))
        interrupted = False
        while True:
            if not poller.poll(10_000):
                raise KernelError(errno.ETIMEDOUT, "dump links: no answer in 10 s")
            try:
                data = sock.recv(1 << 20)
            except BlockingIOError:
                continue
            if not data:
                raise KernelError(errno.EIO, "dump links: the netlink socket closed")
            done, intr = parse_dump(data, request_seq, links)
            interrupted = interrupted or intr
            if done:
                break
        if not interrupted:
            return links
    raise KernelError(errno.EAGAIN, "dump links: interrupted five times in a row")


async def dump_links(sock: socket.socket, seq: int) -> list[KernelLink]:
    """Dump every link of the socket's namespace, received and parsed on a thread.
    `sock`: a non-blocking NETLINK_ROUTE socket used for dumps only, one dump at a time
    (the caller serializes)."""
    try:
        return await asyncio.to_thread(_dump_blocking, sock, seq)
    except OSError as exc:
        code = exc.errno or errno.EIO
        raise KernelError(code, f"dump links: {os.strerror(code)}") from None
