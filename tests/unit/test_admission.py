"""broker._admission, pure: connections counted per booted zone, a shared budget for
namespaces that are no zone, one refusal wording for zones, unfinished-frame bytes per zone."""

from __future__ import annotations

from broker._admission import UNREGISTERED, Admission, Limits
from broker._errors import LimitExceeded

LIMITS = Limits(max_connections=10, max_connections_per_zone=3, max_unregistered=2,
                partial_bytes_per_zone=100)


def test_each_zone_has_its_share_and_gets_slots_back() -> None:
    adm = Admission(LIMITS)
    assert [adm.admit("red", n) for n in range(3)] == [None, None, None]
    assert adm.admit("red", 3) == (LimitExceeded("connections", 3), "per_zone")
    assert adm.admit("blue", 4) is None  # another zone still gets in
    adm.release("red")
    assert adm.admit("red", 4) is None


def test_namespaces_that_are_no_zone_share_one_small_budget() -> None:
    adm = Admission(LIMITS)
    assert adm.admit(UNREGISTERED, 0) is None and adm.admit(UNREGISTERED, 1) is None
    assert adm.admit(UNREGISTERED, 2) == (LimitExceeded("connections", 2), "unregistered")
    assert adm.admit("red", 2) is None


def test_a_zone_cannot_tell_the_total_from_its_share_but_the_global_zone_can() -> None:
    adm = Admission(LIMITS)
    assert adm.admit("red", 11) == (LimitExceeded("connections", 3), "total")
    assert adm.admit("global", 11) == (LimitExceeded("connections", 10), "total")
    for n in range(3):
        assert adm.admit("global", n) is None
    assert adm.admit("global", 3) == (LimitExceeded("connections from this zone", 3),
                                      "per_zone")


def test_unfinished_frame_bytes_are_bounded_per_zone() -> None:
    adm = Admission(LIMITS)
    assert adm.hold_partial("red", 0, 60)
    assert adm.hold_partial("blue", 0, 90)  # zones do not share the bound
    assert not adm.hold_partial("red", 0, 50)  # a second connection of red: 110 > 100
    adm.hold_partial("red", 50, 0)  # that connection closes
    assert adm.hold_partial("red", 60, 100)  # the first grows to the whole bound
    adm.hold_partial("red", 100, 0)
    assert adm.hold_partial("red", 0, 100)
