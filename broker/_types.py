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
    "AssignLinkParams",
    "BootZoneParams",
    "CreateLinkParams",
    "DeleteLinkParams",
    "Empty",
    "Event",
    "EventKind",
    "EventReply",
    "GetLinkParams",
    "GetZoneParams",
    "HaltZoneParams",
    "Link",
    "LinkClass",
    "LinkReply",
    "LinkSpec",
    "LinkState",
    "LinksReply",
    "ListLinksParams",
    "ReclaimLinkParams",
    "RenameLinkParams",
    "SetLinkPropertiesParams",
    "SubscribeParams",
    "WhoAmIReply",
    "Zone",
    "ZoneKind",
    "ZoneReply",
    "ZonesReply",
]

LinkClass = Literal["phys", "veth", "bridge", "macvlan", "macvtap", "vxlan", "tap"]
CreatableClass = Literal["veth", "bridge", "macvlan", "macvtap", "vxlan", "tap"]
LinkState = Literal["up", "down", "absent"]
ZoneKind = Literal["global", "netns", "process", "container"]
EventKind = Literal[
    "link_added", "link_removed", "link_changed", "link_renamed", "link_assigned",
    "link_reclaimed", "zone_booted", "zone_halted",
]
LINK_CLASSES: tuple[str, ...] = ("phys", "veth", "bridge", "macvlan", "macvtap", "vxlan", "tap")


class _Wire(msgspec.Struct, omit_defaults=True, forbid_unknown_fields=True, kw_only=True):
    """Base of every wire struct: absent optionals are omitted, unknown fields refused."""


class Link(_Wire):
    id: int
    name: str
    class_: LinkClass = msgspec.field(name="class")
    zone: str
    owner: str
    onloan: bool
    persistent: bool
    state: LinkState
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


class Zone(_Wire):
    name: str
    kind: ZoneKind
    netns_inode: int
    attached: bool
    links: list[str]
    netns: str | None = None
    pid: int | None = None
    container: str | None = None
    root: str | None = None


class Event(_Wire):
    kind: EventKind
    zone: str
    seq: int
    link: Link | None = None
    old_name: str | None = None


# Parameters, one struct per method.
class Empty(_Wire):
    pass


class GetZoneParams(_Wire):
    name: str | None = None


class BootZoneParams(_Wire):
    name: str
    netns: str | None = None
    pid: int | None = None
    container: str | None = None
    attach: bool | None = None


class HaltZoneParams(_Wire):
    name: str


class ListLinksParams(_Wire):
    zone: str | None = None
    class_: str | None = msgspec.field(default=None, name="class")


class GetLinkParams(_Wire):
    name: str
    zone: str | None = None


class CreateLinkParams(_Wire):
    link: LinkSpec


class DeleteLinkParams(_Wire):
    name: str
    zone: str | None = None


class RenameLinkParams(_Wire):
    name: str
    new_name: str
    zone: str | None = None


class SetLinkPropertiesParams(_Wire):
    name: str
    zone: str | None = None
    mtu: int | None = None
    mac: str | None = None
    up: bool | None = None
    master: str | None = None


class AssignLinkParams(_Wire):
    name: str
    zone: str
    # Added: lend it again whenever the zone boots, until ReclaimLink.
    persistent: bool | None = None


class ReclaimLinkParams(_Wire):
    name: str
    zone: str | None = None


class SubscribeParams(_Wire):
    zone: str | None = None


# Replies.
class WhoAmIReply(_Wire):
    zone: str
    uid: int
    gid: int
    pid: int
    authorizations: list[str]


class ZonesReply(_Wire):
    zones: list[Zone]


class ZoneReply(_Wire):
    zone: Zone


class LinksReply(_Wire):
    links: list[Link]


class LinkReply(_Wire):
    link: Link


class EventReply(_Wire):
    event: Event
