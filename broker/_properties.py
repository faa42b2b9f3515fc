"""GetLinkProperties and ResetLinkProperties: dladm's show-linkprop and reset-linkprop.

The table of properties is pure (broker._linkprops); this shell finds the link (by name or
ID, with the no-oracle rule), reads the few values the link table does not keep from the
kernel (one RTM_GETLINK: txqueuelen, promisc, alias), and resets by way of
SetLinkProperties, so a reset obeys exactly the rules a set does.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from typing import Any

from broker import _linkedit as linkedit
from broker._authorize import MethodCall, permits
from broker._errors import InvalidParameter
from broker._linkdump import newlink_attrs
from broker._linkprops import RESETTABLE, applies, parameter, rows
from broker._names import GLOBAL_ZONE, home_zone
from broker._params import (
    GetLinkPropertiesParams,
    ResetLinkPropertiesParams,
    SetLinkPropertiesParams,
)
from broker._rtnl import IFF_PROMISC, get_message
from broker._rules import find_link_by
from broker._table import LinkRecord
from broker._types import LinkPropertiesReply, LinkReply

TYPE_CHECKING = False
if TYPE_CHECKING:
    from broker._service import Broker, Caller

__all__ = ["get_link_properties", "kernel_values", "reset_link_properties"]

IFLA_TXQLEN, IFLA_IFALIAS = 13, 20
# SetLinkProperties' entry of the dispatch table (which imports this module, so it cannot be
# imported here); tests/unit/test_authorize.py checks the two agree.
SET_PROPERTIES = MethodCall("link.write")


def kernel_values(replies: Iterable[bytes]) -> dict[str, str]:
    """txqueuelen, promisc and alias from the first RTM_NEWLINK among `replies`."""
    for msg in replies:
        found = newlink_attrs(msg)
        if found is None:
            continue
        flags, attrs = found
        values = {"promisc": "on" if flags & IFF_PROMISC else "off",
                  "alias": bytes(attrs.get(IFLA_IFALIAS, b"")).rstrip(b"\0").decode(
                      errors="replace")}
        txqlen = attrs.get(IFLA_TXQLEN)
        if txqlen is not None and len(txqlen) == 4:
            values["txqueuelen"] = str(struct.unpack("=I", txqlen)[0])
        return values
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
    if applies("speed", link.cls) is not None:  # the table's classes with a driver's speed
        kernel.update(_speed_duplex(link))
    # Whether the caller could SetLinkProperties at all: the server's own question.
    writes = permits(caller, "SetLinkProperties", SET_PROPERTIES, policy=broker.policy)
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
    values: dict[str, Any] = {}
    for name in p.properties:
        prop = applies(name, link.cls)
        assert prop is not None  # checked above
        key, value = parameter(name, prop.default_for(link.cls))
        values[key] = value
    return await linkedit.set_link_properties(broker, caller, SetLinkPropertiesParams(
        name=p.name, id=p.id, zone=p.zone, **values))
