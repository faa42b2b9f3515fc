"""Topology -> DOT text (for Graphviz) and a text tree (for a terminal). Pure, deterministic.

Identifiers in the DOT text are the builder's counters; every name a user chose (zones, links)
goes into a double-quoted label through `dot_string`, which escapes what DOT would read as
syntax or as a label escape (`\\N`, `\\G`...), so no name can change the graph's structure.

Moved from broker/_topology_render.py with the builder (clients.linkadm.graph): drawing is
linkadm's business, not the daemon's (issue 16).
"""

from __future__ import annotations

from broker._names import GLOBAL_ZONE, home_zone
from broker._types import Link
from clients.linkadm.graph import Edge, Node, Topology, ZoneBox

__all__ = ["dot_string", "printable", "render_dot", "render_text", "viewer_title"]

# Fill colours by class, for links that are up; down or absent links are grey.
_FILL = {"phys": "#d6e4f5", "bridge": "#fbe7b5", "veth": "#d9f0d3", "macvlan": "#d4eeee",
         "macvtap": "#d4eeee", "vxlan": "#eadcf3", "tap": "#e8e8f8"}
_SHAPE = {"phys": "box3d", "bridge": "box", "vxlan": "hexagon", "tap": "box"}
_EDGE = {
    "veth": 'dir=none, penwidth=2, color="#2e7d32"',
    "port": 'arrowhead=odiamond, color="#9a6b00"',
    "lower": 'style=dashed, color="#6a1b9a", label="over", fontcolor="#6a1b9a"',
}
_LEGEND = ("green line: a veth pair   brown, diamond: a bridge port   dashed purple: over its "
           "lower link\\ldouble border: persistent   orange border: lent   grey: down   "
           "dotted: absent (configured, not in the kernel)\\l")


def printable(text: str) -> str:
    """`text` with anything a terminal would act on shown as \\xNN."""
    return "".join(ch if ch.isprintable() else f"\\x{ord(ch):02x}" for ch in text)


def dot_string(text: str) -> str:
    """`text` as a DOT double-quoted string that shows it literally in a label."""
    out = []
    for ch in text:
        if ch in '\\"':
            out.append("\\" + ch)
        elif not ch.isprintable():
            out.append(f"\\\\x{ord(ch):02x}")  # shown as \xNN, never a newline or control
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _label(*lines: str) -> str:
    """Lines joined with DOT's centred line break, each escaped."""
    return "\\n".join(dot_string(line)[1:-1] for line in lines if line)


def viewer_title(viewer: str) -> str:
    if viewer == GLOBAL_ZONE:
        return "the global zone"
    if home_zone(viewer) == GLOBAL_ZONE:
        return "the global zone (its own links only: no zone.read)"
    return f"zone {viewer}"


def _zone_title(box: ZoneBox) -> str:
    if box.name == GLOBAL_ZONE:
        return "global zone"
    if box.kind is None:
        return f"zone {box.name} (halted: persistent configuration)"
    return f"zone {box.name} ({box.kind})"


def _flags(link: Link) -> list[str]:
    """What a reader must know besides name and class: state, who owns it, persistence."""
    flags: list[str] = [] if link.state == "up" else [link.state]
    if link.onloan:
        flags.append(f"lent by {link.owner}")
    elif link.owner != link.zone:
        flags.append(f"owner {link.owner}")
    if link.persistent:
        flags.append("persistent")
    return flags


def _far_label(node: Node) -> str:
    if node.name is None:
        return "elsewhere"
    return node.name + (" (zone unknown)" if node.why == "ambiguous" else " (another zone)")


def _node_dot(node: Node) -> str:
    link = node.link
    if link is None:
        return (f'{node.key} [label={dot_string(_far_label(node))}, shape=ellipse, '
                'style="dashed", color="#9e9e9e", fontcolor="#616161"];')
    flags = _flags(link)
    attrs = [f"label=\"{_label(link.name, link.class_, ', '.join(flags))}\"",
             f"shape={_SHAPE.get(link.class_, 'ellipse')}"]
    style = ["filled"] + (["rounded"] if link.class_ == "bridge" else [])
    if link.state == "up":
        attrs.append(f'fillcolor="{_FILL.get(link.class_, "#ffffff")}"')
    else:
        attrs += ['fillcolor="#eeeeee"', 'fontcolor="#757575"', 'color="#9e9e9e"']
    if link.state == "absent":
        style.append("dotted")
    if link.onloan:
        attrs += ['color="#e65100"', "penwidth=2"]
    if link.persistent:
        attrs.append("peripheries=2")
    attrs.append(f'style="{",".join(style)}"')
    return f"{node.key} [{', '.join(attrs)}];"


def _edge_dot(edge: Edge, far: set[str]) -> str:
    extra = ", style=dashed" if edge.kind == "veth" and edge.head in far else ""
    return f"{edge.tail} -> {edge.head} [{_EDGE[edge.kind]}{extra}];"


def render_dot(topo: Topology) -> str:
    """The whole graph as DOT text: same topology, same bytes."""
    title = _label(f"linkbroker: the links {viewer_title(topo.viewer)} sees") + "\\l" + _LEGEND
    out = [
        f"// linkadm show-topology: what {printable(viewer_title(topo.viewer))} sees",
        "digraph linkbroker {",
        f'  graph [rankdir=LR, newrank=true, fontname="Helvetica", fontsize=11, '
        f'labelloc=b, labeljust=l, nodesep=0.25, ranksep=0.5, label="{title}"];',
        '  node [fontname="Helvetica", fontsize=10];',
        '  edge [fontname="Helvetica", fontsize=9];',
    ]
    for box in topo.zones:
        style = "rounded,filled" + (",dashed" if box.kind is None else "")
        out += [f"  subgraph {box.key} {{",
                f"    label={dot_string(_zone_title(box))};",
                f'    style="{style}"; fillcolor="#f7f7f7"; color="#757575"; labelloc=t; '
                'fontname="Helvetica-Bold";']
        members = topo.in_zone(box.name)
        out += [f"    {_node_dot(n)}" for n in members]
        if not members:
            out.append(f'    {box.key}_empty [label="no links", shape=plaintext, '
                       'fontcolor="#757575"];')
        out.append("  }")
    far = {n.key for n in topo.in_zone(None)}
    out += [f"  {_node_dot(n)}" for n in topo.in_zone(None)]
    out += [f"  {_edge_dot(e, far)}" for e in topo.edges]
    out.append("}")
    return "\n".join(out) + "\n"


def _describe(topo: Topology, node: Node, other: Node) -> str:
    if other.link is None:
        return printable(_far_label(other))
    name = printable(other.link.name)
    return name if other.zone == node.zone else f"{printable(other.link.zone)}/{name}"


def _line(topo: Topology, node: Node, touching: list[Edge]) -> str:
    assert node.link is not None
    link = node.link
    text = f"{printable(link.name)} ({', '.join([link.class_, *_flags(link)])})"
    for e in touching:
        if e.kind == "veth":
            other = topo.node(e.head if e.tail == node.key else e.tail)
            text += f"  -- {_describe(topo, node, other)}"
        elif e.kind == "lower" and e.tail == node.key:
            text += f"  over {_describe(topo, node, topo.node(e.head))}"
        elif e.kind == "port" and e.tail == node.key and topo.node(e.head).link is None:
            text += f"  port of {_describe(topo, node, topo.node(e.head))}"
    return text


def render_text(topo: Topology) -> str:
    """A tree per zone, bridges with their ports below them, for a quick look in a terminal."""
    ports: dict[str, list[Node]] = {}
    nested: set[str] = set()
    touching: dict[str, list[Edge]] = {}
    for e in topo.edges:
        touching.setdefault(e.tail, []).append(e)
        if e.head != e.tail:
            touching.setdefault(e.head, []).append(e)
        head = topo.node(e.head)
        if e.kind == "port" and head.link is not None:
            ports.setdefault(e.head, []).append(topo.node(e.tail))
            nested.add(e.tail)
    out = [f"links {printable(viewer_title(topo.viewer))} sees"]

    def walk(nodes: list[Node], indent: str) -> None:
        for i, node in enumerate(nodes):
            last = i == len(nodes) - 1
            line = _line(topo, node, touching.get(node.key, []))
            out.append(f"{indent}{'└── ' if last else '├── '}{line}")
            walk(ports.get(node.key, []), indent + ("    " if last else "│   "))

    for box in topo.zones:
        out.append(printable(_zone_title(box)))
        top = [n for n in topo.in_zone(box.name) if n.key not in nested]
        walk(top, "")
        if not top:
            out.append("└── (no links)")
    return "\n".join(out) + "\n"
