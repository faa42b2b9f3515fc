"""linkbroker-cni against a real broker and real namespaces, exec'd as runtimes exec it.

The plugin runs as its installed wrapper does (`python3 -IS`, CNI_* variables, the network
configuration on stdin), with Debian's host-local beside it; every check reads the kernel or
host-local's files, not only the plugin's own answer. podman itself: tests/test_cni_podman.py.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from clients.cni._names import host_end_name, zone_name
from tests.conftest import ROOT, run
from tests.podman.cni_env import Cni, cni, nothing_left
from tests.podman.kernel import bridge_ports, leases, ns_addrs
from tests.podman.plugin import BUSYBOX, PYTHON

pytestmark = pytest.mark.skipif(not Path("/usr/lib/cni/host-local").exists(),
                                reason="containernetworking-plugins is not installed")
__all__ = ["cni"]  # the fixture


def test_import_loads_no_daemon_module_and_no_pyroute2() -> None:
    """In a fresh interpreter run as the wrapper runs it: nothing of the daemon, no pyroute2,
    no msgspec, and none of the stdlib modules it avoids for start-up time."""
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import clients.cni.plugin; "
            "print('\\n'.join(sorted(sys.modules)))")
    loaded = set(run(PYTHON, "-IS", "-c", code, str(ROOT)).stdout.split())
    assert "clients.cni.plugin" in loaded
    daemon = {m for m in loaded if m == "broker" or m.startswith(("broker.", "zones"))}
    assert daemon == set()
    heavy = {"pyroute2", "msgspec", "subprocess", "socket", "typing", "hashlib", "json",
             "re", "enum", "dataclasses", "asyncio", "sqlite3"}
    assert loaded & heavy == set()


def test_version_lists_what_it_speaks(cni: Cni) -> None:
    out = cni.call("VERSION", conf={"cniVersion": "1.0.0"})
    assert out.code == 0 and out.out is not None
    assert out.out["cniVersion"] == "1.0.0"
    assert {"0.4.0", "1.0.0", "1.1.0"} <= set(out.out["supportedVersions"])


def test_add_check_del_against_the_kernel(cni: Cni, netns: Any) -> None:
    ns = netns("cnia")
    cid = cni.container()
    out = cni.add(cid, f"/var/run/netns/{ns}")  # the path containerd and CRI-O pass
    assert out.code == 0, out.raw
    result = out.out
    assert result is not None and result["cniVersion"] == "1.0.0"
    host = host_end_name(cid, "eth0")
    assert [i["name"] for i in result["interfaces"]] == [cni.bridge, host, "eth0"]
    assert result["interfaces"][2]["sandbox"] == f"/var/run/netns/{ns}"
    [ip] = result["ips"]
    assert ip["interface"] == 2 and ip["address"].startswith("198.51.100.")
    assert "version" not in ip  # a 0.4.0 field
    assert result["routes"] == [{"dst": "203.0.113.0/24"}]
    # The kernel: the address inside, the route through the gateway, the host end a port.
    assert ns_addrs(ns, "eth0") == {ip["address"]}
    assert "203.0.113.0/24 via 198.51.100.1 dev eth0" in run("ip", "-n", ns, "route").stdout
    assert bridge_ports(cni.bridge) == {host}
    assert leases(cni.data_dir, "lbtest") == [ip["address"].split("/")[0]]
    zone = cni.zones()[zone_name(cid)]
    assert zone["cni_container"] == cid and zone["kind"] == "netns" and zone["netns"] == ns
    shown = run(sys.executable, "-m", "clients.linkadm", "--socket", cni.broker.socket,
                "show-zone", "-p", "-o", "zone,cni").stdout
    assert f"{zone_name(cid)}:{cid[:12]}" in shown.splitlines()

    check = cni.call("CHECK", cid, f"/var/run/netns/{ns}", cni.conf(prevResult=result))
    assert check.code == 0 and check.out is None, check.raw
    # CHECK fails once the address is gone behind the broker's back.
    run("ip", "-n", ns, "addr", "del", ip["address"], "dev", "eth0")
    check = cni.call("CHECK", cid, f"/var/run/netns/{ns}", cni.conf(prevResult=result))
    assert check.code != 0 and check.out is not None and check.out["code"] == 110

    assert cni.call("DEL", cid, f"/run/netns/{ns}").code == 0
    nothing_left(cni, cid, ns)
    again = cni.call("DEL", cid, f"/run/netns/{ns}")  # idempotent
    assert again.code == 0 and again.out is None, again.raw


def test_two_namespaces_ping_across_the_bridge(cni: Cni, netns: Any) -> None:
    a, b = netns("cnip1"), netns("cnip2")
    ca, cb = cni.container(), cni.container()
    ra, rb = cni.add(ca, f"/run/netns/{a}"), cni.add(cb, f"/run/netns/{b}")
    assert ra.code == 0 and rb.code == 0, ra.raw + rb.raw
    assert ra.out is not None and rb.out is not None
    addr_b = rb.out["ips"][0]["address"].split("/")[0]
    assert addr_b != ra.out["ips"][0]["address"].split("/")[0]
    pinged = run("ip", "netns", "exec", a, BUSYBOX, "ping", "-c", "1", "-W", "5", addr_b,
                 check=False)
    assert pinged.returncode == 0, pinged.stdout + pinged.stderr
    for cid, ns in ((ca, a), (cb, b)):
        assert cni.call("DEL", cid, f"/run/netns/{ns}").code == 0
    assert bridge_ports(cni.bridge) == set()
    assert leases(cni.data_dir, "lbtest") == []


def test_proc_pid_path_and_versions(cni: Cni, netns: Any) -> None:
    """/proc/PID/ns/net works (a `process` zone); 0.4.0 results carry `version`; 1.1.0 is
    handed to host-local (which speaks 1.0.0) as 1.0.0."""
    ns = netns("cnipid")
    sleeper = subprocess.Popen(["ip", "netns", "exec", ns, "sleep", "120"])
    try:
        pid = _child_pid(sleeper.pid)
        cid = cni.container()
        out = cni.add(cid, f"/proc/{pid}/ns/net", cni.conf("0.4.0"))
        assert out.code == 0 and out.out is not None, out.raw
        assert out.out["ips"][0]["version"] == "4"
        zone = cni.zones()[zone_name(cid)]
        assert zone["kind"] == "process" and zone["pid"] == pid and not zone["attached"]
        assert cni.call("DEL", cid, conf=cni.conf("0.4.0")).code == 0  # no CNI_NETNS on DEL
        nothing_left(cni, cid, ns)
    finally:
        sleeper.kill()
        sleeper.wait(5)
    ns2 = netns("cni11")
    cid = cni.container()
    out = cni.add(cid, f"/run/netns/{ns2}", cni.conf("1.1.0"))
    assert out.code == 0 and out.out is not None and out.out["cniVersion"] == "1.1.0", out.raw
    assert cni.call("DEL", cid, conf=cni.conf("1.1.0")).code == 0
    nothing_left(cni, cid, ns2)


def _child_pid(parent: int) -> int:
    """`ip netns exec` execs its command, so the process keeps the pid; wait until it has
    entered the namespace (its ns/net differs from ours)."""
    import os
    import time

    mine = os.stat("/proc/self/ns/net").st_ino
    for _ in range(200):
        try:
            if os.stat(f"/proc/{parent}/ns/net").st_ino != mine:
                return parent
        except OSError:
            pass
        time.sleep(0.01)
    raise AssertionError("the sleeper never entered its namespace")


def test_two_networks_share_the_container_zone(cni: Cni, netns: Any, prefix: str) -> None:
    """A second network (its own bridge and range) of the same container reuses its zone;
    DEL of one leaves the zone to the other, DEL of the last halts it."""
    ns = netns("cnimn")
    cid = cni.container()
    other_bridge = f"{prefix}cb2"
    second = {**cni.conf(bridge=other_bridge, name="lbtest2"),
              "ipam": {"type": "host-local", "ranges": [[{"subnet": "203.0.113.0/24"}]],
                       "dataDir": str(cni.data_dir)}}
    try:
        assert cni.add(cid, f"/run/netns/{ns}").code == 0
        out = cni.add(cid, f"/run/netns/{ns}", second, ifname="eth1")
        assert out.code == 0 and out.out is not None, out.raw
        assert ns_addrs(ns, "eth1") == {out.out["ips"][0]["address"]}
        assert sorted(cni.zones()[zone_name(cid)]["links"]) == ["eth0", "eth1"]
        assert bridge_ports(other_bridge) == {host_end_name(cid, "eth1")}
        assert cni.call("DEL", cid, conf=second, ifname="eth1").code == 0
        assert cni.zones()[zone_name(cid)]["links"] == ["eth0"]
        assert bridge_ports(other_bridge) == set() and leases(cni.data_dir, "lbtest2") == []
        assert cni.call("DEL", cid).code == 0
        nothing_left(cni, cid, ns)
    finally:
        run("ip", "link", "del", host_end_name(cid, "eth1"), check=False)
        run("ip", "link", "del", other_bridge, check=False)
