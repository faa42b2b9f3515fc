"""BootZone's one entry into the zone kinds: parameters in, an open namespace handle out."""

from __future__ import annotations

from typing import Protocol

from zones.container import open_container
from zones.handle import ZoneHandle, open_named_netns, open_pid_netns

__all__ = ["BootTarget", "open_zone"]


class BootTarget(Protocol):
    @property
    def netns(self) -> str | None: ...
    @property
    def pid(self) -> int | None: ...
    @property
    def container(self) -> str | None: ...


def open_zone(target: BootTarget) -> tuple[str, ZoneHandle, str | None]:
    """(kind, handle, container ID) for exactly one of netns, pid or container."""
    if target.netns is not None:
        return "netns", open_named_netns(target.netns), None
    if target.pid is not None:
        return "process", open_pid_netns(target.pid), None
    assert target.container is not None
    container_id, handle = open_container(target.container)
    return "container", handle, container_id
