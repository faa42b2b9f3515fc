"""Least privilege: the daemon keeps only the capabilities its work needs, from the start.

Kept, and why:
  CAP_NET_ADMIN        netlink link changes in every zone; TUNSETIFF for tap devices
  CAP_SYS_ADMIN        setns into zones' namespaces; open_tree/move_mount/umount2 for the
                       socket attach (in the spawned helper, which inherits the bounding set)
  CAP_SYS_CHROOT       setns into a mount namespace requires it too
  CAP_SYS_PTRACE       /proc/PID/ns/* and /proc/PID/root of callers and zone processes that
                       belong to other users
  CAP_DAC_OVERRIDE,    /proc/PID/root of other users' processes, and directories in zone roots
  CAP_DAC_READ_SEARCH  that root does not own
  CAP_FOWNER           the placeholder file and directories made inside zone roots

Everything else leaves the bounding set (so exec'd helpers cannot regain it), then the
permitted, effective and inheritable sets. `--keep-capabilities` skips this (debugging only).
"""

from __future__ import annotations

import ctypes
import os
import struct

__all__ = ["KEPT", "drop_capabilities", "effective_capabilities"]

CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER = 1, 2, 3
CAP_NET_ADMIN, CAP_SYS_CHROOT, CAP_SYS_PTRACE, CAP_SYS_ADMIN = 12, 18, 19, 21
KEPT = frozenset({CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER, CAP_NET_ADMIN,
                  CAP_SYS_CHROOT, CAP_SYS_PTRACE, CAP_SYS_ADMIN})
_PR_CAPBSET_DROP = 24
_LINUX_CAPABILITY_VERSION_3 = 0x20080522
_libc = ctypes.CDLL(None, use_errno=True)


def _last_cap() -> int:
    with open("/proc/sys/kernel/cap_last_cap") as f:
        return int(f.read())


def effective_capabilities(pid: int | str = "self") -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("CapEff:"):
                return int(line.split()[1], 16)
    return 0


def drop_capabilities(keep: frozenset[int] = KEPT) -> int:
    """Drop every capability not in `keep`; returns the resulting effective mask."""
    for cap in range(_last_cap() + 1):
        if cap not in keep and _libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"prctl(PR_CAPBSET_DROP, {cap}): {os.strerror(err)}")
    mask = 0
    for cap in keep:
        mask |= 1 << cap
    mask &= effective_capabilities()  # never ask for what we do not hold
    header = struct.pack("Ii", _LINUX_CAPABILITY_VERSION_3, 0)
    data = struct.pack("6I", mask & 0xFFFFFFFF, mask & 0xFFFFFFFF, 0,
                       mask >> 32, mask >> 32, 0)
    if _libc.capset(header, data) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"capset: {os.strerror(err)}")
    return effective_capabilities()
