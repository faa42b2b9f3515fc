"""Opt-in Prometheus metrics of a real broker: every call the test makes is counted under its
method and outcome, gauges follow the tables, limits and drift are counted, and nothing
listens for metrics unless asked."""

from __future__ import annotations

import collections
import contextlib
import os
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from broker.client import KernelError, LimitExceeded, LinkNotFound, LinkSpec
from tests.conftest import BrokerProcess, host_links, run

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: str) -> Samples:
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def scrape_unix(path: str) -> Samples:
    out = subprocess.run(["curl", "-sS", "--fail", "--unix-socket", path,
                          "http://localhost/metrics"], capture_output=True, text=True,
                         timeout=30, check=True)
    return parse(out.stdout)


def with_name(samples: Samples, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {labels: v for (n, labels), v in samples.items() if n == name}


@contextlib.contextmanager
def started(tmp_path: Path, *args: str) -> Iterator[BrokerProcess]:
    proc = BrokerProcess(tmp_path, extra_args=list(args))
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture
def cleanup_links(prefix: str) -> Iterator[None]:
    before = host_links()
    yield
    for name in host_links() - before:
        if name.startswith(prefix):
            run("ip", "link", "del", name, check=False)


def test_counters_match_the_calls_made(tmp_path: Path, netns: Any, names: Any,
                                       cleanup_links: None) -> None:
    metrics = str(tmp_path / "metrics.sock")
    made: collections.Counter[tuple[str, str]] = collections.Counter()
    with started(tmp_path, "--metrics", f"unix:{metrics}",
                 "--max-connections-per-zone", "3") as broker, broker.client() as gz:
        assert os.stat(metrics).st_mode & 0o777 == 0o600
        for _ in range(5):
            gz.who_am_i()
        made["WhoAmI", "ok"] += 5
        for _ in range(3):
            with pytest.raises(LinkNotFound):
                gz.get_link(names.link("nope"))
        made["GetLink", "LinkNotFound"] += 3
        gz.boot_zone("red", netns=netns("red"))
        made["BootZone", "ok"] += 1
        veth, macvlan = names.link("v"), names.link("m")
        gz.create_link(LinkSpec(name=veth, class_="veth", peer=names.link("p"), zone="red"))
        gz.create_link(LinkSpec(name=macvlan, class_="macvlan", parent=veth, mode="bridge",
                                zone="red"))
        made["CreateLink", "ok"] += 2
        with pytest.raises(KernelError):  # a macvlan's MTU may not exceed its lower link's
            gz.set_link_properties(macvlan, "red", mtu=9000)
        made["SetLinkProperties", "KernelError"] += 1

        # Drift: a link made behind the broker's back, seen by its monitor.
        time.sleep(0.5)  # the monitors' resyncs after the broker's own changes have run
        drift_before = scrape_unix(metrics)[("linkbroker_reconcile_drift_events_total", ())]
        outside = names.link("out")
        run("ip", "link", "add", outside, "type", "bridge")
        deadline = time.monotonic() + 10
        while outside not in [link.name for link in gz.list_links("global")]:
            made["ListLinks", "ok"] += 1
            assert time.monotonic() < deadline
            time.sleep(0.05)
        made["ListLinks", "ok"] += 1

        # Connection limit: this client plus two more fill the global zone's 3 slots.
        extra = [broker.client(), broker.client()]
        try:
            extra[0].who_am_i()
            extra[1].who_am_i()
            made["WhoAmI", "ok"] += 2
            with broker.client() as refused, pytest.raises(LimitExceeded):
                refused.who_am_i()
            links = gz.list_links()
            made["ListLinks", "ok"] += 1
            samples = scrape_unix(metrics)
            open_now = samples[("linkbroker_connections", ())]
        finally:
            for c in extra:
                c.close()
        run("ip", "link", "del", outside)

    calls = {(dict(k)["method"], dict(k)["outcome"]): v
             for k, v in with_name(samples, "linkbroker_calls_total").items()}
    assert calls == made
    latency = with_name(samples, "linkbroker_call_duration_seconds_count")
    assert latency[(("method", "WhoAmI"),)] == made["WhoAmI", "ok"]
    assert samples[("linkbroker_netlink_errors_total", ())] == 1
    assert samples[("linkbroker_reconcile_drift_events_total", ())] >= drift_before + 1
    assert with_name(samples, "linkbroker_connection_rejections_total") == {
        (("limit", "per_zone"),): 1}
    assert open_now == 3
    by_class = collections.Counter(link.class_ for link in links)
    assert {dict(k)["class"]: v for k, v in with_name(samples, "linkbroker_links").items()} \
        == by_class
    assert {dict(k)["kind"]: v for k, v in with_name(samples, "linkbroker_zones").items()} \
        == {"global": 1, "netns": 1}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def test_tcp_endpoint_and_paths(tmp_path: Path) -> None:
    port = free_port()
    with started(tmp_path, "--metrics", f"127.0.0.1:{port}") as broker:
        with broker.client() as gz:
            gz.who_am_i()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
            assert r.headers["Content-Type"].startswith("text/plain; version=")
            samples = parse(r.read().decode())
        assert samples[("linkbroker_calls_total",
                        (("method", "WhoAmI"), ("outcome", "ok")))] == 1
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/other", timeout=10)
        assert err.value.code == 404


def listening_sockets(pid: int) -> tuple[list[str], list[str]]:
    """(unix paths, tcp local addresses) the process listens on."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    unix, tcp = [], []
    with open("/proc/net/unix") as f:
        for line in f.readlines()[1:]:
            cols = line.split()
            if cols[6] in inodes and int(cols[3], 16) & 0x10000:  # __SO_ACCEPTCON
                unix.append(cols[7] if len(cols) > 7 else "")
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            for line in f.readlines()[1:]:
                cols = line.split()
                if cols[9] in inodes and cols[3] == "0A":  # LISTEN
                    tcp.append(cols[1])
    return unix, tcp


def test_metrics_are_off_by_default(broker: BrokerProcess, tmp_path: Path) -> None:
    assert broker.proc is not None
    assert listening_sockets(broker.proc.pid) == ([broker.socket], [])
    (tmp_path / "on").mkdir()
    with started(tmp_path / "on", "--metrics", f"unix:{tmp_path}/m.sock") as other:
        assert other.proc is not None  # the check above sees a metrics listener when asked
        assert sorted(listening_sockets(other.proc.pid)[0]) == sorted(
            [other.socket, f"{tmp_path}/m.sock"])
