"""Addresses and routes through the broker: ipmgmtd's half of the API, per zone.

The rule of what a caller may address (docs/protocol.md): a zone holding `addr.write` puts
addresses and routes on every link that lives in it, its own and those lent to it, because
an address or a route on a link in a zone's namespace changes only that zone's IP stack. The
global zone may do it in any booted zone (`zone`). Links are found with `_rules.find_link`, so
a link in another zone answers exactly as a missing link (no oracle); what a zone may *send*
over a lent or bridged link is the `protection` property's business (broker._nospoof).

The kernel is the truth for what is configured (a zone with CAP_NET_ADMIN of its own may
change its addresses behind the broker's back): listings are dumps of the zone's namespace.
What the broker keeps is the *persistent* configuration, in the store, keyed by link ID and
zone: it is re-applied when the link is back in that zone (a persistent link re-created at
zone boot, a broker restart, a persistent assignment lent again), never in another zone.
"""

from __future__ import annotations

import errno
import logging
from collections.abc import Iterable

import msgspec

from broker import _nospoof as nospoof
from broker._addrmsg import (
    RTM_DELADDR,
    RTM_GETADDR,
    RTM_NEWADDR,
    RTM_NEWROUTE,
    IPInterface,
    IPNetwork,
    RouteSpec,
    address_message,
    addresses_in,
    dump_message,
    family_name,
    parse_interface,
    promote_secondaries_message,
    route_message,
    route_spec,
)
from broker._errors import (
    AddressExists,
    AddressNotFound,
    KernelError,
    LinkbrokerError,
)
from broker._names import GLOBAL_ZONE
from broker._params import AddAddressParams, Empty, ListAddressesParams, RemoveAddressParams
from broker._rules import find_link_by, target_zone
from broker._table import LinkRecord
from broker._types import Address, AddressesReply, AddressFamily, AddressReply, EventKind, Route

TYPE_CHECKING = False
if TYPE_CHECKING:
    from broker._service import Broker, Caller

__all__ = ["RouteConfig", "add_address", "family", "forget_links", "link_moved",
           "list_addresses", "publish", "remove_address", "restore_configs", "route_key",
           "route_request", "static_view", "usable"]

log = logging.getLogger("linkbroker")


class RouteConfig(msgspec.Struct, frozen=True):
    """A persistent route as the store keeps it (the link by ID: names change)."""

    destination: str
    gateway: str | None = None
    link_id: int | None = None
    metric: int | None = None


def route_key(cfg: RouteConfig) -> str:
    return f"{cfg.destination}|{cfg.gateway or ''}|{cfg.link_id or ''}|{cfg.metric or ''}"


def usable(broker: Broker, caller: Caller, name: str | None, zone: str | None,
           link_id: int | None = None) -> LinkRecord:
    """A link the caller may address: any link living in its zone (global: in `zone`), by
    name or by ID."""
    link = find_link_by(caller.zone, name, zone, broker.links, broker.zones, link_id=link_id,
                        fields=("link", "link_id"))
    if not link.present or link.ifindex is None or link.zone not in broker.runtimes:
        raise KernelError(errno.ENODEV, f"link {link.name} is absent from the kernel")
    return link


def family(ip: IPInterface | IPNetwork) -> AddressFamily:
    return "inet" if ip.version == 4 else "inet6"


def _address_view(link: LinkRecord, address: str, family: AddressFamily,
                  persistent: bool) -> Address:
    return Address(link=link.name, link_id=link.id, zone=link.zone, address=address,
                   family=family, persistent=persistent)


def publish(broker: Broker, kind: EventKind, zone: str, *, address: Address | None = None,
            route: Route | None = None) -> None:
    broker.events.publish(kind, zone, address=address, route=route)


# ---- addresses ---------------------------------------------------------------------------------


async def list_addresses(broker: Broker, caller: Caller, p: ListAddressesParams
                         ) -> AddressesReply:
    only: LinkRecord | None = None
    if p.link is not None or p.link_id is not None:
        only = find_link_by(caller.zone, p.link, p.zone, broker.links, broker.zones,
                            link_id=p.link_id, fields=("link", "link_id"))
        zones = [only.zone]
    elif caller.zone == GLOBAL_ZONE and p.zone is None:
        zones = sorted(broker.runtimes, key=lambda z: (z != GLOBAL_ZONE, z))
    else:
        zones = [target_zone(caller.zone, p.zone, broker.zones)]
    persistent = {(link_id, zone, address)
                  for link_id, zone, address in broker.store.addr_configs()}
    found: list[Address] = []
    for zone in zones:
        rt = broker.runtimes.get(zone)
        if rt is None or (only is not None and not only.present):
            continue
        replies = await rt.netlink.request(lambda seq: dump_message(RTM_GETADDR, seq),
                                           "dump addresses")
        for k in addresses_in(replies):
            link = broker.links.by_ifindex(zone, k.ifindex)
            if link is None or (only is not None and link is not only):
                continue
            found.append(_address_view(link, k.address, family_name(k.family),
                                       (link.id, zone, k.address) in persistent))
    return AddressesReply(addresses=found)


async def _address_request(broker: Broker, link: LinkRecord, msg_type: int,
                           iface: IPInterface, what: str) -> None:
    assert link.ifindex is not None
    ifindex = link.ifindex
    await broker.runtimes[link.zone].netlink.request(
        lambda seq: address_message(msg_type, seq, ifindex, iface), what)


async def add_address(broker: Broker, caller: Caller, p: AddAddressParams) -> AddressReply:
    iface = parse_interface(p.address)
    link = usable(broker, caller, p.link, p.zone, p.link_id)
    text = str(iface)
    async with broker.locked(link.zone):
        link = usable(broker, caller, p.link, p.zone, p.link_id)  # still there, under that name?
        try:
            await _address_request(broker, link, RTM_NEWADDR, iface,
                                   f"add address {text} to {link.name}")
        except KernelError as exc:
            if exc.errno == errno.EEXIST:
                raise AddressExists(text) from None
            raise
        if p.persistent:
            broker.store.put_addr_config(link.id, link.zone, text)
        view = _address_view(link, text, family(iface), bool(p.persistent))
        publish(broker, "address_added", link.zone, address=view)
        return AddressReply(address=view)


async def _promote_secondaries(broker: Broker, link: LinkRecord, ifindex: int) -> None:
    """Before an IPv4 address goes: the link's other addresses of its subnet stay (the
    kernel deletes them with a primary otherwise). A link without IPv4 (EAFNOSUPPORT) has
    nothing to keep."""
    try:
        await broker.runtimes[link.zone].netlink.request(
            lambda seq: promote_secondaries_message(seq, ifindex),
            f"keep the other addresses of {link.name}")
    except KernelError as exc:
        if exc.errno not in (errno.EAFNOSUPPORT, errno.EOPNOTSUPP):
            raise


async def remove_address(broker: Broker, caller: Caller, p: RemoveAddressParams) -> Empty:
    iface = parse_interface(p.address)
    link = usable(broker, caller, p.link, p.zone, p.link_id)
    text = str(iface)
    async with broker.locked(link.zone):
        link = usable(broker, caller, p.link, p.zone, p.link_id)
        configured = any(i == link.id and a == text
                         for i, _, a in broker.store.addr_configs())
        if iface.version == 4 and link.ifindex is not None:
            await _promote_secondaries(broker, link, link.ifindex)
        try:
            await _address_request(broker, link, RTM_DELADDR, iface,
                                   f"remove address {text} from {link.name}")
        except KernelError as exc:
            if exc.errno not in (errno.EADDRNOTAVAIL, errno.ENOENT, errno.ESRCH):
                raise  # refused: the configuration stays as it was
            if not configured:
                raise AddressNotFound(text) from None
        # Forgotten only once the kernel has let go of it (or never held it).
        broker.store.delete_addr_config(link.id, text)
        publish(broker, "address_removed", link.zone,
                address=_address_view(link, text, family(iface), configured))
        return Empty()


# ---- routes (their handlers are broker._routes') -----------------------------------------


def static_view(zone: str, spec: RouteSpec, link: LinkRecord | None, persistent: bool
                ) -> Route:
    """A route the broker added or removed, as the caller asked for it."""
    return Route(destination=str(spec.destination), family=family(spec.destination),
                 zone=zone, persistent=persistent, protocol="static",
                 gateway=None if spec.gateway is None else str(spec.gateway),
                 link=link.name if link else None, metric=spec.metric)


async def route_request(broker: Broker, zone: str, msg_type: int, spec: RouteSpec, *,
                        oif: int | None, what: str) -> None:
    await broker.runtimes[zone].netlink.request(
        lambda seq: route_message(msg_type, seq, spec, oif), what)


# ---- hooks of the service ----------------------------------------------------------------------


def forget_links(broker: Broker, ids: Iterable[int]) -> None:
    """Links gone for good take their persistent addresses and routes, and their protection
    (its host rules too), with them."""
    gone = set(ids)
    protected = [i for i, _ in broker.store.protections() if i in gone]
    broker.store.delete_link_configs(gone)
    nospoof.forget(broker, protected)


def link_moved(broker: Broker, link: LinkRecord) -> None:
    """A lent link went home or out again: its protection chain follows it."""
    nospoof.moved(broker, link)


def _zones_touched(broker: Broker, zone: str) -> set[str]:
    """`zone` and the zones of its veths' other ends (re-created along with them)."""
    zones = {zone}
    for link in broker.links.in_zone(zone):
        peer = broker.links.get(link.peer_id)
        if peer is not None:
            zones.add(peer.zone)
    return zones


async def restore_configs(broker: Broker, zone: str) -> list[str]:
    """Re-apply the persistent addresses and routes of links now back in `zone` (and the
    zones of their veth peers), then the zone's routes over no particular link. What the
    kernel already holds stays as it is; failures are returned, never raised."""
    errors: list[str] = []
    zones = _zones_touched(broker, zone)
    orphans = {link_id for link_id, _, _ in broker.store.addr_configs()}
    orphans |= {i for _, _, i, _ in broker.store.route_configs() if i is not None}
    forget_links(broker, [i for i in orphans if broker.links.get(i) is None])
    for link_id, where, text in broker.store.addr_configs():
        link = broker.links.get(link_id)
        if (where not in zones or link is None or link.zone != where or not link.present
                or link.ifindex is None or where not in broker.runtimes):
            continue
        try:
            iface = parse_interface(text)
            await _address_request(broker, link, RTM_NEWADDR, iface,
                                   f"restore address {text} on {link.name}")
        except KernelError as exc:
            if exc.errno != errno.EEXIST:
                errors.append(f"address {text} on {link.name}: {exc}")
            continue
        except LinkbrokerError as exc:
            errors.append(f"address {text} on {link.name}: {exc}")
            continue
        publish(broker, "address_added", where,
                address=_address_view(link, text, family(iface), True))
    for where, _, route_link, body in broker.store.route_configs():
        cfg = msgspec.msgpack.decode(body, type=RouteConfig)
        rlink = broker.links.get(route_link) if route_link is not None else None
        if where not in zones or where not in broker.runtimes:
            continue
        if route_link is not None and (rlink is None or rlink.zone != where
                                       or not rlink.present or rlink.ifindex is None):
            continue
        try:
            spec = route_spec(cfg.destination, cfg.gateway, cfg.metric)
            await route_request(broker, where, RTM_NEWROUTE, spec,
                                oif=rlink.ifindex if rlink else None,
                                what=f"restore route to {cfg.destination}")
        except KernelError as exc:
            if exc.errno != errno.EEXIST:
                errors.append(f"route to {cfg.destination}: {exc}")
            continue
        except LinkbrokerError as exc:
            errors.append(f"route to {cfg.destination}: {exc}")
            continue
        publish(broker, "route_added", where, route=static_view(where, spec, rlink, True))
    if broker.store.protections():  # the links may be back, under new host-side ends
        try:
            await nospoof.rebuild(broker)
        except LinkbrokerError as exc:
            errors.append(f"protection rules: {exc}")
    return errors
