"""Issue 12, finding 4: the agent must not obey labels as orders.

A container image carries labels, so `docker run` of an untrusted image used to be enough to make
the agent (a global-zone administrator) enslave a host NIC to a bridge, move another zone's port,
put a passthru macvlan on the host's NIC, inject links into an existing netns zone and halt it,
and delete every `host=` link the labels named when the container died.

Each test runs a hostile container next to the lab (broker + agent, red and blue) and asserts on
the real kernel that none of that happened. The "host NIC" is a veth this test makes with the
per-run prefix (never the machine's eth0); "another zone's port" is the lab's `lbred`; the
existing zone is a netns zone this test boots. Labels come either from the image (built here
with a Dockerfile of LABEL lines on top of the lab image, no registry) or from the operator
(`docker run --label`): image labels are ignored outright; operator labels still face the
broker's policy and the agent's create-only rule.

The agent handles events in order, so a benign labelled container started after the hostile
one (and stopped after it) is a barrier: once its zone is booted (or its host end deleted), the
agent has handled the hostile container's event too, and "nothing happened" is not just "not
yet".
"""

from __future__ import annotations

import contextlib
import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from pytest_docker import Services

from broker.client import Client, ZoneNotFound
from tests.conftest import PREFIX
from tests.e2e.test_lab import (
    BRIDGE,
    HOST_SOCKET,
    _container,
    _docker,
    _run,
    _wait,
    _zones,
)

LAB_IMAGE = "linkbroker/lab:latest"
NIC = f"{PREFIX}nic"  # the stand-in for a host NIC (a veth; its peer is NIC_PEER)
NIC_PEER = f"{PREFIX}nip"
VICTIM = f"{PREFIX}v"  # an existing netns zone
VICTIM_NS = f"{PREFIX}vns"
NEW_ZONE = f"{PREFIX}h"
BARRIER = f"{PREFIX}ok"
BRIDGES = (f"{PREFIX}x", f"{PREFIX}e")


def _hostile_labels(zone: str, first: str, second: str) -> dict[str, str]:
    """Every attack of finding 4 at once; `first` and `second` are the zone-side names."""
    return {
        "io.linkbroker.zone": zone,
        f"io.linkbroker.link.{first}": f"veth,host={NIC},bridge={BRIDGES[0]}",
        f"io.linkbroker.link.{second}": f"veth,host=lbred,bridge={BRIDGES[1]}",
        "io.linkbroker.link.mv0": f"macvlan,parent={NIC},mode=passthru",
        # A fresh host end on a bridge the lab's policy does not list for any zone.
        "io.linkbroker.link.zz9": f"veth,host={PREFIX}hz,bridge={BRIDGES[0]}",
    }


def _ip_json(*argv: str) -> list[dict[str, object]]:
    done = _run("ip", "-j", "-d", *argv)
    if done.returncode != 0:
        return []
    return list(json.loads(done.stdout or "[]"))


def _host_link(name: str) -> dict[str, object] | None:
    found = _ip_json("link", "show", "dev", name)
    return found[0] if found else None


def _ns_links(ns: str) -> dict[str, tuple[object, object]]:
    """name -> (operstate, flags) of the links in a named network namespace."""
    return {str(k["ifname"]): (k.get("operstate"), tuple(k.get("flags", [])))  # type: ignore[arg-type]
            for k in _ip_json("-n", ns, "link", "show")}


@dataclass
class Lab:
    project: str
    broker: str  # the broker service's container (linkbrokerd + linkbroker-agent)


@pytest.fixture(scope="module")
def lab(docker_services: Services, docker_compose_project_name: str) -> Lab:
    def ready() -> bool:
        zones = _zones()
        return all(n in zones and "eth0" in zones[n].links for n in ("red", "blue"))

    _wait("zones red and blue with eth0", ready, timeout=90)
    return Lab(docker_compose_project_name, _container(docker_compose_project_name, "broker"))


@pytest.fixture
def victims(lab: Lab) -> Iterator[None]:
    """The host NIC stand-in, and an existing netns zone with two links of its own."""
    made_ns = False
    try:
        subprocess.run(["ip", "link", "add", NIC, "type", "veth", "peer", "name", NIC_PEER],
                       check=True, timeout=30)
        subprocess.run(["ip", "netns", "add", VICTIM_NS], check=True, timeout=30)
        made_ns = True
        for name in ("vb0", "vb1"):
            subprocess.run(["ip", "-n", VICTIM_NS, "link", "add", name, "type", "bridge"],
                           check=True, timeout=30)
        with Client(HOST_SOCKET, timeout=30) as client:
            client.boot_zone(VICTIM, netns=VICTIM_NS, attach=False)
        _wait("the NIC stand-in in the global zone",
              lambda: NIC in {lk.name for lk in Client(HOST_SOCKET, timeout=10).list_links(
                  zone="global")}, timeout=15)
        yield
    finally:
        with Client(HOST_SOCKET, timeout=30) as client:
            for zone in (VICTIM, NEW_ZONE, BARRIER):
                with contextlib.suppress(ZoneNotFound):
                    client.halt_zone(zone)
        for name in (NIC, *BRIDGES, f"lb{BARRIER}", f"{PREFIX}hz"):
            _run("ip", "link", "del", name)
        if made_ns:
            _run("ip", "netns", "del", VICTIM_NS)
        # If an agent ever moved lbred, put it back so the lab's own tests still hold.
        if (red := _host_link("lbred")) is not None and red.get("master") != BRIDGE:
            _run("ip", "link", "set", "lbred", "master", BRIDGE)


@contextlib.contextmanager
def _image(tag: str, labels: dict[str, str]) -> Iterator[str]:
    """A local image: the lab image plus LABEL lines (no registry, no network)."""
    name = f"{PREFIX}/{tag}:latest"
    dockerfile = f"FROM {LAB_IMAGE}\n" + "".join(
        f"LABEL {json.dumps(k)}={json.dumps(v)}\n" for k, v in labels.items())
    done = subprocess.run(["docker", "build", "--network", "none", "-q", "-t", name, "-"],
                          input=dockerfile, capture_output=True, text=True, timeout=300,
                          check=False, env={"DOCKER_BUILDKIT": "0", "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr
    try:
        yield name
    finally:
        _run("docker", "image", "rm", "-f", name)


@contextlib.contextmanager
def _container_of(image: str, tag: str, labels: dict[str, str] | None = None) -> Iterator[str]:
    argv = ["docker", "run", "-d", "--network", "none", "--init", "--name", f"{PREFIX}-{tag}"]
    for key, value in (labels or {}).items():
        argv += ["--label", f"{key}={value}"]
    done = _run(*argv, image, "sleep", "infinity")
    assert done.returncode == 0, done.stderr
    cid = done.stdout.strip()
    try:
        yield cid
    finally:
        _run("docker", "rm", "-f", cid)


@contextlib.contextmanager
def _barrier() -> Iterator[None]:
    """A benign operator-labelled zone: booted means the agent handled every earlier start;
    its host end deleted after the stop means it handled every earlier stop."""
    labels = {"io.linkbroker.zone": BARRIER, "io.linkbroker.link.eth0": "veth"}
    with _container_of(LAB_IMAGE, "barrier", labels) as cid:
        _wait("the barrier zone with eth0",
              lambda: BARRIER in (zones := _zones()) and "eth0" in zones[BARRIER].links,
              timeout=60)
        yield
        _docker("rm", "-f", cid)
        _wait("the barrier's host end deleted by the agent",
              lambda: _host_link(f"lb{BARRIER}") is None, timeout=60)


def _assert_host_links_untouched() -> None:
    nic = _host_link(NIC)
    assert nic is not None, f"the host NIC stand-in {NIC} was deleted"
    assert nic.get("master") is None, f"{NIC} was enslaved to {nic.get('master')}"
    assert nic.get("promiscuity") == 0, f"{NIC} is promiscuous: a passthru macvlan took it"
    red = _host_link("lbred")
    assert red is not None, "zone red's port lbred was deleted"
    assert red.get("master") == BRIDGE, f"zone red's port was moved to {red.get('master')}"
    with Client(HOST_SOCKET, timeout=10) as client:
        over_nic = [lk for lk in client.list_links() if lk.parent == NIC]
    assert not over_nic, f"links made over the NIC stand-in: {over_nic}"


def _assert_no_bridges() -> None:
    left = [name for name in BRIDGES if _host_link(name) is not None]
    assert not left, f"bridges named by the labels exist: {left}"


def _broker_log(lab: Lab) -> str:
    done = _run("docker", "logs", lab.broker)
    return done.stdout + done.stderr


@pytest.mark.parametrize("source", ["image", "operator"])
def test_labels_cannot_take_host_links(lab: Lab, victims: None, source: str) -> None:
    """A new zone name with labels aimed at the host NIC, red's port and a passthru macvlan."""
    labels = _hostile_labels(NEW_ZONE, "eth0", "eth1")
    with contextlib.ExitStack() as stack:
        if source == "image":
            image = stack.enter_context(_image("hostile-new", labels))
            cid = stack.enter_context(_container_of(image, "hostile-new"))
        else:
            cid = stack.enter_context(_container_of(LAB_IMAGE, "hostile-new", labels))
        with _barrier():
            zones = _zones()
            if source == "image":
                assert NEW_ZONE not in zones, "an image's labels booted a zone"
                _assert_no_bridges()
                assert "ignored image label io.linkbroker.zone" in _broker_log(lab)
            else:
                # The operator asked for the zone: it is booted, but gets none of the links.
                assert zones[NEW_ZONE].container == cid
                assert not {"eth0", "eth1", "mv0", "zz9"} & set(zones[NEW_ZONE].links)
                assert _host_link(f"{PREFIX}hz") is None, "a port on an unlisted bridge"
            _assert_host_links_untouched()
            _docker("rm", "-f", cid)
        _wait("the hostile zone halted", lambda: NEW_ZONE not in _zones(), timeout=30)
        _assert_host_links_untouched()
        _assert_no_bridges()


@pytest.mark.parametrize("source", ["image", "operator"])
def test_labels_naming_an_existing_zone_get_nothing(
        lab: Lab, victims: None, source: str) -> None:
    """Labels naming an existing netns zone: no links injected into it, not halted after."""
    labels = _hostile_labels(VICTIM, "vb0", "vb1")
    before = _ns_links(VICTIM_NS)
    assert set(before) == {"lo", "vb0", "vb1"}
    with contextlib.ExitStack() as stack:
        if source == "image":
            image = stack.enter_context(_image("hostile-old", labels))
            cid = stack.enter_context(_container_of(image, "hostile-old"))
        else:
            cid = stack.enter_context(_container_of(LAB_IMAGE, "hostile-old", labels))
        with _barrier():
            assert _ns_links(VICTIM_NS) == before, "the labels changed the existing zone"
            _assert_host_links_untouched()
            _docker("rm", "-f", cid)
    victim = _zones().get(VICTIM)
    assert victim is not None and victim.kind == "netns", "the existing zone was halted"
    assert _ns_links(VICTIM_NS) == before
    _assert_host_links_untouched()
    _assert_no_bridges()
