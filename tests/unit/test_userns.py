"""broker._userns: the uid_map arithmetic and the decision as tables (real namespaces:
tests/test_userns_kernel.py)."""

from __future__ import annotations

import pytest

from broker._userns import NsFacts, _status_euid, decide, host_uid_to_ns, is_zone_root

# --- host_uid_to_ns ------------------------------------------------------------------------------

ROOTLESS = "         0     100000      65536\n"  # a typical rootless container
SINGLE = "         0      65534          1\n"  # unshare --map-root-user as uid 65534
IDENTITY = "         0          0 4294967295\n"  # the host's own user namespace
SPLIT = "0 1000 1\n1 100000 999\n1000 1000000 10\n"


@pytest.mark.parametrize(
    ("host_uid", "uid_map", "expected"),
    [
        (100000, ROOTLESS, 0),
        (100001, ROOTLESS, 1),
        (165535, ROOTLESS, 65535),
        (165536, ROOTLESS, None),  # just past the range
        (99999, ROOTLESS, None),  # just before it
        (65534, SINGLE, 0),
        (65535, SINGLE, None),
        (0, SINGLE, None),
        (1000, IDENTITY, 1000),
        (0, IDENTITY, 0),
        (1000, SPLIT, 0),
        (100000, SPLIT, 1),
        (100998, SPLIT, 999),
        (100999, SPLIT, None),
        (1000009, SPLIT, 1009),
        (1000, "", None),  # no map written yet: nobody is mapped
        (1000, "\n", None),
    ],
)
def test_host_uid_to_ns(host_uid: int, uid_map: str, expected: int | None) -> None:
    assert host_uid_to_ns(host_uid, uid_map) == expected


@pytest.mark.parametrize(
    "uid_map", ["0 1000\n", "0 1000 1 2\n", "zero 1000 1\n", "0 -1000 1\n", "0 1000 1.5\n"]
)
def test_host_uid_to_ns_refuses_malformed(uid_map: str) -> None:
    with pytest.raises(ValueError):
        host_uid_to_ns(1000, uid_map)


# --- decide --------------------------------------------------------------------------------------

HOST = (4, 4026531837)
CHILD = (4, 4026532219)
OTHER = (4, 4026532220)


def facts(
    caller: tuple[int, int] = CHILD,
    owner: tuple[int, int] = CHILD,
    uid_map: str = SINGLE,
    euid: int = 65534,
) -> NsFacts:
    return NsFacts(
        host_userns=HOST, caller_userns=caller, netns_owner=owner, uid_map=uid_map, euid=euid
    )


@pytest.mark.parametrize(
    ("host_uid", "given", "expected"),
    [
        # root of a user namespace that owns the caller's network namespace
        (65534, facts(), True),
        (100000, facts(uid_map=ROOTLESS, euid=100000), True),
        # host root, whatever the rest says
        (0, facts(caller=HOST, owner=HOST, uid_map=IDENTITY, euid=0), True),
        (0, facts(uid_map="garbage"), True),
        # not uid 0 inside
        (100001, facts(uid_map=ROOTLESS, euid=100001), False),
        (65534, facts(uid_map=""), False),  # unmapped
        # root inside, but the namespace does not own the network namespace
        (65534, facts(owner=HOST), False),
        (65534, facts(owner=OTHER), False),
        # the host's own user namespace: only host uid 0 is root there
        (1000, facts(caller=HOST, owner=HOST, uid_map=IDENTITY, euid=1000), False),
        (1000, facts(caller=HOST, owner=HOST, uid_map="0 1000 1\n", euid=1000), False),
        # the process is no longer the caller SO_PEERCRED described
        (65534, facts(euid=65533), False),
        # unreadable map: fail closed
        (65534, facts(uid_map="0 65534\n"), False),
    ],
)
def test_decide(host_uid: int, given: NsFacts, expected: bool) -> None:
    assert decide(host_uid, given) is expected


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ("Name:\tsleep\nUid:\t65534\t65534\t65534\t65534\nGid:\t0\t0\t0\t0\n", 65534),
        ("Uid:\t1000\t0\t0\t0\n", 0),  # effective, not real
    ],
)
def test_status_euid(status: str, expected: int) -> None:
    assert _status_euid(status) == expected


@pytest.mark.parametrize("status", ["Name:\tx\n", "Uid:\t1000\n", "Uid:\ta\tb\tc\td\n"])
def test_status_euid_refuses_malformed(status: str) -> None:
    with pytest.raises(ValueError):
        _status_euid(status)


NOBODY = 65534


def test_missing_process_is_not_root() -> None:
    with open("/proc/sys/kernel/pid_max") as f:
        beyond = int(f.read()) + 1  # no process can have this pid
    assert not is_zone_root(beyond, NOBODY)
    assert is_zone_root(beyond, 0)  # host root needs no /proc
