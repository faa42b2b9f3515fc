"""Zone lifecycles: BootZone, the monitor's callbacks, HaltZone and a zone that dies.

Boot opens the zone's netlink socket, reconciles, re-creates its persistent links, lends again
what is assigned to it, starts its monitor and attaches the socket into its root. Halt runs in
three phases so that a zone with thousands of links never holds the global zone's lock across
them (see `teardown_zone`). Boot and halt also take the zone-admin lock, so two of them never
interleave.
"""

from __future__ import annotations

import asyncio
import errno
import functools
import logging
import os
import re
from collections.abc import Callable

from broker import _create as creation
from broker import _lending as lending
from broker import _teardown_plan as teardown
from broker._errors import (
    HaltIncomplete,
    InvalidName,
    InvalidParameter,
    KernelError,
    LinkbrokerError,
    ZoneExists,
    ZoneNotFound,
)
from broker._monitor import ZoneMonitor
from broker._names import GLOBAL_ZONE, validate_zone_name
from broker._netlink import ZoneNetlink
from broker._params import BootZoneParams, Empty, HaltZoneParams
from broker._reconcile import known
from broker._rules import zone_view
from broker._service import Broker, Caller, Runtime
from broker._table import LinkRecord, ZoneRecord
from broker._types import ZoneReply
from broker.kinds import KINDS
from zones.handle import NETNS_DIR, ZoneGone, ZoneHandle, host_netns_inode

log = logging.getLogger("linkbroker")
# BootZone's cni_container: a CNI container ID as the spec allows them.
_CNI_CONTAINER = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,255}")


async def boot_zone(broker: Broker, caller: Caller, p: BootZoneParams,
                    opener: Callable[[BootZoneParams], tuple[str, ZoneHandle, str | None]]
                    ) -> ZoneReply:
    validate_zone_name(p.name)
    given = [n for n in ("netns", "pid", "container") if getattr(p, n) is not None]
    if len(given) != 1:
        raise InvalidParameter(given[1] if given else "netns")
    if p.cni_container is not None and not _CNI_CONTAINER.fullmatch(p.cni_container):
        raise InvalidParameter("cni_container")
    async with broker.zone_admin:
        if broker.zones.get(p.name) is not None:
            raise ZoneExists(p.name)
        try:
            kind, handle, container = await asyncio.to_thread(opener, p)
        except ZoneGone as exc:
            raise KernelError(errno.ENOENT, str(exc)) from None
        try:
            other = broker.zones.by_inode(handle.netns_inode)
            if other is not None or handle.netns_inode == host_netns_inode():
                raise ZoneExists(other.name if other else GLOBAL_ZONE)
            zone = ZoneRecord(
                name=p.name, kind=kind, netns_inode=handle.netns_inode,  # type: ignore[arg-type]
                netns=p.netns, pid=handle.pid, pid_start=handle.pid_start,
                container=container, root=handle.root, cni_container=p.cni_container,
            )
            await start_zone(broker, zone, handle, attach=p.attach is not False)
        except BaseException:
            if p.name not in broker.runtimes:
                handle.close()
            raise
        broker.publish_zone("zone_booted", zone.name)
        return ZoneReply(zone=zone_view(zone, broker.links))


async def start_zone(broker: Broker, zone: ZoneRecord, handle: ZoneHandle | None, *,
                     attach: bool) -> None:
    """Open the zone's netlink socket, adopt its links, attach the socket, record it."""
    netlink = await ZoneNetlink.opened(handle.netns_fd if handle else None)
    try:
        found = await netlink.dump()
    except BaseException:
        netlink.close()
        raise
    broker.runtimes[zone.name] = Runtime(handle, netlink)
    broker.zones.add(zone)
    broker.reconcile_zone(zone.name, found)
    for error in await creation.recreate_persistent(broker, zone.name):
        log.warning("zone %s: persistent link not re-created: %s", zone.name, error)
    for error in await lending.relend(broker, zone.name):
        log.warning("zone %s: persistent assignment not restored: %s", zone.name, error)
    await watch(broker, zone)
    if attach and zone.pid is not None:
        zone.attached = await attach_zone(broker, zone)
    if zone.name != GLOBAL_ZONE:
        broker.store.put_zone(zone)


async def watch(broker: Broker, zone: ZoneRecord) -> None:
    """Start the zone's monitor: its links, and the life of its namespace. Its socket is
    made by an opener thread the loop awaits (ZoneMonitor.opened), and hears the zone by the
    time this returns, so a BootZone reply comes after the monitor listens."""
    rt = broker.runtimes[zone.name]
    rt.monitor = await ZoneMonitor.opened(zone.name, rt.netns_fd,
                                          functools.partial(resync, broker),
                                          functools.partial(zone_gone, broker),
                                          functools.partial(lending.links_deleted, broker))
    if zone.pid is not None:
        rt.monitor.watch_pid(zone.pid)
    elif zone.kind == "netns" and zone.netns is not None:
        path = f"{NETNS_DIR}/{zone.netns}"

        def still_there() -> bool:
            try:
                return os.stat(path).st_ino == zone.netns_inode
            except OSError:
                return False

        rt.monitor.watch_netns(still_there)


async def resync(broker: Broker, zone: str) -> None:
    """Re-read one zone from the kernel after change notifications (coalesced by the
    monitor: one call per burst), unless the notifications say nothing the table does not
    already hold (the broker's own writes: their commit wrote the same facts). The dump is
    received and parsed on a thread."""
    async with broker.locked(zone):
        rt = broker.runtimes.get(zone)
        if rt is None:
            return
        if rt.monitor is not None:
            rt.monitor.drain()
            heard = rt.monitor.take_heard()
            if heard is not None and known(broker, zone, heard):
                broker.resyncs["answered"] += 1
                return
        broker.resyncs["dumped"] += 1
        try:
            if rt.monitor is not None and rt.monitor.take_overflow():
                await lending.check_lends(broker, zone)  # deletions may have been lost
            found = await rt.netlink.dump()
        except LinkbrokerError as exc:
            log.warning("zone %s: resync failed: %s", zone, exc)
            return
        if zone in broker.runtimes:
            if rt.monitor is not None:
                rt.monitor.drain()  # deletions the dump already shows are known first
            broker.reconcile_zone(zone, found)


async def zone_gone(broker: Broker, zone: str) -> None:
    """The zone's namespace died: halt it as HaltZone would."""
    async with broker.zone_admin:
        if broker.zones.get(zone) is None or zone == GLOBAL_ZONE:
            return
        errors = await teardown_zone(broker, zone, dying=True)
    log.info("zone %s halted: its namespace is gone%s", zone,
             f" ({'; '.join(errors)})" if errors else "")


async def attach_zone(broker: Broker, zone: ZoneRecord) -> bool:
    """Bind-mount the broker's socket into the zone's root (zones.attach), off the loop."""
    from zones.attach import attach_socket

    assert zone.pid is not None
    try:
        result = await asyncio.to_thread(attach_socket, broker.socket_path, zone.pid,
                                         pid_start=zone.pid_start)
    except Exception as exc:
        log.warning("zone %s: socket not attached: %s", zone.name, exc)
        return False
    if not result.attached:
        log.warning("zone %s: socket not attached: %s", zone.name, result.reason)
    return result.attached


async def halt_zone(broker: Broker, caller: Caller, p: HaltZoneParams) -> Empty:
    if p.name == GLOBAL_ZONE:
        raise InvalidName(p.name, "the global zone cannot be halted")
    async with broker.zone_admin:
        if broker.zones.get(p.name) is None:
            raise ZoneNotFound(p.name)
        errors = await teardown_zone(broker, p.name)
    if errors:
        raise HaltIncomplete(p.name, errors)
    return Empty()


def _peer_zone(broker: Broker, link: LinkRecord) -> str | None:
    """Where a link's peer is, for the teardown planner (None: no peer)."""
    peer = broker.links.get(link.peer_id)
    return None if peer is None else peer.zone


def _reaches_out(broker: Broker, link: LinkRecord) -> bool:
    return teardown.reaches_out(link, _peer_zone(broker, link))


async def teardown_zone(broker: Broker, name: str, *, dying: bool = False) -> list[str]:
    """Every step runs even when an earlier one failed; the failures are returned.

    Three phases, so that a zone with thousands of links never holds the global lock
    across them: (1) under the global and zone locks, only what reaches into other
    zones (lent links go home, veths with an end elsewhere go), bounded by what the host
    lent and by `host_bridge_ports_per_zone`; (2) under the zone's lock alone, one
    netlink delete per own link (at most the zone's link limit); (3) under both locks
    again, briefly: the rows forgotten in one pass and one transaction, the zone gone.
    `dying`: the zone's namespace lost what made it a zone (its process exited, its
    /run/netns name went): its own links are not deleted one by one but go with the
    namespace when the broker lets go of it, all at once in the kernel."""
    errors: list[str] = []
    zone = broker.zones.get(name)
    assert zone is not None

    def failed(link: LinkRecord, exc: Exception) -> None:
        errors.append(f"link {link.name}: {exc}")
        broker.forget([link])

    async with broker.locked(GLOBAL_ZONE, name):
        await _teardown_outward(broker, name, failed)
        rt = broker.runtimes.get(name)
        if rt is not None and rt.monitor is not None:
            rt.monitor.close()  # no resync of what the halt itself deletes
    async with broker.locked(name):
        # The order is broker._teardown_plan's; each link is checked again before its
        # delete (the loop awaits the kernel between them).
        for link_id in teardown.own_deletes(broker.links.in_zone(name),
                                            order=broker.links.order,
                                            peer_zone=functools.partial(_peer_zone, broker),
                                            dying=dying):
            link = broker.links.get(link_id)
            if (link is None or link.zone != name or _reaches_out(broker, link)
                    or not link.present or link.ifindex is None):
                continue  # gone meanwhile, or handled in (1) and (3)
            try:
                await broker.runtime(name).netlink.delete(link.ifindex)
            except KernelError as exc:
                if exc.errno != errno.ENODEV:  # ENODEV: gone with its parent
                    errors.append(f"link {link.name}: {exc}")
            except (LinkbrokerError, OSError) as exc:
                errors.append(f"link {link.name}: {exc}")
        if zone.attached and zone.pid is not None:
            try:
                from zones.attach import detach_socket

                await asyncio.to_thread(detach_socket, zone.pid, pid_start=zone.pid_start)
            except Exception as exc:
                errors.append(f"detach socket: {exc}")
            zone.attached = False
    async with broker.locked(GLOBAL_ZONE, name):
        await _teardown_outward(broker, name, failed)  # anything lent meanwhile
        own = {link.id: link for link in broker.links.in_zone(name)}
        kept_ids, forgotten_ids = teardown.leftovers(list(own.values()))
        kept = [own[i] for i in kept_ids]
        for link in kept:
            link.present, link.ifindex = False, None
        broker.store.put_links(kept)
        broker.forget([own[i] for i in forgotten_ids])
        rt = broker.runtimes.pop(name, None)
        if rt is not None:
            rt.close()
        broker.zones.remove(name)
        broker.store.delete_zone(name)
        broker.unadopted.pop(name, None)
        broker.beyond.pop(name, None)
    broker.publish_zone("zone_halted", name)
    broker.events.forget_zone(name)
    return errors


async def _teardown_outward(broker: Broker, name: str,
                            failed: Callable[[LinkRecord, Exception], None]) -> None:
    """Phase (1) of `teardown_zone`: the zone's links that reach into other zones, in
    broker._teardown_plan's order, each checked again before its step."""
    for link_id, step in teardown.outward_steps(broker.links.in_zone(name),
                                                order=broker.links.order,
                                                peer_zone=functools.partial(_peer_zone, broker)):
        link = broker.links.get(link_id)
        if link is None or link.zone != name or not _reaches_out(broker, link):
            continue
        try:
            if step == "home":
                await _return_home(broker, link)
            else:
                await _remove_owned(broker, link)
        except (LinkbrokerError, OSError) as exc:
            failed(link, exc)


async def _return_home(broker: Broker, link: LinkRecord) -> None:
    if not await lending.lend_intact(broker, link):
        # The zone replaced the lent link with one of its own: that one stays its own.
        log.warning("zone %s: link %s is no longer the link the host lent; not moved "
                    "to the host", link.zone, link.name)
        broker.forget([link])
        return
    if not KINDS[link.cls].movable:
        # The kernel cannot move it out of the zone it was made in; it ends with the zone.
        await _remove_owned(broker, link)
        return
    home = link.home_name or link.name
    if broker.links.name_taken(GLOBAL_ZONE, home):
        home = broker.free_global_name("lb", link.id)
    await lending.bring_home(broker, link, home)


async def _remove_owned(broker: Broker, link: LinkRecord) -> None:
    if link.present and link.ifindex is not None:
        await broker.runtime(link.zone).netlink.delete(link.ifindex)
    if link.persistent:
        link.present, link.ifindex = False, None
        broker.store.put_links([link])
        peer = broker.links.get(link.peer_id)
        if peer is not None and peer.persistent:
            peer.present, peer.ifindex = False, None
            broker.store.put_links([peer])
        return
    peer = broker.links.get(link.peer_id)  # the kernel removed the other end too
    broker.forget([link] + ([peer] if peer is not None else []))
