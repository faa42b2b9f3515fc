"""vxlan: an overlay link by VNI; `parent` optionally pins the underlay device."""

from __future__ import annotations

from typing import Any

from broker._errors import InvalidParameter
from broker._types import LinkSpec
from broker.kinds._base import CreateRequest, LinkKind, Resolved, check_ip

__all__ = ["Vxlan"]


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
        attrs: dict[str, Any] = {"vxlan_id": spec.vni, "vxlan_port": spec.port or 4789}
        if spec.remote is not None:
            key = "vxlan_group6" if ":" in spec.remote else "vxlan_group"
            attrs[key] = spec.remote
        if spec.local is not None:
            attrs["vxlan_local6" if ":" in spec.local else "vxlan_local"] = spec.local
        if resolved.parent_ifindex is not None:
            attrs["vxlan_link"] = resolved.parent_ifindex
        return CreateRequest(kind="vxlan", attrs=attrs)
