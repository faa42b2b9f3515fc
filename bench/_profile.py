"""Where the broker's time goes: py-spy samples of a running broker, or a cProfile dump.

py-spy (`pip install py-spy`) attaches to the broker's pid while a workload runs and records
collapsed stacks (`--format raw`); idle samples (the loop waiting in epoll) are left out, so
percentages are of the broker's busy time. Self time is the innermost Python frame (C code
such as msgspec's encoder or socket calls counts for the Python function that called it);
inclusive time counts a function once per sample that has it anywhere on the stack.
A cProfile dump (the start-up) is summarized the same way from pstats.
"""

from __future__ import annotations

import pstats
import re
import shutil
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench._common import Lab, progress

_LINE = re.compile(r":\d+\)$")
_OURS = ("broker/", "zones/")


def pyspy() -> str | None:
    return shutil.which("py-spy")


def _frame(frame: str) -> str:
    """`handler (broker/_server.py:123)` -> `handler (broker/_server.py)`."""
    frame = _LINE.sub(")", frame.strip())
    return frame.replace("/work/main/", "")


def summarize_collapsed(path: Path, top: int = 20) -> dict[str, Any]:
    selfc: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = [_frame(f) for f in stack.split(";") if f.strip()]
        total += n
        if frames:
            selfc[frames[-1]] += n
        for f in set(frames):
            if any(mark in f for mark in _OURS) and "_daemon.py" not in f:
                incl[f] += n

    def pct(c: Counter[str]) -> list[tuple[str, float]]:
        return [(f, 100.0 * n / total) for f, n in c.most_common(top)] if total else []

    return {"samples": total, "self_pct": pct(selfc), "inclusive_pct": pct(incl)}


def record(lab: Lab, pid: int, name: str, workload: Callable[[], object],
           rate: int = 500) -> dict[str, Any] | None:
    """Sample `pid` with py-spy while `workload()` runs; None when py-spy is missing/fails."""
    exe = pyspy()
    if exe is None:
        progress("profile: py-spy not found (pip install py-spy); skipped")
        return None
    out = lab.workdir / f"{name}.collapsed"
    spy = lab.spawn([exe, "record", "--pid", str(pid), "--rate", str(rate), "--format", "raw",
                     "--output", str(out), "--nonblocking", "--duration", "600"],
                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    time.sleep(1.0)  # py-spy attaches
    try:
        workload()
    finally:
        lab.stop(spy, sig=2, grace=30)  # SIGINT: py-spy writes what it sampled
    if not out.exists():
        err = spy.stderr.read() if spy.stderr is not None else ""
        progress(f"profile: py-spy wrote nothing: {err.strip()[-300:]}")
        return None
    summary = summarize_collapsed(out)
    summary["tool"] = "py-spy"
    return summary


def _short(path: str) -> str:
    for marker in ("/work/main/", "site-packages/", "lib/python3.11/"):
        if marker in path:
            path = path.split(marker, 1)[1]
    return path


def summarize_pstats(path: Path, top: int = 20) -> dict[str, Any]:
    """Self time over all functions; inclusive time over the broker's own (broker/, zones/),
    as a share of the wall time of the profiled run minus the loop's idle epoll waits."""
    st = pstats.Stats(str(path))
    rows: list[tuple[str, int, float, float, bool]] = []
    stats: dict[Any, Any] = st.stats  # type: ignore[attr-defined]
    for (file, line, func), (_cc, nc, tt, ct, _callers) in stats.items():
        ours = file.startswith(str(Path(__file__).resolve().parent.parent))
        rows.append((f"{func} ({_short(file)}:{line})", nc, tt, ct, ours))
    total = sum(r[2] for r in rows)
    idle = sum(r[2] for r in rows if "of 'select.epoll' objects" in r[0])
    busy = max(total - idle, 1e-9)
    by_tt = sorted(rows, key=lambda r: r[2], reverse=True)
    by_ct = sorted((r for r in rows if r[4] and "_daemon.py" not in r[0]),
                   key=lambda r: r[3], reverse=True)
    return {
        "tool": "cProfile",
        "busy_s": busy,
        "self_pct": [(r[0], 100 * r[2] / busy) for r in by_tt
                     if "select.epoll" not in r[0]][:top],
        "inclusive_pct": [(r[0], 100 * r[3] / busy) for r in by_ct][:top],
        "calls": {r[0]: r[1] for r in by_ct[:top]},
    }


def format_profile(title: str, summary: dict[str, Any], top: int = 12) -> str:
    lines = [f"{title} ({summary.get('tool')}; "
             + (f"{summary['samples']} busy samples" if "samples" in summary
                else f"{summary.get('busy_s', 0):.2f} s busy") + ")",
             "  self time:"]
    lines += [f"    {p:5.1f}%  {f}" for f, p in summary["self_pct"][:top]]
    lines.append("  inclusive (the project's own functions):")
    calls = summary.get("calls", {})
    lines += [f"    {p:5.1f}%  {f}" + (f"  [{calls[f]} calls]" if f in calls else "")
              for f, p in summary["inclusive_pct"][:top]]
    return "\n".join(lines)
