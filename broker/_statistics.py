"""Link statistics (dladm show-link -s): GetLinkStatistics, read from the kernel when asked.

The lean link dump leaves statistics out (RTEXT_FILTER_SKIP_STATS: most of a dump's bytes);
this is the one place that asks for them, one RTM_GETLINK for one link, on the zone's own
netlink socket. A caller sees the counters of a link where the link is: any link living in
its zone (its own and those lent to it); the global zone those of any zone's links (`zone`).
A link elsewhere answers as a missing one (`_rules.find_link_by`, by name or ID): counters
are traffic, and a zone learns nothing of another's.
"""

from __future__ import annotations

import errno
import struct
from collections.abc import Iterable

from broker._errors import KernelError
from broker._linkdump import newlink_attrs
from broker._params import (
    GetLinkStatisticsParams,
)
from broker._rtnl import get_message
from broker._rules import find_link_by
from broker._types import (
    LinkStatistics,
    LinkStatisticsReply,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from broker._service import Broker, Caller

__all__ = ["get_link_statistics", "statistics_in"]

IFLA_STATS64 = 23
# struct rtnl_link_stats64, its first ten counters (the kernel sends more; older fields first).
_STATS64 = struct.Struct("=10Q")
_FIELDS = ("rx_packets", "tx_packets", "rx_bytes", "tx_bytes", "rx_errors", "tx_errors",
           "rx_dropped", "tx_dropped", "multicast", "collisions")


def statistics_in(replies: Iterable[bytes]) -> dict[str, int] | None:
    """The IFLA_STATS64 counters of the first RTM_NEWLINK among `replies` (None: none sent)."""
    for msg in replies:
        found = newlink_attrs(msg)
        if found is None:
            continue
        raw = found[1].get(IFLA_STATS64)
        if raw is None or len(raw) < _STATS64.size:
            return None
        return dict(zip(_FIELDS, _STATS64.unpack_from(raw), strict=True))
    return None


async def get_link_statistics(broker: Broker, caller: Caller, p: GetLinkStatisticsParams
                              ) -> LinkStatisticsReply:
    link = find_link_by(caller.zone, p.name, p.zone, broker.links, broker.zones, link_id=p.id)
    rt = broker.runtimes.get(link.zone)
    if not link.present or link.ifindex is None or rt is None:
        raise KernelError(errno.ENODEV, f"link {link.name} is absent from the kernel")
    ifindex = link.ifindex
    counters = statistics_in(await rt.netlink.request(
        lambda seq: get_message(seq, index=ifindex, stats=True),
        f"read the statistics of {link.name}"))
    if counters is None:
        raise KernelError(errno.EIO, f"the kernel sent no statistics for {link.name}")
    return LinkStatisticsReply(statistics=LinkStatistics(
        link=link.name, link_id=link.id, zone=link.zone, **counters))
