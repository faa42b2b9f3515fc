"""What a zone sees and may change: the contract's visibility and ownership rules, pure.

The no-oracle rule lives here. A non-global caller naming anything outside its own zone gets
exactly the error it would get for a name that exists nowhere, built from its own words only
(the name it sent), so no error, field or ordering tells it what other zones hold. Views of
links hide `peer`, `parent` and `master` when those live where the caller cannot look.
"""

from __future__ import annotations

from broker._errors import InvalidParameter, LinkNotFound, NotOwner, ZoneNotFound
from broker._names import GLOBAL_ZONE, home_zone
from broker._table import LinkRecord, LinkTable, ZoneRecord, ZoneTable
from broker._types import Link, Zone

__all__ = [
    "asked_for",
    "check_may_change",
    "find_link",
    "find_link_by",
    "halted_configuration",
    "link_view",
    "target_zone",
    "visible_links",
    "zone_view",
]


def target_zone(caller: str, zone: str | None, zones: ZoneTable) -> str:
    """The zone a request is about: the caller's own unless it names one it may see."""
    home = home_zone(caller)
    if zone is None or zone == home:
        return home
    if caller != GLOBAL_ZONE:
        raise ZoneNotFound(zone)
    if zone == GLOBAL_ZONE or zones.get(zone) is not None:
        return zone
    raise ZoneNotFound(zone)


def find_link(
    caller: str, name: str, zone: str | None, links: LinkTable, zones: ZoneTable
) -> LinkRecord:
    if caller == GLOBAL_ZONE and zone is not None and halted_configuration(zone, links, zones):
        where = zone  # the global zone reads and removes a halted zone's saved links
    else:
        where = target_zone(caller, zone, zones)
    link = links.find(where, name)
    if link is None:
        raise LinkNotFound(name)
    return link


def find_link_by(
    caller: str, name: str | None, zone: str | None, links: LinkTable, zones: ZoneTable, *,
    link_id: int | None, fields: tuple[str, str] = ("name", "id"),
) -> LinkRecord:
    """A link by name (in a zone, as `find_link`) or by ID, the handle that survives a
    rename; exactly one of the two. By ID the same rule holds: a link outside the zone the
    request is about answers `LinkNotFound("#ID")`, exactly as an ID never handed out. The
    global zone without `zone` finds any zone's link (IDs are unique across zones).
    `fields`: the call's names for the two ("link", "link_id" in the address calls)."""
    if name is not None and link_id is not None:
        raise InvalidParameter(fields[1])
    if link_id is None:
        if name is None:
            raise InvalidParameter(fields[0])
        return find_link(caller, name, zone, links, zones)
    if caller == GLOBAL_ZONE and zone is None:
        where = None
    elif caller == GLOBAL_ZONE and zone is not None and halted_configuration(zone, links, zones):
        where = zone
    else:
        where = target_zone(caller, zone, zones)
    link = links.get(link_id)
    if link is None or (where is not None and link.zone != where):
        raise LinkNotFound(f"#{link_id}")
    return link


def asked_for(name: str | None, link_id: int | None) -> str:
    """How the caller named the link, for an error about it: its name, or "#ID"."""
    return name if name is not None else f"#{link_id}"


def halted_configuration(zone: str, links: LinkTable, zones: ZoneTable) -> list[LinkRecord]:
    """A zone that is not booted but still has persistent links in the configuration (all
    absent); empty for a booted zone and for a name that has nothing."""
    if zone == GLOBAL_ZONE or zones.get(zone) is not None:
        return []
    return links.in_zone(zone)


def visible_links(
    caller: str, zone: str | None, cls: str | None, links: LinkTable, zones: ZoneTable
) -> list[LinkRecord]:
    """A non-global zone's links; for the global zone, one zone's or (no zone) all of them."""
    if caller == GLOBAL_ZONE and zone is None:
        found = list(links)
    elif caller == GLOBAL_ZONE and zone is not None and (
            configured := halted_configuration(zone, links, zones)):
        found = configured  # a halted zone's persistent configuration, all absent
    else:
        found = links.in_zone(target_zone(caller, zone, zones))
    if cls is not None:
        found = [link for link in found if link.cls == cls]
    return sorted(found, key=links.order)


def check_may_change(caller: str, link: LinkRecord, *, lent_ok: bool) -> None:
    """Owners change their links; a zone may only bring up or set the MTU of a lent link."""
    if caller in (GLOBAL_ZONE, link.owner):
        return
    if link.onloan and link.zone == home_zone(caller) and lent_ok:
        return
    raise NotOwner(link.name, link.owner)


def _name_if_visible(caller: str, link: LinkRecord | None) -> str | None:
    if link is None or (caller != GLOBAL_ZONE and home_zone(caller) != link.zone):
        return None
    return link.name


def link_view(caller: str, link: LinkRecord, links: LinkTable) -> Link:
    return Link(
        id=link.id,
        name=link.name,
        class_=link.cls,
        zone=link.zone,
        owner=link.owner,
        onloan=link.onloan,
        persistent=link.persistent,
        state=("up" if link.up else "down") if link.present else "absent",
        ifindex=link.ifindex if link.present else None,
        mac=link.mac,
        mtu=link.mtu,
        peer=_name_if_visible(caller, links.get(link.peer_id)),
        parent=_name_if_visible(caller, links.get(link.parent_id)),
        master=_name_if_visible(caller, links.get(link.master_id)),
        mode=link.mode,
        vni=link.vni,
        remote=link.remote,
        local=link.local,
        port=link.port,
        vid=link.vid,
        protocol=link.protocol,
        miimon=link.miimon,
        ttl=link.ttl,
        kind=link.kind,
    )


def zone_view(zone: ZoneRecord, links: LinkTable) -> Zone:
    return Zone(
        name=zone.name,
        kind=zone.kind,
        netns_inode=zone.netns_inode,
        netns=zone.netns,
        pid=zone.pid,
        container=zone.container,
        root=zone.root,
        attached=zone.attached,
        cni_container=zone.cni_container,
        links=sorted(link.name for link in links.in_zone(zone.name)),
    )
