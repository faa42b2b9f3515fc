"""Issue 12, finding 2: a zone's root names its links with any bytes the kernel takes (all but
'/', ':', whitespace and NUL), and sets aliases with any bytes at all. None of it may break a
reply, an event, the store or start-up, for the zone or for anyone else.

Before the fix, the first `ip link add $'\\xff\\xfe'` in a zone made every ListLinks (global and
zones) close the connection with a UnicodeEncodeError, and linkbrokerd could not start again.
"""

from __future__ import annotations

import subprocess
from typing import Any

import pytest

from broker._linkdump import parse_dump, wire_name
from broker.client import LinkNotFound
from tests.conftest import BrokerProcess, ZoneCaller
from tests.test_monitor import eventually


def ip_bytes(ns: str, *args: bytes) -> None:
    """`ip` inside the zone with raw byte arguments, as the zone's root would run it."""
    subprocess.run([b"ip", b"netns", b"exec", ns.encode(), b"ip", *args], check=True,
                   capture_output=True, timeout=30)


def ifindex_of(ns: str, raw: bytes) -> int:
    out = subprocess.run([b"ip", b"-n", ns.encode(), b"-o", b"link", b"show", b"dev", raw],
                         check=True, capture_output=True, timeout=30).stdout
    return int(out.split(b":", 1)[0])


def test_wire_names() -> None:
    assert wire_name(b"eth0", 2) == "eth0"
    assert wire_name("grün".encode(), 3) == "grün"
    assert wire_name(b"\xff\xfe", 7) == "\\xff\\xfe/7"
    # A real kernel name may be the escaped text itself: the '/' keeps them apart.
    assert wire_name(b"\\xff\\xfe", 8) == "\\xff\\xfe"
    assert wire_name(b"a\\\xff", 9) == "a\\\\\\xff/9"
    assert wire_name(b"\xed\xa0\x80", 4) == "\\xed\\xa0\\x80/4"  # an encoded surrogate
    assert wire_name(b"", 5) == "/5"


def _message(ifindex: int, attrs: bytes, seq: int = 1) -> bytes:
    import struct

    body = struct.pack("=BxHiII", 0, 1, ifindex, 1, 0) + attrs
    return struct.pack("=IHHII", 16 + len(body), 16, 2, seq, 0) + body


def _attr(kind: int, value: bytes, length: int | None = None) -> bytes:
    import struct

    n = 4 + len(value) if length is None else length
    return struct.pack("=HH", n, kind) + value + b"\0" * (-len(value) % 4)


def test_the_parser_survives_what_a_zone_can_put_in_a_dump() -> None:
    """Malformed and oversized attributes (a fake datagram: the pure parser alone)."""
    msgs = (
        _message(3, _attr(3, b"\xff\xfe\0") + _attr(4, b"\x01\x02"))  # MTU of 2 bytes
        + _message(4, _attr(3, b"ok\0") + _attr(1, b"\xaa" * 300))  # 300-byte "address"
        + _message(5, _attr(3, b"cut\0") + _attr(4, b"\0\0\0\0", length=400))  # overruns
        + _message(6, _attr(18, _attr(1, b"\xff\xfekind\0")))  # kind bytes, no name
    )
    found: list[Any] = []
    done, interrupted = parse_dump(msgs, 1, found)
    assert not done and not interrupted
    by_index = {k.ifindex: k for k in found}
    assert by_index[3].name == "\\xff\\xfe/3" and by_index[3].mtu is None
    assert by_index[4].name == "ok" and by_index[4].mac is None
    assert by_index[5].name == "cut" and by_index[5].mtu is None
    assert by_index[6].name == "/6" and by_index[6].kind is not None
    # A message cut short inside the datagram ends it, nothing raised.
    assert parse_dump(msgs[:-7], 1, []) == (False, False)


ODD = {
    "ff": b"\xff\xfe",
    "long": b"\xff" * 15,  # the longest name, every byte invalid
    "esc": b"\\xff\\xfe",  # ASCII: the text an escaping scheme without '/' would produce
    "ctl": b"a\x1b[31m",  # a terminal escape, valid UTF-8
    "sur": b"\xed\xb0\x81",  # a UTF-16 surrogate encoded in UTF-8: not UTF-8
}


def test_a_zone_naming_links_with_any_bytes_breaks_nobody(
        broker: BrokerProcess, netns: Any, zone_caller: Any) -> None:
    ns, other_ns = netns("odd"), netns("calm")
    with broker.client() as gz:
        gz.boot_zone("odd", netns=ns)
        gz.boot_zone("calm", netns=other_ns)
    for raw in ODD.values():
        ip_bytes(ns, b"link", b"add", raw, b"type", b"bridge")
    ip_bytes(ns, b"link", b"set", b"dev", ODD["esc"], b"alias", b"\xff\x01\xfe" * 80)
    index = {key: ifindex_of(ns, raw) for key, raw in ODD.items()}
    expected = {
        "ff": f"\\xff\\xfe/{index['ff']}",
        "long": "\\xff" * 15 + f"/{index['long']}",
        "esc": "\\xff\\xfe",
        "ctl": "a\x1b[31m",
        "sur": f"\\xed\\xb0\\x81/{index['sur']}",
    }
    zone: ZoneCaller = zone_caller(ns)
    calm: ZoneCaller = zone_caller(other_ns)

    def zone_names() -> set[str]:
        return {link["name"] for link in zone.call("ListLinks")["links"]}

    assert eventually(lambda: set(expected.values()) <= zone_names(), 5.0)
    with broker.client() as gz:
        seen = {link.name: link for link in gz.list_links("odd")}
        assert set(expected.values()) <= set(seen)
        assert seen[expected["ff"]].ifindex == index["ff"]
        assert all(link.zone == "global" for link in gz.list_links("global"))
        assert calm.call("ListLinks")["links"] == []
        assert calm.call("WhoAmI")["zone"] == "calm"
        # The wire name is a name: the zone reads, renames and deletes by it.
        assert zone.call("GetLink", name=expected["ff"])["link"]["ifindex"] == index["ff"]
        zone.call("RenameLink", name=expected["long"], new_name="tidy")
        zone.call("DeleteLink", name=expected["sur"])
        with pytest.raises(LinkNotFound):
            zone.call("GetLink", name=expected["sur"])

    # Start-up with such links in the kernel and in the store.
    broker.stop()
    broker.start()
    with broker.client() as gz:
        names = {link.name for link in gz.list_links("odd")}
        assert {expected["ff"], expected["esc"], expected["ctl"], "tidy"} <= names
        assert expected["sur"] not in names
        assert len(gz.list_links()) >= len(names)
    assert "Traceback" not in broker.log()
