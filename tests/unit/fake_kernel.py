"""A kernel in memory for driving the broker's service in-process (issue 16): namespaces
holding links, and one fake `ZoneNetlink` per namespace with the coroutine API the service
uses (create, set, delete, move, get, get_index, dump). Only what the service relies on is
modelled: veth pairs across namespaces (IFLA_LINK and the link-netnsid), moves with a new
name, MTU, state, master. No root, no sockets, no threads.
"""

from __future__ import annotations

import dataclasses
import errno
import itertools
from typing import Any

from broker._errors import KernelError
from broker._linkdump import KernelLink
from broker.kinds import CreateRequest

__all__ = ["FakeHandle", "FakeKernel", "FakeNetlink"]


class FakeKernel:
    """Every namespace, by the fd the broker would hold for it."""

    def __init__(self) -> None:
        self.spaces: dict[int, dict[int, KernelLink]] = {}
        self._ifindex = itertools.count(2)
        self._fd = itertools.count(1000)
        self._macs = itertools.count(1)

    def namespace(self) -> FakeNetlink:
        fd = next(self._fd)
        self.spaces[fd] = {}
        return FakeNetlink(self, fd)

    def where(self, ifindex: int) -> int:
        return next(fd for fd, links in self.spaces.items() if ifindex in links)

    def names(self, fd: int) -> set[str]:
        return {k.name for k in self.spaces[fd].values()}

    def add(self, fd: int, name: str, kind: str | None, **fields: Any) -> KernelLink:
        if name in self.names(fd):
            raise KernelError(errno.EEXIST, f"{name} exists")
        n = next(self._macs)
        mac = f"02:00:00:00:{n // 256:02x}:{n % 256:02x}"
        link = KernelLink(ifindex=next(self._ifindex), name=name, kind=kind, mac=mac,
                          mtu=fields.pop("mtu", None) or 1500, up=fields.pop("up", False),
                          master=None, link=None, link_netnsid=None, **fields)
        self.spaces[fd][link.ifindex] = link
        return link

    def pair(self, a: KernelLink, b: KernelLink) -> None:
        """Make two veth ends each other's peer (link-netnsid set when apart)."""
        fa, fb = self.where(a.ifindex), self.where(b.ifindex)
        self.spaces[fa][a.ifindex] = dataclasses.replace(
            a, link=b.ifindex, link_netnsid=None if fa == fb else fb)
        self.spaces[fb][b.ifindex] = dataclasses.replace(
            b, link=a.ifindex, link_netnsid=None if fa == fb else fa)

    def peer_of(self, k: KernelLink) -> KernelLink | None:
        if k.kind != "veth" or k.link is None:
            return None
        for links in self.spaces.values():
            if k.link in links and links[k.link].link == k.ifindex:
                return links[k.link]
        return None


@dataclasses.dataclass
class FakeHandle:
    netns_fd: int
    pid: int | None = None
    pid_start: int | None = None

    def close(self) -> None:
        pass


class FakeNetlink:
    """One namespace's netlink, as broker._netlink.ZoneNetlink presents it."""

    def __init__(self, kernel: FakeKernel, fd: int) -> None:
        self.kernel, self.fd = kernel, fd

    @property
    def links(self) -> dict[int, KernelLink]:
        return self.kernel.spaces[self.fd]

    def close(self) -> None:
        pass

    async def dump(self) -> list[KernelLink]:
        return list(self.links.values())

    async def get(self, name: str) -> KernelLink | None:
        return next((k for k in self.links.values() if k.name == name), None)

    async def get_index(self, ifindex: int) -> KernelLink | None:
        return self.links.get(ifindex)

    async def create(self, name: str, request: CreateRequest, cls: str,
                     target_fd: int | None = None, *, made_in: Any = None,
                     peer: tuple[FakeNetlink, str] | None = None,
                     ) -> tuple[KernelLink, KernelLink | None]:
        attrs = request.attrs
        fd = self.fd if target_fd is None else target_fd
        made = self.kernel.add(fd, name, request.kind, mtu=attrs.get("mtu"),
                               up=attrs.get("state") == "up")
        peer_made = None
        if peer is not None:
            other = attrs["peer"]
            peer_fd = other.get("net_ns_fd") or self.fd
            end = self.kernel.add(peer_fd, peer[1], "veth", mtu=other.get("mtu"))
            self.kernel.pair(made, end)
            made = self.kernel.spaces[fd][made.ifindex]
            peer_made = self.kernel.spaces[peer_fd][end.ifindex]
        return made, peer_made

    async def set(self, ifindex: int, what: str, *, read_back: bool = False,
                  **attrs: Any) -> KernelLink | None:
        k = self.links.get(ifindex)
        if k is None:
            raise KernelError(errno.ENODEV, f"{what}: no such device")
        changes: dict[str, Any] = {}
        if attrs.get("mtu") is not None:
            changes["mtu"] = attrs["mtu"]
        if attrs.get("state") is not None:
            changes["up"] = attrs["state"] in (True, "up")
        if attrs.get("master") is not None:
            changes["master"] = attrs["master"] or None
        self.links[ifindex] = dataclasses.replace(k, **changes)
        return self.links[ifindex] if read_back else None

    async def delete(self, ifindex: int) -> bool:
        k = self.links.pop(ifindex, None)
        if k is None:
            return False
        for links in self.kernel.spaces.values():  # a veth's other end goes with it
            if k.kind == "veth" and k.link in links and links[k.link].link == ifindex:
                del links[k.link]
        return True

    async def move(self, ifindex: int, target_fd: int, new_name: str, what: str, *,
                   read_back_in: FakeNetlink | None = None) -> KernelLink | None:
        k = self.links.pop(ifindex)
        if new_name in self.kernel.names(target_fd):
            self.links[ifindex] = k
            raise KernelError(errno.EEXIST, f"{what}: {new_name} exists there")
        self.kernel.spaces[target_fd][ifindex] = dataclasses.replace(k, name=new_name,
                                                                     up=False)
        peer = self.kernel.peer_of(self.kernel.spaces[target_fd][ifindex])
        if peer is not None:
            self.kernel.pair(self.kernel.spaces[target_fd][ifindex], peer)
        return None if read_back_in is None else await read_back_in.get(new_name)
