"""bridge: a software switch other links in the same zone become ports of."""

from __future__ import annotations

from broker._types import LinkSpec
from broker.kinds._base import CreateRequest, LinkKind, Resolved

__all__ = ["Bridge"]


class Bridge(LinkKind):
    cls = "bridge"

    def request(self, spec: LinkSpec, resolved: Resolved) -> CreateRequest:
        return CreateRequest(kind="bridge")
