"""Container zones: a Docker container, by ID or name, is the network namespace of its init.

Only the Docker SDK is used, and only to find the container's ID and init pid; the namespace is
then held like any process zone's (pid plus start time, so a recycled pid is noticed).

The pid Docker reports is a bare number until something holds it: a pidfd is taken at once,
the engine is asked again (same container, same init pid, still running), and the namespace
opened only then, with the pidfd still alive after the open. So the namespace booted is that
of the process Docker called the container's init while the pidfd held it, not of whatever
got the number after the init died (issue 12, finding 8).
"""

from __future__ import annotations

import os
import signal
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
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        raise ZoneGone(f"container {ref!r}: its init {pid} is gone") from None
    try:
        if container_init(container_id) != (container_id, pid):
            raise ZoneGone(f"container {ref!r} restarted meanwhile")
        handle = open_pid_netns(pid)
        try:
            signal.pidfd_send_signal(pidfd, 0)
        except ProcessLookupError:
            handle.close()
            raise ZoneGone(f"container {ref!r}: its init {pid} exited meanwhile") from None
        return container_id, handle
    finally:
        os.close(pidfd)
