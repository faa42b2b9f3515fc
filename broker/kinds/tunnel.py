"""gre and ipip: IPv4 point-to-point tunnels (dladm's iptun) from `local` to `remote`.

`remote` is required: a tunnel without one has the catch-all parameters of the kernel's
fallback device (gre0, tunl0) and is refused by the kernel (EEXIST). `ttl` 0 (the default)
inherits the inner packet's TTL. Only IPv4 endpoints: IPv6 ones are other kinds (ip6gre,
ip6tnl), not offered.
"""

from __future__ import annotations

from typing import ClassVar

from broker._errors import InvalidParameter
from broker._types import LinkClass, LinkSpec
from broker.kinds._base import CreateRequest, LinkKind, Resolved, check_ip
from broker.kinds._nla import be16, inet, u8, u16, u32

__all__ = ["Gre", "Ipip"]


def _check_ipv4(value: str, parameter: str) -> None:
    if check_ip(value, parameter) != 4:
        raise InvalidParameter(parameter)


class _Tunnel(LinkKind):
    extra_fields = frozenset({"local", "remote", "ttl"})

    def validate_kind(self, spec: LinkSpec) -> None:
        if spec.remote is None:
            raise InvalidParameter("link.remote")
        _check_ipv4(spec.remote, "link.remote")
        if spec.local is not None:
            _check_ipv4(spec.local, "link.local")
        if spec.ttl is not None and not 0 <= spec.ttl <= 255:
            raise InvalidParameter("link.ttl")


class Gre(_Tunnel):
    cls: ClassVar[LinkClass] = "gre"

    def request(self, spec: LinkSpec, resolved: Resolved) -> CreateRequest:
        assert spec.remote is not None
        # IFLA_GRE_* exactly as iproute2's gre_parse_opt sends them for a new link: keys and
        # key flags 0, the endpoints, pmtudisc on, tos 0, the ttl, fwmark 0, no encapsulation.
        data = (u32(4, 0) + u32(5, 0) + be16(2, 0) + be16(3, 0)
                + (inet(6, spec.local) if spec.local is not None else b"")
                + inet(7, spec.remote) + u8(10, 1) + u8(9, 0) + u8(8, spec.ttl or 0)
                + u32(20, 0) + u16(14, 0) + u16(15, 0) + be16(16, 0) + be16(17, 0))
        return CreateRequest(kind="gre", attrs={"info_data": data})


class Ipip(_Tunnel):
    cls: ClassVar[LinkClass] = "ipip"

    def request(self, spec: LinkSpec, resolved: Resolved) -> CreateRequest:
        assert spec.remote is not None
        # IFLA_IPTUN_* as iproute2's iptunnel_parse_opt sends them for a new ipip link:
        # proto 0, the endpoints, pmtudisc on, tos 0, the ttl, no lower link, fwmark 0,
        # no encapsulation.
        data = (u8(9, 0)
                + (inet(2, spec.local) if spec.local is not None else b"")
                + inet(3, spec.remote) + u8(10, 1) + u8(5, 0) + u8(4, spec.ttl or 0)
                + u32(1, 0) + u32(20, 0) + u16(15, 0) + u16(16, 0) + be16(17, 0) + be16(18, 0))
        return CreateRequest(kind="ipip", attrs={"info_data": data})
