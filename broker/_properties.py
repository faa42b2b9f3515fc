"""GetLinkProperties and ResetLinkProperties: dladm's show-linkprop and reset-linkprop.

The table of properties is pure (broker._linkprops); this shell finds the link (by name or
ID, with the no-oracle rule), reads the few values the link table does not keep from the
kernel (one RTM_GETLINK: txqueuelen, promisc, alias), and resets by way of
SetLinkProperties, so a reset obeys exactly the rules a set does.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable

from broker import _linkedit as linkedit
from broker._errors import InvalidParameter
from broker._linkprops import RESETTABLE, applies, rows
from broker._names import GLOBAL_ZONE, home_zone
from broker._params import (
    GetLinkPropertiesParams,
    ResetLinkPropertiesParams,
    SetLinkPropertiesParams,
)
from broker._rtnl import get_message
from broker._rules import find_link_by
from broker._table import LinkRecord
from broker._types import LinkPropertiesReply, LinkReply

TYPE_CHECKING = False
if TYPE_CHECKING:
    from broker._service import Broker, Caller

__all__ = ["get_link_properties", "kernel_values", "reset_link_properties"]

RTM_NEWLINK = 16
IFLA_TXQLEN, IFLA_IFALIAS = 13, 20
IFF_PROMISC = 0x100
_NLMSG = struct.Struct("=IHHII")
_IFINFO = struct.Struct("=BxHiII")
_RTA = struct.Struct("=HH")
# What a reset puts back, as SetLinkProperties parameters.
_DEFAULTS: dict[str, tuple[str, object]] = {
    "mtu": ("mtu", 1500), "state": ("up", False), "master": ("master", ""),
    "txqueuelen": ("txqueuelen", 1000), "promisc": ("promisc", False), "alias": ("alias", ""),
}


def kernel_values(replies: Iterable[bytes]) -> dict[str, str]:
    """txqueuelen, promisc and alias from the first RTM_NEWLINK among `replies`."""
    for msg in replies:
        length, msg_type = _NLMSG.unpack_from(msg)[:2]
        if msg_type != RTM_NEWLINK or len(msg) < _NLMSG.size + _IFINFO.size:
            continue
        flags = _IFINFO.unpack_from(msg, _NLMSG.size)[3]
        found = {"promisc": "on" if flags & IFF_PROMISC else "off", "alias": ""}
        end, offset = min(length, len(msg)), _NLMSG.size + _IFINFO.size
        while offset + _RTA.size <= end:
            rta_len, rta_type = _RTA.unpack_from(msg, offset)
            if rta_len < _RTA.size or offset + rta_len > end:
                break
            payload = msg[offset + _RTA.size:offset + rta_len]
            if rta_type == IFLA_TXQLEN and len(payload) >= 4:
                found["txqueuelen"] = str(struct.unpack_from("=I", payload)[0])
            elif rta_type == IFLA_IFALIAS:
                found["alias"] = payload.rstrip(b"\0").decode(errors="replace")
            offset += (rta_len + 3) & ~3
        return found
    return {}


def _speed_duplex(link: LinkRecord) -> dict[str, str]:
    """A phys link's speed and duplex from sysfs, which shows the host's namespace: read for
    the global zone's phys links only ("--" for a lent one, and where the driver reports
    none: -1 or EINVAL for a virtual NIC)."""
    found = {"speed": "--", "duplex": "--"}
    if link.zone != GLOBAL_ZONE or "/" in link.name or link.name in (".", ".."):
        return found
    for key in found:
        try:
            with open(f"/sys/class/net/{link.name}/{key}", encoding="ascii") as f:
                value = f.read().strip()
        except (OSError, UnicodeDecodeError):
            continue
        if value and value not in ("-1", "unknown", "4294967295"):
            found[key] = value
    return found


def _find(broker: Broker, caller: Caller, name: str | None, zone: str | None,
          link_id: int | None) -> LinkRecord:
    return find_link_by(caller.zone, name, zone, broker.links, broker.zones, link_id=link_id)


async def get_link_properties(broker: Broker, caller: Caller, p: GetLinkPropertiesParams
                              ) -> LinkPropertiesReply:
    link = _find(broker, caller, p.name, p.zone, p.id)
    if p.properties is not None and any(applies(n, link.cls) is None for n in p.properties):
        raise InvalidParameter("properties")
    kernel: dict[str, str] = {}
    rt = broker.runtimes.get(link.zone)
    if link.present and link.ifindex is not None and rt is not None:
        ifindex = link.ifindex
        kernel = kernel_values(await rt.netlink.request(
            lambda seq: get_message(seq, index=ifindex), f"read the properties of {link.name}"))
    if link.cls == "phys":
        kernel.update(_speed_duplex(link))
    writes = "link.write" in caller.authorizations
    owner = writes and caller.zone in (GLOBAL_ZONE, link.owner)
    borrower = writes and link.onloan and link.zone == home_zone(caller.zone)
    view = broker.view(caller.zone, link)
    return LinkPropertiesReply(properties=rows(view, kernel, owner=owner, borrower=borrower,
                                               only=p.properties))


async def reset_link_properties(broker: Broker, caller: Caller, p: ResetLinkPropertiesParams
                                ) -> LinkReply:
    """Put the named properties back to their defaults: a SetLinkProperties of those
    defaults, with its permissions and its errors."""
    link = _find(broker, caller, p.name, p.zone, p.id)
    if not p.properties or any(n not in RESETTABLE or applies(n, link.cls) is None
                               for n in p.properties):
        raise InvalidParameter("properties")
    values = dict(_DEFAULTS[n] for n in p.properties)
    if "txqueuelen" in values:  # the class's own default
        prop = applies("txqueuelen", link.cls)
        assert prop is not None
        values["txqueuelen"] = int(prop.default_for(link.cls))
    return await linkedit.set_link_properties(broker, caller, SetLinkPropertiesParams(
        name=p.name, id=p.id, zone=p.zone, **values))  # type: ignore[arg-type]
