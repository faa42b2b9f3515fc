"""Scenario 1: read latency and throughput from inside a zone, beside the floors.

A zone with 100 links (50 veth pairs made inside its namespace before BootZone adopts them) and
up to 64 worker processes inside it. Every target is called with the same request bytes and
answers with the same reply bytes where it can:
- linkbroker: WhoAmI and ListLinks through broker.client.Connection (raw frames, no decoding);
- the Python floor (bench._floor): asyncio + msgspec, replies are the broker's own, captured;
- the machine's floor (bench/floor.c, compiled now): C client and C server, same sizes;
- Docker's Engine API `/_ping` and `/networks` when a daemon answers on /var/run/docker.sock;
- `ip -j link show` spawned in the zone, and a pyroute2 dump in the worker (ListLinks only).
Single-client latencies alternate broker and baselines for `lat_rounds` rounds, each also with
the server and the client pinned to one CPU; throughput is calls/s summed over 1, 8 and 64
client processes started on one shared clock, `thr_rounds` rounds. Each target is judged by its
best round (the least disturbed by other work on the machine).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from bench._common import (
    BENCH_DIR,
    PIN_CPU,
    ROOT,
    Broker,
    Config,
    Lab,
    WorkerPool,
    pinned,
    progress,
    ratio,
    run,
    summarize,
    with_best,
)
from broker._wire import encode_call
from broker.client import Client

METHODS = ("WhoAmI", "ListLinks")
DOCKER_SOCKET = "/var/run/docker.sock"
DOCKER_PATHS = {"WhoAmI": "/_ping", "ListLinks": "/networks"}


@dataclass
class Target:
    key: str
    label: str
    kind: str  # varlink | http | c
    paths: dict[str, str]  # method -> socket path
    requests: dict[str, bytes]
    request_bytes: dict[str, int] = field(default_factory=dict)
    pids: dict[str, int] = field(default_factory=dict)  # method -> server pid we may pin


@dataclass
class ReadSetup:
    zone: str
    pool: WorkerPool
    targets: list[Target]
    reply_bytes: dict[str, int]
    cfloor: str | None
    notes: list[str]


def docker_status() -> tuple[bool, str]:
    """Whether a Docker daemon answers /_ping on its socket (2 s at most)."""
    if not os.path.exists(DOCKER_SOCKET):
        return False, f"no {DOCKER_SOCKET}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(2)
    try:
        sock.connect(DOCKER_SOCKET)
        sock.sendall(b"GET /_ping HTTP/1.1\r\nHost: docker\r\nConnection: close\r\n\r\n")
        data = sock.recv(4096)
    except OSError as exc:
        return False, f"{DOCKER_SOCKET}: {exc}"
    finally:
        sock.close()
    if b" 200 " not in data.split(b"\r\n", 1)[0]:
        return False, f"/_ping answered {data[:40]!r}"
    return True, "daemon answered /_ping"


def compile_cfloor(lab: Lab) -> tuple[str | None, str]:
    gcc = shutil.which("gcc") or shutil.which("cc")
    if gcc is None:
        return None, "no gcc: the C floor is skipped"
    out = lab.workdir / "cfloor"
    proc = run([gcc, "-O2", "-o", str(out), str(BENCH_DIR / "floor.c")], check=False)
    if proc.returncode != 0:
        return None, f"gcc failed: {proc.stderr.strip()[:300]}"
    return str(out), f"compiled with {gcc}"


def setup(lab: Lab, cfg: Config, broker: Broker, workers: int) -> ReadSetup:
    zone = f"{lab.prefix}r"
    progress(f"read: namespace {zone} with 50 veth pairs (100 links), BootZone")
    lab.add_namespaces([zone], veth_pairs=50)
    with Client(broker.socket) as client:
        client.boot_zone(zone, netns=zone)
    progress(f"read: starting {workers} client processes inside {zone}")
    pool = WorkerPool(lab, zone, workers)

    requests = {m: encode_call(f"io.linkbroker.{m}", {}) for m in METHODS}
    frames: dict[str, str] = {}
    for m in METHODS:
        reply = pool.ask({"op": "capture", "path": broker.socket,
                          "request": requests[m].decode()})["reply"]
        body = json.loads(reply)
        if "error" in body:
            raise RuntimeError(f"{m} from the zone failed: {reply[:300]}")
        frames[m] = reply
    links = json.loads(frames["ListLinks"])["parameters"]["links"]
    who = json.loads(frames["WhoAmI"])["parameters"]
    if who["zone"] != zone or len(links) != 100:
        raise RuntimeError(f"zone sees itself as {who['zone']} with {len(links)} links")
    reply_bytes = {m: len(frames[m].encode()) + 1 for m in METHODS}

    notes: list[str] = []
    replies_file = lab.workdir / "floor-replies.json"
    replies_file.write_text(json.dumps({f"io.linkbroker.{m}": f for m, f in frames.items()}))
    floor_sock = str(lab.workdir / "pyfloor.sock")
    pyfloor = lab.spawn([sys.executable, "-m", "bench._floor", "--socket", floor_sock,
                         "--replies", str(replies_file)], cwd=ROOT, stdin=subprocess.DEVNULL)
    _wait_socket(floor_sock)
    for m in METHODS:
        got = pool.ask({"op": "capture", "path": floor_sock, "request": requests[m].decode()})
        if got["reply"] != frames[m]:
            raise RuntimeError(f"the floor's {m} reply differs from the broker's")

    targets = [
        Target("broker", "linkbroker", "varlink", dict.fromkeys(METHODS, broker.socket),
               requests, pids=dict.fromkeys(METHODS, broker.pid)),
        Target("pyfloor", "asyncio+msgspec floor", "varlink",
               dict.fromkeys(METHODS, floor_sock), requests,
               pids=dict.fromkeys(METHODS, pyfloor.pid)),
    ]
    cfloor, why = compile_cfloor(lab)
    notes.append(f"C floor: {why}")
    if cfloor is not None:
        paths, pids = {}, {}
        for m in METHODS:
            path = str(lab.workdir / f"cfloor-{m}.sock")
            pids[m] = lab.spawn([cfloor, "serve", path, str(reply_bytes[m])],
                                stdin=subprocess.DEVNULL).pid
            _wait_socket(path)
            paths[m] = path
        targets.append(Target("cfloor", "C floor", "c", paths, requests, pids=pids))
    ok, why = docker_status()
    notes.append(f"Docker Engine API: {why}" + ("" if ok else " (skipped)"))
    if ok:
        http = {m: f"GET {p} HTTP/1.1\r\nHost: docker\r\n\r\n".encode()
                for m, p in DOCKER_PATHS.items()}
        docker = Target("docker", "Docker API", "http", dict.fromkeys(METHODS, DOCKER_SOCKET),
                        http)
        targets.append(docker)
        for m in METHODS:
            body = pool.ask({"op": "capture", "kind": "http", "path": DOCKER_SOCKET,
                             "request": http[m].decode()})["reply"]
            docker.request_bytes[m] = len(body)
        nets = json.loads(pool.ask({"op": "capture", "kind": "http", "path": DOCKER_SOCKET,
                                    "request": http["ListLinks"].decode()})["reply"])
        notes.append(f"Docker /networks lists {len(nets)} networks "
                     f"({docker.request_bytes['ListLinks']} bytes of body)")
    for t in targets:
        if t.key != "docker":
            t.request_bytes = dict.fromkeys(METHODS, 0)
    return ReadSetup(zone, pool, targets, reply_bytes, cfloor, notes)


def _wait_socket(path: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(path)
            return
        except OSError:
            time.sleep(0.02)
        finally:
            probe.close()
    raise RuntimeError(f"nothing answers on {path}")


def measure(s: ReadSetup, target: Target, method: str, *, clients: int, seconds: float,
            max_calls: int, record: bool, pin: bool = False) -> dict[str, Any]:
    """One run: `clients` processes calling from one start time; calls/s and latencies.
    `pin`: the server and the (single) client on one CPU, so no call waits for a wake-up
    on the other CPU."""
    if pin:
        with pinned(target.pids[method]) as cpu:
            return _measure(s, target, method, clients=clients, seconds=seconds,
                            max_calls=max_calls, record=record, cpu=cpu)
    return _measure(s, target, method, clients=clients, seconds=seconds,
                    max_calls=max_calls, record=record, cpu=None)


def _measure(s: ReadSetup, target: Target, method: str, *, clients: int, seconds: float,
             max_calls: int, record: bool, cpu: int | None) -> dict[str, Any]:
    margin = 0.25 + 0.02 * clients
    start_at = time.monotonic_ns() + int(margin * 1e9)
    if target.kind == "c":
        assert s.cfloor is not None
        taskset = [] if cpu is None else ["taskset", "-c", str(cpu)]
        out = run(["ip", "netns", "exec", s.zone, *taskset, s.cfloor, "client",
                   target.paths[method],
                   str(len(target.requests[method])), str(start_at), str(int(seconds * 1e9)),
                   str(max_calls), str(clients), "1" if record else "0"],
                  timeout=seconds + margin + 60).stdout
        counts = [(int(p[1]), int(p[2]) / 1e9) for p in
                  (line.split() for line in out.splitlines()) if p and p[0] == "C"]
        lat = [int(line[2:]) for line in out.splitlines() if line.startswith("L ")]
    else:
        cmd = {"op": "loop", "kind": target.kind, "path": target.paths[method],
               "request": target.requests[method].decode(), "start_at": start_at,
               "duration": seconds, "max_calls": max_calls, "record": record, "cpu": cpu}
        replies = s.pool.ask_all(cmd, count=clients, timeout=seconds + margin + 120)
        counts = [(r["count"], r["elapsed"]) for r in replies]
        lat = [x for r in replies for x in r["latencies_ns"]]
    if len(counts) != clients:
        raise RuntimeError(f"{target.key} {method}: {len(counts)} of {clients} clients reported")
    total = sum(c for c, _ in counts)
    span = max(e for _, e in counts)
    return {"calls": total, "seconds": span, "calls_per_s": total / span if span > 0 else 0.0,
            "latencies_ns": lat}


def run_read(lab: Lab, cfg: Config, broker: Broker) -> tuple[dict[str, Any], ReadSetup]:
    """The measurements, and the setup (its zone workers serve scenario 4 next)."""
    s = setup(lab, cfg, broker, max(cfg.levels))
    return _run(s, cfg), s


def _guarded(s: ReadSetup, out: dict[str, Any], t: Target,
             fn: Callable[[], dict[str, Any]]) -> dict[str, Any] | None:
    """Docker's daemon is not ours: if it goes away mid-run, drop it and say so."""
    if t.key != "docker":
        return fn()
    try:
        return fn()
    except (RuntimeError, OSError, TimeoutError) as exc:
        why = str(exc).strip().splitlines()[-1][:160]
        note = f"Docker Engine API: stopped answering during the run ({why}); dropped"
        progress(f"read: {note}")
        s.notes.append(note)
        s.targets.remove(t)
        out["targets"].pop("docker", None)
        for key in ("latency_us", "latency_pinned_us", "throughput"):
            for by_target in out[key].values():
                by_target.pop("docker", None)
        return None


def _run(s: ReadSetup, cfg: Config) -> dict[str, Any]:
    out: dict[str, Any] = {
        "zone": s.zone, "zone_links": 100, "reply_bytes": s.reply_bytes,
        "targets": {t.key: t.label for t in s.targets}, "notes": s.notes,
        "latency_us": {}, "latency_pinned_us": {}, "throughput": {}, "docker_body_bytes": {},
        "pin_cpu": PIN_CPU,
    }
    for t in s.targets:
        if t.key == "docker":
            out["docker_body_bytes"] = t.request_bytes
    for note in s.notes:
        progress(f"read: {note}")
    for m in METHODS:
        lat: dict[str, list[float]] = {t.key: [] for t in s.targets}
        lat_pinned: dict[str, list[float]] = {t.key: [] for t in s.targets if t.pids}
        best: dict[str, list[float]] = {t.key: [] for t in s.targets}  # round medians
        best_pinned: dict[str, list[float]] = {t.key: [] for t in s.targets if t.pids}
        thr: dict[str, dict[str, list[float]]] = {t.key: {} for t in s.targets}
        for rnd in range(cfg.lat_rounds):
            for t in list(s.targets):
                got = _guarded(s, out, t, partial(
                    measure, s, t, m, clients=1, seconds=cfg.lat_seconds,
                    max_calls=cfg.lat_max_calls, record=True))
                if got is None:
                    continue
                r = got
                lat[t.key] += [x / 1000 for x in r["latencies_ns"]]
                best[t.key].append(summarize(r["latencies_ns"])["median"] / 1000)
                thr[t.key].setdefault("1", []).append(r["calls_per_s"])
                line = (f"read: {m:9} 1 client  round {rnd + 1}/{cfg.lat_rounds} {t.label:22} "
                        f"median {summarize(r['latencies_ns'])['median'] / 1e3:7.1f} us")
                if t.pids:
                    r = measure(s, t, m, clients=1, seconds=cfg.lat_seconds,
                                max_calls=cfg.lat_max_calls, record=True, pin=True)
                    lat_pinned[t.key] += [x / 1000 for x in r["latencies_ns"]]
                    best_pinned[t.key].append(summarize(r["latencies_ns"])["median"] / 1000)
                    thr[t.key].setdefault("1p", []).append(r["calls_per_s"])
                    line += (f", pinned to one CPU "
                             f"{summarize(r['latencies_ns'])['median'] / 1e3:7.1f} us")
                progress(line)
        for rnd in range(cfg.thr_rounds):
            for level in cfg.levels:
                if level == 1:
                    continue
                for t in list(s.targets):
                    got = _guarded(s, out, t, partial(
                        measure, s, t, m, clients=level, seconds=cfg.thr_seconds,
                        max_calls=10_000_000, record=False))
                    if got is None:
                        continue
                    r = got
                    thr[t.key].setdefault(str(level), []).append(r["calls_per_s"])
                    progress(f"read: {m:9} {level:2} clients round {rnd + 1}/{cfg.thr_rounds} "
                             f"{t.label:22} {r['calls_per_s']:8.0f} calls/s")
        keep = {t.key for t in s.targets}
        out["latency_us"][m] = {k: with_best(v, best[k]) for k, v in lat.items() if k in keep}
        out["latency_pinned_us"][m] = {k: with_best(v, best_pinned[k])
                                       for k, v in lat_pinned.items() if k in keep}
        # The best round of each (other work on the machine only takes calls away).
        out["throughput"][m] = {k: {lv: max(v) for lv, v in d.items()}
                                for k, d in thr.items() if k in keep}
    spawn = s.pool.ask({"op": "spawn", "argv": ["ip", "-j", "link", "show"], "n": cfg.spawn_n,
                        "max_seconds": 30}, timeout=120)
    out["ip_spawn_us"] = summarize([x * 1e6 for x in spawn["seconds"]])
    out["ip_spawn_bytes"] = spawn["reply_bytes"]
    progress(f"read: ip -j link show spawned: median {out['ip_spawn_us']['median']:.0f} us "
             f"({spawn['reply_bytes']} bytes)")
    pr = s.pool.ask({"op": "pyroute2", "n": cfg.pyroute2_n, "max_seconds": 30}, timeout=120)
    out["pyroute2_us"] = summarize([x * 1e6 for x in pr["seconds"]])
    out["pyroute2_links"] = pr["links"]
    progress(f"read: pyroute2 dump of {pr['links']} links: median "
             f"{out['pyroute2_us']['median']:.0f} us")
    out["ratios"] = ratios(out)
    return out


def ratios(out: dict[str, Any]) -> dict[str, Any]:
    """Latency ratios (pinned: the goal; as scheduled: beside it) and throughput gains.

    A gain is calls/s with N clients over calls/s of one client pinned with the server on one
    CPU: the single-client rate as scheduled is bimodal on this VM (a wake-up on the other
    CPU costs ~30 µs or not, run by run), the pinned one is steady.
    """
    lat = out["latency_us"]
    pin = out["latency_pinned_us"]
    thr = out["throughput"]
    res: dict[str, Any] = {}
    for m in METHODS:
        b = lat[m]["broker"]["best"]
        bp = pin[m]["broker"]["best"]
        r: dict[str, float] = {
            "broker_over_pyfloor": ratio(bp, pin[m]["pyfloor"]["best"]),
            "broker_over_pyfloor_unpinned": ratio(b, lat[m]["pyfloor"]["best"]),
        }
        if "cfloor" in pin[m]:
            r["broker_over_cfloor"] = ratio(bp, pin[m]["cfloor"]["best"])
            r["broker_over_cfloor_unpinned"] = ratio(b, lat[m]["cfloor"]["best"])
        if "docker" in lat[m]:
            r["docker_over_broker"] = ratio(lat[m]["docker"]["best"], b)
        if m == "ListLinks":
            r["ip_spawn_over_broker"] = ratio(out["ip_spawn_us"]["median"], b)
            r["pyroute2_over_broker"] = ratio(out["pyroute2_us"]["median"], b)
        gains: dict[str, dict[str, float]] = {}
        for key, by_level in thr[m].items():
            one = by_level.get("1p", by_level["1"])
            gains[key] = {lv: ratio(v, one) for lv, v in by_level.items() if lv != "1p"}
        r["gain8_broker_over_floor"] = ratio(gains["broker"].get("8", float("nan")),
                                             gains["pyfloor"].get("8", float("nan")))
        r["gain64_broker_over_floor"] = ratio(gains["broker"].get("64", float("nan")),
                                              gains["pyfloor"].get("64", float("nan")))
        # Issue 19: 8 clients' calls/s against the floor's own, not against its gain.
        r["calls8_broker_over_floor"] = ratio(thr[m]["broker"].get("8", float("nan")),
                                              thr[m]["pyfloor"].get("8", float("nan")))
        res[m] = {"ratios": r, "gains": gains}
    return res
