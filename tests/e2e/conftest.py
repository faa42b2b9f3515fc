"""pytest-docker wiring for the end-to-end tests on the Docker lab (compose.yaml).

The lab needs a Docker engine (``.ci/docker-engine.sh start``) and the lab images
(``lab/build-images.sh``). Without them every test here is skipped, with the reason printed,
so unit runs on a machine without Docker still pass; set ``LINKBROKER_REQUIRE_DOCKER=1`` (CI
that did prepare the lab) to make that a failure instead.

Each session runs its own compose project, ``lbtlab<random>``, brought up with
``docker-compose up -d`` and removed with ``docker-compose down -v`` at the end.
"""

from __future__ import annotations

import os
import secrets
import subprocess
from collections.abc import Iterator
from contextlib import nullcontext
from pathlib import Path

import pytest
from pytest_docker.plugin import Services, get_docker_services

REPO_ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO_ROOT / "compose.yaml"
LAB_IMAGE = os.environ.get("LINKBROKER_LAB_IMAGE", "linkbroker/lab:latest")
E2E_DIR = Path(__file__).resolve().parent
SHARED_MOUNTS = ("/run/linkbroker", "/run/netns")
# The host links the lab makes (the zones' host ends, the agent's bridge, the test's bridge).
LAB_LINKS = ("lbred", "lbblue", "lbbr0", "rbr0")


def _run(*argv: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _lab_unavailable_reason() -> str | None:
    """Why the lab cannot run here, or None when it can."""
    try:
        info = _run("docker", "info", "--format", "{{.ServerVersion}}")
    except FileNotFoundError:
        return "no docker client on PATH (run .ci/docker-engine.sh start)"
    except subprocess.TimeoutExpired:
        return "'docker info' timed out: the Docker engine does not answer"
    if info.returncode != 0:
        detail = (info.stderr.strip().splitlines() or ["no output"])[-1]
        return f"no Docker engine ('docker info' failed: {detail}); run .ci/docker-engine.sh start"
    try:
        compose = _run("docker-compose", "version", "--short")
    except FileNotFoundError:
        return "docker-compose (v1) not installed; run .ci/docker-engine.sh start"
    if compose.returncode != 0:
        return f"'docker-compose version' failed: {compose.stderr.strip()}"
    image = _run("docker", "image", "inspect", "--format", "{{.Id}}", LAB_IMAGE)
    if image.returncode != 0:
        return f"lab image {LAB_IMAGE} missing; run lab/build-images.sh"
    unshared = [path for path in SHARED_MOUNTS if not _is_shared_mount(path)]
    if unshared:
        return (
            f"{', '.join(unshared)} not shared mount points (compose.yaml binds them rshared);"
            " run .ci/docker-engine.sh prepare"
        )
    return None


def _remove_lab_links() -> None:
    """After the lab is down: any of its host links still there (a sweep cut short) is
    removed, and said, so the host is left as found."""
    for name in LAB_LINKS:
        if _run("ip", "link", "show", "dev", name).returncode == 0:
            print(f"e2e: removing the lab's leftover host link {name}")
            _run("ip", "link", "del", "dev", name)


def _is_shared_mount(path: str) -> bool:
    """Whether `path` is a mount point whose propagation is shared (/proc/self/mountinfo)."""
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return False
    shared = False
    for line in lines:
        fields = line.split()
        if len(fields) < 7 or fields[4] != path:
            continue
        optional = fields[6 : fields.index("-")] if "-" in fields else []
        # The last mount on a path is the one in effect.
        shared = any(tag.startswith("shared:") for tag in optional)
    return shared


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Every test under tests/e2e needs Docker: mark it so `-m 'not docker'` drops it."""
    for item in items:
        if E2E_DIR in item.path.parents:
            item.add_marker(pytest.mark.docker)


@pytest.fixture(scope="session")
def docker_lab_available(pytestconfig: pytest.Config) -> None:
    """Skip (or fail, with LINKBROKER_REQUIRE_DOCKER=1) when the lab cannot run here."""
    reason = _lab_unavailable_reason()
    if reason is None:
        return
    message = f"e2e lab unavailable: {reason}"
    reporter = pytestconfig.pluginmanager.get_plugin("terminalreporter")
    capture = pytestconfig.pluginmanager.get_plugin("capturemanager")
    if reporter is not None:
        # Shown once, as it happens, past output capturing (the skip reason is in -ra too).
        with capture.global_and_fixture_disabled() if capture is not None else nullcontext():
            reporter.write_line("")
            reporter.write_line(message, yellow=True, bold=True)
    if os.environ.get("LINKBROKER_REQUIRE_DOCKER") == "1":
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


@pytest.fixture(autouse=True)
def _require_docker_lab(docker_lab_available: None) -> None:
    """Applies the availability check to every test here, lab fixtures or not."""


@pytest.fixture(scope="session")
def docker_compose_command(docker_lab_available: None) -> str:
    """Debian ships Compose v1 as the `docker-compose` program."""
    return "docker-compose"


@pytest.fixture(scope="session")
def docker_compose_file(docker_lab_available: None) -> str:
    return str(COMPOSE_FILE)


@pytest.fixture(scope="session")
def docker_compose_project_name() -> str:
    """Unique per session, so parallel or leftover labs never collide."""
    return f"lbtlab{secrets.token_hex(4)}"


@pytest.fixture(scope="session")
def docker_setup() -> list[str]:
    """pytest-docker's default, `up --build --wait`, is Compose v2 only (v1 has no --wait);
    the lab images are built by lab/build-images.sh, not by compose."""
    return ["up -d"]


@pytest.fixture(scope="session")
def docker_cleanup() -> list[str]:
    # Time for the agent's last sweep (halt the zones, delete what it made, its bridge
    # last) before the engine kills the broker's container: 5 s was not always enough.
    return ["down -v --remove-orphans --timeout 30"]


@pytest.fixture(scope="session")
def docker_services(
    docker_compose_command: str,
    docker_compose_file: str,
    docker_compose_project_name: str,
    docker_setup: list[str],
    docker_cleanup: list[str],
) -> Iterator[Services]:
    """pytest-docker's fixture, plus a `down` when `up` fails half-way: pytest-docker cleans
    up only after a successful setup, which would leave containers of the lab behind."""
    started = False
    try:
        with get_docker_services(
            docker_compose_command,
            docker_compose_file,
            docker_compose_project_name,
            docker_setup,
            docker_cleanup,
        ) as services:
            started = True
            yield services
        _remove_lab_links()
    finally:
        if not started:
            _run(
                *docker_compose_command.split(),
                "-f",
                docker_compose_file,
                "-p",
                docker_compose_project_name,
                *docker_cleanup[0].split(),
                timeout=120,
            )
