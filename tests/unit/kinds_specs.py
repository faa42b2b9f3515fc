"""Specs for the kind tests: what each class needs, a valid value for every field, and the
three verdicts a spec can get (accepted with its request, refused naming a parameter)."""

from __future__ import annotations

from typing import Any, cast

import pytest

from broker._errors import InvalidParameter
from broker._types import CreatableClass, LinkSpec
from broker.kinds import KINDS, CreateRequest, Resolved

CREATABLE = ("veth", "bridge", "macvlan", "macvtap", "vxlan", "tap", "vlan", "ipvlan", "bond",
             "dummy", "gre", "ipip", "wireguard", "geneve")

# What each class needs to be valid at all.
REQUIRED: dict[str, dict[str, Any]] = {
    "veth": {"peer": "v1"},
    "bridge": {},
    "macvlan": {"parent": "eth0"},
    "macvtap": {"parent": "eth0"},
    "vxlan": {"vni": 42},
    "tap": {},
    "vlan": {"parent": "eth0", "vid": 10},
    "ipvlan": {"parent": "eth0"},
    "bond": {},
    "dummy": {},
    "gre": {"remote": "192.0.2.1"},
    "ipip": {"remote": "192.0.2.1"},
    "wireguard": {},
    "geneve": {"vni": 7, "remote": "192.0.2.1"},
}
# A valid value for every optional field.
SAMPLE: dict[str, Any] = {
    "peer": "v1", "peer_zone": "red", "parent": "eth0", "mode": "private", "vni": 7,
    "remote": "192.0.2.1", "local": "192.0.2.2", "port": 8472, "uplink": "br0",
    "vid": 20, "protocol": "802.1ad", "miimon": 100, "ttl": 64,
}
# SAMPLE's mode is macvlan's; the classes whose modes are their own.
SAMPLE_MODE = {"ipvlan": "l3s", "bond": "802.3ad"}


def spec(cls: str, **fields: Any) -> LinkSpec:
    """A valid spec of `cls` (its required fields filled in), with `fields` on top."""
    return LinkSpec(name="l0", class_=cast(CreatableClass, cls), **{**REQUIRED[cls], **fields})


def sample(cls: str, field: str) -> Any:
    return SAMPLE_MODE.get(cls, SAMPLE["mode"]) if field == "mode" else SAMPLE[field]


def accepted(cls: str, **fields: Any) -> CreateRequest:
    """The kernel request for a spec the kind must accept (validated, then built)."""
    link = spec(cls, **fields)
    KINDS[cls].validate(link)
    return KINDS[cls].request(link, Resolved(parent_ifindex=3))


def verdict(cls: str, **fields: Any) -> str | None:
    """The parameter validating this spec names, or None when the kind accepts it."""
    try:
        KINDS[cls].validate(spec(cls, **fields))
    except InvalidParameter as exc:
        return exc.parameter
    return None


def refused(cls: str, **fields: Any) -> str:
    """The parameter named by the InvalidParameter that validating this spec raises."""
    with pytest.raises(InvalidParameter) as exc:
        KINDS[cls].validate(spec(cls, **fields))
    return exc.value.parameter
