"""linkbroker-agent's decisions (clients.agent.reconciler) against a fake broker and a fake
engine: no root, no Docker, no broker (issue 16).

Each test asserts the exact broker calls the reconciler made (and what it recorded), so a
rule of the careful deputy that stops holding fails here: booting only from the operator's
labels, only the container's own zone, deleting only what it made, by ID.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from broker._errors import (
    AddressExists,
    KernelError,
    LinkExists,
    LinkNotFound,
    ZoneExists,
    ZoneNotFound,
)
from broker._types import Address, Link, LinkSpec, Zone
from broker.client import Client
from clients.agent.brokercalls import BrokerCalls
from clients.agent.engine import DockerEngine
from clients.agent.protocols import Broker, Container, ContainerEvent, Engine
from clients.agent.reconciler import Reconciler
from clients.agent.state import AgentState, Made

CID = "c0ffee" * 10 + "abcd"  # 64 hex digits, as Docker's IDs
OTHER = "0ddba11" * 9 + "f"
GONE = "dead" * 16
ZONE = "io.linkbroker.zone"


class FakeBroker:
    """The Broker protocol in memory, recording every call. Like the real broker: a halt sends
    the global zone's lent links home under a new name (lbxID) and deletes the zone's own;
    deleting one end of a veth deletes its peer."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.zones: dict[str, Zone] = {}
        self.links: list[Link] = []
        self.addresses: set[tuple[str, str, str]] = set()
        self.peer_of: dict[int, int] = {}
        self.fail_create: dict[str, Exception] = {}
        self._next_id = 1

    # Set-up helpers, not recorded.
    def add_zone(self, name: str, kind: str = "container", container: str | None = None
                 ) -> None:
        self.zones[name] = Zone(name=name, kind=kind, netns_inode=len(self.zones) + 100,
                                attached=True, links=[], container=container)

    def add_link(self, name: str, zone: str = "global", class_: str = "phys", *,
                 owner: str | None = None, peer: str | None = None,
                 master: str | None = None, link_id: int | None = None) -> Link:
        if link_id is None:
            link_id, self._next_id = self._next_id, self._next_id + 1
        link = Link(id=link_id, name=name, class_=class_, zone=zone, owner=owner or zone,
                    onloan=owner is not None and owner != zone, persistent=False, state="up",
                    peer=peer, master=master)
        self.links.append(link)
        return link

    def names(self) -> set[tuple[int, str, str]]:
        return {(lk.id, lk.name, lk.zone) for lk in self.links}

    def _find(self, name: str, zone: str) -> Link:
        for link in self.links:
            if link.name == name and link.zone == zone:
                return link
        raise LinkNotFound(name)

    # The protocol.
    def list_zones(self) -> list[Zone]:
        self.calls.append(("list_zones",))
        return list(self.zones.values())

    def get_zone(self, name: str) -> Zone:
        self.calls.append(("get_zone", name))
        if name not in self.zones:
            raise ZoneNotFound(name)
        return self.zones[name]

    def boot_zone(self, name: str, *, container: str) -> Zone:
        self.calls.append(("boot_zone", name, container))
        if name in self.zones:
            raise ZoneExists(name)
        self.add_zone(name, "container", container)
        return self.zones[name]

    def halt_zone(self, name: str) -> None:
        self.calls.append(("halt_zone", name))
        if self.zones.pop(name, None) is None:
            raise ZoneNotFound(name)
        kept = []
        for link in self.links:
            if link.zone != name:
                kept.append(link)
            elif link.owner == "global":  # a lent link comes home, renamed
                kept.append(Link(id=link.id, name=f"lbx{link.id}", class_=link.class_,
                                 zone="global", owner="global", onloan=False,
                                 persistent=False, state="down", peer=link.peer))
        self.links = kept

    def list_links(self, zone: str | None = None) -> list[Link]:
        self.calls.append(("list_links", zone))
        return [lk for lk in self.links if zone is None or lk.zone == zone]

    def get_link(self, name: str, zone: str) -> Link:
        self.calls.append(("get_link", name, zone))
        return self._find(name, zone)

    def create_link(self, spec: LinkSpec) -> Link:
        self.calls.append(("create_link", spec))
        if spec.name in self.fail_create:
            raise self.fail_create[spec.name]
        ends = [(spec.name, spec.zone or "global")]
        if spec.peer is not None:
            ends.append((spec.peer, spec.peer_zone or "global"))
        for name, zone in ends:
            if any(lk.name == name and lk.zone == zone for lk in self.links):
                raise LinkExists(name)
        made = self.add_link(spec.name, ends[0][1], spec.class_, owner="global", peer=spec.peer)
        if spec.peer is not None:
            end = self.add_link(spec.peer, ends[1][1], spec.class_, owner="global",
                                peer=spec.name, master=spec.uplink)
            self.peer_of[made.id], self.peer_of[end.id] = end.id, made.id
        return made

    def delete_link(self, name: str, zone: str) -> None:
        self.calls.append(("delete_link", name, zone))
        link = self._find(name, zone)
        self.links = [lk for lk in self.links
                      if lk.id not in (link.id, self.peer_of.get(link.id))]

    def set_link_properties(self, name: str, zone: str, *, up: bool) -> Link:
        self.calls.append(("set_link_properties", name, zone, up))
        return self._find(name, zone)

    def add_address(self, link: str, address: str, zone: str) -> Address:
        self.calls.append(("add_address", link, address, zone))
        if (link, address, zone) in self.addresses:
            raise AddressExists(address)
        self.addresses.add((link, address, zone))
        return Address(link=link, link_id=self._find(link, zone).id, zone=zone,
                       address=address, family="inet", persistent=False)


class FakeEngine:
    """The Engine protocol over a dict of running containers, recording every call."""

    def __init__(self, *containers: Container) -> None:
        self.running = {c.id: c for c in containers}
        self.calls: list[tuple[str, str]] = []

    def running_containers(self, label: str) -> list[Container]:
        self.calls.append(("running_containers", label))
        return [c for c in self.running.values() if label in c.labels]

    def container(self, container_id: str) -> Container | None:
        self.calls.append(("container", container_id))
        if container_id not in self.running:
            raise LookupError(f"No such container: {container_id}")
        return self.running[container_id]

    def is_running(self, container_id: str) -> bool:
        self.calls.append(("is_running", container_id))
        return container_id in self.running

    def events(self) -> Iterator[ContainerEvent]:
        return iter(())


def labelled(cid: str, labels: Mapping[str, str], image: Mapping[str, str] | None = None,
             name: str = "web") -> Container:
    return Container(cid, name, {**(image or {}), **labels}, {} if image is None else image)


def veth(name: str, peer: str, zone: str = "red", bridge: str | None = None) -> LinkSpec:
    return LinkSpec(name=name, class_="veth", zone=zone, peer=peer,
                    peer_zone=None if bridge else "global", uplink=bridge, up=True,
                    persistent=False, zone_policy=True)


def macvlan(name: str, parent: str, zone: str = "red") -> LinkSpec:
    return LinkSpec(name=name, class_="macvlan", zone=zone, parent=parent, mode="bridge",
                    up=True, persistent=False, zone_policy=True)


def setup(*containers: Container) -> tuple[Reconciler, FakeBroker, FakeEngine]:
    broker, engine = FakeBroker(), FakeEngine(*containers)
    broker.add_link("eth1")  # the host's NIC, parent of the macvlans
    return Reconciler(broker, engine, AgentState()), broker, engine


def start(rec: Reconciler, container: Container) -> None:
    rec.handle(ContainerEvent("start", container.id, dict(container.labels)))


RED = {ZONE: "red",
       "io.linkbroker.link.eth0": "veth,addr=192.0.2.1/24",
       "io.linkbroker.link.net1": "veth,bridge=lbbr0"}


def test_a_labelled_container_starting_is_booted_and_its_links_made() -> None:
    container = labelled(CID, RED)
    rec, broker, engine = setup(container)
    start(rec, container)
    assert engine.calls == [("container", CID)]
    assert broker.calls == [
        ("boot_zone", "red", CID),
        ("create_link", veth("eth0", "lbred")),
        ("get_link", "lbred", "global"),
        ("set_link_properties", "lbred", "global", True),
        ("add_address", "eth0", "192.0.2.1/24", "red"),
        ("get_link", "lbbr0", "global"),  # LinkNotFound: the agent makes it
        ("create_link", LinkSpec(name="lbbr0", class_="bridge", zone="global", up=True,
                                 persistent=False)),
        ("create_link", veth("net1", "lbred.net1", bridge="lbbr0")),
        ("get_link", "lbred.net1", "global"),
    ]
    # IDs: eth1 1, eth0 2, lbred 3, lbbr0 4, net1 5, lbred.net1 6.
    assert rec.state.containers == {CID: Made("red", [2, 3, 5, 6])}
    assert rec.state.bridges == {4}
    assert broker.zones["red"].container == CID


def test_a_dying_container_has_its_zone_halted_and_made_links_deleted_by_id() -> None:
    labels = {ZONE: "red", "io.linkbroker.link.eth0": "veth",
              "io.linkbroker.link.mv0": "macvlan,parent=eth1"}
    container = labelled(CID, labels)
    rec, broker, engine = setup(container)
    broker.add_link("eth0")  # the host's own eth0: same name, not the agent's
    start(rec, container)
    # IDs: eth1 1, host eth0 2, red's eth0 3, lbred 4, mv0 5.
    assert rec.state.containers == {CID: Made("red", [3, 4, 5])}
    del engine.running[CID]
    broker.calls.clear()
    rec.handle(ContainerEvent("die", CID, labels))
    assert broker.calls == [
        ("list_zones",),
        ("halt_zone", "red"),  # the lent eth0 and mv0 came home as lbx3, lbx5
        ("list_links", None),
        ("delete_link", "lbx3", "global"),  # ID 3, and its peer lbred (ID 4) with it
        ("list_links", None),  # ID 4: gone with its peer
        ("list_links", None),
        ("delete_link", "lbx5", "global"),
    ]
    assert broker.names() == {(1, "eth1", "global"), (2, "eth0", "global")}
    assert "red" not in broker.zones
    assert rec.state.containers == {}


def test_reconcile_boots_running_containers_and_halts_zones_of_gone_ones() -> None:
    new = labelled(CID, {ZONE: "new"})
    old = labelled(OTHER, {ZONE: "old"})
    rec, broker, engine = setup(new, old)
    broker.add_zone("old", container=OTHER)  # booted already: left as it is
    broker.add_zone("stale", container=GONE)  # its container is gone
    broker.add_zone("netz", kind="netns")  # no container's: never halted
    # Recorded by an agent before a restart: GONE's host end, back home after a halt.
    rec.state.containers[GONE] = Made("stale", [42])
    broker.add_link("lbx42", class_="veth", owner="global", link_id=42)
    rec.reconcile()
    assert engine.calls == [("running_containers", ZONE), ("is_running", GONE)]
    assert broker.calls == [
        ("list_zones",),
        ("list_zones",),  # halt_container(GONE)
        ("halt_zone", "stale"),
        ("list_links", None),
        ("delete_link", "lbx42", "global"),
        ("boot_zone", "new", CID),
    ]
    assert {n: z.container for n, z in broker.zones.items()} == {
        "old": OTHER, "netz": None, "new": CID}
    assert rec.state.containers == {CID: Made("new")}


def test_a_recorded_id_naming_a_zone_own_link_is_left_alone() -> None:
    """A state file outliving the broker's store: its ID now names a link the agent could
    never have made (a zone's own), which is not deleted; the record is dropped."""
    rec, broker, _ = setup()
    broker.add_zone("netz", kind="netns")
    broker.add_link("eth0", zone="netz", link_id=7)
    rec.state.containers[GONE] = Made("stale", [7])
    rec.handle(ContainerEvent("die", GONE, {}))
    assert broker.calls == [("list_zones",), ("list_links", None)]
    assert (7, "eth0", "netz") in broker.names()
    assert rec.state.containers == {}


@pytest.mark.parametrize(("kind", "owner"), [("container", OTHER), ("netns", None)])
def test_an_existing_zone_of_another_container_or_kind_gets_nothing(
        kind: str, owner: str | None) -> None:
    container = labelled(CID, RED)
    rec, broker, _ = setup(container)
    broker.add_zone("red", kind=kind, container=owner)
    broker.add_link("eth0", zone="red")  # that zone's own link
    start(rec, container)
    assert broker.calls == [("boot_zone", "red", CID), ("get_zone", "red")]
    assert rec.state.containers == {}
    # Its stop halts nothing either: the zone is not this container's.
    broker.calls.clear()
    rec.handle(ContainerEvent("stop", CID, RED))
    assert broker.calls == [("list_zones",)]
    assert "red" in broker.zones
    assert (2, "eth0", "red") in broker.names()


def test_a_zone_booted_for_the_same_container_is_used_again() -> None:
    container = labelled(CID, {ZONE: "red", "io.linkbroker.link.mv0": "macvlan,parent=eth1"})
    rec, broker, _ = setup(container)
    broker.add_zone("red", container=CID)
    start(rec, container)
    assert broker.calls == [("boot_zone", "red", CID), ("get_zone", "red"),
                            ("create_link", macvlan("mv0", "eth1"))]
    assert rec.state.containers == {CID: Made("red", [2])}


def test_labels_that_come_with_the_image_are_ignored() -> None:
    image = {ZONE: "evil", "io.linkbroker.link.eth0": "veth,host=eth1,bridge=x"}
    evil = labelled(CID, {}, image=image)
    rec, broker, engine = setup(evil)
    start(rec, evil)
    rec.reconcile()
    assert broker.calls == [("list_zones",)]  # the reconcile's; nothing booted or made
    # The operator's own zone label counts, the image's link label still does not.
    mixed = labelled(OTHER, {ZONE: "red"}, image=image)
    engine.running[OTHER] = mixed
    broker.calls.clear()
    start(rec, mixed)
    assert broker.calls == [("boot_zone", "red", OTHER)]
    assert rec.state.containers == {OTHER: Made("red")}


def test_an_image_that_cannot_be_inspected_makes_every_label_ignored() -> None:
    container = Container(CID, "web", RED, None)
    rec, broker, _ = setup(container)
    start(rec, container)
    rec.reconcile()
    assert broker.calls == [("list_zones",)]
    assert rec.state.containers == {}


def test_a_bad_label_boots_nothing(caplog: pytest.LogCaptureFixture) -> None:
    container = labelled(CID, {ZONE: "red", "io.linkbroker.link.eth0": "veth,mtu=big",
                               "io.linkbroker.link.mv0": "macvlan,parent=eth1"})
    rec, broker, _ = setup(container)
    start(rec, container)
    rec.reconcile()
    assert broker.calls == [("list_zones",)]
    assert rec.state.containers == {}
    assert "bad labels" in caplog.text


def test_a_broker_error_on_one_link_does_not_stop_the_others() -> None:
    labels = {ZONE: "red", "io.linkbroker.link.eth0": "veth",
              "io.linkbroker.link.mv0": "macvlan,parent=eth1",
              "io.linkbroker.link.net1": "veth"}
    container = labelled(CID, labels)
    rec, broker, _ = setup(container)
    broker.fail_create["eth0"] = KernelError(1, "Operation not permitted")
    broker.add_link("lbred.net1")  # net1's host end: LinkExists, never adopted
    start(rec, container)
    assert broker.calls == [
        ("boot_zone", "red", CID),
        ("create_link", veth("eth0", "lbred")),
        ("create_link", macvlan("mv0", "eth1")),
        ("create_link", veth("net1", "lbred.net1")),
    ]
    # IDs: eth1 1, lbred.net1 2 (the host's), mv0 3.
    assert rec.state.containers == {CID: Made("red", [3])}
    assert broker.names() == {(1, "eth1", "global"), (2, "lbred.net1", "global"),
                              (3, "mv0", "red")}


def test_a_start_of_a_gone_or_unlabelled_container_does_nothing() -> None:
    rec, broker, engine = setup()
    rec.handle(ContainerEvent("start", CID, {ZONE: "red"}))  # cannot be inspected
    rec.handle(ContainerEvent("start", OTHER, {"other": "x"}))  # not the agent's business
    rec.handle(ContainerEvent("die", OTHER, {}))  # neither labelled nor recorded
    assert engine.calls == [("container", CID)]
    assert broker.calls == []


def test_the_sweep_at_exit_halts_only_zones_whose_container_is_gone() -> None:
    alive = labelled(OTHER, {ZONE: "alive"})
    rec, broker, engine = setup(alive)
    broker.add_zone("alive", container=OTHER)
    broker.add_zone("stale", container=GONE)
    rec.sweep(list(broker.zones.values()))
    assert engine.calls == [("is_running", OTHER), ("is_running", GONE)]
    assert broker.calls == [("list_zones",), ("halt_zone", "stale")]
    assert set(broker.zones) == {"alive"}


def test_the_agent_own_bridge_is_deleted_when_no_port_is_left() -> None:
    container = labelled(CID, {ZONE: "red", "io.linkbroker.link.eth0": "veth,bridge=lbbr0"})
    rec, broker, engine = setup(container)
    start(rec, container)
    # IDs: eth1 1, lbbr0 2, eth0 3, lbred (port of lbbr0) 4.
    assert rec.state.bridges == {2}
    del engine.running[CID]
    broker.calls.clear()
    rec.handle(ContainerEvent("die", CID, {ZONE: "red"}))
    assert broker.calls[-2:] == [("list_links", "global"), ("delete_link", "lbbr0", "global")]
    assert broker.names() == {(1, "eth1", "global")}
    assert rec.state.bridges == set()


def test_the_real_sides_are_the_protocols() -> None:
    """Checked by mypy (this function is typed); at run time only that they are wired."""

    def as_broker(client: Client, calls: BrokerCalls, fake: FakeBroker) -> list[Broker]:
        return [client, calls, fake]

    def as_engine(docker: DockerEngine, fake: FakeEngine) -> list[Engine]:
        return [docker, fake]

    assert callable(as_broker) and callable(as_engine)


def test_the_reconciler_loads_no_docker_and_no_socket() -> None:
    probe = ("import sys, clients.agent.reconciler; "
             "print(sorted(m for m in sys.modules if m.split('.')[0] in "
             "('docker', 'socket', 'pyroute2') or m in ('broker.client', 'clients.agent.engine',"
             " 'clients.agent.main', 'broker._service', 'broker._daemon')))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True, timeout=60).stdout.strip()
    assert out == "[]", out
