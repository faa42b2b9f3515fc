"""phys: links with no kernel kind (NICs the host had). They are adopted, never made."""

from __future__ import annotations

from broker._errors import Unsupported
from broker._types import LinkSpec
from broker.kinds._base import CreateRequest, LinkKind, Resolved

__all__ = ["Phys"]


class Phys(LinkKind):
    cls = "phys"
    creatable = False

    @property
    def kernel_kind(self) -> None:
        return None  # a NIC has no kernel kind

    def validate(self, spec: LinkSpec) -> None:
        raise Unsupported("creating links of class phys")

    def request(self, spec: LinkSpec, resolved: Resolved) -> CreateRequest:
        raise Unsupported("creating links of class phys")
