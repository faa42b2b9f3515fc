"""linkbroker-cni under a real runtime: Debian's podman 4.3 with its CNI backend.

podman execs the plugin for ADD when a container starts and DEL when it stops, exactly as on a
production host; the checks read the kernel, the broker and host-local's lease files.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import pytest

from clients.cni._names import ZONE_STEM, host_end_name, zone_name
from tests.conftest import BrokerProcess, run
from tests.podman.kernel import bridge_ports, host_link_exists, leases
from tests.podman.plugin import exec_plugin, network
from tests.podman.runtime import Podman, podman_available

pytestmark = [pytest.mark.podman,
              pytest.mark.skipif(not podman_available(), reason="podman is not installed")]
NET = "lbnet"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Podman]:
    podman = Podman(tmp_path_factory.mktemp("podman"))
    try:
        podman.import_image()
        yield podman
    finally:
        podman.destroy()


@dataclass
class Pod:
    podman: Podman
    broker: BrokerProcess
    bridge: str
    data_dir: Path

    def conf(self, **changes: Any) -> dict[str, Any]:
        return {**network(NET, self.bridge, self.broker.socket, self.data_dir), **changes}

    def cni_zones(self) -> dict[str, dict[str, Any]]:
        with self.broker.client() as c:
            return {z.name: json.loads(msgspec.json.encode(z)) for z in c.list_zones()
                    if z.name.startswith(ZONE_STEM)}

    def address(self, cid: str) -> str:
        out = self.podman.ok("exec", cid, "ip", "-o", "-4", "addr", "show", "dev", "eth0")
        return out.split()[3]

    def nothing_left(self) -> None:
        assert bridge_ports(self.bridge) == set()
        assert self.cni_zones() == {}
        assert leases(self.data_dir, NET) == []
        assert not [n for n in _host_links() if n.startswith("lbc")]


def _host_links() -> list[str]:
    return [d["ifname"] for d in json.loads(run("ip", "-j", "link").stdout)]


@pytest.fixture
def pod(world: Podman, broker: BrokerProcess, tmp_path: Path, prefix: str) -> Iterator[Pod]:
    p = Pod(world, broker, f"{prefix}pb", tmp_path / "ipam")
    world.network(NET, p.conf())
    try:
        yield p
    finally:
        world.remove_all()
        for port in bridge_ports(p.bridge):
            run("ip", "link", "del", port, check=False)
        run("ip", "link", "del", p.bridge, check=False)


def test_two_containers_get_eth0_and_ping_across_the_bridge(pod: Pod) -> None:
    cids = []
    for _ in range(2):
        done = pod.podman.run_detached(NET)
        assert done.returncode == 0, done.stderr
        cids.append(done.stdout.strip())
    a, b = (pod.address(c) for c in cids)
    assert a.startswith("198.51.100.") and b.startswith("198.51.100.") and a != b
    pinged = pod.podman("exec", cids[0], "ping", "-c", "1", "-W", "5", b.split("/")[0])
    assert pinged.returncode == 0, pinged.stdout + pinged.stderr
    # The global zone's view: each container's end in its zone, each host end on the bridge.
    with pod.broker.client() as c:
        links = {(lk.zone, lk.name): lk for lk in c.list_links()}
    for cid in cids:
        inner = links[(zone_name(cid), "eth0")]
        host = links[("global", host_end_name(cid, "eth0"))]
        assert inner.class_ == "veth" and inner.peer == host.name and inner.state == "up"
        assert host.master == pod.bridge and host.peer == "eth0"
        assert pod.cni_zones()[zone_name(cid)]["cni_container"] == cid
    shown = run("linkadm", "--socket", pod.broker.socket, "show-link", "-p", "-o",
                "link,zone,master").stdout.splitlines()
    for cid in cids:
        assert f"eth0:{zone_name(cid)}:" in shown
        assert f"{host_end_name(cid, 'eth0')}:global:{pod.bridge}" in shown
    assert bridge_ports(pod.bridge) == {host_end_name(c, "eth0") for c in cids}


def test_stop_and_rm_leave_nothing(pod: Pod) -> None:
    done = pod.podman.run_detached(NET)
    assert done.returncode == 0, done.stderr
    cid = done.stdout.strip()
    assert len(leases(pod.data_dir, NET)) == 1 and zone_name(cid) in pod.cni_zones()
    pod.podman.ok("stop", "-t", "0", cid)  # podman's DEL runs at stop
    pod.nothing_left()
    pod.podman.ok("rm", cid)
    pod.nothing_left()


def test_broker_killed_while_ten_containers_start(pod: Pod) -> None:
    """kill -9 mid-way through ten parallel starts, then a restart: each container either
    runs with a working eth0 or failed and was cleaned up; DEL of all leaves nothing."""
    starts = [pod.podman.popen("run", "-d", "--network", NET, *_run_flags(), _image(),
                               "sleep", "600") for _ in range(10)]
    deadline = time.monotonic() + 60
    while len(pod.cni_zones()) < 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    pod.broker.kill9()
    in_flight = sum(proc.poll() is None for proc in starts)
    time.sleep(0.3)
    pod.broker.start()
    for proc in starts:
        proc.communicate(timeout=180)
    everyone = pod.podman.ok("ps", "-a", "-q", "--no-trunc").split()
    running = set(pod.podman.ok("ps", "-q", "--no-trunc").split())
    assert len(everyone) == 10
    assert in_flight > 0  # the kill did land in the middle of the starts
    working = []
    for cid in everyone:
        if cid in running:
            working.append((cid, pod.address(cid)))
            assert host_link_exists(host_end_name(cid, "eth0"))
        else:  # failed: nothing of it is left
            assert not host_link_exists(host_end_name(cid, "eth0"))
    assert bridge_ports(pod.bridge) == {host_end_name(c, "eth0") for c, _ in working}
    assert len(leases(pod.data_dir, NET)) == len(working)
    for (cid, _), (_, peer) in zip(working, working[1:] + working[:1], strict=True):
        if len(working) > 1:
            pinged = pod.podman("exec", cid, "ping", "-c", "1", "-W", "5", peer.split("/")[0])
            assert pinged.returncode == 0, pinged.stdout + pinged.stderr
    for cid in everyone:
        out = exec_plugin(pod.podman.plugins / "linkbroker-cni", "DEL", pod.conf(),
                          container=cid)
        assert out.code == 0, out.raw
    pod.nothing_left()


def test_bad_config_and_missing_broker_fail_the_start_cleanly(pod: Pod) -> None:
    pod.podman.network(NET, pod.conf(socket=str(pod.data_dir.parent / "none.sock")))
    done = pod.podman.run_detached(NET)
    assert done.returncode != 0 and "try again later" in done.stderr, done.stderr
    pod.podman.network(NET, {k: v for k, v in pod.conf().items() if k != "bridge"})
    done = pod.podman.run_detached(NET)
    assert done.returncode != 0 and "bridge is missing" in done.stderr, done.stderr
    assert pod.podman.ok("ps", "-q") == ""
    pod.nothing_left()


def _run_flags() -> tuple[str, ...]:
    from tests.podman.runtime import RUN_FLAGS

    return RUN_FLAGS


def _image() -> str:
    from tests.podman.runtime import IMAGE

    return IMAGE
