"""broker._server.Server driven in-process (issue 16: "nothing tests Broker or Server
in-process"): a real Unix socket in tmp_path, a Broker over a real SQLite file, this process's
own network namespace registered as the global zone, and a client on the same event loop.
No root, no netlink: the server's framing, dispatch, authorization, errors, ordering and
timeouts, each asserted on the bytes that come back."""

from __future__ import annotations

import asyncio
import dataclasses
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from broker._admission import Limits
from broker._dispatch import METHODS
from broker._server import Server
from broker._service import Broker
from broker._store import Store
from broker._table import LinkRecord, ZoneRecord
from broker._wire import MAX_FRAME, FrameBuffer, Reply, decode_reply, encode_call

Body = Callable[[Server, Broker, str], Awaitable[None]]


def serve(tmp_path: Path, body: Body, limits: Limits | None = None) -> None:
    async def main() -> None:
        store = Store(str(tmp_path / "state"))
        broker = Broker(store=store, socket_path=str(tmp_path / "b.sock"))
        broker.links.ids = store.load().ids
        broker.zones.add(ZoneRecord(name="global", kind="global",
                                    netns_inode=os.stat("/proc/self/ns/net").st_ino))
        broker.links.add(LinkRecord(id=broker.links.allocate_id(), name="br9", cls="bridge",
                                    zone="global", owner="global", ifindex=9))
        server = Server(broker, str(tmp_path / "b.sock"), limits or Limits())
        await server.bind()
        await server.start()
        try:
            await asyncio.wait_for(body(server, broker, str(tmp_path / "b.sock")), 30)
        finally:
            await server.close(grace=1.0)
            store.close()

    asyncio.run(main())


async def replies(reader: asyncio.StreamReader, count: int) -> list[Reply]:
    frames = FrameBuffer()
    got: list[bytes] = []
    while len(got) < count:
        data = await reader.read(65536)
        assert data, f"closed after {len(got)} of {count} replies"
        got += frames.feed(data)
    return [decode_reply(f) for f in got]


def test_calls_are_answered_in_order_errors_included(tmp_path: Path) -> None:
    async def body(server: Server, broker: Broker, path: str) -> None:
        reader, writer = await asyncio.open_unix_connection(path)
        writer.write(encode_call("io.linkbroker.WhoAmI")
                     + encode_call("io.linkbroker.NoSuchMethod")
                     + encode_call("io.linkbroker.ListLinks", {"colour": "red"})
                     + encode_call("io.linkbroker.ListLinks")
                     + encode_call("org.varlink.service.GetInfo"))
        who, missing, bad, links, info = await replies(reader, 5)
        assert who.error is None and who.parameters is not None
        assert (who.parameters["zone"], who.parameters["pid"]) == ("global", os.getpid())
        assert missing.error == "org.varlink.service.MethodNotFound"  # Varlink's own
        assert bad.error == "org.varlink.service.InvalidParameter"
        assert bad.parameters == {"parameter": "colour"}
        assert links.parameters is not None
        assert [x["name"] for x in links.parameters["links"]] == ["br9"]
        assert info.parameters is not None and "io.linkbroker" in info.parameters["interfaces"]
        writer.close()

    serve(tmp_path, body)


def test_a_namespace_that_is_no_longer_a_zone_is_answered_and_dropped(tmp_path: Path) -> None:
    async def body(server: Server, broker: Broker, path: str) -> None:
        reader, writer = await asyncio.open_unix_connection(path)
        writer.write(encode_call("io.linkbroker.WhoAmI"))
        assert (await replies(reader, 1))[0].error is None
        broker.zones.remove("global")  # halted between two calls of a kept connection
        writer.write(encode_call("io.linkbroker.WhoAmI") + encode_call("io.linkbroker.WhoAmI"))
        (refused,) = await replies(reader, 1)
        assert refused.error == "io.linkbroker.ZoneNotRegistered"
        assert await reader.read(65536) == b""  # closed: nothing more for it
        writer.close()

    serve(tmp_path, body)


def test_a_frame_over_the_limit_closes_only_its_connection(tmp_path: Path) -> None:
    async def body(server: Server, broker: Broker, path: str) -> None:
        reader, writer = await asyncio.open_unix_connection(path)
        other_r, other_w = await asyncio.open_unix_connection(path)
        writer.write(b"x" * (MAX_FRAME + 1))
        assert await reader.read(65536) == b""
        other_w.write(encode_call("io.linkbroker.WhoAmI"))
        assert (await replies(other_r, 1))[0].error is None
        writer.close()
        other_w.close()

    serve(tmp_path, body)


def test_an_idle_connection_is_closed_but_a_slow_call_is_not_idle(tmp_path: Path) -> None:
    async def body(server: Server, broker: Broker, path: str) -> None:
        reader, writer = await asyncio.open_unix_connection(path)
        loop = asyncio.get_running_loop()
        started = loop.time()
        assert await reader.read(65536) == b""
        assert loop.time() - started >= 0.3  # closed by the idle timer, not before
        # A call that takes longer than the idle timeout is still answered: a slow write
        # handler stands in for the kernel (the dispatch table's row, swapped for the test).
        slow_r, slow_w = await asyncio.open_unix_connection(path)

        async def slowly(b: Broker, c: Any, p: Any) -> Any:
            await asyncio.sleep(0.6)
            return await b.who_am_i(c, p)

        row = METHODS["WhoAmI"]
        METHODS["WhoAmI"] = dataclasses.replace(row, handler=slowly, read=False)
        try:
            slow_w.write(encode_call("io.linkbroker.WhoAmI"))
            assert (await replies(slow_r, 1))[0].error is None
        finally:
            METHODS["WhoAmI"] = row
        writer.close()
        slow_w.close()

    serve(tmp_path, body, Limits(idle_timeout=0.3))
