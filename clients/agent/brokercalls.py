"""The agent's :class:`~clients.agent.protocols.Broker`: each call on a connection of the
caller's choosing.

The agent holds no connection to the broker between calls: it may run for months while the
broker restarts, so every call goes through a ``call`` function that opens a connection,
makes the call and, if the broker went away, reconnects (:meth:`clients.agent.main.Agent._call`
retries with backoff). This class only turns that one function into the methods the
reconciler is written against, so the reconciler never sees a socket or a retry. Arguments
are bound when a method is called, not when the call runs (no late-binding surprises from a
loop variable).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, TypeVar

from broker._types import Address, Link, LinkSpec, Zone

if TYPE_CHECKING:
    from broker.client import Client

__all__ = ["BrokerCalls", "Call"]

T = TypeVar("T")


class Call(Protocol):
    """Runs one function on a connected ``Client`` and returns what it returns."""

    def __call__(self, fn: Callable[[Client], T], /) -> T: ...


@dataclass(frozen=True)
class BrokerCalls:
    """The Broker protocol over `call`: one broker call per method call."""

    call: Call

    def list_zones(self) -> list[Zone]:
        return self.call(lambda c: c.list_zones())

    def get_zone(self, name: str) -> Zone:
        return self.call(lambda c: c.get_zone(name))

    def boot_zone(self, name: str, *, container: str) -> Zone:
        return self.call(lambda c: c.boot_zone(name, container=container))

    def halt_zone(self, name: str) -> None:
        self.call(lambda c: c.halt_zone(name))

    def list_links(self, zone: str | None = None) -> list[Link]:
        return self.call(lambda c: c.list_links(zone=zone))

    def get_link(self, name: str, zone: str) -> Link:
        return self.call(lambda c: c.get_link(name, zone))

    def create_link(self, spec: LinkSpec) -> Link:
        return self.call(lambda c: c.create_link(spec))

    def delete_link(self, name: str, zone: str) -> None:
        self.call(lambda c: c.delete_link(name, zone))

    def set_link_properties(self, name: str, zone: str, *, up: bool) -> Link:
        return self.call(lambda c: c.set_link_properties(name, zone, up=up))

    def add_address(self, link: str, address: str, zone: str) -> Address:
        return self.call(lambda c: c.add_address(link, address, zone))
