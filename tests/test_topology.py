"""`linkadm show-topology` and `watch --table` against a real broker and real namespaces.

Three zones: a host bridge with uplink ports from two of them (red and blue), a veth from red
to cyan (persistent), a host veth lent to cyan, a macvlan in red over its uplink and one the
global zone made in blue over a host link, and a host bridge whose name holds DOT syntax. The
DOT text is read back by Graphviz itself (`dot -Tjson`), so nodes, clusters and edges are
checked as Graphviz understands them, not as the writer meant them.
"""

from __future__ import annotations

import json
import os
import select
import signal
import struct
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from broker.client import LinkSpec
from clients.linkadm import exits
from clients.linkadm.topology import EXIT_NO_DOT
from tests.conftest import BrokerProcess, ZoneCaller
from tests.test_policy_broker import start_with_policy

EDGE_KINDS = {"#2e7d32": "veth", "#9a6b00": "port", "#6a1b9a": "lower"}


@dataclass
class Lab:
    broker: BrokerProcess
    zones: dict[str, str]  # red/blue/cyan -> the zone's (and namespace's) name
    callers: dict[str, ZoneCaller]
    names: dict[str, str]  # what the test made: role -> link name
    ports: dict[str, str]  # zone role -> the host end of its uplink


def linkadm(broker: BrokerProcess, *args: str, ns: str | None = None,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[bytes]:
    cmd = [sys.executable, "-m", "clients.linkadm", "--socket", broker.socket, *args]
    if ns is not None:
        cmd = ["ip", "netns", "exec", ns, *cmd]
    return subprocess.run(cmd, capture_output=True, timeout=60, check=False,
                          env=env if env is not None else dict(os.environ))


@pytest.fixture
def lab(broker: BrokerProcess, tmp_path: Path, netns: Any, zone_caller: Any,
        names: Any) -> Lab:
    zones = {role: netns(role) for role in ("red", "blue", "cyan")}
    made = {"hbr": names.link("hbr"), "x": names.link("x"), "xpeer": names.link("y"),
            "lent": names.link("l"), "home": names.link("h"), "gmv": names.link("g"),
            "mv": names.link("m"), "odd": f'{names.link("q")[:11]}"\\{{'}
    allowed = f'{made["hbr"]} = ["{zones["red"]}", "{zones["blue"]}"]'
    start_with_policy(broker, tmp_path, f"[bridges]\nattachable = {{ {allowed} }}\n")
    callers: dict[str, ZoneCaller] = {}
    with broker.client() as gz:
        for role, zone in zones.items():
            gz.boot_zone(zone, netns=zone)
            callers[role] = zone_caller(zone)
        gz.create_link(LinkSpec(name=made["hbr"], class_="bridge", up=True))
        gz.create_link(LinkSpec(name=made["odd"], class_="bridge"))
        for role in ("red", "blue"):
            callers[role].call("CreateLink", link={"name": "net0", "class": "veth",
                                                   "up": True, "uplink": made["hbr"]})
        callers["red"].call("CreateLink", link={"name": made["mv"], "class": "macvlan",
                                                "parent": "net0", "mode": "bridge"})
        gz.create_link(LinkSpec(name=made["x"], class_="veth", zone=zones["red"], up=True,
                                peer=made["xpeer"], peer_zone=zones["cyan"], persistent=True))
        gz.create_link(LinkSpec(name=made["lent"], class_="veth", peer=made["home"], up=True))
        gz.assign_link(made["lent"], zones["cyan"])
        gz.create_link(LinkSpec(name=made["gmv"], class_="macvlan", zone=zones["blue"],
                                parent=made["home"], mode="bridge"))
        ports = {}
        for port in gz.list_links("global"):
            if port.master == made["hbr"]:
                ports[next(r for r, z in zones.items() if z == port.owner)] = port.name
    assert set(ports) == {"red", "blue"}
    return Lab(broker, zones, callers, made, ports)


def graph(dot_text: str) -> tuple[dict[str, str | None], set[tuple[str, str, str]]]:
    """Graphviz's reading of the DOT text: node -> its cluster's zone (None outside every
    cluster), and edges (kind, tail, head). A link node is ZONE/NAME, an end elsewhere ?LABEL."""
    done = subprocess.run(["dot", "-Tjson"], input=dot_text.encode(), capture_output=True,
                          timeout=60, check=True)
    parsed = json.loads(done.stdout)
    zone_of: dict[int, str] = {}
    for obj in parsed["objects"]:
        if obj["name"].startswith("cluster"):
            title = obj["label"]  # "global zone" or "zone NAME (kind)"
            zone = "global" if title == "global zone" else title.split(" ")[1]
            zone_of.update({gvid: zone for gvid in obj.get("nodes", [])})
    label: dict[int, str] = {}
    for obj in parsed["objects"]:
        if "nodes" not in obj and not obj["name"].endswith("_empty"):
            first = obj["label"].split("\\n")[0].replace('\\"', '"').replace("\\\\", "\\")
            zone = zone_of.get(obj["_gvid"])
            label[obj["_gvid"]] = f"{zone}/{first}" if zone else f"?{first}"
    nodes = {name: (name.split("/")[0] if not name.startswith("?") else None)
             for name in label.values()}
    edges = set()
    for edge in parsed.get("edges", []):
        ends = [label[edge["tail"]], label[edge["head"]]]
        kind = EDGE_KINDS[edge["color"]]
        if kind == "veth" and not ends[1].startswith("?"):
            ends.sort()
        edges.add((kind, ends[0], ends[1]))
    return nodes, edges


def veth(a: str, b: str) -> tuple[str, str, str]:
    first, second = sorted((a, b))
    return ("veth", first, second)


def test_the_global_zone_sees_every_zone_and_every_edge(lab: Lab) -> None:
    z, n, p = lab.zones, lab.names, lab.ports
    done = linkadm(lab.broker, "show-topology", "--format", "dot")
    assert done.returncode == 0, done.stderr
    nodes, edges = graph(done.stdout.decode())
    expected_nodes = {
        f"global/{n['hbr']}", f"global/{n['odd']}", f"global/{n['home']}",
        f"global/{p['red']}", f"global/{p['blue']}",
        f"{z['red']}/net0", f"{z['red']}/{n['mv']}", f"{z['red']}/{n['x']}",
        f"{z['blue']}/net0", f"{z['blue']}/{n['gmv']}",
        f"{z['cyan']}/{n['xpeer']}", f"{z['cyan']}/{n['lent']}"}
    assert expected_nodes <= set(nodes)
    # The host may hold links of its own (lo, eth0, or a veth into a namespace that is no zone
    # of this broker: a Docker lab's, drawn as an "elsewhere" end); the test's links are all
    # drawn with both ends named, in their zones.
    ours = {e for e in edges if e[1] in expected_nodes or e[2] in expected_nodes}
    assert not [e for e in ours if e[1].startswith("?") or e[2].startswith("?")]
    strangers = {e[1] for e in edges - ours} | {e[2] for e in edges - ours}
    extra = set(nodes) - expected_nodes
    assert all(name.startswith("global/") or name in strangers for name in extra)
    assert ours == {
        veth(f"{z['red']}/net0", f"global/{p['red']}"),
        ("port", f"global/{p['red']}", f"global/{n['hbr']}"),
        veth(f"{z['blue']}/net0", f"global/{p['blue']}"),
        ("port", f"global/{p['blue']}", f"global/{n['hbr']}"),
        veth(f"{z['red']}/{n['x']}", f"{z['cyan']}/{n['xpeer']}"),
        veth(f"{z['cyan']}/{n['lent']}", f"global/{n['home']}"),
        ("lower", f"{z['red']}/{n['mv']}", f"{z['red']}/net0"),
        ("lower", f"{z['blue']}/{n['gmv']}", f"global/{n['home']}"),
    }
    dot = done.stdout.decode()
    assert "lent by global" in dot and f"owner {z['red']}" in dot and "peripheries=2" in dot
    assert 'fillcolor="#eeeeee"' in dot  # the bridge left down is grey
    text = linkadm(lab.broker, "show-topology").stdout.decode()
    assert f"{n['hbr']} (bridge)" in text and f"-- {z['red']}/net0" in text
    # Moved into cyan, the lent end is down until someone there brings it up.
    assert f"{n['lent']} (veth, down, lent by global)  -- global/{n['home']}" in text


def test_a_zone_picture_names_nothing_of_other_zones(lab: Lab) -> None:
    z, n, p = lab.zones, lab.names, lab.ports
    done = linkadm(lab.broker, "show-topology", "--format", "dot", ns=z["red"])
    assert done.returncode == 0, done.stderr
    dot = done.stdout.decode()
    nodes, edges = graph(dot)
    red = z["red"]
    assert nodes == {f"{red}/net0": red, f"{red}/{n['mv']}": red, f"{red}/{n['x']}": red,
                     "?elsewhere": None}
    assert edges == {("veth", f"{red}/net0", "?elsewhere"),
                     ("veth", f"{red}/{n['x']}", "?elsewhere"),
                     ("lower", f"{red}/{n['mv']}", f"{red}/net0")}
    assert dot.count('label="elsewhere"') == 2  # two ends, never merged into one
    hidden = [z["blue"], z["cyan"], n["hbr"], n["odd"], n["home"], n["lent"], n["xpeer"],
              n["gmv"], p["red"], p["blue"]]
    text = linkadm(lab.broker, "show-topology", ns=red).stdout.decode()
    for name in hidden:
        assert name not in dot and name not in text
    # -z naming another zone is refused from a zone, as for a zone that does not exist.
    other = linkadm(lab.broker, "show-topology", "-z", z["blue"], ns=red)
    assert other.returncode == 1 and other.stderr.decode().count("\n") == 1
    assert b"not found" in other.stderr and b"Traceback" not in other.stderr


def test_one_zone_from_the_global_zone(lab: Lab) -> None:
    z, n = lab.zones, lab.names
    nodes, edges = graph(linkadm(lab.broker, "show-topology", "-z", z["cyan"],
                                 "--format", "dot").stdout.decode())
    # The global zone knows the far ends' names: shown, but outside the zone drawn.
    assert nodes == {f"{z['cyan']}/{n['xpeer']}": z["cyan"],
                     f"{z['cyan']}/{n['lent']}": z["cyan"],
                     f"?{n['x']} (another zone)": None, f"?{n['home']} (another zone)": None}
    assert len(edges) == 2


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n", data[:16]
    length, chunk = struct.unpack(">I4s", data[8:16])
    assert (length, chunk) == (13, b"IHDR")
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_png_and_svg_through_dot(lab: Lab, tmp_path: Path) -> None:
    out = tmp_path / "lab.png"
    done = linkadm(lab.broker, "show-topology", "-o", str(out))  # png from the suffix
    assert done.returncode == 0, done.stderr
    width, height = png_size(out.read_bytes())
    assert 300 <= width <= 8000 and 200 <= height <= 8000, (width, height)
    red_png = linkadm(lab.broker, "show-topology", "--format", "png", ns=lab.zones["red"])
    red_width, red_height = png_size(red_png.stdout)
    assert red_width * red_height < width * height  # one zone's picture is the smaller
    svg = linkadm(lab.broker, "show-topology", "--format", "svg").stdout.decode()
    assert svg.lstrip().startswith("<?xml") and "<svg" in svg and lab.names["hbr"] in svg


def test_without_dot_svg_and_png_say_so_and_write_nothing(lab: Lab, tmp_path: Path) -> None:
    env = {**os.environ, "PATH": str(tmp_path / "empty")}
    out = tmp_path / "lab.png"
    done = linkadm(lab.broker, "show-topology", "-o", str(out), env=env)
    assert done.returncode == EXIT_NO_DOT
    err = done.stderr.decode()
    assert err.count("\n") == 1 and "apt-get install graphviz" in err and "Traceback" not in err
    assert not out.exists()
    # dot and text need nothing installed.
    assert linkadm(lab.broker, "show-topology", "--format", "dot", env=env).returncode == 0


def _read_until(proc: subprocess.Popen[bytes], needle: bytes, seen: bytearray,
                timeout: float = 20) -> None:
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    while needle not in seen:
        left = deadline - time.monotonic()
        assert left > 0, f"no {needle!r} in {bytes(seen)!r}"
        ready, _, _ = select.select([proc.stdout], [], [], left)
        if ready:
            chunk = os.read(proc.stdout.fileno(), 65536)
            assert chunk, f"watch exited: {bytes(seen)!r}"
            seen += chunk


def _watch(broker: BrokerProcess) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "clients.linkadm", "--socket", broker.socket, "watch",
         "--table"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_watch_table_redraws_on_events_and_stops_on_ctrl_c(lab: Lab) -> None:
    proc = _watch(lab.broker)
    seen = bytearray()
    try:
        _read_until(proc, b"waiting for events", seen)
        assert lab.names["hbr"].encode() in seen
        lab.callers["cyan"].call("CreateLink", link={"name": "late0", "class": "bridge"})
        _read_until(proc, b"link_added zone " + lab.zones["cyan"].encode() + b" late0", seen)
        last_table = seen[seen.rindex(b"linkbroker:"):]
        assert b"late0" in last_table and b"bridge" in last_table
        proc.send_signal(signal.SIGINT)
        assert proc.wait(15) == 130
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    assert proc.stderr is not None and b"Traceback" not in proc.stderr.read()


def test_watch_table_ends_cleanly_when_the_broker_goes(lab: Lab) -> None:
    proc = _watch(lab.broker)
    try:
        _read_until(proc, b"waiting for events", bytearray())
        lab.broker.stop()
        code = proc.wait(15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    assert proc.stderr is not None
    err = proc.stderr.read().decode()
    assert code == exits.GONE and "Traceback" not in err and err.count("\n") == 1, err
    assert "the broker closed the connection" in err


def test_watch_table_live_in_a_terminal(lab: Lab) -> None:
    """On a terminal the table is redrawn in place (rich's Live), not appended."""
    master, slave = os.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "clients.linkadm", "--socket", lab.broker.socket, "watch",
         "--table"], stdin=slave, stdout=slave, stderr=subprocess.PIPE,
        env={**os.environ, "TERM": "xterm", "COLUMNS": "200", "LINES": "50"})
    os.close(slave)
    seen = bytearray()

    def read_until(needle: bytes) -> None:
        deadline = time.monotonic() + 20
        while needle not in seen:
            assert time.monotonic() < deadline, f"no {needle!r} in {bytes(seen)!r}"
            if select.select([master], [], [], 0.5)[0]:
                seen.extend(os.read(master, 65536))

    try:
        read_until(b"waiting for events")
        lab.callers["blue"].call("CreateLink", link={"name": "late1", "class": "bridge"})
        read_until(b"late1")
        assert b"\x1b[" in seen  # cursor movement: redrawn in place
        proc.send_signal(signal.SIGINT)
        assert proc.wait(15) == 130
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
        os.close(master)
    assert proc.stderr is not None and b"Traceback" not in proc.stderr.read()
