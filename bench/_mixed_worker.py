"""A client process of the "mixed" scenario, run inside a zone's namespace (`ip netns exec NS
python3 -m bench._mixed_worker`): the broker knows a caller by its namespace.

One JSON command per line on stdin, one JSON answer per line on stdout (as bench._worker):
- `paced`: ListLinks every `interval` seconds from a shared start time (CLOCK_MONOTONIC) for
  `duration` seconds; every call's latency;
- `churn`: CreateLink of a veth (both ends in this zone) then DeleteLink, in a loop, for
  `duration` seconds; the cycles done;
- `create`: `count` veth CreateLinks in a row from the start time (kept: the namespace goes at
  the end of the run); the time each took, and when the last one finished;
- `kernel_create`: the same veths made by raw RTM_NEWLINK on a netlink socket of this namespace
  (broker._rtnl's messages, no broker): the kernel's own rate.
"""

from __future__ import annotations

import json
import socket
import sys
import time
import traceback
from typing import Any

from broker._rtnl import NLM_F_CREATE, NLM_F_EXCL, RTM_NEWLINK, exchange, link_attrs, link_message
from broker._wire import encode_call
from broker.client import Connection


def _sleep_until(t_ns: int) -> None:
    while (left := t_ns - time.monotonic_ns()) > 0:
        time.sleep(min(left / 1e9, 0.05))


def _ok(conn: Connection, request: bytes) -> None:
    conn.send(request)
    reply = conn.receive()
    if b'"error"' in reply[:40]:
        raise RuntimeError(reply[:300].decode(errors="replace"))


def op_paced(cmd: dict[str, Any]) -> dict[str, Any]:
    conn = Connection(cmd["path"], timeout=30)
    request = encode_call("io.linkbroker.ListLinks", {})
    interval = int(cmd["interval"] * 1e9)
    try:
        for _ in range(20):
            _ok(conn, request)
        start = cmd["start_at"]
        end = start + int(cmd["duration"] * 1e9)
        lat: list[int] = []
        due = start
        clock = time.monotonic_ns
        while due < end:
            _sleep_until(due)
            t0 = clock()
            conn.send(request)
            conn.receive()
            lat.append(clock() - t0)
            due += interval
            if due < t0:  # fell behind (a slow call): the next one goes now, not in a burst
                due = t0 + interval
    finally:
        conn.close()
    return {"latencies_ns": lat}


def _veth(name: str, peer: str) -> dict[str, Any]:
    return {"link": {"name": name, "class": "veth", "peer": peer}}


def op_churn(cmd: dict[str, Any]) -> dict[str, Any]:
    conn = Connection(cmd["path"], timeout=60)
    tag: str = cmd["tag"]
    try:
        _sleep_until(cmd["start_at"])
        end = cmd["start_at"] + int(cmd["duration"] * 1e9)
        cycles = 0
        while time.monotonic_ns() < end:
            name, peer = f"{tag}c{cycles % 1000}", f"{tag}d{cycles % 1000}"
            _ok(conn, encode_call("io.linkbroker.CreateLink", _veth(name, peer)))
            _ok(conn, encode_call("io.linkbroker.DeleteLink", {"name": name}))
            cycles += 1
        elapsed = (time.monotonic_ns() - cmd["start_at"]) / 1e9
    finally:
        conn.close()
    return {"cycles": cycles, "elapsed": elapsed}


def op_create(cmd: dict[str, Any]) -> dict[str, Any]:
    tag: str = cmd["tag"]
    calls = [encode_call("io.linkbroker.CreateLink", _veth(f"{tag}{i}", f"{tag}{i}p"))
             for i in range(cmd["count"])]
    conn = Connection(cmd["path"], timeout=60)
    times: list[int] = []
    try:
        _sleep_until(cmd["start_at"])
        for call in calls:
            t0 = time.monotonic_ns()
            _ok(conn, call)
            times.append(time.monotonic_ns() - t0)
    finally:
        conn.close()
    return {"times_ns": times, "finished_at": time.monotonic_ns()}


def op_kernel_create(cmd: dict[str, Any]) -> dict[str, Any]:
    tag: str = cmd["tag"]
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC,
                         socket.NETLINK_ROUTE)
    sock.bind((0, 0))
    times: list[int] = []
    try:
        _sleep_until(cmd["start_at"])
        for i in range(cmd["count"]):
            attrs, _, _ = link_attrs({"ifname": f"{tag}{i}", "peer": {"ifname": f"{tag}{i}p"}},
                                     "veth")
            t0 = time.monotonic_ns()
            exchange(sock, link_message(RTM_NEWLINK, i + 1, flags=NLM_F_CREATE | NLM_F_EXCL,
                                        attrs=attrs), f"create {tag}{i}")
            times.append(time.monotonic_ns() - t0)
    finally:
        sock.close()
    return {"times_ns": times, "finished_at": time.monotonic_ns()}


OPS = {"paced": op_paced, "churn": op_churn, "create": op_create,
       "kernel_create": op_kernel_create}


def main() -> None:
    for line in sys.stdin:
        cmd: dict[str, Any] = json.loads(line)
        try:
            reply: dict[str, Any] = {"ok": True} if cmd["op"] == "ping" else OPS[cmd["op"]](cmd)
        except Exception:
            reply = {"exception": traceback.format_exc()}
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
