"""Changing and removing links: DeleteLink, RenameLink, SetLinkProperties.

Each handler checks with the pure rules first (the caller may name the link, may change it),
then takes the locks of the zones it touches, checks the link is still the one it resolved
(another request may have deleted it while this one waited), changes the kernel, and only
then the table, the store and the events.
"""

from __future__ import annotations

import errno

from broker._errors import (
    InvalidParameter,
    KernelError,
    LinkExists,
    LinkNotFound,
)
from broker._names import GLOBAL_ZONE, validate_link_name
from broker._params import DeleteLinkParams, Empty, RenameLinkParams, SetLinkPropertiesParams
from broker._rules import asked_for, check_may_change, find_link_by
from broker._service import Broker, Caller
from broker._table import LinkRecord
from broker._types import LinkReply
from broker.kinds import KINDS
from broker.kinds._base import check_mac


async def delete_link(broker: Broker, caller: Caller, p: DeleteLinkParams) -> Empty:
    """Both the active link and its configuration; `temporary`: the active link only
    (a persistent link stays, absent); `persistent`: the configuration only (an active
    link stays, temporary; an absent one is gone)."""
    if p.temporary and p.persistent:
        raise InvalidParameter("persistent")
    link = find_link_by(caller.zone, p.name, p.zone, broker.links, broker.zones, link_id=p.id)
    check_may_change(caller.zone, link, lent_ok=False)
    if p.persistent and not link.persistent:
        raise InvalidParameter("persistent")  # it has no configuration to remove
    peer = broker.links.get(link.peer_id)
    zones = [link.zone] + ([peer.zone] if peer else [])
    async with broker.locked(*zones):
        if broker.links.get(link.id) is not link:  # deleted while we waited
            raise LinkNotFound(asked_for(p.name, p.id))
        if p.persistent:
            _unconfigure(broker, [link] + ([peer] if peer else []))
            return Empty()
        if p.temporary and link.persistent and not link.present:
            raise KernelError(errno.ENODEV, f"link {link.name} is absent from the kernel")
        if link.present and link.ifindex is not None and link.zone in broker.runtimes:
            await broker.runtime(link.zone).netlink.delete(link.ifindex)
        gone = [link] + ([peer] if peer else [])
        gone += await _vanished_children(broker, link)
        kept = [rec for rec in gone if p.temporary and rec.persistent]
        for rec in kept:
            rec.present, rec.ifindex = False, None
        broker.store.put_links(kept)
        broker.forget([rec for rec in gone if rec not in kept])
        for rec in kept:
            broker.publish("link_changed", rec)
        return Empty()


def _unconfigure(broker: Broker, saved: list[LinkRecord]) -> None:
    """Take links out of the persistent configuration: active ones stay as temporary
    links, absent ones (nothing but configuration) are gone."""
    for rec in saved:
        rec.persistent, rec.saved = False, None
    broker.store.put_links([rec for rec in saved if rec.present])
    broker.forget([rec for rec in saved if not rec.present])
    for rec in saved:
        if rec.present:
            broker.publish("link_changed", rec)


async def _vanished_children(broker: Broker, link: LinkRecord) -> list[LinkRecord]:
    """Links the kernel removed along with `link` (macvlans over it)."""
    gone = []
    for other in broker.links:
        if other.parent_id == link.id and other.present and other.ifindex is not None:
            rt = broker.runtimes.get(other.zone)
            if rt is None or await rt.netlink.get_index(other.ifindex) is None:
                gone.append(other)
    return gone


async def rename_link(broker: Broker, caller: Caller, p: RenameLinkParams) -> LinkReply:
    validate_link_name(p.new_name)
    link = find_link_by(caller.zone, p.name, p.zone, broker.links, broker.zones, link_id=p.id)
    check_may_change(caller.zone, link, lent_ok=False)
    async with broker.locked(link.zone):
        if broker.links.get(link.id) is not link:
            raise LinkNotFound(asked_for(p.name, p.id))
        if p.new_name == link.name:
            return LinkReply(link=broker.view(caller.zone, link))
        if broker.links.name_taken(link.zone, p.new_name):
            raise LinkExists(p.new_name)
        old = link.name
        if link.present and link.ifindex is not None:
            await broker.runtime(link.zone).netlink.set(
                link.ifindex, f"rename {old} to {p.new_name}", ifname=p.new_name)
        broker.links.place(link, link.zone, p.new_name)
        if link.home_name is not None and link.zone == GLOBAL_ZONE:
            link.home_name = None
        broker.store.put_links([link])
        broker.publish("link_renamed", link, old_name=old)
        return LinkReply(link=broker.view(caller.zone, link))


def _keep_configuration(link: LinkRecord, before: dict[str, int | str | bool | None],
                        p: SetLinkPropertiesParams) -> None:
    """A temporary change leaves the configuration's values in `link.saved` (the first
    value, if changed again); a lasting one makes the new values the configuration's."""
    asked = {"mtu": p.mtu, "mac": p.mac, "up": p.up, "master_id": p.master}
    saved = dict(link.saved or {})
    for key, value in asked.items():
        if value is None:
            continue
        if p.temporary:
            saved.setdefault(key, before[key])
        else:
            saved.pop(key, None)
    link.saved = saved or None


async def set_link_properties(broker: Broker, caller: Caller, p: SetLinkPropertiesParams
                              ) -> LinkReply:
    link = find_link_by(caller.zone, p.name, p.zone, broker.links, broker.zones, link_id=p.id)
    owner_only = any(v is not None for v in (p.mac, p.master, p.txqueuelen, p.promisc,
                                              p.alias))
    check_may_change(caller.zone, link, lent_ok=not owner_only)
    if p.mtu is not None and not 68 <= p.mtu <= 65535:
        raise InvalidParameter("mtu")
    if p.mac is not None:
        check_mac(p.mac, "mac")
    if p.txqueuelen is not None and not 0 <= p.txqueuelen <= 0xFFFF_FFFF:
        raise InvalidParameter("txqueuelen")
    if p.alias is not None and (len(p.alias.encode()) > 255 or "\0" in p.alias):
        raise InvalidParameter("alias")
    async with broker.locked(link.zone):
        if broker.links.get(link.id) is not link:
            raise LinkNotFound(asked_for(p.name, p.id))
        master: LinkRecord | None = None
        if p.master:
            master = broker.links.find(link.zone, p.master)
            if master is None:
                raise LinkNotFound(p.master)
            if not KINDS[master.cls].master or master is link:
                raise InvalidParameter("master")
        attrs: dict[str, object] = {}
        if p.mtu is not None:
            attrs["mtu"] = p.mtu
        if p.mac is not None:
            attrs["address"] = p.mac
        if p.up is not None:
            attrs["state"] = p.up
        if p.master is not None:
            attrs["master"] = master.ifindex if master else 0
        for key, value in (("txqlen", p.txqueuelen), ("promisc", p.promisc),
                           ("ifalias", p.alias)):
            if value is not None:
                attrs[key] = value
        if not attrs:
            return LinkReply(link=broker.view(caller.zone, link))
        if not link.present or link.ifindex is None:
            raise KernelError(errno.ENODEV, f"link {link.name} is absent from the kernel")
        rt = broker.runtime(link.zone)
        before = {"mtu": link.mtu, "mac": link.mac, "up": link.up, "master_id": link.master_id}
        now = await rt.netlink.set(link.ifindex, f"set properties of {link.name}",
                                   read_back=True, **attrs)
        if now is not None:
            broker.refresh(link, now)
        if link.persistent:
            _keep_configuration(link, before, p)
        broker.store.put_links([link])
        broker.publish("link_changed", link)
        return LinkReply(link=broker.view(caller.zone, link))
