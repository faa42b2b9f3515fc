"""Real-kernel tests of zones.attach: the broker socket bind-mounted into zones' roots.

Each zone is a process in fresh mount and network namespaces (``unshare``): a "process" zone with
a private tmpfs on /run, and "container" zones that pivot_root or chroot into a small directory.
The zone process is a tiny agent that connects to a socket path on request, so reachability is
checked from inside the zone, where that path is resolved the way a zone's ``linkadm`` would.

The host mount table is compared before and after every operation: no step may touch it. Mounts
other engineers' tests make at the same time (named network namespaces, Docker) are left out of
that comparison so it checks what this module could do, not what the machine does.

Everything made here is named ``lbt-attach-<random>`` and removed in ``finally`` blocks: zone
processes stop when their stdin closes, else are killed through a pidfd taken at their start
(never by name); host mounts are unmounted; temporary directories are removed.
"""

from __future__ import annotations

import os
import platform
import select
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from zones.attach import (
    ZONE_SOCKET_PATH,
    AttachError,
    AttachResult,
    attach_socket,
    detach_socket,
)

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (CI runs as root)")

PREFIX = f"lbt-attach-{os.urandom(4).hex()}"
PIVOT_ROOT = {"x86_64": 155, "aarch64": 41}.get(platform.machine())
# Mount points that concurrent tests of other modules create and remove on the host.
FOREIGN_MOUNTS = ("/run/netns/", "/var/run/netns/", "/run/docker/", "/var/lib/docker/",
                  "/tmp/pytest-of-", "/var/lib/containers/", "/run/containers/",
                  "/run/user/", "/var/run/containers/")

# The zone process. argv: MODE ROOT PIVOT_ROOT_NR. MODE is "process" (tmpfs on /run), "pivot" or
# "chroot" (into ROOT, bind-mounted on itself first), or "bare" (no mount at all). Everything it
# needs is imported before the root changes: after pivot_root no Python library is left to import.
ZONE_AGENT = r"""
import ctypes, errno, os, socket, sys
libc = ctypes.CDLL(None, use_errno=True)
def check(rc, what):
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), what)
def mount(src, tgt, fstype, flags):
    check(libc.mount(src.encode(), tgt.encode(), fstype.encode(), ctypes.c_ulong(flags), None), tgt)
mode, root, pivot_nr = sys.argv[1], sys.argv[2], int(sys.argv[3])
if mode == "process":
    mount("tmpfs", "/run", "tmpfs", 0)
elif mode in ("pivot", "chroot"):
    mount(root, root, "", 4096 | 16384)  # MS_BIND | MS_REC: pivot_root wants a mount point
    old = os.open("/", os.O_DIRECTORY | os.O_RDONLY)
    os.chdir(root)
    if mode == "pivot":
        check(libc.syscall(pivot_nr, b".", b"."), "pivot_root")
        os.fchdir(old)  # the old root now sits on top of the new one
        check(libc.umount2(b".", 2), "umount old root")
    else:
        os.chroot(".")
    os.close(old)
    os.chdir("/")
print("ready", os.getpid(), flush=True)
for line in sys.stdin:
    cmd, _, arg = line.strip().partition(" ")
    if cmd == "connect":
        s = socket.socket(socket.AF_UNIX)
        s.settimeout(5)
        try:
            s.connect(arg)
            s.sendall(b"ping")
            print("ok", s.recv(64).decode(), flush=True)
        except OSError as exc:
            print("err", errno.errorcode.get(exc.errno, exc.errno), flush=True)
        finally:
            s.close()
"""

# Run through nsenter: the host's python3 is visible in a process zone.
NSENTER_CLIENT = (
    "import socket, sys\n"
    "s = socket.socket(socket.AF_UNIX)\n"
    "s.settimeout(5)\n"
    "s.connect(sys.argv[1])\n"
    "s.sendall(b'ping')\n"
    "print(s.recv(64).decode())\n"
)


def host_mounts() -> list[str]:
    lines = Path("/proc/self/mountinfo").read_text().splitlines()
    return [line for line in lines if not line.split()[4].startswith(FOREIGN_MOUNTS)]


class Server:
    """A listening AF_UNIX socket that answers each connection with its tag."""

    def __init__(self, path: Path, tag: str) -> None:
        self.path, self.tag = path, tag
        self._stop = threading.Event()
        self._sock = socket.socket(socket.AF_UNIX)
        self._sock.bind(str(path))
        self._sock.listen(8)
        self._sock.settimeout(0.1)
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                conn.settimeout(5)
                conn.recv(64)
                conn.sendall(self.tag.encode())

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._sock.close()


class Zone:
    """A zone process started by this test, and what it sees."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.proc = proc
        self._buf = b""
        words = self._readline().split()
        assert words[:1] == ["ready"], words
        self.pid = int(words[1])
        self.pidfd = os.pidfd_open(self.pid)

    def _readline(self, timeout: float = 20.0) -> str:
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        while b"\n" not in self._buf:
            ready, _, _ = select.select([fd], [], [], timeout)
            chunk = os.read(fd, 4096) if ready else b""
            if not chunk:
                raise RuntimeError(f"zone agent went silent (exit {self.proc.poll()})")
            self._buf += chunk
        line, _, self._buf = self._buf.partition(b"\n")
        return line.decode()

    def connect(self, path: str = ZONE_SOCKET_PATH) -> str:
        """Connect from inside the zone: 'ok TAG' or 'err ERRNO'."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"connect {path}\n".encode())
        self.proc.stdin.flush()
        return self._readline()

    def path(self, zone_path: str) -> Path:
        """The zone's path as the host reaches it, through the zone's root."""
        return Path(f"/proc/{self.pid}/root") / zone_path.lstrip("/")

    def mounts(self) -> list[str]:
        """The zone's mount table, less the copies of mounts other tests make on the host
        meanwhile (a private copy still changes when, e.g., a namespace mount goes)."""
        lines = Path(f"/proc/{self.pid}/mountinfo").read_text().splitlines()
        return [line for line in lines if not line.split()[4].startswith(FOREIGN_MOUNTS)]

    def mounts_at(self, zone_path: str) -> list[str]:
        return [line for line in self.mounts() if line.split()[4] == zone_path]

    def stop(self) -> None:
        try:
            if self.proc.stdin is not None:
                self.proc.stdin.close()
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            signal.pidfd_send_signal(self.pidfd, signal.SIGKILL)
            self.proc.kill()
            self.proc.wait(5)
        finally:
            os.close(self.pidfd)
            if self.proc.stdout is not None:
                self.proc.stdout.close()


@contextmanager
def zone_process(
    mode: str, root: Path | None = None, propagation: str = "private"
) -> Iterator[Zone]:
    proc = subprocess.Popen(
        [
            "unshare",
            "--mount",
            "--net",
            "--fork",
            "--kill-child",
            f"--propagation={propagation}",
            sys.executable,
            "-c",
            ZONE_AGENT,
            mode,
            str(root or ""),
            str(PIVOT_ROOT or 0),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        zone = Zone(proc)
    except BaseException:
        with proc:  # closes the pipes and waits
            proc.kill()  # --kill-child takes the agent with it
        raise
    try:
        yield zone
    finally:
        zone.stop()


@contextmanager
def host_bind_mount(path: Path, shared: bool) -> Iterator[Path]:
    """Bind-mount path on itself on the host, for the tests about propagation."""
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "--bind", str(path), str(path)], check=True)
    try:
        if shared:
            subprocess.run(["mount", "--make-shared", str(path)], check=True)
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=True)


@pytest.fixture
def workdir() -> Iterator[Path]:
    # Short, so that socket paths stay under 108 bytes.
    path = Path(tempfile.mkdtemp(prefix=f"{PREFIX}-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def server(workdir: Path) -> Iterator[Server]:
    srv = Server(workdir / "broker.sock", "first")
    try:
        yield srv
    finally:
        srv.close()


@pytest.fixture
def zone() -> Iterator[Zone]:
    with zone_process("process") as z:
        yield z


def container_root(workdir: Path) -> Path:
    root = workdir / "root"
    (root / "run").mkdir(parents=True)
    (root / "etc").mkdir()
    return root


def test_attach_makes_socket_reachable_in_zone(server: Server, zone: Zone) -> None:
    host_before, zone_before = host_mounts(), zone.mounts()

    result = attach_socket(str(server.path), zone.pid)

    assert result == AttachResult(attached=True, reason=None)
    assert zone.connect() == "ok first"
    entered = subprocess.run(
        [
            "nsenter",
            "-t",
            str(zone.pid),
            "-m",
            "-n",
            sys.executable,
            "-c",
            NSENTER_CLIENT,
            ZONE_SOCKET_PATH,
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert entered.stdout.strip() == "first"
    assert host_mounts() == host_before
    (mount,) = zone.mounts_at(ZONE_SOCKET_PATH)
    assert set(zone.mounts()) - set(zone_before) == {mount}
    # The clone was made private: nothing mounted on it in the zone can propagate back.
    assert "shared:" not in mount.split(" - ")[0]
    assert stat.S_ISDIR(zone.path("/run/linkbroker").lstat().st_mode)


@pytest.mark.skipif(PIVOT_ROOT is None, reason="pivot_root number unknown on this machine")
@pytest.mark.parametrize("mode", ["pivot", "chroot"])
def test_attach_into_container_root(server: Server, workdir: Path, mode: str) -> None:
    root = container_root(workdir)
    with zone_process(mode, root) as zone:
        host_before = host_mounts()

        assert attach_socket(str(server.path), zone.pid) == AttachResult(True, None)

        assert zone.connect() == "ok first"
        assert len(zone.mounts_at(ZONE_SOCKET_PATH)) == 1
        assert host_mounts() == host_before
        # On the host, the directory holding the zone's root shows only the placeholder file.
        placeholder = (root / ZONE_SOCKET_PATH.lstrip("/")).lstat()
        assert stat.S_ISREG(placeholder.st_mode)
        assert placeholder.st_size == 0
        assert oct(stat.S_IMODE((root / "run/linkbroker").lstat().st_mode)) == oct(0o755)


def test_reattach_replaces_stale_mount(server: Server, zone: Zone, workdir: Path) -> None:
    host_before = host_mounts()
    assert attach_socket(str(server.path), zone.pid).attached
    server.close()
    server.path.unlink()
    # A restarted broker: same path, new socket inode. The old mount now leads nowhere.
    restarted = Server(workdir / "broker.sock", "second")
    try:
        assert zone.connect() == "err ECONNREFUSED"

        result = attach_socket(str(restarted.path), zone.pid)

        assert result.attached
        assert result.reason == f"detached 1 stale mount from {ZONE_SOCKET_PATH} first"
        assert zone.connect() == "ok second"
        assert len(zone.mounts_at(ZONE_SOCKET_PATH)) == 1

        again = attach_socket(str(restarted.path), zone.pid)

        assert again.attached
        assert zone.connect() == "ok second"
        assert len(zone.mounts_at(ZONE_SOCKET_PATH)) == 1
        assert host_mounts() == host_before
    finally:
        restarted.close()


def test_detach_is_repeatable(server: Server, zone: Zone) -> None:
    host_before, zone_before = host_mounts(), zone.mounts()
    assert attach_socket(str(server.path), zone.pid).attached

    first = detach_socket(zone.pid)

    assert first == AttachResult(False, f"detached 1 mount from {ZONE_SOCKET_PATH}")
    assert zone.mounts() == zone_before
    assert zone.connect() == "err ECONNREFUSED"  # the empty placeholder file stays

    second = detach_socket(zone.pid)

    assert second == AttachResult(False, f"nothing mounted on {ZONE_SOCKET_PATH}")
    missing = detach_socket(zone.pid, "/run/lbt-attach-missing/broker.sock")
    assert missing.attached is False
    assert missing.reason == "/run/lbt-attach-missing/broker.sock does not exist"
    assert host_mounts() == host_before


@pytest.mark.parametrize("decoy_kind", ["file", "fifo"])
def test_mounts_stacked_by_the_zone_are_detached_too(
    server: Server, zone: Zone, decoy_kind: str
) -> None:
    """The zone bind-mounts something over the socket; attach and detach clear the stack."""
    assert attach_socket(str(server.path), zone.pid).attached
    decoy = f"/run/{PREFIX}-decoy"
    if decoy_kind == "fifo":
        os.mkfifo(zone.path(decoy))
    else:
        zone.path(decoy).touch()
    subprocess.run(
        ["nsenter", "-t", str(zone.pid), "-m", "mount", "--bind", decoy, ZONE_SOCKET_PATH],
        check=True,
        timeout=30,
    )
    assert len(zone.mounts_at(ZONE_SOCKET_PATH)) == 2

    result = attach_socket(str(server.path), zone.pid)

    assert result.attached
    assert result.reason == f"detached 2 stale mounts from {ZONE_SOCKET_PATH} first"
    assert len(zone.mounts_at(ZONE_SOCKET_PATH)) == 1
    assert zone.connect() == "ok first"


def plant_run_linkbroker(zone: Zone, workdir: Path) -> Path:
    link_target = workdir / "escape"
    link_target.mkdir()
    zone.path("/run/linkbroker").symlink_to(link_target)
    return link_target


def plant_run_linkbroker_etc(zone: Zone, workdir: Path) -> Path:
    zone.path("/run/linkbroker").symlink_to("/etc")
    return Path("/etc")


def plant_socket_link(zone: Zone, workdir: Path) -> Path:
    link_target = workdir / "escape"
    link_target.mkdir()
    zone.path("/run/linkbroker").mkdir()
    zone.path(ZONE_SOCKET_PATH).symlink_to(link_target / "broker.sock")
    return link_target


def plant_relative_dotdot(zone: Zone, workdir: Path) -> Path:
    # Relative and climbing: would reach the host's /etc from the zone's /run.
    zone.path("/run/linkbroker").symlink_to("../../../../../../etc")
    return Path("/etc")


@pytest.mark.parametrize(
    "plant",
    [plant_run_linkbroker, plant_run_linkbroker_etc, plant_socket_link, plant_relative_dotdot],
)
def test_planted_symlink_is_refused(
    server: Server, zone: Zone, workdir: Path, plant: Callable[[Zone, Path], Path]
) -> None:
    escape = plant(zone, workdir)
    escape_before = sorted(os.listdir(escape))
    host_before, zone_before = host_mounts(), zone.mounts()

    result = attach_socket(str(server.path), zone.pid)

    assert result.attached is False
    assert result.reason is not None
    assert "is a symlink" in result.reason
    assert host_mounts() == host_before
    assert zone.mounts() == zone_before
    assert sorted(os.listdir(escape)) == escape_before
    assert not (escape / "broker.sock").exists()
    assert detach_socket(zone.pid).attached is False


@pytest.mark.skipif(PIVOT_ROOT is None, reason="pivot_root number unknown on this machine")
def test_symlinked_run_in_container_root_is_refused(server: Server, workdir: Path) -> None:
    root = workdir / "root"
    root.mkdir()
    (root / "run").symlink_to("/etc")  # the host's /etc if anyone resolved it outside the zone
    with zone_process("pivot", root) as zone:
        host_before, zone_before = host_mounts(), zone.mounts()

        result = attach_socket(str(server.path), zone.pid)

        assert result == AttachResult(False, "/run is a symlink")
        assert host_mounts() == host_before
        assert zone.mounts() == zone_before
        assert not os.path.lexists("/etc/linkbroker")


def make_directory(path: Path) -> None:
    path.mkdir()


def make_fifo(path: Path) -> None:
    os.mkfifo(path)


def make_device(path: Path) -> None:
    os.mknod(path, 0o600 | stat.S_IFCHR, os.makedev(1, 3))


def make_nonempty_file(path: Path) -> None:
    path.write_text("zone data\n")


@pytest.mark.parametrize(
    ("make", "kind"),
    [
        (make_directory, "directory"),
        (make_fifo, "FIFO"),
        (make_device, "character device"),
        (make_nonempty_file, "regular file"),
    ],
)
def test_unusable_target_is_refused(
    server: Server, zone: Zone, make: Callable[[Path], None], kind: str
) -> None:
    zone.path("/run/linkbroker").mkdir()
    make(zone.path(ZONE_SOCKET_PATH))
    host_before, zone_before = host_mounts(), zone.mounts()

    result = attach_socket(str(server.path), zone.pid)

    expected = f"{ZONE_SOCKET_PATH} is a {kind}, not an empty regular file or a socket"
    assert result == AttachResult(False, expected)
    assert host_mounts() == host_before
    assert zone.mounts() == zone_before


def test_directory_mounted_on_target_is_refused(server: Server, zone: Zone) -> None:
    zone.path(ZONE_SOCKET_PATH).mkdir(parents=True)
    subprocess.run(
        ["nsenter", "-t", str(zone.pid), "-m", "mount", "-t", "tmpfs", PREFIX, ZONE_SOCKET_PATH],
        check=True,
        timeout=30,
    )
    zone_before = zone.mounts()

    result = attach_socket(str(server.path), zone.pid)

    assert result == AttachResult(False, f"{ZONE_SOCKET_PATH} has a directory mounted on it")
    assert zone.mounts() == zone_before


def test_zone_socket_or_empty_file_is_covered(server: Server, zone: Zone) -> None:
    zone.path("/run/linkbroker").mkdir()
    with socket.socket(socket.AF_UNIX) as own:
        own.bind(str(zone.path(ZONE_SOCKET_PATH)))

        assert attach_socket(str(server.path), zone.pid) == AttachResult(True, None)
        assert zone.connect() == "ok first"
    assert detach_socket(zone.pid).reason == f"detached 1 mount from {ZONE_SOCKET_PATH}"
    other = "/run/linkbroker/empty.sock"
    zone.path(other).touch()
    assert attach_socket(str(server.path), zone.pid, other) == AttachResult(True, None)
    assert zone.connect(other) == "ok first"


def test_same_mount_namespace_is_refused(server: Server, workdir: Path) -> None:
    target = str(workdir / "same" / "broker.sock")
    netns_only = subprocess.Popen(["unshare", "--net", "sleep", "60"])  # execs: pid is sleep's
    try:
        for pid in (os.getpid(), netns_only.pid):
            host_before = host_mounts()

            result = attach_socket(str(server.path), pid, target)

            assert result == AttachResult(False, "zone shares the host mount namespace")
            assert host_mounts() == host_before
            assert not (workdir / "same").exists()
            assert detach_socket(pid, target).attached is False
    finally:
        netns_only.kill()
        netns_only.wait(5)


def test_dead_process(server: Server) -> None:
    proc = subprocess.Popen(["true"])
    proc.wait(5)

    assert detach_socket(proc.pid) == AttachResult(False, f"process {proc.pid} is gone")
    with pytest.raises(AttachError, match="is gone"):
        attach_socket(str(server.path), proc.pid)


def test_peer_group_shared_with_host_is_refused(server: Server, workdir: Path) -> None:
    # This zone keeps the host's propagation: its copy of `shared` is a peer of the host's.
    with (
        host_bind_mount(workdir / "shared", shared=True) as shared,
        zone_process("bare", propagation="unchanged") as zone,
    ):
        target = str(shared / "lb" / "broker.sock")
        host_before, zone_before = host_mounts(), zone.mounts()

        result = attach_socket(str(server.path), zone.pid, target)

        assert result.attached is False
        assert result.reason is not None
        assert "propagate into the host" in result.reason
        assert host_mounts() == host_before
        assert zone.mounts() == zone_before
        assert not (shared / "lb" / "broker.sock").exists()


def test_clone_of_shared_host_mount_does_not_propagate_back(workdir: Path, zone: Zone) -> None:
    with host_bind_mount(workdir / "hs", shared=True) as shared:
        srv = Server(shared / "broker.sock", "shared")
        try:
            host_before = host_mounts()
            assert attach_socket(str(srv.path), zone.pid).attached
            decoy = f"/run/{PREFIX}-decoy"
            zone.path(decoy).touch()

            subprocess.run(
                [
                    "nsenter",
                    "-t",
                    str(zone.pid),
                    "-m",
                    "mount",
                    "--bind",
                    decoy,
                    ZONE_SOCKET_PATH,
                ],
                check=True,
                timeout=30,
            )

            assert host_mounts() == host_before  # the host's socket path is not covered
            with socket.socket(socket.AF_UNIX) as client:
                client.connect(str(srv.path))
                client.sendall(b"ping")
                assert client.recv(64) == b"shared"
            assert detach_socket(zone.pid).reason == f"detached 2 mounts from {ZONE_SOCKET_PATH}"
        finally:
            srv.close()


def test_helper_timeout_raises(server: Server, zone: Zone) -> None:
    with pytest.raises(AttachError, match="timed out"):
        attach_socket(str(server.path), zone.pid, timeout=0.001)


def test_helper_crash_raises(server: Server, zone: Zone, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "executable", "/bin/false")
    with pytest.raises(AttachError, match="helper failed"):
        attach_socket(str(server.path), zone.pid)
    with pytest.raises(AttachError, match="helper failed"):
        detach_socket(zone.pid)


def test_bad_arguments(server: Server, zone: Zone, workdir: Path) -> None:
    for target in ("run/linkbroker/broker.sock", "/run/../etc/x", "/run//x", "/run/x/"):
        with pytest.raises(ValueError, match="target"):
            attach_socket(str(server.path), zone.pid, target)
    with pytest.raises(ValueError, match="pid"):
        detach_socket(0)
    regular = workdir / "regular"
    regular.touch()
    with pytest.raises(AttachError, match="not a socket"):
        attach_socket(str(regular), zone.pid)
    with pytest.raises(AttachError, match="cannot clone"):
        attach_socket(str(workdir / "missing.sock"), zone.pid)
    assert zone.mounts_at(ZONE_SOCKET_PATH) == []


# Run by the import-guard test in a fresh interpreter, as the helper runs: joins the zone's
# mount namespace through the helper's own _enter_zone, then imports a module that exists only
# in the zone's mount namespace. argv: PID PLANT_DIR GUARD ("on" or "off").
IMPORT_AFTER_SETNS = r"""
import os, sys
from zones import _attach_helper as helper
pid, plant_dir, guard = int(sys.argv[1]), sys.argv[2], sys.argv[3]
if guard == "off":
    helper.arm_guard = lambda: None  # the control: shows the plant works
zone = helper._enter_zone(os.pidfd_open(pid))
sys.path.insert(0, plant_dir)  # only now: a missing directory would be cached as such
import lbt_planted
print("imported", flush=True)
"""


def _run_import_after_setns(zone: Zone, plant_dir: str, guard: str
                            ) -> subprocess.CompletedProcess[str]:
    root = str(Path(__file__).resolve().parent.parent)
    return subprocess.run(
        [sys.executable, "-P", "-S", "-c", IMPORT_AFTER_SETNS, str(zone.pid), plant_dir, guard],
        capture_output=True, text=True, timeout=30, check=False, cwd="/",
        env={"PYTHONPATH": root, "LC_ALL": "C.UTF-8"},
    )


def test_import_after_joining_the_zone_is_refused(zone: Zone) -> None:
    """Issue 12, finding 8: Python code the zone planted never runs as the host's root."""
    plant_dir = f"/run/{PREFIX}-plant"  # on the zone's private /run: the host has no such dir
    zone.path(plant_dir).mkdir()
    marker = zone.path(plant_dir) / "executed"
    zone.path(plant_dir).joinpath("lbt_planted.py").write_text(
        f"open({str(Path(plant_dir) / 'executed')!r}, 'w').write('ran as host root')\n")
    assert not Path(plant_dir).exists()

    guarded = _run_import_after_setns(zone, plant_dir, "on")

    assert guarded.returncode == 70, guarded
    assert "import 'lbt_planted' refused inside the zone's mount namespace" in guarded.stderr
    assert "imported" not in guarded.stdout
    assert not marker.exists()

    # The control: without the guard the same import does run the zone's file.
    unguarded = _run_import_after_setns(zone, plant_dir, "off")
    assert unguarded.returncode == 0 and "imported" in unguarded.stdout, unguarded
    assert marker.read_text() == "ran as host root"


def test_a_recycled_pid_is_not_targeted(server: Server, zone: Zone) -> None:
    """The helper gets a pidfd checked against the start time the broker recorded: the same
    pid number with another start time (a recycled pid) is "gone", and nothing is mounted."""
    from zones.handle import pid_start_time

    start = pid_start_time(zone.pid)
    before = zone.mounts()
    with pytest.raises(AttachError, match="is gone"):
        attach_socket(str(server.path), zone.pid, pid_start=start + 1)
    assert zone.mounts() == before
    assert detach_socket(zone.pid, pid_start=start + 1) == AttachResult(
        False, f"process {zone.pid} is gone")
    assert attach_socket(str(server.path), zone.pid, pid_start=start).attached
    assert zone.connect() == "ok first"
    assert detach_socket(zone.pid, pid_start=start).attached is False


# attach_socket run from a mount namespace of its own, as when the broker runs in a container
# (compose): argv: SOCKET PID TARGET. Prints the result as "attached|reason".
ATTACH_FROM_OWN_MNTNS = r"""
import sys
from zones.attach import attach_socket
result = attach_socket(sys.argv[1], int(sys.argv[2]), sys.argv[3])
print(f"{result.attached}|{result.reason}", flush=True)
"""


def _attach_from_private_mntns(socket_path: str, pid: int, target: str) -> str:
    root = str(Path(__file__).resolve().parent.parent)
    done = subprocess.run(
        ["unshare", "--mount", "--propagation=private", sys.executable, "-c",
         ATTACH_FROM_OWN_MNTNS, socket_path, str(pid), target],
        capture_output=True, text=True, timeout=60, check=False,
        env={"PYTHONPATH": root, "PATH": os.environ.get("PATH", "/usr/bin:/bin")},
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_broker_in_a_container_refuses_the_hosts_mount_namespace(
        server: Server, workdir: Path) -> None:
    """Issue 12, finding 8: with the broker in a mount namespace of its own, a zone in the
    host's was "another namespace" to it, and the socket was mounted into the host's table."""
    target = str(workdir / "hostns" / "broker.sock")
    netns_only = subprocess.Popen(["unshare", "--net", "sleep", "60"])  # the host's mount ns
    try:
        host_before = host_mounts()

        answer = _attach_from_private_mntns(str(server.path), netns_only.pid, target)

        assert answer == "False|zone shares the host mount namespace"
        assert host_mounts() == host_before
        assert not (workdir / "hostns").exists()
    finally:
        netns_only.kill()
        netns_only.wait(5)
        if any(line.split()[4] == target for line in host_mounts()):  # the old hole, if back
            subprocess.run(["umount", "-l", target], check=False, timeout=30)


def test_broker_in_a_container_sees_the_hosts_peer_groups(
        server: Server, workdir: Path) -> None:
    """The propagation check takes the host's peer groups from /proc/1's table too: a zone
    mount that is a peer of a host mount the broker's own namespace lacks is refused."""
    with (
        host_bind_mount(workdir / "shared", shared=True) as shared,
        zone_process("bare", propagation="unchanged") as zone,
    ):
        target = str(shared / "lb" / "broker.sock")
        host_before, zone_before = host_mounts(), zone.mounts()

        answer = _attach_from_private_mntns(str(server.path), zone.pid, target)

        assert answer.startswith("False|") and "propagate into the host" in answer, answer
        assert host_mounts() == host_before
        assert zone.mounts() == zone_before
        assert not (shared / "lb" / "broker.sock").exists()


def test_container_boot_holds_the_init_by_pidfd(monkeypatch: pytest.MonkeyPatch) -> None:
    """zones.container: the init pid Docker reports is held by a pidfd and asked about again
    before its namespace is opened; a pid that is gone, or a container that restarted in
    between, is ZoneGone rather than some other process's namespace. (Docker itself is
    replaced by answers given here; the processes and namespaces are real.)"""
    from zones import container
    from zones.handle import ZoneGone

    live = subprocess.Popen(["unshare", "--net", "sleep", "60"])
    dead = subprocess.Popen(["true"])
    dead.wait(5)
    try:
        for _ in range(100):  # until unshare has exec'd sleep in the new namespace
            if os.stat(f"/proc/{live.pid}/ns/net").st_ino != os.stat("/proc/self/ns/net").st_ino:
                break
            threading.Event().wait(0.02)
        answers: list[tuple[str, int]] = []
        monkeypatch.setattr(container, "container_init", lambda ref: answers.pop(0))

        answers[:] = [("c1", dead.pid)]
        with pytest.raises(ZoneGone, match="is gone"):
            container.open_container("c1")
        answers[:] = [("c1", live.pid), ("c1", dead.pid)]
        with pytest.raises(ZoneGone, match="restarted meanwhile"):
            container.open_container("c1")
        answers[:] = [("c1", live.pid), ("c1", live.pid)]
        cid, handle = container.open_container("c1")
        try:
            assert cid == "c1" and handle.pid == live.pid
            assert handle.netns_inode == os.stat(f"/proc/{live.pid}/ns/net").st_ino
        finally:
            handle.close()
    finally:
        live.kill()
        live.wait(5)
