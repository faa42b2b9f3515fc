"""The kinds' traits (issue 16): what the service asks of a class instead of naming it.

The table below is every kind's value of every trait, written out, so a trait changed in a
kind module (or a kind added without deciding its traits) fails here, not in a zone. The sets
the service used to write out by hand (NETNS_LOCAL, MASTER_CLASSES) are derived from the
traits and held equal to the old literals, so replacing them changed no behaviour. And the
lookup `KINDS[link.cls]` is safe: every class a table row can have is a key of KINDS.
"""

from __future__ import annotations

import typing
from typing import get_args

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from broker import _linkprops
from broker._table import LinkRecord
from broker._types import LinkClass
from broker.kinds import KINDS, LinkKind, classify

TRAITS = ("creatable", "movable", "lendable", "paired", "master", "port", "host_chardev")
# class: creatable, movable, lendable, paired, master, port, host_chardev
EXPECTED: dict[str, tuple[bool, ...]] = {
    "phys":      (False, True, True, False, False, True, False),
    "veth":      (True, True, True, True, False, True, False),
    "bridge":    (True, False, True, False, True, False, False),
    "macvlan":   (True, True, True, False, False, True, False),
    "macvtap":   (True, True, True, False, False, True, True),
    "vxlan":     (True, True, True, False, False, True, False),
    "tap":       (True, True, True, False, False, True, False),
    "vlan":      (True, True, True, False, False, True, False),
    "ipvlan":    (True, True, True, False, False, True, False),
    "bond":      (True, True, True, False, True, True, False),
    "dummy":     (True, True, True, False, False, True, False),
    "gre":       (True, True, True, False, False, True, False),
    "ipip":      (True, True, True, False, False, True, False),
    "wireguard": (True, True, True, False, False, True, False),
    "geneve":    (True, True, True, False, False, True, False),
    "other":     (False, True, False, False, False, True, False),
}


def where(trait: str, value: bool = True) -> set[str]:
    return {cls for cls, kind in KINDS.items() if getattr(kind, trait) is value}


@pytest.mark.parametrize("cls", sorted(EXPECTED))
def test_each_kinds_traits(cls: str) -> None:
    kind = KINDS[cls]
    assert {t: getattr(kind, t) for t in TRAITS} == dict(zip(TRAITS, EXPECTED[cls], strict=True))


def test_the_table_covers_every_kind_and_every_trait() -> None:
    assert set(EXPECTED) == set(KINDS)
    declared = {name for name, hint in typing.get_type_hints(LinkKind).items()
                if hint == typing.ClassVar[bool]}
    assert declared == set(TRAITS)


def test_derived_sets_are_the_old_literal_ones() -> None:
    """What broker._service wrote out before the traits: NETNS_LOCAL, MASTER_CLASSES; and
    the single classes the service named (other never lent, veth paired, macvtap capped)."""
    assert where("movable", False) == {"bridge"}
    assert where("master") == {"bridge", "bond"}
    assert where("lendable", False) == {"other"}
    assert where("paired") == {"veth"}
    assert where("host_chardev") == {"macvtap"}
    assert where("creatable", False) == {"phys", "other"}
    # row_from_kernel keeps the kernel's kind string where the class does not say it.
    assert {cls for cls, kind in KINDS.items() if kind.kernel_kind is None} == {"phys", "other"}


def test_the_property_tables_port_classes_are_the_port_kinds() -> None:
    """broker._linkprops is pure (the clients read it) and cannot import the kinds: its
    list of classes the `master` property applies to is written out, held equal here."""
    assert where("port") == _linkprops._PORTS
    assert {cls for cls in KINDS if _linkprops.applies("master", cls)} == where("port")


def test_every_class_a_row_can_have_is_a_kind() -> None:
    """`KINDS[link.cls]` cannot miss: a row's class is a LinkClass, every LinkClass is a
    kind, and the store refuses a row of any other class when it loads it."""
    assert typing.get_type_hints(LinkRecord)["cls"] == LinkClass
    assert set(get_args(LinkClass)) == set(KINDS)
    row = LinkRecord(id=1, name="x", cls="veth", zone="global", owner="global")
    body = msgspec.msgpack.encode(row)
    assert msgspec.msgpack.decode(body, type=LinkRecord).cls == "veth"
    bad = msgspec.msgpack.encode({**msgspec.to_builtins(row), "cls": "ifb"})
    with pytest.raises(msgspec.ValidationError):
        msgspec.msgpack.decode(bad, type=LinkRecord)


@given(st.one_of(st.none(), st.text(max_size=16)), st.booleans())
def test_classify_names_only_kinds(kernel_kind: str | None, tun_tap: bool) -> None:
    assert classify(kernel_kind, tun_tap) in KINDS
