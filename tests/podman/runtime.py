"""Debian's podman (4.3) driven as root with its CNI backend, in a world of its own: its own
containers.conf, plugin and network directories, --root/--runroot/--tmpdir under the test's
directory, vfs storage, and an image imported from a busybox rootfs tar made on the spot.
Nothing of a system podman (or Docker) is read or touched."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tarfile
from pathlib import Path
from typing import Any

from tests.podman.plugin import BUSYBOX, plugin_dir

IMAGE = "localhost/linkbroker-cni-busybox:1"
# This VM refuses podman's default rlimits (the issue); ping needs a raw socket.
RUN_FLAGS = ("--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024",
             "--cap-add", "NET_RAW")
APPLETS = ("sh", "ip", "ping", "sleep", "cat", "ls")


def oci_runtime() -> list[str]:
    """podman's --runtime: crun (podman's default) refuses a hybrid cgroup layout whose
    cgroup2 hierarchy holds a controller ("cgroups in hybrid mode not supported"), as some
    VMs boot (hugetlb alone on /sys/fs/cgroup/unified); runc runs there."""
    unified = Path("/sys/fs/cgroup/unified/cgroup.controllers")
    try:
        hybrid_with_controllers = bool(unified.read_text().split())
    except OSError:
        hybrid_with_controllers = False
    if hybrid_with_controllers and shutil.which("runc"):
        return ["--runtime", "runc"]
    return []


def podman_available() -> bool:
    return shutil.which("podman") is not None and Path(BUSYBOX).exists() and Path(
        "/usr/lib/cni/host-local").exists()


def busybox_rootfs_tar(path: Path) -> Path:
    """A rootfs of one static busybox and its applet links: ~2 MB, made in milliseconds."""
    with tarfile.open(path, "w") as tar:
        for d in ("bin", "proc", "sys", "dev", "etc", "tmp", "root"):
            info = tarfile.TarInfo(d)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
        tar.add(BUSYBOX, "bin/busybox")
        for applet in APPLETS:
            info = tarfile.TarInfo(f"bin/{applet}")
            info.type, info.linkname = tarfile.SYMTYPE, "busybox"
            tar.addfile(info)
        passwd = b"root:x:0:0:root:/root:/bin/sh\n"
        info = tarfile.TarInfo("etc/passwd")
        info.size = len(passwd)
        import io

        tar.addfile(info, io.BytesIO(passwd))
    return path


class Podman:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.net_dir = workdir / "net"
        self.plugins = plugin_dir(workdir / "plugins")
        self.net_dir.mkdir(parents=True, exist_ok=True)
        conf = workdir / "containers.conf"
        conf.write_text(
            "[network]\n"
            'network_backend = "cni"\n'
            f'cni_plugin_dirs = ["{self.plugins}"]\n'
            f'network_config_dir = "{self.net_dir}"\n'
        )
        self.env = {**os.environ, "CONTAINERS_CONF": str(conf)}
        self.base = ["podman", "--root", str(workdir / "root"), "--runroot",
                     str(workdir / "runroot"), "--tmpdir", str(workdir / "tmp"),
                     "--storage-driver", "vfs", "--cgroup-manager", "cgroupfs",
                     "--events-backend", "file", *oci_runtime()]

    def __call__(self, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*self.base, *args], env=self.env, capture_output=True,
                              text=True, timeout=timeout, check=False)

    def popen(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen([*self.base, *args], env=self.env, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def ok(self, *args: str) -> str:
        done = self(*args)
        assert done.returncode == 0, f"podman {' '.join(args)}: {done.stderr}"
        return done.stdout.strip()

    def import_image(self) -> None:
        tar = busybox_rootfs_tar(self.workdir / "rootfs.tar")
        self.ok("import", str(tar), IMAGE)

    def network(self, name: str, plugin_conf: dict[str, Any]) -> None:
        """A conflist podman reads from our network_config_dir on its next call."""
        body = {"cniVersion": plugin_conf.get("cniVersion", "1.0.0"), "name": name,
                "plugins": [{k: v for k, v in plugin_conf.items()
                             if k not in ("cniVersion", "name")}]}
        (self.net_dir / f"{name}.conflist").write_text(json.dumps(body))

    def run_detached(self, network: str, *cmd: str) -> subprocess.CompletedProcess[str]:
        return self("run", "-d", "--network", network, *RUN_FLAGS, IMAGE, *(cmd or (
            "sleep", "600")))

    def remove_all(self) -> None:
        self("rm", "-a", "-f", "-t", "0")

    def destroy(self) -> None:
        """Every container, image and storage byte made; mounts under the workdir first."""
        self.remove_all()
        self("rmi", "-a", "-f")
        mounts = subprocess.run(["findmnt", "-rn", "-o", "TARGET"], capture_output=True,
                                text=True, check=False).stdout.split()
        for target in sorted((m for m in mounts if m.startswith(f"{self.workdir}/")),
                             reverse=True):
            subprocess.run(["umount", "-l", target], check=False)
        shutil.rmtree(self.workdir, ignore_errors=True)
