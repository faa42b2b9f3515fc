"""Scenario 2: the cost of a write: a veth across two zones, created and deleted.

Three ways of the same kernel work, interleaved iteration by iteration so drift hits all alike:
- linkbroker: CreateLink (veth, one end in zone A, its peer in zone B) + DeleteLink, from the
  global zone through the typed client;
- pyroute2 directly: one RTM_NEWLINK sent on a netlink socket inside A placing the peer into B
  with net_ns_fd, and one RTM_DELLINK by name (the kernel's floor for this work);
- the same two messages built with struct (broker._rtnl) on a raw socket inside A: the floor
  without pyroute2's own Python cost (shown beside the goals, which the issue set against
  pyroute2's);
- `ip -n A link add NAME type veth peer name PEER netns B` + `ip -n A link del NAME`.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from typing import Any

from pyroute2 import IPRoute

from bench._common import Broker, Config, Lab, progress, ratio, run, summarize
from bench._report import Goal, Row
from broker import _rtnl
from broker.client import Client, LinkSpec
from zones._ns import run_in_netns


def run_write(lab: Lab, cfg: Config, broker: Broker) -> dict[str, Any]:
    za, zb = f"{lab.prefix}wa", f"{lab.prefix}wb"
    lab.add_namespaces([za, zb])
    client = Client(broker.socket)
    fd_a = os.open(f"/run/netns/{za}", os.O_RDONLY | os.O_CLOEXEC)
    fd_b = os.open(f"/run/netns/{zb}", os.O_RDONLY | os.O_CLOEXEC)
    sock = run_in_netns(fd_a, lambda: socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM,
                                                    socket.NETLINK_ROUTE))
    ipr = IPRoute(fileno=sock.detach())
    raw = run_in_netns(fd_a, lambda: socket.socket(socket.AF_NETLINK, socket.SOCK_RAW,
                                                   socket.NETLINK_ROUTE))
    p = lab.prefix
    try:
        client.boot_zone(za, netns=za)
        client.boot_zone(zb, netns=zb)

        def broker_pair(i: int) -> tuple[float, float]:
            t0 = time.perf_counter()
            client.create_link(LinkSpec(name=f"{p}A{i}", class_="veth", zone=za,
                                        peer=f"{p}B{i}", peer_zone=zb))
            t1 = time.perf_counter()
            client.delete_link(f"{p}A{i}", zone=za)
            return t1 - t0, time.perf_counter() - t1

        def pyroute2_pair(i: int) -> tuple[float, float]:
            t0 = time.perf_counter()
            ipr.link("add", ifname=f"{p}P{i}", kind="veth",
                     peer={"ifname": f"{p}Q{i}", "net_ns_fd": fd_b})
            t1 = time.perf_counter()
            ipr.link("del", ifname=f"{p}P{i}")
            return t1 - t0, time.perf_counter() - t1

        def raw_pair(i: int) -> tuple[float, float]:
            attrs, _, _ = _rtnl.link_attrs({"ifname": f"{p}R{i}", "peer": {
                "ifname": f"{p}S{i}", "net_ns_fd": fd_b}}, "veth")
            name = _rtnl.link_attrs({"ifname": f"{p}R{i}"})[0]
            t0 = time.perf_counter()
            _rtnl.exchange(raw, _rtnl.link_message(
                _rtnl.RTM_NEWLINK, 2 * i + 1, flags=_rtnl.NLM_F_CREATE | _rtnl.NLM_F_EXCL,
                attrs=attrs), "create")
            t1 = time.perf_counter()
            _rtnl.exchange(raw, _rtnl.link_message(_rtnl.RTM_DELLINK, 2 * i + 2, attrs=name),
                           "delete")
            return t1 - t0, time.perf_counter() - t1

        def ip_pair(i: int) -> tuple[float, float]:
            t0 = time.perf_counter()
            run(["ip", "-n", za, "link", "add", f"{p}I{i}", "type", "veth", "peer", "name",
                 f"{p}J{i}", "netns", zb])
            t1 = time.perf_counter()
            run(["ip", "-n", za, "link", "del", f"{p}I{i}"])
            return t1 - t0, time.perf_counter() - t1

        ways: dict[str, Callable[[int], tuple[float, float]]] = {
            "broker": broker_pair, "pyroute2": pyroute2_pair, "raw": raw_pair, "ip": ip_pair}
        for fn in ways.values():  # warm-up: one of each, not counted
            fn(9999)
        times: dict[str, dict[str, list[float]]] = {
            k: {"create": [], "delete": [], "total": []} for k in ways}
        deadline = time.monotonic() + (40 if cfg.quick else 120)
        done = 0
        for i in range(cfg.write_n):
            if time.monotonic() > deadline:
                break
            for key, fn in ways.items():
                c, d = fn(i)
                times[key]["create"].append(c * 1000)
                times[key]["delete"].append(d * 1000)
                times[key]["total"].append((c + d) * 1000)
            done += 1
            if done % max(1, cfg.write_n // 4) == 0:
                progress(f"write: {done}/{cfg.write_n} iterations")
    finally:
        ipr.close()
        raw.close()
        client.close()
        os.close(fd_a)
        os.close(fd_b)
    res: dict[str, Any] = {
        "iterations": done,
        "ms": {k: {part: summarize(v) for part, v in d.items()} for k, d in times.items()},
    }
    med = {k: res["ms"][k]["total"]["median"] for k in ways}
    res["ratios"] = {
        "broker_over_pyroute2": ratio(med["broker"], med["pyroute2"]),
        "broker_over_ip": ratio(med["broker"], med["ip"]),
        "create_broker_over_pyroute2": ratio(res["ms"]["broker"]["create"]["median"],
                                             res["ms"]["pyroute2"]["create"]["median"]),
        "delete_broker_over_pyroute2": ratio(res["ms"]["broker"]["delete"]["median"],
                                             res["ms"]["pyroute2"]["delete"]["median"]),
        "broker_over_raw": ratio(med["broker"], med["raw"]),
        "create_broker_over_raw": ratio(res["ms"]["broker"]["create"]["median"],
                                        res["ms"]["raw"]["create"]["median"]),
    }
    progress(f"write: create+delete median broker {med['broker']:.1f} ms, pyroute2 "
             f"{med['pyroute2']:.1f} ms, raw {med['raw']:.1f} ms, ip {med['ip']:.1f} ms")
    return res


def write_goals(results: dict[str, Any]) -> list[Goal]:
    """Issue 19's write goals, against the same messages sent by pyroute2 (the baseline the
    issue measured), interleaved; the raw-socket floor is shown beside them (write_rows)."""
    write = results.get("write")
    if not write or "broker_over_raw" not in write["ratios"]:
        return []
    r = write["ratios"]
    return [
        Goal("write_12", "veth across two zones, create+delete, within 1.2x of one RTM_NEWLINK "
             "+ one RTM_DELLINK (pyroute2, interleaved)", r["broker_over_pyroute2"], 1.2, "<=",
             "x", r["broker_over_pyroute2"] <= 1.2),
        Goal("write_create", "veth across two zones, create alone within 1.5x of one "
             "RTM_NEWLINK (pyroute2, interleaved)", r["create_broker_over_pyroute2"], 1.5,
             "<=", "x", r["create_broker_over_pyroute2"] <= 1.5),
    ]


def write_rows(results: dict[str, Any], goal_list: list[Goal]) -> list[Row]:
    write = results.get("write")
    if not write or "raw" not in write["ms"]:
        return []
    g = {x.key: x for x in goal_list}
    ms, r = write["ms"], write["ratios"]
    return [
        Row("2 write", "create+delete (issue 19: <= 1.2x of pyroute2's two messages)",
            f"{ms['broker']['total']['median']:.2f} ms",
            f"pyroute2 {ms['pyroute2']['total']['median']:.2f} ms",
            f"{r['broker_over_pyroute2']:.2f}x", "<= 1.2x", g["write_12"].shown()),
        Row("2 write", "  create only (issue 19: <= 1.5x of pyroute2's RTM_NEWLINK)",
            f"{ms['broker']['create']['median']:.2f} ms",
            f"pyroute2 {ms['pyroute2']['create']['median']:.2f} ms",
            f"{r['create_broker_over_pyroute2']:.2f}x", "<= 1.5x", g["write_create"].shown()),
        Row("2 write", "create+delete vs the same messages on a raw socket",
            f"{ms['broker']['total']['median']:.2f} ms",
            f"raw {ms['raw']['total']['median']:.2f} ms", f"{r['broker_over_raw']:.2f}x",
            "info"),
        Row("2 write", "  create only vs one raw RTM_NEWLINK",
            f"{ms['broker']['create']['median']:.2f} ms",
            f"raw {ms['raw']['create']['median']:.2f} ms",
            f"{r['create_broker_over_raw']:.2f}x", "info"),
    ]
