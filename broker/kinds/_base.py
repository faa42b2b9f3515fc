"""The interface every link kind implements: a driver for one class of links.

A kind validates a spec completely before anything touches the kernel, describes the kernel
object as a `CreateRequest` whose kind-specific data it encodes itself (IFLA_INFO_DATA bytes,
broker.kinds._nla), and decodes that data again from the links the kernel reports
(`decode_info`). So the shells (broker._rtnl, broker._linkdump, broker._netlink) frame
messages and never branch on kernel kind names: what a kind's data means lives with the kind.
"""

from __future__ import annotations

import ipaddress
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

from broker._errors import InvalidParameter
from broker._types import LinkClass, LinkSpec
from broker.kinds._nla import InfoData

__all__ = ["COMMON_FIELDS", "CreateRequest", "InfoData", "LinkKind", "Resolved"]

# Fields every creatable class accepts; each kind names what it adds.
COMMON_FIELDS = frozenset({"name", "class_", "zone", "persistent", "mtu", "mac", "up", "master",
                           "zone_policy"})
_OPTIONAL_SPEC_FIELDS = (
    "peer", "peer_zone", "parent", "mode", "vni", "remote", "local", "port", "uplink",
    "vid", "protocol", "miimon", "ttl",
)
_MAC = re.compile(r"[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}")


@dataclass(frozen=True, slots=True)
class Resolved:
    """What the service resolved for a spec: ifindexes of the parent and master, if any."""

    parent_ifindex: int | None = None
    master_ifindex: int | None = None


@dataclass(frozen=True, slots=True)
class CreateRequest:
    """A kernel link to make. `ioctl_tap` kinds are made by ioctl inside the namespace.

    `attrs` holds the service's common attributes (broker._rtnl encodes them: link, mtu,
    address, master, state...) and `info_data`, the IFLA_INFO_DATA payload the kind encoded
    itself; veth alone has `peer` instead, a link of its own (see broker._rtnl._kind_data).
    """

    kind: str
    attrs: dict[str, Any] = field(default_factory=dict)
    ioctl_tap: bool = False


class LinkKind(ABC):
    """One class of links. `creatable` is False for the classes only adopted from the kernel
    (phys, other): the wire's CreatableClass names exactly the creatable ones (a unit test
    holds the two together)."""

    cls: ClassVar[LinkClass]
    extra_fields: ClassVar[frozenset[str]] = frozenset()
    creatable: ClassVar[bool] = True

    @property
    def kernel_kind(self) -> str | None:
        """The kernel's IFLA_INFO_KIND for links of this class (the key of BY_KERNEL_KIND);
        None for a class no single kernel kind stands for."""
        return self.cls

    def claims(self, tun_tap: bool) -> bool:
        """Whether a link of this kind's kernel kind is of this class: always, but for the
        one kernel kind two classes share (tun: TAP devices are class tap, TUN ones other)."""
        return True

    def decode_info(self, data: InfoData) -> dict[str, object]:
        """The KernelLink fields this kind's IFLA_INFO_DATA says (`data`: its attributes by
        type number), for links the kernel reports: the inverse of what `request` encodes,
        limited to what the broker shows. Pure, and it must not raise: the data is written
        by whoever holds CAP_NET_ADMIN in the namespace, so a size that is not the kernel's
        leaves the field out. The default reads nothing."""
        return {}

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
