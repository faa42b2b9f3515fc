"""dummy: a link that drops what it is sent (dladm's etherstub): an anchor for addresses."""

from __future__ import annotations

from broker._types import LinkSpec
from broker.kinds._base import CreateRequest, LinkKind, Resolved

__all__ = ["Dummy"]


class Dummy(LinkKind):
    cls = "dummy"

    def request(self, spec: LinkSpec, resolved: Resolved) -> CreateRequest:
        return CreateRequest(kind="dummy")
