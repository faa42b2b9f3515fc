"""Names the plugin derives, so that DEL and GC find what ADD made from the runtime's IDs
alone, even after a broker restart or when the namespace is gone."""

from __future__ import annotations

import os
from _sha256 import sha256  # type: ignore[import-not-found]  # hashlib loads OpenSSL

from clients.cni._spec import E_NETNS_PATH, CniError

__all__ = ["HOST_END_STEM", "ZONE_STEM", "host_end_name", "namespace_target", "zone_name"]

ZONE_STEM = "cni-"
HOST_END_STEM = "lbc"


def zone_name(container_id: str) -> str:
    """`cni-` and the first 40 characters of the container ID (zone names stop at 64)."""
    return ZONE_STEM + container_id[:40]


def host_end_name(container_id: str, ifname: str) -> str:
    """`lbc` and 12 hex digits of a hash of (container, interface): 15 characters, the
    kernel's limit, the same on every call for one attachment."""
    digest = sha256(f"{container_id}\0{ifname}".encode()).hexdigest()
    return HOST_END_STEM + str(digest)[:12]


def namespace_target(path: str) -> dict[str, str | int]:
    """BootZone's way to the namespace CNI_NETNS names: a /run/netns (or /var/run/netns)
    path becomes `netns: NAME`, /proc/PID/ns/net becomes `pid: PID`. The broker opens it
    itself, without creating anything, and checks that it is a mounted namespace."""
    parts = path.split("/")
    if (len(parts) == 5 and parts[:2] == ["", "proc"] and parts[3:] == ["ns", "net"]
            and parts[2].isdigit() and parts[2].isascii() and parts[2][0] != "0"):
        return {"pid": int(parts[2])}
    directory, name = os.path.split(path)
    if name and os.path.realpath(directory) == "/run/netns":
        return {"netns": name}
    raise CniError(E_NETNS_PATH, "CNI_NETNS must be under /run/netns or be /proc/PID/ns/net",
                   path)


def namespace_inode(path: str) -> int | None:
    try:
        return os.stat(path).st_ino
    except OSError:
        return None
