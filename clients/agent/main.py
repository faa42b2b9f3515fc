"""linkbroker-agent: the container host agent, a client of the broker.

It follows the Docker engine's event stream and turns labelled containers into zones:

* a container that starts with the label ``io.linkbroker.zone=NAME`` *given by the operator*
  is booted as zone NAME (``BootZone(container=ID)``), then the links its labels declare are
  made for it; labels that come with the image are ignored (:mod:`clients.agent.labels`);
* a container that dies or stops has the container zone booted for *it* halted, and the links
  the agent made for it deleted, by broker ID (:mod:`clients.agent.state`);
* on start, and after every reconnection to the broker or the engine, it reconciles: labelled
  running containers that are not zones yet are booted, container zones whose container is
  gone are halted.

It is a global-zone administrator acting on other people's words, so it is a careful deputy:
it only ever creates new links (an existing name is ``LinkExists``, never adopted), asks the
broker to hold each request to the policy the zone itself would face (``zone_policy``:
``[bridges] attachable``, ``[assign] phys``), never boots or halts a zone that is not the
container zone of the container at hand, and deletes only what it recorded making. An
``addr=`` goes through the broker too (``AddAddress``): the agent has no netlink code and
never enters a namespace itself. See :data:`LABELS_HELP` for the label scheme.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

from broker.client import (
    AddressExists,
    Client,
    Link,
    LinkbrokerError,
    LinkNotFound,
    LinkSpec,
    ZoneExists,
    ZoneNotFound,
    default_socket,
)
from clients.agent.engine import (
    delete_made,
    docker_from_env,
    gc_bridges,
    halting,
    labels_of,
    running_container,
)
from clients.agent.labels import (
    LABELS_HELP,
    ZONE_LABEL,
    LabelError,
    LinkDecl,
    operator_labels,
    parse_labels,
)
from clients.agent.state import AgentState

__all__ = ["LABELS_HELP", "LabelError", "LinkDecl", "main", "operator_labels", "parse_labels"]

LOG = logging.getLogger("linkbroker-agent")


@dataclass
class Agent:
    socket: str
    docker_factory: Callable[[], Any]
    stop: threading.Event = field(default_factory=threading.Event)
    state: AgentState = field(default_factory=AgentState)
    _broker_lost: bool = False

    def client(self) -> Client:
        """A connection to the broker, retried with backoff until it answers (or stop)."""
        delay = 0.2
        while True:
            try:
                return Client(self.socket, timeout=60.0)
            except OSError as exc:
                if self.stop.is_set():
                    raise
                self._broker_lost = True
                LOG.warning("broker at %s unreachable (%s); retrying in %.1fs",
                            self.socket, exc, delay)
                if self.stop.wait(delay):
                    raise
                delay = min(delay * 2, 5.0)

    def _call(self, fn: Callable[[Client], Any]) -> Any:
        """One broker call on a fresh connection, reconnecting once if the broker went away."""
        for attempt in range(2):
            with self.client() as client:
                try:
                    return fn(client)
                except (ConnectionError, BrokenPipeError, OSError) as exc:
                    if isinstance(exc, LinkbrokerError) or attempt:
                        raise
                    LOG.warning("broker connection lost (%s); reconnecting", exc)
        raise AssertionError("unreachable")

    def boot(self, container_id: str, name: str, labels: dict[str, str]) -> None:
        """Boot the container as the zone its (operator's) labels name and make its links."""
        cid = container_id[:12]
        try:
            zone, decls = parse_labels(labels)
        except LabelError as exc:
            LOG.error("container %s: bad labels: %s; not booted", cid, exc)
            return
        if zone is None:
            return
        try:
            z = self._call(lambda c: c.boot_zone(zone, container=container_id))
            LOG.info("booted zone %s for container %s (%s), attached=%s", zone, cid, name,
                     z.attached)
        except ZoneExists:
            z = self._call(lambda c: c.get_zone(zone))
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
        link: Link = self._call(lambda c: c.create_link(spec))
        self.state.record(container_id, link.id)
        LOG.info("zone %s: created %s %s%s", zone, decl.cls, decl.ifname,
                 f" (host end {decl.host})" if decl.host else "")
        if decl.host is not None:
            host = decl.host
            end: Link = self._call(lambda c: c.get_link(host, "global"))
            if end.peer != decl.ifname or end.owner != "global":
                raise LookupError(f"host end {host} is not the peer just made")
            self.state.record(container_id, end.id)
            if decl.bridge is None:
                self._call(lambda c: c.set_link_properties(host, "global", up=True))
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
            self._call(lambda c: c.add_address(ifname, address, zone))
        LOG.info("zone %s: address %s on %s", zone, address, ifname)

    def ensure_bridge(self, bridge: str) -> None:
        """A missing bridge is created (and recorded as the agent's); an existing one is used
        as it is, never changed: whether the zone may attach to it is the broker's call."""
        try:
            self._call(lambda c: c.get_link(bridge, "global"))
            return
        except LinkNotFound:
            pass
        made: Link = self._call(lambda c: c.create_link(
            LinkSpec(name=bridge, class_="bridge", zone="global", up=True, persistent=False)))
        self.state.bridges.add(made.id)
        self.state.save()
        LOG.info("created bridge %s in the global zone", bridge)

    def halt_container(self, container_id: str, why: str) -> None:
        """Halt the container zone booted for this container (no other zone), then delete the
        links recorded as made for it and the agent's bridges left without a port."""
        made = self.state.containers.get(container_id)
        zones = self._call(lambda c: c.list_zones())
        for zone in zones:
            if zone.kind != "container" or zone.container != container_id:
                continue
            name = zone.name
            try:
                self._call(halting(name))
                LOG.info("halted zone %s (%s)", name, why)
            except ZoneNotFound:
                LOG.info("zone %s already halted (%s)", name, why)
            except LinkbrokerError as exc:
                LOG.error("halt of zone %s failed: %s", name, exc)
        if made is not None:
            delete_made(self._call, made.zone, made.links)
            del self.state.containers[container_id]
            self.state.save()
        gc_bridges(self._call, self.state)

    def reconcile(self, docker: Any) -> None:
        running: dict[str, tuple[str, dict[str, str]]] = {}
        for c in docker.api.containers(filters={"label": ZONE_LABEL}):
            info = docker.api.inspect_container(c["Id"])
            state = info.get("State", {})
            labels = labels_of(docker, info)
            if state.get("Running") and int(state.get("Pid") or 0) > 0 and ZONE_LABEL in labels:
                running[info["Id"]] = (info.get("Name", "").lstrip("/"), labels)
        zones = self._call(lambda c: c.list_zones())
        booted = {z.container for z in zones if z.kind == "container" and z.container}
        gone = {cid for cid in booted | set(self.state.containers)
                if cid not in running and not running_container(docker, cid)}
        for cid in sorted(gone):
            self.halt_container(cid, "container gone")
        for cid, (name, labels) in running.items():
            if cid not in booted:
                self.boot(cid, name, labels)
        LOG.info("reconciled: %d labelled container(s) running, %d container zone(s) before",
                 len(running), len(booted))

    def final_sweep(self) -> None:
        """At exit: halt (and clean up after) the container zones whose container is no longer
        running, so stops the event stream had no time to deliver are not left behind."""
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        docker: Any = None
        try:
            docker = self.docker_factory()
            with Client(self.socket, timeout=5.0) as client:
                zones = client.list_zones()
            known = {z.container for z in zones if z.kind == "container" and z.container}
            for cid in sorted(known | set(self.state.containers)):
                if not running_container(docker, cid):
                    self.halt_container(cid, "container gone, at exit")
        except Exception as exc:  # best effort: the engine or broker may be gone too
            LOG.warning("final sweep incomplete: %s", exc)
        finally:
            if docker is not None:
                docker.close()
        LOG.info("exiting")

    def handle(self, docker: Any, event: dict[str, Any]) -> None:
        action = str(event.get("Action") or event.get("status") or "")
        actor = event.get("Actor") or {}
        attrs: dict[str, str] = actor.get("Attributes") or {}
        cid = str(actor.get("ID") or event.get("id") or "")
        if not cid:
            return
        if action == "start" and ZONE_LABEL in attrs:
            try:
                info = docker.api.inspect_container(cid)
            except Exception as exc:  # docker.errors.*: gone already
                LOG.warning("container %s started but cannot be inspected: %s", cid[:12], exc)
                return
            state = info.get("State", {})
            if not state.get("Running") or int(state.get("Pid") or 0) <= 0:
                return
            labels = labels_of(docker, info)
            if ZONE_LABEL in labels:
                self.boot(cid, info.get("Name", "").lstrip("/"), labels)
        elif action in ("die", "stop") and (ZONE_LABEL in attrs
                                            or cid in self.state.containers):
            self.halt_container(cid, f"container {action}")

    def events(self, docker: Any) -> Iterator[dict[str, Any]]:
        since = int(time.time()) - 1
        stream: Any = docker.events(decode=True, since=since,
                                    filters={"type": "container"})
        try:
            yield from stream
        finally:
            stream.close()

    def run(self, once: bool) -> int:
        delay = 0.5
        while not self.stop.is_set():
            docker: Any = None
            try:
                docker = self.docker_factory()
                docker.ping()
                self._broker_lost = False
                self.reconcile(docker)
                if once:
                    return 0
                delay = 0.5
                LOG.info("following Docker events")
                for event in self.events(docker):
                    if self.stop.is_set():
                        break
                    try:
                        self.handle(docker, event)
                        if self._broker_lost:
                            self._broker_lost = False
                            LOG.info("broker back: reconciling")
                            self.reconcile(docker)
                    except (OSError, LinkbrokerError) as exc:
                        LOG.error("event %s of %s: %s", event.get("Action"),
                                  str(event.get("id"))[:12], exc)
                if not self.stop.is_set():
                    LOG.warning("Docker event stream ended; reconnecting")
            except Exception as exc:  # the loop must survive engine/broker loss
                if self.stop.is_set():
                    break
                if once:
                    LOG.error("reconcile failed: %s", exc)
                    return 1
                LOG.warning("lost the engine or broker (%s: %s); retrying in %.1fs",
                            type(exc).__name__, exc, delay)
            finally:
                if docker is not None:
                    docker.close()
            if self.stop.wait(delay):
                break
            delay = min(delay * 2, 5.0)
        return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="linkbroker-agent",
        description="Boot labelled Docker containers as linkbroker zones and make their links.",
        epilog=LABELS_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--socket", default=None,
                        help="the broker's socket (default: $LINKBROKER_SOCKET or "
                             "/run/linkbroker/broker.sock)")
    parser.add_argument("--state-file", default=None, metavar="FILE",
                        help="where to record the IDs of the links the agent made, so a "
                             "restarted agent still removes them (default: memory only)")
    parser.add_argument("--once", action="store_true", help="reconcile once and exit")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="linkbroker-agent: %(levelname)s %(message)s")
    agent = Agent(socket=default_socket(args.socket), docker_factory=docker_from_env,
                  state=AgentState.load(args.state_file))

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        LOG.info("signal %d: exiting", signum)
        agent.stop.set()
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        code = agent.run(args.once)
    except SystemExit:
        code = 0
    if agent.stop.is_set():
        agent.final_sweep()
    return code


if __name__ == "__main__":
    sys.exit(main())
