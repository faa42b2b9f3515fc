"""Scenario `cni`: linkbroker-cni ADD+DEL against the reference `bridge` plugin with
`host-local` (Debian's containernetworking-plugins, Go), exec'd the same way into the same kind
of namespace, interleaved in one run (issue 17's goal: within 1.5x).

Each round makes two fresh namespaces (untimed) and times, in alternating order, one plugin's
ADD then DEL in one and the other's in the other, each through a fork+exec from this process
with the CNI_* environment and the configuration on stdin, as a runtime does. Where the
plugin's time goes: Python's own start (`python3 -IS`), the plugin's imports (and the heaviest
of them, from `-X importtime`), host-local's ADD and DEL exec'd alone; the rest is the broker
calls and the kernel work they ask for.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

from bench._common import ROOT, Broker, Config, Lab, progress, run, summarize
from bench._report import Goal, Row

__all__ = ["cni_goals", "cni_rows", "run_cni"]

SYSTEM_PLUGINS = Path("/usr/lib/cni")
PYTHON = "/usr/bin/python3" if os.access("/usr/bin/python3", os.X_OK) else "python3"
GOAL = 1.5
# The installed wrapper's text (scripts/install.sh writes the same lines).
WRAPPER = ("#!{python} -IS\nimport sys\nsys.path.insert(0, {root!r})\n"
           "from clients.cni.plugin import main\nsys.exit(main())\n")


def _exec(plugin: Path, command: str, conf: dict[str, Any], cid: str, netns: str
          ) -> tuple[float, subprocess.CompletedProcess[bytes]]:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "CNI_COMMAND": command,
           "CNI_CONTAINERID": cid, "CNI_NETNS": netns, "CNI_IFNAME": "eth0",
           "CNI_PATH": str(plugin.parent)}
    data = json.dumps(conf).encode()
    t0 = time.perf_counter_ns()
    done = subprocess.run([str(plugin)], input=data, env=env, capture_output=True,
                          timeout=60, check=False)
    took = (time.perf_counter_ns() - t0) / 1e6
    if done.returncode != 0:
        raise RuntimeError(f"{plugin.name} {command} failed: {done.stdout!r} {done.stderr!r}")
    return took, done


def _spawn(cmd: list[str]) -> float:
    t0 = time.perf_counter_ns()
    subprocess.run(cmd, capture_output=True, check=True, timeout=60)
    return (time.perf_counter_ns() - t0) / 1e6


def _importtime() -> list[dict[str, Any]]:
    """The plugin's imports by cumulative time, from one `-X importtime` run."""
    code = f"import sys; sys.path.insert(0, {str(ROOT)!r}); import clients.cni.plugin"
    err = subprocess.run([PYTHON, "-IS", "-X", "importtime", "-c", code], capture_output=True,
                         text=True, check=True, timeout=60).stderr
    rows: list[tuple[int, int, str]] = []
    for line in err.splitlines():
        parts = line.removeprefix("import time:").split("|")
        if len(parts) == 3 and parts[0].strip().isdigit():
            rows.append((int(parts[1]), int(parts[0]), parts[2].rstrip()))
    return [{"module": name, "self_us": own, "cumulative_us": cum}
            for cum, own, name in sorted(rows, reverse=True)[:12]]


class _InProcess:
    """ADD and DEL through the plugin's own `run` in this process (no exec, no imports), with
    each broker call timed: what is left once Python's start and imports are paid."""

    def __init__(self, plugin: Path, conf: dict[str, Any]) -> None:
        from clients.cni import _varlink
        from clients.cni.plugin import run as plugin_run

        self.run = plugin_run
        self.data = json.dumps(conf).encode()
        self.path = str(plugin.parent)
        self.per_call: dict[str, list[float]] = {}
        self._varlink = _varlink
        self._real = _varlink.Connection.call
        per_call, real = self.per_call, self._real

        def timed(conn: Any, method: str, **params: Any) -> dict[str, Any]:
            t0 = time.perf_counter_ns()
            try:
                return real(conn, method, **params)
            finally:
                per_call.setdefault(method, []).append((time.perf_counter_ns() - t0) / 1e6)

        _varlink.Connection.call = timed  # type: ignore[method-assign,assignment]

    def add_del(self, cid: str, netns: str) -> tuple[float, float]:
        env = {"CNI_CONTAINERID": cid, "CNI_NETNS": netns, "CNI_IFNAME": "eth0",
               "CNI_PATH": self.path, "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        took = []
        for command in ("ADD", "DEL"):
            t0 = time.perf_counter_ns()
            self.run({**env, "CNI_COMMAND": command}, self.data)
            took.append((time.perf_counter_ns() - t0) / 1e6)
        return took[0], took[1]

    def close(self) -> None:
        self._varlink.Connection.call = self._real  # type: ignore[method-assign]


def run_cni(lab: Lab, cfg: Config) -> dict[str, Any]:
    if not (SYSTEM_PLUGINS / "bridge").exists() or not (SYSTEM_PLUGINS / "host-local").exists():
        progress("cni: skipped (containernetworking-plugins is not installed)")
        return {"skipped": "containernetworking-plugins is not installed"}
    n = 20 if cfg.quick else 60
    broker = Broker(lab, "cni")
    broker.start()
    plugins = lab.workdir / "cni-plugins"
    plugins.mkdir()
    ours = plugins / "linkbroker-cni"
    ours.write_text(WRAPPER.format(python=PYTHON, root=str(ROOT)))
    ours.chmod(0o755)
    for name in ("bridge", "host-local"):
        (plugins / name).symlink_to(SYSTEM_PLUGINS / name)
    ref = plugins / "bridge"
    lb_bridge, ref_bridge = f"{lab.prefix}cb", f"{lab.prefix}rb"

    def conf(kind: str, bridge: str, subnet: str, data: str) -> dict[str, Any]:
        c: dict[str, Any] = {"cniVersion": "1.0.0", "name": f"{lab.prefix}{data}",
                             "type": kind, "bridge": bridge, "mtu": 1500,
                             "ipam": {"type": "host-local", "ranges": [[{"subnet": subnet}]],
                                      "dataDir": str(lab.workdir / f"ipam-{data}")}}
        if kind == "linkbroker-cni":
            c["socket"] = broker.socket
        else:
            c.update(isGateway=False, ipMasq=False)
        return c

    lb_conf = conf("linkbroker-cni", lb_bridge, "198.51.100.0/24", "lb")
    ref_conf = conf("bridge", ref_bridge, "203.0.113.0/24", "ref")
    hl_conf = {**ref_conf, "name": f"{lab.prefix}hl",
               "ipam": {**ref_conf["ipam"], "dataDir": str(lab.workdir / "ipam-hl")}}
    keys = ("linkbroker", "bridge", "in_process", "host-local")
    times: dict[str, dict[str, list[float]]] = {
        k: {"add": [], "del": [], "total": []} for k in keys}
    spawns = {
        "python_start": [PYTHON, "-IS", "-c", "pass"],
        "python_import": [PYTHON, "-IS", "-c", f"import sys; sys.path.insert(0, "
                          f"{str(ROOT)!r}); import clients.cni.plugin"],
        "python_site": [PYTHON, "-c", "pass"],
    }
    spawned: dict[str, list[float]] = {k: [] for k in spawns}
    inproc = _InProcess(ours, lb_conf)

    def contender(key: str, i: int) -> tuple[float, float]:
        cid = f"{lab.prefix}{key}{i}"
        if key == "host-local":
            a, _ = _exec(plugins / "host-local", "ADD", hl_conf, cid, "/run/netns/unused")
            d, _ = _exec(plugins / "host-local", "DEL", hl_conf, cid, "/run/netns/unused")
            return a, d
        ns = f"{lab.prefix}c{key[0]}{i}"
        lab.add_namespaces([ns])
        try:
            if key == "in_process":
                return inproc.add_del(cid, f"/run/netns/{ns}")
            plugin, c = (ours, lb_conf) if key == "linkbroker" else (ref, ref_conf)
            add, _ = _exec(plugin, "ADD", c, cid, f"/run/netns/{ns}")
            delete, _ = _exec(plugin, "DEL", c, cid, f"/run/netns/{ns}")
            return add, delete
        finally:
            lab.del_namespaces([ns])

    progress(f"cni: {n} rounds of ADD+DEL: linkbroker-cni, bridge+host-local, the plugin "
             "in-process, host-local alone and python3's start, in rotating order")
    try:
        for i in range(n + 2):  # the first two rounds warm the page cache and are dropped
            steps: list[str] = [*keys, *spawns]
            steps = steps[i % len(steps):] + steps[:i % len(steps)]
            for step in steps:
                if step in spawns:
                    took = _spawn(spawns[step])
                    if i >= 2:
                        spawned[step].append(took)
                    continue
                add, delete = contender(step, i)
                if i >= 2:
                    times[step]["add"].append(add)
                    times[step]["del"].append(delete)
                    times[step]["total"].append(add + delete)
        top = _importtime()
    finally:
        inproc.close()
        broker.stop()
        for name in (lb_bridge, ref_bridge):
            run(["ip", "link", "del", name], check=False)
    ms = {k: {m: summarize(v) for m, v in d.items()} for k, d in times.items()}
    lb, rf = ms["linkbroker"]["total"]["median"], ms["bridge"]["total"]["median"]
    start = summarize(spawned["python_start"])["median"]
    where = {
        "python_start_ms": start,
        "python_start_with_site_ms": summarize(spawned["python_site"])["median"],
        "imports_ms": summarize(spawned["python_import"])["median"] - start,
        "host_local_add_ms": ms["host-local"]["add"]["median"],
        "host_local_del_ms": ms["host-local"]["del"]["median"],
    }
    in_process = {"add_ms": ms["in_process"]["add"]["median"],
                  "del_ms": ms["in_process"]["del"]["median"],
                  "calls_ms": {m: summarize(v)["median"] for m, v in inproc.per_call.items()},
                  "calls_per_round": {m: len(v) / (n + 2)
                                      for m, v in inproc.per_call.items()}}
    return {"n": n, "ms": ms, "ratio": lb / rf, "where": where, "importtime": top,
            "in_process": in_process}


def cni_goals(results: dict[str, Any]) -> list[Goal]:
    cni = results.get("cni")
    if not cni or "ratio" not in cni:
        return []
    r = cni["ratio"]
    return [Goal("cni_15", "linkbroker-cni ADD+DEL within 1.5x of the bridge plugin + "
                 "host-local (interleaved, same namespaces)", r, GOAL, "<=", "x", r <= GOAL)]


def cni_rows(results: dict[str, Any], goal_list: list[Goal]) -> list[Row]:
    cni = results.get("cni")
    if not cni or "ratio" not in cni:
        return []
    g = {x.key: x for x in goal_list}
    lb, rf, w = cni["ms"]["linkbroker"], cni["ms"]["bridge"], cni["where"]
    rows = [Row("cni", "ADD+DEL (issue 17: <= 1.5x of bridge+host-local)",
                f"{lb['total']['median']:.1f} ms", f"bridge {rf['total']['median']:.1f} ms",
                f"{cni['ratio']:.2f}x", "<= 1.5x", g["cni_15"].shown())]
    for m in ("add", "del"):
        rows.append(Row("cni", f"  {m.upper()} alone", f"{lb[m]['median']:.1f} ms",
                        f"bridge {rf[m]['median']:.1f} ms",
                        f"{lb[m]['median'] / rf[m]['median']:.2f}x", "info"))
    rows.append(Row("cni", "  of which: python3 -IS start, plugin imports, host-local ADD",
                    f"{w['python_start_ms']:.1f} + {w['imports_ms']:.1f} + "
                    f"{w['host_local_add_ms']:.1f} ms",
                    f"python3 with site: {w['python_start_with_site_ms']:.1f} ms", "", "info"))
    ip = cni.get("in_process")
    if ip:
        calls = ", ".join(f"{m} {v:.1f}" for m, v in sorted(
            ip["calls_ms"].items(), key=lambda kv: -kv[1]))
        rows.append(Row("cni", "  in-process ADD / DEL (no exec, no imports)",
                        f"{ip['add_ms']:.1f} / {ip['del_ms']:.1f} ms", f"calls (ms): {calls}",
                        "", "info"))
    return rows
