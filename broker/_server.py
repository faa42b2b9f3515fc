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
import resource
import socket
import time
from dataclasses import dataclass, field
from importlib import resources
from typing import Protocol

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
from broker._names import GLOBAL_OWN_VIEW, GLOBAL_ZONE
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

__all__ = ["Limits", "Observer", "Server", "interface_description", "raise_fd_limit"]

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
    # What the connection is counted against: a registered zone's name at connect, or
    # _UNREGISTERED for a namespace that was no zone then.
    account: str
    closed: bool = False
    # (zone, policy) -> (view, authorizations): the policy is a frozen value, replaced on reload.
    auths: tuple[str, object, str, frozenset[str]] | None = None


_UNREGISTERED = ""
"""The account of connections from namespaces that are no zone: one small shared budget."""
# In the global zone, every authorization beyond reading its own links needs the host view.
_WITHOUT_ZONE_READ = frozenset({"link.read", "event.read"})


@dataclass(frozen=True, slots=True, kw_only=True)
class Limits:
    """Per-connection bounds, so no caller can exhaust the broker for the others.

    The per-zone cap is what keeps a flood from one zone from taking every slot: each booted
    zone has its own share of `max_connections`, counted by zone (a zone that unshares new
    namespaces gains nothing: namespaces that are no zone share `max_unregistered` slots, a
    short idle timeout, and are closed after their first `ZoneNotRegistered`).
    """

    max_connections: int = 1024
    max_connections_per_zone: int = 128
    max_unregistered: int = 16
    # A connection that sends no frame for this long, or whose reply cannot be written for
    # this long (a client that never reads), is closed. Subscriptions are exempt from the
    # first: they are waiting on the broker.
    idle_timeout: float = 600.0
    unregistered_idle_timeout: float = 5.0
    # Bytes of unfinished frames one zone's connections may hold together: a frame may be
    # up to MAX_FRAME, but 128 connections each holding most of one would be 128 MiB.
    partial_bytes_per_zone: int = 4 * MAX_FRAME


class Observer(Protocol):
    """What the server tells the metrics (broker._metrics) as it works; None costs nothing."""

    def call_done(self, method: str, outcome: str, seconds: float) -> None: ...

    def refused(self, limit: str) -> None: ...


@dataclass
class Server:
    broker: Broker
    path: str
    limits: Limits = field(default_factory=Limits)
    version: str = "0.1.0"
    observer: Observer | None = None
    _passed: bool = False  # serving a socket the supervisor holds: never unlink its file
    _per_zone: dict[str, int] = field(default_factory=dict)
    _partial: dict[str, int] = field(default_factory=dict)
    _server: asyncio.Server | None = None
    _inflight: set[asyncio.Future[msgspec.Struct | msgspec.Raw]] = field(default_factory=set)
    _conns: set[asyncio.Task[None]] = field(default_factory=set)
    _description: str = field(default_factory=interface_description)

    async def bind(self, passed: socket.socket | None = None) -> None:
        """Bind the socket (replacing a stale one) without accepting yet; or take `passed`,
        a listening socket from socket activation (broker._activation), as it is."""
        if passed is not None:
            self._passed = True
            self._server = await asyncio.start_unix_server(
                self._serve, sock=passed, limit=_READ_CHUNK, start_serving=False,
                backlog=socket.SOMAXCONN)
            return
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
        if not self._passed:  # a passed socket's file (and inode) outlives this broker
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
            except OSError as exc:  # EMFILE and the like: this connection only
                log.warning("could not identify a caller: %s", exc)
                return
            try:
                zone = self.broker.zones.by_inode(peer.netns_inode)
                account = _UNREGISTERED if zone is None else zone.name
                conn = _Connection(peer, writer, account)
                refusal = self._admit(account)
                if refusal is not None:
                    log.info("refused a connection of pid %d: %s", peer.pid, refusal)
                    if self.observer is not None:
                        self.observer.refused(
                            "total" if len(self._conns) > self.limits.max_connections
                            else "unregistered" if account == _UNREGISTERED else "per_zone")
                    await self._send(conn, encode_error(refusal))
                    return
                try:
                    await self._read_loop(conn, reader)
                finally:
                    self._per_zone[account] -= 1
                    if not self._per_zone[account]:
                        del self._per_zone[account]
            finally:
                peer.close()
        except (ConnectionError, asyncio.CancelledError, TimeoutError):
            pass
        finally:
            self._conns.discard(task)
            writer.close()

    def _admit(self, account: str) -> LimitExceeded | None:
        """Count the connection in, or refuse it. Every refusal reads the same to a zone,
        whichever limit it hit, so it cannot tell how many connections other zones hold."""
        if account == _UNREGISTERED:
            share = self.limits.max_unregistered
        else:
            share = self.limits.max_connections_per_zone
        if len(self._conns) > self.limits.max_connections:
            if account == GLOBAL_ZONE:  # the global zone may know what the host holds
                return LimitExceeded("connections", self.limits.max_connections)
            return LimitExceeded("connections", share)
        if self._per_zone.get(account, 0) >= share:
            if account == GLOBAL_ZONE:
                return LimitExceeded("connections from this zone", share)
            return LimitExceeded("connections", share)
        self._per_zone[account] = self._per_zone.get(account, 0) + 1
        return None

    async def _read_loop(self, conn: _Connection, reader: asyncio.StreamReader) -> None:
        frames = FrameBuffer(MAX_FRAME)
        loop = asyncio.get_running_loop()
        timeout = (self.limits.unregistered_idle_timeout if conn.account == _UNREGISTERED
                   else self.limits.idle_timeout)
        held = 0  # this connection's share of its zone's unfinished-frame bytes
        try:
            while True:
                # One timer re-armed per read (not wait_for, which costs a task per call).
                idle = loop.call_later(timeout, conn.writer.close)
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
                total = self._partial.get(conn.account, 0) - held + frames.pending
                self._partial[conn.account], held = total, frames.pending
                if total > self.limits.partial_bytes_per_zone:
                    log.info("closing connection of pid %d: its zone holds %d bytes of "
                             "unfinished frames", conn.peer.pid, total)
                    return
                for frame in batch:
                    await self._handle_frame(conn, frame)
                    if conn.closed:
                        return
        finally:
            left = self._partial.get(conn.account, 0) - held
            if left > 0:
                self._partial[conn.account] = left
            else:
                self._partial.pop(conn.account, None)

    async def _send(self, conn: _Connection, data: bytes) -> None:
        if conn.closed:
            return
        try:
            conn.writer.write(data)
            if conn.writer.transport.get_write_buffer_size():
                # The kernel's buffer is full: a client that never reads would hold this
                # connection (and its reply) forever without a deadline here.
                await asyncio.wait_for(conn.writer.drain(), self.limits.idle_timeout)
        except TimeoutError:
            # close() would wait for the unread reply to flush, forever: drop it instead.
            conn.writer.transport.abort()
            conn.closed = True
        except (ConnectionError, RuntimeError):
            conn.closed = True

    async def _handle_frame(self, conn: _Connection, frame: bytes) -> None:
        call: Call | None = None
        started = time.perf_counter()
        try:
            call = decode_call(frame)
            reply = await self._dispatch(conn, call)
        except LinkbrokerError as exc:
            if self.observer is not None:
                self.observer.call_done(call.method if call else "", type(exc).__name__,
                                        time.perf_counter() - started)
            if call is None or not call.oneway:
                await self._send(conn, encode_error(exc))
            if isinstance(exc, ZoneNotRegistered):
                conn.closed = True  # nothing more to say to a namespace that is no zone
            return
        except Exception:
            # A bug, not the caller's fault: log it and drop this connection only.
            log.exception("internal error on a call from pid %d; closing its connection",
                          conn.peer.pid)
            conn.closed = True
            if self.observer is not None:
                self.observer.call_done(call.method if call else "", "InternalError",
                                        time.perf_counter() - started)
            return
        if self.observer is not None:
            self.observer.call_done(call.method, "ok", time.perf_counter() - started)
        if reply is not None and not call.oneway:
            await self._send(conn, reply)

    def _caller(self, conn: _Connection, method: str, spec: Method) -> Caller:
        zone = self.broker.zones.by_inode(conn.peer.netns_inode)
        if zone is None:
            raise ZoneNotRegistered(conn.peer.netns_inode)
        policy = self.broker.policy
        if conn.auths is not None and conn.auths[0] == zone.name and conn.auths[1] is policy:
            view, auths = conn.auths[2], conn.auths[3]
        else:
            who = Principal(zone=zone.name, uid=conn.peer.uid, gids=conn.peer.gids,
                            zone_root=conn.peer.zone_root, host_admin=conn.peer.host_admin)
            auths = policy.authorizations(who)
            view = zone.name
            if zone.name == GLOBAL_ZONE and "zone.read" not in auths:
                # Without the host view a global caller reads the global zone's own links,
                # as `ip link` shows them to any user, and can change nothing: a write from
                # the global zone reaches every zone.
                view, auths = GLOBAL_OWN_VIEW, auths & _WITHOUT_ZONE_READ
            conn.auths = (zone.name, policy, view, auths)
        if spec.authorization not in auths or (spec.global_only and zone.name != GLOBAL_ZONE):
            raise PermissionDenied(method, spec.authorization)
        return Caller(zone=view, uid=conn.peer.uid, gid=conn.peer.gid,
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


# Besides connections: zones' namespace fds and netlink sockets, SQLite, monitors, helpers.
_FD_HEADROOM = 4096


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

