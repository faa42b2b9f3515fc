"""Zone isolation, checked statefully against a real broker and a pure model of the contract.

Hypothesis draws sequences of calls (CreateLink, DeleteLink, RenameLink, SetLinkProperties,
GetLink, ListLinks, ListZones, GetZone, WhoAmI, AssignLink, ReclaimLink, and since issue 13
AddAddress, RemoveAddress, ListAddresses, AddRoute, RemoveRoute, ListRoutes) from random zones:
the global zone (this process, on the host) and three netns zones (a `ZoneCaller` inside each
namespace). Link names come from a pool of five, so clashes, `LinkExists` and the same name in
several zones happen all the time. Every call is also answered by `Model`, a few dicts written
from the contract's text (/work/shared/spec/README.md), never from the broker's code, and
the two must agree: success or the error and its parameters, and for reads the exact set of
visible links (name, class, zone, owner, onloan, persistent, state, mtu, peer-or-null). After
every step each zone's ListLinks is compared with the model; after every sequence the kernel
of each namespace is compared too.

The no-oracle rule is checked directly as well: whenever a non-global zone gets an error for a
call that names a link or zone living elsewhere, the same call is made again with those names
replaced by ghost names of the same length that exist nowhere, and the two replies must be
the same JSON once the ghosts are put back. A zone must not be able to tell "hidden" from
"absent".

Where the contract fixes no order between two errors that both apply (an invalid new name for
a link that does not exist, say), the model accepts any of them; the ghost check still demands
that a zone's choice never depends on what other zones hold. The model lists them in one
order (syntax of the arguments, then resolving them in argument order, then ownership, then
clashes), and the report counts which of them the broker chose: "1st" every time means it
keeps that order.

CI runs 40 sequences of up to 25 steps; a longer run is
`LINKBROKER_ISOLATION_EXAMPLES=500 LINKBROKER_ISOLATION_STEPS=40 \
 python3 -m pytest tests/test_isolation.py -s -p no:cacheprovider`.
A failure is reported unshrunk; `LINKBROKER_ISOLATION_SHRINK=1` shrinks it (minutes).
"""

from __future__ import annotations

import itertools
import json
import os
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from broker._wire import encode_call
from broker.client import Connection
from tests.conftest import BrokerProcess, run

EXAMPLES = int(os.environ.get("LINKBROKER_ISOLATION_EXAMPLES", "40"))
STEPS = int(os.environ.get("LINKBROKER_ISOLATION_STEPS", "25"))
# Shrinking replays hundreds of sequences against the broker (Hypothesis allows it up to five
# minutes): off by default so a failure is reported at once, with its whole sequence.
SHRINK = os.environ.get("LINKBROKER_ISOLATION_SHRINK", "") not in ("", "0")

GLOBAL = "global"
ZONES = ("red", "blue", "green")
ALL_ZONES = (GLOBAL, *ZONES)
NOWHERE = "nowhere"  # a well-formed zone name that is never booted
LINK_CLASSES = ("phys", "veth", "bridge", "macvlan", "macvtap", "vxlan", "tap")
LINK_FIELDS = frozenset({"id", "name", "class", "zone", "owner", "onloan", "persistent",
                         "state", "ifindex", "mac", "mtu", "peer"})
DEFAULT_MTU = 1500
ALL_AUTHORIZATIONS = ["addr.write", "event.read", "link.assign", "link.protect", "link.read",
                      "link.write", "zone.admin", "zone.read"]
ZONE_AUTHORIZATIONS = ["addr.write", "event.read", "link.read", "link.write"]
IFNAMSIZ = 16
# Addresses drawn for AddAddress/RemoveAddress: IPv4 only (the kernel keeps IPv4 addresses
# when a link goes down; IPv6 ones it may drop), and three the contract refuses.
ADDRESSES = ("198.51.100.1/24", "198.51.100.2/24", "198.51.100.3/25")
# Destinations of routes over a link (AddRoute, RemoveRoute, ListRoutes).
DESTINATIONS = ("203.0.113.0/24", "203.0.113.128/25", "203.0.113.64/26")
destinations = st.sampled_from(DESTINATIONS)
BAD_ADDRESSES = ("198.51.100.1", "198.51.100.300/24", "127.0.0.1/8")
addresses = st.sampled_from([*ADDRESSES * 3, *BAD_ADDRESSES])

# Link names are drawn as short tokens (readable in a failing sequence, whatever the run's
# prefix): a pool token stands for PREFIX+token, an invalid token for a name the contract
# refuses. Ghost tokens are never drawn: they name links that exist nowhere.
POOL = ("a", "b", "c", "d", "e")
GHOSTS = ("w", "x", "y", "z")
INVALID = ("<empty>", "<slash>", "<colon>", "<space>", "<dotdot>", "<long>")

callers = st.sampled_from(ALL_ZONES)
# AssignLink and ReclaimLink are the global zone's; zones calling them only learn "no".
lenders = st.sampled_from([GLOBAL, GLOBAL, GLOBAL, *ZONES])
names = st.sampled_from(POOL)
new_names = st.sampled_from([*POOL * 4, *INVALID[:2], INVALID[5]])
create_names = st.sampled_from([*POOL * 6, *INVALID])
zone_args = st.sampled_from([None, None, None, None, None, GLOBAL, *ZONES, NOWHERE])
# For calls naming a link: THERE means "some link of the model, in the zone it lives in" (for
# the global zone a link anywhere, for another zone mostly a hidden link in a hidden zone).
THERE = "<there>"
link_zone_args = st.sampled_from([None, None, None, None, GLOBAL, *ZONES, NOWHERE, THERE,
                                  THERE, THERE])
assign_zones = st.sampled_from([*ZONES, *ZONES, GLOBAL, NOWHERE])
mtus = st.sampled_from([None, 1280, 1400, 1500, 9000])
ups = st.sampled_from([None, True, False])
macs = st.sampled_from([None, None, None, "02:00:5e:10:00:01", "02:00:5e:10:00:02"])
class_args = st.sampled_from([None, None, None, "veth", "tap", "bridge", "phys", "nope"])
# Links made at the start of a sequence, so that later steps meet links in every zone:
# (caller, class, name, peer, zone, peer_zone); zones other than None count for global only.
plans = st.lists(st.tuples(lenders, st.sampled_from(["veth", "veth", "tap"]), names, names,
                           st.sampled_from([None, None, *ALL_ZONES]),
                           st.sampled_from([None, *ALL_ZONES]), st.booleans()),
                 min_size=1, max_size=8)


# ---- what the callers are -------------------------------------------------------------------


class RawCaller(Protocol):
    """Anything that sends one call and returns the broker's raw reply, as parsed JSON."""

    def raw(self, method: str, **parameters: Any) -> dict[str, Any]: ...


class HostCaller:
    """The global zone's caller: a connection from this process, which runs on the host.

    It answers with the same raw reply dicts as `ZoneCaller`, so both are compared the same
    way (the typed client would turn errors into exceptions and lose the JSON)."""

    def __init__(self, sock: str) -> None:
        self.conn = Connection(sock, timeout=30)

    def raw(self, method: str, **parameters: Any) -> dict[str, Any]:
        full = method if "." in method else f"io.linkbroker.{method}"
        self.conn.send(encode_call(full, parameters))
        reply: dict[str, Any] = json.loads(self.conn.receive())
        return reply

    def close(self) -> None:
        self.conn.close()


# ---- the model -------------------------------------------------------------------------------


def name_problem(name: str) -> bool:
    """The contract's link-name rule: 1 to 15 bytes, not . or .., no / : whitespace NUL."""
    encoded = name.encode()
    return (not 1 <= len(encoded) < IFNAMSIZ or name in (".", "..")
            or any(ch in "/:\0" or ch.isspace() for ch in name))


@dataclass(frozen=True)
class Err:
    """An error reply the model predicts. `free` names parameters whose text the contract
    leaves to the broker (InvalidName's reason): they need only be non-empty strings."""

    error: str
    params: dict[str, Any]
    free: frozenset[str] = frozenset()

    def matches(self, reply: dict[str, Any]) -> bool:
        got = reply.get("parameters") or {}
        if reply.get("error") != self.error:
            return False
        if any(not isinstance(got.get(k), str) or not got[k] for k in self.free):
            return False
        return {k: v for k, v in got.items() if k not in self.free} == self.params


def link_not_found(name: str) -> Err:
    return Err("io.linkbroker.LinkNotFound", {"name": name})


def link_exists(name: str) -> Err:
    return Err("io.linkbroker.LinkExists", {"name": name})


def zone_not_found(name: str) -> Err:
    return Err("io.linkbroker.ZoneNotFound", {"name": name})


def not_owner(name: str, owner: str) -> Err:
    return Err("io.linkbroker.NotOwner", {"name": name, "owner": owner})


def invalid_name(name: str) -> Err:
    return Err("io.linkbroker.InvalidName", {"name": name}, frozenset({"reason"}))


def invalid_parameter(parameter: str) -> Err:
    return Err("org.varlink.service.InvalidParameter", {"parameter": parameter})


def invalid_address(address: str) -> Err:
    return Err("io.linkbroker.InvalidAddress", {"parameter": "address", "address": address},
               frozenset({"reason"}))


def permission_denied(method: str, authorization: str) -> Err:
    return Err("io.linkbroker.PermissionDenied",
               {"method": method, "authorization": authorization})


@dataclass
class MLink:
    """One link as the contract describes it. `key` is the model's own identity (the broker's
    ID is learnt from its first reply and must never change or be reused); `home` is the name
    a lent link goes back to the global zone under."""

    key: int
    name: str
    cls: str
    zone: str
    owner: str
    peer: int | None = None
    up: bool = False
    mtu: int = DEFAULT_MTU
    home: str | None = None
    id: int | None = None
    mac: str | None = None
    # IPv4 addresses put on it through the broker (the kernel drops them when it moves).
    addrs: set[str] = field(default_factory=set)
    # Destinations of routes over it (the kernel drops them when it goes down or moves).
    routes: set[str] = field(default_factory=set)

    @property
    def onloan(self) -> bool:
        return self.owner == GLOBAL and self.zone != GLOBAL


# What a successful call answers: ("empty", None), ("link", key), ("links", [keys]),
# ("zone", name), ("zones", [names]), ("whoami", zone).
Shape = tuple[str, Any]


@dataclass
class Expect:
    """The model's answer to one call: the errors it accepts, or the state change to make
    (`commit`) and the shape of the reply to check once it is made."""

    errors: list[Err] = field(default_factory=list)
    commit: Callable[[], None] | None = None
    shape: Shape = ("empty", None)


class Model:
    """The contract in one dict: link (by model key) -> its name, zone, class, owner, peer
    and state; a zone's links are those whose zone it is.

    For a non-global caller, every decision below reads only the caller's own zone (`resolve`
    maps any other zone name to ZoneNotFound before anything is looked up), so the model
    itself has no oracle; the state changes may reach further (deleting a veth end removes
    its peer wherever it lives)."""

    def __init__(self, keys: Iterator[int]) -> None:
        self.links: dict[int, MLink] = {}
        self._keys = keys

    # -- queries --
    def find(self, zone: str, name: str) -> MLink | None:
        return next((x for x in self.links.values() if x.zone == zone and x.name == name), None)

    def in_zone(self, zone: str) -> list[MLink]:
        return [x for x in self.links.values() if x.zone == zone]

    def exists_elsewhere(self, zone: str, name: str) -> bool:
        """True when `name` is a link in some zone other than `zone` and not in `zone`."""
        return self.find(zone, name) is None and any(
            x.name == name for x in self.links.values())

    @staticmethod
    def resolve(caller: str, zone: str | None) -> tuple[str | None, list[Err]]:
        """The zone a call is about: the caller's own, or (global only) any booted zone."""
        if zone is None or zone == caller:
            return caller, []
        if caller == GLOBAL and zone in ALL_ZONES:
            return zone, []
        return None, [zone_not_found(zone)]

    @staticmethod
    def may_change(caller: str, link: MLink, *, lent_ok: bool) -> bool:
        """Owners change their links; a zone may set up and mtu of a link lent to it."""
        return caller in (GLOBAL, link.owner) or (lent_ok and link.onloan
                                                  and link.zone == caller)

    def view(self, caller: str, link: MLink) -> dict[str, Any]:
        """The link's fields as `caller` must see them (peer only when the caller sees it)."""
        peer = self.links.get(link.peer) if link.peer is not None else None
        return {
            "name": link.name, "class": link.cls, "zone": link.zone, "owner": link.owner,
            "onloan": link.onloan, "persistent": False, "state": "up" if link.up else "down",
            "mtu": link.mtu,
            "peer": peer.name if peer is not None and caller in (GLOBAL, peer.zone) else None,
        }

    def _new(self, name: str, cls: str, zone: str, owner: str) -> MLink:
        link = MLink(next(self._keys), name, cls, zone, owner)
        if link.onloan:
            link.home = name
        return link

    def _find_in(self, caller: str, name: str, zone: str | None
                 ) -> tuple[MLink | None, list[Err]]:
        z, errs = self.resolve(caller, zone)
        if z is None:
            return None, errs
        link = self.find(z, name)
        return link, ([] if link is not None else [link_not_found(name)])

    # -- writes --
    def create_veth(self, caller: str, name: str, peer: str, zone: str | None,
                    peer_zone: str | None) -> Expect:
        errs = [invalid_name(n) for n in (name, peer) if name_problem(n)]
        z, zerrs = self.resolve(caller, zone)
        pz, pzerrs = self.resolve(caller, peer_zone) if peer_zone is not None else (z, [])
        errs += zerrs + pzerrs
        if z is not None and pz is not None:
            if self.find(z, name) is not None:
                errs.append(link_exists(name))
            if self.find(pz, peer) is not None:
                errs.append(link_exists(peer))
            if z == pz and name == peer:  # both ends would have one name in one zone
                errs.append(link_exists(peer))
        if errs or z is None or pz is None:
            return Expect(errs)
        a, b = self._new(name, "veth", z, caller), self._new(peer, "veth", pz, caller)
        a.peer, b.peer = b.key, a.key

        def commit() -> None:
            self.links[a.key], self.links[b.key] = a, b

        return Expect(commit=commit, shape=("link", a.key))

    def create_tap(self, caller: str, name: str, zone: str | None) -> Expect:
        errs = [invalid_name(name)] if name_problem(name) else []
        z, zerrs = self.resolve(caller, zone)
        errs += zerrs
        if z is not None and self.find(z, name) is not None:
            errs.append(link_exists(name))
        if errs or z is None:
            return Expect(errs)
        tap = self._new(name, "tap", z, caller)

        def commit() -> None:
            self.links[tap.key] = tap

        return Expect(commit=commit, shape=("link", tap.key))

    def delete(self, caller: str, name: str, zone: str | None) -> Expect:
        link, errs = self._find_in(caller, name, zone)
        if link is not None and not self.may_change(caller, link, lent_ok=False):
            errs.append(not_owner(name, link.owner))
        if errs or link is None:
            return Expect(errs)

        def commit() -> None:  # both ends of a veth go
            assert link is not None
            self.links.pop(link.key)
            if link.peer is not None:
                self.links.pop(link.peer, None)

        return Expect(commit=commit)

    def rename(self, caller: str, name: str, new_name: str, zone: str | None) -> Expect:
        bad_new = [invalid_name(new_name)] if name_problem(new_name) else []
        link, errs = self._find_in(caller, name, zone)
        errs = bad_new + errs
        if link is not None:
            if not self.may_change(caller, link, lent_ok=False):
                errs.append(not_owner(name, link.owner))
            if new_name != name and self.find(link.zone, new_name) is not None:
                errs.append(link_exists(new_name))
        if errs or link is None:
            return Expect(errs)

        def commit() -> None:
            assert link is not None
            link.name = new_name  # a lent link keeps its home name

        return Expect(commit=commit, shape=("link", link.key))

    def set_properties(self, caller: str, name: str, zone: str | None, *, mtu: int | None,
                       up: bool | None, mac: str | None) -> Expect:
        link, errs = self._find_in(caller, name, zone)
        if link is not None and not self.may_change(caller, link, lent_ok=mac is None):
            errs.append(not_owner(name, link.owner))
        if errs or link is None:
            return Expect(errs)

        def commit() -> None:
            assert link is not None
            link.mtu = link.mtu if mtu is None else mtu
            if up is False:
                link.routes.clear()  # a link going down takes its routes with it
            link.up = link.up if up is None else up
            link.mac = link.mac if mac is None else mac

        return Expect(commit=commit, shape=("link", link.key))

    def _move(self, link: MLink, zone: str, name: str) -> None:
        """The kernel takes a link down when it changes namespace, and its addresses go."""
        link.zone, link.name, link.up = zone, name, False
        link.addrs.clear()
        link.routes.clear()

    # -- addresses (added with issue 13) --
    def add_address(self, caller: str, name: str, zone: str | None, address: str
                    ) -> Expect:
        """Any link living in the caller's zone may be addressed (own or lent)."""
        errs = [invalid_address(address)] if address not in ADDRESSES else []
        link, lerrs = self._find_in(caller, name, zone)
        errs += lerrs
        if link is not None and address in link.addrs:
            errs.append(Err("io.linkbroker.AddressExists", {"address": address}))
        if errs or link is None:
            return Expect(errs)

        def commit() -> None:
            assert link is not None
            link.addrs.add(address)

        return Expect(commit=commit, shape=("address", (link.key, address)))

    def remove_address(self, caller: str, name: str, zone: str | None, address: str
                       ) -> Expect:
        errs = [invalid_address(address)] if address not in ADDRESSES else []
        link, lerrs = self._find_in(caller, name, zone)
        errs += lerrs
        if link is not None and address not in link.addrs:
            errs.append(Err("io.linkbroker.AddressNotFound", {"address": address}))
        if errs or link is None:
            return Expect(errs)

        def commit() -> None:
            assert link is not None
            link.addrs.discard(address)

        return Expect(commit=commit)

    def add_route(self, caller: str, destination: str, name: str, zone: str | None
                  ) -> Expect:
        """A route over a link (no gateway): one per destination and zone (metric 0)."""
        link, errs = self._find_in(caller, name, zone)
        if link is not None:
            if not link.up:
                errs.append(Err("io.linkbroker.KernelError", {"errno": 100},
                                frozenset({"message"})))  # ENETDOWN
            if any(destination in x.routes for x in self.in_zone(link.zone)):
                errs.append(Err("io.linkbroker.RouteExists", {"destination": destination}))
        if errs or link is None:
            return Expect(errs)

        def commit() -> None:
            assert link is not None
            link.routes.add(destination)

        return Expect(commit=commit, shape=("route", (link.key, destination)))

    def remove_route(self, caller: str, destination: str, name: str, zone: str | None
                     ) -> Expect:
        link, errs = self._find_in(caller, name, zone)
        if link is not None and destination not in link.routes:
            errs.append(Err("io.linkbroker.RouteNotFound", {"destination": destination}))
        if errs or link is None:
            return Expect(errs)

        def commit() -> None:
            assert link is not None
            link.routes.discard(destination)

        return Expect(commit=commit)

    def list_routes(self, caller: str, zone: str | None) -> Expect:
        z, errs = self.resolve(caller, zone)
        if z is None:
            return Expect(errs)
        return Expect(shape=("routes", (z, [(x.key, d) for x in self.in_zone(z)
                                            for d in x.routes])))

    def list_addresses(self, caller: str, name: str | None, zone: str | None) -> Expect:
        if name is not None:
            link, errs = self._find_in(caller, name, zone)
            if errs or link is None:
                return Expect(errs)
            found = [link]
        else:
            z, errs = self.resolve(caller, zone)
            if z is None:
                return Expect(errs)
            found = (list(self.links.values()) if caller == GLOBAL and zone is None
                     else self.in_zone(z))
        return Expect(shape=("addresses", [(x.key, a) for x in found for a in x.addrs]))

    def assign(self, caller: str, name: str, zone: str) -> Expect:
        if caller != GLOBAL:
            return Expect([permission_denied("AssignLink", "link.assign")])
        link, errs = self._find_in(GLOBAL, name, GLOBAL)
        z: str | None = None
        if zone == GLOBAL:  # lending to itself means nothing
            errs.append(invalid_parameter("zone"))
        else:
            z, zerrs = self.resolve(GLOBAL, zone)
            errs += zerrs
        if link is not None and z is not None and self.find(z, name) is not None:
            errs.append(link_exists(name))
        if errs or link is None or z is None:
            return Expect(errs)

        def commit() -> None:
            assert link is not None and z is not None
            self._move(link, z, link.name)
            link.home = link.name

        return Expect(commit=commit, shape=("link", link.key))

    def reclaim(self, caller: str, name: str, zone: str | None) -> Expect:
        if caller != GLOBAL:
            return Expect([permission_denied("ReclaimLink", "link.assign")])
        if zone is not None:
            link, errs = self._find_in(GLOBAL, name, zone)
            if errs:
                return Expect(errs)
            lent = [link] if link is not None and link.onloan else []
        else:
            lent = [x for x in self.links.values() if x.onloan and x.name == name]
        if not lent:
            return Expect([link_not_found(name)])
        if len(lent) > 1:  # the same name lent to two zones: the caller must say which
            return Expect([invalid_parameter("zone")])
        back = lent[0]
        home = back.home or back.name
        if self.find(GLOBAL, home) is not None:
            return Expect([link_exists(home)])

        def commit() -> None:
            self._move(back, GLOBAL, home)
            back.home = None

        return Expect(commit=commit, shape=("link", back.key))

    # -- reads --
    def get_link(self, caller: str, name: str, zone: str | None) -> Expect:
        link, errs = self._find_in(caller, name, zone)
        if errs or link is None:
            return Expect(errs)
        return Expect(shape=("link", link.key))

    def list_links(self, caller: str, zone: str | None, cls: str | None) -> Expect:
        errs = [invalid_parameter("class")] if cls is not None and cls not in LINK_CLASSES else []
        z, zerrs = self.resolve(caller, zone)
        errs += zerrs
        if errs or z is None:
            return Expect(errs)
        found = (list(self.links.values()) if caller == GLOBAL and zone is None
                 else self.in_zone(z))
        return Expect(shape=("links", [x.key for x in found if cls in (None, x.cls)]))

    def get_zone(self, caller: str, name: str | None) -> Expect:
        z, errs = self.resolve(caller, name)
        return Expect(errs) if z is None else Expect(shape=("zone", z))

    @staticmethod
    def list_zones(caller: str) -> Expect:
        return Expect(shape=("zones", list(ALL_ZONES) if caller == GLOBAL else [caller]))

    @staticmethod
    def who_am_i(caller: str) -> Expect:
        return Expect(shape=("whoami", caller))


# ---- the run's shared state and counters -------------------------------------------------------


@dataclass
class Stats:
    """What ran, printed at the end of the module (visible with `pytest -s`)."""

    sequences: int = 0
    steps: int = 0
    calls: int = 0
    outcomes: Counter[tuple[str, str]] = field(default_factory=Counter)
    ghost_checks: Counter[str] = field(default_factory=Counter)
    ambiguous: Counter[tuple[str, str]] = field(default_factory=Counter)
    seconds: float = 0.0

    def report(self) -> str:
        lines = [f"isolation: {self.sequences} sequences, {self.steps} operations, "
                 f"{self.calls} broker calls in all, {self.seconds:.1f} s"]
        for method in sorted({m for m, _ in self.outcomes}):
            per = {o: n for (m, o), n in sorted(self.outcomes.items()) if m == method}
            lines.append(f"  {method:18} {per}")
        lines.append(f"  no-oracle ghost comparisons: {dict(sorted(self.ghost_checks.items()))}")
        lines.append("  calls with several acceptable errors (which one the broker chose):")
        for (method, chosen), n in sorted(self.ambiguous.items()):
            lines.append(f"    {method:18} {chosen}: {n}")
        return "\n".join(lines)


@dataclass
class Lab:
    """Booted once per test run and shared by every sequence: booting zones is slow."""

    prefix: str
    callers: dict[str, RawCaller]
    netns: dict[str, str]
    # Each zone's fields as first seen from the global zone, without `links` (fixed for a run).
    zone_info: dict[str, dict[str, Any]]
    pids: dict[str, int]
    stats: Stats
    keys: Iterator[int] = field(default_factory=itertools.count)
    # Every broker link ID seen in the run, with the model key it belongs to: never reused.
    ids: dict[int, int] = field(default_factory=dict)

    def call(self, caller: str, method: str, params: dict[str, Any]) -> dict[str, Any]:
        self.stats.calls += 1
        return self.callers[caller].raw(method, **params)

    def name(self, token: str) -> str:
        """The link name a drawn token stands for."""
        invalid = {"<empty>": "", "<slash>": "a/b", "<colon>": "a:b", "<space>": "a b",
                   "<dotdot>": "..", "<long>": self.prefix + "q" * (IFNAMSIZ - len(self.prefix))}
        return invalid.get(token, self.prefix + token)

    def ours(self, name: str) -> bool:
        return name.startswith(self.prefix)


def kernel_links(ns: str | None, prefix: str) -> dict[str, tuple[int, bool]]:
    """The kernel's own word on a namespace's test links: name -> (mtu, administratively up)."""
    cmd = ["ip", "-j", *(["-n", ns] if ns else []), "link", "show"]
    return {d["ifname"]: (d["mtu"], "UP" in d["flags"])
            for d in json.loads(run(*cmd).stdout) if d["ifname"].startswith(prefix)}


def kernel_addresses(ns: str | None, prefix: str) -> set[tuple[str, str]]:
    """The kernel's word on the test's addresses: (link name, address/prefix)."""
    cmd = ["ip", "-j", *(["-n", ns] if ns else []), "-4", "addr", "show"]
    return {(d["ifname"], f"{a['local']}/{a['prefixlen']}")
            for d in json.loads(run(*cmd).stdout) if d.get("ifname", "").startswith(prefix)
            for a in d.get("addr_info", [])}


def kernel_routes(ns: str | None, prefix: str) -> set[tuple[str, str]]:
    """The kernel's word on the test's routes: (link name, destination)."""
    cmd = ["ip", "-j", *(["-n", ns] if ns else []), "-4", "route", "show"]
    return {(d["dev"], d["dst"]) for d in json.loads(run(*cmd).stdout)
            if d.get("dev", "").startswith(prefix) and d.get("dst") in DESTINATIONS}


def substitute(value: Any, mapping: dict[str, str], *, exact: bool) -> Any:
    """`value` with the strings of `mapping` replaced, in every nested dict and list: whole
    values only (`exact`, for call parameters) or anywhere inside a string (for replies)."""
    if isinstance(value, str):
        if exact:
            return mapping.get(value, value)
        for old, new in mapping.items():
            value = value.replace(old, new)
        return value
    if isinstance(value, dict):
        return {k: substitute(v, mapping, exact=exact) for k, v in value.items()}
    if isinstance(value, list):
        return [substitute(v, mapping, exact=exact) for v in value]
    return value


# ---- the state machine -------------------------------------------------------------------------


class IsolationMachine(RuleBasedStateMachine):
    """Random calls from random zones; the broker and the model must give the same answers.

    Every sequence starts from a broker holding none of the test's links (all deleted through
    the global zone), so its model starts empty and each sequence is reproducible."""

    LAB: ClassVar[Lab]

    def __init__(self) -> None:
        super().__init__()
        self.lab = self.LAB
        self.model = Model(self.lab.keys)
        self.clean = False  # False while a step runs: a failed step skips the kernel check
        self.lab.stats.sequences += 1
        self.reset_broker()
        self.clean = True

    # -- helpers --
    def reset_broker(self) -> None:
        """Delete every link the test made, through the global zone."""
        for _ in range(3):
            listed = self.lab.call(GLOBAL, "ListLinks", {})["parameters"]["links"]
            ours = [x for x in listed if self.lab.ours(x["name"])]
            if not ours:
                return
            for link in ours:
                reply = self.lab.call(GLOBAL, "DeleteLink",
                                      {"name": link["name"], "zone": link["zone"]})
                # The other end of a veth already went with its peer.
                assert "error" not in reply or reply["error"].endswith("LinkNotFound"), reply
        raise AssertionError("the test's links could not all be deleted")

    def foreign_names(self, caller: str, method: str, params: dict[str, Any]
                      ) -> dict[str, str]:
        """Names in the call that exist only outside the caller's zone, each with a ghost of
        the same length that exists nowhere."""
        link_keys = () if method == "GetZone" else ("name", "peer", "new_name", "link")
        zone_keys = ("name",) if method == "GetZone" else ("zone", "peer_zone")
        spec = params.get("link")  # CreateLink's LinkSpec; the address calls' link name
        flat = {**params, **(spec if isinstance(spec, dict) else {})}
        mapping: dict[str, str] = {}
        ghosts = iter(GHOSTS)
        for key in link_keys:
            name = flat.get(key)
            if (isinstance(name, str) and name not in mapping
                    and self.model.exists_elsewhere(caller, name)):
                mapping[name] = self.lab.prefix + next(ghosts)
        for i, key in enumerate(zone_keys):
            zone = flat.get(key)
            if zone in ALL_ZONES and zone != caller and zone not in mapping:
                mapping[zone] = (f"q{i}" + "z" * 64)[:len(zone)]
        return mapping

    def check_no_oracle(self, caller: str, method: str, params: dict[str, Any],
                        reply: dict[str, Any]) -> None:
        """A zone's error about a hidden name must be the error about an absent one."""
        mapping = self.foreign_names(caller, method, params)
        if not mapping:
            return
        self.lab.stats.ghost_checks[method] += 1
        ghost_reply = self.lab.call(caller, method, substitute(params, mapping, exact=True))
        back = substitute(ghost_reply, {v: k for k, v in mapping.items()}, exact=False)
        assert back == reply, (
            f"oracle: zone {caller} {method}({params}) answered {reply}, but for names that "
            f"exist nowhere ({mapping}) it answered {ghost_reply}")

    def observe(self, link: MLink, got: dict[str, Any], where: str) -> None:
        """IDs are learnt once, then never change and never belong to another link; the MAC
        is learnt from the kernel once, then changes only when set."""
        assert isinstance(got.get("ifindex"), int), f"{where}: no ifindex in {got}"
        assert set(got) <= LINK_FIELDS, f"{where}: unexpected fields in {got}"
        if link.id is None:
            owner = self.lab.ids.setdefault(got["id"], link.key)
            assert owner == link.key, f"{where}: ID {got['id']} reused for {got}"
            link.id = got["id"]
        assert got["id"] == link.id, f"{where}: ID changed from {link.id}: {got}"
        if link.mac is None:
            link.mac = got["mac"]
        assert got["mac"] == link.mac, f"{where}: MAC {got['mac']}, expected {link.mac}"

    def check_link(self, caller: str, link: MLink, got: dict[str, Any], where: str) -> None:
        want = self.model.view(caller, link)
        seen = {k: got.get(k) for k in want}
        assert seen == want, f"{where}: link {got}\n  model says {want}"
        self.observe(link, got, where)

    def check_links(self, caller: str, keys: list[int], got: list[dict[str, Any]],
                    where: str) -> None:
        # The host's own links (not the test's) are in the global zone: ignore those only.
        got = [x for x in got if x["zone"] != GLOBAL or self.lab.ours(x["name"])]
        by_place = {(x["zone"], x["name"]): x for x in got}
        assert len(by_place) == len(got), f"{where}: a link listed twice: {got}"
        want = {(self.model.links[k].zone, self.model.links[k].name): self.model.links[k]
                for k in keys}
        assert set(by_place) == set(want), (
            f"{where}: broker lists {sorted(by_place)}, model {sorted(want)}")
        for place, link in want.items():
            self.check_link(caller, link, by_place[place], where)

    def check_address(self, caller: str, key: int, address: str, got: dict[str, Any],
                      where: str) -> None:
        link = self.model.links[key]
        want = {"link": link.name, "zone": link.zone, "address": address, "family": "inet",
                "persistent": False}
        assert {k: got.get(k) for k in want} == want, f"{where}: {got}, model {want}"
        assert link.id is None or got["link_id"] == link.id, f"{where}: {got} id {link.id}"

    def check_zone(self, name: str, got: dict[str, Any], where: str) -> None:
        fixed = {k: v for k, v in got.items() if k != "links"}
        assert fixed == self.lab.zone_info[name], f"{where}: zone {got}"
        links = [x for x in got["links"] if name != GLOBAL or self.lab.ours(x)]
        want = [x.name for x in self.model.in_zone(name)]
        assert sorted(links) == sorted(want), f"{where}: zone {name} links {links}, model {want}"

    def check_reply(self, caller: str, shape: Shape, got: dict[str, Any], where: str) -> None:
        kind, what = shape
        if kind == "empty":
            assert got == {}, f"{where}: {got}"
        elif kind == "link":
            self.check_link(caller, self.model.links[what], got["link"], where)
        elif kind == "statistics":
            link = self.model.links[what]
            stats = got["statistics"]
            assert (stats["link"], stats["zone"]) == (link.name, link.zone), f"{where}: {got}"
            assert all(isinstance(stats[k], int) and stats[k] >= 0
                       for k in ("rx_packets", "tx_packets", "rx_bytes", "tx_bytes")), got
        elif kind == "properties":
            link = self.model.links[what]
            rows = {r["property"]: r for r in got["properties"]}
            seen = self.model.view(caller, link)
            assert {r["link"] for r in rows.values()} == {link.name}, f"{where}: {got}"
            assert rows["mtu"]["value"] == str(seen["mtu"]), f"{where}: {rows['mtu']}"
            assert rows["state"]["value"] == seen["state"], f"{where}: {rows['state']}"
            owner = caller in (GLOBAL, link.owner)
            assert rows["txqueuelen"]["perm"] == ("rw" if owner else "r-"), f"{where}: {rows}"
            assert rows["mtu"]["perm"] == "rw", f"{where}: {rows}"  # owner or borrower
        elif kind == "links":
            self.check_links(caller, what, got["links"], where)
        elif kind == "zone":
            self.check_zone(what, got["zone"], where)
        elif kind == "address":
            key, address = what
            self.check_address(caller, key, address, got["address"], where)
        elif kind == "route":
            key, destination = what
            link = self.model.links[key]
            route = {"destination": destination, "family": "inet", "zone": link.zone,
                     "persistent": False, "protocol": "static", "link": link.name}
            assert got["route"] == route, f"{where}: {got}, model {route}"
        elif kind == "routes":
            zone, held = what
            shown = sorted((x["destination"], x.get("link")) for x in got["routes"]
                           if x["destination"] in DESTINATIONS
                           and self.lab.ours(x.get("link") or ""))
            want_routes = sorted((d, self.model.links[k].name) for k, d in held)
            assert shown == want_routes, f"{where}: broker lists {shown}, model {want_routes}"
            assert all(x["zone"] == zone for x in got["routes"]), f"{where}: {got}"
        elif kind == "addresses":
            # The kernel's own (IPv6 link-local) and the host's addresses are not the test's.
            ours = [x for x in got["addresses"] if x["address"] in ADDRESSES]
            listed = sorted((x["zone"], x["link"], x["address"]) for x in ours)
            want = sorted((self.model.links[k].zone, self.model.links[k].name, a)
                          for k, a in what)
            assert listed == want, f"{where}: broker lists {listed}, model {want}"
            by_place = {(x["zone"], x["link"], x["address"]): x for x in ours}
            for k, a in what:
                link = self.model.links[k]
                self.check_address(caller, k, a, by_place[link.zone, link.name, a], where)
        elif kind == "zones":
            assert sorted(z["name"] for z in got["zones"]) == sorted(what), f"{where}: {got}"
            for zone in got["zones"]:
                self.check_zone(zone["name"], zone, where)
        else:
            assert got == {
                "zone": what, "uid": 0, "gid": 0, "pid": self.lab.pids[what],
                "authorizations": ALL_AUTHORIZATIONS if what == GLOBAL else ZONE_AUTHORIZATIONS,
            }, f"{where}: {got}"

    def do(self, caller: str, method: str, params: dict[str, Any], expect: Expect) -> None:
        """One step: the call, the no-oracle check, then broker and model compared."""
        self.clean = False
        stats = self.lab.stats
        stats.steps += 1
        params = {k: v for k, v in params.items() if v is not None}
        where = f"zone {caller} {method}({params})"
        reply = self.lab.call(caller, method, params)
        outcome = reply.get("error", "ok").rpartition(".")[2]
        stats.outcomes[method, outcome] += 1
        if caller != GLOBAL and "error" in reply:
            self.check_no_oracle(caller, method, params, reply)
        if expect.errors:
            assert "error" in reply, (
                f"{where}: broker answered {reply}, model expects one of {expect.errors}")
            assert any(e.matches(reply) for e in expect.errors), (
                f"{where}: broker answered {reply}, model expects one of {expect.errors}")
            distinct = list({(e.error, json.dumps(e.params, sort_keys=True)): e
                             for e in expect.errors}.values())
            if len(distinct) > 1:
                chosen = next(i for i, e in enumerate(distinct) if e.matches(reply))
                stats.ambiguous[method, f"{chosen + 1}{'st' if chosen == 0 else 'th'}"
                                f" of {len(distinct)}"] += 1
        else:
            assert "error" not in reply, f"{where}: broker answered {reply}, model: success"
            if expect.commit is not None:
                expect.commit()
            self.check_reply(caller, expect.shape, reply.get("parameters") or {}, where)
        self.clean = True

    def pick(self, data: st.DataObject, zone: str | None) -> str:
        """A link name for a call about `zone`: half the time one the model has there (a
        lent one anywhere when `zone` is None), else any from the pool. Picking blindly
        from the pool would rarely hit a link where the call looks (lent links least)."""
        if zone is None:
            here = [x.name for x in self.model.links.values() if x.onloan]
        else:
            here = [x.name for x in self.model.in_zone(zone)]
        tokens = sorted(name.removeprefix(self.lab.prefix) for name in here)
        drawn = st.sampled_from(POOL) | st.sampled_from(tokens) if tokens else names
        return self.lab.name(data.draw(drawn, label="name"))

    def target(self, data: st.DataObject, caller: str, where: str | None
               ) -> tuple[str, str | None]:
        """The link name and `zone` parameter of a call about one link (see THERE)."""
        if where != THERE:
            return self.pick(data, self.model.resolve(caller, where)[0]), where
        places = sorted((x.zone, x.name) for x in self.model.links.values())
        if not places:
            return self.pick(data, caller), None
        zone, name = data.draw(st.sampled_from(places), label="link there")
        return name, zone

    # -- start and end of a sequence --
    @initialize(plan=plans)
    def populate(self, plan: list[tuple[str, str, str, str, str | None, str | None, bool]]
                 ) -> None:
        """Start with a few links (checked like any step), from the global zone anywhere and
        from the zones in themselves, some of them up; a sequence of pure chance would mostly
        see empty zones and links that are down."""
        for caller, cls, name, peer, zone, peer_zone, up in plan:
            z, pz = (zone, peer_zone) if caller == GLOBAL else (None, None)
            made = len(self.model.links)
            if cls == "tap":
                self.create_tap(caller=caller, name=name, zone=z)
            else:
                self.create_veth_anywhere(caller=caller, name=name, peer=peer, zone=z,
                                          peer_zone=pz)
            if up and len(self.model.links) > made:
                n = self.lab.name(name)
                self.do(caller, "SetLinkProperties", {"name": n, "zone": z, "up": True},
                        self.model.set_properties(caller, n, z, mtu=None, up=True, mac=None))

    def teardown(self) -> None:
        """The kernel agrees with the model at the end of a sequence; then start over."""
        try:
            if self.clean:
                for zone in ALL_ZONES:
                    ns = None if zone == GLOBAL else self.lab.netns[zone]
                    want = {x.name: (x.mtu, x.up) for x in self.model.in_zone(zone)}
                    got = kernel_links(ns, self.lab.prefix)
                    assert got == want, f"kernel of zone {zone}: {got}, model {want}"
                    held = kernel_addresses(ns, self.lab.prefix)
                    meant = {(x.name, a) for x in self.model.in_zone(zone) for a in x.addrs}
                    assert held == meant, f"addresses of zone {zone}: {held}, model {meant}"
                    routes = kernel_routes(ns, self.lab.prefix)
                    planned = {(x.name, d) for x in self.model.in_zone(zone) for d in x.routes}
                    assert routes == planned, f"routes of zone {zone}: {routes}, {planned}"
        finally:
            self.reset_broker()

    @invariant()
    def every_zone_lists_what_the_model_holds(self) -> None:
        for caller in ALL_ZONES:
            reply = self.lab.call(caller, "ListLinks", {})
            assert "error" not in reply, reply
            keys = [x.key for x in self.model.links.values()
                    if caller in (GLOBAL, x.zone)]
            self.check_links(caller, keys, reply["parameters"]["links"],
                             f"invariant: zone {caller} ListLinks")

    # -- the operations --
    @rule(caller=callers, name=create_names, peer=create_names)
    def create_veth_here(self, caller: str, name: str, peer: str) -> None:
        n, p = self.lab.name(name), self.lab.name(peer)
        self.do(caller, "CreateLink", {"link": {"name": n, "class": "veth", "peer": p}},
                self.model.create_veth(caller, n, p, None, None))

    @rule(caller=callers, name=create_names, peer=create_names, zone=zone_args,
          peer_zone=zone_args)
    def create_veth_anywhere(self, caller: str, name: str, peer: str, zone: str | None,
                             peer_zone: str | None) -> None:
        n, p = self.lab.name(name), self.lab.name(peer)
        spec = {"name": n, "class": "veth", "peer": p, "zone": zone, "peer_zone": peer_zone}
        self.do(caller, "CreateLink", {"link": {k: v for k, v in spec.items() if v is not None}},
                self.model.create_veth(caller, n, p, zone, peer_zone))

    @rule(caller=callers, name=create_names, zone=zone_args)
    def create_tap(self, caller: str, name: str, zone: str | None) -> None:
        n = self.lab.name(name)
        spec = {"name": n, "class": "tap", "zone": zone}
        self.do(caller, "CreateLink", {"link": {k: v for k, v in spec.items() if v is not None}},
                self.model.create_tap(caller, n, zone))

    @rule(caller=callers, where=link_zone_args, data=st.data())
    def delete_link(self, caller: str, where: str | None, data: st.DataObject) -> None:
        n, zone = self.target(data, caller, where)
        self.do(caller, "DeleteLink", {"name": n, "zone": zone},
                self.model.delete(caller, n, zone))

    @rule(caller=callers, where=link_zone_args, new_name=new_names, data=st.data())
    def rename_link(self, caller: str, where: str | None, new_name: str,
                    data: st.DataObject) -> None:
        (n, zone), new = self.target(data, caller, where), self.lab.name(new_name)
        self.do(caller, "RenameLink", {"name": n, "new_name": new, "zone": zone},
                self.model.rename(caller, n, new, zone))

    @precondition(lambda self: any(x.onloan for x in self.model.links.values()))
    @rule(new_name=names, data=st.data())
    def rename_lent_link(self, new_name: str, data: st.DataObject) -> None:
        """The global zone renames a link it lent: rare by chance, and what ReclaimLink then
        does with the name (back under the name it had before it was lent) is worth a look."""
        lent = sorted((x.zone, x.name) for x in self.model.links.values() if x.onloan)
        zone, n = data.draw(st.sampled_from(lent), label="lent link")
        new = self.lab.name(new_name)
        self.do(GLOBAL, "RenameLink", {"name": n, "new_name": new, "zone": zone},
                self.model.rename(GLOBAL, n, new, zone))

    @rule(caller=callers, where=link_zone_args, mtu=mtus, up=ups, mac=macs, data=st.data())
    def set_link_properties(self, caller: str, where: str | None, *, mtu: int | None,
                            up: bool | None, mac: str | None, data: st.DataObject) -> None:
        n, zone = self.target(data, caller, where)
        self.do(caller, "SetLinkProperties",
                {"name": n, "zone": zone, "mtu": mtu, "up": up, "mac": mac},
                self.model.set_properties(caller, n, zone, mtu=mtu, up=up, mac=mac))

    @rule(caller=callers, where=link_zone_args, data=st.data())
    def get_link(self, caller: str, where: str | None, data: st.DataObject) -> None:
        n, zone = self.target(data, caller, where)
        self.do(caller, "GetLink", {"name": n, "zone": zone}, self.model.get_link(caller, n, zone))

    @rule(caller=callers, where=link_zone_args, data=st.data())
    def get_link_properties(self, caller: str, where: str | None, data: st.DataObject) -> None:
        """dladm's show-linkprop (issue 14): the same lookup, errors and no-oracle rule as
        GetLink; the values agree with the model and PERM with who owns the link."""
        self.read_one_link(caller, where, data, "GetLinkProperties", "properties")

    @rule(caller=callers, where=link_zone_args, data=st.data())
    def get_link_statistics(self, caller: str, where: str | None, data: st.DataObject
                            ) -> None:
        """Counters only where the link is (issue 14): GetLink's lookup and errors."""
        self.read_one_link(caller, where, data, "GetLinkStatistics", "statistics")

    def read_one_link(self, caller: str, where: str | None, data: st.DataObject,
                      method: str, shape: str) -> None:
        """A read about one link with GetLink's lookup and errors, its reply of `shape`."""
        n, zone = self.target(data, caller, where)
        expect = self.model.get_link(caller, n, zone)
        if not expect.errors:
            expect = Expect(shape=(shape, expect.shape[1]))
        self.do(caller, method, {"name": n, "zone": zone}, expect)

    @rule(caller=callers, where=link_zone_args, data=st.data())
    def reset_state(self, caller: str, where: str | None, data: st.DataObject) -> None:
        """reset-linkprop -p state: a SetLinkProperties(up: false) with its rules."""
        n, zone = self.target(data, caller, where)
        self.do(caller, "ResetLinkProperties", {"name": n, "zone": zone,
                                                 "properties": ["state"]},
                self.model.set_properties(caller, n, zone, mtu=None, up=False, mac=None))

    @rule(caller=callers, data=st.data())
    def get_link_by_id(self, caller: str, data: st.DataObject) -> None:
        """IDs as handles (issue 14): a link asked for by its ID, from any zone. Where it is
        not, the answer must be exactly that for an ID never handed out (the ghost-ID check,
        as the ghost names check names)."""
        known = sorted((x.key, x.id) for x in self.model.links.values() if x.id is not None)
        if not known:
            return
        key, link_id = data.draw(st.sampled_from(known), label="link by id")
        link = self.model.links[key]
        visible = caller in (GLOBAL, link.zone)
        self.do(caller, "GetLink", {"id": link_id},
                Expect(shape=("link", key)) if visible
                else Expect([link_not_found(f"#{link_id}")]))
        if not visible:
            ghost = next(i for i in itertools.count(1) if i not in self.lab.ids)
            self.lab.stats.ghost_checks["GetLink(id)"] += 1
            theirs = self.lab.call(caller, "GetLink", {"id": link_id})
            nobodys = self.lab.call(caller, "GetLink", {"id": ghost})
            assert json.dumps(theirs).replace(f"#{link_id}", "#G") == json.dumps(
                nobodys).replace(f"#{ghost}", "#G"), (
                f"oracle: zone {caller} GetLink(id={link_id}) answered {theirs}, but for an "
                f"ID never handed out ({ghost}) {nobodys}")

    @rule(caller=callers, zone=zone_args, cls=class_args)
    def list_links(self, caller: str, zone: str | None, cls: str | None) -> None:
        self.do(caller, "ListLinks", {"zone": zone, "class": cls},
                self.model.list_links(caller, zone, cls))

    @rule(caller=callers)
    def list_zones(self, caller: str) -> None:
        self.do(caller, "ListZones", {}, self.model.list_zones(caller))

    @rule(caller=callers, zone=zone_args)
    def get_zone(self, caller: str, zone: str | None) -> None:
        self.do(caller, "GetZone", {"name": zone}, self.model.get_zone(caller, zone))

    @rule(caller=callers)
    def who_am_i(self, caller: str) -> None:
        self.do(caller, "WhoAmI", {}, self.model.who_am_i(caller))

    @rule(caller=callers, where=link_zone_args, address=addresses, data=st.data())
    def add_address(self, caller: str, where: str | None, address: str,
                    data: st.DataObject) -> None:
        n, zone = self.target(data, caller, where)
        self.do(caller, "AddAddress", {"link": n, "zone": zone, "address": address},
                self.model.add_address(caller, n, zone, address))

    @rule(caller=callers, where=link_zone_args, address=addresses, data=st.data())
    def remove_address(self, caller: str, where: str | None, address: str,
                       data: st.DataObject) -> None:
        n, zone = self.target(data, caller, where)
        self.do(caller, "RemoveAddress", {"link": n, "zone": zone, "address": address},
                self.model.remove_address(caller, n, zone, address))

    @precondition(lambda self: any(x.addrs for x in self.model.links.values()))
    @rule(caller=callers, data=st.data())
    def remove_held_address(self, caller: str, data: st.DataObject) -> None:
        """RemoveAddress of an address some link holds (by chance, rare): from its own zone,
        the global zone or a zone it is hidden from."""
        held = sorted((x.zone, x.name, a) for x in self.model.links.values() for a in x.addrs)
        zone, n, address = data.draw(st.sampled_from(held), label="held address")
        z = zone if caller == GLOBAL else None
        self.do(caller, "RemoveAddress", {"link": n, "zone": z, "address": address},
                self.model.remove_address(caller, n, z, address))

    @rule(caller=callers, where=link_zone_args, destination=destinations, data=st.data())
    def add_route(self, caller: str, where: str | None, destination: str,
                  data: st.DataObject) -> None:
        n, zone = self.target(data, caller, where)
        self.do(caller, "AddRoute", {"destination": destination, "link": n, "zone": zone},
                self.model.add_route(caller, destination, n, zone))

    @rule(caller=callers, where=link_zone_args, destination=destinations, data=st.data())
    def remove_route(self, caller: str, where: str | None, destination: str,
                     data: st.DataObject) -> None:
        n, zone = self.target(data, caller, where)
        self.do(caller, "RemoveRoute", {"destination": destination, "link": n, "zone": zone},
                self.model.remove_route(caller, destination, n, zone))

    @precondition(lambda self: any(x.routes for x in self.model.links.values()))
    @rule(caller=callers, data=st.data())
    def remove_held_route(self, caller: str, data: st.DataObject) -> None:
        """RemoveRoute of a route the model holds, from any zone (rare by chance)."""
        held = sorted((x.zone, x.name, d) for x in self.model.links.values() for d in x.routes)
        zone, n, destination = data.draw(st.sampled_from(held), label="held route")
        z = zone if caller == GLOBAL else None
        self.do(caller, "RemoveRoute", {"destination": destination, "link": n, "zone": z},
                self.model.remove_route(caller, destination, n, z))

    @rule(caller=callers, zone=zone_args)
    def list_routes(self, caller: str, zone: str | None) -> None:
        self.do(caller, "ListRoutes", {"zone": zone}, self.model.list_routes(caller, zone))

    @rule(caller=callers, where=link_zone_args, one=st.booleans(), data=st.data())
    def list_addresses(self, caller: str, where: str | None, one: bool,
                       data: st.DataObject) -> None:
        if one:
            n, zone = self.target(data, caller, where)
        else:
            n, zone = None, None if where == THERE else where
        self.do(caller, "ListAddresses", {"link": n, "zone": zone},
                self.model.list_addresses(caller, n, zone))

    @rule(caller=lenders, zone=assign_zones, data=st.data())
    def assign_link(self, caller: str, zone: str, data: st.DataObject) -> None:
        n = self.pick(data, GLOBAL)
        self.do(caller, "AssignLink", {"name": n, "zone": zone},
                self.model.assign(caller, n, zone))

    @rule(caller=lenders, zone=zone_args, data=st.data())
    def reclaim_link(self, caller: str, zone: str | None, data: st.DataObject) -> None:
        n = self.pick(data, None if zone is None else self.model.resolve(GLOBAL, zone)[0])
        self.do(caller, "ReclaimLink", {"name": n, "zone": zone},
                self.model.reclaim(caller, n, zone))


# ---- the test ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def isolation_stats() -> Iterator[Stats]:
    """Counters for the whole module, printed when it ends (`pytest -s` shows them)."""
    stats = Stats()
    yield stats
    print("\n" + stats.report())


@pytest.mark.timeout(max(300, EXAMPLES * STEPS // 2) + (600 if SHRINK else 0))
def test_zones_answer_as_the_contract_says(broker: BrokerProcess, netns: Any, zone_caller: Any,
                                           prefix: str, isolation_stats: Stats) -> None:
    started = time.monotonic()
    namespaces = {zone: netns(zone) for zone in ZONES}
    host = HostCaller(broker.socket)
    try:
        for zone, ns in namespaces.items():
            reply = host.raw("BootZone", name=zone, netns=ns)
            assert "error" not in reply, reply
        zone_callers = {zone: zone_caller(ns) for zone, ns in namespaces.items()}
        callers: dict[str, RawCaller] = {GLOBAL: host, **zone_callers}
        listed = host.raw("ListZones")["parameters"]["zones"]
        zone_info = {z["name"]: {k: v for k, v in z.items() if k != "links"} for z in listed}
        assert set(zone_info) == set(ALL_ZONES)
        pids = {GLOBAL: os.getpid(), **{z: c.proc.pid for z, c in zone_callers.items()}}
        lab = Lab(prefix, callers, namespaces, zone_info, pids, isolation_stats)

        @settings(max_examples=EXAMPLES, stateful_step_count=STEPS, deadline=None,
                  derandomize=False, suppress_health_check=[HealthCheck.too_slow],
                  phases=[Phase.explicit, Phase.reuse, Phase.generate,
                          *([Phase.shrink, Phase.explain] if SHRINK else [])])
        class Bound(IsolationMachine):
            LAB = lab

        Bound.TestCase().runTest()
    finally:
        host.close()
        isolation_stats.seconds += time.monotonic() - started
