"""The Varlink server: one asyncio Unix socket, the door of the broker.

Per connection: identify the peer once (its namespace names its zone), then read NUL-framed
calls one at a time and answer each in order. A handler, once started, runs to its end even if
the client disconnects (DOOR_NO_CANCEL): it is shielded from cancellation and tracked, so
shutdown waits for it. Frames over the limit close only that connection.

Memory per connection is bounded by back-pressure rather than counting: one frame is handled
at a time, and the next read waits for the reply's drain, so a client that pipelines calls and
never reads the replies leaves its calls in the kernel's socket buffer. The broker holds at
most one partial frame (under MAX_FRAME), one read chunk and one reply per connection; how many
connections a zone may have and how much unfinished-frame memory they hold together is
`broker._admission`'s; org.varlink.service is answered by `broker._varlink_service`.

Ancillary data (SCM_RIGHTS) is never read, so the kernel closes any descriptors a client
sends (DOOR_REFUSE_DESC).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import msgspec

from broker._admission import UNREGISTERED, Admission, Limits, raise_fd_limit
from broker._authorize import authorize, held
from broker._dispatch import INTERFACE, METHODS, Method
from broker._errors import (
    ExpectedMore,
    InterfaceNotFound,
    LimitExceeded,
    LinkbrokerError,
    MethodNotFound,
    ZoneNotRegistered,
)
from broker._params import SubscribeParams
from broker._peer import Peer, PeerGone, identify_peer
from broker._policy import Principal
from broker._service import Broker, Caller
from broker._varlink_service import SERVICE, interface_description, service_call
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

__all__ = ["Limits", "Observer", "Server", "raise_fd_limit"]

log = logging.getLogger("linkbroker.server")
_READ_CHUNK = 65536
@dataclass
class _Connection:
    peer: Peer
    writer: asyncio.StreamWriter
    # What the connection is counted against: a registered zone's name at connect, or
    # _UNREGISTERED for a namespace that was no zone then.
    account: str
    closed: bool = False
    # (zone, policy) -> the caller they make: the policy is a frozen value, replaced on
    # reload, and the peer's facts cannot change for a kept connection. Only a cache: what
    # the caller holds is broker._authorize.held's, what it may call is authorize's.
    auths: tuple[str, object, Caller] | None = None


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
    _admission: Admission = field(init=False)
    _server: asyncio.Server | None = None
    _inflight: set[asyncio.Future[msgspec.Struct | msgspec.Raw]] = field(default_factory=set)
    _conns: set[asyncio.Task[None]] = field(default_factory=set)
    _description: str = field(default_factory=interface_description)

    def __post_init__(self) -> None:
        self._admission = Admission(self.limits)

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
                account = UNREGISTERED if zone is None else zone.name
                conn = _Connection(peer, writer, account)
                refusal = self._admission.admit(account, len(self._conns))
                if refusal is not None:
                    log.info("refused a connection of pid %d: %s", peer.pid, refusal[0])
                    if self.observer is not None:
                        self.observer.refused(refusal[1])
                    await self._send(conn, encode_error(refusal[0]))
                    return
                try:
                    await self._read_loop(conn, reader)
                finally:
                    self._admission.release(account)
            finally:
                peer.close()
        except (ConnectionError, asyncio.CancelledError, TimeoutError):
            pass
        finally:
            self._conns.discard(task)
            writer.close()

    async def _read_loop(self, conn: _Connection, reader: asyncio.StreamReader) -> None:
        frames = FrameBuffer(MAX_FRAME)
        idle = _IdleTimer(self.limits.idle_timeout_for(conn.account), conn.writer.close)
        held = 0  # this connection's share of its zone's unfinished-frame bytes
        try:
            while True:
                idle.reading()
                data = await reader.read(_READ_CHUNK)
                idle.working()
                if not data:
                    return
                try:
                    batch = frames.feed(data)
                except FrameTooLarge:
                    log.info("closing connection of pid %d: frame over %d bytes",
                             conn.peer.pid, MAX_FRAME)
                    return
                fits = self._admission.hold_partial(conn.account, held, frames.pending)
                held = frames.pending
                if not fits:
                    log.info("closing connection of pid %d: its zone holds too many bytes of "
                             "unfinished frames", conn.peer.pid)
                    return
                for frame in batch:
                    await self._handle_frame(conn, frame)
                    if conn.closed:
                        return
        finally:
            idle.cancel()
            self._admission.hold_partial(conn.account, held, 0)

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
            caller = conn.auths[2]
        else:
            who = Principal(zone=zone.name, uid=conn.peer.uid, gids=conn.peer.gids,
                            zone_root=conn.peer.zone_root, host_admin=conn.peer.host_admin)
            has = held(policy, who)
            caller = Caller(zone=has.zone, uid=conn.peer.uid, gid=conn.peer.gid,
                            pid=conn.peer.pid, authorizations=has.authorizations)
            conn.auths = (zone.name, policy, caller)
        authorize(caller, method, spec.call, policy=policy)
        return caller

    async def _dispatch(self, conn: _Connection, call: Call) -> bytes | None:
        interface, _, name = call.method.rpartition(".")
        if interface == SERVICE:
            return service_call(name, call, version=self.version,
                                description=self._description)
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


class _IdleTimer:
    """Closes a connection that has waited `timeout` seconds for its next bytes (the time
    its calls take does not count). One timer per connection, moved on only when it fires:
    arming and cancelling a timer around every read (call_later + cancel, ~2 us) was a
    tenth of a WhoAmI's whole cost; noting the time a read began costs a clock read."""

    __slots__ = ("_close", "_handle", "_loop", "_since", "_timeout")

    def __init__(self, timeout: float, close: Callable[[], object]) -> None:
        self._loop = asyncio.get_running_loop()
        self._timeout = timeout
        self._close = close
        self._since: float | None = None  # when the pending read began; None: a call runs
        self._handle: asyncio.TimerHandle | None = self._loop.call_later(timeout, self._fire)

    def reading(self) -> None:
        self._since = self._loop.time()

    def working(self) -> None:
        self._since = None

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _fire(self) -> None:
        now = self._loop.time()
        if self._since is not None and now - self._since >= self._timeout:
            self._handle = None
            self._close()
            return
        since = now if self._since is None else self._since
        self._handle = self._loop.call_at(since + self._timeout, self._fire)


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

