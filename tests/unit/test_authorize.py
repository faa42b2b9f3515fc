"""Tables for broker._authorize: every method of the dispatch table at the method level, what
callers hold under the default policy and under rules, and every target rule, each with its
exact outcome (allowed, or the PermissionDenied with its method and authorization). Then the
handlers that ask it about a target, in-process over the fake kernel (no root): the same
errors at the same moments, a hidden or missing link answering first."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

import pytest

from broker import _create as creation
from broker import _lending as lending
from broker import _properties as properties
from broker._authorize import (
    Assign,
    Attach,
    Held,
    MethodCall,
    Target,
    UseParent,
    acting_for,
    authorize,
    held,
    permits,
)
from broker._dispatch import METHODS
from broker._errors import LinkbrokerError, LinkNotFound, PermissionDenied
from broker._names import GLOBAL_OWN_VIEW
from broker._params import AssignLinkParams, CreateLinkParams
from broker._policy import AUTHORIZATIONS, DEFAULT_POLICY, Policy, Principal, Rule
from broker._service import Caller
from broker._types import LinkSpec
from tests.unit.test_service_inprocess import GLOBAL as GLOBAL_CALLER
from tests.unit.test_service_inprocess import World

ALL = frozenset(AUTHORIZATIONS)
READ = frozenset({"link.read", "event.read"})
ZROOT = frozenset({"link.read", "link.write", "addr.write", "event.read"})
ASSIGN = "link.assign"

# The contract, written out rather than read back from the table, so a changed entry fails.
READS = {"WhoAmI", "ListZones", "GetZone", "ListLinks", "GetLink", "ListAddresses",
         "ListRoutes", "GetLinkProtection", "GetLinkStatistics", "GetLinkProperties"}
EVENTS = {"Subscribe"}
LINK_WRITES = {"CreateLink", "DeleteLink", "RenameLink", "SetLinkProperties",
               "ResetLinkProperties"}
ADDR_WRITES = {"AddAddress", "RemoveAddress", "AddRoute", "RemoveRoute"}
ASSIGNS = {"AssignLink", "ReclaimLink"}
ZONE_ADMIN = {"BootZone", "HaltZone"}
PROTECT = {"SetLinkProtection"}
GLOBAL_ONLY = ASSIGNS | ZONE_ADMIN

# A policy with one of everything: eth1 assignable, br0 attachable by red, brall by anyone.
POLICY = Policy(assignable_phys=frozenset({"eth1"}),
                attachable_bridges=frozenset({("br0", "red"), ("brall", "*")}))


def outcome(who: Held, method: str, target: Target, policy: Policy = POLICY
            ) -> PermissionDenied | None:
    """None when allowed, else the exact error; `permits` must say the same."""
    try:
        authorize(who, method, target, policy=policy)
    except PermissionDenied as exc:
        assert not permits(who, method, target, policy=policy)
        return exc
    assert permits(who, method, target, policy=policy)
    return None


def denied(method: str, authorization: str) -> PermissionDenied:
    return PermissionDenied(method, authorization)


# --- the method level, every method of the dispatch table ---------------------------------------


def test_the_tables_below_cover_every_method_once() -> None:
    groups = [READS, EVENTS, LINK_WRITES, ADDR_WRITES, ASSIGNS, ZONE_ADMIN, PROTECT]
    assert sum(len(g) for g in groups) == len(METHODS)
    assert set().union(*groups) == set(METHODS)


@pytest.mark.parametrize(("group", "authorization"), [
    (READS, "link.read"), (EVENTS, "event.read"), (LINK_WRITES, "link.write"),
    (ADDR_WRITES, "addr.write"), (ASSIGNS, "link.assign"), (ZONE_ADMIN, "zone.admin"),
    (PROTECT, "link.protect"),
])
def test_each_method_needs_its_authorization(group: set[str], authorization: str) -> None:
    for name in group:
        assert METHODS[name].call == MethodCall(authorization, name in GLOBAL_ONLY), name


@pytest.mark.parametrize("name", sorted(METHODS))
def test_a_caller_holding_everything_but_the_methods_authorization_is_refused(
        name: str) -> None:
    spec = METHODS[name]
    for zone in ("global", "red"):
        lacking = Held(zone, ALL - {spec.authorization})
        assert outcome(lacking, name, spec.call) == denied(name, spec.authorization)
        assert outcome(Held(zone, frozenset()), name, spec.call) == denied(
            name, spec.authorization)
    assert outcome(Held("global", frozenset({spec.authorization})), name, spec.call) is None
    assert outcome(Held("global", ALL), name, spec.call) is None


@pytest.mark.parametrize("name", sorted(METHODS))
def test_global_only_methods_are_refused_outside_the_global_zone(name: str) -> None:
    spec = METHODS[name]
    for zone in ("red", "blue-2"):
        expected = denied(name, spec.authorization) if name in GLOBAL_ONLY else None
        # Whatever the zone holds: the policy cannot hand a zone the host's methods.
        assert outcome(Held(zone, ALL), name, spec.call) == expected
    # The global zone's own view (never holding these: see held) is still the global zone.
    assert outcome(Held(GLOBAL_OWN_VIEW, ALL), name, spec.call) is None


def allowed_methods(who: Principal, policy: Policy = DEFAULT_POLICY) -> set[str]:
    has = held(policy, who)
    return {name for name, spec in METHODS.items()
            if outcome(has, name, spec.call, policy) is None}


@pytest.mark.parametrize(("who", "expected"), [
    (Principal("global", 0, frozenset({0}), zone_root=True, host_admin=True), set(METHODS)),
    (Principal("global", 1000, host_admin=True), set(METHODS)),
    # uid 0 alone administers nothing on the host.
    (Principal("global", 0, frozenset({0}), zone_root=True), READS | EVENTS),
    (Principal("global", 1000), READS | EVENTS),
    (Principal("red", 0, zone_root=True), READS | EVENTS | LINK_WRITES | ADDR_WRITES),
    (Principal("red", 0, zone_root=True, host_admin=True),
     READS | EVENTS | LINK_WRITES | ADDR_WRITES),
    (Principal("red", 101000), READS | EVENTS),
])
def test_what_each_default_caller_may_call(who: Principal, expected: set[str]) -> None:
    assert allowed_methods(who) == expected


def test_a_policy_granting_the_hosts_methods_to_a_zone_still_gives_it_none() -> None:
    policy = Policy(rules=(Rule(grant=ALL, zone="red"),))
    who = Principal("red", 0, zone_root=True)
    assert held(policy, who) == Held("red", ALL)
    assert allowed_methods(who, policy) == set(METHODS) - GLOBAL_ONLY
    assert outcome(held(policy, who), "BootZone", METHODS["BootZone"].call) == denied(
        "BootZone", "zone.admin")


def test_a_revoked_authorization_refuses_its_methods() -> None:
    policy = Policy(rules=(Rule(revoke=frozenset({"addr.write"}), zone="red"),))
    who = Principal("red", 0, zone_root=True)
    assert allowed_methods(who, policy) == READS | EVENTS | LINK_WRITES
    assert outcome(held(policy, who), "AddRoute", METHODS["AddRoute"].call) == denied(
        "AddRoute", "addr.write")


# --- what a caller holds (its view, and the global zone without zone.read) ----------------------


@pytest.mark.parametrize(("policy", "who", "expected"), [
    (DEFAULT_POLICY, Principal("global", 0, zone_root=True, host_admin=True),
     Held("global", ALL)),
    (DEFAULT_POLICY, Principal("global", 0, zone_root=True), Held(GLOBAL_OWN_VIEW, READ)),
    (DEFAULT_POLICY, Principal("red", 0, zone_root=True), Held("red", ZROOT)),
    (DEFAULT_POLICY, Principal("red", 1000), Held("red", READ)),
    # zone.read granted: the host view, and what else the rule grants.
    (Policy(rules=(Rule(grant=frozenset({"zone.read", "link.write"}), uid=1000),)),
     Principal("global", 1000), Held("global", READ | {"zone.read", "link.write"})),
    # Without zone.read every grant beyond reading is dropped: a global write reaches all.
    (Policy(rules=(Rule(grant=frozenset({"link.write", "zone.admin"}), uid=1000),)),
     Principal("global", 1000), Held(GLOBAL_OWN_VIEW, READ)),
    (Policy(rules=(Rule(revoke=frozenset({"zone.read"}), zone="global"),)),
     Principal("global", 0, host_admin=True), Held(GLOBAL_OWN_VIEW, READ)),
    # zone.read means nothing more in another zone: its view is its own.
    (Policy(rules=(Rule(grant=frozenset({"zone.read"}), zone="red"),)),
     Principal("red", 1000), Held("red", READ | {"zone.read"})),
])
def test_held(policy: Policy, who: Principal, expected: Held) -> None:
    assert held(policy, who) == expected


# --- the target level ---------------------------------------------------------------------------

GLOBAL = Held("global", ALL)
RED = Held("red", ZROOT)


@pytest.mark.parametrize(("target", "policy", "expected"), [
    # A global parent under zone_policy: an assignable phys, or a bridge the zone may attach to.
    (UseParent("phys", "eth1", "red"), POLICY, None),
    (UseParent("phys", "eth0", "red"), POLICY, denied("CreateLink", ASSIGN)),
    (UseParent("bridge", "br0", "red"), POLICY, None),
    (UseParent("bridge", "br0", "blue"), POLICY, denied("CreateLink", ASSIGN)),
    (UseParent("bridge", "brall", "blue"), POLICY, None),
    # The class counts: a name listed for one kind of consent gives nothing as another.
    (UseParent("bridge", "eth1", "red"), POLICY, denied("CreateLink", ASSIGN)),
    (UseParent("phys", "br0", "red"), POLICY, denied("CreateLink", ASSIGN)),
    (UseParent("vlan", "eth1", "red"), POLICY, denied("CreateLink", ASSIGN)),
    (UseParent("bond", "brall", "red"), POLICY, denied("CreateLink", ASSIGN)),
    (UseParent("phys", "eth1", "red"), DEFAULT_POLICY, denied("CreateLink", ASSIGN)),
    (UseParent("bridge", "br0", "red"), DEFAULT_POLICY, denied("CreateLink", ASSIGN)),
    # A port on a host bridge: where the policy lists it, and always for the global zone.
    (Attach("br0", "red"), POLICY, None),
    (Attach("br0", "blue"), POLICY, denied("CreateLink", ASSIGN)),
    (Attach("brall", "blue"), POLICY, None),
    (Attach("eth1", "red"), POLICY, denied("CreateLink", ASSIGN)),
    (Attach("br0", "red"), DEFAULT_POLICY, denied("CreateLink", ASSIGN)),
    (Attach("br0", "global"), DEFAULT_POLICY, None),
    # Lending: a phys link only where listed; other classes are not the policy's business.
    (Assign("phys", "eth1"), POLICY, None),
    (Assign("phys", "eth0"), POLICY, denied("CreateLink", ASSIGN)),
    (Assign("phys", "eth1"), DEFAULT_POLICY, denied("CreateLink", ASSIGN)),
    (Assign("veth", "eth0"), DEFAULT_POLICY, None),
    (Assign("macvlan", "m0"), DEFAULT_POLICY, None),
])
def test_target_rules(target: Target, policy: Policy, expected: PermissionDenied | None
                      ) -> None:
    # Decided by the target alone: whoever asks (the method level already ran) gets the same.
    for who in (GLOBAL, RED, Held("global", frozenset()), acting_for("red")):
        assert outcome(who, "CreateLink", target, policy) == expected


def test_the_refusal_names_the_method_it_was_asked_for() -> None:
    assert outcome(GLOBAL, "AssignLink", Assign("phys", "eth0")) == denied(
        "AssignLink", ASSIGN)
    assert outcome(GLOBAL, "BootZone", Attach("br0", "blue")) == denied("BootZone", ASSIGN)


def test_acting_for_a_zone_holds_nothing() -> None:
    assert acting_for("red") == Held("red", frozenset())
    assert outcome(acting_for("global"), "CreateLink", METHODS["CreateLink"].call) == denied(
        "CreateLink", "link.write")


def test_get_link_properties_asks_what_set_link_properties_needs() -> None:
    assert METHODS["SetLinkProperties"].call == properties.SET_PROPERTIES


# --- the handlers ask it, once they found the target --------------------------------------------

RED_ROOT = Caller(zone="red", uid=0, gid=0, pid=2, authorizations=ZROOT)


async def world(tmp_path: Path, policy: Policy) -> World:
    """The global zone (eth0, a phys NIC; br0 and eth1 made here) and red, under `policy`."""
    w = World(tmp_path)
    w.broker.policy = policy
    await w.attach("global", w.host, "global")
    await w.attach("red", w.kernel.namespace(), "netns")
    w.kernel.add(w.host.fd, "eth1", None)
    w.broker.reconcile_zone("global", await w.host.dump())
    await creation.create_link(w.broker, GLOBAL_CALLER, CreateLinkParams(link=LinkSpec(
        name="br0", class_="bridge")))
    return w


async def caught(call: Awaitable[Any]) -> LinkbrokerError | None:
    """The error a handler answers, or None when it did what was asked."""
    try:
        await call
    except LinkbrokerError as exc:
        return exc
    return None


def test_assign_link_asks_about_a_phys_link(tmp_path: Path) -> None:
    async def scenario() -> None:
        w = await world(tmp_path, POLICY)
        # Found first: a name that is nowhere is LinkNotFound, whatever the policy says.
        assert await caught(lending.assign_link(w.broker, GLOBAL_CALLER, AssignLinkParams(
            name="eth9", zone="red"))) == LinkNotFound("eth9")
        assert await caught(lending.assign_link(w.broker, GLOBAL_CALLER, AssignLinkParams(
            name="eth0", zone="red"))) == denied("AssignLink", ASSIGN)
        assert w.table("global")["eth0"].zone == "global"  # refused before anything moved
        assert await caught(lending.assign_link(w.broker, GLOBAL_CALLER, AssignLinkParams(
            name="eth1", zone="red"))) is None
        assert w.table("red")["eth1"].onloan

    asyncio.run(scenario())


def test_create_link_asks_about_a_global_parent_under_zone_policy(tmp_path: Path) -> None:
    def macvlan(name: str, parent: str, zone_policy: bool = True) -> CreateLinkParams:
        return CreateLinkParams(link=LinkSpec(name=name, class_="macvlan", zone="red",
                                              parent=parent, zone_policy=zone_policy))

    async def scenario() -> None:
        w = await world(tmp_path, POLICY)
        make = creation.create_link
        assert await caught(make(w.broker, GLOBAL_CALLER, macvlan("m0", "eth9"))
                            ) == LinkNotFound("eth9")
        assert await caught(make(w.broker, GLOBAL_CALLER, macvlan("m0", "eth0"))
                            ) == denied("CreateLink", ASSIGN)
        assert "m0" not in w.table("red")
        assert await caught(make(w.broker, GLOBAL_CALLER, macvlan("m0", "eth1"))) is None
        assert await caught(make(w.broker, GLOBAL_CALLER, macvlan("m1", "br0"))) is None
        # Without zone_policy the global zone is held to nothing of the zone's.
        assert await caught(make(w.broker, GLOBAL_CALLER, macvlan("m2", "eth0", False))
                            ) is None
        assert {"m0", "m1", "m2"} <= set(w.table("red"))

    asyncio.run(scenario())


def test_create_link_answers_a_refused_uplink_as_a_missing_one(tmp_path: Path) -> None:
    def uplink(name: str, bridge: str) -> CreateLinkParams:
        return CreateLinkParams(link=LinkSpec(name=name, class_="veth", uplink=bridge))

    async def scenario() -> None:
        for policy, zone_may in ((DEFAULT_POLICY, False), (POLICY, True)):
            w = await world(tmp_path / str(zone_may), policy)
            make = creation.create_link
            # Missing, not a bridge, not attachable: one answer, the caller's own word.
            assert await caught(make(w.broker, RED_ROOT, uplink("u0", "br9"))
                                ) == LinkNotFound("br9")
            assert await caught(make(w.broker, RED_ROOT, uplink("u0", "eth1"))
                                ) == LinkNotFound("eth1")
            assert await caught(make(w.broker, RED_ROOT, uplink("u0", "br0"))) == (
                None if zone_may else LinkNotFound("br0"))
            assert ("u0" in w.table("red")) == zone_may

    asyncio.run(scenario())

