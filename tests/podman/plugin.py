"""linkbroker-cni as runtimes run it: an executable in a plugin directory beside host-local,
exec'd with CNI_* variables and the network configuration on stdin."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
SYSTEM_PLUGINS = Path("/usr/lib/cni")
# busybox-static (scripts/install.sh test mode): ping for the tests, and the podman image.
BUSYBOX = "/bin/busybox"
# The interpreter the installed wrapper uses (scripts/install.sh): the plugin needs only
# the standard library, and Debian's python3 starts fastest with -IS.
PYTHON = "/usr/bin/python3" if os.access("/usr/bin/python3", os.X_OK) else shutil.which(
    "python3") or "python3"

WRAPPER = """#!{python} -IS
# linkbroker-cni: a CNI plugin whose links belong to linkbroker (docs/cni.md).
import sys
sys.path.insert(0, {root!r})
from clients.cni.plugin import main
sys.exit(main())
"""


def write_wrapper(path: Path, root: Path = ROOT, python: str = PYTHON) -> Path:
    path.write_text(WRAPPER.format(python=python, root=str(root)))
    path.chmod(0o755)
    return path


def plugin_dir(where: Path) -> Path:
    """A directory holding linkbroker-cni and links to Debian's host-local and bridge."""
    where.mkdir(parents=True, exist_ok=True)
    write_wrapper(where / "linkbroker-cni")
    for name in ("host-local", "bridge", "loopback"):
        target = SYSTEM_PLUGINS / name
        if target.exists() and not (where / name).exists():
            (where / name).symlink_to(target)
    return where


@dataclass
class Outcome:
    code: int
    out: dict[str, Any] | None
    raw: str


def exec_plugin(plugin: Path, command: str, conf: dict[str, Any] | bytes, *,
                container: str = "", netns: str = "", ifname: str = "eth0",
                extra_env: dict[str, str] | None = None) -> Outcome:
    env = {
        "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
        "CNI_COMMAND": command, "CNI_CONTAINERID": container, "CNI_NETNS": netns,
        "CNI_IFNAME": ifname, "CNI_PATH": str(plugin.parent), **(extra_env or {}),
    }
    data = conf if isinstance(conf, bytes) else json.dumps(conf).encode()
    done = subprocess.run([str(plugin)], input=data, env=env, capture_output=True,
                          timeout=120, check=False)
    text = done.stdout.decode()
    try:
        out = json.loads(text) if text.strip() else None
    except ValueError:
        out = None
    return Outcome(done.returncode, out, text + done.stderr.decode())


def network(name: str, bridge: str, sock: str, data_dir: Path, *,
            version: str = "1.0.0", subnet: str = "198.51.100.0/24") -> dict[str, Any]:
    return {
        "cniVersion": version, "name": name, "type": "linkbroker-cni", "socket": sock,
        "bridge": bridge, "mtu": 1500,
        "ipam": {"type": "host-local", "ranges": [[{"subnet": subnet}]],
                 "routes": [{"dst": "203.0.113.0/24"}], "dataDir": str(data_dir)},
    }

