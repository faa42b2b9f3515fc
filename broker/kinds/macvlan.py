"""macvlan and macvtap: links with their own MAC over a lower link the caller can see."""

from __future__ import annotations

from typing import ClassVar

from broker._errors import InvalidParameter
from broker._types import LinkClass, LinkSpec
from broker.kinds._base import CreateRequest, InfoData, LinkKind, Resolved
from broker.kinds._nla import get_u32, u32

__all__ = ["MODES", "Macvlan", "Macvtap"]

MODES = ("bridge", "private", "vepa", "passthru")
# MACVLAN_MODE_* (a bit each). `source` is the kernel's too: shown when found, never made.
_NUMBERS = {"private": 1, "vepa": 2, "bridge": 4, "passthru": 8, "source": 16}
_NAMES = {number: name for name, number in _NUMBERS.items()}
_IFLA_MACVLAN_MODE = 1  # macvtap uses the macvlan attributes (IFLA_MACVLAN_*)


class Macvlan(LinkKind):
    cls: ClassVar[LinkClass] = "macvlan"
    extra_fields = frozenset({"parent", "mode"})

    def validate_kind(self, spec: LinkSpec) -> None:
        if spec.parent is None:
            raise InvalidParameter("link.parent")
        if spec.mode is not None and spec.mode not in MODES:
            raise InvalidParameter("link.mode")

    def request(self, spec: LinkSpec, resolved: Resolved) -> CreateRequest:
        # The mode always goes (bridge unless asked): the kernel's own default is vepa.
        data = u32(_IFLA_MACVLAN_MODE, _NUMBERS[spec.mode or "bridge"])
        return CreateRequest(kind=self.cls, attrs={"link": resolved.parent_ifindex,
                                                   "info_data": data})

    def decode_info(self, data: InfoData) -> dict[str, object]:
        """The mode by name; a number that is no single mode is left out (shown as none)."""
        mode = _NAMES.get(get_u32(data, _IFLA_MACVLAN_MODE) or 0)
        return {"mode": mode} if mode is not None else {}


class Macvtap(Macvlan):
    """A macvlan with a character device in the host's /dev (/dev/tapN) for a VM to read
    and write frames through: the policy caps how many of those a zone makes."""

    cls: ClassVar[LinkClass] = "macvtap"
    host_chardev = True
