"""linkadm's output: dladm's tables, `-p -o FIELD,...` lines for scripts and `--json`, for
every show verb (links and zones here; addresses and routes in addr).

Parseable lines escape `:` inside a value as dladm does, so `IFS=:` splits them safely.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

import msgspec

from broker.client import Link, Zone

__all__ = ["DEFAULT_LINK_FIELDS", "DEFAULT_ZONE_FIELDS", "LINK_FIELDS", "ZONE_FIELDS",
           "UsageError", "link_row", "print_json", "show", "zone_row"]

LINK_FIELDS = ("link", "class", "zone", "owner", "state", "mtu", "over", "id", "onloan",
               "persistent", "mac", "peer", "master", "ifindex", "kind")
DEFAULT_LINK_FIELDS = ("link", "class", "zone", "owner", "state", "mtu", "over")
ZONE_FIELDS = ("zone", "kind", "netns", "attached", "links", "inode", "pid", "container",
               "cni")
DEFAULT_ZONE_FIELDS = ("zone", "kind", "netns", "attached", "cni", "links")


class UsageError(Exception):
    """A command line the parser took but that cannot mean anything (exit 2)."""


def link_row(link: Link) -> dict[str, str]:
    over = link.parent or link.peer or ""
    return {
        "link": link.name, "class": link.class_, "zone": link.zone, "owner": link.owner,
        "state": link.state, "mtu": "" if link.mtu is None else str(link.mtu), "over": over,
        "id": str(link.id), "onloan": "yes" if link.onloan else "no",
        "persistent": "yes" if link.persistent else "no", "mac": link.mac or "",
        "peer": link.peer or "", "master": link.master or "",
        "ifindex": "" if link.ifindex is None else str(link.ifindex),
        "kind": link.kind or "",  # the kernel kind of a link of class other
    }


def zone_row(zone: Zone) -> dict[str, str]:
    return {
        "zone": zone.name, "kind": zone.kind,
        "netns": zone.netns or (str(zone.pid) if zone.pid else "") or (zone.container or "")[:12],
        "attached": "yes" if zone.attached else "no", "links": ",".join(zone.links),
        "inode": str(zone.netns_inode), "pid": "" if zone.pid is None else str(zone.pid),
        "container": zone.container or "",
        # The runtime's container (linkbroker-cni), shortened as container IDs usually are.
        "cni": (zone.cni_container or "")[:12],
    }


def fields(spec: str | None, allowed: Sequence[str], default: Sequence[str]) -> list[str]:
    if not spec:
        return list(default)
    if spec == "all":
        return list(allowed)
    chosen = [f.strip().lower() for f in spec.split(",") if f.strip()]
    for f in chosen:
        if f not in allowed:
            raise UsageError(f"unknown field {f!r}; fields are: {', '.join(allowed)}")
    return chosen


def table(rows: list[dict[str, str]], fields: list[str], parseable: bool) -> str:
    if parseable:
        return "".join(":".join(r[f].replace(":", "\\:") for f in fields) + "\n" for r in rows)
    header = [f.upper() for f in fields]
    widths = [max([len(h)] + [len(r[f]) for r in rows]) for h, f in zip(header, fields,
                                                                        strict=True)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip()]
    for r in rows:
        lines.append("  ".join(r[f].ljust(w) for f, w in zip(fields, widths,
                                                             strict=True)).rstrip())
    return "\n".join(lines) + "\n"


def print_json(value: Any) -> None:
    sys.stdout.write(msgspec.json.format(msgspec.json.encode(value), indent=2).decode() + "\n")


def show(rows: list[dict[str, str]], objects: Any, args: argparse.Namespace,
         allowed: Sequence[str], default: Sequence[str]) -> None:
    if args.json:
        print_json(objects)
        return
    if args.parseable and not args.output:
        raise UsageError(f"-p needs -o FIELD,... (e.g. -p -o {','.join(default[:2])})")
    sys.stdout.write(table(rows, fields(args.output, allowed, default), args.parseable))
