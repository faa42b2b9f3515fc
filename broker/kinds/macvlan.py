"""macvlan and macvtap: links with their own MAC over a lower link the caller can see."""

from __future__ import annotations

from typing import ClassVar

from broker._errors import InvalidParameter
from broker._types import LinkClass, LinkSpec
from broker.kinds._base import CreateRequest, LinkKind, Resolved

__all__ = ["MODES", "Macvlan", "Macvtap"]

MODES = ("bridge", "private", "vepa", "passthru")


class Macvlan(LinkKind):
    cls: ClassVar[LinkClass] = "macvlan"
    extra_fields = frozenset({"parent", "mode"})

    def validate_kind(self, spec: LinkSpec) -> None:
        if spec.parent is None:
            raise InvalidParameter("link.parent")
        if spec.mode is not None and spec.mode not in MODES:
            raise InvalidParameter("link.mode")

    def request(self, spec: LinkSpec, resolved: Resolved) -> CreateRequest:
        return CreateRequest(
            kind=self.cls,
            attrs={"link": resolved.parent_ifindex, f"{self.cls}_mode": spec.mode or "bridge"},
        )


class Macvtap(Macvlan):
    cls: ClassVar[LinkClass] = "macvtap"
