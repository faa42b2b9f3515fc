"""Making links: CreateLink, and the persistent links a zone gets back when it boots.

`make` is the one path by which a link comes into being, for a caller's CreateLink as for a
persistent link re-created with its IDs: resolve parent and master, write the intent (the IDs
and kernel names about to be made), one RTM_NEWLINK placing both ends of a veth in their
namespaces on a netlink worker, read back what the kernel made, and only then change the table,
write the rows and clear the intent in one transaction, and publish. A failure after the
kernel made something deletes it again; a crash in between leaves the intent, which start-up
clears (broker._daemon.restore).
"""

from __future__ import annotations

import contextlib

import msgspec

from broker import _addresses as addresses
from broker._authorize import Attach, Subject, UseParent, acting_for, authorize
from broker._create_plan import plan_create, records
from broker._errors import (
    InvalidParameter,
    KernelError,
    LinkbrokerError,
    LinkExists,
    LinkNotFound,
    PermissionDenied,
)
from broker._names import GLOBAL_ZONE, validate_link_name
from broker._params import CreateLinkParams
from broker._rules import target_zone
from broker._service import Broker, Caller
from broker._store import Intent
from broker._table import LinkRecord
from broker._types import LinkReply, LinkSpec
from broker.kinds import KINDS


async def create_link(broker: Broker, caller: Caller, p: CreateLinkParams) -> LinkReply:
    spec = p.link
    kind = KINDS[spec.class_]
    kind.validate(spec)
    validate_link_name(spec.name)
    if spec.peer is not None:
        validate_link_name(spec.peer)
    zone = target_zone(caller.zone, spec.zone, broker.zones)
    # zone_policy: the global zone asks to be held to the policy `zone` itself would face.
    asker = zone if spec.zone_policy and caller.zone == GLOBAL_ZONE else caller.zone
    if spec.uplink is None:
        peer_zone = target_zone(caller.zone, spec.peer_zone or zone, broker.zones)
    elif spec.peer is not None and caller.zone != GLOBAL_ZONE:
        # A zone cannot see the global zone's names, so it cannot pick one there.
        raise InvalidParameter("link.peer")
    else:
        peer_zone = GLOBAL_ZONE
        # Refused before any lock: a zone's probe of the host's bridges must not queue
        # behind (or time) the global zone's writes.
        _attachable_bridge(broker, caller, asker, spec.uplink)
    async with broker.locked(zone, peer_zone):
        uplink = None
        if spec.uplink is not None:
            uplink = _attachable_bridge(broker, caller, asker, spec.uplink)  # still there?
            if spec.peer is None:
                spec = msgspec.structs.replace(spec, peer=broker.random_global_name("lbu"))
        if spec.parent is not None and asker != caller.zone:
            _check_zone_parent(broker, caller, asker, spec.parent)
        for z, name in ((zone, spec.name), (peer_zone, spec.peer)):
            if name is not None and broker.links.name_taken(z, name):
                raise LinkExists(name)
        if spec.peer is not None and zone == peer_zone and spec.peer == spec.name:
            raise LinkExists(spec.peer)
        broker.check_limit(zone, 1 if peer_zone != zone or spec.peer is None else 2,
                           cls=spec.class_, uplink=uplink is not None)
        if peer_zone != zone and uplink is None:
            # An uplink's port counts against the zone that asked, not the host.
            broker.check_limit(peer_zone, 1)
        try:
            link = await make(broker, caller.zone, spec, zone, peer_zone, peer_master=uplink)
        except KernelError as exc:
            if uplink is None or spec.peer is None or caller.zone == GLOBAL_ZONE:
                raise
            # The host end's name is the host's business, not the zone's.
            raise KernelError(exc.errno, exc.message.replace(
                spec.peer, "the uplink's host end")) from None
        return LinkReply(link=broker.view(caller.zone, link))


def _check_zone_parent(broker: Broker, caller: Subject, zone: str, name: str) -> None:
    """Under zone_policy, a parent in the global zone must be one the policy hands to
    zones (`authorize`'s UseParent). Found first: a name that is nowhere is LinkNotFound,
    whatever the policy says."""
    if broker.links.find(zone, name) is not None:
        return  # the zone's own link
    parent = broker.links.find(GLOBAL_ZONE, name)
    if parent is None:
        raise LinkNotFound(name)
    authorize(caller, "CreateLink", UseParent(parent.cls, name, zone), policy=broker.policy)


def _attachable_bridge(broker: Broker, caller: Subject, zone: str, name: str) -> LinkRecord:
    """A global bridge `zone` may put a port on (`authorize`'s Attach). Anything else is
    LinkNotFound, the answer for a name that exists nowhere, a refusal too: a zone learns
    nothing of the host's links, not even that a bridge of that name is there."""
    bridge = broker.links.find(GLOBAL_ZONE, name)
    # The class by name, not the `master` trait: an uplink's host end is a port on one of
    # the host's bridges, the segments the policy's list (attachable_bridges) lets a zone
    # onto; a global bond, a master too, is no such segment and stays out of reach.
    if bridge is None or bridge.cls != "bridge" or not bridge.present:
        raise LinkNotFound(name)
    try:
        authorize(caller, "CreateLink", Attach(name, zone), policy=broker.policy)
    except PermissionDenied:
        raise LinkNotFound(name) from None
    return bridge


async def make(broker: Broker, owner: str, spec: LinkSpec, zone: str, peer_zone: str, *,
               ids: tuple[int, int | None] | None = None,
               peer_master: LinkRecord | None = None) -> LinkRecord:
    """Make a validated spec in the kernel and the table; the zone locks are held.
    `ids` re-uses the IDs of a persistent link being re-created; `peer_master` is the
    bridge (in `peer_zone`) the peer end becomes a port of, up, as an uplink.
    The executor of a `CreatePlan` (broker._create_plan decides): intent, one worker job,
    the follow-up steps, then the rows committed in one transaction."""
    parent = master = None
    if spec.parent is not None:
        parent = broker.resolve_in(owner, zone, spec.parent, global_too=True)
    if spec.master is not None:
        master = broker.resolve_in(owner, zone, spec.master, global_too=False)
        if not KINDS[master.cls].master:
            raise InvalidParameter("link.master")
    plan = plan_create(spec, zone, peer_zone, parent=parent, master=master,
                       peer_master=peer_master)
    request = plan.request
    if plan.peer_in is not None:
        request.attrs["peer"]["net_ns_fd"] = _fd(broker, plan.peer_in)
    target_fd = None if plan.place_in is None else _fd(broker, plan.place_in)

    if ids is None:
        link_id = broker.links.allocate_id()
        peer_id = broker.links.allocate_id() if spec.peer is not None else None
    else:
        link_id, peer_id = ids
    with broker.store.transaction():
        broker.store.set_next_seq(broker.links.ids.next_seq)
        broker.store.put_intent(Intent(link_id, list(plan.names)))

    # One worker job: the RTM_NEWLINK (its echo is the read-back of the new link) and
    # the peer's read-back in its own namespace (to learn its ifindex and MAC).
    try:
        made, peer_made = await broker.runtime(plan.send_from).netlink.create(
            spec.name, request, spec.class_, target_fd,
            made_in=broker.runtime(zone).netlink if target_fd is not None else None,
            peer=(broker.runtime(peer_zone).netlink, spec.peer) if spec.peer else None)
    except BaseException:
        # Refused, or undone on the worker: nothing of it is left in the kernel.
        with contextlib.suppress(LinkbrokerError, OSError):
            broker.store.delete_intent(link_id)
        raise
    try:
        if plan.configure:
            made = await broker.runtime(zone).netlink.set(
                made.ifindex, f"configure {spec.name}", read_back=True,
                **plan.configure) or made
        if peer_made is not None and plan.attach_peer_to is not None:
            assert peer_master is not None
            peer_made = await broker.runtime(peer_zone).netlink.set(
                peer_made.ifindex, f"attach {spec.peer} to bridge {peer_master.name}",
                read_back=True, master=plan.attach_peer_to, state=True) or peer_made
    except BaseException:
        await _undo_create(broker, zone, spec.name)
        with contextlib.suppress(LinkbrokerError, OSError):
            broker.store.delete_intent(link_id)
        raise

    added = records(spec, zone, peer_zone, owner, made=made, peer_made=peer_made,
                    ids=(link_id, peer_id), parent=parent, master=master,
                    peer_master=peer_master)
    for rec in added:
        broker.links.add(rec)
    with broker.store.transaction():
        broker.store.put_links(added)
        broker.store.delete_intent(link_id)
    for rec in added:
        broker.publish("link_added", rec)
    return added[0]


def _fd(broker: Broker, zone: str) -> int:
    """A zone's namespace fd to place a link into (the global zone's is the host's)."""
    fd = broker.runtime(zone).netns_fd
    return broker.host_fd() if fd is None else fd


async def recreate_persistent(broker: Broker, zone: str) -> list[str]:
    """Bring back the zone's absent persistent links, with their IDs (dlmgmtd's
    persistent configuration). A veth comes back when both its zones are booted."""
    plans: list[tuple[list[LinkRecord], LinkSpec, int | None]] = []
    seen: set[int] = set()
    # Specs first, for all of them: taking a record out of the table unlinks whatever
    # names it as master or peer.
    for link in sorted(broker.links.in_zone(zone), key=broker.links.order):
        if link.present or not link.persistent or link.id in seen:
            continue
        peer = broker.links.get(link.peer_id)
        if peer is not None and (peer.present or peer.zone not in broker.runtimes):
            continue
        parent = broker.links.get(link.parent_id)
        master = broker.links.get(link.configured("master_id"))
        plans.append(([link] + ([peer] if peer else []), LinkSpec(
            name=link.name, class_=link.cls,  # type: ignore[arg-type]
            zone=link.zone, persistent=True, mtu=link.configured("mtu"),
            mac=link.configured("mac"), up=link.configured("up") or None,
            peer=peer.name if peer else None, peer_zone=peer.zone if peer else None,
            parent=parent.name if parent else None, mode=link.mode, vni=link.vni,
            remote=link.remote, local=link.local, port=link.port,
            master=master.name if master else None, vid=link.vid,
            protocol=link.protocol, miimon=link.miimon, ttl=link.ttl,
        ), peer.master_id if peer else None))
        seen.update(rec.id for rec in plans[-1][0])
    errors: list[str] = []
    for saved, spec, uplink_id in plans:
        link, peer = saved[0], (saved[1] if len(saved) > 1 else None)
        # The peer's bridge by ID, now: it may have been re-created by an earlier plan.
        uplink = broker.links.get(uplink_id)
        if uplink is not None and not uplink.present:
            uplink = None  # its bridge is not back: the peer comes back unbridged
        if uplink is not None and uplink.zone != link.owner:
            try:  # the owner's consent, asked again: the policy may have changed since
                authorize(acting_for(link.owner), "CreateLink", Attach(uplink.name, link.owner),
                          policy=broker.policy)
            except PermissionDenied:
                errors.append(f"link {link.name}: zone {link.owner} may no longer attach to "
                              f"bridge {uplink.name}")
                continue
        for rec in saved:
            broker.links.remove(rec.id)
        try:
            async with broker.locked(*(rec.zone for rec in saved)):
                await make(broker, link.owner, spec, link.zone,
                           peer.zone if peer else link.zone,
                           ids=(link.id, peer.id if peer else None), peer_master=uplink)
        except (LinkbrokerError, OSError) as exc:
            errors.append(f"link {link.name}: {exc}")
            for rec in saved:
                broker.links.add(rec)
    return errors + await addresses.restore_configs(broker, zone)


async def _undo_create(broker: Broker, zone: str, name: str) -> None:
    with contextlib.suppress(LinkbrokerError):
        found = await broker.runtime(zone).netlink.get(name)
        if found is not None:
            await broker.runtime(zone).netlink.delete(found.ifindex)
