"""Addresses and routes, pure: the contract's syntax checks and their rtnetlink messages.

ipadm's half of the API (ipmgmtd next to dlmgmtd) needs four message types: RTM_NEWADDR,
RTM_DELADDR, RTM_NEWROUTE, RTM_DELROUTE, and the dumps of RTM_GETADDR and RTM_GETROUTE. They
are built and parsed here with struct, the way broker._rtnl builds link messages, so the shell
(broker._addresses) only sends bytes through a zone's netlink worker.

Every check raises a typed error naming the field (`InvalidAddress(parameter, address,
reason)`) before anything is sent: bad input changes nothing.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
from collections.abc import Iterable
from dataclasses import dataclass

from broker._errors import InvalidAddress, InvalidParameter
from broker._rtnl import (
    NLM_F_ACK,
    NLM_F_CREATE,
    NLM_F_EXCL,
    NLM_F_REQUEST,
    RTM_SETLINK,
    attr,
    link_message,
    nested,
)
from broker._types import AddressFamily

__all__ = [
    "IPAddress",
    "IPInterface",
    "IPNetwork",
    "KernelAddress",
    "KernelRoute",
    "RouteSpec",
    "address_message",
    "addresses_in",
    "dump_message",
    "family_name",
    "parse_destination",
    "parse_interface",
    "promote_secondaries_message",
    "route_message",
    "route_spec",
    "routes_in",
]

IPInterface = ipaddress.IPv4Interface | ipaddress.IPv6Interface
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

RTM_NEWADDR, RTM_DELADDR, RTM_GETADDR = 20, 21, 22
RTM_NEWROUTE, RTM_DELROUTE, RTM_GETROUTE = 24, 25, 26
NLM_F_DUMP = 0x300
IFA_ADDRESS, IFA_LOCAL = 1, 2
RTA_DST, RTA_OIF, RTA_GATEWAY, RTA_PRIORITY, RTA_TABLE = 1, 4, 5, 6, 15
RT_TABLE_MAIN = 254
RTPROT_STATIC = 4
RT_SCOPE_UNIVERSE, RT_SCOPE_LINK, RT_SCOPE_NOWHERE = 0, 253, 255
IFLA_AF_SPEC, IFLA_INET_CONF = 26, 1
IPV4_DEVCONF_PROMOTE_SECONDARIES = 20
RTN_UNICAST = 1
METRIC_MAX = 0xFFFF_FFFF
_PROTOCOLS = {1: "redirect", 2: "kernel", 3: "boot", 4: "static", 9: "ra", 16: "dhcp"}

_NLMSG = struct.Struct("=IHHII")
_IFADDR = struct.Struct("=BBBBI")
_RTMSG = struct.Struct("=BBBBBBBBI")
_RTA = struct.Struct("=HH")
_U32 = struct.Struct("=I")


def family_name(family: int) -> AddressFamily:
    return "inet" if family == socket.AF_INET else "inet6"


def _family(ip: IPAddress | IPInterface | IPNetwork) -> int:
    return socket.AF_INET if ip.version == 4 else socket.AF_INET6


# ---- the contract's syntax ---------------------------------------------------------------------


def parse_interface(text: str, parameter: str = "address") -> IPInterface:
    """`A/prefix` for AddAddress and RemoveAddress: an address a link can hold."""
    if "/" not in text:
        raise InvalidAddress(parameter, text, "an address needs its prefix length: A/N")
    try:
        iface = ipaddress.ip_interface(text)
    except ValueError as exc:
        raise InvalidAddress(parameter, text, str(exc)) from None
    ip = iface.ip
    for bad, why in ((ip.is_unspecified, "the unspecified address"),
                     (ip.is_multicast, "a multicast address"),
                     (ip.is_loopback, "a loopback address")):
        if bad:
            raise InvalidAddress(parameter, text, f"{why} cannot be put on a link")
    if iface.network.prefixlen == 0:
        raise InvalidAddress(parameter, text, "a prefix length of 0 claims every address")
    return iface


def _parse_ip(text: str, parameter: str) -> IPAddress:
    try:
        ip = ipaddress.ip_address(text)
    except ValueError as exc:
        raise InvalidAddress(parameter, text, str(exc)) from None
    if ip.is_unspecified or ip.is_multicast:
        raise InvalidAddress(parameter, text, "a gateway must be a unicast address")
    return ip


def parse_destination(text: str, gateway: IPAddress | None) -> IPNetwork:
    """A route's destination: `default`, a network `A/N` (no host bits) or a host `A`."""
    if text == "default":
        return ipaddress.ip_network("::/0" if gateway and gateway.version == 6 else "0.0.0.0/0")
    try:
        return ipaddress.ip_network(text, strict=True)
    except ValueError as exc:
        raise InvalidAddress("destination", text, str(exc)) from None


@dataclass(frozen=True, slots=True)
class RouteSpec:
    """A checked AddRoute/RemoveRoute: destination network, gateway, metric (None: any)."""

    destination: IPNetwork
    gateway: IPAddress | None
    metric: int | None

    @property
    def family(self) -> int:
        return _family(self.destination)


def route_spec(destination: str, gateway: str | None, metric: int | None) -> RouteSpec:
    gw = None if gateway is None else _parse_ip(gateway, "gateway")
    dest = parse_destination(destination, gw)
    if gw is not None and gw.version != dest.version:
        raise InvalidAddress("gateway", gateway or "",
                             f"not an IPv{dest.version} address like the destination")
    if metric is not None and not 0 <= metric <= METRIC_MAX:
        raise InvalidParameter("metric")
    return RouteSpec(dest, gw, metric)


# ---- messages ----------------------------------------------------------------------------------


def _message(msg_type: int, seq: int, flags: int, body: bytes) -> bytes:
    return _NLMSG.pack(16 + len(body), msg_type, NLM_F_REQUEST | flags, seq, 0) + body


def address_message(msg_type: int, seq: int, ifindex: int, iface: IPInterface) -> bytes:
    """RTM_NEWADDR (exclusive create) or RTM_DELADDR of one address on one link."""
    packed = iface.ip.packed
    body = _IFADDR.pack(_family(iface), iface.network.prefixlen, 0, 0, ifindex)
    body += attr(IFA_LOCAL, packed) + attr(IFA_ADDRESS, packed)
    flags = NLM_F_ACK | (NLM_F_CREATE | NLM_F_EXCL if msg_type == RTM_NEWADDR else 0)
    return _message(msg_type, seq, flags, body)


def promote_secondaries_message(seq: int, ifindex: int) -> bytes:
    """RTM_SETLINK turning on the link's IPv4 `promote_secondaries`: without it, removing
    the first (primary) address of a subnet makes the kernel delete every other address of
    that subnet on the link too, and RemoveAddress must remove the one address it names, as
    ipadm delete-addr does. (IFLA_AF_SPEC > AF_INET > IFLA_INET_CONF > devconf index.)"""
    conf = attr(IPV4_DEVCONF_PROMOTE_SECONDARIES, struct.pack("=I", 1))
    spec = nested(IFLA_AF_SPEC, [nested(socket.AF_INET, [nested(IFLA_INET_CONF, [conf])])])
    return link_message(RTM_SETLINK, seq, index=ifindex, attrs=[spec])


def route_message(msg_type: int, seq: int, spec: RouteSpec, oif: int | None) -> bytes:
    """RTM_NEWROUTE (exclusive create, static, main table) or RTM_DELROUTE matching the
    given fields only, as `ip route del` does (scope nowhere: any scope matches)."""
    dest = spec.destination
    if msg_type == RTM_NEWROUTE:
        scope = RT_SCOPE_UNIVERSE if spec.gateway is not None else RT_SCOPE_LINK
        head = _RTMSG.pack(spec.family, dest.prefixlen, 0, 0, RT_TABLE_MAIN, RTPROT_STATIC,
                           scope, RTN_UNICAST, 0)
        flags = NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL
    else:
        head = _RTMSG.pack(spec.family, dest.prefixlen, 0, 0, RT_TABLE_MAIN, 0,
                           RT_SCOPE_NOWHERE, 0, 0)
        flags = NLM_F_ACK
    attrs = [attr(RTA_TABLE, _U32.pack(RT_TABLE_MAIN))]
    if dest.prefixlen:
        attrs.append(attr(RTA_DST, dest.network_address.packed))
    if spec.gateway is not None:
        attrs.append(attr(RTA_GATEWAY, spec.gateway.packed))
    if oif is not None:
        attrs.append(attr(RTA_OIF, _U32.pack(oif)))
    if spec.metric is not None:
        attrs.append(attr(RTA_PRIORITY, _U32.pack(spec.metric)))
    return _message(msg_type, seq, flags, head + b"".join(attrs))


def dump_message(msg_type: int, seq: int) -> bytes:
    """RTM_GETADDR or RTM_GETROUTE dump of both families."""
    head = _IFADDR.pack(0, 0, 0, 0, 0) if msg_type == RTM_GETADDR else _RTMSG.pack(
        0, 0, 0, 0, 0, 0, 0, 0, 0)
    return _message(msg_type, seq, NLM_F_DUMP, head)


# ---- replies -----------------------------------------------------------------------------------


def _attrs(data: bytes, offset: int, end: int) -> dict[int, bytes]:
    out: dict[int, bytes] = {}
    while offset + 4 <= end:
        length, kind = _RTA.unpack_from(data, offset)
        if length < 4:
            break
        out[kind & 0x3FFF] = data[offset + 4:offset + length]
        offset += (length + 3) & ~3
    return out


def _ip(family: int, raw: bytes) -> IPAddress:
    return ipaddress.ip_address(raw[:4] if family == socket.AF_INET else raw[:16])


@dataclass(frozen=True, slots=True)
class KernelAddress:
    ifindex: int
    family: int
    address: str  # "A/N", as ipaddress prints it


@dataclass(frozen=True, slots=True)
class KernelRoute:
    family: int
    destination: str  # "A/N"
    gateway: str | None
    oif: int | None
    metric: int | None
    protocol: str


def addresses_in(replies: Iterable[bytes]) -> list[KernelAddress]:
    out: list[KernelAddress] = []
    for msg in replies:
        length, kind = _NLMSG.unpack_from(msg)[:2]
        if kind != RTM_NEWADDR:
            continue
        family, prefixlen, _, _, index = _IFADDR.unpack_from(msg, 16)
        if family not in (socket.AF_INET, socket.AF_INET6):
            continue
        attrs = _attrs(msg, 16 + _IFADDR.size, length)
        raw = attrs.get(IFA_LOCAL) or attrs.get(IFA_ADDRESS)
        if raw is None:
            continue
        ip = _ip(family, raw)
        out.append(KernelAddress(index, family, f"{ip}/{prefixlen}"))
    return out


def routes_in(replies: Iterable[bytes]) -> list[KernelRoute]:
    """The main table's unicast routes among dump replies (local, broadcast, multicast and
    other tables are the kernel's business, as `ip route` leaves them out)."""
    out: list[KernelRoute] = []
    for msg in replies:
        length, kind = _NLMSG.unpack_from(msg)[:2]
        if kind != RTM_NEWROUTE:
            continue
        family, dst_len, _, _, table, proto, _, rtype, _ = _RTMSG.unpack_from(msg, 16)
        if family not in (socket.AF_INET, socket.AF_INET6) or rtype != RTN_UNICAST:
            continue
        attrs = _attrs(msg, 16 + _RTMSG.size, length)
        if RTA_TABLE in attrs:
            table = _U32.unpack(attrs[RTA_TABLE][:4])[0]
        if table != RT_TABLE_MAIN:
            continue
        zero = "0.0.0.0" if family == socket.AF_INET else "::"
        dst = str(_ip(family, attrs[RTA_DST])) if RTA_DST in attrs else zero
        gw = attrs.get(RTA_GATEWAY)
        oif = attrs.get(RTA_OIF)
        metric = attrs.get(RTA_PRIORITY)
        out.append(KernelRoute(
            family=family, destination=f"{dst}/{dst_len}",
            gateway=None if gw is None else str(_ip(family, gw)),
            oif=None if oif is None else _U32.unpack(oif[:4])[0],
            metric=None if metric is None else _U32.unpack(metric[:4])[0],
            protocol=_PROTOCOLS.get(proto, str(proto)),
        ))
    return out
