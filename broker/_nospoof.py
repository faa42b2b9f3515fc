"""The `protection` link property (dladm's): what the host lets through from a zone's link.

- `mac-nospoof`: frames must carry the link's MAC (the one it had when protection was set)
  as their source;
- `ip-nospoof`: IPv4 and ARP senders, and IPv6 sources, must be in `allowed_ips` (IPv6
  link-local and the unspecified address stay allowed: neighbour discovery needs them);
- `restricted`: only IPv4, IPv6 and ARP frames.

It is enforced where the zone cannot reach: the host's network namespace. A zone's veth whose
other end is in the global zone (an uplink's port on a host bridge, or a veth the global zone
made into the zone) has every frame it sends enter the host through that end, so one nftables
netdev chain, hooked at that end's ingress, drops what the property forbids before the bridge
or the host's stack sees it. A zone with CAP_NET_ADMIN in its own namespace changes its
addresses as it likes; its spoofed frames die in the host, counted (`counter` on each rule).

All chains live in one table, `netdev linkbroker`, and the table is rebuilt whole, in one
atomic `nft -f` transaction, from the store every time something changes (a property set,
a protected link gone, a zone booted, the broker started): no incremental state to drift, and
a rebuilt table after `kill -9` is the same table. Links of other classes (macvlans, lent
physical links, veths between two zones) have no end in the host: they are `Unsupported`.

Only the global zone sets it (`link.protect`, which the defaults give only to the host's
administrator); a policy may grant it to a zone, which then sets it on its own links.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import logging
import re
from collections.abc import Iterable

import msgspec

from broker._errors import (
    InvalidAddress,
    InvalidParameter,
    KernelError,
    LinkNotFound,
    Unsupported,
)
from broker._names import GLOBAL_ZONE
from broker._params import GetLinkProtectionParams, SetLinkProtectionParams
from broker._rules import asked_for, find_link_by
from broker._table import LinkRecord
from broker._tasks import Stage, owner
from broker._types import Protection, ProtectionReply
from broker.kinds import KINDS

TYPE_CHECKING = False
if TYPE_CHECKING:
    from broker._service import Broker, Caller

__all__ = ["PROTECTIONS", "TABLE", "forget", "get_link_protection", "moved", "rebuild",
           "ruleset", "set_link_protection"]

log = logging.getLogger("linkbroker")

PROTECTIONS = ("mac-nospoof", "ip-nospoof", "restricted")
TABLE = "linkbroker"
NFT = "nft"
# What nft may read as a device name inside quotes: link names allow more (a '"' even).
_SAFE_DEVICE = re.compile(r"[A-Za-z0-9_.@+-]{1,15}")
_MAC = re.compile(r"[0-9a-f]{2}(:[0-9a-f]{2}){5}")
_locks: dict[int, asyncio.Lock] = {}


class ProtectionConfig(msgspec.Struct, frozen=True):
    """A link's property as the store keeps it (by link ID)."""

    protection: list[str]
    allowed_ips: list[str]
    mac: str | None = None


# ---- the rules, pure ---------------------------------------------------------------------------


def _set(items: Iterable[str]) -> str:
    return "{ " + ", ".join(items) + " }"


def chain_rules(cfg: ProtectionConfig) -> list[str]:
    """The chain's rules for one link, each counting what it drops; the comment says which
    check it is (mac, restricted, ip, arp, ip6), for whoever reads the counters."""
    rules: list[str] = []
    if "mac-nospoof" in cfg.protection and cfg.mac is not None:
        rules.append(f'ether saddr != {cfg.mac} counter drop comment "mac"')
    if "restricted" in cfg.protection:
        rules.append('meta protocol != { ip, ip6, arp } counter drop comment "restricted"')
    if "ip-nospoof" in cfg.protection:
        nets = [ipaddress.ip_network(x) for x in cfg.allowed_ips]
        v4 = [str(n) for n in nets if n.version == 4]
        v6 = ["fe80::/10", "::", *(str(n) for n in nets if n.version == 6)]
        if v4:
            rules.append(f'meta protocol ip ip saddr != {_set(v4)} counter drop comment "ip"')
            rules.append(f"meta protocol arp arp saddr ip != {_set(v4)} counter drop "
                         'comment "arp"')
        else:
            rules.append('meta protocol ip counter drop comment "ip"')
            rules.append('meta protocol arp counter drop comment "arp"')
        rules.append(f'meta protocol ip6 ip6 saddr != {_set(v6)} counter drop comment "ip6"')
    return rules


def ruleset(chains: Iterable[tuple[int, str, ProtectionConfig]]) -> str:
    """The whole table: one chain per protected link (ID, host-side device, property).
    The leading add and delete make the transaction replace whatever table was there."""
    out = [f"table netdev {TABLE}", f"delete table netdev {TABLE}"]
    chains = [c for c in chains if _SAFE_DEVICE.fullmatch(c[1])]
    if not chains:
        return "\n".join(out) + "\n"  # nothing protected: no table at all
    out.append(f"table netdev {TABLE} {{")
    for link_id, device, cfg in chains:
        out.append(f"  chain link{link_id} {{")
        out.append(f'    type filter hook ingress device "{device}" priority -500; '
                   "policy accept;")
        out.extend(f"    {rule}" for rule in chain_rules(cfg))
        out.append("  }")
    out.append("}")
    return "\n".join(out) + "\n"


def check(protection: list[str], allowed_ips: list[str] | None) -> tuple[list[str], list[str]]:
    """The property's values, checked and normalized (InvalidParameter / InvalidAddress)."""
    if any(p not in PROTECTIONS for p in protection) or len(set(protection)) != len(
            protection):
        raise InvalidParameter("protection")
    allowed: list[str] = []
    for text in allowed_ips or []:
        try:
            net = ipaddress.ip_network(text, strict=True)
        except ValueError as exc:
            raise InvalidAddress("allowed_ips", text, str(exc)) from None
        allowed.append(str(net))
    return sorted(protection, key=PROTECTIONS.index), allowed


# ---- the shell ---------------------------------------------------------------------------------


def host_end(broker: Broker, link: LinkRecord) -> LinkRecord | None:
    """The end in the global zone through which the link's frames enter the host."""
    peer = broker.links.get(link.peer_id)
    if not KINDS[link.cls].paired or link.zone == GLOBAL_ZONE or peer is None or (
            peer.zone != GLOBAL_ZONE):
        return None
    return peer


def _configs(broker: Broker) -> dict[int, ProtectionConfig]:
    return {link_id: msgspec.msgpack.decode(body, type=ProtectionConfig)
            for link_id, body in broker.store.protections()}


async def _nft(text: str) -> None:
    try:
        proc = await asyncio.create_subprocess_exec(
            NFT, "-f", "-", stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE)
    except FileNotFoundError:
        raise Unsupported("protection: nft (nftables) is not installed on the host") from None
    _, err = await proc.communicate(text.encode())
    if proc.returncode != 0:
        first = err.decode(errors="replace").strip().splitlines()[:1]
        raise KernelError(errno.EINVAL, f"nft: {first[0] if first else 'failed'}")


async def rebuild(broker: Broker) -> None:
    """Replace the host's protection table with what the store says, in one transaction."""
    async with _locks.setdefault(id(broker), asyncio.Lock()):
        chains = []
        for link_id, cfg in sorted(_configs(broker).items()):
            link = broker.links.get(link_id)
            end = host_end(broker, link) if link is not None else None
            if end is not None:
                chains.append((link_id, end.name, cfg))
        await _nft(ruleset(chains))


def forget(broker: Broker, ids: list[int]) -> None:
    """Links gone (or moved): the table is rebuilt without them. Called from synchronous
    code, so the rebuild runs as a task of its own, held by the daemon's task owner
    (broker._tasks, stage HOST): a failure is logged, and shutdown cancels a rebuild still
    running only after the zones' tasks, whose halts may still ask for one."""
    if not ids:
        return
    try:
        tasks = owner()
    except RuntimeError:  # no event loop: nothing can run the rebuild
        return
    tasks.spawn(_rebuild_logged(broker), name="protection rebuild", stage=Stage.HOST)


def moved(broker: Broker, link: LinkRecord) -> None:
    """A lent link went home or out again: its chain follows (only a zone's end has one),
    so a protected link's rules never filter the host's own use of it."""
    if any(i == link.id for i, _ in broker.store.protections()):
        forget(broker, [link.id])


async def _rebuild_logged(broker: Broker) -> None:
    """The expected failures are a warning; anything else the owner logs as a failed task."""
    try:
        await rebuild(broker)
    except (KernelError, Unsupported) as exc:
        log.warning("protection rules not rebuilt: %s", exc)


def _view(link: LinkRecord, cfg: ProtectionConfig | None) -> Protection:
    if cfg is None:
        return Protection(link=link.name, zone=link.zone, protection=[], allowed_ips=[])
    return Protection(link=link.name, zone=link.zone, protection=list(cfg.protection),
                      allowed_ips=list(cfg.allowed_ips), mac=cfg.mac)


async def set_link_protection(broker: Broker, caller: Caller, p: SetLinkProtectionParams
                              ) -> ProtectionReply:
    protection, allowed = check(p.protection, p.allowed_ips)
    link = find_link_by(caller.zone, p.name, p.zone, broker.links, broker.zones, link_id=p.id)
    end = host_end(broker, link)
    if end is None:
        raise Unsupported(f"protection on link {link.name}: only a zone's veth whose other "
                          "end is in the global zone can be protected from the host")
    if not _SAFE_DEVICE.fullmatch(end.name):
        raise Unsupported(f"protection on link {link.name}: its host end's name cannot be "
                          "used in an nftables rule")
    async with broker.locked(link.zone, GLOBAL_ZONE):
        if broker.links.get(link.id) is not link:
            raise LinkNotFound(asked_for(p.name, p.id))
        mac = link.mac.lower() if link.mac and _MAC.fullmatch(link.mac.lower()) else None
        if "mac-nospoof" in protection and mac is None:
            raise KernelError(errno.ENODEV, f"link {link.name} has no MAC address to keep")
        cfg = ProtectionConfig(protection, allowed, mac) if protection else None
        before = _configs(broker).get(link.id)
        broker.store.put_protection(link.id, None if cfg is None else msgspec.msgpack.encode(cfg))
        try:
            await rebuild(broker)
        except BaseException:  # the kernel kept the old table: so does the store
            broker.store.put_protection(
                link.id, None if before is None else msgspec.msgpack.encode(before))
            raise
        return ProtectionReply(protection=_view(link, cfg))


async def get_link_protection(broker: Broker, caller: Caller, p: GetLinkProtectionParams
                              ) -> ProtectionReply:
    link = find_link_by(caller.zone, p.name, p.zone, broker.links, broker.zones, link_id=p.id)
    return ProtectionReply(protection=_view(link, _configs(broker).get(link.id)))
