"""The interface every link kind implements, and the kernel-kind to class mapping.

A kind validates a spec completely before anything touches the kernel, and describes the
kernel object as a `CreateRequest` (plain data: the netlink shell alone speaks pyroute2).
"""

from __future__ import annotations

import ipaddress
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

from broker._errors import InvalidParameter
from broker._types import LinkClass, LinkSpec

__all__ = ["COMMON_FIELDS", "CreateRequest", "LinkKind", "Resolved", "classify"]

# Fields every creatable class accepts; each kind names what it adds.
COMMON_FIELDS = frozenset({"name", "class_", "zone", "persistent", "mtu", "mac", "up", "master",
                           "zone_policy"})
_OPTIONAL_SPEC_FIELDS = (
    "peer", "peer_zone", "parent", "mode", "vni", "remote", "local", "port", "uplink",
    "vid", "protocol", "miimon", "ttl",
)
# Kernel kinds that are a contract class of the same name (each has a module in this package).
_KERNEL_CLASSES = frozenset({"veth", "bridge", "macvlan", "macvtap", "vxlan", "vlan", "ipvlan",
                             "bond", "dummy", "gre", "ipip", "wireguard", "geneve"})
_MAC = re.compile(r"[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}")


@dataclass(frozen=True, slots=True)
class Resolved:
    """What the service resolved for a spec: ifindexes of the parent and master, if any."""

    parent_ifindex: int | None = None
    master_ifindex: int | None = None


@dataclass(frozen=True, slots=True)
class CreateRequest:
    """A kernel link to make. `ioctl_tap` kinds are made by ioctl inside the namespace."""

    kind: str
    attrs: dict[str, Any] = field(default_factory=dict)
    ioctl_tap: bool = False


def classify(kernel_kind: str | None, tun_tap: bool = False) -> LinkClass:
    """The contract's class of a kernel link. Only a link with no kernel kind at all (a NIC's
    driver registers none) is `phys`; a kind without a module here is `other`, shown with
    its kernel kind string, so an ifb or a TUN device is never taken for (or lent as) phys."""
    if kernel_kind is None:
        return "phys"
    if kernel_kind in _KERNEL_CLASSES:
        return kernel_kind  # type: ignore[return-value]
    if kernel_kind == "tun" and tun_tap:
        return "tap"
    return "other"


class LinkKind(ABC):
    cls: ClassVar[LinkClass]
    extra_fields: ClassVar[frozenset[str]] = frozenset()

    def validate(self, spec: LinkSpec) -> None:
        """Refuse fields that do not apply and values out of range, naming the parameter."""
        for name in _OPTIONAL_SPEC_FIELDS:
            if getattr(spec, name) is not None and name not in self.extra_fields:
                raise InvalidParameter(f"link.{name}")
        if spec.mtu is not None and not 68 <= spec.mtu <= 65535:
            raise InvalidParameter("link.mtu")
        if spec.mac is not None:
            check_mac(spec.mac, "link.mac")
        self.validate_kind(spec)

    def validate_kind(self, spec: LinkSpec) -> None:
        """Kind-specific checks; the default has none."""

    @abstractmethod
    def request(self, spec: LinkSpec, resolved: Resolved) -> CreateRequest:
        """The kernel object for a validated spec."""


def check_mac(mac: str, parameter: str) -> None:
    # Multicast and all-zero addresses are refused by the kernel (EADDRNOTAVAIL).
    if not _MAC.fullmatch(mac) or int(mac[:2], 16) & 1 or int(mac.replace(":", ""), 16) == 0:
        raise InvalidParameter(parameter)


def check_ip(value: str, parameter: str) -> int:
    """The address's IP version; a scope suffix (fe80::1%eth0) cannot go into netlink."""
    try:
        return ipaddress.ip_address(value).version if "%" not in value else _bad(parameter)
    except ValueError:
        raise InvalidParameter(parameter) from None


def _bad(parameter: str) -> int:
    raise InvalidParameter(parameter)
