"""A small typed client of io.linkbroker, used by linkadm, the agent, tests and benchmarks.

Transport apart from API (httpx's habit): `Connection` moves frames over the socket;
`Client` is the typed API over one connection. Error replies come back as the same
exception classes the broker raised (broker._errors), so callers catch `LinkNotFound`, not
strings.
"""

from __future__ import annotations

import errno
import os
import socket
from collections.abc import Iterator
from typing import Any, TypeVar

import msgspec

from broker._errors import (
    AddressExists,
    ContractError,
    HaltIncomplete,
    InvalidName,
    InvalidParameter,
    KernelError,
    LimitExceeded,
    LinkbrokerError,
    LinkExists,
    LinkNotFound,
    NotOwner,
    PermissionDenied,
    RemoteError,
    Unsupported,
    ZoneExists,
    ZoneNotFound,
    ZoneNotRegistered,
    error_from_wire,
)
from broker._types import (
    Address,
    Event,
    Link,
    LinkProperty,
    LinkSpec,
    LinkStatistics,
    Route,
    WhoAmIReply,
    Zone,
)
from broker._wire import FrameBuffer, FrameTooLarge, decode_reply, encode_call

__all__ = [
    "DEFAULT_SOCKET",
    "Address",
    "AddressExists",
    "BrokerGone",
    "BrokerNotRunning",
    "BrokerTimeout",
    "BrokerUnreachable",
    "Client",
    "ContractError",
    "Event",
    "HaltIncomplete",
    "InvalidName",
    "InvalidParameter",
    "KernelError",
    "LimitExceeded",
    "Link",
    "LinkExists",
    "LinkNotFound",
    "LinkProperty",
    "LinkSpec",
    "LinkStatistics",
    "LinkbrokerError",
    "NotOwner",
    "PermissionDenied",
    "ProtocolMismatch",
    "RemoteError",
    "Route",
    "SocketMissing",
    "SocketNotPermitted",
    "Unsupported",
    "WhoAmIReply",
    "Zone",
    "ZoneExists",
    "ZoneNotFound",
    "ZoneNotRegistered",
    "default_socket",
]

DEFAULT_SOCKET = "/run/linkbroker/broker.sock"
MAX_REPLY = 256 << 20
_T = TypeVar("_T")


class BrokerUnreachable(ConnectionError):
    """The broker could not be talked to: nothing was answered, whatever the call was.

    A ConnectionError (so an OSError), for callers that catch those broadly; the subclasses
    say which way it failed, since each has its own remedy. `path` is the socket tried."""

    def __init__(self, path: str, err: int, message: str) -> None:
        super().__init__(err, message)
        self.path = path


class SocketMissing(BrokerUnreachable):
    """No socket file at the path (ENOENT): the broker is not running, or not attached here."""


class BrokerNotRunning(BrokerUnreachable):
    """The socket file exists but nobody listens on it (ECONNREFUSED): a stopped broker's."""


class SocketNotPermitted(BrokerUnreachable):
    """The socket (or a directory above it) may not be opened by this user (EACCES, EPERM)."""


class BrokerGone(BrokerUnreachable):
    """The connection broke before the reply: the broker stopped or restarted mid-call.

    A write call may or may not have happened; read the state again before repeating it."""


class BrokerTimeout(BrokerUnreachable):
    """No reply within the client's timeout."""


class ProtocolMismatch(BrokerUnreachable):
    """What came back is not a Varlink reply: something else listens on that path."""


def _unreachable(path: str, exc: OSError) -> BrokerUnreachable:
    """The typed form of a connect() failure."""
    if isinstance(exc, TimeoutError):
        return BrokerTimeout(path, errno.ETIMEDOUT, "no answer while connecting")
    err = exc.errno or 0
    text = exc.strerror or str(exc)
    if err == errno.ENOENT:
        return SocketMissing(path, err, text)
    if err in (errno.EACCES, errno.EPERM):
        return SocketNotPermitted(path, err, text)
    if err in (errno.ECONNREFUSED, errno.ENOTSOCK, errno.EPROTOTYPE):
        return BrokerNotRunning(path, err, text)
    if err in (errno.ECONNRESET, errno.EPIPE, errno.ECONNABORTED):
        return BrokerGone(path, err, text)
    return BrokerUnreachable(path, err, text)


def _broken(path: str, exc: OSError) -> BrokerUnreachable:
    """The typed form of a failure on an established connection."""
    if isinstance(exc, TimeoutError):
        return BrokerTimeout(path, errno.ETIMEDOUT, "no reply in time")
    return BrokerGone(path, exc.errno or errno.ECONNRESET, exc.strerror or str(exc))


def default_socket(explicit: str | None = None) -> str:
    """--socket, then $LINKBROKER_SOCKET, then the default path (the contract's order)."""
    return explicit or os.environ.get("LINKBROKER_SOCKET") or DEFAULT_SOCKET


class Connection:
    """One Unix-socket connection carrying NUL-framed Varlink messages."""

    def __init__(self, path: str, timeout: float | None = 60.0) -> None:
        self.path = path
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.settimeout(timeout)
        try:
            self._sock.connect(path)
        except OSError as exc:
            self._sock.close()
            raise _unreachable(path, exc) from None
        # The 1 MiB limit bounds what the broker accepts; its replies can be larger (the
        # global zone listing every link of a big host).
        self._frames = FrameBuffer(MAX_REPLY)
        self._pending: list[bytes] = []

    def close(self) -> None:
        self._sock.close()

    def send(self, data: bytes) -> None:
        try:
            self._sock.sendall(data)
        except OSError as exc:
            raise _broken(self.path, exc) from None

    def receive(self) -> bytes:
        while not self._pending:
            try:
                data = self._sock.recv(1 << 16)
            except OSError as exc:
                raise _broken(self.path, exc) from None
            if not data:
                raise BrokerGone(self.path, errno.ECONNRESET,
                                 "the broker closed the connection")
            try:
                self._pending.extend(self._frames.feed(data))
            except FrameTooLarge as exc:
                raise ProtocolMismatch(self.path, errno.EPROTO, str(exc)) from None
        return self._pending.pop(0)

    def call(self, method: str, parameters: dict[str, Any] | msgspec.Struct | None = None
             ) -> dict[str, Any]:
        self.send(encode_call(method, parameters))
        return _result(self.receive(), self.path)

    def stream(self, method: str, parameters: dict[str, Any] | None = None
               ) -> Iterator[dict[str, Any]]:
        self.send(encode_call(method, parameters, more=True))
        while True:
            frame = self.receive()
            yield _result(frame, self.path)
            if not decode_reply(frame).continues:
                return


def _result(frame: bytes, path: str) -> dict[str, Any]:
    try:
        reply = decode_reply(frame)
    except msgspec.MsgspecError as exc:
        raise ProtocolMismatch(path, errno.EPROTO, f"not a Varlink reply: {exc}") from None
    if reply.error is not None:
        raise error_from_wire(reply.error, reply.parameters)
    return reply.parameters or {}


def _convert(value: Any, type_: type[_T]) -> _T:
    return msgspec.convert(value, type_)


def _params(**kwargs: Any) -> dict[str, Any]:
    return {k: v for k, v in kwargs.items() if v is not None}


class Client:
    """The typed io.linkbroker API over one connection (not shared between threads)."""

    def __init__(self, path: str | None = None, timeout: float | None = 60.0) -> None:
        self.conn = Connection(default_socket(path), timeout)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self.conn.close()

    def _call(self, method: str, **params: Any) -> dict[str, Any]:
        return self.conn.call(f"io.linkbroker.{method}", _params(**params))

    def who_am_i(self) -> WhoAmIReply:
        return _convert(self._call("WhoAmI"), WhoAmIReply)

    def list_zones(self) -> list[Zone]:
        return _convert(self._call("ListZones")["zones"], list[Zone])

    def get_zone(self, name: str | None = None) -> Zone:
        return _convert(self._call("GetZone", name=name)["zone"], Zone)

    def boot_zone(self, name: str, *, netns: str | None = None, pid: int | None = None,
                  container: str | None = None, attach: bool | None = None) -> Zone:
        reply = self._call("BootZone", name=name, netns=netns, pid=pid, container=container,
                           attach=attach)
        return _convert(reply["zone"], Zone)

    def halt_zone(self, name: str) -> None:
        self._call("HaltZone", name=name)

    def list_links(self, zone: str | None = None, cls: str | None = None) -> list[Link]:
        reply = self._call("ListLinks", zone=zone, **{"class": cls})
        return _convert(reply["links"], list[Link])

    def get_link(self, name: str | None = None, zone: str | None = None, *,
                 link_id: int | None = None) -> Link:
        """By name, or by `link_id` (the handle that survives renames; issue 14)."""
        return _convert(self._call("GetLink", name=name, id=link_id, zone=zone)["link"], Link)

    def create_link(self, spec: LinkSpec) -> Link:
        return _convert(self._call("CreateLink", link=msgspec.to_builtins(spec))["link"], Link)

    def delete_link(self, name: str | None = None, zone: str | None = None, *,
                    temporary: bool | None = None, persistent: bool | None = None,
                    link_id: int | None = None) -> None:
        """Both the active link and its configuration; `temporary`: the active link only;
        `persistent`: the configuration only."""
        self._call("DeleteLink", name=name, id=link_id, zone=zone, temporary=temporary,
                   persistent=persistent)

    def rename_link(self, name: str | None, new_name: str, zone: str | None = None, *,
                    link_id: int | None = None) -> Link:
        reply = self._call("RenameLink", name=name, id=link_id, new_name=new_name, zone=zone)
        return _convert(reply["link"], Link)

    def set_link_properties(self, name: str | None, zone: str | None = None, *,
                            mtu: int | None = None, mac: str | None = None,
                            up: bool | None = None, master: str | None = None,
                            link_id: int | None = None, txqueuelen: int | None = None,
                            promisc: bool | None = None, alias: str | None = None,
                            temporary: bool | None = None) -> Link:
        reply = self._call("SetLinkProperties", name=name, id=link_id, zone=zone, mtu=mtu,
                           mac=mac, up=up, master=master, txqueuelen=txqueuelen,
                           promisc=promisc, alias=alias, temporary=temporary)
        return _convert(reply["link"], Link)

    def link_properties(self, name: str | None, zone: str | None = None, *,
                        properties: list[str] | None = None,
                        link_id: int | None = None) -> list[LinkProperty]:
        reply = self._call("GetLinkProperties", name=name, id=link_id, zone=zone,
                           properties=properties)
        return _convert(reply["properties"], list[LinkProperty])

    def reset_link_properties(self, name: str | None, properties: list[str],
                              zone: str | None = None, *, link_id: int | None = None) -> Link:
        reply = self._call("ResetLinkProperties", name=name, id=link_id, zone=zone,
                           properties=properties)
        return _convert(reply["link"], Link)

    def assign_link(self, name: str, zone: str, persistent: bool | None = None) -> Link:
        reply = self._call("AssignLink", name=name, zone=zone, persistent=persistent)
        return _convert(reply["link"], Link)

    def reclaim_link(self, name: str, zone: str | None = None) -> Link:
        return _convert(self._call("ReclaimLink", name=name, zone=zone)["link"], Link)

    def link_statistics(self, name: str | None, zone: str | None = None, *,
                        link_id: int | None = None) -> LinkStatistics:
        reply = self._call("GetLinkStatistics", name=name, id=link_id, zone=zone)
        return _convert(reply["statistics"], LinkStatistics)

    def list_addresses(self, link: str | None = None, zone: str | None = None
                       ) -> list[Address]:
        reply = self._call("ListAddresses", link=link, zone=zone)
        return _convert(reply["addresses"], list[Address])

    def add_address(self, link: str, address: str, zone: str | None = None, *,
                    persistent: bool | None = None) -> Address:
        """`address` is "A/prefix" (ipadm's create-addr -T static)."""
        reply = self._call("AddAddress", link=link, address=address, zone=zone,
                           persistent=persistent)
        return _convert(reply["address"], Address)

    def remove_address(self, link: str, address: str, zone: str | None = None) -> None:
        self._call("RemoveAddress", link=link, address=address, zone=zone)

    def list_routes(self, zone: str | None = None) -> list[Route]:
        return _convert(self._call("ListRoutes", zone=zone)["routes"], list[Route])

    def add_route(self, destination: str, *, gateway: str | None = None,
                  link: str | None = None, metric: int | None = None,
                  zone: str | None = None, persistent: bool | None = None) -> Route:
        reply = self._call("AddRoute", destination=destination, gateway=gateway, link=link,
                           metric=metric, zone=zone, persistent=persistent)
        return _convert(reply["route"], Route)

    def remove_route(self, destination: str, *, gateway: str | None = None,
                     link: str | None = None, metric: int | None = None,
                     zone: str | None = None) -> None:
        self._call("RemoveRoute", destination=destination, gateway=gateway, link=link,
                   metric=metric, zone=zone)

    def subscribe(self, zone: str | None = None) -> Iterator[Event]:
        """Events as they come; the connection carries nothing else afterwards."""
        for reply in self.conn.stream("io.linkbroker.Subscribe", _params(zone=zone)):
            yield _convert(reply["event"], Event)
