"""Who may do what: the authorization defaults, the policy file, and the limits it sets.

The rules of this module, in the order they are applied:

1. A caller is a `Principal`: its zone, its host uid and gids (SO_PEERCRED), and whether it is
   root of its zone. Nothing else about it counts.
2. Defaults (the contract): an administrator of the host (a caller in the global zone holding
   CAP_NET_ADMIN in the initial user namespace, whatever its uid) holds every authorization;
   root of another zone holds `link.read`, `link.write`, `addr.write` and `event.read`;
   anyone else holds
   `link.read` and `event.read`. uid 0 alone administers nothing on the host: a root process
   stripped of its capabilities, or a `--network host` container without CAP_NET_ADMIN, is
   an ordinary reader.
3. The policy file's `[[rule]]` tables are applied in file order to the callers they match; each
   removes its `revoke` list, then adds its `grant` list, so a later rule wins over an earlier
   one and over the defaults.
4. Link limits, assignable phys links and attachable global bridges are plain lookups; each
   defaults to the cautious answer (a booted zone holds at most DEFAULT_LINKS_PER_ZONE links
   unless the file says otherwise, the global zone is unlimited; at most 16 ports on the
   host's bridges and 16 macvtaps per zone; nothing assignable, nothing attachable).

`Policy` is pure and frozen, as the table core is: it answers questions, it never reads a file,
the clock or the kernel. Reading and parsing the policy file is `broker._policy_file`'s.
`docs/policy.example.toml` documents the format.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from broker._names import GLOBAL_ZONE, validate_link_name, validate_zone_name

__all__ = [
    "ALL_AUTHORIZATIONS",
    "ANY_ZONE",
    "AUTHORIZATIONS",
    "DEFAULT_LINKS_PER_ZONE",
    "DEFAULT_POLICY",
    "Policy",
    "Principal",
    "Rule",
    "check_authorizations",
    "check_id",
    "check_limit",
    "default_authorizations",
    "names_of",
]

AUTHORIZATIONS = ("link.read", "link.write", "link.assign", "zone.admin", "event.read",
                  "zone.read", "addr.write", "link.protect")
ANY_ZONE = "*"
DEFAULT_LINKS_PER_ZONE = 1024
"""Links a booted zone may hold when the file sets no limit (adopted links count): bounds
what one zone can make the broker remember and reconcile (issue 12, finding 5)."""
"""Spelling of "any zone" in the policy file, where the format allows it."""

_MAX_ID = 0xFFFF_FFFE  # uid_t/gid_t; (uid_t)-1 means "no id" to the kernel, so it is no uid
ALL_AUTHORIZATIONS = frozenset(AUTHORIZATIONS)
# addr.write (addresses and routes) is granted by default wherever link.write is.
_ZONE_ROOT = frozenset({"link.read", "link.write", "addr.write", "event.read"})
_ANYONE = frozenset({"link.read", "event.read"})


@dataclass(frozen=True, slots=True)
class Principal:
    """A caller as the broker sees it, the only input of an authorization decision.

    uid and gids are the host's view (SO_PEERCRED): a zone with a user namespace of its own
    shows up with its mapped host ids, so policy rules name host ids too. `zone_root` is worked
    out by the shell (`broker._userns`) because it needs /proc; here it is just a fact.
    """

    zone: str
    uid: int
    gids: frozenset[int] = frozenset()
    zone_root: bool = False
    # CAP_NET_ADMIN in the initial user namespace (broker._peer.is_host_admin).
    host_admin: bool = False

    def __post_init__(self) -> None:
        validate_zone_name(self.zone, allow_global=True)
        check_id(self.uid, "uid")
        for gid in self.gids:
            check_id(gid, "gid")


@dataclass(frozen=True, slots=True)
class Rule:
    """One `[[rule]]`: who it matches (None matches anyone) and what it grants and revokes.

    A rule that both grants and revokes the same authorization is refused: which one wins would
    depend on an order the reader of the file cannot see.
    """

    grant: frozenset[str] = frozenset()
    revoke: frozenset[str] = frozenset()
    zone: str | None = None
    uid: int | None = None
    gid: int | None = None
    root: bool | None = None

    def __post_init__(self) -> None:
        check_authorizations(self.grant)
        check_authorizations(self.revoke)
        if both := self.grant & self.revoke:
            raise ValueError(f"{names_of(both)} both granted and revoked by one rule")
        if self.zone is not None:
            validate_zone_name(self.zone, allow_global=True)
        if self.uid is not None:
            check_id(self.uid, "uid")
        if self.gid is not None:
            check_id(self.gid, "gid")

    def matches(self, who: Principal) -> bool:
        return (
            (self.zone is None or self.zone == who.zone)
            and (self.uid is None or self.uid == who.uid)
            and (self.gid is None or self.gid in who.gids)
            and (self.root is None or self.root == who.zone_root)
        )


def default_authorizations(who: Principal) -> frozenset[str]:
    """The contract's defaults, before any rule: an administrator of the host may do
    everything; root of any other zone manages its own links."""
    if who.zone == GLOBAL_ZONE:
        return ALL_AUTHORIZATIONS if who.host_admin else _ANYONE
    return _ZONE_ROOT if who.zone_root else _ANYONE


@dataclass(frozen=True, slots=True)
class Policy:
    """The parsed policy file; `Policy()` is the policy of a host without one.

    Lookups are stored as frozensets of pairs rather than dicts so a Policy stays hashable and
    compares equal however its file was ordered.
    """

    rules: tuple[Rule, ...] = ()
    links_per_zone: int | None = None
    zone_link_limits: frozenset[tuple[str, int]] = frozenset()
    assignable_phys: frozenset[str] = frozenset()
    attachable_bridges: frozenset[tuple[str, str]] = frozenset()
    # Kernel objects every zone shares: a bridge holds at most 1,024 ports (BR_MAX_PORTS),
    # and each macvtap is a character device in the host's /dev.
    host_bridge_ports_per_zone: int = 16
    macvtaps_per_zone: int = 16

    def __post_init__(self) -> None:
        if min(self.host_bridge_ports_per_zone, self.macvtaps_per_zone) < 0:
            raise ValueError("a limit must not be negative")
        if self.links_per_zone is not None:
            check_limit(self.links_per_zone)
        seen: set[str] = set()
        for zone, limit in self.zone_link_limits:
            validate_zone_name(zone, allow_global=True)
            check_limit(limit)
            if zone in seen:
                raise ValueError(f"zone {zone!r} has two link limits")
            seen.add(zone)
        for name in self.assignable_phys:
            validate_link_name(name)
        for bridge, zone in self.attachable_bridges:
            validate_link_name(bridge)
            if zone != ANY_ZONE:
                validate_zone_name(zone)

    def authorizations(self, who: Principal) -> frozenset[str]:
        held = set(default_authorizations(who))
        for rule in self.rules:
            if rule.matches(who):
                held -= rule.revoke
                held |= rule.grant
        return frozenset(held)

    def link_limit(self, zone: str) -> int | None:
        """How many links `zone` may hold; None is no limit.

        `links_per_zone` is for zones the global zone booted, not for the global zone itself,
        which holds the host's own links; `[limits.zones]` can still name `global`.
        """
        for name, limit in self.zone_link_limits:
            if name == zone:
                return limit
        return None if zone == GLOBAL_ZONE else self.links_per_zone

    def links_allowed(self, zone: str) -> int | None:
        """The limit the broker enforces: the file's (`link_limit`), else
        DEFAULT_LINKS_PER_ZONE for a booted zone; the global zone only when the file names it."""
        limit = self.link_limit(zone)
        if limit is None and zone != GLOBAL_ZONE:
            return DEFAULT_LINKS_PER_ZONE
        return limit

    def phys_assignable(self, link_name: str) -> bool:
        """Whether a phys link may be lent to a zone; none may by default, since lending the
        host's uplink cuts the host off."""
        return link_name in self.assignable_phys

    def bridge_attachable(self, bridge_name: str, zone: str) -> bool:
        """Whether `zone` may attach ports to the global zone's bridge `bridge_name`.

        The global zone owns its bridges, so it always may; other zones only where the file
        says so, since a port on a host bridge puts the zone on the host's segment.
        """
        if zone == GLOBAL_ZONE:
            return True
        return (bridge_name, zone) in self.attachable_bridges or (
            bridge_name,
            ANY_ZONE,
        ) in self.attachable_bridges


DEFAULT_POLICY = Policy()


# --- checks shared by the dataclasses and the policy file's parser ---------------------------


def names_of(auths: Iterable[str]) -> str:
    return ", ".join(repr(a) for a in sorted(auths))


def check_authorizations(auths: Iterable[str]) -> None:
    if unknown := set(auths) - ALL_AUTHORIZATIONS:
        raise ValueError(
            f"unknown authorization {names_of(unknown)} (known: {', '.join(AUTHORIZATIONS)})"
        )


def check_id(value: int, what: str) -> None:
    if not 0 <= value <= _MAX_ID:
        raise ValueError(f"{what} {value} is out of range 0..{_MAX_ID}")


def check_limit(value: int) -> None:
    if value < 0:
        raise ValueError(f"a link limit must not be negative, got {value}")
