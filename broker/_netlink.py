"""The netlink shell: the only module that imports pyroute2.

One `ZoneNetlink` per zone, made once when the zone boots from a socket created inside the
zone's namespace (zones._ns: a short-lived thread, no fork) and passed explicitly to whoever
needs it. pyroute2's NetlinkError becomes KernelError (or Unsupported for EOPNOTSUPP on create)
here, at the boundary; nothing from pyroute2 escapes this module.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import os
import socket
import struct
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, TypeVar

from pyroute2 import AsyncIPRoute
from pyroute2.netlink.exceptions import NetlinkError

from broker._errors import KernelError, Unsupported
from broker._linkdump import KernelLink, dump_links
from broker._rtnl import (
    NLM_F_CREATE,
    NLM_F_ECHO,
    NLM_F_EXCL,
    RTM_DELLINK,
    RTM_NEWLINK,
    exchange,
    get_message,
    link_attrs,
    link_message,
    links_in,
    open_request_socket,
)
from broker.kinds import BY_KERNEL_KIND, CreateRequest
from broker.kinds._nla import attributes
from zones._ns import in_netns, run_in_netns

__all__ = ["KernelLink", "ZoneNetlink", "create_tap"]

_TUNSETIFF = 0x400454CA
_TUNSETPERSIST = 0x400454CB
_IFF_TAP = 0x0002
_IFF_NO_PI = 0x1000
_IFF_UP = 0x1
_T = TypeVar("_T")


@contextmanager
def kernel_errors(what: str, creating: str | None = None) -> Iterator[None]:
    try:
        yield
    except NetlinkError as exc:
        code = int(exc.code or errno.EIO)
        if creating is not None and code == errno.EOPNOTSUPP:
            raise Unsupported(f"link class {creating} (this kernel lacks it)") from None
        raise KernelError(code, f"{what}: {os.strerror(code)}") from None
    except OSError as exc:
        code = exc.errno or errno.EIO
        raise KernelError(code, f"{what}: {os.strerror(code)}") from None


def _info_data(msg: Any) -> bytes | None:
    """IFLA_INFO_DATA's payload as the kernel sent it, cut from the buffer pyroute2 parsed
    (its attribute object keeps data, offset and length); None when absent, or when
    pyroute2 kept no such object for a kind it does not know."""
    data = msg.get(("linkinfo", "data"))
    offset, length = getattr(data, "offset", None), getattr(data, "length", None)
    if not isinstance(offset, int) or not isinstance(length, int) or length < 4:
        return None
    return bytes(data.data[offset + 4:offset + length])


def _parse(msg: Any) -> KernelLink:
    """A pyroute2 link message as a KernelLink: the reference tests/test_linkdump.py holds
    the lean parser (broker._linkdump) to. The lean parser cannot stand in for it (the test
    would compare the parser with itself), so the common fields stay pyroute2's reading. The
    kind data is read by the kinds' own decoders, from the raw IFLA_INFO_DATA pyroute2 framed:
    this shell knows no kind by name, the comparison still checks where the lean parser finds
    the data and how it splits it, and the test's own asserts check the decoders against
    links iproute2 made."""
    kind = msg.get(("linkinfo", "kind"))
    driver = BY_KERNEL_KIND.get(kind) if kind is not None else None
    raw = _info_data(msg) if driver is not None else None
    data = driver.decode_info(attributes(raw)) if driver is not None and raw is not None else {}
    return KernelLink(
        ifindex=int(msg["index"]),
        name=str(msg.get("ifname")),
        kind=kind,
        mac=msg.get("address"),
        mtu=msg.get("mtu"),
        up=bool(msg["flags"] & _IFF_UP),
        master=msg.get("master"),
        link=msg.get("link"),
        link_netnsid=msg.get("link_netnsid"),
        **data,  # type: ignore[arg-type]
    )


def _netlink_sockets() -> tuple[socket.socket, socket.socket]:
    """The request socket (blocking: used on a netlink worker thread) and one for dumps."""
    dumps = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_NONBLOCK
                          | socket.SOCK_CLOEXEC, socket.NETLINK_ROUTE)
    dumps.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    return open_request_socket(), dumps


def create_tap(netns_fd: int | None, name: str) -> None:
    """Make a persistent TAP device inside the namespace (rtnetlink cannot make tun/tap).
    Blocking (an opener thread enters the namespace): call it on a netlink worker."""

    def make() -> None:
        fd = os.open("/dev/net/tun", os.O_RDWR | os.O_CLOEXEC)
        try:
            ifreq = struct.pack("16sH22x", name.encode(), _IFF_TAP | _IFF_NO_PI)
            fcntl.ioctl(fd, _TUNSETIFF, ifreq)
            fcntl.ioctl(fd, _TUNSETPERSIST, 1)
        finally:
            os.close(fd)

    with kernel_errors(f"create tap {name}", creating="tap"):
        run_in_netns(netns_fd, make)


# The threads that carry out kernel requests. rtnetlink does a request's work inside the
# sender's sendmsg() (a veth delete waits ~16 ms for synchronize_net), so requests never run
# on the event loop: each zone's requests go, one at a time, to one of these threads, and the
# loop only awaits the result. Different zones' requests run at the same time, up to the
# kernel's own rtnl lock. Threads start on demand, at most _WORKERS of them.
_WORKERS = 8
_POOL = ThreadPoolExecutor(max_workers=_WORKERS, thread_name_prefix="linkbroker-netlink")


class ZoneNetlink:
    """One zone's rtnetlink sockets and the short list of operations the broker needs.

    Every request method is a coroutine that hands the blocking exchange to a netlink
    worker thread. Per zone, requests keep their order and never overlap (`_turn`, FIFO);
    the socket itself is used under `_busy`, so even a request whose awaiting coroutine was
    cancelled finishes before the next one touches the socket (pyroute2 objects and raw
    sockets are not for two threads at once). Nothing here changes the broker's table.
    """

    def __init__(self, sock: socket.socket, dumps: socket.socket, netns_fd: int | None) -> None:
        self.netns_fd = netns_fd
        self._sock = sock
        self._busy = threading.Lock()
        self._turn = asyncio.Lock()
        self._next_seq = 0
        self._dumps = dumps
        self._dump_lock = asyncio.Lock()
        self._seq = 0

    @classmethod
    def open(cls, netns_fd: int | None) -> ZoneNetlink:
        """Open the zone's sockets; `netns_fd` None means the broker's own namespace.
        Blocks while an opener thread enters the namespace: from a coroutine use `opened`."""
        with kernel_errors("open netlink socket"):
            sock, dumps = run_in_netns(netns_fd, _netlink_sockets)
        return cls(sock, dumps, netns_fd)

    @classmethod
    async def opened(cls, netns_fd: int | None) -> ZoneNetlink:
        """`open` without holding the event loop while the opener thread works."""
        with kernel_errors("open netlink socket"):
            sock, dumps = await in_netns(netns_fd, _netlink_sockets)
        return cls(sock, dumps, netns_fd)

    def close(self) -> None:
        with self._busy:  # a request still running on a worker finishes first
            self._sock.close()
        self._dumps.close()

    # ---- the request primitive -------------------------------------------------------------

    async def run(self, job: Callable[[], _T]) -> _T:
        """Run `job` (blocking; it may call `exchange`) on a netlink worker thread, after
        this zone's earlier requests, and await its result."""
        async with self._turn:
            return await asyncio.get_running_loop().run_in_executor(_POOL, job)

    def exchange(self, build: Callable[[int], bytes], what: str) -> list[bytes]:
        """On a worker thread: send the message `build(seq)` and return the kernel's replies
        for it (broker._rtnl.exchange). KernelError when the kernel refuses."""
        with self._busy:
            self._next_seq = self._next_seq % 0x7FFFFFFF + 1
            return exchange(self._sock, build(self._next_seq), what)

    async def request(self, build: Callable[[int], bytes], what: str) -> list[bytes]:
        """One request from a coroutine: `exchange` on a worker thread."""
        return await self.run(lambda: self.exchange(build, what))

    # ---- blocking bodies (worker threads only) ---------------------------------------------

    def _get(self, name: str | None = None, index: int = 0) -> KernelLink | None:
        try:
            found = links_in(self.exchange(
                lambda seq: get_message(seq, index=index, name=name),
                f"get link {name if name is not None else f'#{index}'}"))
        except KernelError as exc:
            if exc.errno == errno.ENODEV:
                return None
            raise
        return found[0] if found else None

    def _create(self, name: str, request: CreateRequest, cls: str, target_fd: int | None
                ) -> KernelLink | None:
        if request.ioctl_tap:
            create_tap(target_fd if target_fd is not None else self.netns_fd, name)
            return self._get(name) if target_fd is None else None
        attrs = dict(request.attrs)
        if target_fd is not None:
            attrs["net_ns_fd"] = target_fd
        encoded, flags, change = link_attrs({"ifname": name, **attrs}, request.kind)
        # The kernel echoes the new link's RTM_NEWLINK to the sender (NLM_F_ECHO) when it
        # made it in the sender's namespace: ifindex, MAC and all, without a read-back. A
        # link made into another namespace is not echoed here (and must not be: the echo
        # would go to whatever socket has our port id over there).
        echo = NLM_F_ECHO if target_fd is None else 0
        try:
            replies = self.exchange(lambda seq: link_message(
                RTM_NEWLINK, seq, flags=NLM_F_CREATE | NLM_F_EXCL | echo, ifi_flags=flags,
                change=change, attrs=encoded), f"create {cls} {name}")
        except KernelError as exc:
            if exc.errno == errno.EOPNOTSUPP:
                raise Unsupported(f"link class {cls} (this kernel lacks it)") from None
            raise
        made = [k for k in links_in(replies) if k.name == name]
        if made:
            return made[-1]
        # Some kinds (vxlan) announce themselves before the request's own notification,
        # which then has nothing to say: read the link back.
        return self._get(name) if target_fd is None else None

    def _undo(self, name: str) -> None:
        """Delete what a failed request made under `name`, as far as the kernel lets us."""
        with contextlib.suppress(KernelError):
            found = self._get(name)
            if found is not None:
                self.exchange(lambda seq: link_message(RTM_DELLINK, seq, index=found.ifindex),
                              f"delete link {name}")

    # ---- operations ------------------------------------------------------------------------

    async def create(self, name: str, request: CreateRequest, cls: str,
                     target_fd: int | None = None, *,
                     made_in: ZoneNetlink | None = None,
                     peer: tuple[ZoneNetlink, str] | None = None,
                     ) -> tuple[KernelLink, KernelLink | None]:
        """Create a link; with `target_fd` the kernel places it straight into that namespace
        (its lower link, if any, is looked up here), so nothing is half-made in between.
        Returns the new link as the kernel made it, read back through `made_in` (the target
        namespace's ZoneNetlink) when it went elsewhere, and `peer` (ZoneNetlink, name):
        a veth's other end, read back in its own namespace; all in one worker job. When this
        raises, nothing it made is left: either the kernel refused the request, or what it
        made is deleted again before the error comes back."""

        def job() -> tuple[KernelLink, KernelLink | None]:
            made = self._create(name, request, cls, target_fd)  # refused: nothing was made
            where = made_in or self
            try:
                if made is None:
                    made = where._get(name)
                if made is None:
                    raise KernelError(errno.ENODEV,
                                      f"link {name} vanished right after it was made")
                peer_made = None
                if peer is not None:
                    peer_made = peer[0]._get(peer[1])
                    if peer_made is None:
                        raise KernelError(errno.ENODEV,
                                          f"link {peer[1]} vanished right after it was made")
            except BaseException:
                where._undo(name)
                raise
            return made, peer_made

        return await self.run(job)

    async def get(self, name: str) -> KernelLink | None:
        return await self.run(lambda: self._get(name))

    async def get_index(self, ifindex: int) -> KernelLink | None:
        return await self.run(lambda: self._get(index=ifindex))

    async def delete(self, ifindex: int) -> bool:
        """Delete by ifindex; False when it was already gone (teardown is idempotent)."""

        def job() -> bool:
            try:
                self.exchange(lambda seq: link_message(RTM_DELLINK, seq, index=ifindex),
                              f"delete link #{ifindex}")
            except KernelError as exc:
                if exc.errno == errno.ENODEV:
                    return False
                raise
            return True

        return await self.run(job)

    async def set(self, ifindex: int, what: str, *, read_back: bool = False,
                  **attrs: Any) -> KernelLink | None:
        """Change a link; with `read_back`, the link as it is afterwards (same worker job)."""
        encoded, flags, change = link_attrs(attrs)

        def job() -> KernelLink | None:
            self.exchange(lambda seq: link_message(RTM_NEWLINK, seq, index=ifindex,
                                                   ifi_flags=flags, change=change,
                                                   attrs=encoded), what)
            return self._get(index=ifindex) if read_back else None

        return await self.run(job)

    async def move(self, ifindex: int, target_fd: int, new_name: str, what: str, *,
                   read_back_in: ZoneNetlink | None = None) -> KernelLink | None:
        """Move a link into another namespace, renamed there in the same message; with
        `read_back_in` (the target's ZoneNetlink), the link as it arrived there."""
        encoded, _, _ = link_attrs({"net_ns_fd": target_fd, "ifname": new_name})

        def job() -> KernelLink | None:
            self.exchange(lambda seq: link_message(RTM_NEWLINK, seq, index=ifindex,
                                                   attrs=encoded), what)
            return read_back_in._get(new_name) if read_back_in is not None else None

        return await self.run(job)

    # ---- dumps -----------------------------------------------------------------------------

    async def dump(self) -> list[KernelLink]:
        """Every link of the zone, by the lean parser (broker._linkdump)."""
        async with self._dump_lock:
            self._seq += 1
            return await dump_links(self._dumps, self._seq)

    async def dump_pyroute2(self) -> list[KernelLink]:
        """The same through pyroute2: the reference the lean parser is tested against (a
        pyroute2 socket of its own, opened for this dump only)."""
        with kernel_errors("dump links"):
            sock = await in_netns(self.netns_fd, lambda: socket.socket(
                socket.AF_NETLINK, socket.SOCK_DGRAM, socket.NETLINK_ROUTE))
            ipr = AsyncIPRoute(fileno=sock.detach())
            try:
                return [_parse(msg) async for msg in await ipr.link("dump")]
            finally:
                ipr.close()
