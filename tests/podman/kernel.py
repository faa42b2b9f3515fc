"""What the kernel and host-local hold, read directly: the CNI tests' ground truth."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path


def _run(*cmd: str) -> str:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False).stdout


def bridge_ports(bridge: str) -> set[str]:
    """Interfaces whose master is `bridge` in the host namespace (empty if no bridge)."""
    out = _run("ip", "-j", "link", "show", "master", bridge)
    return {d["ifname"] for d in json.loads(out or "[]")}


def host_link_exists(name: str) -> bool:
    return bool(json.loads(_run("ip", "-j", "link", "show", "dev", name) or "[]"))


def ns_addrs(netns: str, dev: str) -> set[str]:
    out = _run("ip", "-n", netns, "-j", "addr", "show", "dev", dev)
    return {f"{a['local']}/{a['prefixlen']}" for d in json.loads(out or "[]")
            for a in d["addr_info"] if a.get("family") == "inet"}


def ns_links(netns: str) -> set[str]:
    return {d["ifname"] for d in json.loads(_run("ip", "-n", netns, "-j", "link") or "[]")}


def leases(data_dir: Path, network: str) -> list[str]:
    """host-local's lease files (named by address) of a network."""
    d = data_dir / network
    if not d.exists():
        return []
    return sorted(p.name for p in d.iterdir() if p.name[0].isdigit() or ":" in p.name)
