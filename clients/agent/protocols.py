"""The two sides linkbroker-agent's reconciler is written against: the broker and the engine.

The agent's decisions (which container to boot as which zone, which zone to halt, which links
to make or delete) are where its careful-deputy rules live, so they are the part worth testing,
and they need neither Docker nor the broker's socket to be made. :class:`Broker` and
:class:`Engine` are what :mod:`clients.agent.reconciler` asks of the two, as small
:class:`typing.Protocol`\\ s: :mod:`clients.agent.main` wires in the real ones
(:class:`clients.agent.brokercalls.BrokerCalls` over ``broker.client.Client`` with reconnection,
:class:`clients.agent.engine.DockerEngine` over the Docker SDK), unit tests wire in fakes that
record every call (``tests/unit/test_agent_reconciler.py``). Plain data crosses both: broker
replies are the contract's own types, Docker's inspect and event dicts become
:class:`Container` and :class:`ContainerEvent` in the engine module, so nothing downstream
reads Docker's JSON.

Pure declarations: no Docker, no socket (the contract's types and nothing else of the broker).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from broker._types import Address, Link, LinkSpec, Zone

__all__ = ["Broker", "Container", "ContainerEvent", "Engine"]


@dataclass(frozen=True)
class Container:
    """A running container as the engine sees it.

    ``labels`` are Docker's ``Config.Labels``, which merge the image's labels into the ones the
    operator gave. ``image_labels`` are the image's own, so the reconciler can tell the two
    apart (:func:`clients.agent.labels.operator_labels`); ``None`` when the image could not be
    inspected, and then no ``io.linkbroker.*`` label can be trusted (fail closed).
    """

    id: str
    name: str
    labels: Mapping[str, str]
    image_labels: Mapping[str, str] | None = field(default_factory=dict)


@dataclass(frozen=True)
class ContainerEvent:
    """One event of the engine's container event stream, plain.

    ``action`` is Docker's (``start``, ``die``, ``stop``, ...), ``container`` the full ID, and
    ``labels`` the labels the event carries (Docker's merged ones, the image's included): only
    a hint of whether the container is the agent's business, read again before acting.
    """

    action: str
    container: str
    labels: Mapping[str, str] = field(default_factory=dict)


class Broker(Protocol):
    """The broker calls the agent makes: a subset of ``broker.client.Client``, same names and
    parameters, so a ``Client`` is one as it is (the unit tests hold mypy to that)."""

    def list_zones(self) -> list[Zone]: ...

    def get_zone(self, name: str) -> Zone: ...

    def boot_zone(self, name: str, *, container: str) -> Zone: ...

    def halt_zone(self, name: str) -> None: ...

    def list_links(self, zone: str | None = None) -> list[Link]: ...

    def get_link(self, name: str, zone: str) -> Link: ...

    def create_link(self, spec: LinkSpec) -> Link: ...

    def delete_link(self, name: str, zone: str) -> None: ...

    def set_link_properties(self, name: str, zone: str, *, up: bool) -> Link: ...

    def add_address(self, link: str, address: str, zone: str) -> Address: ...


class Engine(Protocol):
    """What the agent asks the container engine: which containers run, with their labels, and
    what happens to them. Errors other than those documented here (the engine unreachable)
    propagate: the caller reconnects and reconciles again."""

    def running_containers(self, label: str) -> list[Container]:
        """The running containers (with a live init process) that carry ``label``, whoever
        gave it: the reconciler decides which labels count."""
        ...

    def container(self, container_id: str) -> Container | None:
        """The container if it runs with a live init process, else None; LookupError when it
        cannot be inspected (gone already)."""
        ...

    def is_running(self, container_id: str) -> bool:
        """Whether the container runs; False when it cannot be inspected (gone)."""
        ...

    def events(self) -> Iterator[ContainerEvent]:
        """The container events from about now on, until the stream ends (engine lost)."""
        ...
