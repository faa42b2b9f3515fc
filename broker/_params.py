"""The parameters of every method, one struct per method (the contract's `method X(...)`).

Requests only: absent optionals are omitted and unknown fields refused (`_Wire`), so a call
with a misspelled field is an `InvalidParameter` naming it, never a silent default. The
objects and replies the broker sends are `broker._types`'.
"""

from __future__ import annotations

import msgspec

from broker._types import LinkSpec, _Wire

__all__ = [
    "AddAddressParams",
    "AddRouteParams",
    "AssignLinkParams",
    "BootZoneParams",
    "CreateLinkParams",
    "DeleteLinkParams",
    "Empty",
    "GetLinkParams",
    "GetLinkPropertiesParams",
    "GetLinkProtectionParams",
    "GetLinkStatisticsParams",
    "GetZoneParams",
    "HaltZoneParams",
    "ListAddressesParams",
    "ListLinksParams",
    "ListRoutesParams",
    "ReclaimLinkParams",
    "RemoveAddressParams",
    "RemoveRouteParams",
    "RenameLinkParams",
    "ResetLinkPropertiesParams",
    "SetLinkPropertiesParams",
    "SetLinkProtectionParams",
    "SubscribeParams",
]


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
    cni_container: str | None = None


class HaltZoneParams(_Wire):
    name: str


class ListLinksParams(_Wire):
    zone: str | None = None
    class_: str | None = msgspec.field(default=None, name="class")


class GetLinkParams(_Wire):
    # Added (issue 14): `id` names the link by its ID instead (one of the two).
    name: str | None = None
    id: int | None = None
    zone: str | None = None


class CreateLinkParams(_Wire):
    link: LinkSpec


class DeleteLinkParams(_Wire):
    # Added (issue 14): `id` names the link by its ID instead (one of the two).
    name: str | None = None
    id: int | None = None
    zone: str | None = None
    # Added (issue 14): remove only the active link and keep its configuration (temporary),
    # or only the configuration and leave the active link (persistent). Neither: both.
    temporary: bool | None = None
    persistent: bool | None = None


class RenameLinkParams(_Wire):
    new_name: str
    # Added (issue 14): `id` names the link by its ID instead (one of the two).
    name: str | None = None
    id: int | None = None
    zone: str | None = None


class SetLinkPropertiesParams(_Wire):
    # Added (issue 14): `id` names the link by its ID instead (one of the two).
    name: str | None = None
    id: int | None = None
    zone: str | None = None
    mtu: int | None = None
    mac: str | None = None
    up: bool | None = None
    master: str | None = None
    # Added (issue 14): not kept in a persistent link's configuration (active link only).
    txqueuelen: int | None = None
    promisc: bool | None = None
    alias: str | None = None
    # Added (issue 14): change the active link only; a persistent link's configuration keeps
    # its mtu, mac, state and master (dladm's set-linkprop -t).
    temporary: bool | None = None


class AssignLinkParams(_Wire):
    zone: str
    # Added (issue 14): `id` names the link by its ID instead (one of the two).
    name: str | None = None
    id: int | None = None
    # Added: lend it again whenever the zone boots, until ReclaimLink.
    persistent: bool | None = None


class ReclaimLinkParams(_Wire):
    # Added (issue 14): `id` names the link by its ID instead (one of the two).
    name: str | None = None
    id: int | None = None
    zone: str | None = None


class SubscribeParams(_Wire):
    zone: str | None = None
    # Added: also address_* and route_* events (old subscribers never get these kinds).
    addresses: bool | None = None


class ListAddressesParams(_Wire):
    link: str | None = None
    zone: str | None = None
    # Added (issue 14): the link by its ID instead of `link` (at most one of the two).
    link_id: int | None = None


class AddAddressParams(_Wire):
    address: str
    link: str | None = None
    zone: str | None = None
    persistent: bool | None = None
    # Added (issue 14): the link by its ID instead of `link` (one of the two).
    link_id: int | None = None


class RemoveAddressParams(_Wire):
    address: str
    link: str | None = None
    zone: str | None = None
    link_id: int | None = None  # added (issue 14), as in AddAddressParams


class SetLinkProtectionParams(_Wire):
    protection: list[str]
    # Added (issue 14): `id` names the link by its ID instead (one of the two).
    name: str | None = None
    id: int | None = None
    zone: str | None = None
    allowed_ips: list[str] | None = None


class GetLinkProtectionParams(_Wire):
    # Added (issue 14): `id` names the link by its ID instead (one of the two).
    name: str | None = None
    id: int | None = None
    zone: str | None = None


class ListRoutesParams(_Wire):
    zone: str | None = None


class AddRouteParams(_Wire):
    destination: str
    gateway: str | None = None
    link: str | None = None
    metric: int | None = None
    zone: str | None = None
    persistent: bool | None = None
    link_id: int | None = None  # added (issue 14): the link by its ID instead


class RemoveRouteParams(_Wire):
    destination: str
    gateway: str | None = None
    link: str | None = None
    metric: int | None = None
    zone: str | None = None
    link_id: int | None = None  # added (issue 14): the link by its ID instead


class GetLinkStatisticsParams(_Wire):
    # Added (issue 14): `id` names the link by its ID instead (one of the two).
    name: str | None = None
    id: int | None = None
    zone: str | None = None


class GetLinkPropertiesParams(_Wire):
    name: str | None = None
    zone: str | None = None
    properties: list[str] | None = None  # these only, in this order
    id: int | None = None


class ResetLinkPropertiesParams(_Wire):
    properties: list[str]
    name: str | None = None
    zone: str | None = None
    id: int | None = None
