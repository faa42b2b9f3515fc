"""other: a kernel link of a kind the broker has no module for (ifb, vrf, team, a TUN...).

Reported with the kernel's kind string (`Link.kind`), never as phys: such a link is neither
created nor lent by the broker (AssignLink answers Unsupported), only listed, renamed and
deleted by the zone it lives in.
"""

from __future__ import annotations

from broker._errors import Unsupported
from broker._types import LinkSpec
from broker.kinds._base import CreateRequest, LinkKind, Resolved

__all__ = ["Other"]


class Other(LinkKind):
    cls = "other"
    creatable = False
    lendable = False  # AssignLink answers Unsupported: see the module docstring

    @property
    def kernel_kind(self) -> None:
        return None  # any kind without a module

    def validate(self, spec: LinkSpec) -> None:
        raise Unsupported("creating links of class other")

    def request(self, spec: LinkSpec, resolved: Resolved) -> CreateRequest:
        raise Unsupported("creating links of class other")
