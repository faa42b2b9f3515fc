"""linkbroker-agent's decisions: which containers become zones, which zones are halted, which
links are made and which deleted, on start, after a reconnection and on each container event.

They are kept apart from Docker and from the broker's socket (both come in as the protocol
objects of :mod:`clients.agent.protocols`) because they are where the agent's careful-deputy
rules live, and those must be testable without root, Docker or a broker
(``tests/unit/test_agent_reconciler.py`` drives this module with fakes):

* only the operator's labels count (:func:`trusted_labels`: the image's are ignored, and all of
  them when the image cannot be inspected);
* only new links: both ends are named in one CreateLink, so an existing name is
  ``LinkExists``, never adopted; an existing bridge is used as it is;
* every link is sent with ``zone_policy``: the broker holds it to what the zone could get;
* only the container's own zone: a label naming a zone of another kind or container gets
  nothing, and a stop halts only the container zone of that container;
* only what it made: the broker IDs of the links and bridges created are recorded
  (:mod:`clients.agent.state`), and exactly those are deleted.

Failures are logged and contained to the one container (or link) they concern, except the
engine or the broker being lost, which propagates: :mod:`clients.agent.main` reconnects and
reconciles again.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field

from broker._errors import AddressExists, LinkbrokerError, LinkNotFound, ZoneExists, ZoneNotFound
from broker._types import Link, LinkSpec, Zone
from clients.agent.labels import (
    LABEL_PREFIX,
    ZONE_LABEL,
    LabelError,
    LinkDecl,
    operator_labels,
    parse_labels,
)
from clients.agent.protocols import Broker, Container, ContainerEvent, Engine
from clients.agent.state import AgentState

__all__ = ["Reconciler", "delete_made", "gc_bridges", "trusted_labels"]

LOG = logging.getLogger("linkbroker-agent")


def trusted_labels(container: Container) -> dict[str, str]:
    """The io.linkbroker.* labels the operator gave this container (not its image's).

    If the image could not be inspected its labels cannot be told apart: none count (fail
    closed; the engine logged why).
    """
    if not any(k.startswith(LABEL_PREFIX) for k in container.labels):
        return {}
    if container.image_labels is None:
        return {}
    trusted, ignored = operator_labels(container.labels, container.image_labels)
    for key in ignored:
        LOG.warning("container %s: ignored image label %s: labels that come with the image "
                    "are not orders", container.id[:12], key)
    return trusted


def container_zones(zones: Iterable[Zone]) -> set[str]:
    """The containers that have a container zone booted for them."""
    return {z.container for z in zones if z.kind == "container" and z.container}


@dataclass
class Reconciler:
    """The agent's decisions over a broker and an engine, with the record of what it made."""

    broker: Broker
    engine: Engine
    state: AgentState = field(default_factory=AgentState)

    def reconcile(self) -> None:
        """On start and after a reconnection: halt the container zones (and clean up after the
        containers recorded) whose container is gone, boot the labelled running containers
        that are not zones yet. Events missed meanwhile are made up for here."""
        running: dict[str, tuple[str, dict[str, str]]] = {}
        for container in self.engine.running_containers(ZONE_LABEL):
            labels = trusted_labels(container)
            if ZONE_LABEL in labels:
                running[container.id] = (container.name, labels)
        booted = container_zones(self.broker.list_zones())
        gone = {cid for cid in booted | set(self.state.containers)
                if cid not in running and not self.engine.is_running(cid)}
        for cid in sorted(gone):
            self.halt_container(cid, "container gone")
        for cid, (name, labels) in running.items():
            if cid not in booted:
                self.boot(cid, name, labels)
        LOG.info("reconciled: %d labelled container(s) running, %d container zone(s) before",
                 len(running), len(booted))

    def handle(self, event: ContainerEvent) -> None:
        """One container event: a labelled start boots (its labels read again, the operator's
        only), a die or stop of a labelled or recorded container halts and cleans up."""
        cid = event.container
        if not cid:
            return
        if event.action == "start" and ZONE_LABEL in event.labels:
            try:
                container = self.engine.container(cid)
            except LookupError as exc:
                LOG.warning("container %s started but cannot be inspected: %s", cid[:12], exc)
                return
            if container is None:
                return
            labels = trusted_labels(container)
            if ZONE_LABEL in labels:
                self.boot(cid, container.name, labels)
        elif event.action in ("die", "stop") and (ZONE_LABEL in event.labels
                                                  or cid in self.state.containers):
            self.halt_container(cid, f"container {event.action}")

    def sweep(self, zones: Iterable[Zone]) -> None:
        """At exit: halt (and clean up after) the container zones in `zones` and the recorded
        containers whose container no longer runs, so stops the event stream had no time to
        deliver are not left behind. `zones` is listed by the caller (on a short timeout)."""
        for cid in sorted(container_zones(zones) | set(self.state.containers)):
            if not self.engine.is_running(cid):
                self.halt_container(cid, "container gone, at exit")

    def boot(self, container_id: str, name: str, labels: dict[str, str]) -> None:
        """Boot the container as the zone its (operator's) labels name and make its links.

        A zone of that name booted for this very container is used again (the agent
        restarted); any other zone of that name means the container gets nothing.
        """
        cid = container_id[:12]
        try:
            zone, decls = parse_labels(labels)
        except LabelError as exc:
            LOG.error("container %s: bad labels: %s; not booted", cid, exc)
            return
        if zone is None:
            return
        try:
            z = self.broker.boot_zone(zone, container=container_id)
            LOG.info("booted zone %s for container %s (%s), attached=%s", zone, cid, name,
                     z.attached)
        except ZoneExists:
            z = self.broker.get_zone(zone)
            if z.kind != "container" or z.container != container_id:
                LOG.error("zone %s exists (%s%s); container %s gets nothing", zone, z.kind,
                          f" of container {(z.container or '')[:12]}" if z.container else "",
                          cid)
                return
            LOG.info("zone %s already booted for container %s", zone, cid)
        except LinkbrokerError as exc:
            LOG.error("boot of zone %s for container %s failed: %s", zone, cid, exc)
            return
        self.state.made_for(container_id, zone)
        for decl in decls:
            try:
                self.make_link(container_id, zone, decl)
            except (LinkbrokerError, OSError, LookupError) as exc:
                LOG.error("zone %s: link %s not made: %s", zone, decl.ifname, exc)

    def make_link(self, container_id: str, zone: str, decl: LinkDecl) -> None:
        """Create one declared link, as new links only, held to the zone's policy."""
        if decl.cls == "veth":
            assert decl.host is not None
            if decl.bridge is not None:
                self.ensure_bridge(decl.bridge)
            spec = LinkSpec(name=decl.ifname, class_="veth", zone=zone, peer=decl.host,
                            peer_zone=None if decl.bridge else "global", uplink=decl.bridge,
                            mtu=decl.mtu, up=True, persistent=False, zone_policy=True)
        else:
            spec = LinkSpec(name=decl.ifname, class_="macvlan", zone=zone, parent=decl.parent,
                            mode=decl.mode, mtu=decl.mtu, up=True, persistent=False,
                            zone_policy=True)
        link = self.broker.create_link(spec)
        self.state.record(container_id, link.id)
        LOG.info("zone %s: created %s %s%s", zone, decl.cls, decl.ifname,
                 f" (host end {decl.host})" if decl.host else "")
        if decl.host is not None:
            host = decl.host
            end = self.broker.get_link(host, "global")
            if end.peer != decl.ifname or end.owner != "global":
                raise LookupError(f"host end {host} is not the peer just made")
            self.state.record(container_id, end.id)
            if decl.bridge is None:
                self.broker.set_link_properties(host, "global", up=True)
            LOG.info("zone %s: host end %s up%s", zone, host,
                     f" on bridge {decl.bridge}" if decl.bridge else "")
        if decl.addr is not None:
            self.add_address(zone, decl.ifname, decl.addr)

    def add_address(self, zone: str, ifname: str, address: str) -> None:
        """addr= through the broker (AddAddress), like any other client: the broker enters the
        zone's namespace by the handle it holds, so no pid (which can be reused) is ever
        trusted here, and the agent needs no netlink code of its own."""
        # AddressExists: already there (the same container booted again); the label holds.
        with contextlib.suppress(AddressExists):
            self.broker.add_address(ifname, address, zone)
        LOG.info("zone %s: address %s on %s", zone, address, ifname)

    def ensure_bridge(self, bridge: str) -> None:
        """A missing bridge is created (and recorded as the agent's); an existing one is used
        as it is, never changed: whether the zone may attach to it is the broker's call."""
        try:
            self.broker.get_link(bridge, "global")
            return
        except LinkNotFound:
            pass
        made = self.broker.create_link(
            LinkSpec(name=bridge, class_="bridge", zone="global", up=True, persistent=False))
        self.state.bridges.add(made.id)
        self.state.save()
        LOG.info("created bridge %s in the global zone", bridge)

    def halt_container(self, container_id: str, why: str) -> None:
        """Halt the container zone booted for this container (no other zone), then delete the
        links recorded as made for it and the agent's bridges left without a port."""
        made = self.state.containers.get(container_id)
        for zone in self.broker.list_zones():
            if zone.kind != "container" or zone.container != container_id:
                continue
            name = zone.name
            try:
                self.broker.halt_zone(name)
                LOG.info("halted zone %s (%s)", name, why)
            except ZoneNotFound:
                LOG.info("zone %s already halted (%s)", name, why)
            except LinkbrokerError as exc:
                LOG.error("halt of zone %s failed: %s", name, exc)
        if made is not None:
            delete_made(self.broker, made.zone, made.links)
            del self.state.containers[container_id]
            self.state.save()
        gc_bridges(self.broker, self.state)


def delete_made(broker: Broker, zone: str, ids: list[int]) -> None:
    """Delete the links with these broker IDs, wherever they are now (a lent end comes home
    under another name at halt). IDs are never reused, so nothing else can match."""
    for link_id in ids:
        link: Link | None = next((lk for lk in broker.list_links() if lk.id == link_id), None)
        if link is None:
            continue  # gone with its peer, or with the zone
        if link.owner != "global":
            # Everything the agent makes is the global zone's: a zone's own link under a
            # recorded ID means the record is not this broker's (a state file outliving
            # the broker's store). Never touch it.
            LOG.error("zone %s: recorded ID %d is %s of zone %s, not the agent's; left alone",
                      zone, link_id, link.name, link.owner)
            continue
        try:
            broker.delete_link(link.name, link.zone)
            LOG.info("zone %s: deleted %s %s (ID %d)", zone, link.class_, link.name, link_id)
        except LinkNotFound:
            pass
        except LinkbrokerError as exc:
            LOG.error("zone %s: delete of %s failed: %s", zone, link.name, exc)


def gc_bridges(broker: Broker, state: AgentState) -> None:
    """Delete the bridges the agent created that no port is left on."""
    if not state.bridges:
        return
    links = broker.list_links(zone="global")
    by_id = {lk.id: lk for lk in links}
    for bridge_id in sorted(state.bridges):
        bridge = by_id.get(bridge_id)
        if bridge is not None and any(lk.master == bridge.name for lk in links):
            continue
        state.bridges.discard(bridge_id)
        state.save()
        if bridge is None:
            continue
        try:
            broker.delete_link(bridge.name, "global")
            LOG.info("deleted bridge %s: no port left", bridge.name)
        except LinkNotFound:
            pass
        except LinkbrokerError as exc:
            LOG.error("cleanup of bridge %s failed: %s", bridge.name, exc)
