"""vlan: an 802.1Q (or 802.1ad) tagged link over a parent the caller can see."""

from __future__ import annotations

from broker._errors import InvalidParameter
from broker._types import LinkSpec
from broker.kinds._base import CreateRequest, LinkKind, Resolved
from broker.kinds._nla import be16, u16

__all__ = ["PROTOCOLS", "Vlan"]

# The names iproute2 takes, and their ethertypes (IFLA_VLAN_PROTOCOL, big-endian).
PROTOCOLS = {"802.1q": 0x8100, "802.1ad": 0x88A8}
_IFLA_VLAN_ID, _IFLA_VLAN_PROTOCOL = 1, 5


class Vlan(LinkKind):
    cls = "vlan"
    extra_fields = frozenset({"parent", "vid", "protocol"})

    def validate_kind(self, spec: LinkSpec) -> None:
        if spec.parent is None:
            raise InvalidParameter("link.parent")
        # The kernel takes 0..4094 (vlan_validate); VID 0 only tags priority, so, as dladm,
        # a VLAN link needs 1..4094.
        if spec.vid is None or not 1 <= spec.vid <= 4094:
            raise InvalidParameter("link.vid")
        if spec.protocol is not None and spec.protocol not in PROTOCOLS:
            raise InvalidParameter("link.protocol")

    def request(self, spec: LinkSpec, resolved: Resolved) -> CreateRequest:
        assert spec.vid is not None
        data = u16(_IFLA_VLAN_ID, spec.vid)
        if spec.protocol is not None:  # absent: the kernel's default, 802.1Q
            data += be16(_IFLA_VLAN_PROTOCOL, PROTOCOLS[spec.protocol])
        return CreateRequest(kind="vlan", attrs={"link": resolved.parent_ifindex,
                                                 "info_data": data})
