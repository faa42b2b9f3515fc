"""linkadm: dladm's verbs for linkbroker, run unchanged in any zone.

It finds the broker's socket from --socket, then $LINKBROKER_SOCKET, then
/run/linkbroker/broker.sock, and shows what the broker lets the caller's zone see.
Run it as `linkadm` (the console script) or `python3 -m clients.linkadm`.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any, get_args

import msgspec

from broker._types import CreatableClass
from broker._version import version
from broker.client import (
    BrokerUnreachable,
    Client,
    HaltIncomplete,
    InvalidName,
    InvalidParameter,
    KernelError,
    LimitExceeded,
    Link,
    LinkbrokerError,
    LinkExists,
    LinkNotFound,
    LinkSpec,
    NotOwner,
    PermissionDenied,
    Unsupported,
    ZoneExists,
    ZoneNotFound,
    ZoneNotRegistered,
    default_socket,
)
from clients.linkadm import addr, exits, props, stats, topology
from clients.linkadm import output as out

__all__ = ["main"]

EXAMPLES = """\
examples:
  linkadm show-link                         every link this zone can see
  linkadm show-link -p -o link,class,zone   parseable: fields colon-separated, no header
  linkadm show-link --json eth0             one link as the contract's JSON object
  linkadm show-link -s -i 1 eth0            eth0's traffic and errors, every second
  linkadm create-link veth0 --class veth --peer veth1
  linkadm create-link br0 --class bridge --up
  linkadm set-linkprop veth0 --master br0 --mtu 1400 --up
  linkadm show-linkprop veth0               LINK PROPERTY PERM VALUE DEFAULT POSSIBLE
  linkadm set-linkprop -p txqueuelen=500,alias=web veth0
  linkadm create-link net0 --class veth --uplink lab0 --up
                                            a port on the host's bridge lab0, if the
                                            policy's [bridges] attachable lists this zone
  linkadm rename-link veth0 uplink0
  linkadm delete-link br0
  linkadm watch --json                      events for this zone as they happen
  linkadm watch --table                     a live table of the links, redrawn per event
  linkadm show-topology                     a tree of the zones and links this zone sees
  linkadm show-topology -o net.png          a picture (Graphviz; svg and dot too)
from the global zone only:
  linkadm boot-zone red --netns red         a /run/netns name (or --pid PID, --container ID)
  linkadm create-link vred0 --class veth --peer eth0 --peer-zone red
  linkadm assign-link vblue0 blue           lend a host link to zone blue
  linkadm reclaim-link vblue0
  linkadm halt-zone red
"""


def cmd_show_link(c: Client, a: argparse.Namespace) -> None:
    if a.statistics:
        stats.show_statistics(c, a)
        return
    if a.interval is not None:
        raise out.UsageError("-i goes with -s (statistics every INTERVAL seconds)")
    links = [c.get_link(a.link, a.zone)] if a.link else c.list_links(a.zone, a.cls)
    out.show([out.link_row(link) for link in links], links, a, out.LINK_FIELDS,
             out.DEFAULT_LINK_FIELDS)


def cmd_show_zone(c: Client, a: argparse.Namespace) -> None:
    zones = [c.get_zone(a.zone)] if a.zone else c.list_zones()
    out.show([out.zone_row(z) for z in zones], zones, a, out.ZONE_FIELDS,
             out.DEFAULT_ZONE_FIELDS)


def _print_link(link: Link, a: argparse.Namespace) -> None:
    if a.json:
        out.print_json(link)


def cmd_create_link(c: Client, a: argparse.Namespace) -> None:
    spec = LinkSpec(
        name=a.link, class_=a.cls, zone=a.zone, persistent=a.persistent or None, mtu=a.mtu,
        mac=a.mac, up=a.up or None, peer=a.peer, peer_zone=a.peer_zone, parent=a.parent,
        mode=a.mode, vni=a.vni, remote=a.remote, local=a.local, port=a.port, master=a.master,
        uplink=a.uplink, vid=a.vid, protocol=a.protocol, miimon=a.miimon, ttl=a.ttl,
    )
    _print_link(c.create_link(spec), a)


def cmd_delete_link(c: Client, a: argparse.Namespace) -> None:
    c.delete_link(a.link, a.zone, temporary=a.temporary or None,
                  persistent=a.persistent or None)


def cmd_rename_link(c: Client, a: argparse.Namespace) -> None:
    _print_link(c.rename_link(a.link, a.new_name, a.zone), a)


def cmd_set_linkprop(c: Client, a: argparse.Namespace) -> None:
    up = True if a.up else (False if a.down else None)
    master = "" if a.nomaster else a.master
    given: dict[str, Any] = {"mtu": a.mtu, "mac": a.mac, "up": up, "master": master,
                             "temporary": a.temporary or None}
    given.update(props.settings(a.prop or ""))  # -p k=v,... (dladm's form)
    _print_link(c.set_link_properties(a.link, a.zone, **given), a)


def cmd_assign_link(c: Client, a: argparse.Namespace) -> None:
    _print_link(c.assign_link(a.link, a.target_zone, persistent=a.persistent or None), a)


def cmd_reclaim_link(c: Client, a: argparse.Namespace) -> None:
    _print_link(c.reclaim_link(a.link, a.zone), a)


def cmd_boot_zone(c: Client, a: argparse.Namespace) -> None:
    zone = c.boot_zone(a.name, netns=a.netns, pid=a.pid, container=a.container,
                       attach=False if a.no_attach else None)
    if a.json:
        out.print_json(zone)


def cmd_halt_zone(c: Client, a: argparse.Namespace) -> None:
    c.halt_zone(a.name)


def cmd_whoami(c: Client, a: argparse.Namespace) -> None:
    me = c.who_am_i()
    if a.json:
        out.print_json(me)
        return
    print(f"zone {me.zone}  uid {me.uid}  gid {me.gid}  pid {me.pid}")
    print(f"authorizations: {', '.join(me.authorizations)}")


def cmd_watch(c: Client, a: argparse.Namespace) -> None:
    for event in c.subscribe(a.zone):
        if a.json:
            print(json.dumps(msgspec.to_builtins(event)), flush=True)
            continue
        link = event.link
        what = f" {link.name} ({link.class_})" if link else ""
        old = f" (was {event.old_name})" if event.old_name else ""
        print(f"{event.seq:>6} {event.kind:<15} zone {event.zone}{what}{old}", flush=True)


def describe(err: LinkbrokerError) -> str:
    """One line naming what was wrong, in the user's terms."""
    if (line := addr.describe(err)) is not None:
        return line
    match err:
        case LinkNotFound(name=n):
            return f"link {n!r} not found"
        case LinkExists(name=n):
            return f"a link named {n!r} already exists there"
        case ZoneNotFound(name=n):
            return f"zone {n!r} not found"
        case ZoneExists(name=n):
            return f"zone {n!r} is already booted (or its namespace is that zone's)"
        case ZoneNotRegistered(netns_inode=i):
            return f"this network namespace (inode {i}) is not a booted zone"
        case InvalidName(name=n, reason=r):
            return f"invalid name {n!r}: {r}"
        case PermissionDenied(method=m, authorization=au):
            return f"permission denied: {m} needs the authorization {au!r}"
        case NotOwner(name=n, owner=o):
            return f"link {n!r} belongs to zone {o!r}; this zone may only set up/mtu on it"
        case Unsupported(what=w):
            return f"unsupported: {w}"
        case KernelError(errno=e, message=m):
            return f"kernel error {e}: {m}"
        case LimitExceeded(what=w, limit=lim):
            return f"limit exceeded: {w} (limit {lim})"
        case HaltIncomplete(name=n, errors=errs):
            return f"zone {n!r} halted with errors: " + "; ".join(errs)
        case InvalidParameter(parameter=p):
            return f"invalid parameter {p!r}"
    return str(err)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="linkadm",
        description="Manage network links through linkbroker, as seen from this zone. Inside "
        "a zone you see and change only that zone's links; the global zone sees all.",
        epilog=EXAMPLES + "\n" + exits.epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {version()}")
    parser.add_argument("--socket", help="broker socket (default: $LINKBROKER_SOCKET, then "
                        "/run/linkbroker/broker.sock)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, fn: Callable[[Client, argparse.Namespace], None], help_: str,
            *, output: bool = False) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_, description=help_)
        p.set_defaults(fn=fn)
        p.add_argument("--json", action="store_true", help="print JSON (the contract's objects)")
        if output:
            p.add_argument("-p", "--parseable", action="store_true",
                           help="colon-separated fields, no header (needs -o)")
            p.add_argument("-o", "--output", metavar="FIELD,...", help="fields to show, or all")
        return p

    p = add("show-link", cmd_show_link, "show links (columns LINK CLASS ZONE OWNER STATE MTU "
            "OVER)", output=True)
    p.add_argument("link", nargs="?")
    p.add_argument("-z", "--zone", help="only this zone's links (global zone only)")
    p.add_argument("--class", dest="cls", help="only links of this class")
    p.add_argument("-s", "--statistics", action="store_true",
                   help="counters instead: LINK IPACKETS RBYTES IERRORS OPACKETS OBYTES "
                   "OERRORS (-o also: zone, idrops, odrops, multicast, collisions)")
    p.add_argument("-i", "--interval", type=float, metavar="SECONDS",
                   help="with -s: the totals, then what changed every SECONDS, until Ctrl-C")

    p = add("show-zone", cmd_show_zone, "show zones (the global zone sees all)", output=True)
    p.add_argument("zone", nargs="?")

    p = add("create-link", cmd_create_link, "create a link")
    p.add_argument("link")
    classes = list(get_args(CreatableClass))
    p.add_argument("-c", "--class", dest="cls", required=True, choices=classes,
                   metavar="CLASS", help="one of " + ", ".join(classes))
    p.add_argument("-z", "--zone", help="zone to create it in (global zone only)")
    p.add_argument("--peer", help="veth: name of the other end")
    p.add_argument("--peer-zone", help="veth: zone of the other end (global zone only)")
    p.add_argument("--parent", help="macvlan/macvtap/vxlan/vlan/ipvlan: lower link")
    p.add_argument("--mode", help="macvlan/macvtap: bridge, private, vepa or passthru; "
                                  "ipvlan: l2, l3 or l3s; bond: balance-rr, active-backup, "
                                  "balance-xor, broadcast, 802.3ad, balance-tlb, balance-alb")
    p.add_argument("--vni", type=int, help="vxlan/geneve: VNI")
    p.add_argument("--remote", help="vxlan: remote or group address; geneve/gre/ipip: remote")
    p.add_argument("--local", help="vxlan/gre/ipip: local address")
    p.add_argument("--vid", type=int, help="vlan: VLAN ID (1-4094)")
    p.add_argument("--protocol", choices=["802.1q", "802.1ad"], help="vlan: tag protocol")
    p.add_argument("--miimon", type=int, help="bond: MII link monitoring interval (ms)")
    p.add_argument("--ttl", type=int, help="gre/ipip: TTL (0, the default, inherits)")
    p.add_argument("--port", type=int, help="vxlan: UDP port (default 4789)")
    p.add_argument("--master", help="bridge (in the same zone) to make it a port of")
    p.add_argument("--uplink", metavar="BRIDGE",
                   help="veth: put the other end on this bridge of the global zone (one the "
                        "policy lets this zone attach to); the broker names that end")
    p.add_argument("--mtu", type=int)
    p.add_argument("--mac")
    p.add_argument("--up", action="store_true", help="bring it up")
    lifetime = p.add_mutually_exclusive_group()
    lifetime.add_argument("-t", "--temporary", action="store_true",
                          help="the default: the link lasts until deleted or its zone halts")
    lifetime.add_argument("-P", "--persistent", action="store_true",
                          help="also save it in the configuration: re-created when its zone "
                               "boots")

    p = add("delete-link", cmd_delete_link, "delete a link this zone owns (a veth: both ends); "
            "without -t/-P, both the active link and its saved configuration")
    p.add_argument("link")
    p.add_argument("-z", "--zone", help="its zone (global zone only; a halted zone's saved "
                                        "links too)")
    only = p.add_mutually_exclusive_group()
    only.add_argument("-t", "--temporary", action="store_true",
                      help="remove the active link only; its saved configuration stays and it "
                           "comes back when its zone boots")
    only.add_argument("-P", "--persistent", action="store_true",
                      help="remove the saved configuration only; the active link stays, "
                           "temporary")

    p = add("rename-link", cmd_rename_link, "rename a link this zone owns")
    p.add_argument("link")
    p.add_argument("new_name")
    p.add_argument("-z", "--zone")

    p = add("set-linkprop", cmd_set_linkprop, "set link properties (see show-linkprop)")
    p.add_argument("link")
    p.add_argument("-z", "--zone")
    p.add_argument("-p", "--prop", metavar="PROP=VALUE,...",
                   help="mtu, state (up/down), mac, master (a bridge, or none), txqueuelen, "
                   "promisc (on/off), alias")
    p.add_argument("-t", "--temporary", action="store_true",
                   help="change the active link only: a persistent link comes back with its "
                   "configured mtu, mac, state and master (default: both change)")
    p.add_argument("--mtu", type=int)
    p.add_argument("--mac")
    state = p.add_mutually_exclusive_group()
    state.add_argument("--up", action="store_true")
    state.add_argument("--down", action="store_true")
    master = p.add_mutually_exclusive_group()
    master.add_argument("--master", help="make it a port of this bridge")
    master.add_argument("--nomaster", action="store_true", help="take it off its bridge")

    p = add("assign-link", cmd_assign_link, "lend a global-zone link to a zone (global only)")
    p.add_argument("link")
    p.add_argument("target_zone", metavar="zone")
    p.add_argument("--persistent", action="store_true",
                   help="lend it again whenever the zone boots, until reclaim-link")

    p = add("reclaim-link", cmd_reclaim_link, "take a lent link back (global only)")
    p.add_argument("link")
    p.add_argument("-z", "--zone", help="the zone holding it, if its name is lent to several")

    p = add("boot-zone", cmd_boot_zone, "register a network namespace as a zone (global only)")
    p.add_argument("name")
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--netns", help="a name under /run/netns")
    target.add_argument("--pid", type=int, help="the network namespace of this process")
    target.add_argument("--container", help="a Docker container ID or name")
    p.add_argument("--no-attach", action="store_true", help="do not attach the socket inside")

    p = add("halt-zone", cmd_halt_zone, "unregister a zone: lent links go home, its own go away")
    p.add_argument("name")

    p = add("watch", cmd_watch, "print events about this zone's links as they happen")
    p.add_argument("-z", "--zone", help="only this zone (global zone only)")
    topology.add_watch_table(p, cmd_watch)
    topology.add_show_topology(sub)
    addr.add_verbs(add)
    props.add_verbs(add)

    add("whoami", cmd_whoami, "show the zone, identity and authorizations the broker sees")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    path = default_socket(args.socket)
    try:
        with Client(path) as client:
            args.fn(client, args)
    except LinkbrokerError as exc:
        print(f"linkadm: {args.command}: {describe(exc)}", file=sys.stderr)
        return exits.REFUSED
    except topology.CommandFailed as exc:
        print(f"linkadm: {args.command}: {exc}", file=sys.stderr)
        return exc.exit_code
    except out.UsageError as exc:
        print(f"linkadm: {args.command}: {exc}", file=sys.stderr)
        return exits.USAGE
    except BrokerUnreachable as exc:
        code, line = exits.explain(exc)
        print(f"linkadm: {args.command}: {line}", file=sys.stderr)
        return code
    except KeyboardInterrupt:
        return exits.INTERRUPTED
    except BrokenPipeError:  # our stdout went away (| head): nothing left to say
        return exits.OK
    return exits.OK


if __name__ == "__main__":
    sys.exit(main())
