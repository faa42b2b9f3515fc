"""A process zone with a mount namespace of its own: the broker attaches its socket inside the
zone's root, so linkadm runs there unchanged (no --socket), and halting detaches it."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from broker.client import LinkSpec
from tests.conftest import ROOT, BrokerProcess


@pytest.fixture
def process_zone() -> Iterator[int]:
    # A private /run, so the zone's /run/linkbroker is not the host's.
    proc = subprocess.Popen(
        ["unshare", "--net", "--mount", "--propagation", "private", "--fork", "sh", "-c",
         "mount -t tmpfs lbtzone /run && exec sleep 600"],
        stdin=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with open(f"/proc/{proc.pid}/mountinfo") as f:
                if "lbtzone" in f.read():
                    break
            time.sleep(0.02)
        else:
            pytest.fail("the zone's private /run was not mounted within 10 s")
        yield proc.pid
    finally:
        proc.kill()
        proc.wait(5)


def linkadm_in(pid: int, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["nsenter", "-t", str(pid), "-n", "-m", sys.executable, "-m", "clients.linkadm", *args],
        capture_output=True, text=True, cwd=ROOT, timeout=30, check=False,
        env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "PYTHONPATH": str(ROOT)},
    )


def zone_mounts(pid: int) -> list[str]:
    with open(f"/proc/{pid}/mountinfo") as f:
        return [line for line in f if " /run/linkbroker/broker.sock " in line]


def test_process_zone_gets_the_socket_and_uses_linkadm(broker: BrokerProcess,
                                                       process_zone: int, names: object) -> None:
    with open("/proc/self/mountinfo") as f:
        host_before = f.read()
    with broker.client() as gz:
        zone = gz.boot_zone("proc", pid=process_zone)
        assert zone.kind == "process" and zone.attached and zone.pid == process_zone
        assert len(zone_mounts(process_zone)) == 1
        link = f"{names.link('p')}"  # type: ignore[attr-defined]
        gz.create_link(LinkSpec(name=link, class_="bridge", zone="proc"))
        out = linkadm_in(process_zone, "show-link", "-p", "-o", "link,zone,owner")
        assert out.returncode == 0, out.stderr
        assert out.stdout == f"{link}:proc:global\n"
        out = linkadm_in(process_zone, "whoami")
        assert out.stdout.startswith("zone proc ")
        gz.halt_zone("proc")
    assert zone_mounts(process_zone) == []
    with open("/proc/self/mountinfo") as f:
        assert f.read() == host_before  # the host's mount table was never touched


def test_restart_reattaches_the_new_socket(broker: BrokerProcess, process_zone: int) -> None:
    with broker.client() as gz:
        gz.boot_zone("proc", pid=process_zone)
    broker.kill9()
    broker.start()  # a new socket inode: the stale mount must be replaced
    with broker.client() as gz:
        assert gz.get_zone("proc").attached
    assert len(zone_mounts(process_zone)) == 1
    out = linkadm_in(process_zone, "whoami")
    assert out.returncode == 0 and out.stdout.startswith("zone proc "), out.stderr
    with broker.client() as gz:
        gz.halt_zone("proc")
