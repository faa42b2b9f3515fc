"""ipvlan: links sharing their parent's MAC, switched by IP address (modes l2, l3, l3s)."""

from __future__ import annotations

from broker._errors import InvalidParameter
from broker._types import LinkSpec
from broker.kinds._base import CreateRequest, LinkKind, Resolved
from broker.kinds._nla import u16

__all__ = ["MODES", "Ipvlan"]

# IPVLAN_MODE_L2/L3/L3S; l3 is the kernel's default.
MODES = {"l2": 0, "l3": 1, "l3s": 2}
_IFLA_IPVLAN_MODE, _IFLA_IPVLAN_FLAGS = 1, 2


class Ipvlan(LinkKind):
    cls = "ipvlan"
    extra_fields = frozenset({"parent", "mode"})

    def validate_kind(self, spec: LinkSpec) -> None:
        if spec.parent is None:
            raise InvalidParameter("link.parent")
        if spec.mode is not None and spec.mode not in MODES:
            raise InvalidParameter("link.mode")

    def request(self, spec: LinkSpec, resolved: Resolved) -> CreateRequest:
        # As iproute2 sends `mode M`: the mode, then flags 0 (bridge: neither private nor vepa).
        data = u16(_IFLA_IPVLAN_MODE, MODES[spec.mode or "l3"]) + u16(_IFLA_IPVLAN_FLAGS, 0)
        return CreateRequest(kind="ipvlan", attrs={"link": resolved.parent_ifindex,
                                                   "info_data": data})
