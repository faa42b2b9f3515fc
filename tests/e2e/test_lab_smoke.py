"""Smoke test of the Docker lab: the zone containers come up with no network of Docker's.

Deliberately independent of the broker service, which may not run yet: a zone container has
loopback, plus at most the links its labels ask the broker's agent for (eth0 here).
"""

from __future__ import annotations

import json
import subprocess
import time

import pytest
from pytest_docker import Services

ZONES = ("red", "blue")


def _docker(*argv: str) -> str:
    done = subprocess.run(
        ["docker", *argv],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if done.returncode != 0:
        raise AssertionError(f"docker {' '.join(argv)} failed ({done.returncode}): {done.stderr}")
    return done.stdout


def _service_container(project: str, service: str) -> str:
    ids = _docker(
        "ps",
        "--all",
        "--quiet",
        "--filter",
        f"label=com.docker.compose.project={project}",
        "--filter",
        f"label=com.docker.compose.service={service}",
    ).split()
    assert len(ids) == 1, f"expected one container for service {service}, found {ids}"
    return ids[0]


def _wait_running(container: str, timeout: float = 30.0) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    while True:
        (info,) = json.loads(_docker("inspect", container))
        state = info["State"]
        if state["Status"] == "running":
            return dict(info)
        if time.monotonic() > deadline:
            raise AssertionError(f"container {container} not running: {state}")
        time.sleep(0.5)


def _link_names(container: str) -> list[str]:
    # `ip -o link`: "1: lo: <LOOPBACK,UP,LOWER_UP> mtu 65536 ..."; names may carry "@peer".
    out = _docker("exec", container, "ip", "-o", "link")
    return [line.split(":", 2)[1].strip().split("@", 1)[0] for line in out.splitlines() if line]


@pytest.mark.parametrize("zone", ZONES)
def test_zone_container_has_no_docker_network(
    docker_services: Services, docker_compose_project_name: str, zone: str
) -> None:
    container = _service_container(docker_compose_project_name, zone)
    info = _wait_running(container)
    config = info["Config"]
    host_config = info["HostConfig"]
    assert isinstance(config, dict) and isinstance(host_config, dict)
    assert config["Labels"].get("io.linkbroker.zone") == zone
    assert host_config["NetworkMode"] == "none"
    names = _link_names(container)
    assert names[0] == "lo"
    assert set(names) <= {"lo", "eth0"}
