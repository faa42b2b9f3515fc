"""Socket activation: serve the listening socket systemd (or any supervisor) passes in.

Why it matters here more than for most daemons: the broker's socket is bind-mounted into every
zone, and a bind mount pins an inode. A broker that binds its own socket makes a new inode at
every start, so until it has re-attached every zone, zones' clients get ECONNREFUSED. With the
socket held by systemd the inode never changes, zones keep their mounts across restarts and
upgrades, and a client that connects while the broker is down waits in the listen backlog.

The protocol is sd_listen_fds(3): `LISTEN_PID` is our pid (the variables were meant for us,
not inherited from a parent that was activated itself), `LISTEN_FDS` = N sockets starting at
fd 3 (SD_LISTEN_FDS_START). The variables are removed once read, so helpers we spawn do not
take the sockets for theirs, and the fds are made close-on-exec for the same reason.
"""

from __future__ import annotations

import fcntl
import os
import socket
import stat

__all__ = ["SD_LISTEN_FDS_START", "ActivationError", "activated_socket", "listen_fds"]

SD_LISTEN_FDS_START = 3
_VARIABLES = ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES")


class ActivationError(Exception):
    """Sockets were passed but cannot be served: the message says which and why."""


def listen_fds(environ: dict[str, str] | None = None) -> list[int]:
    """The fds passed to this process, per sd_listen_fds(3); [] when none were.

    Reads and removes the variables (from os.environ unless `environ` is given)."""
    env = os.environ if environ is None else environ
    pid, count = env.get("LISTEN_PID"), env.get("LISTEN_FDS")
    for name in _VARIABLES:
        env.pop(name, None)
    if pid is None or count is None:
        return []
    try:
        if int(pid) != os.getpid():
            return []  # meant for another process (our parent), not for us
        n = int(count)
    except ValueError:
        raise ActivationError(f"LISTEN_PID={pid!r} LISTEN_FDS={count!r} are not numbers") \
            from None
    if n < 0:
        raise ActivationError(f"LISTEN_FDS={n} is negative")
    fds = list(range(SD_LISTEN_FDS_START, SD_LISTEN_FDS_START + n))
    for fd in fds:
        try:
            flags = fcntl.fcntl(fd, fcntl.F_GETFD)
        except OSError:
            raise ActivationError(f"LISTEN_FDS={n} but fd {fd} is not open") from None
        fcntl.fcntl(fd, fcntl.F_SETFD, flags | fcntl.FD_CLOEXEC)
    return fds


def activated_socket(environ: dict[str, str] | None = None) -> socket.socket | None:
    """The one passed socket, checked to be a listening AF_UNIX stream socket bound to a path
    in the file system (zones bind-mount that file); None when nothing was passed."""
    fds = listen_fds(environ)
    if not fds:
        return None
    if len(fds) != 1:
        raise ActivationError(f"{len(fds)} sockets passed; linkbrokerd serves exactly one "
                              "(one ListenStream= in linkbroker.socket)")
    fd = fds[0]
    if not stat.S_ISSOCK(os.fstat(fd).st_mode):
        raise ActivationError(f"fd {fd} passed by the supervisor is not a socket")
    sock = socket.socket(fileno=fd)
    try:
        if sock.family != socket.AF_UNIX or sock.type != socket.SOCK_STREAM:
            raise ActivationError(f"fd {fd} is not an AF_UNIX stream socket (family "
                                  f"{sock.family!r}, type {sock.type!r}): use ListenStream= "
                                  "with an absolute path")
        if not sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
            raise ActivationError(f"fd {fd} is not listening (Accept=no and ListenStream= "
                                  "make a listening socket)")
        name = sock.getsockname()
        if not isinstance(name, str) or not name.startswith("/"):
            raise ActivationError(f"fd {fd} is bound to {name!r}, not to a file: zones "
                                  "bind-mount the socket file, so it needs a path")
    except BaseException:
        sock.detach()  # the fd stays the supervisor's business; close nothing of it here
        raise
    sock.setblocking(False)
    return sock
