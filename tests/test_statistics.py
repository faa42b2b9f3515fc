"""GetLinkStatistics and linkadm show-link -s (issue 14, item 3), on a real kernel: counters
of real traffic between two zones, seen only where the link is."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from broker._statistics import statistics_in
from broker.client import LinkSpec
from tests.conftest import BrokerProcess, run

_SEND = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for _ in range(int(sys.argv[2])):
    s.sendto(b"x" * 100, (sys.argv[1], 9))
"""


@pytest.fixture
def pair(broker: BrokerProcess, netns: Any, zone_caller: Any, names: Any
         ) -> Iterator[dict[str, Any]]:
    """Zones red and blue joined by a veth (198.51.100.1 and .2), and a caller in each."""
    red, blue = netns("red"), netns("blue")
    r, b = names.link("r"), names.link("b")
    with broker.client() as gz:
        gz.boot_zone("red", netns=red)
        gz.boot_zone("blue", netns=blue)
        gz.create_link(LinkSpec(name=r, class_="veth", zone="red", peer=b, peer_zone="blue",
                                up=True))
        gz.set_link_properties(b, "blue", up=True)
        gz.add_address(r, "198.51.100.1/24", "red")
        gz.add_address(b, "198.51.100.2/24", "blue")
    yield {"red": red, "blue": blue, "r": r, "b": b,
           "cred": zone_caller(red), "cblue": zone_caller(blue)}


def test_counters_follow_real_traffic_and_stay_where_the_link_is(
        broker: BrokerProcess, pair: dict[str, Any]) -> None:
    red, r, b = pair["red"], pair["r"], pair["b"]
    cred, cblue = pair["cred"], pair["cblue"]
    before = cred.call("GetLinkStatistics", name=r)["statistics"]
    run("ip", "netns", "exec", red, sys.executable, "-c", _SEND, "198.51.100.2", "50")
    after = cred.call("GetLinkStatistics", name=r)["statistics"]
    assert after["link"] == r and after["zone"] == "red"
    assert after["tx_packets"] - before["tx_packets"] >= 50
    assert after["tx_bytes"] - before["tx_bytes"] >= 50 * 128  # 100 B payload + headers
    received = cblue.call("GetLinkStatistics", name=b)["statistics"]
    assert received["rx_packets"] >= 50
    # The kernel's own count, read after ours (ip -s reads the same struct): never less.
    shown = run("ip", "-n", red, "-s", "-j", "link", "show", "dev", r).stdout
    assert after["tx_packets"] <= _tx_packets(shown) <= after["tx_packets"] + 5
    # Red asking for blue's end answers exactly as for a name that does not exist.
    foreign = cred.raw("GetLinkStatistics", name=b)
    missing = cred.raw("GetLinkStatistics", name="lbnosuchlink")
    assert "error" in foreign
    assert str(foreign).replace(b, "X") == str(missing).replace("lbnosuchlink", "X")
    # The global zone reads any zone's link by naming the zone.
    with broker.client() as gz:
        seen = gz.link_statistics(r, "red")
    assert seen.link_id == after["link_id"] and seen.tx_packets >= after["tx_packets"]


def _tx_packets(ip_json: str) -> int:
    return int(json.loads(ip_json)[0]["stats64"]["tx"]["packets"])


def test_linkadm_show_link_s_prints_dladm_columns_and_refuses_i_alone(
        broker: BrokerProcess, pair: dict[str, Any]) -> None:
    red, r = pair["red"], pair["r"]
    run("ip", "netns", "exec", red, sys.executable, "-c", _SEND, "198.51.100.2", "20")

    def linkadm(*args: str) -> subprocess.CompletedProcess[str]:
        return run("ip", "netns", "exec", red, sys.executable, "-m", "clients.linkadm",
                   "--socket", broker.socket, *args, check=False)

    table = linkadm("show-link", "-s", r)
    assert table.returncode == 0, table.stderr
    header = table.stdout.splitlines()[0].split()
    assert header == ["LINK", "IPACKETS", "RBYTES", "IERRORS", "OPACKETS", "OBYTES",
                      "OERRORS"]
    line = linkadm("show-link", "-s", "-p", "-o", "link,opackets", r).stdout.strip()
    name, sent = line.split(":")
    assert name == r and int(sent) >= 20
    alone = linkadm("show-link", "-i", "1")
    assert alone.returncode == 2 and "-i goes with -s" in alone.stderr
    zero = linkadm("show-link", "-s", "-i", "0")
    assert zero.returncode == 2 and "positive" in zero.stderr


def test_statistics_parser_reads_stats64_and_nothing_else() -> None:
    """The parser against a message built by hand: the counters come from IFLA_STATS64,
    another attribute of the same size is not taken for it."""
    def attr(kind: int, payload: bytes) -> bytes:
        return struct.pack("=HH", 4 + len(payload), kind) + payload

    counters = struct.pack("=10Q", *range(1, 11)) + b"\0" * 8 * 14
    decoy = attr(7, struct.pack("=10Q", *([99] * 10)))  # IFLA_STATS-sized, another type
    body = struct.pack("=BxHiII", 0, 1, 5, 0, 0) + decoy + attr(23, counters)
    msg = struct.pack("=IHHII", 16 + len(body), 16, 0, 1, 0) + body
    got = statistics_in([msg])
    assert got is not None
    assert (got["rx_packets"], got["tx_packets"], got["rx_bytes"], got["collisions"]) == (
        1, 2, 3, 10)
    assert statistics_in([msg[:16 + 16]]) is None  # no attributes: nothing
