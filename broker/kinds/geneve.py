"""geneve: an overlay link by VNI (`vni`, 24 bits) to one `remote` (IPv4 or IPv6).

The kernel needs the remote (or collect-metadata mode, not offered): iproute2 refuses a
geneve link without one ("remote link partner not specified"), so the broker does too.
"""

from __future__ import annotations

from broker._errors import InvalidParameter
from broker._types import LinkSpec
from broker.kinds._base import CreateRequest, LinkKind, Resolved, check_ip
from broker.kinds._nla import be32, inet, u8, u32

__all__ = ["Geneve"]

_ID, _REMOTE, _TTL, _TOS, _REMOTE6, _LABEL = 1, 2, 3, 4, 7, 11


class Geneve(LinkKind):
    cls = "geneve"
    extra_fields = frozenset({"vni", "remote"})

    def validate_kind(self, spec: LinkSpec) -> None:
        if spec.vni is None or not 0 <= spec.vni < 1 << 24:
            raise InvalidParameter("link.vni")
        if spec.remote is None:
            raise InvalidParameter("link.remote")
        check_ip(spec.remote, "link.remote")

    def request(self, spec: LinkSpec, resolved: Resolved) -> CreateRequest:
        assert spec.vni is not None and spec.remote is not None
        remote = inet(_REMOTE6 if ":" in spec.remote else _REMOTE, spec.remote)
        # As iproute2's geneve_parse_opt: id, remote, then label, ttl and tos 0 (inherit).
        data = u32(_ID, spec.vni) + remote + be32(_LABEL, 0) + u8(_TTL, 0) + u8(_TOS, 0)
        return CreateRequest(kind="geneve", attrs={"info_data": data})
