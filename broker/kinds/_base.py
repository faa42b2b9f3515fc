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
    """One class of links: how a spec of it is checked and made, how the kernel's data of it
    reads, and its traits, the facts about the class the service asks instead of naming
    classes (`KINDS[link.cls].movable`, never `link.cls == "bridge"`). Each trait's default
    is what most classes are; a kind module sets the ones where it differs, and
    tests/unit/test_kinds_traits.py holds every kind's values, so a changed trait fails.
    """

    cls: ClassVar[LinkClass]
    extra_fields: ClassVar[frozenset[str]] = frozenset()
    # False for the classes only adopted from the kernel (phys, other): the wire's
    # CreatableClass names exactly the creatable ones (a unit test holds the two together).
    creatable: ClassVar[bool] = True
    # Whether the kernel moves such a link between namespaces. False where the driver sets
    # NETIF_F_NETNS_LOCAL (a bridge): it is never lent, and one a zone holds ends with it.
    movable: ClassVar[bool] = True
    # Whether the broker lends such a link (AssignLink) at all. False for `other`: a kernel
    # kind the broker has no module for is never handed to a zone, least of all as phys.
    lendable: ClassVar[bool] = True
    # Made as two links, each end a link of its own naming the other (IFLA_LINK, `peer_id`),
    # in one zone or two (veth). The cascade rule: the kernel deletes both ends together,
    # so deleting one removes the other's row too. A lent end is held to its other end
    # (broker._lending), and an end in the global zone is where the other's frames enter the
    # host (broker._nospoof).
    paired: ClassVar[bool] = False
    # Whether other links of its zone join it as ports through `master` (bridge, bond).
    master: ClassVar[bool] = False
    # Whether such a link can be a master's port (the `master` property applies): not a
    # bridge, which the kernel refuses as a bridge's port (ELOOP).
    port: ClassVar[bool] = True
    # Each such link is also a character device in the host's /dev (a macvtap's /dev/tapN):
    # a kernel object every zone shares, capped per zone by the policy (macvtaps_per_zone).
    host_chardev: ClassVar[bool] = False

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
