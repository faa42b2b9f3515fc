"""sd_notify and sd_listen_fds parsing: which environments mean "send" or "serve", and that
the variables never leak to the helpers the broker spawns."""

from __future__ import annotations

import os
import socket

import pytest

from broker._activation import ActivationError, listen_fds
from broker._sdnotify import Notifier


def test_abstract_notify_socket_and_fields() -> None:
    name = f"lbt-notify-{os.getpid()}"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind("\0" + name)
    server.settimeout(5)
    env = {"NOTIFY_SOCKET": "@" + name, "WATCHDOG_USEC": "2000000", "OTHER": "x"}
    notifier = Notifier(env)
    try:
        assert env == {"OTHER": "x"}  # nothing for child processes to inherit
        assert notifier.watchdog_usec == 2_000_000
        notifier.ready("serving 1 zones, 0 links")
        assert server.recv(4096) == b"READY=1\nSTATUS=serving 1 zones, 0 links"
        notifier.reloading()
        fields = server.recv(4096).decode().split("\n")
        assert fields[0] == "RELOADING=1" and fields[1].startswith("MONOTONIC_USEC=")
        assert int(fields[1].split("=")[1]) > 0
        notifier.stopping()
        assert server.recv(4096) == b"STOPPING=1\nSTATUS=stopping"
    finally:
        notifier.close()
        server.close()


def test_without_notify_socket_nothing_is_sent() -> None:
    notifier = Notifier({"WATCHDOG_USEC": "1000"})
    assert not notifier.enabled and not notifier.notify("READY=1")


def test_watchdog_meant_for_another_pid_is_ignored() -> None:
    env = {"NOTIFY_SOCKET": "/nonexistent", "WATCHDOG_USEC": "1000",
           "WATCHDOG_PID": str(os.getpid() + 1)}
    notifier = Notifier(env)
    assert notifier.watchdog_usec == 0
    assert not notifier.notify("READY=1")  # an unreachable socket is logged, not raised
    notifier.close()


def test_listen_fds_for_another_process_are_not_ours() -> None:
    env = {"LISTEN_PID": str(os.getpid() + 1), "LISTEN_FDS": "1", "LISTEN_FDNAMES": "x"}
    assert listen_fds(env) == []
    assert env == {}  # removed all the same


def test_listen_fds_absent_and_malformed() -> None:
    assert listen_fds({}) == []
    with pytest.raises(ActivationError, match="not numbers"):
        listen_fds({"LISTEN_PID": str(os.getpid()), "LISTEN_FDS": "one"})
    with pytest.raises(ActivationError, match="negative"):
        listen_fds({"LISTEN_PID": str(os.getpid()), "LISTEN_FDS": "-1"})
