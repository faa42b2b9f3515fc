"""What dominates a read request, stage by stage, in-process (no sockets, no wake-ups).

The broker's own objects are built here: a `Broker` over a throw-away SQLite store, a zone
reconciled from 50 synthetic veth pairs (100 links, as in scenario 1), and a `Server` whose
request path is called directly: decode the call, decode the parameters, identify the zone
and check the authorization (`Server._caller`), run the handler, encode the reply; then the
whole `Server._dispatch` (with its task and shield). The same reply encoded from plain dicts
(what the floor server does) stands beside it.

This reaches into broker internals (`Server._caller`, `_Connection`, `Broker.reconcile_zone`,
`KernelLink`); when they change shape the breakdown reports why it could not run instead of
failing the benchmark.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
import traceback
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, cast

import msgspec


def _time_us(fn: Callable[[], object], n: int) -> float:
    fn()
    best = float("inf")
    for _ in range(3):  # best of 3 batches: the least disturbed
        t0 = time.perf_counter_ns()
        for _ in range(n):
            fn()
        best = min(best, (time.perf_counter_ns() - t0) / n / 1000)
    return best


def _sync(awaitable: Awaitable[Any]) -> Any:
    """Run a coroutine that never suspends (the read handlers) without an event loop."""
    coro = cast(Coroutine[Any, Any, Any], awaitable)
    try:
        coro.send(None)
    except StopIteration as done:
        return done.value
    coro.close()
    raise RuntimeError("the handler suspended")


def breakdown(n: int = 2000) -> dict[str, Any]:
    try:
        return _breakdown(n)
    except Exception:
        return {"error": traceback.format_exc(limit=3)}


def _breakdown(n: int) -> dict[str, Any]:
    from broker._dispatch import METHODS
    from broker._netlink import KernelLink
    from broker._peer import Peer
    from broker._rules import link_view, visible_links
    from broker._server import Server, _Connection
    from broker._service import Broker
    from broker._store import Store
    from broker._table import ZoneRecord
    from broker._wire import decode_call, decode_parameters, encode_call, encode_reply

    tmp = tempfile.mkdtemp(prefix="lbb-breakdown-")
    try:
        broker = Broker(store=Store(tmp), socket_path=f"{tmp}/broker.sock")
        zone, inode = "bench", 4026539999
        broker.zones.add(ZoneRecord(name=zone, kind="netns", netns_inode=inode, netns=zone))
        found = []
        for i in range(50):
            a, b = 2 + 2 * i, 3 + 2 * i
            for idx, peer, end in ((a, b, "a"), (b, a, "b")):
                found.append(KernelLink(ifindex=idx, name=f"v{i}{end}", kind="veth",
                                        mac=f"02:00:00:00:{i:02x}:{idx % 256:02x}", mtu=1500,
                                        up=False, master=None, link=peer, link_netnsid=None))
        broker.reconcile_zone(zone, found)
        server = Server(broker, f"{tmp}/broker.sock")
        conn = _Connection(Peer(pid=1, uid=0, gid=0, netns_inode=inode, gids=frozenset({0}),
                                zone_root=True), writer=None,  # type: ignore[arg-type]
                           account=zone)
        out: dict[str, Any] = {"links": len(broker.links.in_zone(zone))}

        def one(method: str) -> dict[str, Any]:
            frame = encode_call(f"io.linkbroker.{method}", {})[:-1]
            spec = METHODS[method]
            call = decode_call(frame)
            params = decode_parameters(call.parameters, spec.params)
            caller = server._caller(conn, method, spec)
            handler = spec.handler
            assert handler is not None
            result = _sync(handler(broker, caller, params))
            reply = encode_reply(result)
            as_dicts = msgspec.json.decode(reply[:-1])
            stages = {
                "decode_call": _time_us(lambda: decode_call(frame), n),
                "decode_parameters": _time_us(
                    lambda: decode_parameters(call.parameters, spec.params), n),
                "Server._caller (zone + policy)": _time_us(
                    lambda: server._caller(conn, method, spec), n),
                f"handler {handler.__qualname__}": _time_us(
                    lambda: _sync(handler(broker, caller, params)), n),
                "encode_reply": _time_us(lambda: encode_reply(result), n),
            }
            if method == "ListLinks":
                shown = visible_links(zone, None, None, broker.links, broker.zones)
                stages["  of which visible_links"] = _time_us(
                    lambda: visible_links(zone, None, None, broker.links, broker.zones), n)
                stages["  of which 100 x link_view"] = _time_us(
                    lambda: [link_view(zone, x, broker.links) for x in shown], n)
            extra = {
                "floor: encode the same reply from dicts": _time_us(
                    lambda: msgspec.json.encode(as_dicts), n),
            }

            async def dispatch_many(count: int) -> float:
                await server._dispatch(conn, call)
                t0 = time.perf_counter_ns()
                for _ in range(count):
                    await server._dispatch(conn, call)
                return (time.perf_counter_ns() - t0) / count / 1000

            extra["Server._dispatch whole (task + shield)"] = min(
                asyncio.run(dispatch_many(n)) for _ in range(3))
            top = sum(v for k, v in stages.items() if not k.startswith("  "))
            extra["sum of the stages"] = top
            return {"reply_bytes": len(reply), "stages_us": stages, "other_us": extra}

        for method in ("WhoAmI", "ListLinks"):
            out[method] = one(method)
        broker.store.close()
        return out
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def format_breakdown(b: dict[str, Any]) -> str:
    if "error" in b:
        return f"request breakdown unavailable:\n{b['error']}"
    lines = [f"In-process request breakdown (best of 3 batches; a zone of {b['links']} links)"]
    for method in ("WhoAmI", "ListLinks"):
        m = b[method]
        lines.append(f"  {method} ({m['reply_bytes']} B reply):")
        for k, v in {**m["stages_us"], **m["other_us"]}.items():
            lines.append(f"    {v:8.2f} µs  {k}")
    return "\n".join(lines)
