"""Mount and namespace system calls that Python 3.11's ``os`` module lacks.

Each wrapper is one system call through libc, raising ``OSError`` with the kernel's errno, so
callers handle failures exactly as they would for ``os.open``. Nothing here switches namespaces
behind the caller's back or retries: policy belongs to the callers.

Numbers 424 and up are shared by every architecture except alpha, so ``open_tree``,
``move_mount``, ``openat2`` and ``mount_setattr`` need no per-architecture table.

``setns(fd, CLONE_NEWNS)`` fails with EINVAL in any process with more than one thread (the
threads share one ``fs_struct``); only single-threaded helpers may call it. ``setns`` with
``CLONE_NEWNET`` affects only the calling thread.
"""

from __future__ import annotations

import ctypes
import os

__all__ = [
    "AT_EMPTY_PATH",
    "AT_FDCWD",
    "AT_RECURSIVE",
    "CLONE_NEWNET",
    "CLONE_NEWNS",
    "MNT_DETACH",
    "MOUNT_ATTR_NODEV",
    "MOUNT_ATTR_NOEXEC",
    "MOUNT_ATTR_NOSUID",
    "MOVE_MOUNT_F_EMPTY_PATH",
    "MOVE_MOUNT_T_EMPTY_PATH",
    "MS_PRIVATE",
    "OPEN_TREE_CLOEXEC",
    "OPEN_TREE_CLONE",
    "RESOLVE_BENEATH",
    "RESOLVE_IN_ROOT",
    "RESOLVE_NO_MAGICLINKS",
    "RESOLVE_NO_SYMLINKS",
    "RESOLVE_NO_XDEV",
    "UMOUNT_NOFOLLOW",
    "mount_setattr",
    "move_mount",
    "open_tree",
    "openat2",
    "setns",
    "umount2",
]

AT_FDCWD = -100
AT_EMPTY_PATH = 0x1000
AT_RECURSIVE = 0x8000

CLONE_NEWNS = 0x00020000
CLONE_NEWNET = 0x40000000

OPEN_TREE_CLONE = 1
OPEN_TREE_CLOEXEC = os.O_CLOEXEC

MOVE_MOUNT_F_EMPTY_PATH = 0x04
MOVE_MOUNT_T_EMPTY_PATH = 0x40

RESOLVE_NO_XDEV = 0x01
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_NO_SYMLINKS = 0x04
RESOLVE_BENEATH = 0x08
RESOLVE_IN_ROOT = 0x10

MNT_DETACH = 0x2
UMOUNT_NOFOLLOW = 0x8

MS_PRIVATE = 1 << 18

MOUNT_ATTR_NOSUID = 0x02
MOUNT_ATTR_NODEV = 0x04
MOUNT_ATTR_NOEXEC = 0x08

_SYS_OPEN_TREE = 428
_SYS_MOVE_MOUNT = 429
_SYS_OPENAT2 = 437
_SYS_MOUNT_SETATTR = 442

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long
_libc.setns.argtypes = [ctypes.c_int, ctypes.c_int]
_libc.setns.restype = ctypes.c_int
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
_libc.umount2.restype = ctypes.c_int


class _OpenHow(ctypes.Structure):
    _fields_ = (
        ("flags", ctypes.c_uint64),
        ("mode", ctypes.c_uint64),
        ("resolve", ctypes.c_uint64),
    )


class _MountAttr(ctypes.Structure):
    _fields_ = (
        ("attr_set", ctypes.c_uint64),
        ("attr_clr", ctypes.c_uint64),
        ("propagation", ctypes.c_uint64),
        ("userns_fd", ctypes.c_uint64),
    )


def _check(result: int, what: str, path: str | None = None) -> int:
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}", path)
    return result


def _path(path: str) -> bytes:
    return os.fsencode(path)


def setns(fd: int, nstype: int) -> None:
    _check(int(_libc.setns(fd, nstype)), "setns")


def open_tree(dirfd: int, path: str, flags: int) -> int:
    """Return a mount fd; with OPEN_TREE_CLONE a detached copy that the caller owns."""
    return _check(
        int(
            _libc.syscall(
                ctypes.c_long(_SYS_OPEN_TREE),
                ctypes.c_long(dirfd),
                ctypes.c_char_p(_path(path)),
                ctypes.c_ulong(flags),
            )
        ),
        "open_tree",
        path,
    )


def move_mount(from_dirfd: int, from_path: str, to_dirfd: int, to_path: str, flags: int) -> None:
    _check(
        int(
            _libc.syscall(
                ctypes.c_long(_SYS_MOVE_MOUNT),
                ctypes.c_long(from_dirfd),
                ctypes.c_char_p(_path(from_path)),
                ctypes.c_long(to_dirfd),
                ctypes.c_char_p(_path(to_path)),
                ctypes.c_ulong(flags),
            )
        ),
        "move_mount",
        to_path or None,
    )


def openat2(dirfd: int, path: str, flags: int, mode: int = 0, resolve: int = 0) -> int:
    how = _OpenHow(flags, mode, resolve)
    return _check(
        int(
            _libc.syscall(
                ctypes.c_long(_SYS_OPENAT2),
                ctypes.c_long(dirfd),
                ctypes.c_char_p(_path(path)),
                ctypes.byref(how),
                ctypes.c_size_t(ctypes.sizeof(how)),
            )
        ),
        "openat2",
        path,
    )


def mount_setattr(
    dirfd: int,
    path: str,
    flags: int,
    *,
    attr_set: int = 0,
    attr_clr: int = 0,
    propagation: int = 0,
) -> None:
    attr = _MountAttr(attr_set, attr_clr, propagation, 0)
    _check(
        int(
            _libc.syscall(
                ctypes.c_long(_SYS_MOUNT_SETATTR),
                ctypes.c_long(dirfd),
                ctypes.c_char_p(_path(path)),
                ctypes.c_uint(flags),
                ctypes.byref(attr),
                ctypes.c_size_t(ctypes.sizeof(attr)),
            )
        ),
        "mount_setattr",
        path or None,
    )


def umount2(path: str, flags: int) -> None:
    _check(int(_libc.umount2(_path(path), flags)), "umount2", path)
