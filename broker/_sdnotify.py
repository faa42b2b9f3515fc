"""sd_notify(3): tell the service manager when the broker is ready, reloading, stopping, alive.

Why: with Type=notify, systemd (and so `systemctl start`, and units ordered After= the broker)
waits for READY=1, which the broker sends only after start-up reconciliation and re-attach;
until then zones' clients wait in the socket's backlog instead of talking to a half-loaded
broker. The protocol is one datagram per message to the AF_UNIX socket named by
$NOTIFY_SOCKET (a path, or `@name` for the abstract namespace); without that variable every
call is a no-op, so the daemon runs the same by hand. A lost datagram is logged, never fatal.

The watchdog: with WatchdogSec= systemd sets $WATCHDOG_USEC (and $WATCHDOG_PID, which must be
ours) and restarts a service that stays silent that long; we ping at half the interval from the
event loop, so a wedged loop stops the pings and gets the broker restarted.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time

__all__ = ["Notifier"]

log = logging.getLogger("linkbroker.notify")


class Notifier:
    def __init__(self, environ: dict[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        self.address: str | None = None
        self._sock: socket.socket | None = None
        path = env.get("NOTIFY_SOCKET")
        if path and (path.startswith("/") or path.startswith("@")):
            self.address = "\0" + path[1:] if path.startswith("@") else path
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        self.watchdog_usec = 0
        usec, pid = env.get("WATCHDOG_USEC"), env.get("WATCHDOG_PID")
        if usec and usec.isdigit() and (pid is None or pid == str(os.getpid())):
            self.watchdog_usec = int(usec)
        # Not for the helpers we spawn: a helper's datagram would speak for the broker.
        for name in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"):
            env.pop(name, None)

    @property
    def enabled(self) -> bool:
        return self._sock is not None

    def notify(self, *fields: str) -> bool:
        """Send `KEY=value` fields as one datagram; False if none was sent."""
        if self._sock is None or self.address is None:
            return False
        try:
            self._sock.sendto("\n".join(fields).encode(), self.address)
        except OSError as exc:
            log.warning("sd_notify to %s failed: %s", self.address.lstrip("\0"), exc.strerror)
            return False
        return True

    def ready(self, status: str) -> None:
        self.notify("READY=1", f"STATUS={status}")

    def status(self, status: str) -> None:
        self.notify(f"STATUS={status}")

    def reloading(self) -> None:
        # systemd 253+ wants MONOTONIC_USEC with RELOADING=1 (Type=notify-reload); older ones
        # ignore the field.
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        self.notify("RELOADING=1", f"MONOTONIC_USEC={usec}")

    def stopping(self) -> None:
        self.notify("STOPPING=1", "STATUS=stopping")

    async def watchdog(self) -> None:
        """Ping WATCHDOG=1 at half the interval until cancelled (returns at once if unset)."""
        if not self.watchdog_usec or self._sock is None:
            return
        interval = self.watchdog_usec / 2 / 1e6
        while True:
            self.notify("WATCHDOG=1")
            await asyncio.sleep(interval)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
