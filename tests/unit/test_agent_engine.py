"""linkbroker-agent's Docker module (clients.agent.engine.DockerEngine) over a stub of the
Docker SDK: Docker's inspect and event JSON become plain containers and events, with the
image's labels brought along (None when they cannot be read). No Docker needed (issue 16)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from clients.agent.engine import DockerEngine
from clients.agent.protocols import Container, ContainerEvent

CID = "c0ffee" * 10 + "abcd"
OTHER = "0ddba11" * 9 + "f"


class NotFound(OSError):
    """As docker.errors.NotFound, which is an OSError through requests' RequestException."""


class Stream:
    def __init__(self, events: list[dict[str, Any]]) -> None:
        self.events, self.closed = events, False

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.events)

    def close(self) -> None:
        self.closed = True


class StubAPI:
    def __init__(self) -> None:
        self.containers_info: dict[str, dict[str, Any]] = {}
        self.images: dict[str, dict[str, Any]] = {}
        self.calls: list[tuple[Any, ...]] = []

    def containers(self, filters: dict[str, str]) -> list[dict[str, str]]:
        self.calls.append(("containers", filters))
        return [{"Id": cid} for cid in self.containers_info]

    def inspect_container(self, cid: str) -> dict[str, Any]:
        self.calls.append(("inspect_container", cid))
        if cid not in self.containers_info:
            raise NotFound(f"No such container: {cid}")
        return self.containers_info[cid]

    def inspect_image(self, image: str) -> dict[str, Any]:
        self.calls.append(("inspect_image", image))
        if image not in self.images:
            raise NotFound(f"No such image: {image}")
        return self.images[image]


class StubDocker:
    def __init__(self) -> None:
        self.api = StubAPI()
        self.stream = Stream([])
        self.closed = False
        self.events_args: dict[str, Any] = {}

    def events(self, **kwargs: Any) -> Stream:
        self.events_args = kwargs
        return self.stream

    def ping(self) -> bool:
        return True

    def close(self) -> None:
        self.closed = True


def info(cid: str, labels: dict[str, str], *, running: bool = True, pid: int = 42,
         image: str = "sha256:img") -> dict[str, Any]:
    return {"Id": cid, "Name": "/web", "Image": image,
            "State": {"Running": running, "Pid": pid}, "Config": {"Labels": labels}}


def connected() -> tuple[DockerEngine, StubDocker]:
    docker = StubDocker()
    engine = DockerEngine(lambda: docker)
    engine.connect()
    return engine, docker


def test_running_containers_bring_their_image_labels_along() -> None:
    engine, docker = connected()
    image = {"io.linkbroker.link.eth0": "veth", "org.opencontainers.image.title": "x"}
    docker.api.images["sha256:img"] = {"Config": {"Labels": image}}
    labels = {**image, "io.linkbroker.zone": "red"}
    docker.api.containers_info = {
        CID: info(CID, labels),
        OTHER: info(OTHER, {"io.linkbroker.zone": "blue"}, pid=0),  # no live init: skipped
    }
    assert engine.running_containers("io.linkbroker.zone") == [
        Container(CID, "web", labels, image)]
    assert docker.api.calls == [
        ("containers", {"label": "io.linkbroker.zone"}),
        ("inspect_container", CID), ("inspect_image", "sha256:img"),
        ("inspect_container", OTHER),
    ]


def test_an_image_that_cannot_be_inspected_gives_no_image_labels() -> None:
    engine, docker = connected()
    docker.api.containers_info = {CID: info(CID, {"io.linkbroker.zone": "red"}, image="gone")}
    assert engine.container(CID) == Container(CID, "web", {"io.linkbroker.zone": "red"}, None)


def test_a_container_without_agent_labels_needs_no_image() -> None:
    engine, docker = connected()
    docker.api.containers_info = {CID: info(CID, {"other": "x"}, image="gone")}
    assert engine.container(CID) == Container(CID, "web", {"other": "x"}, {})
    assert docker.api.calls == [("inspect_container", CID)]


def test_a_gone_container_is_a_lookup_error_and_not_running() -> None:
    engine, docker = connected()
    docker.api.containers_info = {OTHER: info(OTHER, {}, running=False)}
    with pytest.raises(LookupError, match="No such container"):
        engine.container(CID)
    assert engine.container(OTHER) is None
    assert engine.is_running(CID) is False
    assert engine.is_running(OTHER) is False


def test_an_engine_not_connected_is_never_taken_for_a_stopped_container() -> None:
    engine, docker = connected()
    engine.close()
    assert docker.closed
    with pytest.raises(ConnectionError):
        engine.is_running(CID)
    with pytest.raises(ConnectionError):
        engine.container(CID)


def test_events_are_plain_and_the_stream_is_closed() -> None:
    engine, docker = connected()
    docker.stream = Stream([
        {"Action": "start", "id": CID,
         "Actor": {"ID": CID, "Attributes": {"io.linkbroker.zone": "red", "name": "web"}}},
        {"status": "die", "id": OTHER},  # the old format: no Actor
        {"Action": "start", "Actor": {}},  # no container ID: dropped
    ])
    assert list(engine.events()) == [
        ContainerEvent("start", CID, {"io.linkbroker.zone": "red", "name": "web"}),
        ContainerEvent("die", OTHER, {}),
    ]
    assert docker.stream.closed
    assert docker.events_args["filters"] == {"type": "container"}
    assert docker.events_args["decode"] is True


def test_the_sdks_errors_are_the_oserrors_the_engine_catches() -> None:
    """DockerEngine catches OSError around inspect calls: true of the real SDK's errors."""
    errors = pytest.importorskip("docker.errors")
    requests_exceptions = pytest.importorskip("requests.exceptions")
    for cls in (errors.NotFound, errors.APIError, requests_exceptions.ConnectionError):
        assert issubclass(cls, OSError), cls
