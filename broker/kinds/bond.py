"""bond: an aggregation (dladm's aggr). Ports join it as they join a bridge: `master`."""

from __future__ import annotations

from broker._errors import InvalidParameter
from broker._types import LinkSpec
from broker.kinds._base import CreateRequest, LinkKind, Resolved
from broker.kinds._nla import u8, u32

__all__ = ["MODES", "Bond"]

# BOND_MODE_* by the names iproute2 and sysfs use; balance-rr is the kernel's default.
MODES = {"balance-rr": 0, "active-backup": 1, "balance-xor": 2, "broadcast": 3,
         "802.3ad": 4, "balance-tlb": 5, "balance-alb": 6}
_IFLA_BOND_MODE, _IFLA_BOND_MIIMON = 1, 3
MIIMON_MAX = (1 << 31) - 1  # the kernel keeps miimon in an int (ms)


class Bond(LinkKind):
    cls = "bond"
    extra_fields = frozenset({"mode", "miimon"})
    master = True  # its ports join it as a bridge's do; a bond is a bridge's port too

    def validate_kind(self, spec: LinkSpec) -> None:
        if spec.mode is not None and spec.mode not in MODES:
            raise InvalidParameter("link.mode")
        if spec.miimon is not None and not 0 <= spec.miimon <= MIIMON_MAX:
            raise InvalidParameter("link.miimon")

    def request(self, spec: LinkSpec, resolved: Resolved) -> CreateRequest:
        data = b""  # nothing asked: no IFLA_INFO_DATA at all, as `ip link add b type bond`
        if spec.mode is not None:
            data += u8(_IFLA_BOND_MODE, MODES[spec.mode])
        if spec.miimon is not None:
            data += u32(_IFLA_BOND_MIIMON, spec.miimon)
        return CreateRequest(kind="bond", attrs={"info_data": data} if data else {})
