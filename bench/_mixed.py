"""Scenario "mixed": one zone's writes against another zone's reads, and writes from many zones.

- A calm zone (10 links) calls ListLinks every millisecond from a process inside it, while
  nothing else happens ("quiet"), while one other zone creates and deletes veths in a loop
  through the broker ("churn1"), and while four other zones do ("churn4"). The three modes
  alternate round by round. Its latency under churn against its own quiet latency, measured in
  the same run, says whether one zone's writes stall another zone's reads.
- Aggregate create throughput: 1 zone and 4 zones (fresh ones each time) creating veths at
  once through the broker, beside the same veths made by raw RTM_NEWLINK from processes in 1
  and 4 namespaces (no broker): the kernel's own rate, which its rtnl lock bounds.

Every client is a bench._mixed_worker process inside its zone. The veths made for the
throughput runs stay until the run ends (their namespaces are deleted then: the kernel tears
them down in batches, far faster than one DeleteLink each).
"""

from __future__ import annotations

import math
import os
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from bench._common import Broker, Config, Lab, WorkerPool, progress, ratio, summarize
from bench._report import Goal, Row
from broker.client import Client

MODES = (("quiet", 0), ("churn1", 1), ("churn4", 4))
_WORKER = "bench._mixed_worker"


def _ask_together(jobs: list[tuple[WorkerPool, dict[str, Any]]], timeout: float
                  ) -> list[dict[str, Any]]:
    """Send each pool its command at once and wait for every answer."""
    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        futures = [pool.submit(wp.ask, cmd, timeout) for wp, cmd in jobs]
        return [f.result() for f in futures]


def _summary_ms(lat_ns: list[int]) -> dict[str, float]:
    out = summarize([x / 1e6 for x in lat_ns])
    out["max"] = max(lat_ns) / 1e6 if lat_ns else float("nan")
    return out


def run_mixed(lab: Lab, cfg: Config, broker: Broker) -> dict[str, Any]:
    p = lab.prefix
    rounds = 1 if cfg.quick else 3
    seconds = 1.0 if cfg.quick else 2.0
    count = 60 if cfg.quick else 150
    create_rounds = 1 if cfg.quick else 2
    calm = f"{p}mq"
    churners = [f"{p}mh{i}" for i in range(4)]
    progress(f"mixed: calm zone {calm} (10 links) and 4 churning zones")
    lab.add_namespaces([calm], veth_pairs=5)
    lab.add_namespaces(churners)
    with Client(broker.socket) as client:
        for zone in (calm, *churners):
            client.boot_zone(zone, netns=zone)
    calm_pool = WorkerPool(lab, calm, 1, module=_WORKER)
    churn_pools = [WorkerPool(lab, z, 1, module=_WORKER) for z in churners]
    res: dict[str, Any] = {"rounds": rounds, "seconds": seconds, "count": count}
    lat: dict[str, list[list[int]]] = {m: [] for m, _ in MODES}
    cycles: dict[str, list[list[float]]] = {m: [] for m, n in MODES if n}
    try:
        for r in range(rounds):
            for mode, n in MODES:
                start = time.monotonic_ns() + 500_000_000
                jobs = [(wp, {"op": "churn", "path": broker.socket, "tag": f"{p}h{i}",
                              "start_at": start, "duration": seconds + 0.4})
                        for i, wp in enumerate(churn_pools[:n])]
                jobs.append((calm_pool, {"op": "paced", "path": broker.socket,
                                         "interval": 0.001, "start_at": start + 200_000_000,
                                         "duration": seconds}))
                answers = _ask_together(jobs, timeout=seconds + 120)
                lat[mode].append(answers[-1]["latencies_ns"])
                if n:
                    cycles[mode].append([a["cycles"] / a["elapsed"] for a in answers[:-1]])
                got = _summary_ms(answers[-1]["latencies_ns"])
                progress(f"mixed: round {r + 1}/{rounds} {mode}: calm ListLinks p50 "
                         f"{got['median']:.2f} ms p99 {got['p99']:.2f} ms"
                         + (f", churn {sum(cycles[mode][-1]):.1f} cycles/s" if n else ""))
    finally:
        calm_pool.close()
        for wp in churn_pools:
            wp.close()
    res["latency_ms"] = {}
    for mode, runs in lat.items():
        per_round = [_summary_ms(x) for x in runs]
        best = min(per_round, key=lambda s: s["p99"])
        res["latency_ms"][mode] = {"pooled": _summary_ms([x for run in runs for x in run]),
                                   "rounds": per_round, "best": best}
    res["churn_cycles_per_s"] = {
        mode: {"per_zone": [statistics.fmean(c) for c in runs],
               "total": [sum(c) for c in runs]} for mode, runs in cycles.items()}
    res["create"] = _create_throughput(lab, broker, count, create_rounds)
    quiet, one = res["latency_ms"]["quiet"]["best"], res["latency_ms"]["churn1"]["best"]
    res["ratios"] = {
        "churn1_p50_over_quiet": ratio(one["median"], quiet["median"]),
        "churn4_p50_over_quiet": ratio(res["latency_ms"]["churn4"]["best"]["median"],
                                       quiet["median"]),
        "create4_over_create1": ratio(res["create"]["broker"]["4"]["best"],
                                      res["create"]["broker"]["1"]["best"]),
        "kernel4_over_kernel1": ratio(res["create"]["kernel"]["4"]["best"],
                                      res["create"]["kernel"]["1"]["best"]),
    }
    return res


def _create_throughput(lab: Lab, broker: Broker, count: int, rounds: int) -> dict[str, Any]:
    """Creates per second, summed over zones writing at once, broker and raw kernel turn
    about; fresh namespaces for every run, so each starts from the same link count."""
    out: dict[str, Any] = {way: {str(n): {"rounds": [], "call_ms": []} for n in (1, 4)}
                           for way in ("broker", "kernel")}
    for r in range(rounds):
        for n in (1, 4):
            for way in ("broker", "kernel"):
                zones = [f"{lab.prefix}t{r}{way[0]}{n}{i}" for i in range(n)]
                lab.add_namespaces(zones)
                if way == "broker":
                    with Client(broker.socket) as client:
                        for zone in zones:
                            client.boot_zone(zone, netns=zone)
                pools = [WorkerPool(lab, z, 1, module=_WORKER) for z in zones]
                cpu_before = _thread_cpu(broker.pid) if way == "broker" else {}
                try:
                    start = time.monotonic_ns() + 500_000_000
                    op = "create" if way == "broker" else "kernel_create"
                    answers = _ask_together(
                        [(wp, {"op": op, "path": broker.socket, "count": count,
                               "tag": f"{lab.prefix}{r}{n}{i}", "start_at": start})
                         for i, wp in enumerate(pools)], timeout=300)
                finally:
                    for wp in pools:
                        wp.close()
                wall = (max(a["finished_at"] for a in answers) - start) / 1e9
                rate = n * count / wall
                out[way][str(n)]["rounds"].append(rate)
                if way == "broker":  # where a create's CPU goes: the loop vs the workers
                    used = _thread_cpu(broker.pid)
                    out[way][str(n)].setdefault("cpu_ms_per_create", []).append({
                        k: [(used[k][j] - cpu_before.get(k, (0.0, 0.0))[j]) * 1e3
                            / (n * count) for j in (0, 1)] for k in used})
                out[way][str(n)]["call_ms"].extend(t / 1e6 for a in answers
                                                   for t in a["times_ns"])
                progress(f"mixed: round {r + 1}/{rounds} {way} creates from {n} zone(s): "
                         f"{rate:.0f}/s")
    for way in out.values():
        for entry in way.values():
            entry["best"] = max(entry["rounds"])
            entry["call_ms"] = summarize(entry["call_ms"])
    return out


def _thread_cpu(pid: int) -> dict[str, tuple[float, float]]:
    """The broker's CPU seconds (user, system) so far: "loop" (the main thread) and
    "threads" (the netlink workers, the default executor, openers: Python 3.11 names its
    threads only for itself, so /proc cannot tell them apart)."""
    tick = os.sysconf("SC_CLK_TCK")
    out: dict[str, tuple[float, float]] = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue  # a thread that ended meanwhile
        role = "loop" if tid == str(pid) else "threads"
        user, system = out.get(role, (0.0, 0.0))
        out[role] = (user + int(fields[11]) / tick, system + int(fields[12]) / tick)
    return out


def mixed_goals(results: dict[str, Any]) -> list[Goal]:
    """Issue 19's goals for this scenario, from one run's results."""
    mixed = results.get("mixed")
    if not mixed:
        return []
    lat = mixed["latency_ms"]
    quiet, one = lat["quiet"]["best"], lat["churn1"]["best"]
    limit = 3 * quiet["median"] + 0.1

    def goal(key: str, text: str, value: float, limit: float, *, op: str, unit: str
             ) -> Goal:
        met = None if math.isnan(value) else (value <= limit if op == "<=" else value >= limit)
        return Goal(key, text, value, limit, op, unit, met)

    return [
        goal("mixed_p50", "calm zone's ListLinks p50 under another zone's veth churn <= 3x "
             "its quiet p50 + 0.1 ms", one["median"], limit, op="<=", unit="ms"),
        goal("mixed_p99", "calm zone's ListLinks p99 under another zone's veth churn <= 3 ms",
             one["p99"], 3.0, op="<=", unit="ms"),
        goal("mixed_create4", "4 zones creating veths at once >= 1.5x the creates/s of 1 zone",
             mixed["ratios"]["create4_over_create1"], 1.5, op=">=", unit="x"),
    ]


def mixed_rows(results: dict[str, Any], goal_list: list[Goal]) -> list[Row]:
    mixed = results.get("mixed")
    if not mixed:
        return []
    g = {x.key: x for x in goal_list}
    lat = mixed["latency_ms"]
    quiet = lat["quiet"]["best"]
    rows: list[Row] = []
    for mode, label in (("churn1", "1 zone"), ("churn4", "4 zones")):
        b = lat[mode]["best"]
        rate = mixed["churn_cycles_per_s"][mode]["total"]
        rows.append(Row(
            "5 mixed", f"calm ListLinks p50 while {label} churn veths "
            f"({max(rate):.1f} cycles/s)", f"{b['median']:.2f} ms",
            f"quiet {quiet['median']:.2f} ms", f"{ratio(b['median'], quiet['median']):.2f}x",
            "<= 3x + 0.1 ms" if mode == "churn1" else "info",
            g["mixed_p50"].shown() if mode == "churn1" else ""))
        rows.append(Row(
            "5 mixed", f"calm ListLinks p99 (max) while {label} churn veths",
            f"{b['p99']:.2f} ms ({b['max']:.1f})",
            f"quiet {quiet['p99']:.2f} ms ({quiet['max']:.1f})", "-",
            "<= 3 ms" if mode == "churn1" else "info",
            g["mixed_p99"].shown() if mode == "churn1" else ""))
    c = mixed["create"]
    per_call = (c["broker"]["1"]["call_ms"]["median"], c["kernel"]["1"]["call_ms"]["median"])
    rows.append(Row("5 mixed", "veth creates/s: 4 zones at once vs 1 zone",
                    f"{c['broker']['4']['best']:.0f}/s vs {c['broker']['1']['best']:.0f}/s",
                    f"kernel {c['kernel']['4']['best']:.0f}/s vs "
                    f"{c['kernel']['1']['best']:.0f}/s",
                    f"{mixed['ratios']['create4_over_create1']:.2f}x (kernel "
                    f"{mixed['ratios']['kernel4_over_kernel1']:.2f}x)", ">= 1.5x",
                    g["mixed_create4"].shown()))
    rows.append(Row("5 mixed", "veth create, 1 zone, per call (median)",
                    f"{per_call[0]:.2f} ms", f"raw RTM_NEWLINK {per_call[1]:.2f} ms",
                    f"{ratio(*per_call):.2f}x", "info"))
    for n in ("1", "4"):
        rounds = c["broker"][n].get("cpu_ms_per_create")
        if not rounds:
            continue
        best = rounds[c["broker"][n]["rounds"].index(c["broker"][n]["best"])]
        shown = ", ".join(f"{role} {u:.2f}+{s:.2f}" for role, (u, s) in sorted(best.items()))
        rows.append(Row("5 mixed", f"broker CPU ms per create, {n} zone(s) (user+sys by thread)",
                        shown, "-", "-", "info"))
    return rows
    return rows
