"""vxlan: an overlay link by VNI; `parent` optionally pins the underlay device."""

from __future__ import annotations

from broker._errors import InvalidParameter
from broker._types import LinkSpec
from broker.kinds._base import CreateRequest, InfoData, LinkKind, Resolved, check_ip
from broker.kinds._nla import be16, get_be16, get_inet, get_u32, inet, u32

__all__ = ["DEFAULT_PORT", "Vxlan"]

DEFAULT_PORT = 4789  # IANA's; the kernel's own default is still Linux's old 8472
# IFLA_VXLAN_* (include/uapi/linux/if_link.h).
_ID, _GROUP, _LINK, _LOCAL, _PORT, _GROUP6, _LOCAL6 = 1, 2, 3, 4, 15, 16, 17


class Vxlan(LinkKind):
    cls = "vxlan"
    extra_fields = frozenset({"parent", "vni", "remote", "local", "port"})

    def validate_kind(self, spec: LinkSpec) -> None:
        if spec.vni is None or not 0 <= spec.vni < 1 << 24:
            raise InvalidParameter("link.vni")
        versions = set()
        if spec.remote is not None:
            versions.add(check_ip(spec.remote, "link.remote"))
        if spec.local is not None:
            versions.add(check_ip(spec.local, "link.local"))
        if len(versions) > 1:  # the kernel refuses mixed families (EINVAL)
            raise InvalidParameter("link.local")
        if spec.port is not None and not 1 <= spec.port <= 65535:
            raise InvalidParameter("link.port")

    def request(self, spec: LinkSpec, resolved: Resolved) -> CreateRequest:
        assert spec.vni is not None
        remote, local = spec.remote, spec.local
        v6_remote = remote is not None and ":" in remote
        v6_local = local is not None and ":" in local
        # In attribute-number order, as broker._rtnl sent them before the kind encoded its
        # own data (the bytes are held equal in tests/unit/test_kinds_codec.py). The parent
        # pins the underlay inside vxlan's data (IFLA_VXLAN_LINK), not as IFLA_LINK.
        data = u32(_ID, spec.vni)
        if remote is not None and not v6_remote:
            data += inet(_GROUP, remote)
        if resolved.parent_ifindex is not None:
            data += u32(_LINK, resolved.parent_ifindex)
        if local is not None and not v6_local:
            data += inet(_LOCAL, local)
        data += be16(_PORT, spec.port or DEFAULT_PORT)
        if remote is not None and v6_remote:
            data += inet(_GROUP6, remote)
        if local is not None and v6_local:
            data += inet(_LOCAL6, local)
        return CreateRequest(kind="vxlan", attrs={"info_data": data})

    def decode_info(self, data: InfoData) -> dict[str, object]:
        """VNI, remote and local (IPv4 if the kernel sent both), destination port."""
        found = {"vni": get_u32(data, _ID), "remote": get_inet(data, _GROUP, _GROUP6),
                 "local": get_inet(data, _LOCAL, _LOCAL6), "port": get_be16(data, _PORT)}
        return {name: value for name, value in found.items() if value is not None}
