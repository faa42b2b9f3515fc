"""The broker's half of an attachment: the bridge, the zone, the veth, the addresses.

Every step is one or two io.linkbroker calls from the global zone. What ADD makes is found
again by name (`_names`), so undoing it needs nothing remembered outside the broker.
"""

from __future__ import annotations

from clients.cni._names import host_end_name, namespace_inode, namespace_target, zone_name
from clients.cni._spec import (
    E_ATTACHED,
    E_BROKER_REFUSED,
    E_NAMESPACE_TAKEN,
    E_NOT_A_BRIDGE,
    CniError,
    NetConf,
)
from clients.cni._varlink import BrokerError, Connection

TYPE_CHECKING = False  # `typing` costs milliseconds to import: for the checker only
if TYPE_CHECKING:
    from typing import Any

__all__ = [
    "boot_zone",
    "configure_addresses",
    "create_veth",
    "detach",
    "ensure_bridge",
    "refused",
]

GLOBAL = "global"


def refused(exc: BrokerError, doing: str) -> CniError:
    """A broker error the plugin cannot act on, as its own code with the broker's words."""
    return CniError(E_BROKER_REFUSED, f"linkbroker refused to {doing}: {exc.name}", str(exc))


def ensure_bridge(b: Connection, conf: NetConf) -> dict[str, Any]:
    """The global zone's bridge `conf.bridge`, made (up) when missing; brought up if down."""
    try:
        bridge = b.call("GetLink", name=conf.bridge, zone=GLOBAL)["link"]
    except BrokerError as exc:
        if exc.name != "LinkNotFound":
            raise refused(exc, f"look up bridge {conf.bridge}") from None
        try:
            bridge = b.call("CreateLink", link={
                "name": conf.bridge, "class": "bridge", "zone": GLOBAL, "up": True,
                "mtu": conf.mtu} if conf.mtu else {
                "name": conf.bridge, "class": "bridge", "zone": GLOBAL, "up": True})["link"]
        except BrokerError as exc2:
            if exc2.name != "LinkExists":  # another ADD made it meanwhile
                raise refused(exc2, f"create bridge {conf.bridge}") from None
            bridge = b.call("GetLink", name=conf.bridge, zone=GLOBAL)["link"]
    if bridge.get("class") != "bridge":
        raise CniError(E_NOT_A_BRIDGE, f"{conf.bridge} is a {bridge.get('class')} link of "
                       "the global zone, not a bridge")
    if bridge.get("state") == "down":
        bridge = b.call("SetLinkProperties", name=conf.bridge, zone=GLOBAL, up=True)["link"]
    return dict(bridge)


def boot_zone(b: Connection, container_id: str, netns: str) -> bool:
    """Boot CNI_NETNS as the container's zone; False when it already is (a second network of
    the same container). Marked with the container ID (`cni_container`)."""
    zone = zone_name(container_id)
    try:
        b.call("BootZone", name=zone, attach=False, cni_container=container_id,
               **namespace_target(netns))
        return True
    except BrokerError as exc:
        if exc.name == "KernelError":
            raise CniError(3, "the container's network namespace does not exist",
                           str(exc)) from None
        if exc.name != "ZoneExists":
            raise refused(exc, f"boot zone {zone}") from None
        other = str(exc.parameters.get("name", ""))
    if other == zone:
        existing = b.call("GetZone", name=zone)["zone"]
        if existing.get("netns_inode") == namespace_inode(netns):
            return False
        raise CniError(E_NAMESPACE_TAKEN, f"zone {zone} exists for another namespace")
    raise CniError(E_NAMESPACE_TAKEN, f"CNI_NETNS is already the zone {other}", netns)


def create_veth(b: Connection, conf: NetConf, container_id: str, ifname: str
                ) -> dict[str, Any]:
    """The veth: CNI_IFNAME in the container's zone, its peer an up port of the bridge in
    the global zone (LinkSpec.uplink), both ends made in place by one kernel message."""
    spec: dict[str, Any] = {
        "name": ifname, "class": "veth", "zone": zone_name(container_id), "up": True,
        "peer": host_end_name(container_id, ifname), "uplink": conf.bridge,
    }
    if conf.mtu:
        spec["mtu"] = conf.mtu
    try:
        return dict(b.call("CreateLink", link=spec)["link"])
    except BrokerError as exc:
        if exc.name == "LinkExists":
            raise CniError(E_ATTACHED, f"{ifname} of container {container_id} is already "
                           "attached (or its host end exists)", str(exc)) from None
        raise refused(exc, f"create {ifname}") from None


def _gateway(ipam: dict[str, Any], dst: str) -> str | None:
    v6 = ":" in dst
    for ip in ipam.get("ips") or []:
        if ip.get("gateway") and (":" in ip["address"]) == v6:
            return str(ip["gateway"])
    return None


def configure_addresses(b: Connection, zone: str, ifname: str, ipam: dict[str, Any]) -> None:
    """The address step: IPAM's addresses on the sandbox link and its routes through it, by
    the broker's AddAddress and AddRoute into the zone (never persistent: the zone is the
    container's and goes with it)."""
    try:
        for ip in ipam.get("ips") or []:
            b.call("AddAddress", link=ifname, zone=zone, address=ip["address"])
        for route in ipam.get("routes") or []:
            b.call("AddRoute", destination=route["dst"], zone=zone, link=ifname,
                   gateway=route.get("gw") or _gateway(ipam, route["dst"]))
    except BrokerError as exc:
        raise refused(exc, f"configure addresses on {ifname}") from None
    except (KeyError, TypeError):
        raise CniError(7, "the IPAM result's ips or routes are malformed") from None


def _delete(b: Connection, name: str, zone: str) -> None:
    try:
        b.call("DeleteLink", name=name, zone=zone)
    except BrokerError as exc:
        if exc.name not in ("LinkNotFound", "ZoneNotFound"):
            raise refused(exc, f"delete {name}") from None


def detach(b: Connection, container_id: str, ifname: str, *, halt: bool = True) -> None:
    """Remove the attachment; anything already gone is success (DEL never fails on that).

    The veth is deleted first (HaltZone would try to send a global-owned link home, as a
    lent one); the zone is halted when that was its last link, and stays for the container's
    other networks otherwise."""
    zone = zone_name(container_id)
    host = host_end_name(container_id, ifname)
    try:
        links = b.call("GetZone", name=zone)["zone"].get("links") or []
    except BrokerError as exc:
        if exc.name != "ZoneNotFound":
            raise refused(exc, f"read zone {zone}") from None
        _delete(b, host, GLOBAL)  # the zone went with its namespace: a host end left over?
        return
    if ifname in links:
        _delete(b, ifname, zone)  # the veth: both ends
    else:
        _delete(b, host, GLOBAL)  # renamed inside the container: by its host end
    if halt and set(links) <= {ifname}:
        try:
            b.call("HaltZone", name=zone)
        except BrokerError as exc:
            if exc.name != "ZoneNotFound":
                raise refused(exc, f"halt zone {zone}") from None


def undo_quietly(b: Connection, container_id: str, ifname: str, booted: bool) -> None:
    """Best-effort undo of a failed ADD (the error being reported matters more)."""
    try:  # noqa: SIM105 - contextlib is an import the plugin does without
        detach(b, container_id, ifname, halt=booted)
    except Exception:
        pass  # the first error is the one the runtime must see
