"""Netlink attributes as bytes and back, for the IFLA_INFO_DATA each kind builds and reads.

Every creatable kind with data encodes it here as an exact attribute sequence, so requests
are comparable byte for byte. The kinds added for issue 14 (vlan, ipvlan, bond, gre, ipip,
geneve) send what `ip link add ... type KIND` sends (iproute2 6.1: same attributes, same
order, same defaults; tests/test_kinds_kernel.py); macvlan, macvtap and vxlan send what
broker._rtnl sent for them before they encoded their own data (tests/unit/test_kinds_codec.py).
The reading side takes what a dump carries, written by whoever holds CAP_NET_ADMIN in the
namespace: every reader checks the size before it unpacks and answers None for anything
else, never raises. Pure struct packing: no socket I/O, no pyroute2, nothing of the shells.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
from collections.abc import Mapping

__all__ = ["InfoData", "attributes", "be16", "be32", "get_be16", "get_inet", "get_u32",
           "inet", "nla", "u8", "u16", "u32"]

# IFLA_INFO_DATA's attributes by type number, as the shells split them: bytes, or memoryviews
# into the received datagram (the lean parser, broker._linkdump, copies nothing).
InfoData = Mapping[int, bytes | memoryview]
_HEADER = struct.Struct("=HH")
_U32 = struct.Struct("=I")
_BE16 = struct.Struct("!H")


def nla(kind: int, payload: bytes) -> bytes:
    """One attribute: length, type, payload, zero padding to 4 bytes."""
    length = 4 + len(payload)
    return _HEADER.pack(length, kind) + payload + b"\0" * (-length % 4)


def u8(kind: int, value: int) -> bytes:
    return nla(kind, struct.pack("=B", value))


def u16(kind: int, value: int) -> bytes:
    return nla(kind, struct.pack("=H", value))


def u32(kind: int, value: int) -> bytes:
    return nla(kind, _U32.pack(value))


def be16(kind: int, value: int) -> bytes:
    return nla(kind, _BE16.pack(value))


def be32(kind: int, value: int) -> bytes:
    return nla(kind, struct.pack("!I", value))


def inet(kind: int, address: str) -> bytes:
    """An IPv4 (4 bytes) or IPv6 (16 bytes) address in network order."""
    return nla(kind, ipaddress.ip_address(address).packed)


def attributes(data: bytes) -> dict[int, bytes]:
    """The attributes of an IFLA_INFO_DATA payload by type (flag bits masked), the inverse
    of concatenated `nla`s; a later duplicate wins, as in the lean parser. Stops at the first
    attribute that does not fit. For the shells that are handed the payload whole (the
    pyroute2 reference) and for tests; the lean parser splits its datagram in place."""
    out: dict[int, bytes] = {}
    start = 0
    while start + 4 <= len(data):
        length, kind = _HEADER.unpack_from(data, start)
        if length < 4 or start + length > len(data):
            break
        out[kind & 0x3FFF] = data[start + 4:start + length]
        start += (length + 3) & ~3
    return out


def get_u32(data: InfoData, kind: int) -> int | None:
    value = data.get(kind)
    return _U32.unpack(value)[0] if value is not None and len(value) == 4 else None


def get_be16(data: InfoData, kind: int) -> int | None:
    value = data.get(kind)
    return _BE16.unpack(value)[0] if value is not None and len(value) == 2 else None


def get_inet(data: InfoData, v4: int, v6: int) -> str | None:
    """The address in attribute `v4` (4 bytes) or else `v6` (16 bytes), as text; the
    kernel sends one of the two. socket.inet_ntop, as the lean parser always wrote them."""
    value = data.get(v4)
    if value is not None and len(value) == 4:
        return socket.inet_ntop(socket.AF_INET, value)
    value = data.get(v6)
    if value is not None and len(value) == 16:
        return socket.inet_ntop(socket.AF_INET6, value)
    return None
