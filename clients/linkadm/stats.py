"""linkadm show-link -s [-i INTERVAL]: dladm's link statistics, through GetLinkStatistics.

The columns are dladm's (LINK IPACKETS RBYTES IERRORS OPACKETS OBYTES OERRORS; ZONE first in
the global zone, which sees every zone's links). With -i the totals come first, then every
INTERVAL seconds what changed since the line before, until interrupted, as dladm does.
"""

from __future__ import annotations

import argparse
import sys
import time

from broker._errors import KernelError, LinkNotFound
from broker.client import Client, LinkStatistics
from clients.linkadm import output as out

__all__ = ["STATS_FIELDS", "show_statistics"]

STATS_FIELDS = ("zone", "link", "ipackets", "rbytes", "ierrors", "idrops", "opackets",
                "obytes", "oerrors", "odrops", "multicast", "collisions")
_DEFAULT = ("link", "ipackets", "rbytes", "ierrors", "opackets", "obytes", "oerrors")
_COUNTERS = {"ipackets": "rx_packets", "rbytes": "rx_bytes", "ierrors": "rx_errors",
             "idrops": "rx_dropped", "opackets": "tx_packets", "obytes": "tx_bytes",
             "oerrors": "tx_errors", "odrops": "tx_dropped", "multicast": "multicast",
             "collisions": "collisions"}


def _row(s: LinkStatistics, before: LinkStatistics | None) -> dict[str, str]:
    row = {"zone": s.zone, "link": s.link}
    for field, attr in _COUNTERS.items():
        now = getattr(s, attr)
        row[field] = str(now - getattr(before, attr) if before is not None else now)
    return row


def _read(c: Client, a: argparse.Namespace, is_global: bool) -> list[LinkStatistics]:
    """The counters of the links asked for; a link gone (or absent) meanwhile is left out."""
    links = [c.get_link(a.link, a.zone)] if a.link else c.list_links(a.zone, a.cls)
    found = []
    for link in links:
        if link.state == "absent":
            continue
        try:
            found.append(c.link_statistics(link.name, link.zone if is_global else None))
        except (LinkNotFound, KernelError):
            if a.link:
                raise
    return found


def show_statistics(c: Client, a: argparse.Namespace) -> None:
    if a.interval is not None and a.interval <= 0:
        raise out.UsageError(f"-i needs a positive number of seconds, not {a.interval:g}")
    is_global = c.who_am_i().zone == "global"
    default = ("zone", *_DEFAULT) if is_global else _DEFAULT
    before: dict[tuple[str, int], LinkStatistics] = {}
    while True:
        stats = _read(c, a, is_global)
        rows = [_row(s, before.get((s.zone, s.link_id))) for s in stats]
        out.show(rows, stats, a, STATS_FIELDS, default)
        if a.interval is None:
            return
        sys.stdout.flush()
        before = {(s.zone, s.link_id): s for s in stats}
        time.sleep(a.interval)
