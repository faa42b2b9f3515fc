"""A benchmark client process, run inside a zone's namespace (`ip netns exec NS python3 -m
bench._worker`): the broker knows a caller by the namespace of the connecting process.

It reads one JSON command per line on stdin and answers one JSON line on stdout:
- `ping`: ready, with the namespace inode it runs in;
- `capture`: one call, the raw reply frame;
- `loop`: calls in a tight loop from a shared start time (CLOCK_MONOTONIC, so several workers
  start together) for a bounded time and count, optionally pinned to one CPU, through
  broker.client.Connection (Varlink) or a minimal keep-alive HTTP/1.1 client (Docker's API);
  the count and optionally every latency;
- `spawn`: run a command (e.g. `ip -j link show`) n times, each duration;
- `pyroute2`: n in-process link dumps of this namespace with pyroute2.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import traceback
from typing import Any

from broker.client import Connection


class HttpConnection:
    """Keep-alive HTTP/1.1 over a Unix socket: just enough for GET replies of Docker's API."""

    def __init__(self, path: str, timeout: float = 30) -> None:
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.settimeout(timeout)
        self._sock.connect(path)
        self._buf = bytearray()

    def close(self) -> None:
        self._sock.close()

    def _fill(self) -> None:
        data = self._sock.recv(1 << 16)
        if not data:
            raise ConnectionError("HTTP server closed the connection")
        self._buf += data

    def _take(self, n: int) -> bytes:
        while len(self._buf) < n:
            self._fill()
        out = bytes(self._buf[:n])
        del self._buf[:n]
        return out

    def _line(self) -> bytes:
        while (i := self._buf.find(b"\r\n")) < 0:
            self._fill()
        out = bytes(self._buf[:i])
        del self._buf[: i + 2]
        return out

    def call(self, request: bytes) -> bytes:
        self._sock.sendall(request)
        while (end := self._buf.find(b"\r\n\r\n")) < 0:
            self._fill()
        head = bytes(self._buf[:end]).decode("latin-1").lower()
        del self._buf[: end + 4]
        length = None
        chunked = False
        for line in head.split("\r\n")[1:]:
            key, _, value = line.partition(":")
            if key == "content-length":
                length = int(value)
            elif key == "transfer-encoding" and "chunked" in value:
                chunked = True
        if not chunked:
            return self._take(length or 0)
        body = bytearray()
        while True:
            size = int(self._line().split(b";")[0], 16)
            if size == 0:
                self._line()
                return bytes(body)
            body += self._take(size)
            self._take(2)


def _sleep_until(t_ns: int) -> None:
    while (left := t_ns - time.monotonic_ns()) > 0:
        time.sleep(min(left / 1e9, 0.05))


def op_loop(cmd: dict[str, Any]) -> dict[str, Any]:
    cpu: int | None = cmd.get("cpu")
    if cpu is None:
        return _loop(cmd)
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {cpu})
    try:
        return _loop(cmd)
    finally:
        os.sched_setaffinity(0, before)


def _loop(cmd: dict[str, Any]) -> dict[str, Any]:
    path: str = cmd["path"]
    request: bytes = cmd["request"].encode()
    kind: str = cmd.get("kind", "varlink")
    reconnect: bool = cmd.get("reconnect", False)
    record: bool = cmd.get("record", False)
    max_calls: int = cmd["max_calls"]
    start_at: int = cmd["start_at"]
    end_at = start_at + int(cmd["duration"] * 1e9)

    if kind == "http":
        http = HttpConnection(path)

        def one() -> int:
            return len(http.call(request))

        closer = http.close
    elif reconnect:
        def one() -> int:
            conn = Connection(path, timeout=30)
            try:
                conn.send(request)
                return len(conn.receive())
            finally:
                conn.close()

        def closer() -> None:
            return None
    else:
        conn = Connection(path, timeout=30)

        def one() -> int:
            conn.send(request)
            return len(conn.receive())

        closer = conn.close

    try:
        size = 0
        for _ in range(cmd.get("warmup", 20)):
            size = one()
        _sleep_until(start_at)
        lat: list[int] = []
        n = 0
        clock = time.monotonic_ns
        t1 = clock()
        if record:
            while n < max_calls:
                t0 = clock()
                if t0 >= end_at:
                    break
                one()
                t1 = clock()
                lat.append(t1 - t0)
                n += 1
        else:
            while n < max_calls:
                if clock() >= end_at:
                    break
                one()
                n += 1
            t1 = clock()
    finally:
        closer()
    return {"count": n, "elapsed": (t1 - start_at) / 1e9, "latencies_ns": lat,
            "reply_bytes": size}


def op_capture(cmd: dict[str, Any]) -> dict[str, Any]:
    request: bytes = cmd["request"].encode()
    if cmd.get("kind") == "http":
        http = HttpConnection(cmd["path"])
        try:
            return {"reply": http.call(request).decode()}
        finally:
            http.close()
    conn = Connection(cmd["path"], timeout=30)
    try:
        conn.send(request)
        return {"reply": conn.receive().decode()}
    finally:
        conn.close()


def op_spawn(cmd: dict[str, Any]) -> dict[str, Any]:
    argv: list[str] = cmd["argv"]
    deadline = time.monotonic() + cmd["max_seconds"]
    times: list[float] = []
    size = 0
    for _ in range(cmd["n"]):
        if time.monotonic() > deadline:
            break
        t0 = time.perf_counter()
        out = subprocess.run(argv, check=True, capture_output=True, timeout=30).stdout
        times.append(time.perf_counter() - t0)
        size = len(out)
    return {"seconds": times, "reply_bytes": size}


def op_pyroute2(cmd: dict[str, Any]) -> dict[str, Any]:
    from pyroute2 import IPRoute

    deadline = time.monotonic() + cmd["max_seconds"]
    times: list[float] = []
    links = 0
    ipr = IPRoute()
    try:
        list(ipr.link("dump"))  # warm-up
        for _ in range(cmd["n"]):
            if time.monotonic() > deadline:
                break
            t0 = time.perf_counter()
            found = [(m.get("ifname"), m.get("address"), m.get("mtu"))
                     for m in ipr.link("dump")]
            times.append(time.perf_counter() - t0)
            links = len(found)
    finally:
        ipr.close()
    return {"seconds": times, "links": links}


OPS = {"loop": op_loop, "capture": op_capture, "spawn": op_spawn, "pyroute2": op_pyroute2}


def main() -> None:
    for line in sys.stdin:
        cmd: dict[str, Any] = json.loads(line)
        try:
            if cmd["op"] == "ping":
                reply: dict[str, Any] = {"ok": True,
                                         "netns": os.stat("/proc/self/ns/net").st_ino}
            else:
                reply = OPS[cmd["op"]](cmd)
        except Exception:
            reply = {"exception": traceback.format_exc()}
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
