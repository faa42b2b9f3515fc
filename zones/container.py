"""Container zones: a Docker container, by ID or name, is the network namespace of its init.

Only the Docker SDK is used, and only to find the container's ID and init pid; the namespace is
then held like any process zone's (pid plus start time, so a recycled pid is noticed).
"""

from __future__ import annotations

from typing import Any

from zones.handle import ZoneGone, ZoneHandle, open_pid_netns

__all__ = ["container_init", "open_container"]


def container_init(ref: str) -> tuple[str, int]:
    """(container ID, init pid) of a running container."""
    import docker
    import docker.errors

    try:
        client: Any = docker.from_env(timeout=10)
    except docker.errors.DockerException as exc:
        raise ZoneGone(f"Docker engine unreachable: {exc}") from exc
    try:
        attrs = client.api.inspect_container(ref)
    except docker.errors.NotFound:
        raise ZoneGone(f"no container {ref!r}") from None
    except docker.errors.DockerException as exc:
        raise ZoneGone(f"container {ref!r}: {exc}") from exc
    finally:
        client.close()
    pid = int(attrs.get("State", {}).get("Pid") or 0)
    if not attrs.get("State", {}).get("Running") or pid <= 0:
        raise ZoneGone(f"container {ref!r} is not running")
    return str(attrs["Id"]), pid


def open_container(ref: str) -> tuple[str, ZoneHandle]:
    container_id, pid = container_init(ref)
    return container_id, open_pid_netns(pid)
