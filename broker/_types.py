"""The contract's types as msgspec structs: decoded and checked in one step.

Every method's parameters are a struct with `forbid_unknown_fields`, so a request of the wrong
shape is refused (InvalidParameter naming the field) before any handler runs, as dlmgmtd's
switching table checks a payload's size before its handler sees it.
"""

from __future__ import annotations

from typing import Literal

import msgspec

__all__ = [
    "LINK_CLASSES",
    "Address",
    "AddressFamily",
    "AddressReply",
    "AddressesReply",
    "Event",
    "EventKind",
    "EventReply",
    "Link",
    "LinkClass",
    "LinkPropertiesReply",
    "LinkProperty",
    "LinkReply",
    "LinkSpec",
    "LinkState",
    "LinkStatistics",
    "LinkStatisticsReply",
    "LinksReply",
    "Protection",
    "ProtectionReply",
    "Route",
    "RouteReply",
    "RoutesReply",
    "WhoAmIReply",
    "Zone",
    "ZoneKind",
    "ZoneReply",
    "ZonesReply",
]

LinkClass = Literal["phys", "veth", "bridge", "macvlan", "macvtap", "vxlan", "tap",
                    # Added (issue 14): new classes, and `other` for kernel kinds without one.
                    "vlan", "ipvlan", "bond", "dummy", "gre", "ipip", "wireguard", "geneve",
                    "other"]
CreatableClass = Literal["veth", "bridge", "macvlan", "macvtap", "vxlan", "tap",
                         "vlan", "ipvlan", "bond", "dummy", "gre", "ipip", "wireguard",
                         "geneve"]
LinkState = Literal["up", "down", "absent"]
ZoneKind = Literal["global", "netns", "process", "container"]
EventKind = Literal[
    "link_added", "link_removed", "link_changed", "link_renamed", "link_assigned",
    "link_reclaimed", "zone_booted", "zone_halted",
    # Added: only to subscribers that ask for them (Subscribe(addresses: true)).
    "address_added", "address_removed", "route_added", "route_removed",
]
AddressFamily = Literal["inet", "inet6"]
LINK_CLASSES: tuple[str, ...] = ("phys", "veth", "bridge", "macvlan", "macvtap", "vxlan", "tap",
                                 "vlan", "ipvlan", "bond", "dummy", "gre", "ipip", "wireguard",
                                 "geneve", "other")


class _Wire(msgspec.Struct, omit_defaults=True, forbid_unknown_fields=True, kw_only=True):
    """Base of every request struct: absent optionals are omitted, unknown fields refused."""


class _Reply(msgspec.Struct, omit_defaults=True, kw_only=True):
    """Base of every struct the broker only sends. A client decoding one ignores fields it
    does not know, and its enum-like fields are plain strings, so a newer broker's additions
    (fields, classes, zone and event kinds) never break an older client."""


class Link(_Reply):
    id: int
    name: str
    class_: str = msgspec.field(name="class")  # a LinkClass; more may come
    zone: str
    owner: str
    onloan: bool
    persistent: bool
    state: str  # a LinkState; more may come
    ifindex: int | None = None
    mac: str | None = None
    mtu: int | None = None
    peer: str | None = None
    parent: str | None = None
    master: str | None = None
    mode: str | None = None
    vni: int | None = None
    remote: str | None = None
    local: str | None = None
    port: int | None = None
    # Added (issue 14): vlan ID and protocol, bond miimon, gre/ipip ttl; `kind` is the
    # kernel's kind string of a link of class other (e.g. "ifb").
    vid: int | None = None
    protocol: str | None = None
    miimon: int | None = None
    ttl: int | None = None
    kind: str | None = None


class LinkSpec(_Wire):
    name: str
    class_: CreatableClass = msgspec.field(name="class")
    zone: str | None = None
    persistent: bool | None = None
    mtu: int | None = None
    mac: str | None = None
    up: bool | None = None
    peer: str | None = None
    peer_zone: str | None = None
    parent: str | None = None
    mode: str | None = None
    vni: int | None = None
    remote: str | None = None
    local: str | None = None
    port: int | None = None
    master: str | None = None
    uplink: str | None = None
    # Added (issue 14): vlan (vid 1..4094, protocol 802.1q/802.1ad), bond (miimon ms),
    # gre/ipip (ttl 0..255, 0 inherits).
    vid: int | None = None
    protocol: str | None = None
    miimon: int | None = None
    ttl: int | None = None
    # Added (issue 12): the global zone asks the broker to hold this request to the policy the
    # target zone itself would face; linkbroker-agent sets it for every label-made link.
    zone_policy: bool | None = None


class Zone(_Reply):
    name: str
    kind: str  # a ZoneKind; more may come
    netns_inode: int
    attached: bool
    links: list[str]
    netns: str | None = None
    pid: int | None = None
    container: str | None = None
    root: str | None = None
    # Added: the runtime's container ID when linkbroker-cni booted the zone.
    cni_container: str | None = None


class Address(_Reply):
    """An IP address on a link, as ipadm shows it (added)."""

    link: str
    link_id: int
    zone: str
    address: str
    family: AddressFamily
    persistent: bool


class Route(_Reply):
    """A route of a zone's main table (added). `link` is absent when the route's outgoing
    link is none the caller can name."""

    destination: str
    family: AddressFamily
    zone: str
    persistent: bool
    protocol: str
    gateway: str | None = None
    link: str | None = None
    metric: int | None = None


class Protection(_Reply):
    """The `protection` property of a zone's link (added), dladm's: what the host lets
    through from the zone's end. `mac` is the address mac-nospoof lets through."""

    link: str
    zone: str
    protection: list[str]
    allowed_ips: list[str]
    mac: str | None = None


class Event(_Reply):
    kind: str  # an EventKind; more may come
    zone: str
    seq: int
    link: Link | None = None
    old_name: str | None = None
    address: Address | None = None
    route: Route | None = None


# Replies.
class WhoAmIReply(_Reply):
    zone: str
    uid: int
    gid: int
    pid: int
    authorizations: list[str]


class ZonesReply(_Reply):
    zones: list[Zone]


class ZoneReply(_Reply):
    zone: Zone


class LinksReply(_Reply):
    links: list[Link]


class LinkReply(_Reply):
    link: Link


class EventReply(_Reply):
    event: Event


class AddressesReply(_Reply):
    addresses: list[Address]


class AddressReply(_Reply):
    address: Address


class ProtectionReply(_Reply):
    protection: Protection


class RoutesReply(_Reply):
    routes: list[Route]


class RouteReply(_Reply):
    route: Route


class LinkStatistics(_Reply):
    """A link's counters as the kernel keeps them (added; dladm show-link -s)."""

    link: str
    link_id: int
    zone: str
    rx_packets: int
    tx_packets: int
    rx_bytes: int
    tx_bytes: int
    rx_errors: int
    tx_errors: int
    rx_dropped: int
    tx_dropped: int
    multicast: int
    collisions: int


class LinkStatisticsReply(_Reply):
    statistics: LinkStatistics


class LinkProperty(_Reply):
    """One row of dladm's show-linkprop (added, issue 14): `perm` is "rw" when the caller
    may set it, "r-" otherwise; "--" stands for no value (or no default)."""

    link: str
    property: str
    perm: str
    value: str
    default: str
    possible: str


class LinkPropertiesReply(_Reply):
    properties: list[LinkProperty]
