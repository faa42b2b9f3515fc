"""The agent's label scheme (clients.agent.main.parse_labels): no Docker, no broker."""

from __future__ import annotations

import pytest

from clients.agent.main import LabelError, LinkDecl, operator_labels, parse_labels


def test_unlabelled_container_is_no_zone() -> None:
    assert parse_labels({"io.linkbroker.link.eth0": "veth"}) == (None, [])


def test_veth_on_a_bridge_with_address() -> None:
    zone, links = parse_labels({
        "io.linkbroker.zone": "red",
        "io.linkbroker.link.eth0": "veth,bridge=lbbr0,mtu=1400,addr=198.51.100.1/24",
        "io.linkbroker.link.eth1": "veth,host=hostside",
    })
    assert zone == "red"
    assert links == [
        LinkDecl("eth0", "veth", bridge="lbbr0", host="lbred", mtu=1400,
                 addr="198.51.100.1/24"),
        LinkDecl("eth1", "veth", host="hostside"),
    ]


def test_default_host_end_of_a_second_veth() -> None:
    _, links = parse_labels({"io.linkbroker.zone": "z", "io.linkbroker.link.net1": "veth"})
    assert links[0].host == "lbz.net1"


def test_macvlan() -> None:
    _, links = parse_labels({"io.linkbroker.zone": "b",
                             "io.linkbroker.link.mv0": "macvlan,parent=eth0"})
    assert links == [LinkDecl("mv0", "macvlan", parent="eth0", mode="bridge")]


@pytest.mark.parametrize("value", [
    "tap", "veth,bridge", "veth,parent=eth0", "veth,mtu=big", "veth,addr=198.51.100.1",
    "macvlan", "macvlan,parent=eth0,mode=weird", "veth,bridge=waytoolongbridgename",
])
def test_bad_labels(value: str) -> None:
    with pytest.raises(LabelError):
        parse_labels({"io.linkbroker.zone": "red", "io.linkbroker.link.eth0": value})


def test_host_end_too_long_needs_host() -> None:
    with pytest.raises(LabelError, match="host end"):
        parse_labels({"io.linkbroker.zone": "averylongzone1", "io.linkbroker.link.eth0": "veth"})


def test_labels_that_come_with_the_image_are_not_orders() -> None:
    image = {"io.linkbroker.zone": "evil", "io.linkbroker.link.eth0": "veth,host=eth0,bridge=x",
             "org.opencontainers.image.title": "nice"}
    # docker inspect merges the image's labels into the container's.
    assert operator_labels(dict(image), image) == (
        {}, ["io.linkbroker.link.eth0", "io.linkbroker.zone"])


def test_operator_labels_count_even_over_an_image_key() -> None:
    image = {"io.linkbroker.zone": "evil", "io.linkbroker.link.mv0": "macvlan,parent=eth0"}
    container = {**image, "io.linkbroker.zone": "red",  # the operator's value wins
                 "io.linkbroker.link.eth0": "veth,bridge=lbbr0", "other": "x"}
    trusted, ignored = operator_labels(container, image)
    assert trusted == {"io.linkbroker.zone": "red", "io.linkbroker.link.eth0": "veth,bridge=lbbr0"}
    assert ignored == ["io.linkbroker.link.mv0"]
    assert parse_labels(trusted) == ("red", [LinkDecl("eth0", "veth", bridge="lbbr0",
                                                      host="lbred")])
