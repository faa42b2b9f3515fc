"""bridge: a software switch other links in the same zone become ports of."""

from __future__ import annotations

from broker._types import LinkSpec
from broker.kinds._base import CreateRequest, LinkKind, Resolved

__all__ = ["Bridge"]


class Bridge(LinkKind):
    cls = "bridge"
    # NETIF_F_NETNS_LOCAL: the kernel refuses to move a bridge to another namespace.
    movable = False
    master = True
    port = False  # a bridge as a bridge's port: the kernel refuses (ELOOP)

    def request(self, spec: LinkSpec, resolved: Resolved) -> CreateRequest:
        return CreateRequest(kind="bridge")
