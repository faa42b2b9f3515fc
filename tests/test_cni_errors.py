"""linkbroker-cni's failures: the spec's error objects and codes, nothing half made, DEL
that never fails on what is gone (broker killed and restarted, namespace deleted), GC and
STATUS. Real broker, real namespaces, Debian's host-local."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from broker._errors import InvalidParameter
from clients.cni._names import host_end_name, zone_name
from tests.conftest import run
from tests.podman.cni_env import Cni, cni, nothing_left
from tests.podman.kernel import bridge_ports, host_link_exists, leases, ns_links
from tests.podman.plugin import Outcome

pytestmark = pytest.mark.skipif(not Path("/usr/lib/cni/host-local").exists(),
                                reason="containernetworking-plugins is not installed")
__all__ = ["cni"]  # the fixture
# host-local 1.1 reports an exhausted range as a plain Go error: skel's catch-all code 999.
HOST_LOCAL_FAILED = 999


def _error(out: Outcome, code: int) -> dict[str, Any]:
    """One spec error object on stdout, a non-zero exit, the expected code."""
    assert out.code != 0, out.raw
    assert out.out is not None, out.raw
    assert set(out.out) <= {"cniVersion", "code", "msg", "details"} and out.out["msg"]
    assert out.out["code"] == code, out.out
    return out.out


@pytest.mark.parametrize(("conf", "code"), [
    (b"{not json", 6),
    ({"cniVersion": "0.3.1", "name": "n", "type": "linkbroker-cni", "bridge": "b0"}, 1),
    ({"cniVersion": "1.0.0", "name": "n", "type": "linkbroker-cni"}, 7),  # no bridge
    ({"cniVersion": "1.0.0", "name": "n", "type": "linkbroker-cni", "bridge": "b/0"}, 7),
    ({"cniVersion": "1.0.0", "name": "-n", "type": "linkbroker-cni", "bridge": "b0"}, 7),
    ({"cniVersion": "1.0.0", "name": "n", "type": "linkbroker-cni", "bridge": "b0",
      "mtu": "big"}, 7),
    ({"cniVersion": "1.0.0", "name": "n", "type": "linkbroker-cni", "bridge": "b0",
      "ipam": {"type": "../../bin/sh"}}, 7),
])
def test_bad_configuration_is_refused_before_anything_is_made(
        cni: Cni, netns: Any, conf: dict[str, Any] | bytes, code: int) -> None:
    ns = netns("cnibad")
    cid = cni.container()
    _error(cni.call("ADD", cid, f"/run/netns/{ns}", conf), code)
    assert zone_name(cid) not in cni.zones() and ns_links(ns) == {"lo"}


def test_bad_environment_and_namespace(cni: Cni, netns: Any) -> None:
    ns = netns("cnienv")
    _error(cni.call("ADD", "", f"/run/netns/{ns}"), 4)  # no CNI_CONTAINERID
    _error(cni.call("ADD", "x/y", f"/run/netns/{ns}"), 4)
    _error(cni.call("NOPE", "abc", f"/run/netns/{ns}"), 4)
    cid = cni.container()
    _error(cni.call("ADD", cid, f"/run/netns/{ns}", ifname="eth0:1"), 4)
    _error(cni.call("ADD", cid, "/tmp/somewhere/ns"), 104)
    _error(cni.call("ADD", cid, "/run/netns/lbt-no-such-namespace"), 3)
    # GC and STATUS are 1.1: refused for an older configuration.
    _error(cni.call("STATUS"), 1)
    nothing_left(cni, cid, ns)


def test_missing_broker_is_try_again_later_and_leaves_no_lease(cni: Cni, netns: Any) -> None:
    ns = netns("cninob")
    cid = cni.container()
    gone = cni.conf(socket=str(cni.data_dir.parent / "no-broker.sock"))
    err = _error(cni.call("ADD", cid, f"/run/netns/{ns}", gone), 11)
    assert "try again" in err["msg"]
    _error(cni.call("DEL", cid, f"/run/netns/{ns}", gone), 11)
    _error(cni.call("STATUS", conf={**gone, "cniVersion": "1.1.0"}), 50)
    assert cni.call("STATUS", conf=cni.conf("1.1.0")).code == 0
    assert leases(cni.data_dir, "lbtest") == [] and ns_links(ns) == {"lo"}


def test_failed_add_undoes_the_veth_the_zone_and_the_lease(cni: Cni, netns: Any) -> None:
    """A /30 gives host-local one address: the second ADD fails in IPAM, after the broker made
    the zone and the veth; both are gone again and the first attachment is untouched."""
    small = cni.conf()
    small["ipam"] = {**small["ipam"], "ranges": [[{"subnet": "198.51.100.0/30"}]]}
    a, b = netns("cnifa"), netns("cnifb")
    ca, cb = cni.container(), cni.container()
    assert cni.add(ca, f"/run/netns/{a}", small).code == 0
    err = _error(cni.add(cb, f"/run/netns/{b}", small), HOST_LOCAL_FAILED)
    assert "no IP addresses available" in err["msg"]  # host-local's own words, passed on
    assert not host_link_exists(host_end_name(cb, "eth0")) and ns_links(b) == {"lo"}
    assert zone_name(cb) not in cni.zones()
    assert bridge_ports(cni.bridge) == {host_end_name(ca, "eth0")}
    assert len(leases(cni.data_dir, "lbtest")) == 1
    # The same interface twice in one container: its own code, and the first one stays.
    _error(cni.add(ca, f"/run/netns/{a}", small), 102)
    assert bridge_ports(cni.bridge) == {host_end_name(ca, "eth0")}
    assert cni.call("DEL", ca, f"/run/netns/{a}", small).code == 0
    nothing_left(cni, ca, a)


def test_del_after_kill_9_and_restart_and_with_the_namespace_gone(cni: Cni, netns: Any
                                                                 ) -> None:
    a, b = netns("cnik1"), netns("cnik2")
    ca, cb = cni.container(), cni.container()
    assert cni.add(ca, f"/run/netns/{a}").code == 0
    assert cni.add(cb, f"/run/netns/{b}").code == 0
    cni.broker.kill9()
    _error(cni.call("DEL", ca, f"/run/netns/{a}"), 11)  # asked again later by the runtime
    run("ip", "netns", "del", b)  # the runtime removed b's namespace meanwhile
    cni.broker.start()
    assert cni.call("DEL", ca, f"/run/netns/{a}").code == 0
    assert cni.call("DEL", cb, f"/run/netns/{b}").code == 0
    assert cni.call("DEL", cb, "").code == 0
    nothing_left(cni, ca, a)
    nothing_left(cni, cb)


def test_gc_removes_attachments_the_runtime_no_longer_lists(cni: Cni, netns: Any) -> None:
    a, b = netns("cnig1"), netns("cnig2")
    ca, cb = cni.container(), cni.container()
    assert cni.add(ca, f"/run/netns/{a}", cni.conf("1.1.0")).code == 0
    assert cni.add(cb, f"/run/netns/{b}", cni.conf("1.1.0")).code == 0
    gc = cni.conf("1.1.0", **{"cni.dev/valid-attachments": [
        {"containerID": ca, "ifname": "eth0"}]})
    out = cni.call("GC", conf=gc)
    assert out.code == 0 and out.out is None, out.raw
    assert bridge_ports(cni.bridge) == {host_end_name(ca, "eth0")}
    assert ns_links(b) == {"lo"} and zone_name(cb) not in cni.zones()
    assert zone_name(ca) in cni.zones() and len(leases(cni.data_dir, "lbtest")) == 1
    _error(cni.call("GC", conf=cni.conf("1.1.0")), 7)  # no valid-attachments
    assert cni.call("DEL", ca, conf=cni.conf("1.1.0")).code == 0
    nothing_left(cni, ca, a)


def test_boot_zone_refuses_a_malformed_cni_container(cni: Cni, netns: Any) -> None:
    ns = netns("cnibz")
    with cni.broker.client() as c, pytest.raises(InvalidParameter) as err:
        c.conn.call("io.linkbroker.BootZone", {"name": "cnibz", "netns": ns,
                                               "cni_container": "../x"})
    assert err.value.parameter == "cni_container"
    assert "cnibz" not in cni.zones()


def _by_hand(plugin: Path, *args: str) -> tuple[int, str, str]:
    """Run as a person would, with stdin a pipe left open: a plugin waiting on it would
    time out here. Its output is small enough for the pipes' buffers."""
    with subprocess.Popen([str(plugin), *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True,
                          env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}) as proc:
        code = proc.wait(timeout=30)
        assert proc.stdout is not None and proc.stderr is not None
        return code, proc.stdout.read(), proc.stderr.read()


def test_run_by_hand_it_teaches_and_never_waits_on_stdin(cni: Cni) -> None:
    """Without CNI_COMMAND a person is at the keyboard: --help, --version and a usage error,
    all without reading stdin (a runtime always sets CNI_COMMAND)."""
    code, out, _ = _by_hand(cni.plugin, "--help")
    assert code == 0 and "CNI_COMMAND" in out and "network configuration" in out, out
    code, out, _ = _by_hand(cni.plugin, "--version")
    assert code == 0 and out.startswith("linkbroker-cni 0.") and "1.1.0" in out, out
    code, _, err = _by_hand(cni.plugin)
    assert code == 2 and "CNI_COMMAND is not set" in err, err
