"""The Varlink server: one asyncio Unix socket, the door of the broker.

Per connection: identify the peer once (its namespace names its zone), then read NUL-framed
calls one at a time and answer each in order. A handler, once started, runs to its end even if
the client disconnects (DOOR_NO_CANCEL): it is shielded from cancellation and tracked, so
shutdown waits for it. Frames over the limit close only that connection.

Memory per connection is bounded by back-pressure rather than counting: one frame is handled
at a time, and the next read waits for the reply's drain, so a client that pipelines calls and
never reads the replies leaves its calls in the kernel's socket buffer. The broker holds at
most one partial frame (under MAX_FRAME), one read chunk and one reply per connection.

Ancillary data (SCM_RIGHTS) is never read, so the kernel closes any descriptors a client
sends (DOOR_REFUSE_DESC).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from dataclasses import dataclass, field
from importlib import resources

import msgspec

from broker._dispatch import INTERFACE, METHODS, Method
from broker._errors import (
    ExpectedMore,
    InterfaceNotFound,
    LimitExceeded,
    LinkbrokerError,
    MethodNotFound,
    PermissionDenied,
    ZoneNotRegistered,
)
from broker._names import GLOBAL_ZONE
from broker._peer import Peer, PeerGone, identify_peer
from broker._policy import Principal
from broker._service import Broker, Caller
from broker._types import SubscribeParams
from broker._wire import (
    MAX_FRAME,
    Call,
    FrameBuffer,
    FrameTooLarge,
    decode_call,
    decode_parameters,
    encode_error,
    encode_reply,
)

__all__ = ["Server", "interface_description"]

log = logging.getLogger("linkbroker.server")
_READ_CHUNK = 65536
SERVICE = "org.varlink.service"
_SERVICE_DESCRIPTION = """\
# The Varlink Service Interface is provided by every varlink service.
interface org.varlink.service

method GetInfo() -> (
  vendor: string,
  product: string,
  version: string,
  url: string,
  interfaces: []string
)

method GetInterfaceDescription(interface: string) -> (description: string)

error InterfaceNotFound (interface: string)
error MethodNotFound (method: string)
error MethodNotImplemented (method: string)
error InvalidParameter (parameter: string)
error PermissionDenied ()
error ExpectedMore ()
"""


def interface_description() -> str:
    return resources.files("broker").joinpath("io.linkbroker.varlink").read_text()


class _InterfaceParams(msgspec.Struct, forbid_unknown_fields=True):
    interface: str


@dataclass
class _Connection:
    peer: Peer
    writer: asyncio.StreamWriter
    closed: bool = False
    # (zone, policy) -> authorizations: the policy is a frozen value, replaced on reload.
    auths: tuple[str, object, frozenset[str]] | None = None


@dataclass(frozen=True, slots=True)
class Limits:
    """Per-connection bounds, so no caller can exhaust the broker for the others.

    The per-zone cap is what keeps a flood from one zone from taking every slot: each zone
    (each namespace, booted or not) has its own share of `max_connections`.
    """

    max_connections: int = 1024
    max_connections_per_zone: int = 128
    # A connection that sends no frame for this long is closed (half-open and forgotten
    # connections included). Subscriptions are exempt: they are waiting on the broker.
    idle_timeout: float = 600.0


@dataclass
class Server:
    broker: Broker
    path: str
    limits: Limits = field(default_factory=Limits)
    version: str = "0.1.0"
    _per_zone: dict[int, int] = field(default_factory=dict)
    _server: asyncio.Server | None = None
    _inflight: set[asyncio.Future[msgspec.Struct | msgspec.Raw]] = field(default_factory=set)
    _conns: set[asyncio.Task[None]] = field(default_factory=set)
    _description: str = field(default_factory=interface_description)

    async def bind(self) -> None:
        """Bind the socket (replacing a stale one) without accepting yet."""
        _remove_stale_socket(self.path)
        os.makedirs(os.path.dirname(self.path) or ".", mode=0o755, exist_ok=True)
        # The reader's limit only sets when asyncio stops reading the socket (at twice it):
        # frames are assembled by FrameBuffer, so a small value keeps a pipelining client's
        # unread calls in the kernel's socket buffer, not in the broker's memory.
        self._server = await asyncio.start_unix_server(
            self._serve, path=self.path, limit=_READ_CHUNK, start_serving=False
        )
        # Authorization is per caller, not per file mode: every zone must be able to connect.
        os.chmod(self.path, 0o666)

    async def start(self) -> None:
        assert self._server is not None
        await self._server.start_serving()

    async def close(self, grace: float = 10.0) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._conns):
            task.cancel()
        if self._inflight:
            await asyncio.wait(list(self._inflight), timeout=grace)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._conns.add(task)
        try:
            sock: socket.socket = writer.get_extra_info("socket")
            try:
                peer = await asyncio.to_thread(identify_peer, sock)
            except PeerGone as exc:
                log.info("refused a connection: %s", exc)
                return
            conn = _Connection(peer, writer)
            refusal = self._admit(peer.netns_inode)
            if refusal is not None:
                log.info("refused a connection of pid %d: %s", peer.pid, refusal)
                await self._send(conn, encode_error(refusal))
                return
            try:
                await self._read_loop(conn, reader)
            finally:
                self._per_zone[peer.netns_inode] -= 1
                if not self._per_zone[peer.netns_inode]:
                    del self._per_zone[peer.netns_inode]
        except (ConnectionError, asyncio.CancelledError, TimeoutError):
            pass
        finally:
            self._conns.discard(task)
            writer.close()

    def _admit(self, inode: int) -> LimitExceeded | None:
        """Count the connection in, or say which limit it would exceed."""
        if len(self._conns) > self.limits.max_connections:
            return LimitExceeded("connections", self.limits.max_connections)
        if self._per_zone.get(inode, 0) >= self.limits.max_connections_per_zone:
            return LimitExceeded("connections from this zone",
                                 self.limits.max_connections_per_zone)
        self._per_zone[inode] = self._per_zone.get(inode, 0) + 1
        return None

    async def _read_loop(self, conn: _Connection, reader: asyncio.StreamReader) -> None:
        frames = FrameBuffer(MAX_FRAME)
        loop = asyncio.get_running_loop()
        while True:
            # One timer re-armed per read (not wait_for, which costs a task per call).
            idle = loop.call_later(self.limits.idle_timeout, conn.writer.close)
            try:
                data = await reader.read(_READ_CHUNK)
            finally:
                idle.cancel()
            if not data:
                return
            try:
                batch = frames.feed(data)
            except FrameTooLarge:
                log.info("closing connection of pid %d: frame over %d bytes",
                         conn.peer.pid, MAX_FRAME)
                return
            for frame in batch:
                await self._handle_frame(conn, frame)
                if conn.closed:
                    return

    async def _send(self, conn: _Connection, data: bytes) -> None:
        if conn.closed:
            return
        try:
            conn.writer.write(data)
            await conn.writer.drain()
        except (ConnectionError, RuntimeError):
            conn.closed = True

    async def _handle_frame(self, conn: _Connection, frame: bytes) -> None:
        call: Call | None = None
        try:
            call = decode_call(frame)
            reply = await self._dispatch(conn, call)
        except LinkbrokerError as exc:
            if call is None or not call.oneway:
                await self._send(conn, encode_error(exc))
            return
        except Exception:
            # A bug, not the caller's fault: log it and drop this connection only.
            log.exception("internal error on a call from pid %d; closing its connection",
                          conn.peer.pid)
            conn.closed = True
            return
        if reply is not None and not call.oneway:
            await self._send(conn, reply)

    def _caller(self, conn: _Connection, method: str, spec: Method) -> Caller:
        zone = self.broker.zones.by_inode(conn.peer.netns_inode)
        if zone is None:
            raise ZoneNotRegistered(conn.peer.netns_inode)
        policy = self.broker.policy
        if conn.auths is not None and conn.auths[0] == zone.name and conn.auths[1] is policy:
            auths = conn.auths[2]
        else:
            who = Principal(zone=zone.name, uid=conn.peer.uid, gids=conn.peer.gids,
                            zone_root=conn.peer.zone_root)
            auths = policy.authorizations(who)
            conn.auths = (zone.name, policy, auths)
        if spec.authorization not in auths or (spec.global_only and zone.name != GLOBAL_ZONE):
            raise PermissionDenied(method, spec.authorization)
        return Caller(zone=zone.name, uid=conn.peer.uid, gid=conn.peer.gid,
                      pid=conn.peer.pid, authorizations=auths)

    async def _dispatch(self, conn: _Connection, call: Call) -> bytes | None:
        interface, _, name = call.method.rpartition(".")
        if interface == SERVICE:
            return self._service_call(name, call)
        if interface != INTERFACE:
            raise InterfaceNotFound(interface)
        spec = METHODS.get(name)
        if spec is None:
            raise MethodNotFound(call.method)
        params = decode_parameters(call.parameters, spec.params)
        caller = self._caller(conn, name, spec)
        if spec.handler is None:
            await self._stream(conn, caller, call, params)
            return None
        if spec.read:
            return encode_reply(await spec.handler(self.broker, caller, params))
        task = asyncio.ensure_future(spec.handler(self.broker, caller, params))
        self._inflight.add(task)
        task.add_done_callback(self._inflight.discard)
        # Shielded: a disconnect (our task cancelled) never stops a started request.
        result = await asyncio.shield(task)
        return encode_reply(result)

    def _service_call(self, name: str, call: Call) -> bytes:
        if name == "GetInfo":
            decode_parameters(call.parameters, _NoParams)
            return encode_reply({
                "vendor": "linkbroker", "product": "linkbrokerd", "version": self.version,
                "url": "https://github.com/linkbroker/linkbroker",
                "interfaces": [SERVICE, INTERFACE],
            })
        if name == "GetInterfaceDescription":
            p = decode_parameters(call.parameters, _InterfaceParams)
            if p.interface == INTERFACE:
                return encode_reply({"description": self._description})
            if p.interface == SERVICE:
                return encode_reply({"description": _SERVICE_DESCRIPTION})
            raise InterfaceNotFound(p.interface)
        raise MethodNotFound(call.method)

    async def _stream(self, conn: _Connection, caller: Caller, call: Call,
                      params: msgspec.Struct) -> None:
        if not call.more:
            raise ExpectedMore()
        assert isinstance(params, SubscribeParams)
        sub = self.broker.subscribe(caller, params)
        try:
            # The first reply says the subscription is live, so a client can act on it.
            while True:
                event = await sub.queue.get()
                if event is None:
                    if sub.overflowed:
                        await self._send(conn, encode_error(
                            LimitExceeded("event queue", sub.limit)))
                    conn.closed = True
                    return
                await self._send(conn, encode_reply({"event": event}, continues=True))
                if conn.closed:
                    return
        finally:
            self.broker.events.unsubscribe(sub)


class _NoParams(msgspec.Struct, forbid_unknown_fields=True):
    pass


def _remove_stale_socket(path: str) -> None:
    """A socket file nobody answers on is a crashed broker's: replace it. One that answers
    belongs to a live broker, and starting a second one over it would steal its door."""
    if not os.path.exists(path):
        return
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(1.0)
        probe.connect(path)
    except OSError:
        os.unlink(path)
        return
    finally:
        probe.close()
    raise RuntimeError(f"another broker is serving on {path}")

