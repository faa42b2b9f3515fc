"""linkbrokerd: load the state, make it agree with the kernel, then open the door.

Start-up order matters. The socket is bound first (a stale one from a crashed broker is
replaced) but does not accept yet, because attaching it inside zones needs the file. Then: the
global zone, zones restored from the store whose namespaces still exist (a vanished one is
halted: its own links are gone with it), intents of requests that never replied undone,
every zone reconciled with its kernel and its socket re-attached (detaching the stale mount of
the previous broker first). Only then are calls accepted. SIGTERM and SIGINT stop accepting,
let started requests finish, and remove the socket.

Under systemd (contrib/systemd) the socket is passed in instead (broker._activation): its inode
outlives the broker, so a zone whose mount already shows it is not re-attached, and clients
that connect during a restart wait in the backlog. READY=1 goes out (broker._sdnotify) only
once calls are accepted, RELOADING=1/READY=1 around a SIGHUP policy reload, STOPPING=1 first
thing on SIGTERM.

Background tasks (zone monitors' resyncs and halts, protection rebuilds, the watchdog) belong
to one owner, broker._tasks (why not a TaskGroup: see there). Shutdown goes in this order:
stop accepting and let started requests finish (they may wait on a resync's zone lock, so
the monitors still run); then the owner cancels and awaits the zones' tasks, the host-wide
rebuilds, and last the watchdog; only then do the runtimes (sockets, namespace fds) and the
store close, so no task is left running against a closed socket or database.

Start-up's own blocking steps run off the event loop's thread, so while a slow zone holds up
start-up the loop still pings the watchdog and takes signals: zones are reopened, and checked
for a live attach (a `stat` through the zone's root, the zone's own filesystem, which it may
make slow on purpose), on the default executor; netlink sockets are opened by awaited opener
threads (zones._ns); the attach helper process is waited for on a thread
(broker._lifecycle.attach_zone).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import socket
import stat
import sys

from broker import _create as creation
from broker import _lifecycle as lifecycle
from broker._activation import ActivationError, activated_socket
from broker._checkconfig import ConfigProblem, check_config
from broker._errors import LinkbrokerError
from broker._events import EventBus
from broker._names import GLOBAL_ZONE
from broker._netlink import ZoneNetlink
from broker._policy_file import PolicyError, load_policy
from broker._privileges import drop_capabilities
from broker._sdnotify import Notifier
from broker._server import Limits, Server, raise_fd_limit
from broker._service import Broker, Runtime
from broker._store import Store
from broker._table import ZoneRecord
from broker._tasks import Stage, owner
from broker._version import version
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
        await ZoneNetlink.opened(None),
    )

    reopened: list[tuple[ZoneRecord, ZoneHandle]] = []
    for zone in loaded.zones:
        try:
            reopened.append((zone, await asyncio.to_thread(_reopen, zone)))
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
        broker.runtimes[zone.name] = Runtime(handle, await ZoneNetlink.opened(handle.netns_fd))

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
        for error in await creation.recreate_persistent(broker, zone.name):
            log.warning("zone %s: persistent link not re-created: %s", zone.name, error)
    for zone in list(broker.zones):  # after all dumps: no zone resyncs what start-up did
        await lifecycle.watch(broker, zone)
    for zone, _ in reopened:
        if zone.pid is not None and zone.root is not None:
            if await asyncio.to_thread(_still_attached, zone.pid, broker.socket_path):
                log.info("zone %s: its mount already shows this socket; not re-attached",
                         zone.name)
                zone.attached = True
            else:
                zone.attached = await lifecycle.attach_zone(broker, zone)
        broker.store.put_zone(zone)


def _still_attached(pid: int, socket_path: str) -> bool:
    """Whether the zone of `pid` sees our very socket (same inode) at its socket path: true
    after a restart under socket activation, where the listening socket outlives the broker.
    Seen through /proc/PID/root, so in the zone's own mounts; the last component is not
    followed (a zone that fakes it with a symlink only fools itself out of an attach)."""
    from zones.attach import ZONE_SOCKET_PATH

    try:
        ours = os.stat(socket_path)
        theirs = os.lstat(f"/proc/{pid}/root{ZONE_SOCKET_PATH}")
    except OSError:
        return False
    return stat.S_ISSOCK(theirs.st_mode) and (theirs.st_dev, theirs.st_ino) == (
        ours.st_dev, ours.st_ino)


def _status(broker: Broker) -> str:
    return f"serving {len(broker.zones)} zones, {len(broker.links)} links"


async def run(socket_path: str, state_dir: str, policy_path: str | None, *,
              event_queue_limit: int = 1024, limits: Limits | None = None,
              keep_capabilities: bool = False, passed: socket.socket | None = None,
              notifier: Notifier | None = None, metrics: str | None = None) -> int:
    notify = notifier or Notifier({})
    tasks = owner()  # this loop's: the monitors and rebuilds find it there too
    if not keep_capabilities:
        log.info("capabilities now %#x (kept: net_admin, sys_admin, sys_chroot, sys_ptrace, "
                 "dac_override, dac_read_search, fowner)", drop_capabilities())
    policy = load_policy(policy_path)
    store = Store(state_dir)
    broker = Broker(store=store, socket_path=socket_path, policy=policy,
                    events=EventBus(event_queue_limit))
    server = Server(broker, socket_path, limits or Limits(), version=version())
    endpoint = None
    if metrics is not None:
        from broker._metrics import Metrics, MetricsEndpoint

        server.observer = observer = Metrics(broker, lambda: len(server._conns))
        endpoint = MetricsEndpoint(observer, metrics)
    log.info("file descriptors: up to %d", raise_fd_limit(server.limits))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def stopping() -> None:
        notify.stopping()
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping)
    loop.add_signal_handler(signal.SIGHUP, _reload, broker, policy_path, notify)
    # Pinging from the start: systemd's watchdog runs during start-up too, which can be long
    # with many zones to reconcile.
    tasks.spawn(notify.watchdog(), name="watchdog", stage=Stage.DAEMON)
    try:
        await server.bind(passed)
        if endpoint is not None:
            await endpoint.start()
        await restore(broker)
        await server.start()
        log.info("ready on %s%s (state %s, %d zones, %d links)", socket_path,
                 " (passed by the supervisor)" if passed else "", store.path,
                 len(broker.zones), len(broker.links))
        notify.ready(_status(broker))
        while not stop.is_set():  # STATUS= kept current for `systemctl status`
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 10.0)
            if not stop.is_set():
                notify.status(_status(broker))
        log.info("shutting down")
    finally:
        try:
            if endpoint is not None:
                await endpoint.close()
            await server.close()  # started requests finish first: they may need a resync's lock
            await tasks.close()  # zones' tasks, then rebuilds, then the watchdog (Stage)
        finally:  # even if the above was cancelled: nothing of ours may outlive run()
            broker.close()
            store.close()
            notify.close()
    return 0


def _reload(broker: Broker, path: str | None, notify: Notifier) -> None:
    notify.reloading()
    try:
        broker.policy = load_policy(path)
        log.info("policy reloaded from %s", path or DEFAULT_POLICY)
    except PolicyError as exc:
        log.error("policy not reloaded, keeping the old one: %s", exc)
    notify.ready(_status(broker))


def build_parser() -> argparse.ArgumentParser:
    """The command line (also the source of the man page and shell completions)."""
    parser = argparse.ArgumentParser(
        prog="linkbrokerd",
        description="The linkbroker daemon: owns the network links of every zone (network "
        "namespace) and answers io.linkbroker over Varlink on a Unix socket, each caller as "
        "seen from its own zone.",
        epilog="Example: linkbrokerd --socket /run/linkbroker/broker.sock "
        "--state-dir /var/lib/linkbroker. Under systemd, linkbroker.socket passes the socket "
        "in (LISTEN_FDS), and the service reports readiness with sd_notify. Signals: SIGTERM "
        "or SIGINT stop, SIGHUP reloads the policy. Exit status: 0 stopped cleanly, 1 could "
        "not start, 2 bad policy, 3 bad state directory, 4 bad passed socket.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {version()}")
    parser.add_argument("--socket", default=None,
                        help=f"where to listen (default {DEFAULT_SOCKET}); ignored when "
                        "systemd passes a socket, whose own path is used")
    parser.add_argument("--state-dir", default=DEFAULT_STATE_DIR,
                        help=f"SQLite state directory (default {DEFAULT_STATE_DIR})")
    parser.add_argument("--policy", default=None,
                        help=f"policy file (default {DEFAULT_POLICY} if it exists)")
    parser.add_argument("--check-config", action="store_true",
                        help="check the policy file and the state directory, print what was "
                        "found and exit (0 good, 2 policy, 3 state); changes nothing")
    parser.add_argument("--metrics", metavar="unix:PATH|HOST:PORT", default=None,
                        help="serve Prometheus metrics over HTTP there (off by default; e.g. "
                        "unix:/run/linkbroker/metrics.sock or 127.0.0.1:9479)")
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
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level, stream=sys.stderr,
                        format="linkbrokerd: %(levelname)s %(message)s")
    if args.check_config:
        try:
            for line in check_config(args.policy, args.state_dir):
                print(f"linkbrokerd: {line}")
        except ConfigProblem as exc:
            print(f"linkbrokerd: {exc}", file=sys.stderr)
            return exc.code
        print("linkbrokerd: configuration ok")
        return 0
    if args.metrics is not None:
        from broker._metrics import parse_endpoint

        try:
            parse_endpoint(args.metrics)
        except ValueError as exc:
            print(f"linkbrokerd: {exc}", file=sys.stderr)
            return 1
    try:
        # First, before anything is spawned: the variables are for this process only.
        passed = activated_socket()
    except (ActivationError, OSError) as exc:
        print(f"linkbrokerd: socket activation: {exc}", file=sys.stderr)
        return 4
    notifier = Notifier()
    socket_path = args.socket or DEFAULT_SOCKET
    if passed is not None:
        name = passed.getsockname()
        if args.socket and args.socket != name:
            log.warning("--socket %s ignored: serving the passed socket %s", args.socket, name)
        socket_path = name
    try:
        limits = Limits(max_connections=args.max_connections,
                        max_connections_per_zone=args.max_connections_per_zone,
                        idle_timeout=args.idle_timeout)
        return asyncio.run(run(socket_path, args.state_dir, args.policy,
                               event_queue_limit=args.event_queue_limit, limits=limits,
                               keep_capabilities=args.keep_capabilities, passed=passed,
                               notifier=notifier, metrics=args.metrics))
    except PolicyError as exc:
        print(f"linkbrokerd: {exc}", file=sys.stderr)
        return 2
    except (RuntimeError, OSError) as exc:
        print(f"linkbrokerd: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
