"""Old clients keep working when the broker grows: a reply with fields, link classes, zone
kinds or event kinds a client does not know still decodes, while requests stay strict."""

from __future__ import annotations

import msgspec
import pytest

from broker._params import CreateLinkParams
from broker._types import Event, Link, LinksReply, Zone

NEWER_LINK = {"id": 7, "name": "v0", "class": "vlan", "zone": "red", "owner": "red",
              "onloan": False, "persistent": True, "state": "dormant", "kind": "vlan",
              "vlan_id": 10, "future": {"nested": [1, 2]}}


def test_a_link_from_a_newer_broker_decodes() -> None:
    link = msgspec.convert(NEWER_LINK, Link)
    assert (link.name, link.class_, link.state) == ("v0", "vlan", "dormant")
    reply = msgspec.json.decode(msgspec.json.encode({"links": [NEWER_LINK]}), type=LinksReply)
    assert reply.links[0].id == 7


def test_zones_and_events_of_new_kinds_decode() -> None:
    zone = msgspec.convert({"name": "c1", "kind": "cni", "netns_inode": 1, "attached": False,
                            "links": [], "runtime": "podman"}, Zone)
    assert zone.kind == "cni"
    event = msgspec.convert({"kind": "link_stats", "zone": "c1", "seq": 3, "extra": 1}, Event)
    assert event.kind == "link_stats"


def test_requests_still_refuse_what_they_do_not_know() -> None:
    with pytest.raises(msgspec.ValidationError, match="unknown field"):
        msgspec.convert({"link": {"name": "x", "class": "bridge", "colour": "red"}},
                        CreateLinkParams)
