"""One small module per link class, behind the one `LinkKind` interface (netavark's drivers).

`KINDS` is the registry: the service picks a kind by class name and never branches on classes
itself. A class the kernel lacks is found out by the kernel (EOPNOTSUPP) and reported as
`Unsupported`. `phys` and `other` are adopted from the kernel, never created.
"""

from broker.kinds._base import CreateRequest, LinkKind, Resolved, classify
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

__all__ = ["KINDS", "CreateRequest", "LinkKind", "Resolved", "classify"]

KINDS: dict[str, LinkKind] = {
    kind.cls: kind for kind in (
        Veth(), Bridge(), Macvlan(), Macvtap(), Vxlan(), Tap(), Vlan(), Ipvlan(), Bond(),
        Dummy(), Gre(), Ipip(), Wireguard(), Geneve(), Phys(), Other(),
    )
}
