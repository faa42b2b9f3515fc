"""rtnetlink link requests as bytes, and one blocking request/reply exchange on a socket.

The broker's writes are a handful of RTM_NEWLINK/SETLINK/DELLINK/GETLINK messages with a small
vocabulary of attributes (the `CreateRequest.attrs` of broker.kinds plus MTU, MAC, master,
state, name and namespace). A kind's own data arrives already encoded (`info_data`, built by
the kind): this module frames it and knows no kind by name. Building them here with struct
takes microseconds where pyroute2's request filters took a good part of a millisecond, and
`exchange` is plain blocking socket I/O: it runs on a netlink worker thread (broker._netlink),
never on the event loop, and the kernel's work inside sendmsg() runs with the GIL released.

Replies are parsed by the lean parser of broker._linkdump (an RTM_NEWLINK echo or GETLINK reply
is the same message a dump carries).
"""

from __future__ import annotations

import errno
import os
import socket
import struct
from collections.abc import Iterable, Mapping
from typing import Any

from broker._errors import KernelError
from broker._linkdump import KernelLink, parse_dump

__all__ = ["Attr", "attr", "exchange", "get_message", "link_attrs", "link_message", "links_in",
           "nested", "open_request_socket"]

RTM_NEWLINK, RTM_DELLINK, RTM_GETLINK, RTM_SETLINK = 16, 17, 18, 19
NLM_F_REQUEST, NLM_F_ACK, NLM_F_ECHO = 0x1, 0x4, 0x8
NLMSG_ERROR, NLMSG_DONE = 2, 3
NLM_F_EXCL, NLM_F_CREATE = 0x200, 0x400
NETLINK_CAP_ACK, NETLINK_EXT_ACK = 10, 11
SOL_NETLINK = 270
IFF_UP, IFF_PROMISC = 0x1, 0x100
_NLMSG = struct.Struct("=IHHII")
_IFINFO = struct.Struct("=BxHiII")
_RTA = struct.Struct("=HH")
_U32 = struct.Struct("=I")
_I32 = struct.Struct("=i")
IFLA_ADDRESS, IFLA_IFNAME, IFLA_MTU, IFLA_LINK, IFLA_MASTER = 1, 3, 4, 5, 10
IFLA_LINKINFO, IFLA_NET_NS_FD, IFLA_EXT_MASK = 18, 28, 29
IFLA_TXQLEN, IFLA_IFALIAS = 13, 20
IFLA_INFO_KIND, IFLA_INFO_DATA = 1, 2
VETH_INFO_PEER = 1
RTEXT_FILTER_SKIP_STATS = 1 << 3

Attr = bytes


def attr(kind: int, payload: bytes) -> Attr:
    """One netlink attribute, padded to 4 bytes."""
    length = 4 + len(payload)
    return _RTA.pack(length, kind) + payload + b"\0" * (-length % 4)


def nested(kind: int, attrs: Iterable[Attr]) -> Attr:
    return attr(kind, b"".join(attrs))


def _u32(kind: int, value: int) -> Attr:
    return attr(kind, _U32.pack(value))


def _str(kind: int, value: str) -> Attr:
    return attr(kind, value.encode() + b"\0")


def _mac(value: str) -> bytes:
    return bytes.fromhex(value.replace(":", ""))


def link_message(msg_type: int, seq: int, *, flags: int = 0, index: int = 0,
                 ifi_flags: int = 0, change: int = 0, attrs: Iterable[Attr] = ()) -> bytes:
    """A whole rtnetlink link request: header, ifinfomsg, attributes; always acked."""
    body = _IFINFO.pack(socket.AF_UNSPEC, 0, index, ifi_flags, change) + b"".join(attrs)
    return _NLMSG.pack(16 + len(body), msg_type, NLM_F_REQUEST | NLM_F_ACK | flags, seq,
                       0) + body


def _state(attrs: Mapping[str, Any]) -> tuple[int, int]:
    """(ifi_flags, change) for a `state` of "up"/"down" or True/False, and a `promisc` of
    True/False, if given."""
    flags = change = 0
    if attrs.get("state") is not None:
        flags |= IFF_UP if attrs["state"] in (True, "up") else 0
        change |= IFF_UP
    if attrs.get("promisc") is not None:
        flags |= IFF_PROMISC if attrs["promisc"] else 0
        change |= IFF_PROMISC
    return flags, change


def _common(attrs: Mapping[str, Any]) -> list[Attr]:
    out: list[Attr] = []
    if attrs.get("link") is not None:  # first, as iproute2 sends it (byte-comparable)
        out.append(_u32(IFLA_LINK, attrs["link"]))
    if attrs.get("ifname") is not None:
        out.append(_str(IFLA_IFNAME, attrs["ifname"]))
    if attrs.get("mtu") is not None:
        out.append(_u32(IFLA_MTU, attrs["mtu"]))
    if attrs.get("address") is not None:
        out.append(attr(IFLA_ADDRESS, _mac(attrs["address"])))
    if attrs.get("master") is not None:
        out.append(_u32(IFLA_MASTER, attrs["master"]))
    if attrs.get("net_ns_fd") is not None:
        out.append(_u32(IFLA_NET_NS_FD, attrs["net_ns_fd"]))
    if attrs.get("txqlen") is not None:
        out.append(_u32(IFLA_TXQLEN, attrs["txqlen"]))
    if attrs.get("ifalias") is not None:  # "" removes the alias
        out.append(attr(IFLA_IFALIAS, attrs["ifalias"].encode()))
    return out


def _kind_data(attrs: Mapping[str, Any]) -> list[Attr]:
    """IFLA_INFO_DATA's contents: the bytes the kind encoded (`info_data`), or a `peer`.

    A peer (veth's other end) is encoded here, not by the kind, for two reasons. It is a
    link message of its own (an ifinfomsg, then name, MTU, namespace fd... with this module's
    common-attribute encoder), which a kind could only build by importing this shell. And
    the kind does not know it whole: the service adds the peer's MTU and the fd of the
    namespace it goes to (broker._create) after the kind made its request, from zone handles
    no kind sees. The layout (VETH_INFO_PEER, number 1) is the one every paired kind of the
    kernel uses (veth, vxcan, netkit), so no kind name is needed to send it."""
    if attrs.get("info_data"):
        return [attrs["info_data"]]
    if attrs.get("peer") is not None:
        peer = attrs["peer"]
        flags, change = _state(peer)
        info = _IFINFO.pack(socket.AF_UNSPEC, 0, 0, flags, change)
        return [attr(VETH_INFO_PEER, info + b"".join(_common(peer)))]
    return []


_KNOWN = frozenset({"ifname", "mtu", "address", "master", "link", "net_ns_fd", "state",
                    "txqlen", "ifalias", "promisc", "peer", "info_data"})


def link_attrs(attrs: Mapping[str, Any], kind: str | None = None
               ) -> tuple[list[Attr], int, int]:
    """Attributes, ifi_flags and change for pyroute2-style keyword attributes (the names
    broker.kinds uses); `kind` adds IFLA_LINKINFO. An unknown name is a bug, not ignored."""
    unknown = set(attrs) - _KNOWN
    if unknown:
        raise ValueError(f"no netlink encoding for {sorted(unknown)}")
    out = _common(attrs)
    if kind is not None:
        info = [attr(IFLA_INFO_KIND, kind.encode())]  # no NUL, as iproute2 sends it
        data = _kind_data(attrs)
        if data:
            info.append(nested(IFLA_INFO_DATA, data))
        out.append(nested(IFLA_LINKINFO, info))
    flags, change = _state(attrs)
    return out, flags, change


def get_message(seq: int, *, index: int = 0, name: str | None = None,
                stats: bool = False) -> bytes:
    """RTM_GETLINK for one link by index or name, statistics left out unless `stats`."""
    attrs = [_u32(IFLA_EXT_MASK, 0 if stats else RTEXT_FILTER_SKIP_STATS)]
    if name is not None:
        attrs.append(_str(IFLA_IFNAME, name))
    body = _IFINFO.pack(socket.AF_UNSPEC, 0, index, 0, 0) + b"".join(attrs)
    return _NLMSG.pack(16 + len(body), RTM_GETLINK, NLM_F_REQUEST | NLM_F_ACK, seq, 0) + body


def open_request_socket() -> socket.socket:
    """A blocking NETLINK_ROUTE socket for requests (made inside the zone's namespace by the
    caller): acks without the request copied back (NETLINK_CAP_ACK)."""
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC,
                         socket.NETLINK_ROUTE)
    sock.setsockopt(SOL_NETLINK, NETLINK_CAP_ACK, 1)
    sock.bind((0, 0))
    return sock


def exchange(sock: socket.socket, message: bytes, what: str) -> list[bytes]:
    """Send one request (NLM_F_ACK set, or a dump) and read until its ack or NLMSG_DONE:
    the kernel's reply messages for its sequence number (an echo, a GET's answer, a dump's
    entries), each one whole netlink message. Blocking: call it on a netlink worker thread,
    one thread per socket at a time. A refusal becomes KernelError naming `what`."""
    seq = _NLMSG.unpack_from(message)[3]
    replies: list[bytes] = []
    try:
        sock.send(message)
        while True:
            data = sock.recv(1 << 20)
            offset = 0
            while offset + 16 <= len(data):
                length, kind, _, msg_seq, _ = _NLMSG.unpack_from(data, offset)
                if length < 16:
                    break
                if msg_seq == seq:
                    if kind == NLMSG_DONE:
                        return replies
                    if kind == NLMSG_ERROR:
                        code = -_I32.unpack_from(data, offset + 16)[0]
                        if code:
                            raise KernelError(code, f"{what}: {os.strerror(code)}")
                        return replies
                    replies.append(data[offset:offset + length])
                offset += (length + 3) & ~3
    except OSError as exc:
        code = exc.errno or errno.EIO
        raise KernelError(code, f"{what}: {os.strerror(code)}") from None


def links_in(replies: Iterable[bytes]) -> list[KernelLink]:
    """The RTM_NEWLINK messages among `replies`, by the lean parser."""
    out: list[KernelLink] = []
    for msg in replies:
        parse_dump(msg, _NLMSG.unpack_from(msg)[3], out)
    return out
