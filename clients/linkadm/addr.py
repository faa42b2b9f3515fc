"""linkadm's ipadm verbs: create-addr, show-addr, delete-addr, add-route, show-route,
delete-route; and dladm's protection property: set-protection, show-protection.

They talk to the broker's address and route methods (the daemon's _addresses), so a zone with no
capability at all configures its own IP stack through the socket, as it makes its links.
Output follows linkadm's other show verbs: a table, `-p -o FIELD,...` for scripts, `--json`
for the contract's objects.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any, Protocol

import msgspec

from broker._errors import (
    AddressExists,
    AddressNotFound,
    InvalidAddress,
    LinkbrokerError,
    RouteExists,
    RouteNotFound,
)
from broker._types import Address, Protection, Route
from broker.client import Client
from clients.linkadm import output as out

__all__ = ["ADDR_FIELDS", "ROUTE_FIELDS", "add_verbs", "describe"]

ADDR_FIELDS = ("link", "address", "family", "persistent", "zone", "id")
DEFAULT_ADDR_FIELDS = ("link", "address", "family", "persistent")
ROUTE_FIELDS = ("destination", "gateway", "link", "metric", "protocol", "persistent",
                "family", "zone")
DEFAULT_ROUTE_FIELDS = ("destination", "gateway", "link", "metric", "protocol", "persistent")

EXAMPLES = """\
examples:
  linkadm create-addr -a 198.51.100.2/24 net0 --persistent
  linkadm show-addr                         every address on this zone's links
  linkadm show-addr -p -o link,address net0
  linkadm delete-addr -a 198.51.100.2/24 net0
  linkadm add-route default 198.51.100.1    a default route through a gateway
  linkadm add-route 203.0.113.0/24 --link net0 --metric 10
  linkadm show-route --json
  linkadm delete-route default 198.51.100.1
  linkadm set-protection -z red net0 -P mac-nospoof,ip-nospoof -a 198.51.100.2/32
                                            (global zone) what the host lets through
"""

Verb = Callable[[Client, argparse.Namespace], None]


class AddVerb(Protocol):
    """linkadm's `add` helper of build_parser: a subcommand with --json (and -p -o)."""

    def __call__(self, name: str, fn: Verb, help_: str, *,
                 output: bool = False) -> argparse.ArgumentParser: ...


def _call(c: Client, method: str, **params: Any) -> dict[str, Any]:
    return c.conn.call(f"io.linkbroker.{method}",
                       {k: v for k, v in params.items() if v is not None})


def _addr_row(x: Address) -> dict[str, str]:
    return {"link": x.link, "address": x.address, "family": x.family,
            "persistent": "yes" if x.persistent else "no", "zone": x.zone,
            "id": str(x.link_id)}


def _route_row(r: Route) -> dict[str, str]:
    default = r.destination in ("0.0.0.0/0", "::/0")
    return {"destination": "default" if default else r.destination,
            "gateway": r.gateway or "", "link": r.link or "",
            "metric": "" if r.metric is None else str(r.metric), "protocol": r.protocol,
            "persistent": "yes" if r.persistent else "no", "family": r.family,
            "zone": r.zone}


def cmd_create_addr(c: Client, a: argparse.Namespace) -> None:
    reply = _call(c, "AddAddress", link=a.link, address=a.address, zone=a.zone,
                  persistent=a.persistent or None)
    if a.json:
        out.print_json(msgspec.convert(reply["address"], Address))


def cmd_show_addr(c: Client, a: argparse.Namespace) -> None:
    found = msgspec.convert(_call(c, "ListAddresses", link=a.link, zone=a.zone)["addresses"],
                            list[Address])
    out.show([_addr_row(x) for x in found], found, a, ADDR_FIELDS, DEFAULT_ADDR_FIELDS)


def cmd_delete_addr(c: Client, a: argparse.Namespace) -> None:
    _call(c, "RemoveAddress", link=a.link, address=a.address, zone=a.zone)


def cmd_add_route(c: Client, a: argparse.Namespace) -> None:
    reply = _call(c, "AddRoute", destination=a.destination, gateway=a.gateway, link=a.link,
                  metric=a.metric, zone=a.zone, persistent=a.persistent or None)
    if a.json:
        out.print_json(msgspec.convert(reply["route"], Route))


def cmd_show_route(c: Client, a: argparse.Namespace) -> None:
    found = msgspec.convert(_call(c, "ListRoutes", zone=a.zone)["routes"], list[Route])
    out.show([_route_row(r) for r in found], found, a, ROUTE_FIELDS, DEFAULT_ROUTE_FIELDS)


def cmd_delete_route(c: Client, a: argparse.Namespace) -> None:
    _call(c, "RemoveRoute", destination=a.destination, gateway=a.gateway, link=a.link,
          metric=a.metric, zone=a.zone)


def cmd_set_protection(c: Client, a: argparse.Namespace) -> None:
    protection = [x for x in (a.protection or "").split(",") if x and x != "none"]
    allowed = [x for x in (a.allowed_ips or "").split(",") if x]
    reply = _call(c, "SetLinkProtection", name=a.link, zone=a.zone, protection=protection,
                  allowed_ips=allowed or None)
    if a.json:
        out.print_json(msgspec.convert(reply["protection"], Protection))


def cmd_show_protection(c: Client, a: argparse.Namespace) -> None:
    got = msgspec.convert(_call(c, "GetLinkProtection", name=a.link, zone=a.zone)[
        "protection"], Protection)
    row = {"link": got.link, "zone": got.zone,
           "protection": ",".join(got.protection) or "--",
           "allowed-ips": ",".join(got.allowed_ips) or "--", "mac": got.mac or "--"}
    out.show([row], got, a, ("link", "zone", "protection", "allowed-ips", "mac"),
             ("link", "protection", "allowed-ips"))


def describe(err: LinkbrokerError) -> str | None:
    """One line for the errors of these verbs; None for the others (linkadm's own)."""
    match err:
        case InvalidAddress(parameter=p, address=addr, reason=r):
            return f"invalid {p} {addr!r}: {r}"
        case AddressExists(address=addr):
            return f"the link already has the address {addr}"
        case AddressNotFound(address=addr):
            return f"the link has no address {addr}"
        case RouteExists(destination=d):
            return f"a route to {d} already exists"
        case RouteNotFound(destination=d):
            return f"no route to {d} matches"
    return None


def add_verbs(add: AddVerb) -> None:
    """Register the verbs on linkadm's subcommands."""
    p = add("create-addr", cmd_create_addr, "put an IP address on a link of this zone",
            )
    p.epilog = EXAMPLES
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.add_argument("link")
    p.add_argument("-a", "--address", required=True, metavar="ADDR/PREFIX",
                   help="e.g. 198.51.100.2/24 or 2001:db8::2/64")
    p.add_argument("-z", "--zone", help="the link's zone (global zone only)")
    p.add_argument("--persistent", action="store_true",
                   help="put it back whenever the link comes back")

    p = add("show-addr", cmd_show_addr, "show IP addresses (columns LINK ADDRESS FAMILY "
            "PERSISTENT)", output=True)
    p.add_argument("link", nargs="?")
    p.add_argument("-z", "--zone", help="only this zone (global zone only)")

    p = add("delete-addr", cmd_delete_addr, "take an IP address off a link")
    p.add_argument("link")
    p.add_argument("-a", "--address", required=True, metavar="ADDR/PREFIX")
    p.add_argument("-z", "--zone", help="the link's zone (global zone only)")

    for name, fn, help_ in (("add-route", cmd_add_route, "add a route to this zone"),
                            ("delete-route", cmd_delete_route, "delete a route")):
        p = add(name, fn, help_)
        p.add_argument("destination", help="default, a network A/N, or a host address")
        p.add_argument("gateway", nargs="?", help="the next hop")
        p.add_argument("--link", help="the outgoing link")
        p.add_argument("--metric", type=int)
        p.add_argument("-z", "--zone", help="the zone (global zone only)")
        if fn is cmd_add_route:
            p.add_argument("--persistent", action="store_true",
                           help="put it back whenever the zone boots or its link comes back")

    p = add("show-route", cmd_show_route, "show the zone's routes (main table)", output=True)
    p.add_argument("-z", "--zone", help="the zone (global zone only)")

    p = add("set-protection", cmd_set_protection, "set what the host lets through from a "
            "zone's veth (needs link.protect: the global zone by default)")
    p.add_argument("link")
    p.add_argument("-z", "--zone", help="the link's zone")
    p.add_argument("-P", "--protection", required=True, metavar="P,...",
                   help="mac-nospoof, ip-nospoof, restricted, comma-separated; none clears")
    p.add_argument("-a", "--allowed-ips", metavar="A/N,...",
                   help="ip-nospoof: the networks the zone may send from")

    p = add("show-protection", cmd_show_protection, "show a link's protection", output=True)
    p.add_argument("link")
    p.add_argument("-z", "--zone", help="the link's zone (global zone only)")
