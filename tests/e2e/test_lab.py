"""End to end on the Docker lab (compose.yaml): broker + agent, zones red and blue, and evil.

The tests share the session's lab and each leaves it as it found it, so none depends on
another or on their order: the one that stops red starts it again, the one that takes the lab
down brings it up again (and finds the zones to check by itself). The host's
network namespace is the global zone (the broker service runs with network_mode: host), so
the host's own view (`ip`, /proc) is the global zone's.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest
from pytest_docker import Services

from broker.client import Client, Zone, ZoneNotFound
from tests.e2e.conftest import LAB_LINKS

HOST_SOCKET = "/run/linkbroker/broker.sock"
ADDR = {"red": "198.51.100.1", "blue": "198.51.100.2"}
HOST_END = {"red": "lbred", "blue": "lbblue"}
BRIDGE = "lbbr0"
_T = TypeVar("_T")

# netns inodes of the lab's zones, seen during the tests, checked gone after `down`.
SEEN_NETNS: set[int] = set()


def _run(*argv: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=timeout, check=False)


def _docker(*argv: str) -> str:
    done = _run("docker", *argv)
    assert done.returncode == 0, f"docker {' '.join(argv)} failed: {done.stderr}"
    return done.stdout


def _container(project: str, service: str) -> str:
    ids = _docker("ps", "--all", "--quiet",
                  "--filter", f"label=com.docker.compose.project={project}",
                  "--filter", f"label=com.docker.compose.service={service}").split()
    assert len(ids) == 1, f"expected one container for {service}, found {ids}"
    return ids[0]


def _wait(what: str, probe: Callable[[], _T | None], timeout: float = 30.0,
          step: float = 0.3) -> _T:
    """Poll `probe` until it returns something other than None (or False), bounded."""
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while True:
        try:
            value = probe()
            if value is not None and value is not False:
                return value
        except (OSError, AssertionError) as exc:
            last = exc
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}"
                                 + (f" (last error: {last})" if last else ""))
        time.sleep(step)


def _zones() -> dict[str, Zone]:
    with Client(HOST_SOCKET, timeout=10) as client:
        return {z.name: z for z in client.list_zones()}


def _global_link_names() -> set[str]:
    with Client(HOST_SOCKET, timeout=10) as client:
        return {lk.name for lk in client.list_links(zone="global")}


def _host_link_names() -> set[str]:
    out = _run("ip", "-o", "link").stdout
    return {line.split(":", 2)[1].strip().split("@", 1)[0] for line in out.splitlines() if line}


def _linkadm(container: str, *argv: str) -> subprocess.CompletedProcess[str]:
    return _run("docker", "exec", container, "linkadm", *argv)


def _ping(container: str, addr: str) -> bool:
    return _run("docker", "exec", container, "ping", "-c", "1", "-W", "2", addr).returncode == 0


def _mountinfo_lines(text: str) -> set[str]:
    """Mounts as (root, mount point, source) strings: IDs differ between reads."""
    out = set()
    for line in text.splitlines():
        f = line.split()
        if len(f) > 6 and "-" in f:
            rest = f[f.index("-") + 1:]
            out.add(f"{f[3]} {f[4]} {' '.join(rest[:2])}")
    return out


def _live_netns_inodes() -> set[int]:
    inodes: set[int] = set()
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            with contextlib.suppress(OSError):
                inodes.add(os.stat(f"/proc/{pid}/ns/net").st_ino)
    for name in os.listdir("/run/netns") if os.path.isdir("/run/netns") else []:
        with contextlib.suppress(OSError):
            inodes.add(os.stat(f"/run/netns/{name}").st_ino)
    return inodes


@pytest.fixture(scope="module")
def lab(docker_services: Services, docker_compose_project_name: str) -> Iterator[str]:
    """The project name, once the broker lists red and blue with their eth0."""
    started = time.monotonic()

    def ready() -> bool:
        zones = _zones()
        return all(n in zones and "eth0" in zones[n].links for n in ("red", "blue"))

    _wait("zones red and blue with eth0", ready, timeout=90)
    print(f"lab ready in {time.monotonic() - started:.1f}s")
    yield docker_compose_project_name


def test_zones_booted_and_attached(lab: str) -> None:
    zones = _zones()
    for name in ("red", "blue"):
        zone = zones[name]
        assert zone.kind == "container"
        assert zone.attached is True
        assert zone.container == _docker("inspect", "-f", "{{.Id}}",
                                         _container(lab, name)).strip()
        SEEN_NETNS.add(zone.netns_inode)
    with Client(HOST_SOCKET, timeout=10) as client:
        bridge = client.get_link(BRIDGE, "global")
        assert bridge.class_ == "bridge" and bridge.state == "up"
        for name, host in HOST_END.items():
            end = client.get_link(host, "global")
            assert end.class_ == "veth" and end.master == BRIDGE and end.state == "up"
            inside = client.get_link("eth0", name)
            assert inside.onloan and inside.owner == "global" and inside.state == "up"


def test_red_sees_only_its_links(lab: str) -> None:
    red = _container(lab, "red")
    done = _linkadm(red, "show-link", "-p", "-o", "link,zone,owner")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["eth0:red:global"]
    who = _linkadm(red, "whoami")
    assert who.returncode == 0 and "red" in who.stdout


def test_red_and_blue_ping_each_other(lab: str) -> None:
    red, blue = _container(lab, "red"), _container(lab, "blue")
    _wait("red pings blue", lambda: _ping(red, ADDR["blue"]), timeout=20, step=0.5)
    _wait("blue pings red", lambda: _ping(blue, ADDR["red"]), timeout=20, step=0.5)


def test_red_routes_to_blues_second_address_with_linkadm(lab: str) -> None:
    """Issue 13 in the lab: containers without CAP_NET_ADMIN (Docker's default set) put an
    address and a route on their own veth with linkadm, through the socket, and the traffic
    follows them; red cannot touch blue's link (the same answer as a missing link)."""
    red, blue = _container(lab, "red"), _container(lab, "blue")
    extra = "203.0.113.2"
    assert not _ping(red, extra)  # no route yet: the kernel answers at once
    made = _linkadm(blue, "create-addr", "-a", f"{extra}/32", "eth0")
    assert made.returncode == 0, made.stderr
    routed = _linkadm(red, "add-route", f"{extra}/32", ADDR["blue"])
    assert routed.returncode == 0, routed.stderr
    try:
        _wait("red pings blue's second address", lambda: _ping(red, extra), timeout=20,
              step=0.5)
        shown = _linkadm(red, "show-route", "-p", "-o", "destination,gateway")
        assert f"{extra}/32:{ADDR['blue']}" in shown.stdout.split(), shown.stdout
        foreign = _linkadm(red, "create-addr", "-a", "203.0.113.9/32", "lbblue")
        missing = _linkadm(red, "create-addr", "-a", "203.0.113.9/32", "lbnosuchlink")
        assert foreign.returncode == missing.returncode != 0
        assert foreign.stderr.replace("lbblue", "X") == missing.stderr.replace(
            "lbnosuchlink", "X")
    finally:
        _linkadm(red, "delete-route", f"{extra}/32", ADDR["blue"])
        _linkadm(blue, "delete-addr", "-a", f"{extra}/32", "eth0")
    assert not _ping(red, extra)


def test_red_cannot_see_or_delete_blues_links(lab: str) -> None:
    red = _container(lab, "red")
    for name in ("lbblue", BRIDGE):
        shown = _linkadm(red, "show-link", name)
        assert shown.returncode != 0 and "not found" in shown.stderr, shown
        deleted = _linkadm(red, "delete-link", name)
        assert deleted.returncode != 0 and "not found" in deleted.stderr, deleted
    # blue's eth0 has the same name as red's own: red reaches only its own, lent one.
    refused = _linkadm(red, "delete-link", "eth0")
    assert refused.returncode != 0 and "belongs to zone 'global'" in refused.stderr, refused
    with Client(HOST_SOCKET, timeout=10) as client:
        assert client.get_link("lbblue", "global").master == BRIDGE
        assert client.get_link("eth0", "blue").state == "up"


def test_red_stopped_and_started_again(lab: str) -> None:
    """One story, so no test leans on another's leftovers: red makes a bridge of its own;
    stopped, its zone halts, the bridge goes, the lent eth0 comes home and the agent deletes
    the pair; started again, red is booted again and pings blue (the lab as it was)."""
    red = _container(lab, "red")
    done = _linkadm(red, "create-link", "rbr0", "--class", "bridge")
    assert done.returncode == 0, done.stderr
    shown = _linkadm(red, "show-link", "-p", "-o", "link,class,owner")
    assert "rbr0:bridge:red" in shown.stdout.split()
    with Client(HOST_SOCKET, timeout=10) as client:
        link = client.get_link("rbr0", "red")
        assert link.owner == "red" and not link.onloan

    _docker("stop", "-t", "2", red)
    try:
        _wait("zone red halted", lambda: "red" not in _zones(), timeout=30)
        with Client(HOST_SOCKET, timeout=10) as client:
            with pytest.raises(ZoneNotFound):
                client.list_links(zone="red")
            links = client.list_links()
        assert not [lk for lk in links if lk.name == "rbr0"], "red's own bridge outlived it"
        # The lent eth0 came home to the global zone (renamed: the host has an eth0 of its
        # own), then the agent deleted the pair by its host end; the host's eth0 is untouched.
        _wait("red's veth pair gone", lambda: not ({"lbred"} & _global_link_names()
                                                  | {"lbred"} & _host_link_names()),
              timeout=15)
        with Client(HOST_SOCKET, timeout=10) as client:
            assert not [lk for lk in client.list_links() if lk.peer == "lbred"]
            assert client.get_link("eth0", "global").class_ == "phys"
            assert client.get_link("lbblue", "global").master == BRIDGE  # blue unaffected
        assert "rbr0" not in _host_link_names()
    finally:
        _docker("start", red)

    def booted() -> Zone | None:
        zone = _zones().get("red")
        return zone if zone is not None and "eth0" in zone.links else None

    zone = _wait("zone red booted again", booted, timeout=30)
    SEEN_NETNS.add(zone.netns_inode)
    _wait("red pings blue again", lambda: _ping(red, ADDR["blue"]), timeout=20, step=0.5)


def test_planted_symlink_attach_refused(lab: str) -> None:
    evil = _container(lab, "evil")
    assert "io.linkbroker.zone" not in _docker("inspect", "-f", "{{json .Config.Labels}}", evil)
    _docker("exec", evil, "sh", "-c", "rm -rf /run/linkbroker && ln -s /etc /run/linkbroker")
    host_before = _mountinfo_lines(Path("/proc/self/mountinfo").read_text())
    evil_before = _mountinfo_lines(_docker("exec", evil, "cat", "/proc/self/mountinfo"))
    try:
        with Client(HOST_SOCKET, timeout=30) as client:
            zone = client.boot_zone("evil", container=evil)
        SEEN_NETNS.add(zone.netns_inode)
        assert zone.attached is False
        assert _run("docker", "exec", evil, "test", "-e", "/etc/broker.sock").returncode != 0
        assert _docker("exec", evil, "readlink", "/run/linkbroker").strip() == "/etc"
        evil_after = _mountinfo_lines(_docker("exec", evil, "cat", "/proc/self/mountinfo"))
        assert evil_after == evil_before
        host_after = _mountinfo_lines(Path("/proc/self/mountinfo").read_text())
        new = {m for m in host_after - host_before if "broker" in m or "/etc" in m}
        assert not new, f"new host mounts: {new}"
    finally:
        with Client(HOST_SOCKET, timeout=30) as client, contextlib.suppress(ZoneNotFound):
            client.halt_zone("evil")
    assert "evil" not in _zones()


def test_nothing_left_after_down(lab: str, docker_compose_file: str) -> None:
    """Last: takes the lab down itself, checks the host, and brings the lab up again."""
    def mounts() -> list[str]:
        return [line for line in Path("/proc/self/mountinfo").read_text().splitlines()
                if "linkbroker" in line]

    compose = ["docker-compose", "-f", docker_compose_file, "-p", lab]
    before = mounts()
    # The zones alive now (and any an earlier test saw): gone after `down`, whatever ran.
    seen = SEEN_NETNS | {z.netns_inode for name, z in _zones().items() if name != "global"}
    down = _run(*compose, "down", "-v", "--remove-orphans", "--timeout", "5", timeout=120)
    assert down.returncode == 0, down.stderr
    try:
        left = _host_link_names() & set(LAB_LINKS)
        assert not left, f"links left on the host: {left}"
        after = mounts()
        assert all(line.split()[4] == "/run/linkbroker" for line in after), after
        assert len(after) <= len(before)
        assert seen, "no zone namespace was seen"
        alive = seen & _live_netns_inodes()
        assert not alive, f"zone namespaces still alive: {alive}"
    finally:
        up = _run(*compose, "up", "-d", timeout=120)
        assert up.returncode == 0, up.stderr
        _wait("the lab back up", lambda: {"red", "blue"} <= set(_zones()), timeout=90)
