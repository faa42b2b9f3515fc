"""linkadm show-linkprop, reset-linkprop and set-linkprop -p: dladm's property verbs.

show-linkprop prints dladm's columns, LINK PROPERTY PERM VALUE DEFAULT POSSIBLE, with dladm's
options: `-p PROP,...` picks properties, `-c` prints them parseable (colon-separated, no
header; needs `-o`), `-o FIELD,...` picks columns. set-linkprop takes `-p k=v,...` besides
its --mtu/--up/... options; reset-linkprop `-p k,...` puts defaults back.

The property table is the daemon's own (broker._linkprops, on the client side of
tests/unit/test_layers.py): linkadm parses `-p k=v` and names a refused property with the very
table the broker answers from, so the two cannot disagree. It is pure (it imports only
broker._types), so importing it loads nothing of the daemon.
"""

from __future__ import annotations

import argparse
from typing import Any

from broker._linkprops import PROPERTIES, RESETTABLE, applies, parameter
from broker.client import Client, InvalidParameter
from clients.linkadm import output as out
from clients.linkadm.addr import AddVerb

__all__ = ["PROP_FIELDS", "add_verbs", "settings"]

PROP_FIELDS = ("link", "property", "perm", "value", "default", "possible")
_WRITABLE = tuple(p.name for p in PROPERTIES if p.writable)

EXAMPLES = """\
examples:
  linkadm show-linkprop eth0                 every property of eth0
  linkadm show-linkprop -p mtu,state eth0    those two
  linkadm show-linkprop -c -o property,value -p mtu eth0
  linkadm set-linkprop -p mtu=1400,txqueuelen=500,alias=uplink eth0
  linkadm reset-linkprop -p mtu,alias eth0
"""


def _names(text: str | None) -> list[str] | None:
    return None if text is None else [n.strip() for n in text.split(",") if n.strip()]


def settings(text: str) -> dict[str, Any]:
    """`-p k=v,...` as SetLinkProperties parameters; a bad one is a UsageError naming it."""
    found: dict[str, Any] = {}
    for item in (i for i in text.split(",") if i.strip()):
        key, eq, value = item.partition("=")
        key = key.strip()
        if not eq or key not in _WRITABLE:
            raise out.UsageError(f"-p wants PROPERTY=VALUE with a property among "
                                 f"{', '.join(_WRITABLE)}; got {item!r}")
        try:
            param, parsed = parameter(key, value)
            found[param] = parsed
        except ValueError as exc:
            raise out.UsageError(f"-p {key}={value}: {exc}") from None
    return found


def _explain(c: Client, a: argparse.Namespace, names: list[str] | None,
             allowed: frozenset[str] | None = None) -> None:
    """After the broker's InvalidParameter("properties"): name the property the link's
    class does not have, and list the ones it has (one more call, on this path only)."""
    if not names:
        return
    cls = c.get_link(a.link, a.zone).class_
    have = [p.name for p in PROPERTIES if applies(p.name, cls) is not None
            and (allowed is None or p.name in allowed)]
    bad = [n for n in names if n not in have]
    if bad:
        raise out.UsageError(f"{', '.join(bad)}: no such property of a {cls} link "
                             f"(it has: {', '.join(have)})")


def cmd_show_linkprop(c: Client, a: argparse.Namespace) -> None:
    try:
        rows = c.link_properties(a.link, a.zone, properties=_names(a.prop))
    except InvalidParameter as exc:
        if exc.parameter == "properties":
            _explain(c, a, _names(a.prop))
        raise
    # dladm's "--" for an empty cell (no alias, no bridge); JSON keeps the contract's "".
    dicts = [{f: getattr(r, f) or "--" for f in PROP_FIELDS} for r in rows]
    out.show(dicts, rows, a, PROP_FIELDS, PROP_FIELDS)


def cmd_reset_linkprop(c: Client, a: argparse.Namespace) -> None:
    try:
        link = c.reset_link_properties(a.link, _names(a.prop) or [], a.zone)
    except InvalidParameter as exc:
        if exc.parameter == "properties":
            _explain(c, a, _names(a.prop), RESETTABLE)
        raise
    if a.json:
        out.print_json(link)


def add_verbs(add: AddVerb) -> None:
    """Register show-linkprop and reset-linkprop on linkadm's subcommands."""
    p = add("show-linkprop", cmd_show_linkprop,
            "show link properties (columns LINK PROPERTY PERM VALUE DEFAULT POSSIBLE)")
    p.epilog = EXAMPLES
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.add_argument("link")
    p.add_argument("-z", "--zone", help="the link's zone (global zone only)")
    p.add_argument("-p", "--prop", metavar="PROP,...", help="only these properties")
    p.add_argument("-c", "--parseable", action="store_true",
                   help="colon-separated fields, no header (needs -o), as dladm's -c")
    p.add_argument("-o", "--output", metavar="FIELD,...", help="fields to show, or all")

    p = add("reset-linkprop", cmd_reset_linkprop,
            f"put link properties back to their defaults ({', '.join(sorted(RESETTABLE))})")
    p.epilog = EXAMPLES
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.add_argument("link")
    p.add_argument("-z", "--zone", help="the link's zone (global zone only)")
    p.add_argument("-p", "--prop", metavar="PROP,...", required=True,
                   help="the properties to reset")
