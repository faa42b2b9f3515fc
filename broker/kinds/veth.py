"""veth: a pair of links, each end a link of its own; the peer may live in another zone."""

from __future__ import annotations

from broker._errors import InvalidParameter
from broker._types import LinkSpec
from broker.kinds._base import CreateRequest, LinkKind, Resolved

__all__ = ["Veth"]


class Veth(LinkKind):
    cls = "veth"
    extra_fields = frozenset({"peer", "peer_zone", "uplink"})
    # Two ends, one RTM_NEWLINK: deleting either end deletes the pair (LinkKind.paired).
    paired = True

    def validate_kind(self, spec: LinkSpec) -> None:
        # With an uplink the peer goes to the global zone, under a name the broker may pick.
        if spec.uplink is not None and spec.peer_zone is not None:
            raise InvalidParameter("link.peer_zone")
        if spec.peer is None and spec.uplink is None:
            raise InvalidParameter("link.peer")

    def request(self, spec: LinkSpec, resolved: Resolved) -> CreateRequest:
        # The peer's namespace fd is added by the service, which holds the zone handles.
        return CreateRequest(kind="veth", attrs={"peer": {"ifname": spec.peer}})
