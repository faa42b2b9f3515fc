"""One small module per link class, behind the one `LinkKind` interface (netavark's drivers).

`KINDS` is the registry by class name: the service validates a spec and builds its kernel
request through the kind it names, and each kind encodes its own IFLA_INFO_DATA.
`BY_KERNEL_KIND` is the same kinds by the kernel's kind string: the shells decode what a dump
or a notification says of a link through it (`LinkKind.decode_info`), and `classify` maps a
kernel link to its class with it; so neither encoding, decoding nor classifying branches on
kind names outside this package. A class the kernel lacks is found out by the kernel
(EOPNOTSUPP) and reported as `Unsupported`. `phys` and `other` are adopted, never created.

What the service must know of a class beyond that is a trait of its kind (`LinkKind`:
`movable`, `lendable`, `paired`, `master`, `port`, `host_chardev`, `creatable`), asked as
`KINDS[link.cls].movable`: a row's class is a `LinkClass` (classify returns only KINDS' keys,
the store decodes rows against the Literal), so the lookup cannot miss. The few class names
still written in the service say why where they stand (the policy's own lists: assignable
phys links, attachable host bridges). The client-side class lists (broker._types, the pure
broker._linkprops) are static by necessity, held equal to KINDS by unit tests.
"""

from broker._types import LinkClass
from broker.kinds._base import CreateRequest, LinkKind, Resolved
from broker.kinds.bond import Bond
from broker.kinds.bridge import Bridge
from broker.kinds.dummy import Dummy
from broker.kinds.geneve import Geneve
from broker.kinds.ipvlan import Ipvlan
from broker.kinds.macvlan import Macvlan, Macvtap
from broker.kinds.other import Other
from broker.kinds.phys import Phys
from broker.kinds.tap import Tap
from broker.kinds.tunnel import Gre, Ipip
from broker.kinds.veth import Veth
from broker.kinds.vlan import Vlan
from broker.kinds.vxlan import Vxlan
from broker.kinds.wireguard import Wireguard

__all__ = ["BY_KERNEL_KIND", "KINDS", "CreateRequest", "LinkKind", "Resolved", "classify"]

KINDS: dict[str, LinkKind] = {
    kind.cls: kind for kind in (
        Veth(), Bridge(), Macvlan(), Macvtap(), Vxlan(), Tap(), Vlan(), Ipvlan(), Bond(),
        Dummy(), Gre(), Ipip(), Wireguard(), Geneve(), Phys(), Other(),
    )
}
# "tun" -> Tap, "macvlan" -> Macvlan...: every kind one kernel kind stands for.
BY_KERNEL_KIND: dict[str, LinkKind] = {
    kind.kernel_kind: kind for kind in KINDS.values() if kind.kernel_kind is not None
}


def classify(kernel_kind: str | None, tun_tap: bool = False) -> LinkClass:
    """The contract's class of a kernel link. Only a link with no kernel kind at all (a NIC's
    driver registers none) is `phys`; a kind without a module here is `other`, shown with
    its kernel kind string, so an ifb or a TUN device is never taken for (or lent as) phys."""
    if kernel_kind is None:
        return "phys"
    kind = BY_KERNEL_KIND.get(kernel_kind)
    return kind.cls if kind is not None and kind.claims(tun_tap) else "other"
