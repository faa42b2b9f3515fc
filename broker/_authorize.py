"""Every authorization decision of the broker, in one pure function: `authorize`.

Authorization used to be split three ways: the dispatch table named each method's
authorization, the server checked it and `global_only`, and the write handlers checked the
policy's lists (phys links a zone may be lent or use as a parent, host bridges a zone may put
a port on) with the errors written out by hand in each. A rule changed in one place and not in
another would be a hole nobody sees, so the decisions live here, and the server and the
handlers ask `authorize` and act on its answer.

What is asked is a small frozen value, a `Target`:

- `MethodCall`: may this caller call the method at all? (its authorization, and
  `global_only`). The server asks once per call, before the handler runs.
- `UseParent`: may a zone's new link sit over the global zone's link (a macvlan over a phys
  or a bridge), under `zone_policy`? `broker._create` asks once it found the parent.
- `Attach`: may a zone put a port on the global zone's bridge (CreateLink's `uplink`, and a
  persistent uplink re-created at boot)? `broker._create` asks once it found the bridge.
- `Assign`: may the global zone's link be lent to a zone (AssignLink)? `broker._lending` asks
  once it found the link.

The handlers ask about a target only after they resolved it, so a hidden or missing link has
already answered `LinkNotFound` (the no-oracle rule of `broker._rules`): a refusal can only be
about something the caller may see. `Attach` is the one refusal never shown as such: a zone
cannot see the host's bridges, so `broker._create` answers it as `LinkNotFound`, the answer
for a name that exists nowhere.

Limits (`LimitExceeded`) are not authorization: they stay with the broker's counts.
No I/O here, no clock, no table: the inputs are the values below and a `Policy`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, assert_never

from broker._errors import PermissionDenied
from broker._names import GLOBAL_OWN_VIEW, GLOBAL_ZONE, home_zone
from broker._policy import Policy, Principal

__all__ = [
    "Assign",
    "Attach",
    "Held",
    "MethodCall",
    "Subject",
    "Target",
    "UseParent",
    "acting_for",
    "authorize",
    "held",
    "permits",
]

# In the global zone, every authorization beyond reading its own links needs the host view:
# a write from the global zone reaches every zone.
_WITHOUT_ZONE_READ = frozenset({"link.read", "event.read"})
# What a refusal about a global-zone link names: the policy's lists are the host
# administrator's consent to hand the link out, as AssignLink's `link.assign` is.
_HAND_OUT = "link.assign"


class Subject(Protocol):
    """Who asks: its view (its zone, or GLOBAL_OWN_VIEW) and what it holds. A
    `broker._service.Caller` is one, and so is `Held`."""

    @property
    def zone(self) -> str: ...

    @property
    def authorizations(self) -> frozenset[str]: ...


@dataclass(frozen=True, slots=True)
class Held:
    """What a principal holds under a policy: the view its replies are built for and its
    authorizations. Worked out once per connection and policy (the server caches it)."""

    zone: str
    authorizations: frozenset[str]


@dataclass(frozen=True, slots=True)
class MethodCall:
    """Calling a method: it needs `authorization`; `global_only` methods (boot, halt,
    assign, reclaim) are the host's whatever the policy grants a zone."""

    authorization: str
    global_only: bool = False


@dataclass(frozen=True, slots=True)
class UseParent:
    """The global zone's link `name`, of class `cls`, as the parent of a link made in `zone`
    (CreateLink under `zone_policy`). A macvlan, passthru above all, over anything else would
    take another's traffic."""

    cls: str
    name: str
    zone: str


@dataclass(frozen=True, slots=True)
class Attach:
    """A port of `zone` on the global zone's bridge `bridge`: it puts the zone on the host's
    segment. The caller has checked that `bridge` is a bridge that is there."""

    bridge: str
    zone: str


@dataclass(frozen=True, slots=True)
class Assign:
    """Lending the global zone's link `name`, of class `cls`, to a zone (AssignLink): lending
    the host's uplink cuts the host off, so a phys link goes only where the policy says."""

    cls: str
    name: str


Target = MethodCall | UseParent | Attach | Assign


def held(policy: Policy, who: Principal) -> Held:
    """The policy's authorizations for `who`, and its view. A global caller without
    `zone.read` reads the global zone's own links, as `ip link` shows them to any user, and
    can change nothing, whatever else the policy grants it."""
    auths = policy.authorizations(who)
    if who.zone == GLOBAL_ZONE and "zone.read" not in auths:
        return Held(GLOBAL_OWN_VIEW, auths & _WITHOUT_ZONE_READ)
    return Held(who.zone, auths)


def acting_for(zone: str) -> Held:
    """The broker acting on its own for `zone` (a persistent link re-created at boot): it
    calls no method, so it holds nothing; only target rules apply, to the zone."""
    return Held(zone, frozenset())


def authorize(who: Subject, method: str, target: Target, *, policy: Policy) -> None:
    """Return if `who` may do `target` within `method`, else raise PermissionDenied naming
    `method` and the authorization that is missing. `method` is only what the error says:
    what is decided is the target."""
    match target:
        case MethodCall(authorization=needed, global_only=global_only):
            if needed not in who.authorizations or (
                    global_only and home_zone(who.zone) != GLOBAL_ZONE):
                raise PermissionDenied(method, needed)
        # The class names below are the policy's lists' own (assign.phys: phys links the
        # host hands out; attachable bridges), not traits of kinds: a class gets a list of
        # its own in the policy file, not a flag.
        case UseParent(cls=cls, name=name, zone=zone):
            if not ((cls == "phys" and policy.phys_assignable(name))
                    or (cls == "bridge" and policy.bridge_attachable(name, zone))):
                raise PermissionDenied(method, _HAND_OUT)
        case Attach(bridge=bridge, zone=zone):
            if not policy.bridge_attachable(bridge, zone):
                raise PermissionDenied(method, _HAND_OUT)
        case Assign(cls=cls, name=name):
            if cls == "phys" and not policy.phys_assignable(name):
                raise PermissionDenied(method, _HAND_OUT)
        case _:
            assert_never(target)


def permits(who: Subject, method: str, target: Target, *, policy: Policy) -> bool:
    """`authorize` as a yes or no, for a reply that says what the caller could do (the
    writable columns of GetLinkProperties) rather than refusing anything."""
    try:
        authorize(who, method, target, policy=policy)
    except PermissionDenied:
        return False
    return True
