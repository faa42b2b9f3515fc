"""The switching table: every method, its parameter type, its authorization and its handler.

As in dlmgmtd and nwamd, this one table is the whole API at a glance. The server decodes a
call's parameters into the method's struct (InvalidParameter otherwise) and asks
`broker._authorize.authorize` about the method's `call` before the handler runs; handlers see
only well-formed, permitted requests. `global_only` methods are refused to every non-global
zone whatever the policy grants.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec

from broker import _addresses as addresses
from broker import _create as creation
from broker import _lending as lending
from broker import _lifecycle as lifecycle
from broker import _linkedit as linkedit
from broker import _nospoof as nospoof
from broker import _properties as properties
from broker import _routes as routes
from broker import _statistics as statistics
from broker._authorize import MethodCall
from broker._params import (
    AddAddressParams,
    AddRouteParams,
    AssignLinkParams,
    BootZoneParams,
    CreateLinkParams,
    DeleteLinkParams,
    Empty,
    GetLinkParams,
    GetLinkPropertiesParams,
    GetLinkProtectionParams,
    GetLinkStatisticsParams,
    GetZoneParams,
    HaltZoneParams,
    ListAddressesParams,
    ListLinksParams,
    ListRoutesParams,
    ReclaimLinkParams,
    RemoveAddressParams,
    RemoveRouteParams,
    RenameLinkParams,
    ResetLinkPropertiesParams,
    SetLinkPropertiesParams,
    SetLinkProtectionParams,
    SubscribeParams,
)
from broker._service import Broker, Caller
from zones.opener import open_zone

__all__ = ["INTERFACE", "METHODS", "Method"]

INTERFACE = "io.linkbroker"
Handler = Callable[[Broker, Caller, Any], Awaitable[msgspec.Struct | msgspec.Raw]]


@dataclass(frozen=True, slots=True)
class Method:
    params: type[msgspec.Struct]
    authorization: str
    handler: Handler | None  # None: a streaming method, served by the server's stream loop
    global_only: bool = False
    # Reads never await: they run inline, without a shielded task (nothing to protect).
    read: bool = False
    # What the server asks `authorize` for each call: made once here, not per call.
    call: MethodCall = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "call", MethodCall(self.authorization, self.global_only))


async def _boot_zone(broker: Broker, caller: Caller, p: BootZoneParams) -> msgspec.Struct:
    return await lifecycle.boot_zone(broker, caller, p, open_zone)


METHODS: dict[str, Method] = {
    # name               parameters               authorization  handler
    "WhoAmI":            Method(Empty,                   "link.read",  Broker.who_am_i,
                                read=True),
    "ListZones":         Method(Empty,                   "link.read",  Broker.list_zones,
                                read=True),
    "GetZone":           Method(GetZoneParams,           "link.read",  Broker.get_zone,
                                read=True),
    "ListLinks":         Method(ListLinksParams,         "link.read",  Broker.list_links,
                                read=True),
    "GetLink":           Method(GetLinkParams,           "link.read",  Broker.get_link,
                                read=True),
    "CreateLink":        Method(CreateLinkParams,        "link.write", creation.create_link),
    "DeleteLink":        Method(DeleteLinkParams,        "link.write", linkedit.delete_link),
    "RenameLink":        Method(RenameLinkParams,        "link.write", linkedit.rename_link),
    "SetLinkProperties": Method(SetLinkPropertiesParams, "link.write",
                                linkedit.set_link_properties),
    "AssignLink":        Method(AssignLinkParams,        "link.assign", lending.assign_link,
                                global_only=True),
    "ReclaimLink":       Method(ReclaimLinkParams,       "link.assign", lending.reclaim_link,
                                global_only=True),
    "BootZone":          Method(BootZoneParams,          "zone.admin", _boot_zone,
                                global_only=True),
    "HaltZone":          Method(HaltZoneParams,          "zone.admin", lifecycle.halt_zone,
                                global_only=True),
    "Subscribe":         Method(SubscribeParams,         "event.read", None),
    # Added: addresses and routes (broker._addresses); reads dump the zone's kernel.
    "ListAddresses":     Method(ListAddressesParams,     "link.read",  addresses.list_addresses),
    "AddAddress":        Method(AddAddressParams,        "addr.write", addresses.add_address),
    "RemoveAddress":     Method(RemoveAddressParams,     "addr.write", addresses.remove_address),
    "ListRoutes":        Method(ListRoutesParams,        "link.read",  routes.list_routes),
    "AddRoute":          Method(AddRouteParams,          "addr.write", routes.add_route),
    "RemoveRoute":       Method(RemoveRouteParams,       "addr.write", routes.remove_route),
    # Added: the protection property (broker._nospoof); link.protect is the host admin's.
    "SetLinkProtection": Method(SetLinkProtectionParams, "link.protect",
                                nospoof.set_link_protection),
    "GetLinkProtection": Method(GetLinkProtectionParams, "link.read",
                                nospoof.get_link_protection),
    # Added: counters read from the kernel when asked (broker._statistics).
    "GetLinkStatistics": Method(GetLinkStatisticsParams, "link.read",
                                statistics.get_link_statistics),
    # Added: dladm's show-linkprop and reset-linkprop (broker._properties).
    "GetLinkProperties": Method(GetLinkPropertiesParams, "link.read",
                                properties.get_link_properties),
    "ResetLinkProperties": Method(ResetLinkPropertiesParams, "link.write",
                                  properties.reset_link_properties),
}
