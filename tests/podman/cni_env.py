"""The CNI tests' environment: a real broker, the plugin in a directory beside host-local,
a bridge named with the run's prefix, and everything removed afterwards by name."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import pytest

from clients.cni._names import host_end_name, zone_name
from tests.conftest import BrokerProcess, run
from tests.podman.kernel import bridge_ports, host_link_exists, leases, ns_links
from tests.podman.plugin import Outcome, exec_plugin, network, plugin_dir


@dataclass
class Cni:
    broker: BrokerProcess
    plugin: Path
    data_dir: Path
    bridge: str
    made: list[tuple[str, str]] = field(default_factory=list)

    def conf(self, version: str = "1.0.0", **changes: Any) -> dict[str, Any]:
        conf = network("lbtest", self.bridge, self.broker.socket, self.data_dir,
                       version=version)
        conf.update(changes)
        return conf

    def container(self) -> str:
        cid = secrets.token_hex(32)
        self.made.append((cid, "eth0"))
        return cid

    def add(self, cid: str, netns: str, conf: dict[str, Any] | None = None,
            ifname: str = "eth0") -> Outcome:
        if (cid, ifname) not in self.made:
            self.made.append((cid, ifname))
        return exec_plugin(self.plugin, "ADD", conf or self.conf(), container=cid,
                           netns=netns, ifname=ifname)

    def call(self, command: str, cid: str = "", netns: str = "",
             conf: dict[str, Any] | bytes | None = None, ifname: str = "eth0") -> Outcome:
        return exec_plugin(self.plugin, command, self.conf() if conf is None else conf,
                           container=cid, netns=netns, ifname=ifname)

    def zones(self) -> dict[str, dict[str, Any]]:
        with self.broker.client() as c:
            return {z.name: json.loads(msgspec.json.encode(z)) for z in c.list_zones()}


@pytest.fixture
def cni(broker: BrokerProcess, tmp_path: Path, prefix: str) -> Iterator[Cni]:
    env = Cni(broker, plugin_dir(tmp_path / "plugins") / "linkbroker-cni", tmp_path / "ipam",
              f"{prefix}cb")
    try:
        yield env
    finally:
        for cid, ifname in env.made:
            run("ip", "link", "del", host_end_name(cid, ifname), check=False)
        run("ip", "link", "del", env.bridge, check=False)


def nothing_left(cni: Cni, cid: str, netns: str | None = None) -> None:
    assert not host_link_exists(host_end_name(cid, "eth0"))
    assert bridge_ports(cni.bridge) == set()
    assert zone_name(cid) not in cni.zones()
    assert leases(cni.data_dir, "lbtest") == []
    if netns is not None:
        assert ns_links(netns) == {"lo"}
