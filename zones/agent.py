"""linkbroker-agent: the container host agent, a client of the broker.

It follows the Docker engine's event stream and turns labelled containers into zones:

* a container that starts with the label ``io.linkbroker.zone=NAME`` is booted as zone NAME
  (``BootZone(container=ID)``), then the links its labels declare are made for it;
* a container that dies or stops has its zone halted (idempotent: the broker may have halted
  it already, when the namespace vanished);
* on start, and after every reconnection to the broker or the engine, it reconciles: labelled
  running containers that are not zones yet are booted, container zones whose container is
  gone are halted.

It talks to the broker only through :mod:`broker.client` (the Varlink API), from the global
zone, so it may create links in any zone. See :data:`LABELS_HELP` for the label scheme.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

from broker.client import (
    Client,
    LinkbrokerError,
    LinkExists,
    LinkNotFound,
    LinkSpec,
    ZoneExists,
    ZoneNotFound,
    default_socket,
)

__all__ = ["LABELS_HELP", "LinkDecl", "main", "parse_labels"]

LOG = logging.getLogger("linkbroker-agent")

ZONE_LABEL = "io.linkbroker.zone"
LINK_PREFIX = "io.linkbroker.link."
MAX_NAME = 15

LABELS_HELP = """\
label scheme (on the containers, read when they start):

  io.linkbroker.zone=NAME
      boot the container as zone NAME (1-15 bytes, Linux link-name rules).

  io.linkbroker.link.IFNAME=veth[,bridge=BR][,host=HOSTNAME][,mtu=N][,addr=A/P]
      a veth pair: its end IFNAME lives in the zone (lent by the global zone, owner global),
      its peer HOSTNAME stays in the global zone. HOSTNAME defaults to lbZONE for eth0 and
      lbZONE.IFNAME otherwise (at most 15 bytes; give host= when longer). With bridge=BR the
      host end is made a port of bridge BR in the global zone; the agent creates BR (not
      persistent) if missing and brings it up, and deletes it again when a zone it halts
      leaves it with no port.

  io.linkbroker.link.IFNAME=macvlan,parent=HOSTLINK[,mode=bridge][,mtu=N][,addr=A/P]
      a macvlan IFNAME in the zone over the global zone's link HOSTLINK
      (mode: private, vepa, bridge (default), passthru).

  Both ends are brought up. addr= (an IPv4 or IPv6 address with prefix length) is set on the
  zone's end, inside the container's network namespace. Every link the agent makes is
  non-persistent: it goes away with the zone (a veth is destroyed with the container's
  namespace, and its host end with it).

examples:
  io.linkbroker.zone=red
  io.linkbroker.link.eth0=veth,bridge=lbbr0,addr=192.0.2.1/24
  io.linkbroker.link.mv0=macvlan,parent=eth1,mode=bridge,mtu=1400
"""

_MACVLAN_MODES = ("private", "vepa", "bridge", "passthru")


class LabelError(ValueError):
    """A link label that cannot be understood."""


@dataclass(frozen=True)
class LinkDecl:
    """One io.linkbroker.link.* label, parsed."""

    ifname: str
    cls: str
    bridge: str | None = None
    host: str | None = None
    parent: str | None = None
    mode: str | None = None
    mtu: int | None = None
    addr: str | None = None


def _check_name(what: str, name: str) -> str:
    raw = name.encode()
    if not 1 <= len(raw) <= MAX_NAME or name in (".", "..") or any(
        c in name for c in "/: \t\n\0"
    ):
        raise LabelError(f"{what} {name!r} is not a valid link name (1-15 bytes)")
    return name


def _parse_link(zone: str, ifname: str, value: str) -> LinkDecl:
    parts = [p.strip() for p in value.split(",") if p.strip()]
    if not parts:
        raise LabelError(f"link {ifname}: empty label")
    cls = parts[0]
    opts: dict[str, str] = {}
    for part in parts[1:]:
        key, sep, val = part.partition("=")
        if not sep or not val:
            raise LabelError(f"link {ifname}: {part!r} is not key=value")
        opts[key.strip()] = val.strip()
    allowed = {"veth": {"bridge", "host", "mtu", "addr"},
               "macvlan": {"parent", "mode", "mtu", "addr"}}
    if cls not in allowed:
        raise LabelError(f"link {ifname}: class {cls!r} not supported (veth, macvlan)")
    unknown = set(opts) - allowed[cls]
    if unknown:
        raise LabelError(f"link {ifname}: unknown option(s) {', '.join(sorted(unknown))}")
    mtu: int | None = None
    if "mtu" in opts:
        try:
            mtu = int(opts["mtu"])
        except ValueError:
            raise LabelError(f"link {ifname}: mtu {opts['mtu']!r} is not a number") from None
    addr = opts.get("addr")
    if addr is not None and "/" not in addr:
        raise LabelError(f"link {ifname}: addr {addr!r} needs a prefix length (A/P)")
    _check_name("link", ifname)
    if cls == "veth":
        host = opts.get("host") or (f"lb{zone}" if ifname == "eth0" else f"lb{zone}.{ifname}")
        _check_name("host end", host)
        bridge = opts.get("bridge")
        if bridge is not None:
            _check_name("bridge", bridge)
        return LinkDecl(ifname, cls, bridge=bridge, host=host, mtu=mtu, addr=addr)
    parent = opts.get("parent")
    if parent is None:
        raise LabelError(f"link {ifname}: macvlan needs parent=HOSTLINK")
    mode = opts.get("mode", "bridge")
    if mode not in _MACVLAN_MODES:
        raise LabelError(f"link {ifname}: mode {mode!r} not one of {', '.join(_MACVLAN_MODES)}")
    return LinkDecl(ifname, cls, parent=_check_name("parent", parent), mode=mode, mtu=mtu,
                    addr=addr)


def parse_labels(labels: dict[str, str]) -> tuple[str | None, list[LinkDecl]]:
    """(zone name or None, link declarations) from a container's labels."""
    zone = labels.get(ZONE_LABEL)
    if zone is None:
        return None, []
    _check_name("zone", zone)
    decls = [
        _parse_link(zone, key[len(LINK_PREFIX):], value)
        for key, value in sorted(labels.items())
        if key.startswith(LINK_PREFIX)
    ]
    return zone, decls


def _set_address(pid: int, ifname: str, addr: str) -> None:
    """Add `addr` to `ifname` inside the network namespace of `pid` (no fork: a thread that
    setns()es, zones._ns.run_in_netns, opens the netlink socket there)."""
    from pyroute2 import IPRoute
    from pyroute2.netlink.exceptions import NetlinkError

    from zones._ns import run_in_netns

    address, _, prefix = addr.partition("/")

    def add() -> None:
        ipr: Any = IPRoute()
        try:
            index = ipr.link_lookup(ifname=ifname)
            if not index:
                raise LookupError(f"no link {ifname} in pid {pid}'s namespace")
            try:
                ipr.addr("add", index=index[0], address=address, prefixlen=int(prefix))
            except NetlinkError as exc:
                if exc.code != 17:  # EEXIST: already there
                    raise
        finally:
            ipr.close()

    fd = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        run_in_netns(fd, add)
    finally:
        os.close(fd)


@dataclass
class Agent:
    socket: str
    docker_factory: Callable[[], Any]
    stop: threading.Event = field(default_factory=threading.Event)
    # zone -> bridges its veth host ends were put on (for cleanup at halt)
    _bridges: dict[str, set[str]] = field(default_factory=dict)
    _hosts: dict[str, set[str]] = field(default_factory=dict)
    _broker_lost: bool = False

    # -- broker ------------------------------------------------------------------------
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

    # -- zones -------------------------------------------------------------------------
    def boot(self, container_id: str, name: str, labels: dict[str, str], pid: int) -> None:
        try:
            zone, decls = parse_labels(labels)
        except LabelError as exc:
            LOG.error("container %s: bad labels: %s; not booted", container_id[:12], exc)
            return
        if zone is None:
            return
        try:
            z = self._call(lambda c: c.boot_zone(zone, container=container_id))
            LOG.info("booted zone %s for container %s (%s), attached=%s", zone,
                     container_id[:12], name, z.attached)
        except ZoneExists:
            existing = self._call(lambda c: c.get_zone(zone))
            if existing.container not in (None, container_id):
                LOG.error("zone %s exists for another container %s; container %s not booted",
                          zone, (existing.container or "")[:12], container_id[:12])
                return
            LOG.info("zone %s already booted for container %s", zone, container_id[:12])
        except LinkbrokerError as exc:
            LOG.error("boot of zone %s for container %s failed: %s", zone, container_id[:12],
                      exc)
            return
        for decl in decls:
            try:
                self.make_link(zone, decl, pid)
            except (LinkbrokerError, OSError, LookupError) as exc:
                LOG.error("zone %s: link %s failed: %s", zone, decl.ifname, exc)

    def make_link(self, zone: str, decl: LinkDecl, pid: int) -> None:
        if decl.cls == "veth":
            assert decl.host is not None
            if decl.bridge is not None:
                self.ensure_bridge(decl.bridge)
            spec = LinkSpec(name=decl.ifname, class_="veth", zone=zone, peer=decl.host,
                            peer_zone="global", mtu=decl.mtu, up=True, persistent=False)
        else:
            spec = LinkSpec(name=decl.ifname, class_="macvlan", zone=zone, parent=decl.parent,
                            mode=decl.mode, mtu=decl.mtu, up=True, persistent=False)
        try:
            self._call(lambda c: c.create_link(spec))
            LOG.info("zone %s: created %s %s%s", zone, decl.cls, decl.ifname,
                     f" (host end {decl.host})" if decl.host else "")
        except LinkExists:
            LOG.info("zone %s: %s %s already there", zone, decl.cls, decl.ifname)
        self._call(lambda c: c.set_link_properties(decl.ifname, zone, up=True))
        if decl.host is not None:
            self._hosts.setdefault(zone, set()).add(decl.host)
            host = decl.host
            bridge = decl.bridge
            self._call(lambda c: c.set_link_properties(host, "global", up=True, master=bridge))
            LOG.info("zone %s: host end %s up%s", zone, host,
                     f" on bridge {bridge}" if bridge else "")
            if bridge is not None:
                self._bridges.setdefault(zone, set()).add(bridge)
        if decl.addr is not None:
            _set_address(pid, decl.ifname, decl.addr)
            LOG.info("zone %s: address %s on %s", zone, decl.addr, decl.ifname)

    def ensure_bridge(self, bridge: str) -> None:
        try:
            self._call(lambda c: c.get_link(bridge, "global"))
        except LinkNotFound:
            try:
                self._call(lambda c: c.create_link(
                    LinkSpec(name=bridge, class_="bridge", zone="global", up=True,
                             persistent=False)))
                LOG.info("created bridge %s in the global zone", bridge)
            except LinkExists:
                pass
        self._call(lambda c: c.set_link_properties(bridge, "global", up=True))

    def halt(self, zone: str, why: str, labels: dict[str, str] | None = None) -> None:
        """Halt the zone, then remove what the agent made for it in the global zone: the host
        ends of its veths (the pair goes with them, wherever the zone's end went at halt) and
        the bridges left without a port."""
        try:
            self._call(lambda c: c.halt_zone(zone))
            LOG.info("halted zone %s (%s)", zone, why)
        except ZoneNotFound:
            LOG.info("zone %s already halted (%s)", zone, why)
        except LinkbrokerError as exc:
            LOG.error("halt of zone %s failed: %s", zone, exc)
        hosts = self._hosts.pop(zone, set())
        bridges = self._bridges.pop(zone, set())
        try:
            _, decls = parse_labels(labels or {})
        except LabelError:
            decls = []
        for decl in decls:
            if decl.host is not None:
                hosts.add(decl.host)
            if decl.bridge is not None:
                bridges.add(decl.bridge)
        for host in sorted(hosts):
            try:
                self._delete_global(host)
                LOG.info("zone %s: deleted veth host end %s", zone, host)
            except LinkNotFound:
                pass
            except LinkbrokerError as exc:
                LOG.error("zone %s: delete of host end %s failed: %s", zone, host, exc)
        self._gc_bridges(bridges, hosts)

    def _delete_global(self, name: str) -> None:
        self._call(lambda c: c.delete_link(name, "global"))

    def _gc_bridges(self, bridges: set[str], gone: set[str]) -> None:
        """Delete these bridges where no port (but the host ends in `gone`) is left."""
        for bridge in sorted(bridges):
            if any(bridge in used for used in self._bridges.values()):
                continue
            try:
                links = self._call(lambda c: c.list_links(zone="global"))
                ports = [lk.name for lk in links
                         if lk.master == bridge and lk.name not in gone and lk.state != "absent"]
                if ports:
                    continue
                self._delete_global(bridge)
                LOG.info("deleted bridge %s: no port left", bridge)
            except LinkNotFound:
                pass
            except LinkbrokerError as exc:
                LOG.error("cleanup of bridge %s failed: %s", bridge, exc)

    # -- docker ------------------------------------------------------------------------
    def reconcile(self, docker: Any) -> None:
        running: dict[str, tuple[str, dict[str, str], int]] = {}
        for c in docker.api.containers(filters={"label": ZONE_LABEL}):
            info = docker.api.inspect_container(c["Id"])
            state = info.get("State", {})
            if state.get("Running") and int(state.get("Pid") or 0) > 0:
                running[info["Id"]] = (info.get("Name", "").lstrip("/"),
                                       info["Config"].get("Labels") or {}, int(state["Pid"]))
        zones = self._call(lambda c: c.list_zones())
        booted = {z.container: z.name for z in zones if z.kind == "container" and z.container}
        for zone in zones:
            if zone.kind == "container" and zone.container not in running:
                self.halt(zone.name, "container gone", _labels_of(docker, zone.container))
        for cid, (name, labels, pid) in running.items():
            if cid not in booted:
                self.boot(cid, name, labels, pid)
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
            for zone in zones:
                if zone.kind != "container" or not zone.container:
                    continue
                try:
                    state = docker.api.inspect_container(zone.container).get("State", {})
                except Exception:  # docker.errors.NotFound: gone
                    state = {}
                if not state.get("Running"):
                    self.halt(zone.name, "container gone, at exit",
                              _labels_of(docker, zone.container))
            # Zones the broker halted on its own (namespace gone) before we heard of it.
            listed = {zone.name for zone in zones}
            for name in sorted((set(self._hosts) | set(self._bridges)) - listed):
                self.halt(name, "halted meanwhile, at exit")
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
        zone = attrs.get(ZONE_LABEL)
        if zone is None or not cid:
            return
        if action == "start":
            try:
                info = docker.api.inspect_container(cid)
            except Exception as exc:  # docker.errors.*: gone already
                LOG.warning("container %s started but cannot be inspected: %s", cid[:12], exc)
                return
            state = info.get("State", {})
            pid = int(state.get("Pid") or 0)
            if not state.get("Running") or pid <= 0:
                return
            self.boot(cid, info.get("Name", "").lstrip("/"),
                      info["Config"].get("Labels") or {}, pid)
        elif action in ("die", "stop"):
            try:
                z = self._call(lambda c: c.get_zone(zone))
            except ZoneNotFound:
                z = None
            if z is not None and z.container not in (None, cid):
                return  # the name belongs to another container now
            self.halt(zone, f"container {action}", attrs)

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


def _labels_of(docker: Any, container: str | None) -> dict[str, str]:
    """The labels of a container that may be gone ({} then)."""
    if not container:
        return {}
    try:
        info = docker.api.inspect_container(container)
    except Exception:  # docker.errors.NotFound and the like: nothing to learn
        return {}
    return dict(info.get("Config", {}).get("Labels") or {})


def _docker_from_env() -> Any:
    import docker

    return docker.from_env(timeout=30)


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
    parser.add_argument("--once", action="store_true", help="reconcile once and exit")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="linkbroker-agent: %(levelname)s %(message)s")
    agent = Agent(socket=default_socket(args.socket), docker_factory=_docker_from_env)

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
