"""Scenario `hostile` (issue 12, finding 5): one zone makes 20,000 links behind the broker's
back and exits; another zone's WhoAmI latency and the broker's memory, phase by phase.

The hostile zone is a process zone (`unshare --net sleep`), booted by pid, so that its exit is
the real thing: the broker notices through the pidfd and halts it. Its links are veth pairs
made with one `ip -batch` inside its namespace (how a zone's root makes links fastest). The calm
zone is a netns zone with a sampler inside that calls WhoAmI every 2 ms on one connection and
stamps each answer with CLOCK_MONOTONIC, so the orchestrator can cut the samples by phase:

  quiet      before anything happens (the baseline the others are compared with)
  burst      while `ip -batch` makes the links (one RTM_NEWLINK per link reaches the broker)
  settle     until the broker's table holds what it will adopt (the default limit, 1,024)
  exit       from the hostile process's death until 3 s after the zone is gone from
             ListZones (the kernel destroys its namespace and links meanwhile)

The broker's RSS is sampled every 50 ms (and VmHWM read at the end). Goals (the issue's): the
calm zone's WhoAmI p99 under 50 ms in every phase; the broker's memory bounded: its growth
at the peak under 64 MiB and back within 16 MiB of the start once the zone is gone.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from typing import Any

from bench._common import ROOT, Broker, Config, Lab, progress, rss_kib, run, summarize
from broker.client import Client

_SAMPLER = """
import json, os, sys, time
from broker.client import Client
out = []
with Client(sys.argv[1], timeout=60) as c:
    while not os.path.exists(sys.argv[2]):
        t0 = time.monotonic()
        c.who_am_i()
        t1 = time.monotonic()
        out.append((t1, t1 - t0))
        time.sleep(0.002)
print(json.dumps(out))
"""


def _hwm_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def run_hostile(lab: Lab, cfg: Config) -> dict[str, Any]:
    links = 2_000 if cfg.quick else 20_000
    progress(f"hostile: one zone makes {links:,} links behind the broker's back and exits")
    broker = Broker(lab, "hostile")
    broker.start()
    calm_ns = f"{lab.prefix}calm"
    lab.add_namespaces([calm_ns])
    holder = lab.spawn(["unshare", "--net", "sleep", "3600"], stdin=subprocess.DEVNULL)
    time.sleep(0.2)
    with Client(broker.socket, timeout=120) as gz:
        gz.boot_zone("calm", netns=calm_ns)
        gz.boot_zone("hostile", pid=holder.pid, attach=False)
    start_kib = rss_kib(broker.pid)
    rss: list[tuple[float, int]] = []
    stop_rss = threading.Event()

    def sample_rss() -> None:
        while not stop_rss.is_set():
            try:
                rss.append((time.monotonic(), rss_kib(broker.pid)))
            except OSError:
                return
            time.sleep(0.05)

    stop_file = lab.workdir / "hostile-stop"
    sampler = lab.spawn(["ip", "netns", "exec", calm_ns, sys.executable, "-c", _SAMPLER,
                         broker.socket, str(stop_file)], stdout=subprocess.PIPE, text=True,
                        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    watcher = threading.Thread(target=sample_rss, daemon=True)
    watcher.start()
    marks: dict[str, float] = {}
    try:
        time.sleep(2.0)
        marks["burst"] = time.monotonic()
        script = "".join(f"link add h{i}a type veth peer name h{i}b\n"
                         for i in range(links // 2))
        run(["nsenter", "-t", str(holder.pid), "-n", "ip", "-batch", "-"], stdin_text=script,
            timeout=1200)
        marks["settle"] = time.monotonic()
        with Client(broker.socket, timeout=120) as gz:
            deadline = time.monotonic() + 300
            held = 0
            while time.monotonic() < deadline:
                held = len(gz.list_links("hostile"))
                if held >= min(links, 1024):
                    break
                time.sleep(0.2)
            time.sleep(1.0)  # a last coalesced resync, if one was due
            marks["exit"] = time.monotonic()
            lab.stop(holder, grace=5.0)
            while time.monotonic() < deadline + 300:
                if "hostile" not in {z.name for z in gz.list_zones()}:
                    break
                time.sleep(0.05)
            gone_after = time.monotonic() - marks["exit"]
            time.sleep(3.0)  # the kernel destroys the namespace and its links meanwhile
            marks["end"] = time.monotonic()
        time.sleep(1.0)
        end_kib = rss_kib(broker.pid)
        hwm_kib = _hwm_kib(broker.pid)
    finally:
        stop_file.touch()
        stop_rss.set()
        out, _ = sampler.communicate(timeout=60)
        lab.procs.remove(sampler) if sampler in lab.procs else None
        broker.stop()
    samples: list[tuple[float, float]] = [tuple(s) for s in json.loads(out or "[]")]
    phases = {"quiet": (0.0, marks["burst"]), "burst": (marks["burst"], marks["settle"]),
              "settle": (marks["settle"], marks["exit"]), "exit": (marks["exit"], marks["end"])}
    result: dict[str, Any] = {"links": links, "adopted": held,
                              "burst_seconds": marks["settle"] - marks["burst"],
                              "settle_seconds": marks["exit"] - marks["settle"],
                              "halt_seconds": gone_after, "whoami_ms": {}}
    for phase, (t0, t1) in phases.items():
        lat = [d * 1e3 for t, d in samples if t0 <= t < t1]
        result["whoami_ms"][phase] = {k: round(v, 3) for k, v in summarize(lat).items()}
        result["whoami_ms"][phase]["max"] = round(max(lat), 3) if lat else float("nan")
    peak_kib = max([k for _, k in rss] + [hwm_kib])
    result["rss_mib"] = {"start": round(start_kib / 1024, 1), "peak": round(peak_kib / 1024, 1),
                         "end": round(end_kib / 1024, 1)}
    worst_p99 = max(v["p99"] for v in result["whoami_ms"].values())
    result["goals"] = {
        "calm WhoAmI p99 < 50 ms in every phase": worst_p99 < 50.0,
        "RSS growth at the peak < 64 MiB": (peak_kib - start_kib) / 1024 < 64,
        "RSS back within 16 MiB of the start": (end_kib - start_kib) / 1024 < 16,
    }
    progress("hostile: " + format_hostile(result).replace("\n", "\n    "))
    return result


def format_hostile(r: dict[str, Any]) -> str:
    lines = [f"{r['links']:,} links made in {r['burst_seconds']:.1f} s, {r['adopted']} adopted "
             f"(settled {r['settle_seconds']:.1f} s later); zone gone {r['halt_seconds']:.1f} s "
             "after its process exited",
             "calm zone WhoAmI (ms):   n     p50     p99     max"]
    for phase, s in r["whoami_ms"].items():
        lines.append(f"  {phase:<8} {s['n']:>12} {s['median']:>7.2f} {s['p99']:>7.2f} "
                     f"{s['max']:>7.2f}")
    m = r["rss_mib"]
    lines.append(f"broker RSS (MiB): start {m['start']}, peak {m['peak']}, end {m['end']}")
    lines += [f"  {'met ' if ok else 'MISSED'} {goal}" for goal, ok in r["goals"].items()]
    return "\n".join(lines)
