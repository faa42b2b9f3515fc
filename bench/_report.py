"""The goals, the table (text and Markdown) and the plots, from one run's results."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

METHODS = ("WhoAmI", "ListLinks")


@dataclass
class Goal:
    key: str
    text: str
    value: float
    limit: float
    op: str  # "<=", "<", ">="
    unit: str
    met: bool | None  # None: not measured in this run
    note: str = ""

    def shown(self) -> str:
        if self.met is None:
            return "n/a"
        return "met" if self.met else "MISSED"


def _check(value: float, limit: float, op: str) -> bool | None:
    if value is None or math.isnan(value):
        return None
    return {"<=": value <= limit, "<": value < limit, ">=": value >= limit}[op]


def goals(results: dict[str, Any]) -> list[Goal]:
    out: list[Goal] = []

    def add(key: str, text: str, value: float, limit: float, op: str, *, unit: str = "x",
            note: str = "") -> None:
        out.append(Goal(key, text, value, limit, op, unit, _check(value, limit, op), note))

    read = results.get("read")
    if read:
        for m in METHODS:
            r = read["ratios"][m]["ratios"]
            add(f"read_{m}", f"{m} within 1.5x the asyncio+msgspec floor (same reply bytes)",
                r["broker_over_pyfloor"], 1.5, "<=")
        for m in METHODS:
            r = read["ratios"][m]["ratios"]
            add(f"gain8_{m}", f"{m}: 8 clients gain >= 0.8x of the floor's gain",
                r["gain8_broker_over_floor"], 0.8, ">=")
        for m in METHODS:  # issue 19 tightened the two above
            r = read["ratios"][m]["ratios"]
            add(f"read19_{m}", f"(issue 19) {m} within 1.3x the asyncio+msgspec floor, pinned",
                r["broker_over_pyfloor"], 1.3, "<=")
        add("calls8_ListLinks", "(issue 19) ListLinks of 100 links: 8 clients get at least "
            "the floor's calls/s", read["ratios"]["ListLinks"]["ratios"].get(
                "calls8_broker_over_floor", float("nan")), 1.0, ">=")
    write = results.get("write")
    if write:
        add("write", "veth create+delete across two zones within 1.3x raw pyroute2",
            write["ratios"]["broker_over_pyroute2"], 1.3, "<=")
    scale = results.get("scale")
    if scale:
        links = scale["max"]["links"]
        add("scale_listlinks", f"ListLinks of a 10-link zone within 1.3x from "
            f"{scale['steps'][0]['total_links']} to {links} links",
            scale["ratios"]["probe_listlinks_last_over_first"], 1.3, "<=",
            note="" if links >= 10_000 else f"measured up to {links} links only")
        add("scale_rss", f"broker RSS under 150 MiB at {links} links",
            scale["max"]["rss_mib"], 150.0, "<", unit="MiB",
            note="" if links >= 10_000 else f"measured up to {links} links only")
        add("scale_startup", f"start-up reconciliation with {links} links under 5 s",
            scale["max"]["startup_s"], 5.0, "<", unit="s",
            note="" if links >= 10_000 else f"measured up to {links} links only")
    return out


@dataclass
class Row:
    scenario: str
    measure: str
    broker: str
    baseline: str
    ratio: str
    goal: str = ""
    status: str = ""


def _us(x: float) -> str:
    if math.isnan(x):
        return "-"
    if x >= 10_000:
        return f"{x / 1000:,.1f} ms"
    return f"{x:,.1f} µs"


def _x(x: float) -> str:
    return "-" if x is None or math.isnan(x) else f"{x:.2f}x"


def rows(results: dict[str, Any], goal_list: list[Goal]) -> list[Row]:
    g = {x.key: x for x in goal_list}
    out: list[Row] = []
    read = results.get("read")
    if read:
        lat = read["latency_us"]
        pin = read["latency_pinned_us"]
        for m in METHODS:
            size = read["reply_bytes"][m]
            b = lat[m]["broker"]["best"]
            bp = pin[m]["broker"]["best"]
            r = read["ratios"][m]["ratios"]
            goal = g[f"read_{m}"]
            out.append(Row("1 read", f"{m} latency, 1 client, pinned ({size} B reply)", _us(bp),
                           f"asyncio+msgspec floor {_us(pin[m]['pyfloor']['best'])}",
                           _x(r["broker_over_pyfloor"]), "<= 1.5x", goal.shown()))
            out.append(Row("1 read", f"{m} latency, 1 client, as scheduled", _us(b),
                           f"asyncio+msgspec floor {_us(lat[m]['pyfloor']['best'])}",
                           _x(r["broker_over_pyfloor_unpinned"]), "info"))
            if "cfloor" in pin[m]:
                out.append(Row("1 read", f"{m} latency vs the C floor, pinned", _us(bp),
                               f"C ping-pong {_us(pin[m]['cfloor']['best'])}",
                               _x(r["broker_over_cfloor"]), "info"))
            if "docker" in lat[m]:
                path = "/_ping" if m == "WhoAmI" else "/networks"
                out.append(Row("1 read", f"{m} vs Docker {path} "
                               f"({read['docker_body_bytes'].get(m, 0)} B body), as scheduled",
                               _us(b), f"Docker {_us(lat[m]['docker']['best'])}",
                               f"Docker {_x(r['docker_over_broker'])} slower", "info"))
            if m == "ListLinks":
                out.append(Row("1 read", "ListLinks vs `ip -j link show` spawned", _us(b),
                               f"ip {_us(read['ip_spawn_us']['median'])}",
                               f"ip {_x(r['ip_spawn_over_broker'])} slower", "info (>= 10x)"))
                out.append(Row("1 read", f"ListLinks vs pyroute2 dump in-process "
                               f"({read['pyroute2_links']} links)", _us(b),
                               f"pyroute2 {_us(read['pyroute2_us']['median'])}",
                               f"pyroute2 {_x(r['pyroute2_over_broker'])} slower", "info"))
            thr = read["throughput"][m]
            gains = read["ratios"][m]["gains"]
            for level in ("8", "64"):
                if level not in thr["broker"]:
                    continue
                goal_s, status = ("", "")
                if level == "8":
                    goal_s, status = ">= 0.8x", g[f"gain8_{m}"].shown()
                key = "gain8_broker_over_floor" if level == "8" else "gain64_broker_over_floor"
                out.append(Row(
                    "1 read", f"{m}: {level} clients, calls/s (gain over 1 pinned client)",
                    f"{thr['broker'][level]:,.0f}/s ({gains['broker'][level]:.2f}x)",
                    f"floor {thr['pyfloor'][level]:,.0f}/s ({gains['pyfloor'][level]:.2f}x)",
                    _x(r[key]), goal_s or "info", status))
    write = results.get("write")
    if write:
        ms = write["ms"]
        out.append(Row("2 write", "veth across 2 zones: create+delete",
                       f"{ms['broker']['total']['median']:.2f} ms",
                       f"pyroute2 {ms['pyroute2']['total']['median']:.2f} ms",
                       _x(write["ratios"]["broker_over_pyroute2"]), "<= 1.3x",
                       g["write"].shown()))
        out.append(Row("2 write", "  create only", f"{ms['broker']['create']['median']:.2f} ms",
                       f"pyroute2 {ms['pyroute2']['create']['median']:.2f} ms",
                       _x(write["ratios"]["create_broker_over_pyroute2"]), "info"))
        out.append(Row("2 write", "  delete only", f"{ms['broker']['delete']['median']:.2f} ms",
                       f"pyroute2 {ms['pyroute2']['delete']['median']:.2f} ms",
                       _x(write["ratios"]["delete_broker_over_pyroute2"]), "info"))
        out.append(Row("2 write", "veth across 2 zones vs `ip` commands",
                       f"{ms['broker']['total']['median']:.2f} ms",
                       f"ip {ms['ip']['total']['median']:.2f} ms",
                       _x(write["ratios"]["broker_over_ip"]), "info"))
    scale = results.get("scale")
    if scale:
        steps = scale["steps"]
        first, last = steps[0], steps[-1]
        boots = scale["boots"]
        if boots:
            early = [ms for n, ms in boots if n < max(10, 0.1 * last["zones"])]
            late = [ms for n, ms in boots if n >= 0.9 * last["zones"]]
            out.append(Row("3 scale", f"BootZone (10 links) at {last['zones']} zones",
                           f"{_median(late):.2f} ms", f"first zones {_median(early):.2f} ms",
                           _x(scale["ratios"]["boot_last_over_first"]), "info"))
        out.append(Row("3 scale", f"ListLinks of a 10-link zone at {last['total_links']} links"
                       ", pinned", _us(last["probe_pinned_us"]["best"]),
                       f"at {first['total_links']} links "
                       f"{_us(first['probe_pinned_us']['best'])}",
                       _x(scale["ratios"]["probe_listlinks_last_over_first"]), "<= 1.3x",
                       g["scale_listlinks"].shown()))
        out.append(Row("3 scale", f"ListLinks of a 10-link zone at {last['total_links']} links"
                       ", as scheduled", _us(last["probe_us"]["best"]),
                       f"at {first['total_links']} links {_us(first['probe_us']['best'])}",
                       _x(scale["ratios"]["probe_listlinks_unpinned_last_over_first"]),
                       "info"))
        out.append(Row("3 scale", f"broker RSS at {last['total_links']} links "
                       f"({last['zones']} zones)",
                       f"{scale['max']['rss_mib']:.1f} MiB",
                       f"at {first['total_links']} links {first['rss_mib']:.1f} MiB", "-",
                       "< 150 MiB", g["scale_rss"].shown()))
        out.append(Row("3 scale", f"start-up with {last['total_links']} links",
                       f"{last['startup_s']:.2f} s",
                       f"empty state {scale['started_empty_s']:.2f} s",
                       "-", "< 5 s", g["scale_startup"].shown()))
        out.append(Row("3 scale", f"typed client (linkadm) ListLinks from global at "
                       f"{last['total_links']} links",
                       last.get("typed_client_global_listlinks", "-")[:60], "-", "-", "info"))
        out.append(Row("3 scale", f"global ListLinks of all {last['total_links']} links "
                       f"({last['global_reply_bytes'] / 1e6:.1f} MB)",
                       f"{last['global_ms']:.1f} ms", "-", "-", "info"))
    ident = results.get("ident")
    if ident:
        out.append(Row("4 ident", "identify_peer (in-process) vs WhoAmI, kept conn., pinned",
                       _us(ident["identify_peer_us"]["median"]),
                       f"WhoAmI {_us(ident['whoami_kept_connection_us'])}",
                       f"{100 * ident['share_if_per_call']:.0f}% if per call", "info"))
        out.append(Row("4 ident", "identify_peer via to_thread vs WhoAmI, fresh connection",
                       _us(ident["identify_peer_via_to_thread_us"]["median"]),
                       f"connect+WhoAmI {_us(ident['whoami_fresh_connection_us']['median'])}",
                       f"{100 * ident['share_of_fresh_call']:.0f}% of it", "info"))
    return out


def _median(xs: list[float]) -> float:
    if not xs:
        return float("nan")
    s = sorted(xs)
    mid = len(s) // 2
    return s[mid] if len(s) % 2 else (s[mid - 1] + s[mid]) / 2


def text_table(table: list[Row]) -> str:
    head = Row("scenario", "measure", "linkbroker", "baseline", "ratio", "goal", "status")
    cols = [list(asdict(r).values()) for r in [head, *table]]
    widths = [max(len(str(c[i])) for c in cols) for i in range(7)]
    lines = []
    for n, c in enumerate(cols):
        lines.append("  ".join(str(v).ljust(w) for v, w in zip(c, widths, strict=True)))
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def markdown_table(table: list[Row]) -> str:
    lines = ["| scenario | measure | linkbroker | baseline | ratio | goal | status |",
             "|---|---|---|---|---|---|---|"]
    for r in table:
        cells = [str(v).replace("|", "\\|") for v in asdict(r).values()]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def goals_text(goal_list: list[Goal]) -> str:
    lines = []
    for x in goal_list:
        v = f"{x.value:.2f}{'' if x.unit == 'x' else ' '}{x.unit}"
        lim = f"{x.op} {x.limit:g}{'' if x.unit == 'x' else ' '}{x.unit}"
        note = f" ({x.note})" if x.note else ""
        lines.append(f"  {x.shown():6}  {x.text}: {v} (goal {lim}){note}")
    return "\n".join(lines)


# ---- plots --------------------------------------------------------------------------------


def plots(results: dict[str, Any], outdir: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    made: list[str] = []
    colors = {"broker": "#1f77b4", "pyfloor": "#2ca02c", "cfloor": "#7f7f7f",
              "docker": "#d62728", "ip": "#ff7f0e", "pyroute2": "#9467bd"}
    read = results.get("read")
    if read:
        fig, axes = plt.subplots(1, 2, figsize=(12, 4.6))
        for ax, m in zip(axes, METHODS, strict=True):
            names: list[str] = []
            bars: list[tuple[float, float, str, str]] = []  # x, value, color, hatch
            for i, (key, label) in enumerate(read["targets"].items()):
                names.append(label.replace(" floor", "\nfloor").replace(
                    "Docker API", "Docker\n" + ("/_ping" if m == "WhoAmI" else "/networks")))
                bars.append((i - 0.2, read["latency_us"][m][key]["best"], colors[key], ""))
                if key in read["latency_pinned_us"][m]:
                    bars.append((i + 0.2, read["latency_pinned_us"][m][key]["best"],
                                 colors[key], "//"))
            if m == "ListLinks":
                for extra, key in (("ip -j\nspawned", "ip_spawn_us"),
                                   ("pyroute2\ndump", "pyroute2_us")):
                    names.append(extra)
                    bars.append((len(names) - 1 - 0.2, read[key]["median"],
                                 colors["ip" if key.startswith("ip") else "pyroute2"], ""))
            for x, v, c, h in bars:
                ax.bar(x, v, width=0.38, color=c, hatch=h, edgecolor="white" if h else c)
                ax.annotate(f"{v:,.0f}", (x, v), ha="center", va="bottom", fontsize=7)
            ax.set_xticks(range(len(names)), names, fontsize=8)
            ax.set_yscale("log")
            ax.set_ylabel("median latency, µs (log)")
            ax.set_title(f"{m} from a zone, 1 client ({read['reply_bytes'][m]} B reply)\n"
                         "plain: as scheduled; hatched: client and server on one CPU",
                         fontsize=9)
        fig.tight_layout()
        made.append(_save(fig, outdir / "read_latency.png"))
        plt.close(fig)

        fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
        for ax, m in zip(axes, METHODS, strict=True):
            for key, label in read["targets"].items():
                by_level = read["throughput"][m][key]
                levels = sorted((x for x in by_level if x != "1p"), key=int)
                ax.plot([int(x) for x in levels], [by_level[x] for x in levels], "o-",
                        label=label, color=colors[key])
                if "1p" in by_level:
                    ax.plot([1], [by_level["1p"]], "D", mfc="none", color=colors[key])
            ax.set_xscale("log", base=2)
            ax.set_xticks([1, 8, 64], ["1", "8", "64"])
            ax.set_xlabel("concurrent client processes")
            ax.set_ylabel("calls/s (all clients)")
            ax.set_title(f"{m} throughput (hollow: 1 client pinned with the server)",
                         fontsize=9)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
        fig.tight_layout()
        made.append(_save(fig, outdir / "read_throughput.png"))
        plt.close(fig)

    write = results.get("write")
    if write:
        fig, ax = plt.subplots(figsize=(6.5, 4))
        ways = [("broker", "linkbroker"), ("pyroute2", "pyroute2\n(1 NEWLINK + 1 DELLINK)"),
                ("ip", "ip commands")]
        create = [write["ms"][k]["create"]["median"] for k, _ in ways]
        delete = [write["ms"][k]["delete"]["median"] for k, _ in ways]
        labels = [label for _, label in ways]
        ax.bar(labels, create, label="create veth (ends in 2 zones)", color="#1f77b4")
        ax.bar(labels, delete, bottom=create, label="delete", color="#aec7e8")
        for i, (c, d) in enumerate(zip(create, delete, strict=True)):
            ax.annotate(f"{c + d:.1f} ms", (i, c + d), ha="center", va="bottom", fontsize=9)
        ax.set_ylabel("median ms")
        ax.set_title("veth across two zones: create + delete")
        ax.legend(fontsize=8)
        fig.tight_layout()
        made.append(_save(fig, outdir / "write.png"))
        plt.close(fig)

    scale = results.get("scale")
    if scale:
        steps = scale["steps"]
        links = [s["total_links"] for s in steps]
        fig, axes = plt.subplots(2, 2, figsize=(11, 7.5))
        ax = axes[0][0]
        boots = scale["boots"]
        if boots:
            xs = [n for n, _ in boots]
            ys = [ms for _, ms in boots]
            ax.scatter(xs, ys, s=3, alpha=0.4, color="#1f77b4", label="one BootZone")
            window = max(5, len(ys) // 40)
            roll = [_median(ys[max(0, i - window): i + 1]) for i in range(len(ys))]
            ax.plot(xs, roll, color="#d62728", label=f"rolling median ({window})")
            ax.set_ylim(0, max(roll) * 3 if roll else 1)
            ax.legend(fontsize=8)
        ax.set_xlabel("zones already booted")
        ax.set_ylabel("ms")
        ax.set_title("BootZone of a zone with 10 links")
        ax = axes[0][1]
        ax.plot(links, [s["probe_pinned_us"]["best"] for s in steps], "o-",
                label="best burst's median, client and broker on one CPU")
        ax.fill_between(links, [s["probe_pinned_us"]["p10"] for s in steps],
                        [s["probe_pinned_us"]["p90"] for s in steps], alpha=0.2,
                        label="p10-p90, one CPU")
        ax.plot(links, [s["probe_us"]["best"] for s in steps], "s--", color="#7f7f7f",
                label="best burst's median, as scheduled")
        ax.set_ylim(0, max(s["probe_us"]["p90"] for s in steps) * 1.3)
        ax.set_xlabel("links on the host (all zones)")
        ax.set_ylabel("µs")
        ax.set_title("ListLinks of a 10-link zone, from the zone")
        ax.legend(fontsize=8)
        ax = axes[1][0]
        ax.plot(links, [s["rss_mib"] for s in steps], "o-", label="after BootZones")
        ax.plot(links, [s["rss_after_restart_mib"] for s in steps], "s--",
                label="after a restart")
        ax.axhline(150, color="#d62728", lw=0.8, ls=":", label="goal 150 MiB")
        ax.set_xlabel("links on the host")
        ax.set_ylabel("VmRSS, MiB")
        ax.set_title("broker RSS")
        ax.legend(fontsize=8)
        ax = axes[1][1]
        ax.plot(links, [s["startup_s"] for s in steps], "o-", label="start-up")
        ax.axhline(5, color="#d62728", lw=0.8, ls=":", label="goal 5 s")
        ax.set_xlabel("links on the host")
        ax.set_ylabel("s until the first WhoAmI answer")
        ax.set_title("start-up (restart) with that state")
        ax.legend(fontsize=8)
        for a in axes.flat:
            a.grid(alpha=0.3)
        fig.tight_layout()
        made.append(_save(fig, outdir / "scale.png"))
        plt.close(fig)

    ident = results.get("ident")
    if ident:
        fig, ax = plt.subplots(figsize=(8, 4))
        parts = ident["parts_us"]
        names = [*parts, "identify_peer (whole)", "identify_peer via to_thread",
                 "WhoAmI, kept connection", "connect + WhoAmI + close"]
        vals = [*parts.values(), ident["identify_peer_us"]["median"],
                ident["identify_peer_via_to_thread_us"]["median"],
                ident["whoami_kept_connection_us"],
                ident["whoami_fresh_connection_us"]["median"]]
        cols = ["#aec7e8"] * len(parts) + ["#1f77b4", "#1f77b4", "#2ca02c", "#2ca02c"]
        ax.barh(names, vals, color=cols)
        for i, v in enumerate(vals):
            ax.annotate(f"{v:.1f} µs", (v, i), va="center", fontsize=8)
        ax.invert_yaxis()
        ax.set_xlabel("median µs")
        ax.set_title("caller identification beside a read call")
        fig.tight_layout()
        made.append(_save(fig, outdir / "identify.png"))
        plt.close(fig)
    return made


def _save(fig: Any, path: Path) -> str:
    fig.savefig(path, dpi=110)
    return str(path)
