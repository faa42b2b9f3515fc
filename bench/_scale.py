"""Scenario 3: scale, up to 1,000 zones and 10,000 links (--quick: 100 zones, 1,000 links).

A fresh broker; a probe zone with 10 links and one client process inside it. Then, step by
step, more zones, each a namespace holding 5 veth pairs (10 links) made in one `ip -batch`
before BootZone adopts them. At each step:
- every BootZone's time (from the global zone), against the zones already booted;
- ListLinks from the probe zone (its 10 links) in a tight loop: it must not grow with the total
  (twice: as scheduled, and with the broker and the client pinned to one CPU, free of the
  cross-CPU wake-up that makes single-call latencies bimodal on this VM);
- ListLinks from the global zone (every link; a large reply), a few times;
- the broker's RSS (VmRSS of /proc/PID/status);
- a restart with that state: SIGTERM, start again, time until a WhoAmI is answered
  (the start-up reconciliation: reopen every zone, dump its links, reconcile, rewrite rows).
"""

from __future__ import annotations

import json
import time
from typing import Any

from bench._common import (
    Broker,
    Config,
    Lab,
    WorkerPool,
    pinned,
    progress,
    ratio,
    raw_call,
    summarize,
    with_best,
)
from broker._wire import encode_call
from broker.client import Client


def run_scale(lab: Lab, cfg: Config, profile: str = "auto") -> dict[str, Any]:
    """`profile`: always, never, or auto (when the last start-up misses its 5 s goal)."""
    broker = Broker(lab, "scale")
    started_empty = broker.start()
    probe = f"{lab.prefix}p"
    per_zone = cfg.links_per_zone // 2
    lab.add_namespaces([probe], veth_pairs=per_zone)
    client = Client(broker.socket)
    made: list[str] = []
    pool: WorkerPool | None = None
    try:
        client.boot_zone(probe, netns=probe)
        pool = WorkerPool(lab, probe, 1)
        request = encode_call("io.linkbroker.ListLinks", {})
        reply = json.loads(pool.ask({"op": "capture", "path": broker.socket,
                                     "request": request.decode()})["reply"])
        probe_links = len(reply["parameters"]["links"])
        if probe_links != cfg.links_per_zone:
            raise RuntimeError(f"the probe zone sees {probe_links} links")
        boots: list[tuple[int, float]] = []
        steps: list[dict[str, Any]] = []
        deadline = time.monotonic() + (90 if cfg.quick else 600)
        for target in cfg.scale_steps:
            if time.monotonic() > deadline:
                progress(f"scale: time budget spent; stopping before {target} zones")
                break
            new = [f"{lab.prefix}s{i}" for i in range(len(made), target)]
            ns_seconds = 0.0
            if new:
                t0 = time.monotonic()
                lab.add_namespaces(new, veth_pairs=per_zone)
                ns_seconds = time.monotonic() - t0
                for name in new:
                    t1 = time.perf_counter()
                    client.boot_zone(name, netns=name)
                    boots.append((len(made), (time.perf_counter() - t1) * 1000))
                    made.append(name)
            step = _measure_step(cfg, broker, pool, request)
            step.update(zones=len(made), namespaces_seconds=ns_seconds,
                        boot_ms=summarize([ms for n, ms in boots if n >= len(made) - len(new)])
                        if new else None)
            client.close()
            broker.stop()
            step["startup_s"] = broker.start(timeout=300)
            step["rss_after_restart_mib"] = broker.rss_mib()
            client = Client(broker.socket)
            steps.append(step)
            progress(f"scale: {len(made):4} zones, {step['total_links']:5} links: ListLinks "
                     f"(10 links) {step['probe_us']['best']:6.1f} us (pinned "
                     f"{step['probe_pinned_us']['best']:5.1f} us), global ListLinks "
                     f"{step['global_ms']:7.1f} ms, RSS {step['rss_mib']:6.1f} MiB, "
                     f"start-up {step['startup_s']:5.2f} s")
        profiled = None
        if steps and (profile == "always"
                      or (profile == "auto" and steps[-1]["startup_s"] >= 5.0)):
            # One more restart, under cProfile (not the one measured).
            client.close()
            broker.stop()
            broker.profile_to = lab.workdir / "startup.prof"
            progress("scale: one more restart under cProfile")
            broker.start(timeout=600)
            broker.stop()  # the profile is written when the profiled broker exits
            broker.profile_to = None
            profiled = str(lab.workdir / "startup.prof")
    finally:
        client.close()
        if pool is not None:
            pool.close()
        broker.stop()
        progress(f"scale: removing {len(made) + 1} namespaces")
        lab.del_namespaces([probe, *made])

    first, last = steps[0], steps[-1]
    return {
        "started_empty_s": started_empty,
        "probe_links": probe_links,
        "boots": boots,
        "steps": steps,
        "profile": profiled,
        "ratios": {
            "probe_listlinks_last_over_first": ratio(last["probe_pinned_us"]["best"],
                                                     first["probe_pinned_us"]["best"]),
            "probe_listlinks_unpinned_last_over_first": ratio(last["probe_us"]["best"],
                                                              first["probe_us"]["best"]),
            "boot_last_over_first": ratio(
                summarize([ms for n, ms in boots if n >= 0.9 * len(made)])["median"],
                summarize([ms for n, ms in boots if n < max(10, 0.1 * len(made))])["median"]),
        },
        "max": {"zones": last["zones"], "links": last["total_links"],
                "rss_mib": max(last["rss_mib"], last["rss_after_restart_mib"]),
                "startup_s": last["startup_s"]},
    }


def _probe(cfg: Config, broker: Broker, pool: WorkerPool, request: bytes, cpu: int | None
           ) -> list[float]:
    start_at = time.monotonic_ns() + 200_000_000
    r = pool.ask({"op": "loop", "path": broker.socket, "request": request.decode(),
                  "start_at": start_at, "duration": cfg.scale_probe_seconds / 6,
                  "max_calls": 50_000, "record": True, "cpu": cpu}, timeout=120)
    return [x / 1000 for x in r["latencies_ns"]]


def _measure_step(cfg: Config, broker: Broker, pool: WorkerPool, request: bytes
                  ) -> dict[str, Any]:
    """The probe: 3 short bursts as scheduled and 3 pinned, alternating; each mode is judged
    by its best burst's median (other work on the machine only adds time)."""
    time.sleep(0.3)  # let the kernel's work of the last batch settle
    runs: dict[str, list[list[float]]] = {"free": [], "pinned": []}
    for _ in range(3):
        runs["free"].append(_probe(cfg, broker, pool, request, None))
        with pinned(broker.pid) as cpu:
            runs["pinned"].append(_probe(cfg, broker, pool, request, cpu))
    probe_us, probe_pinned_us = (
        with_best([x for burst in runs[k] for x in burst],
                  [summarize(burst)["median"] for burst in runs[k]])
        for k in ("free", "pinned"))
    try:
        with Client(broker.socket) as c:
            typed_client_global = f"ok: {len(c.list_links())} links"
    except Exception as exc:  # what the typed client (linkadm) gets from the global zone
        typed_client_global = f"{type(exc).__name__}: {exc}"[:200]
    times: list[float] = []
    size = total = 0
    for _ in range(3):
        t0 = time.perf_counter()
        frame = raw_call(broker.socket, request, timeout=120)
        times.append((time.perf_counter() - t0) * 1000)
        size = len(frame)
    body = json.loads(frame)
    total = len(body["parameters"]["links"])
    return {"probe_us": probe_us, "probe_pinned_us": probe_pinned_us,
            "typed_client_global_listlinks": typed_client_global,
            "global_ms": summarize(times)["median"], "global_reply_bytes": size,
            "total_links": total, "rss_mib": broker.rss_mib()}
