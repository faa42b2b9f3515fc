"""Who gets a connection, and how much broker memory a zone's connections may hold.

The rules of this module:

1. Connections are counted per booted zone, by name, when they connect: each zone has its own
   share (`max_connections_per_zone`) of `max_connections`. A zone that unshares new
   namespaces gains nothing: namespaces that are no zone share one small budget
   (`max_unregistered`) under the account `UNREGISTERED`, get a short idle timeout, and are
   closed after their first `ZoneNotRegistered` (the server's part).
2. Every refusal reads the same to a zone, `LimitExceeded("connections", its share)`, whichever
   limit it hit, so it cannot tell how many connections other zones hold; only the global zone
   is told which.
3. A zone's connections together hold at most `partial_bytes_per_zone` of unfinished frames: a
   frame may be up to MAX_FRAME, but 128 connections each holding most of one would be 128 MiB.

`Admission` is bookkeeping only (no sockets, no clock); `raise_fd_limit` is the one call that
touches the process, at start.
"""

from __future__ import annotations

import logging
import resource
from dataclasses import dataclass, field

from broker._errors import LimitExceeded
from broker._names import GLOBAL_ZONE
from broker._wire import MAX_FRAME

__all__ = ["UNREGISTERED", "Admission", "Limits", "raise_fd_limit"]

log = logging.getLogger("linkbroker.server")

UNREGISTERED = ""
"""The account of connections from namespaces that are no zone: one small shared budget."""
# Besides connections: zones' namespace fds and netlink sockets, SQLite, monitors, helpers.
_FD_HEADROOM = 4096


@dataclass(frozen=True, slots=True, kw_only=True)
class Limits:
    """Per-connection bounds, so no caller can exhaust the broker for the others."""

    max_connections: int = 1024
    max_connections_per_zone: int = 128
    max_unregistered: int = 16
    # A connection that sends no frame for this long, or whose reply cannot be written for
    # this long (a client that never reads), is closed. Subscriptions are exempt from the
    # first: they are waiting on the broker.
    idle_timeout: float = 600.0
    unregistered_idle_timeout: float = 5.0
    partial_bytes_per_zone: int = 4 * MAX_FRAME

    def idle_timeout_for(self, account: str) -> float:
        return self.unregistered_idle_timeout if account == UNREGISTERED else self.idle_timeout


@dataclass
class Admission:
    limits: Limits
    _per_zone: dict[str, int] = field(default_factory=dict)
    _partial: dict[str, int] = field(default_factory=dict)

    def admit(self, account: str, open_connections: int) -> tuple[LimitExceeded, str] | None:
        """Count a connection in, or say why not: the error to send, and which limit it hit
        (`total`, `per_zone` or `unregistered`, for the metrics)."""
        share = (self.limits.max_unregistered if account == UNREGISTERED
                 else self.limits.max_connections_per_zone)
        if open_connections > self.limits.max_connections:
            if account == GLOBAL_ZONE:  # the global zone may know what the host holds
                return LimitExceeded("connections", self.limits.max_connections), "total"
            return LimitExceeded("connections", share), "total"
        if self._per_zone.get(account, 0) >= share:
            which = "unregistered" if account == UNREGISTERED else "per_zone"
            if account == GLOBAL_ZONE:
                return LimitExceeded("connections from this zone", share), which
            return LimitExceeded("connections", share), which
        self._per_zone[account] = self._per_zone.get(account, 0) + 1
        return None

    def release(self, account: str) -> None:
        self._per_zone[account] -= 1
        if not self._per_zone[account]:
            del self._per_zone[account]

    def hold_partial(self, account: str, before: int, after: int) -> bool:
        """A connection of `account` now holds `after` bytes of an unfinished frame instead
        of `before`; False when the zone's connections together hold more than they may."""
        total = self._partial.get(account, 0) - before + after
        if total > 0:
            self._partial[account] = total
        else:
            self._partial.pop(account, None)
        return total <= self.limits.partial_bytes_per_zone


def raise_fd_limit(limits: Limits) -> int:
    """Raise RLIMIT_NOFILE's soft limit as far as the connection limits need (each connection
    holds its socket and its caller's namespace): at the usual soft 1,024, EMFILE would break
    accepting and identifying callers long before `max_connections`. Returns the new limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 2 * limits.max_connections + _FD_HEADROOM
    if hard != resource.RLIM_INFINITY:
        want = min(want, hard)
    if want > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
        soft = want
    if soft < 2 * limits.max_connections + _FD_HEADROOM:
        log.warning("RLIMIT_NOFILE is %d: fewer than --max-connections %d need", soft,
                    limits.max_connections)
    return soft
