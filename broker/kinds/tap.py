"""tap: a persistent TAP device. rtnetlink cannot create tun/tap, so it is made by ioctl on
/dev/net/tun from a thread inside the zone's namespace (see broker._netlink.create_tap)."""

from __future__ import annotations

from broker._types import LinkSpec
from broker.kinds._base import CreateRequest, LinkKind, Resolved

__all__ = ["Tap"]


class Tap(LinkKind):
    cls = "tap"

    def request(self, spec: LinkSpec, resolved: Resolved) -> CreateRequest:
        return CreateRequest(kind="tun", ioctl_tap=True)
