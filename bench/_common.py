"""What every scenario shares: the lab (namespaces, processes and files the benchmark makes,
all removed afterwards), the broker process, zone workers, statistics and progress lines.

Everything the benchmark makes is named with one per-run prefix (`lbb` + 4 hex digits): network
namespaces `PREFIX...`, link names inside them, a temporary work directory. Cleanup kills only
the processes this run started (by their Popen objects) and deletes only its own namespaces.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import select
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from broker._wire import FrameBuffer, encode_call

ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = ROOT / "bench"

_T0 = time.monotonic()


def progress(msg: str) -> None:
    """One progress line on stderr, stamped with the time since the run began."""
    print(f"[{time.monotonic() - _T0:7.1f}s] {msg}", file=sys.stderr, flush=True)


def run(cmd: Sequence[str], *, check: bool = True, timeout: float = 120,
        stdin_text: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(cmd), check=check, capture_output=True, text=True,
                          timeout=timeout, input=stdin_text)


def summarize(samples: Sequence[float]) -> dict[str, float]:
    """Median and spread of samples (any unit); empty input gives n=0 and NaNs."""
    if not samples:
        nan = float("nan")
        return {"n": 0, "median": nan, "p10": nan, "p90": nan, "p99": nan, "mean": nan,
                "min": nan}
    ordered = sorted(samples)

    def pct(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    return {
        "n": len(ordered),
        "median": statistics.median(ordered),
        "p10": pct(0.10),
        "p90": pct(0.90),
        "p99": pct(0.99),
        "mean": statistics.fmean(ordered),
        "min": ordered[0],
    }


def with_best(pooled: list[float], round_medians: list[float]) -> dict[str, Any]:
    """The pooled summary, plus `best`: the lowest of the rounds' medians. Other work on the
    machine only ever adds time, so the best round is the least disturbed one; broker and
    baselines alternate round by round and are all judged by their best."""
    out: dict[str, Any] = summarize(pooled)
    out["best"] = min(round_medians) if round_medians else float("nan")
    out["round_medians"] = round_medians
    return out


def ratio(value: float, baseline: float) -> float:
    return value / baseline if baseline > 0 else float("nan")


@dataclass
class Config:
    """Counts and durations of one run: --quick shrinks every one of them."""

    quick: bool
    lat_seconds: float  # one single-client latency run
    lat_max_calls: int
    lat_rounds: int  # broker and baselines alternate this many times
    thr_seconds: float  # one multi-client throughput run
    thr_rounds: int
    levels: tuple[int, ...]
    spawn_n: int  # `ip -j link show` spawns
    pyroute2_n: int  # pyroute2 dumps
    write_n: int  # create+delete pairs per method
    ident_n: int
    scale_steps: tuple[int, ...]  # zones (each with 10 links) at each measuring step
    scale_probe_seconds: float
    links_per_zone: int = 10

    @classmethod
    def make(cls, quick: bool) -> Config:
        if quick:
            return cls(quick=True, lat_seconds=0.6, lat_max_calls=6000, lat_rounds=1,
                       thr_seconds=0.6, thr_rounds=1, levels=(1, 8, 64), spawn_n=20, pyroute2_n=20,
                       write_n=20, ident_n=1000, scale_steps=(0, 10, 25, 50, 100),
                       scale_probe_seconds=0.5)
        return cls(quick=False, lat_seconds=1.0, lat_max_calls=30000, lat_rounds=5,
                   thr_seconds=1.5, thr_rounds=2, levels=(1, 8, 64), spawn_n=80, pyroute2_n=60,
                   write_n=80, ident_n=5000,
                   scale_steps=(0, 10, 50, 100, 200, 400, 600, 800, 1000),
                   scale_probe_seconds=1.5)


@dataclass
class Lab:
    """Owns what the benchmark makes; `cleanup()` removes all of it."""

    prefix: str = field(default_factory=lambda: "lbb" + secrets.token_hex(2))
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="lbb-")))
    procs: list[subprocess.Popen[Any]] = field(default_factory=list)
    namespaces: set[str] = field(default_factory=set)

    def spawn(self, cmd: Sequence[str], **kwargs: Any) -> subprocess.Popen[Any]:
        proc: subprocess.Popen[Any] = subprocess.Popen(list(cmd), **kwargs)
        self.procs.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen[Any], sig: int = signal.SIGTERM,
             grace: float = 15.0) -> int | None:
        """Stop a process this run started; returns its exit status."""
        if proc.poll() is None:
            try:
                proc.send_signal(sig)
                proc.wait(grace)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        if proc in self.procs:
            self.procs.remove(proc)
        return proc.returncode

    def add_namespaces(self, names: Iterable[str], veth_pairs: int = 0) -> None:
        """Make namespaces (lo up) with `veth_pairs` veth pairs inside each, in one `ip -batch`."""
        names = list(names)
        lines: list[str] = []
        for ns in names:
            assert ns.startswith(self.prefix)
            self.namespaces.add(ns)  # recorded first: cleanup tries even if ip fails halfway
            lines.append(f"netns add {ns}")
        for ns in names:
            for i in range(veth_pairs):
                lines.append(f"link add v{i}a netns {ns} type veth peer name v{i}b netns {ns}")
        if lines:
            run(["ip", "-batch", "-"], stdin_text="\n".join(lines) + "\n", timeout=600)

    def del_namespaces(self, names: Iterable[str]) -> None:
        names = [n for n in names if n in self.namespaces]
        if not names:
            return
        lines = [f"netns del {ns}" for ns in names]
        run(["ip", "-force", "-batch", "-"], stdin_text="\n".join(lines) + "\n", check=False,
            timeout=600)
        self.namespaces.difference_update(names)

    def cleanup(self) -> None:
        for proc in list(self.procs):
            try:
                self.stop(proc, grace=5.0)
            except Exception as exc:  # cleanup goes on whatever one step does
                progress(f"cleanup: could not stop pid {proc.pid}: {exc}")
        try:
            self.del_namespaces(sorted(self.namespaces))
        except Exception as exc:
            progress(f"cleanup: namespaces: {exc}")
        leftovers = [n for n in _netns_names() if n.startswith(self.prefix)]
        if leftovers:
            run(["ip", "-force", "-batch", "-"], check=False, timeout=600,
                stdin_text="".join(f"netns del {n}\n" for n in leftovers))
        shutil.rmtree(self.workdir, ignore_errors=True)


def _netns_names() -> list[str]:
    try:
        return os.listdir("/run/netns")
    except OSError:
        return []


PIN_CPU = max(os.sched_getaffinity(0))


class pinned:
    """Pin a server process we started (its main thread: the event loop) to PIN_CPU."""

    def __init__(self, pid: int | None) -> None:
        self.pid = pid
        self.before: set[int] = set()

    def __enter__(self) -> int:
        if self.pid is not None:
            self.before = os.sched_getaffinity(self.pid)
            os.sched_setaffinity(self.pid, {PIN_CPU})
        return PIN_CPU

    def __exit__(self, *_: object) -> None:
        if self.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.sched_setaffinity(self.pid, self.before)


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


@dataclass
class Broker:
    """A linkbrokerd this run started (optionally under cProfile)."""

    lab: Lab
    name: str
    profile_to: Path | None = None
    proc: subprocess.Popen[bytes] | None = None

    @property
    def dir(self) -> Path:
        return self.lab.workdir / self.name

    @property
    def socket(self) -> str:
        return str(self.dir / "broker.sock")

    @property
    def state_dir(self) -> str:
        return str(self.dir / "state")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout: float = 120) -> float:
        """Start and wait until a WhoAmI is answered; returns the seconds that took."""
        self.dir.mkdir(parents=True, exist_ok=True)
        policy = self.dir / "policy.toml"
        if not policy.exists():
            policy.write_text("# benchmark: the built-in defaults\n")
            policy.chmod(0o600)
        daemon = ["-m", "broker._daemon", "--socket", self.socket, "--state-dir",
                  self.state_dir, "--policy", str(policy), "--log-level", "WARNING"]
        prof = [] if self.profile_to is None else ["-m", "cProfile", "-o", str(self.profile_to)]
        with open(self.dir / "broker.log", "ab") as log:
            t0 = time.monotonic()
            self.proc = self.lab.spawn([sys.executable, *prof, *daemon], stdout=log, stderr=log,
                                       stdin=subprocess.DEVNULL, cwd=ROOT)
        deadline = t0 + timeout
        req = encode_call("io.linkbroker.WhoAmI")
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"linkbrokerd exited {self.proc.returncode}:\n{self.log()}")
            try:
                raw_call(self.socket, req, timeout=timeout)
                return time.monotonic() - t0
            except OSError:
                time.sleep(0.005)
        raise RuntimeError(f"linkbrokerd did not answer within {timeout}s:\n{self.log()}")

    def stop(self) -> None:
        if self.proc is not None:
            self.lab.stop(self.proc, grace=60.0)
            self.proc = None

    def rss_mib(self) -> float:
        return rss_kib(self.pid) / 1024

    def log(self) -> str:
        try:
            return (self.dir / "broker.log").read_text(errors="replace")[-4000:]
        except OSError:
            return ""


def raw_call(path: str, request: bytes, timeout: float = 60, limit: int = 1 << 28) -> bytes:
    """One call on a fresh connection; the raw reply frame (any size up to `limit`)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(path)
        sock.sendall(request)
        frames = FrameBuffer(limit)
        while True:
            data = sock.recv(1 << 20)
            if not data:
                raise ConnectionError("connection closed before a reply")
            got = frames.feed(data)
            if got:
                return got[0]
    finally:
        sock.close()


class WorkerPool:
    """Worker processes (bench._worker) running inside one network namespace."""

    def __init__(self, lab: Lab, netns: str, count: int, module: str = "bench._worker") -> None:
        self.lab = lab
        self.netns = netns
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.procs = [
            lab.spawn(["ip", "netns", "exec", netns, sys.executable, "-m", module],
                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT,
                      env=env)
            for _ in range(count)
        ]
        for reply in self.ask_all({"op": "ping"}, timeout=120):
            assert reply.get("ok"), reply

    def _send(self, proc: subprocess.Popen[Any], cmd: dict[str, Any]) -> None:
        assert proc.stdin is not None
        proc.stdin.write(json.dumps(cmd) + "\n")
        proc.stdin.flush()

    def _recv(self, proc: subprocess.Popen[Any], timeout: float) -> dict[str, Any]:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], timeout)
        if not ready:
            raise TimeoutError(f"worker {proc.pid} did not answer within {timeout}s")
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"worker {proc.pid} exited ({proc.poll()})")
        reply: dict[str, Any] = json.loads(line)
        if "exception" in reply:
            raise RuntimeError(f"worker {proc.pid}: {reply['exception']}")
        return reply

    def ask(self, cmd: dict[str, Any], timeout: float = 120, index: int = 0) -> dict[str, Any]:
        self._send(self.procs[index], cmd)
        return self._recv(self.procs[index], timeout)

    def ask_all(self, cmd: dict[str, Any], count: int | None = None,
                timeout: float = 120) -> list[dict[str, Any]]:
        procs = self.procs[: count or len(self.procs)]
        for proc in procs:
            self._send(proc, cmd)
        replies: list[dict[str, Any]] = []
        failed: Exception | None = None
        for proc in procs:  # every reply is read, so none is left for the next command
            try:
                replies.append(self._recv(proc, timeout))
            except RuntimeError as exc:
                failed = failed or exc
        if failed is not None:
            raise failed
        return replies

    def close(self) -> None:
        for proc in self.procs:
            if proc.stdin is not None:
                proc.stdin.close()
        for proc in self.procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(5)
            self.lab.stop(proc, grace=2.0)
