"""linkbrokerd: load the state, make it agree with the kernel, then open the door.

Start-up order matters. The socket is bound first (a stale one from a crashed broker is
replaced) but does not accept yet, because attaching it inside zones needs the file. Then: the
global zone, zones restored from the store whose namespaces still exist (a vanished one is
halted: its own links are gone with it), intents of requests that never replied undone,
every zone reconciled with its kernel and its socket re-attached (detaching the stale mount of
the previous broker first). Only then are calls accepted. SIGTERM and SIGINT stop accepting,
let started requests finish, and remove the socket.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys

from broker._errors import LinkbrokerError
from broker._events import EventBus
from broker._names import GLOBAL_ZONE
from broker._netlink import ZoneNetlink
from broker._policy import PolicyError, load_policy
from broker._privileges import drop_capabilities
from broker._server import Limits, Server, raise_fd_limit
from broker._service import Broker, Runtime
from broker._store import Store
from broker._table import ZoneRecord
from zones.handle import (
    ZoneGone,
    ZoneHandle,
    host_netns_inode,
    open_named_netns,
    open_pid_netns,
)

__all__ = ["main", "run"]

log = logging.getLogger("linkbroker")
DEFAULT_SOCKET = "/run/linkbroker/broker.sock"
DEFAULT_STATE_DIR = "/var/lib/linkbroker"
DEFAULT_POLICY = "/etc/linkbroker/policy.toml"


def _reopen(zone: ZoneRecord) -> ZoneHandle:
    if zone.kind == "netns" and zone.netns is not None:
        return open_named_netns(zone.netns, expect_inode=zone.netns_inode)
    if zone.pid is not None:
        return open_pid_netns(zone.pid, expect_start=zone.pid_start,
                              expect_inode=zone.netns_inode)
    raise ZoneGone(f"zone {zone.name} has nothing to reopen")


async def restore(broker: Broker) -> None:
    loaded = broker.store.load()
    broker.links.ids = loaded.ids
    for link in loaded.links:
        broker.links.add(link)
    host_fd = os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    global_zone = ZoneRecord(name=GLOBAL_ZONE, kind="global", netns_inode=host_netns_inode())
    broker.zones.add(global_zone)
    broker.runtimes[GLOBAL_ZONE] = Runtime(
        ZoneHandle(netns_fd=host_fd, netns_inode=global_zone.netns_inode),
        ZoneNetlink.open(None),
    )

    reopened: list[tuple[ZoneRecord, ZoneHandle]] = []
    for zone in loaded.zones:
        try:
            reopened.append((zone, _reopen(zone)))
        except ZoneGone as exc:
            log.info("zone %s halted while the broker was down: %s", zone.name, exc)
            broker.store.delete_zone(zone.name)
            gone = [link for link in broker.links.in_zone(zone.name) if not link.persistent]
            for link in gone:
                broker.links.remove(link.id)
            broker.store.delete_links(link.id for link in gone)
    for zone, handle in reopened:
        zone.attached = False
        broker.zones.add(zone)
        broker.runtimes[zone.name] = Runtime(handle, ZoneNetlink.open(handle.netns_fd))

    # Undo creations that never replied: the kernel may hold links nobody was told about.
    for intent in loaded.intents:
        for zone_name, name in intent.links:
            rt = broker.runtimes.get(zone_name)
            if rt is None or broker.links.find(zone_name, name) is not None:
                continue
            with contextlib.suppress(LinkbrokerError):
                found = await rt.netlink.get(name)
                if found is not None:
                    log.info("removing %s/%s left by an interrupted CreateLink", zone_name, name)
                    await rt.netlink.delete(found.ifindex)
        broker.store.delete_intent(intent.id)

    for zone in list(broker.zones):
        rt = broker.runtimes[zone.name]
        broker.reconcile_zone(zone.name, await rt.netlink.dump())
        for error in await broker.recreate_persistent(zone.name):
            log.warning("zone %s: persistent link not re-created: %s", zone.name, error)
    for zone in list(broker.zones):  # after all dumps: no zone resyncs what start-up did
        broker.watch(zone)
    for zone, _ in reopened:
        if zone.pid is not None and zone.root is not None:
            zone.attached = await broker.attach(zone)
        broker.store.put_zone(zone)


async def run(socket_path: str, state_dir: str, policy_path: str | None, *,
              event_queue_limit: int = 1024, limits: Limits | None = None,
              keep_capabilities: bool = False) -> int:
    if not keep_capabilities:
        log.info("capabilities now %#x (kept: net_admin, sys_admin, sys_chroot, sys_ptrace, "
                 "dac_override, dac_read_search, fowner)", drop_capabilities())
    policy = load_policy(policy_path)
    store = Store(state_dir)
    broker = Broker(store=store, socket_path=socket_path, policy=policy,
                    events=EventBus(event_queue_limit))
    server = Server(broker, socket_path, limits or Limits())
    log.info("file descriptors: up to %d", raise_fd_limit(server.limits))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, _reload, broker, policy_path)
    try:
        await server.bind()
        await restore(broker)
        await server.start()
        log.info("ready on %s (state %s, %d zones, %d links)", socket_path, store.path,
                 len(broker.zones), len(broker.links))
        await stop.wait()
        log.info("shutting down")
    finally:
        await server.close()
        broker.close()
        store.close()
    return 0


def _reload(broker: Broker, path: str | None) -> None:
    try:
        broker.policy = load_policy(path)
        log.info("policy reloaded from %s", path or DEFAULT_POLICY)
    except PolicyError as exc:
        log.error("policy not reloaded, keeping the old one: %s", exc)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="linkbrokerd",
        description="The linkbroker daemon: owns the network links of every zone (network "
        "namespace) and answers io.linkbroker over Varlink on a Unix socket, each caller as "
        "seen from its own zone.",
        epilog="Example: linkbrokerd --socket /run/linkbroker/broker.sock "
        "--state-dir /var/lib/linkbroker",
    )
    parser.add_argument("--socket", default=DEFAULT_SOCKET,
                        help=f"where to listen (default {DEFAULT_SOCKET})")
    parser.add_argument("--state-dir", default=DEFAULT_STATE_DIR,
                        help=f"SQLite state directory (default {DEFAULT_STATE_DIR})")
    parser.add_argument("--policy", default=None,
                        help=f"policy file (default {DEFAULT_POLICY} if it exists)")
    parser.add_argument("--event-queue-limit", type=int, default=1024, metavar="N",
                        help="events a subscriber may fall behind before it is cut off "
                        "(default 1024)")
    parser.add_argument("--max-connections", type=int, default=1024, metavar="N",
                        help="connections at once, all zones together (default 1024)")
    parser.add_argument("--max-connections-per-zone", type=int, default=128, metavar="N",
                        help="connections at once from one zone (default 128), so one zone's "
                        "flood cannot take every slot")
    parser.add_argument("--idle-timeout", type=float, default=600.0, metavar="SECONDS",
                        help="close a connection that sends nothing for this long "
                        "(default 600; subscriptions are exempt)")
    parser.add_argument("--keep-capabilities", action="store_true",
                        help="do not drop capabilities at start (debugging only)")
    parser.add_argument("--log-level", default="INFO",
                        choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level, stream=sys.stderr,
                        format="linkbrokerd: %(levelname)s %(message)s")
    try:
        limits = Limits(max_connections=args.max_connections,
                        max_connections_per_zone=args.max_connections_per_zone,
                        idle_timeout=args.idle_timeout)
        return asyncio.run(run(args.socket, args.state_dir, args.policy,
                               event_queue_limit=args.event_queue_limit, limits=limits,
                               keep_capabilities=args.keep_capabilities))
    except PolicyError as exc:
        print(f"linkbrokerd: {exc}", file=sys.stderr)
        return 2
    except RuntimeError as exc:
        print(f"linkbrokerd: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
