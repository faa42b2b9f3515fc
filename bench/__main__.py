"""`python3 -m bench [--quick]`: every benchmark of issue 7 in one run.

Scenarios (each beside its baselines, in this run, reported as ratios):
  read   WhoAmI and ListLinks (100 links) from a zone: linkbroker vs an asyncio+msgspec floor,
         a C floor, Docker's API, `ip -j link show` spawned, pyroute2; 1, 8 and 64 clients
  ident  caller identification's share of a read call
  write  a veth across two zones, create + delete: linkbroker vs pyroute2 vs `ip`
  scale  up to 1,000 zones / 10,000 links (--quick: 100 / 1,000): BootZone, ListLinks of a
         10-link zone, RSS, start-up
  mixed  a calm zone's ListLinks quiet and while 1 and 4 other zones churn veths; veth
         creates/s from 1 and 4 zones at once, beside raw RTM_NEWLINK
  cni    linkbroker-cni ADD+DEL vs the reference bridge plugin + host-local, interleaved, and
         where the plugin's time goes (python start, imports, host-local)
  hostile  one zone makes 20,000 links behind the broker's back (--quick: 2,000) and exits:
         another zone's WhoAmI p50/p99 per phase, the broker's RSS (issue 12, finding 5)
Writes bench/results/results.json, bench/results/*.png and bench/results/profiles.txt; prints
progress on stderr and the table on stdout. Needs root (namespaces) and, for the C floor, gcc.
Everything it makes is prefixed `lbb` + 4 hex digits and removed at the end, even on failure.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType
from typing import Any

from bench import _profile
from bench._breakdown import breakdown, format_breakdown
from bench._cni import cni_goals, cni_rows, run_cni
from bench._common import BENCH_DIR, ROOT, Broker, Config, Lab, progress
from bench._hostile import format_hostile, run_hostile
from bench._ident import run_ident
from bench._mixed import mixed_goals, mixed_rows, run_mixed
from bench._read import measure, run_read, setup
from bench._report import goals, goals_text, markdown_table, plots, rows, text_table
from bench._scale import run_scale
from bench._write import run_write, write_goals, write_rows
from broker._wire import encode_call
from broker.client import Client, LinkSpec

SCENARIOS = ("read", "ident", "write", "scale", "mixed", "cni", "hostile")


def _interrupt(signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def _versions() -> dict[str, Any]:
    def ver(mod: str) -> str:
        try:
            from importlib.metadata import version

            return version(mod)
        except Exception:
            return "?"

    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True, check=False).stdout.strip()
    return {"python": platform.python_version(), "kernel": platform.release(),
            "cpus": os.cpu_count(), "msgspec": ver("msgspec"), "pyroute2": ver("pyroute2"),
            "matplotlib": ver("matplotlib"), "commit": commit,
            "date": time.strftime("%Y-%m-%d %H:%M:%S %Z")}


def _loop_workload(pool: Any, path: str, method: str, seconds: float, clients: int = 1
                   ) -> Any:
    def work() -> None:
        start_at = time.monotonic_ns() + 300_000_000
        pool.ask_all({"op": "loop", "path": path, "start_at": start_at, "duration": seconds,
                      "request": encode_call(f"io.linkbroker.{method}", {}).decode(),
                      "max_calls": 10_000_000, "record": False}, count=clients,
                     timeout=seconds + 120)
    return work


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="a short run (under ~2 minutes): fewer calls, 100 zones")
    parser.add_argument("--only", default=",".join(SCENARIOS),
                        help=f"comma-separated scenarios out of {','.join(SCENARIOS)}")
    parser.add_argument("--out", default=str(BENCH_DIR / "results"),
                        help="where results.json, the plots and profiles.txt go")
    parser.add_argument("--profile", choices=("auto", "always", "never"), default="auto",
                        help="py-spy/cProfile the broker: auto = where a goal is missed "
                        "(and the read and write paths on a full run)")
    parser.add_argument("--replot", action="store_true",
                        help="only redo the table and plots from OUT/results.json")
    args = parser.parse_args(argv)
    if args.replot:
        return _replot(Path(args.out))
    only = {s.strip() for s in args.only.split(",") if s.strip()}
    if unknown := only - set(SCENARIOS):
        parser.error(f"unknown scenarios: {', '.join(sorted(unknown))}")
    if os.geteuid() != 0:
        print("bench: needs root (it makes network namespaces)", file=sys.stderr)
        return 2
    if shutil.which("ip") is None:
        print("bench: needs iproute2's `ip`", file=sys.stderr)
        return 2
    cfg = Config.make(args.quick)
    outdir = Path(args.out)
    outdir.mkdir(parents=True, exist_ok=True)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _interrupt)

    lab = Lab()
    t_start = time.monotonic()
    results: dict[str, Any] = {"meta": {**_versions(), "quick": cfg.quick,
                                        "prefix": lab.prefix, "config": vars(cfg)}}
    profiles: dict[str, Any] = {}
    progress(f"bench: {'quick' if cfg.quick else 'full'} run, prefix {lab.prefix}, "
             f"scenarios {', '.join(s for s in SCENARIOS if s in only)}")
    try:
        if only & {"read", "ident", "write", "mixed"}:
            broker = Broker(lab, "main")
            broker.start()
            pool = None
            if "read" in only:
                results["read"], rs = run_read(lab, cfg, broker)
                pool = rs.pool
                kept = results["read"]["latency_pinned_us"]["WhoAmI"]["broker"]["best"]
            elif "ident" in only:
                rs = setup(lab, cfg, broker, 1)
                pool = rs.pool
                r = measure(rs, rs.targets[0], "WhoAmI", clients=1, seconds=cfg.lat_seconds,
                            max_calls=cfg.lat_max_calls, record=True, pin=True)
                lat = sorted(r["latencies_ns"])
                kept = lat[len(lat) // 2] / 1000
            if "ident" in only and pool is not None:
                results["ident"] = run_ident(lab, cfg, broker, pool, kept)
            if "read" in only and pool is not None:
                missed = {g.key for g in goals(results) if g.met is False}
                want = args.profile == "always" or (
                    args.profile == "auto" and (not cfg.quick or bool(missed)))
                if want:
                    secs = 2.0 if cfg.quick else 4.0
                    for m in ("ListLinks", "WhoAmI"):
                        progress(f"profile: py-spy on the broker during {secs:.0f} s of {m}")
                        prof = _profile.record(lab, broker.pid, f"read-{m}",
                                               _loop_workload(pool, broker.socket, m, secs))
                        if prof is not None:
                            profiles[f"read {m}, 1 client"] = prof
                    if missed & {"gain8_WhoAmI", "gain8_ListLinks"} or args.profile == "always":
                        progress("profile: py-spy on the broker during ListLinks, 8 clients")
                        prof = _profile.record(
                            lab, broker.pid, "read-8",
                            _loop_workload(pool, broker.socket, "ListLinks", secs, 8))
                        if prof is not None:
                            profiles["read ListLinks, 8 clients"] = prof
            if pool is not None:
                pool.close()
            if "read" in only:
                progress("breakdown: the read path in-process, stage by stage")
                results["breakdown"] = breakdown(500 if cfg.quick else 2000)
            if "write" in only:
                results["write"] = run_write(lab, cfg, broker)
                missed = {g.key for g in goals(results) if g.met is False}
                if args.profile == "always" or (
                        args.profile == "auto" and ("write" in missed or not cfg.quick)):
                    za, zb = f"{lab.prefix}wa", f"{lab.prefix}wb"
                    n = 20 if cfg.quick else 60

                    def writes() -> None:
                        with Client(broker.socket) as c:
                            for i in range(n):
                                c.create_link(LinkSpec(name=f"{lab.prefix}X{i}", class_="veth",
                                                       zone=za, peer=f"{lab.prefix}Y{i}",
                                                       peer_zone=zb))
                                c.delete_link(f"{lab.prefix}X{i}", zone=za)

                    progress(f"profile: py-spy on the broker during {n} veth create+delete")
                    prof = _profile.record(lab, broker.pid, "write", writes, rate=1000)
                    if prof is not None:
                        profiles["write: veth create+delete"] = prof
            if "mixed" in only:
                results["mixed"] = run_mixed(lab, cfg, broker)
            broker.stop()
        if "cni" in only:
            results["cni"] = run_cni(lab, cfg)
        if "hostile" in only:
            results["hostile"] = run_hostile(lab, cfg)
        if "scale" in only:
            results["scale"] = run_scale(lab, cfg, profile=args.profile)
            path = results["scale"].get("profile")
            if path:
                profiles["start-up with the largest state"] = _profile.summarize_pstats(
                    Path(path))
    finally:
        progress("bench: cleaning up (processes, namespaces, work directory)")
        lab.cleanup()
    results["meta"]["seconds"] = time.monotonic() - t_start

    results["profiles"] = profiles
    return _report(results, outdir)


def _replot(outdir: Path) -> int:
    results = json.loads((outdir / "results.json").read_text(), parse_constant=float)
    return _report(_nan(results), outdir)


def _nan(x: Any) -> Any:
    """null back to NaN where a number was NaN (JSON has no NaN)."""
    if x is None:
        return float("nan")
    if isinstance(x, dict):
        return {k: _nan(v) if k not in ("profile", "error") else v for k, v in x.items()}
    if isinstance(x, list):
        return [_nan(v) for v in x]
    return x


def _report(results: dict[str, Any], outdir: Path) -> int:
    goal_list = goals(results) + write_goals(results) + mixed_goals(results) + cni_goals(results)
    table = (rows(results, goal_list) + write_rows(results, goal_list)
             + mixed_rows(results, goal_list) + cni_rows(results, goal_list))
    results["goals"] = [vars(g) for g in goal_list]
    results["table"] = [vars(r) for r in table]
    profiles = results.get("profiles", {})
    (outdir / "results.json").write_text(json.dumps(_clean(results), indent=1, default=str))
    (outdir / "table.md").write_text(markdown_table(table) + "\n")
    texts = [_profile.format_profile(k, v) for k, v in profiles.items()]
    if "breakdown" in results:
        texts.insert(0, format_breakdown(results["breakdown"]))
    prof_text = "\n\n".join(texts)
    (outdir / "profiles.txt").write_text(prof_text + "\n")
    made = plots(results, outdir)

    print()
    print(text_table(table))
    print()
    print("Goals:")
    print(goals_text(goal_list))
    if prof_text:
        print()
        print(prof_text)
    if "hostile" in results:
        print()
        print(format_hostile(results["hostile"]))
    print()
    print(f"wrote {outdir / 'results.json'}, {outdir / 'table.md'}, "
          f"{outdir / 'profiles.txt'} and {len(made)} plots "
          f"({', '.join(Path(p).name for p in made)}) in {results['meta']['seconds']:.0f} s")
    return 0


def _clean(x: object) -> object:
    """JSON without NaN (null instead)."""
    if isinstance(x, float) and math.isnan(x):
        return None
    if isinstance(x, dict):
        return {str(k): _clean(v) for k, v in x.items()}
    if isinstance(x, list | tuple | set):
        return [_clean(v) for v in x]
    return x


if __name__ == "__main__":
    sys.exit(main())
