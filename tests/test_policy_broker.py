"""The policy file against a real broker (issue 6): revocations and grants, the per-zone link
limit, phys assignment, and reload on SIGHUP (a bad file keeps the old policy)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from broker._policy_file import PolicyError, load_policy
from broker.client import LimitExceeded, PermissionDenied
from tests.conftest import ROOT, BrokerProcess, ZoneCaller

POLICY = """\
[limits.zones]
lim = 2

[[rule]]
zone = "ro"
revoke = ["link.write"]
"""


def start_with_policy(broker: BrokerProcess, tmp_path: Path, text: str) -> Path:
    path = tmp_path / "policy.toml"
    path.write_text(text)
    path.chmod(0o644)
    broker.stop()
    broker.extra_args = ["--policy", str(path)]
    broker.start()
    return path


def test_revocation_and_link_limit(broker: BrokerProcess, tmp_path: Path, netns: Any,
                                   zone_caller: Any, names: Any) -> None:
    start_with_policy(broker, tmp_path, POLICY)
    ro_ns, lim_ns = netns("ro"), netns("lim")
    with broker.client() as gz:
        gz.boot_zone("ro", netns=ro_ns)
        gz.boot_zone("lim", netns=lim_ns)
    ro: ZoneCaller = zone_caller(ro_ns)
    assert "link.write" not in ro.call("WhoAmI")["authorizations"]
    with pytest.raises(PermissionDenied) as err:
        ro.call("CreateLink", link={"name": names.link("x"), "class": "bridge"})
    assert (err.value.method, err.value.authorization) == ("CreateLink", "link.write")
    lim: ZoneCaller = zone_caller(lim_ns)
    lim.call("CreateLink", link={"name": names.link("a"), "class": "veth",
                                 "peer": names.link("b")})
    with pytest.raises(LimitExceeded) as limit:
        lim.call("CreateLink", link={"name": names.link("c"), "class": "bridge"})
    assert limit.value.limit == 2
    assert len(lim.call("ListLinks")["links"]) == 2  # nothing was made


def test_phys_assignment_needs_the_policy(broker: BrokerProcess, netns: Any) -> None:
    ns = netns("ph")
    with broker.client() as gz:
        gz.boot_zone("ph", netns=ns)
        phys = [link for link in gz.list_links("global") if link.class_ == "phys"
                and link.name != "eth0"]
        if not phys:
            pytest.skip("no spare phys link on this host")
        with pytest.raises(PermissionDenied):
            gz.assign_link(phys[0].name, "ph")
        assert gz.get_link(phys[0].name).zone == "global"


def test_sighup_reloads_and_a_bad_file_keeps_the_old_policy(
        broker: BrokerProcess, tmp_path: Path, netns: Any, zone_caller: Any,
        names: Any) -> None:
    path = start_with_policy(broker, tmp_path, POLICY)
    ns = netns("ro")
    with broker.client() as gz:
        gz.boot_zone("ro", netns=ns)
    assert broker.proc is not None

    def ro_auths() -> list[str]:
        caller: ZoneCaller = zone_caller(ns)  # a new connection sees the current policy
        auths: list[str] = caller.call("WhoAmI")["authorizations"]
        return auths

    assert "link.write" not in ro_auths()
    path.write_text("")  # the defaults again
    broker.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 5
    while "link.write" not in ro_auths() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "link.write" in ro_auths()
    path.write_text(POLICY + "\n[[rule]]\nzone = \"ro\"\nrevoke = [\"link.fly\"]\n")
    broker.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 5
    while "policy not reloaded" not in broker.log() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "policy not reloaded" in broker.log()
    assert f"{path}:10: unknown authorization 'link.fly'" in broker.log()
    assert "link.write" in ro_auths()  # the old (default) policy stands


def test_a_bad_policy_stops_the_start_naming_the_line(tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    path.write_text("[limits]\nlinks_per_zone = -1\n")
    out = subprocess.run(
        [sys.executable, "-m", "broker._daemon", "--socket", str(tmp_path / "s.sock"),
         "--state-dir", str(tmp_path / "state"), "--policy", str(path)],
        capture_output=True, text=True, cwd=ROOT, timeout=30, check=False)
    assert out.returncode == 2
    assert f"{path}:2:" in out.stderr
    assert not (tmp_path / "s.sock").exists()


def test_load_refuses_file_of_another_owner(tmp_path: Path) -> None:
    """chown needs CAP_CHOWN: here, not in tests/unit."""
    path = tmp_path / "p.toml"
    path.write_text("")
    os.chown(path, 1000, 1000)
    with pytest.raises(PolicyError, match="owned by uid 1000"):
        load_policy(path)
