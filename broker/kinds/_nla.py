"""Netlink attributes as bytes, for the IFLA_INFO_DATA a kind builds itself.

Kinds added for issue 14 (vlan, ipvlan, bond, gre, ipip, geneve) describe their kernel data as
the exact attribute sequence `ip link add ... type KIND` sends (iproute2 6.1: same attributes,
same order, same defaults), so the request is comparable byte for byte with iproute2's
(tests/test_kinds_kernel.py). Pure struct packing: no socket, no pyroute2.
"""

from __future__ import annotations

import ipaddress
import struct

__all__ = ["be16", "be32", "inet", "nla", "u8", "u16", "u32"]


def nla(kind: int, payload: bytes) -> bytes:
    """One attribute: length, type, payload, zero padding to 4 bytes."""
    length = 4 + len(payload)
    return struct.pack("=HH", length, kind) + payload + b"\0" * (-length % 4)


def u8(kind: int, value: int) -> bytes:
    return nla(kind, struct.pack("=B", value))


def u16(kind: int, value: int) -> bytes:
    return nla(kind, struct.pack("=H", value))


def u32(kind: int, value: int) -> bytes:
    return nla(kind, struct.pack("=I", value))


def be16(kind: int, value: int) -> bytes:
    return nla(kind, struct.pack("!H", value))


def be32(kind: int, value: int) -> bytes:
    return nla(kind, struct.pack("!I", value))


def inet(kind: int, address: str) -> bytes:
    """An IPv4 (4 bytes) or IPv6 (16 bytes) address in network order."""
    return nla(kind, ipaddress.ip_address(address).packed)
