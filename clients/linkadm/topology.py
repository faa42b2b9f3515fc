"""linkadm's pictures: `show-topology` (Graphviz or a text tree) and `watch --table`.

Client-side only: the picture is built from the caller's own WhoAmI, ListZones and ListLinks
answers (clients.linkadm.graph), so it can show nothing the caller could not list. Graphviz's `dot`
lays out svg and png; dot and text output need nothing installed.
"""

from __future__ import annotations

import argparse
import errno
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from typing import Any

import msgspec

from broker._errors import error_from_wire
from broker._wire import decode_reply, encode_call
from broker.client import BrokerGone, Client, Event, Link, ProtocolMismatch, Zone
from clients.linkadm import exits
from clients.linkadm.graph import build
from clients.linkadm.render import printable, render_dot, render_text

__all__ = ["EXIT_NO_DOT", "FORMATS", "CommandFailed", "add_show_topology", "add_watch_table",
           "cmd_show_topology", "watch_table"]

FORMATS = ("text", "dot", "svg", "png")
# Exit codes of these verbs' own failures, after sysexits.h (linkadm's others: exits).
EXIT_NO_DOT = 69  # EX_UNAVAILABLE: svg or png asked, Graphviz's `dot` is not installed
EXIT_DOT_FAILED = 70  # EX_SOFTWARE: dot ran and failed
EXIT_CANNOT_WRITE = 73  # EX_CANTCREAT: -o FILE could not be written
_SUFFIX = {".txt": "text", ".dot": "dot", ".gv": "dot", ".svg": "svg", ".png": "png"}

Verb = Callable[[Client, argparse.Namespace], None]

EXAMPLES = """\
examples:
  linkadm show-topology                     a text tree of every link this zone sees
  linkadm show-topology -o lab.png          a picture (the format from the suffix; needs dot)
  linkadm show-topology --format dot | dot -Tsvg > lab.svg
  linkadm show-topology -z red --format svg -o red.svg
                                            one zone (from the global zone)
  ip netns exec red linkadm show-topology   what zone red sees: other zones' ends of its
                                            veths are anonymous "elsewhere" nodes
exit status: as linkadm's (linkadm --help), and 69 svg/png asked but Graphviz's `dot` is
not installed, 70 dot failed, 73 -o FILE could not be written
"""


class CommandFailed(Exception):
    """A failure of these verbs that is not the broker's: one line, and the exit status."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def _format(a: argparse.Namespace) -> str:
    if a.format:
        return str(a.format)
    if a.output:
        return _SUFFIX.get(os.path.splitext(a.output)[1].lower(), "text")
    return "text"


def _layout(dot_text: str, fmt: str) -> bytes:
    """Graphviz's layout of `dot_text` as svg or png."""
    dot = shutil.which("dot")
    missing = (f"--format {fmt} needs Graphviz's `dot`, which is not installed (Debian: "
               "apt-get install graphviz); --format dot and text need nothing")
    if dot is None:
        raise CommandFailed(missing, EXIT_NO_DOT)
    try:
        done = subprocess.run([dot, f"-T{fmt}"], input=dot_text.encode(), capture_output=True,
                              timeout=120, check=False)
    except FileNotFoundError:
        raise CommandFailed(missing, EXIT_NO_DOT) from None
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise CommandFailed(f"could not run {dot}: {exc}", EXIT_DOT_FAILED) from None
    if done.returncode != 0:
        why = done.stderr.decode(errors="replace").strip().splitlines() or ["no message"]
        raise CommandFailed(f"dot failed (exit {done.returncode}): {printable(why[0])}",
                            EXIT_DOT_FAILED)
    return done.stdout


def _write(path: str, data: bytes) -> None:
    """All or nothing: a failed run never leaves half a picture under the name asked for."""
    where = os.path.dirname(os.path.abspath(path))
    try:
        fd, tmp = tempfile.mkstemp(prefix=".linkadm-", dir=where)
    except OSError as exc:
        raise CommandFailed(f"cannot write {path}: {exc.strerror}", EXIT_CANNOT_WRITE) from None
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except OSError as exc:
        os.unlink(tmp)
        raise CommandFailed(f"cannot write {path}: {exc.strerror}", EXIT_CANNOT_WRITE) from None


def cmd_show_topology(c: Client, a: argparse.Namespace) -> None:
    fmt = _format(a)
    if fmt in ("svg", "png") and shutil.which("dot") is None:
        _layout("", fmt)  # says what is missing, before any call
    if fmt == "png" and a.output is None and sys.stdout.isatty():
        raise CommandFailed("png is binary: write it to a file with -o FILE.png", 2)
    me = c.who_am_i()
    if a.zone:
        links = c.list_links(a.zone)
        zones = [z for z in c.list_zones() if z.name == a.zone]
    else:
        zones, links = c.list_zones(), c.list_links()
    topo = build(me.zone, zones, links)
    if fmt == "text":
        data = render_text(topo).encode()
    elif fmt == "dot":
        data = render_dot(topo).encode()
    else:
        data = _layout(render_dot(topo), fmt)
    if a.output:
        _write(a.output, data)
    else:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()


def add_show_topology(sub: Any, verb: Verb = cmd_show_topology) -> argparse.ArgumentParser:
    """Register `show-topology` on linkadm's subcommands (`sub`: add_subparsers' result)."""
    help_ = "draw the links this zone sees: zones, veth pairs, bridges, lower links"
    p: argparse.ArgumentParser = sub.add_parser(
        "show-topology", help=help_, epilog=EXAMPLES,
        description=help_ + ".\nBuilt only from this zone's own listing: another zone's "
        "end of a veth\nis an anonymous 'elsewhere' node.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.set_defaults(fn=verb)
    p.add_argument("--format", choices=FORMATS,
                   help="text (a tree), dot (Graphviz source), svg or png (laid out by "
                        "Graphviz's dot); default: from -o's suffix, else text")
    p.add_argument("-z", "--zone", help="only this zone's links (global zone only)")
    p.add_argument("-o", "--output", metavar="FILE", help="write to FILE instead of stdout")
    return p


# ---- watch --table ------------------------------------------------------------------------

def _events(path: str, zone: str | None) -> Iterator[Event]:
    """Subscribe now (the call is sent before this returns), yield events as they come."""
    sub = Client(path, timeout=None)
    params = {"zone": zone} if zone else None
    sub.conn.send(encode_call("io.linkbroker.Subscribe", params, more=True))

    def stream() -> Iterator[Event]:
        try:
            while True:
                frame = sub.conn.receive()
                try:
                    reply = decode_reply(frame)
                except msgspec.MsgspecError as exc:
                    raise ProtocolMismatch(path, errno.EPROTO, f"not a Varlink reply: {exc}"
                                           ) from None
                if reply.error is not None:
                    raise error_from_wire(reply.error, reply.parameters)
                yield msgspec.convert((reply.parameters or {})["event"], Event)
                if not reply.continues:
                    return
        finally:
            sub.close()

    return stream()


def _table(links: list[Link], zones: list[Zone], last: str) -> Any:
    from rich.table import Table

    table = Table(title=f"linkbroker: {len(links)} links in {len(zones)} zones",
                  caption=last, caption_justify="left", title_justify="left")
    for column in ("ZONE", "LINK", "CLASS", "STATE", "OWNER", "MTU", "OVER", "BRIDGE"):
        table.add_column(column, no_wrap=True)
    for link in sorted(links, key=lambda lk: (lk.zone != "global", lk.zone, lk.name)):
        table.add_row(
            printable(link.zone), printable(link.name), link.class_, link.state,
            printable(link.owner) + (" (lent)" if link.onloan else ""),
            "" if link.mtu is None else str(link.mtu),
            printable(link.parent or link.peer or ""), printable(link.master or ""),
            style=None if link.state == "up" else "dim")
    return table


def watch_table(c: Client, a: argparse.Namespace) -> None:
    """A table of the caller's links, read again from the broker whenever an event arrives
    (so it is never built from events alone), until Ctrl-C or the broker goes away."""
    from rich.console import Console

    console = Console()
    if not console.is_terminal:  # no terminal to size the table to: do not cut names
        console.width = max(console.width, 160)
    try:
        _watch(c, a, console)
    except BrokerGone:
        raise CommandFailed("the broker closed the connection (it stopped or restarted); "
                            "run watch again once it is back", exits.GONE) from None


def _watch(c: Client, a: argparse.Namespace, console: Any) -> None:
    from rich.live import Live

    events = _events(c.conn.path, a.zone)

    def snapshot(last: str) -> Any:
        zones = [z for z in c.list_zones() if a.zone in (None, z.name)]
        return _table(c.list_links(a.zone), zones, last)

    first = snapshot("waiting for events (Ctrl-C to stop)")
    if not console.is_terminal:  # a pipe or a log: one table per change, appended
        console.print(first)
        sys.stdout.flush()
        for event in events:
            console.print(snapshot(_said(event)))
            sys.stdout.flush()
        return
    with Live(first, console=console, auto_refresh=False) as live:
        for event in events:
            live.update(snapshot(_said(event)), refresh=True)


def _said(event: Event) -> str:
    what = f" {printable(event.link.name)}" if event.link else ""
    old = f" (was {printable(event.old_name)})" if event.old_name else ""
    return f"last event: #{event.seq} {event.kind} zone {printable(event.zone)}{what}{old}"


def add_watch_table(p: argparse.ArgumentParser, plain: Verb) -> None:
    """Give linkadm's `watch` parser a --table flag; without it `plain` runs as before."""
    p.add_argument("--table", action="store_true",
                   help="a live table of the links, redrawn as events arrive (Ctrl-C stops)")

    def watch(c: Client, a: argparse.Namespace) -> None:
        (watch_table if a.table else plain)(c, a)

    p.set_defaults(fn=watch)
