"""IDs as handles (issue 14, item 4), on a real broker and kernel: a link named by its ID
survives renames, and an ID of another zone's link answers exactly as one never handed out."""

from __future__ import annotations

import random
from typing import Any

from broker._errors import InvalidParameter, LinkNotFound
from tests.conftest import BrokerProcess


def _unused_id(broker: BrokerProcess) -> int:
    """An ID no link has (IDs are handed out under a keyed permutation: any small number
    not in use will do)."""
    with broker.client() as gz:
        taken = {lk.id for lk in gz.list_links()}
    return random.choice([i for i in range(1, 10_000) if i not in taken])


def test_a_link_is_found_by_its_id_through_renames_and_only_where_it_is(
        broker: BrokerProcess, netns: Any, zone_caller: Any, names: Any) -> None:
    red, blue = netns("idred"), netns("idblue")
    a, b, renamed = names.link("a"), names.link("b"), names.link("n")
    with broker.client() as gz:
        gz.boot_zone("red", netns=red)
        gz.boot_zone("blue", netns=blue)
    cred, cblue = zone_caller(red), zone_caller(blue)
    made = cred.call("CreateLink", link={"name": a, "class": "veth", "peer": b})["link"]
    link_id = made["id"]

    moved = cred.call("RenameLink", id=link_id, new_name=renamed)["link"]
    assert (moved["id"], moved["name"]) == (link_id, renamed)
    assert cred.call("GetLink", id=link_id)["link"]["name"] == renamed
    assert cred.call("SetLinkProperties", id=link_id, mtu=1400)["link"]["mtu"] == 1400
    assert cred.call("GetLinkStatistics", id=link_id)["statistics"]["link"] == renamed

    # Blue asking for red's link by ID: the very answer for an ID nobody was given.
    with broker.client() as gz:
        assert gz.get_link(link_id=link_id).zone == "red"  # global: any zone, no `zone`
    ghost = _unused_id(broker)
    for method in ("GetLink", "DeleteLink", "GetLinkStatistics", "SetLinkProperties"):
        extra = {"mtu": 1300} if method == "SetLinkProperties" else {}
        theirs = cblue.raw(method, id=link_id, **extra)
        nobodys = cblue.raw(method, id=ghost, **extra)
        assert "error" in theirs, theirs
        assert str(theirs).replace(f"#{link_id}", "#G") == \
            str(nobodys).replace(f"#{ghost}", "#G"), (theirs, nobodys)
    assert cred.call("GetLink", id=link_id)["link"]["mtu"] == 1400  # untouched by blue

    for params, wrong in (({"name": renamed, "id": link_id}, "id"), ({}, "name")):
        try:
            cred.call("GetLink", **params)
        except InvalidParameter as exc:
            assert exc == InvalidParameter(wrong)
        else:
            raise AssertionError(f"GetLink({params}) was answered")

    cred.call("DeleteLink", id=link_id)
    try:
        cred.call("GetLink", id=link_id)
    except LinkNotFound as exc:
        assert exc == LinkNotFound(f"#{link_id}")
    else:
        raise AssertionError("the deleted link is still found by its ID")
    with broker.client() as gz:
        assert link_id not in {lk.id for lk in gz.list_links()}
        gz.halt_zone("red")
        gz.halt_zone("blue")


def test_addresses_and_routes_take_the_link_by_id_too(
        broker: BrokerProcess, netns: Any, zone_caller: Any, names: Any) -> None:
    red, blue = netns("idared"), netns("idablue")
    a, b = names.link("a"), names.link("b")
    with broker.client() as gz:
        gz.boot_zone("red", netns=red)
        gz.boot_zone("blue", netns=blue)
    cred, cblue = zone_caller(red), zone_caller(blue)
    link_id = cred.call("CreateLink", link={"name": a, "class": "veth", "peer": b,
                                             "up": True})["link"]["id"]
    added = cred.call("AddAddress", link_id=link_id, address="198.51.100.7/24")["address"]
    assert (added["link"], added["link_id"]) == (a, link_id)
    listed = cred.call("ListAddresses", link_id=link_id)["addresses"]
    assert [x["address"] for x in listed if x["family"] == "inet"] == ["198.51.100.7/24"]
    route = cred.call("AddRoute", destination="203.0.113.0/24", gateway="198.51.100.1",
                      link_id=link_id)["route"]
    assert route["link"] == a
    cred.call("RemoveRoute", destination="203.0.113.0/24", link_id=link_id)
    # Blue naming red's link by ID: the answer for an ID nobody was given.
    ghost = _unused_id(broker)
    theirs = cblue.raw("AddAddress", link_id=link_id, address="198.51.100.8/24")
    nobodys = cblue.raw("AddAddress", link_id=ghost, address="198.51.100.8/24")
    assert "error" in theirs
    assert str(theirs).replace(f"#{link_id}", "#G") == str(nobodys).replace(f"#{ghost}", "#G")
    both = cred.raw("RemoveAddress", link=a, link_id=link_id, address="198.51.100.7/24")
    assert both["parameters"] == {"parameter": "link_id"}, both
    cred.call("RemoveAddress", link_id=link_id, address="198.51.100.7/24")
    with broker.client() as gz:
        gz.halt_zone("red")
        gz.halt_zone("blue")
