"""Routes through the broker: ListRoutes, AddRoute, RemoveRoute, per zone.

The same rules as addresses (broker._addresses, which also keeps the persistent routes and
puts them back): a zone holding `addr.write` routes over links living in it, the global zone
in any booted zone; a link in another zone answers as a missing one. Listings are dumps of
the zone's main table.
"""

from __future__ import annotations

import contextlib
import errno
from collections.abc import AsyncIterator

import msgspec

from broker import _addresses as addresses
from broker._addrmsg import (
    RTM_DELROUTE,
    RTM_GETROUTE,
    RTM_NEWROUTE,
    KernelRoute,
    dump_message,
    family_name,
    route_spec,
    routes_in,
)
from broker._errors import KernelError, RouteExists, RouteNotFound
from broker._params import AddRouteParams, Empty, ListRoutesParams, RemoveRouteParams
from broker._rules import target_zone
from broker._table import LinkRecord
from broker._types import Route, RouteReply, RoutesReply

TYPE_CHECKING = False
if TYPE_CHECKING:
    from broker._service import Broker, Caller

__all__ = ["add_route", "list_routes", "remove_route"]


def _route_view(broker: Broker, zone: str, k: KernelRoute, persistent: bool) -> Route:
    link = broker.links.by_ifindex(zone, k.oif) if k.oif is not None else None
    return Route(destination=k.destination, family=family_name(k.family),
                 zone=zone, persistent=persistent, protocol=k.protocol, gateway=k.gateway,
                 link=link.name if link is not None else None, metric=k.metric)


def _persistent_routes(broker: Broker) -> set[tuple[str, str, str | None, int | None]]:
    """(zone, destination, gateway, link ID) of every persistent route."""
    out: set[tuple[str, str, str | None, int | None]] = set()
    for zone, _, link_id, body in broker.store.route_configs():
        cfg = msgspec.msgpack.decode(body, type=addresses.RouteConfig)
        out.add((zone, cfg.destination, cfg.gateway, link_id))
    return out


async def list_routes(broker: Broker, caller: Caller, p: ListRoutesParams) -> RoutesReply:
    zone = target_zone(caller.zone, p.zone, broker.zones)
    rt = broker.runtimes.get(zone)
    if rt is None:
        return RoutesReply(routes=[])
    replies = await rt.netlink.request(lambda seq: dump_message(RTM_GETROUTE, seq),
                                       "dump routes")
    persistent = _persistent_routes(broker)
    routes: list[Route] = []
    for k in routes_in(replies):
        link = broker.links.by_ifindex(zone, k.oif) if k.oif is not None else None
        if k.oif is not None and link is None:
            continue  # over lo, or a link the table does not hold
        key = (zone, k.destination, k.gateway, link.id if link else None)
        routes.append(_route_view(broker, zone, k, key in persistent
                                  or (zone, k.destination, k.gateway, None) in persistent))
    return RoutesReply(routes=routes)


def _route_target(broker: Broker, caller: Caller, link: str | None, zone: str | None,
                  link_id: int | None) -> tuple[str, LinkRecord | None]:
    if link is not None or link_id is not None:
        rec = addresses.usable(broker, caller, link, zone, link_id)
        return rec.zone, rec
    return target_zone(caller.zone, zone, broker.zones), None


@contextlib.asynccontextmanager
async def _route_zone(broker: Broker, caller: Caller, p: AddRouteParams | RemoveRouteParams
                      ) -> AsyncIterator[tuple[str, LinkRecord | None]]:
    """The zone (and link) a route call is about, under that zone's lock, found again once
    the lock is held (the link may have gone or moved while the call waited)."""
    zone, _ = _route_target(broker, caller, p.link, p.zone, p.link_id)
    async with broker.locked(zone):
        zone, link = _route_target(broker, caller, p.link, p.zone, p.link_id)
        if zone not in broker.runtimes:
            raise KernelError(errno.ENODEV, f"zone {zone} is not running")
        yield zone, link


async def add_route(broker: Broker, caller: Caller, p: AddRouteParams) -> RouteReply:
    spec = route_spec(p.destination, p.gateway, p.metric)
    if spec.gateway is None and p.link is None and p.link_id is None:
        raise KernelError(errno.EINVAL, "a route needs a gateway, a link or both")
    dest = str(spec.destination)
    async with _route_zone(broker, caller, p) as (zone, link):
        try:
            await addresses.route_request(broker, zone, RTM_NEWROUTE, spec,
                                          oif=link.ifindex if link else None,
                                          what=f"add route to {dest}")
        except KernelError as exc:
            if exc.errno == errno.EEXIST:
                raise RouteExists(dest) from None
            raise
        gateway = None if spec.gateway is None else str(spec.gateway)
        if p.persistent:
            cfg = addresses.RouteConfig(dest, gateway, link.id if link else None, spec.metric)
            broker.store.put_route_config(zone, addresses.route_key(cfg), cfg.link_id,
                                          msgspec.msgpack.encode(cfg))
        view = addresses.static_view(zone, spec, link, bool(p.persistent))
        addresses.publish(broker, "route_added", zone, route=view)
        return RouteReply(route=view)


async def remove_route(broker: Broker, caller: Caller, p: RemoveRouteParams) -> Empty:
    spec = route_spec(p.destination, p.gateway, p.metric)
    dest = str(spec.destination)
    async with _route_zone(broker, caller, p) as (zone, link):
        gateway = None if spec.gateway is None else str(spec.gateway)
        cfg = addresses.RouteConfig(dest, gateway, link.id if link else None, spec.metric)
        key = addresses.route_key(cfg)
        configured = any(z == zone and k == key for z, k, _, _ in broker.store.route_configs())
        try:
            await addresses.route_request(broker, zone, RTM_DELROUTE, spec,
                                          oif=link.ifindex if link else None,
                                          what=f"remove route to {dest}")
        except KernelError as exc:
            if exc.errno != errno.ESRCH:
                raise  # refused: the configuration stays as it was
            if not configured:
                raise RouteNotFound(dest) from None
        broker.store.delete_route_config(zone, key)
        view = addresses.static_view(zone, spec, link, configured)
        addresses.publish(broker, "route_removed", zone, route=view)
        return Empty()
