"""veth: a pair of links, each end a link of its own; the peer may live in another zone."""

from __future__ import annotations

from broker._errors import InvalidParameter
from broker._types import LinkSpec
from broker.kinds._base import CreateRequest, LinkKind, Resolved

__all__ = ["Veth"]


class Veth(LinkKind):
    cls = "veth"
    extra_fields = frozenset({"peer", "peer_zone"})

    def validate_kind(self, spec: LinkSpec) -> None:
        if spec.peer is None:
            raise InvalidParameter("link.peer")

    def request(self, spec: LinkSpec, resolved: Resolved) -> CreateRequest:
        # The peer's namespace fd is added by the service, which holds the zone handles.
        return CreateRequest(kind="veth", attrs={"peer": {"ifname": spec.peer}})
