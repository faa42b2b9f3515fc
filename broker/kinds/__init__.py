"""One small module per link class, behind the one `LinkKind` interface (netavark's drivers).

`KINDS` is the registry: the service picks a kind by class name and never branches on classes
itself. A class the kernel lacks is found out by the kernel (EOPNOTSUPP) and reported as
`Unsupported`.
"""

from broker.kinds._base import CreateRequest, LinkKind, Resolved, classify
from broker.kinds.bridge import Bridge
from broker.kinds.macvlan import Macvlan, Macvtap
from broker.kinds.phys import Phys
from broker.kinds.tap import Tap
from broker.kinds.veth import Veth
from broker.kinds.vxlan import Vxlan

__all__ = ["KINDS", "CreateRequest", "LinkKind", "Resolved", "classify"]

KINDS: dict[str, LinkKind] = {
    kind.cls: kind for kind in (Veth(), Bridge(), Macvlan(), Macvtap(), Vxlan(), Tap(), Phys())
}
