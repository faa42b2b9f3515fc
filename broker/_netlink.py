"""The netlink shell: the only module that imports pyroute2.

One `ZoneNetlink` per zone, made once when the zone boots from a socket created inside the
zone's namespace (zones._ns: a short-lived thread, no fork) and passed explicitly to whoever
needs it. pyroute2's NetlinkError becomes KernelError (or Unsupported for EOPNOTSUPP on create)
here, at the boundary; nothing from pyroute2 escapes this module.
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import os
import socket
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from pyroute2 import AsyncIPRoute
from pyroute2.netlink.exceptions import NetlinkError

from broker._errors import KernelError, Unsupported
from broker._linkdump import KernelLink, dump_links
from broker.kinds import CreateRequest
from zones._ns import run_in_netns

__all__ = ["KernelLink", "ZoneNetlink", "create_tap"]

_TUNSETIFF = 0x400454CA
_TUNSETPERSIST = 0x400454CB
_IFF_TAP = 0x0002
_IFF_NO_PI = 0x1000
_IFF_UP = 0x1


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


def _parse(msg: Any) -> KernelLink:
    kind = msg.get(("linkinfo", "kind"))
    data: dict[str, Any] = {}
    if kind in ("macvlan", "macvtap"):
        data["mode"] = msg.get(("linkinfo", "data", f"IFLA_{kind.upper()}_MODE"))
    elif kind == "vxlan":
        data["vni"] = msg.get(("linkinfo", "data", "IFLA_VXLAN_ID"))
        data["remote"] = msg.get(("linkinfo", "data", "IFLA_VXLAN_GROUP")) or msg.get(
            ("linkinfo", "data", "IFLA_VXLAN_GROUP6")
        )
        data["local"] = msg.get(("linkinfo", "data", "IFLA_VXLAN_LOCAL")) or msg.get(
            ("linkinfo", "data", "IFLA_VXLAN_LOCAL6")
        )
        data["port"] = msg.get(("linkinfo", "data", "IFLA_VXLAN_PORT"))
    elif kind == "tun":
        data["tun_tap"] = msg.get(("linkinfo", "data", "IFLA_TUN_TYPE")) == 2
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
        **data,
    )


def _netlink_sockets() -> tuple[socket.socket, socket.socket]:
    """pyroute2's socket (SOCK_DGRAM: its asyncio transport needs it) and one for dumps."""
    dumps = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_NONBLOCK
                          | socket.SOCK_CLOEXEC, socket.NETLINK_ROUTE)
    dumps.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    return socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, socket.NETLINK_ROUTE), dumps


def create_tap(netns_fd: int | None, name: str) -> None:
    """Make a persistent TAP device inside the namespace (rtnetlink cannot make tun/tap)."""

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


class ZoneNetlink:
    """One zone's rtnetlink socket and the short list of operations the broker needs."""

    def __init__(self, sock: socket.socket, dumps: socket.socket, netns_fd: int | None) -> None:
        self.netns_fd = netns_fd
        # pyroute2 owns the descriptor from here on and closes it in close().
        self._ipr = AsyncIPRoute(fileno=sock.detach())
        self._dumps = dumps
        self._dump_lock = asyncio.Lock()
        self._seq = 0

    @classmethod
    def open(cls, netns_fd: int | None) -> ZoneNetlink:
        """Open the zone's socket; `netns_fd` None means the broker's own namespace."""
        with kernel_errors("open netlink socket"):
            sock, dumps = run_in_netns(netns_fd, _netlink_sockets)
        return cls(sock, dumps, netns_fd)

    def close(self) -> None:
        self._ipr.close()
        self._dumps.close()

    async def dump(self) -> list[KernelLink]:
        """Every link of the zone, by the lean parser (broker._linkdump)."""
        async with self._dump_lock:
            self._seq += 1
            return await dump_links(self._dumps, self._seq)

    async def dump_pyroute2(self) -> list[KernelLink]:
        """The same through pyroute2: the reference the lean parser is tested against."""
        with kernel_errors("dump links"):
            return [_parse(msg) async for msg in await self._ipr.link("dump")]

    async def get(self, name: str) -> KernelLink | None:
        try:
            msgs = await self._ipr.link("get", ifname=name)
        except NetlinkError as exc:
            if exc.code == errno.ENODEV:
                return None
            raise KernelError(int(exc.code), f"get link {name}: {os.strerror(exc.code)}") from None
        return _parse(msgs[0])

    async def get_index(self, ifindex: int) -> KernelLink | None:
        try:
            msgs = await self._ipr.link("get", index=ifindex)
        except NetlinkError as exc:
            if exc.code == errno.ENODEV:
                return None
            raise KernelError(int(exc.code), f"get link #{ifindex}") from None
        return _parse(msgs[0])

    async def create(
        self, name: str, request: CreateRequest, cls: str, target_fd: int | None = None
    ) -> None:
        """Create a link; with `target_fd` the kernel places it straight into that namespace
        (its lower link, if any, is looked up here), so nothing is half-made in between."""
        if request.ioctl_tap:
            create_tap(target_fd if target_fd is not None else self.netns_fd, name)
            return
        attrs = dict(request.attrs)
        if target_fd is not None:
            attrs["net_ns_fd"] = target_fd
        with kernel_errors(f"create {cls} {name}", creating=cls):
            await self._ipr.link("add", ifname=name, kind=request.kind, **attrs)

    async def delete(self, ifindex: int) -> bool:
        """Delete by ifindex; False when it was already gone (teardown is idempotent)."""
        try:
            await self._ipr.link("del", index=ifindex)
        except NetlinkError as exc:
            if exc.code == errno.ENODEV:
                return False
            raise KernelError(int(exc.code), f"delete link #{ifindex}: "
                              f"{os.strerror(exc.code)}") from None
        return True

    async def set(self, ifindex: int, what: str, **attrs: Any) -> None:
        if "state" in attrs:
            attrs["state"] = "up" if attrs["state"] else "down"
        with kernel_errors(what):
            await self._ipr.link("set", index=ifindex, **attrs)

    async def move(self, ifindex: int, target_fd: int, new_name: str, what: str) -> None:
        """Move a link into another namespace, renamed there in the same message."""
        with kernel_errors(what):
            await self._ipr.link("set", index=ifindex, net_ns_fd=target_fd, ifname=new_name)
