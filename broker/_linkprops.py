"""Link properties as dladm shows them (show-linkprop): the table, pure.

One row per property a class has: its current value, its default, its possible values, and
whether the caller may set it (PERM `rw`, else `r-`). Who may set what follows the
contract's SetLinkProperties rule: the owner (and the global zone) sets everything writable;
a zone a link is lent to sets only `mtu` and `state`; nobody sets the read-only rows, which
say what the link was made as (a VLAN's ID, a vxlan's VNI, a macvlan's mode...).

Values come from the link's view (the table) and, for the few properties the table does not
keep (`txqueuelen`, `promisc`, `alias`), from the kernel, read when asked
(broker._properties). Those three are not part of a persistent link's configuration.

Shared with the clients (on the client side of tests/unit/test_layers.py): linkadm parses
`set-linkprop -p k=v` with `parameter` and names a refused property from `PROPERTIES`, so
the CLI and the broker read one table and cannot disagree. That is why this stays pure and
imports nothing but broker._types: a client importing it loads nothing of the daemon.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from broker._types import Link, LinkProperty

__all__ = ["PROPERTIES", "RESETTABLE", "Prop", "applies", "parameter", "rows"]

# Classes that can be a bridge's (or bond's) port.
_PORTS = frozenset({"phys", "veth", "tap", "macvlan", "macvtap", "vxlan", "vlan", "ipvlan",
                    "bond", "dummy", "gre", "ipip", "wireguard", "geneve", "other"})


@dataclass(frozen=True, slots=True)
class Prop:
    name: str
    possible: str
    default: str = "--"  # "--": none the broker can restore
    classes: frozenset[str] | None = None  # None: every class
    writable: bool = True
    borrower: bool = False  # a zone the link is lent to may set it too
    # Defaults that differ by class (the kernel's: a macvtap's queue is 500 long).
    by_class: tuple[tuple[str, str], ...] = ()

    def default_for(self, cls: str) -> str:
        return dict(self.by_class).get(cls, self.default)

    def value(self, link: Link, kernel: Mapping[str, str]) -> str:
        if self.name in kernel:
            return kernel[self.name]
        value = getattr(link, self.name, None)
        if value is None:
            return "" if self.default == "" else "--"
        return str(value)


PROPERTIES: tuple[Prop, ...] = (
    Prop("mtu", "68-65535", "1500", borrower=True),
    Prop("state", "up,down", "down", borrower=True),
    Prop("mac", "a unicast MAC address"),
    Prop("master", "a bridge (or bond) of the link's zone, or none", "", classes=_PORTS),
    Prop("txqueuelen", "0-4294967295", "1000", by_class=(("macvtap", "500"),)),
    Prop("promisc", "on,off", "off"),
    Prop("alias", "text, up to 255 bytes", ""),
    # What the link was made as: read only.
    Prop("peer", "--", classes=frozenset({"veth"}), writable=False),
    Prop("parent", "--", classes=frozenset({"macvlan", "macvtap", "vlan", "ipvlan", "vxlan"}),
         writable=False),
    Prop("mode", "--", classes=frozenset({"macvlan", "macvtap", "ipvlan", "bond"}),
         writable=False),
    Prop("vni", "--", classes=frozenset({"vxlan", "geneve"}), writable=False),
    Prop("remote", "--", classes=frozenset({"vxlan", "geneve", "gre", "ipip"}),
         writable=False),
    Prop("local", "--", classes=frozenset({"vxlan", "gre", "ipip"}), writable=False),
    Prop("port", "--", classes=frozenset({"vxlan", "geneve"}), writable=False),
    Prop("vid", "--", classes=frozenset({"vlan"}), writable=False),
    Prop("protocol", "--", classes=frozenset({"vlan"}), writable=False),
    Prop("miimon", "--", classes=frozenset({"bond"}), writable=False),
    Prop("ttl", "--", classes=frozenset({"gre", "ipip"}), writable=False),
    Prop("kind", "--", classes=frozenset({"other"}), writable=False),
    # A phys link's, as the driver reports them (Mb/s; "--" where it reports none).
    Prop("speed", "--", classes=frozenset({"phys"}), writable=False),
    Prop("duplex", "--", classes=frozenset({"phys"}), writable=False),
)
_BY_NAME = {p.name: p for p in PROPERTIES}
# What ResetLinkProperties can put back: writable, with a default the broker knows.
RESETTABLE = frozenset(p.name for p in PROPERTIES if p.writable and p.default != "--")


def parameter(name: str, value: str) -> tuple[str, int | bool | str]:
    """A writable property's text value (as show-linkprop prints it, or a default) as the
    SetLinkProperties parameter that sets it. ValueError says what was wrong."""
    if name in ("mtu", "txqueuelen"):
        return name, int(value)
    if name in ("state", "promisc"):
        choices = ("up", "down") if name == "state" else ("on", "off")
        if value not in choices:
            raise ValueError(f"one of {', '.join(choices)}")
        return ("up" if name == "state" else name), value in ("up", "on")
    if name == "master":
        return name, "" if value in ("", "none") else value
    if name in ("mac", "alias"):
        return name, value
    raise ValueError(f"{name} is not a writable property")


def applies(name: str, cls: str) -> Prop | None:
    """The property `name` of a link of class `cls`, or None if it has no such property."""
    prop = _BY_NAME.get(name)
    if prop is None or (prop.classes is not None and cls not in prop.classes):
        return None
    return prop


def rows(link: Link, kernel: Mapping[str, str], *, owner: bool, borrower: bool,
         only: list[str] | None = None) -> list[LinkProperty]:
    """The link's properties for a caller that owns it (or is the global zone: `owner`) or
    borrows it (`borrower`); `only`: these, in this order (unknown names are the caller's
    to refuse before)."""
    names = only if only is not None else [p.name for p in PROPERTIES]
    out = []
    for name in names:
        prop = applies(name, link.class_)
        if prop is None:
            continue
        may = prop.writable and (owner or (borrower and prop.borrower))
        out.append(LinkProperty(link=link.name, property=prop.name,
                                perm="rw" if may else "r-", value=prop.value(link, kernel),
                                default=prop.default_for(link.class_),
                                possible=prop.possible))
    return out
