"""linkbroker-agent's one Docker module: the :class:`~clients.agent.protocols.Engine` protocol
over the Docker SDK.

Everything the agent reads of the Docker engine, and the only module of it that imports
``docker`` (lazily, so ``--help`` and the unit tests do not need it): Docker's inspect and event
JSON are turned into plain :class:`~clients.agent.protocols.Container` and
:class:`~clients.agent.protocols.ContainerEvent` here, so the reconciler decides on data it
can be given by a fake. No decision is made here: which labels count is
:func:`clients.agent.reconciler.trusted_labels`'s call; this module only brings the image's
labels along so it can be made, and says when they could not be read.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

from clients.agent.brokercalls import BrokerCalls, Call
from clients.agent.labels import LABEL_PREFIX
from clients.agent.protocols import Container, ContainerEvent
from clients.agent.reconciler import delete_made as _delete_made

__all__ = ["DockerEngine", "delete_made", "docker_from_env"]

LOG = logging.getLogger("linkbroker-agent")


def docker_from_env() -> Any:
    """A Docker SDK client from the environment (DOCKER_HOST, or the local socket)."""
    import docker

    return docker.from_env(timeout=30)


class DockerEngine:
    """The Engine protocol over a Docker SDK client made by `factory`.

    The agent outlives any one connection to the engine, so the client is made by
    :meth:`connect` and dropped by :meth:`close`, again after each loss, while the reconciler
    keeps this one object.
    """

    def __init__(self, factory: Callable[[], Any] = docker_from_env) -> None:
        self.factory = factory
        self._docker: Any = None

    @property
    def docker(self) -> Any:
        if self._docker is None:
            raise ConnectionError("not connected to the Docker engine")
        return self._docker

    def connect(self) -> None:
        """A new SDK client (the previous one closed). It talks to the engine only when first
        used: :meth:`ping` to know the engine is there."""
        self.close()
        self._docker = self.factory()

    def ping(self) -> None:
        self.docker.ping()

    def close(self) -> None:
        docker, self._docker = self._docker, None
        if docker is not None:
            docker.close()

    def _container(self, info: dict[str, Any]) -> Container | None:
        """The container of an inspect reply if it runs with a live init process, with its
        image's labels when it carries io.linkbroker.* labels (None if those cannot be read)."""
        state = info.get("State", {})
        if not state.get("Running") or int(state.get("Pid") or 0) <= 0:
            return None
        cid = str(info.get("Id", ""))
        labels: dict[str, str] = dict(info.get("Config", {}).get("Labels") or {})
        image_labels: dict[str, str] | None = {}
        if any(k.startswith(LABEL_PREFIX) for k in labels):
            try:
                image = self.docker.api.inspect_image(info["Image"])
                image_labels = dict(image.get("Config", {}).get("Labels") or {})
            # docker.errors.APIError/NotFound and the SDK's connection errors are OSErrors
            # (through requests); a reply without the key is a KeyError.
            except (OSError, KeyError) as exc:
                LOG.error("container %s: image %s cannot be inspected (%s); labels ignored",
                          cid[:12], info.get("Image"), exc)
                image_labels = None
        return Container(cid, str(info.get("Name", "")).lstrip("/"), labels, image_labels)

    def running_containers(self, label: str) -> list[Container]:
        found: list[Container] = []
        for listed in self.docker.api.containers(filters={"label": label}):
            container = self._container(self.docker.api.inspect_container(listed["Id"]))
            if container is not None:
                found.append(container)
        return found

    def container(self, container_id: str) -> Container | None:
        api = self.docker.api  # not connected: an engine loss, not a gone container
        try:
            info = api.inspect_container(container_id)
        except OSError as exc:  # docker.errors.NotFound (an OSError): gone already
            raise LookupError(str(exc)) from exc
        return self._container(info)

    def is_running(self, container_id: str) -> bool:
        api = self.docker.api  # not connected: an engine loss, never "not running"
        try:
            info = api.inspect_container(container_id)
            return bool(info.get("State", {}).get("Running"))
        except OSError:  # docker.errors.NotFound (an OSError): gone
            return False

    def events(self) -> Iterator[ContainerEvent]:
        """Docker's container events from a second ago on, as plain events (an event without
        a container ID is dropped)."""
        since = int(time.time()) - 1
        stream: Any = self.docker.events(decode=True, since=since,
                                         filters={"type": "container"})
        try:
            for raw in stream:
                actor = raw.get("Actor") or {}
                cid = str(actor.get("ID") or raw.get("id") or "")
                if cid:
                    yield ContainerEvent(str(raw.get("Action") or raw.get("status") or ""),
                                         cid, dict(actor.get("Attributes") or {}))
        finally:
            stream.close()


def delete_made(call: Call, zone: str, ids: list[int]) -> None:
    """:func:`clients.agent.reconciler.delete_made` over a ``call`` function, as this helper
    was called before the reconciler existed (``tests/test_agent_addresses.py`` cleans up
    with it against a real broker)."""
    _delete_made(BrokerCalls(call), zone, ids)
