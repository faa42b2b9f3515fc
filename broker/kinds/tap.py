"""tap: a persistent TAP device. rtnetlink cannot create tun/tap, so it is made by ioctl on
/dev/net/tun from a thread inside the zone's namespace (see broker._netlink.create_tap).

The kernel reports TUN and TAP devices alike as kind "tun"; only IFLA_TUN_TYPE tells them
apart, so this kind decodes it (`tun_tap`) and claims only the TAP ones: a TUN device (layer
3, no MAC) is class other, never a tap.
"""

from __future__ import annotations

from broker._types import LinkSpec
from broker.kinds._base import CreateRequest, InfoData, LinkKind, Resolved

__all__ = ["Tap"]

_IFLA_TUN_TYPE = 3
_IFF_TAP = 0x0002


class Tap(LinkKind):
    cls = "tap"

    @property
    def kernel_kind(self) -> str:
        return "tun"

    def claims(self, tun_tap: bool) -> bool:
        return tun_tap

    def request(self, spec: LinkSpec, resolved: Resolved) -> CreateRequest:
        return CreateRequest(kind="tun", ioctl_tap=True)

    def decode_info(self, data: InfoData) -> dict[str, object]:
        kind = data.get(_IFLA_TUN_TYPE)
        return {"tun_tap": kind[0] == _IFF_TAP} if kind is not None and len(kind) >= 1 else {}
