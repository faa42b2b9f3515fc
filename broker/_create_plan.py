"""What creating a link asks of the kernel and of the table, decided without doing it (issue 16).

h11's lesson again: `plan_create` turns a validated spec and the rows it names (parent,
master, the uplink's bridge) into a `CreatePlan`: the RTM_NEWLINK as plain data, which
zone's netlink socket sends it, where the kernel is to place the link and its veth peer,
and what must follow it (an ioctl-made TAP configured, an uplink's host end joined to its
bridge). `records` turns what the kernel answered into the table rows to commit. Neither
touches a socket, a namespace fd, the store or the table: broker._create.make is the
executor (namespace fds from the runtimes, the intent, the worker job, the commit), and
tests/unit/test_create_plan.py checks the decisions as a table.

Where the message goes: to the parent's zone when the parent lives elsewhere (a macvlan over
the host's NIC, made for a zone): the kernel resolves IFLA_LINK in the sender's namespace and
places the new link straight into the target (IFLA_NET_NS_FD), so nothing is half-made in a
namespace it does not belong to. A veth's peer is placed by its own IFLA_NET_NS_FD inside the
peer info. The kernel ignores IFLA_MASTER inside the peer info, so an uplink's host end joins
its bridge in a second step.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from broker._linkdump import KernelLink
from broker._names import GLOBAL_ZONE
from broker._table import LinkRecord
from broker._types import LinkSpec
from broker.kinds import KINDS, CreateRequest, Resolved, classify

__all__ = ["CreatePlan", "plan_create", "records", "row_from_kernel"]

# Link fields a kernel reply may not carry back (not decoded for every kind): as asked.
_AS_ASKED = ("mode", "vni", "remote", "local", "vid", "protocol", "miimon", "ttl")


@dataclass(frozen=True, slots=True)
class CreatePlan:
    """One CreateLink, decided. Zones are named; the executor turns them into fds."""

    # The RTM_NEWLINK (or the TAP ioctl) as plain data; a veth's peer attributes are
    # complete but for the peer's namespace fd (`peer_in`).
    request: CreateRequest
    # The zone whose netlink socket sends the request.
    send_from: str
    # The zone the kernel places the new link into when it is sent from another one.
    place_in: str | None
    # The zone a veth's peer goes to, when it is not the link's own.
    peer_in: str | None
    # The (zone, name)s about to exist: the intent written before the kernel is asked.
    names: tuple[tuple[str, str], ...]
    # Properties set after an ioctl made a TAP (the ioctl takes none); empty otherwise.
    configure: dict[str, Any] = field(default_factory=dict)
    # The ifindex of the host bridge an uplink's host end joins after creation.
    attach_peer_to: int | None = None


def plan_create(spec: LinkSpec, zone: str, peer_zone: str, *, parent: LinkRecord | None,
                master: LinkRecord | None, peer_master: LinkRecord | None) -> CreatePlan:
    """Decide one create. `spec` is validated and the names free; `parent` and `master`
    are the rows `spec.parent`/`spec.master` name (already resolved and checked),
    `peer_master` the host bridge an uplink's peer joins."""
    kind = KINDS[spec.class_]
    request = kind.request(spec, Resolved(
        parent_ifindex=parent.ifindex if parent else None,
        master_ifindex=master.ifindex if master else None))
    attrs = dict(request.attrs)
    if spec.mtu is not None:
        attrs["mtu"] = spec.mtu
    if spec.mac is not None:
        attrs["address"] = spec.mac
    if spec.up:
        attrs["state"] = "up"
    if master is not None:
        attrs["master"] = master.ifindex
    if spec.peer is not None:
        attrs["peer"] = dict(attrs["peer"])
        if spec.mtu is not None:
            attrs["peer"]["mtu"] = spec.mtu
    made_elsewhere = parent is not None and parent.zone != zone
    configure: dict[str, Any] = {}
    if request.ioctl_tap and (spec.mtu or spec.mac or spec.up or master):
        configure = {k: v for k, v in attrs.items() if k in ("mtu", "address", "master",
                                                              "state")}
    names = ((zone, spec.name),) + (((peer_zone, spec.peer),) if spec.peer else ())
    return CreatePlan(
        request=CreateRequest(request.kind, attrs, request.ioctl_tap),
        send_from=parent.zone if made_elsewhere and parent is not None else zone,
        place_in=zone if made_elsewhere else None,
        peer_in=peer_zone if spec.peer is not None and peer_zone != zone else None,
        names=names, configure=configure,
        attach_peer_to=peer_master.ifindex if peer_master is not None and spec.peer else None,
    )


def records(spec: LinkSpec, zone: str, peer_zone: str, owner: str, *, made: KernelLink,
            peer_made: KernelLink | None, ids: tuple[int, int | None],
            parent: LinkRecord | None, master: LinkRecord | None,
            peer_master: LinkRecord | None) -> list[LinkRecord]:
    """The table rows a create commits: the link as the kernel made it (its class and the
    options the reply does not carry as asked), and a veth's peer, the two naming each
    other. A link the global zone makes in a zone remembers its name for coming home."""
    link = row_from_kernel(zone, owner, made, ids[0])
    link.cls = spec.class_
    for name in _AS_ASKED:
        if getattr(link, name) is None:
            setattr(link, name, getattr(spec, name))
    link.persistent = bool(spec.persistent)
    link.parent_id = parent.id if parent else None
    link.master_id = master.id if master else None
    if owner == GLOBAL_ZONE and zone != GLOBAL_ZONE:
        link.home_name = spec.name
    out = [link]
    if peer_made is not None and ids[1] is not None:
        peer = row_from_kernel(peer_zone, owner, peer_made, ids[1])
        peer.persistent = link.persistent
        peer.peer_id, link.peer_id = link.id, peer.id
        peer.master_id = peer_master.id if peer_master else None
        if owner == GLOBAL_ZONE and peer_zone != GLOBAL_ZONE:
            peer.home_name = spec.peer
        out.append(peer)
    return out


def row_from_kernel(zone: str, owner: str, k: KernelLink, link_id: int) -> LinkRecord:
    """A table row for a kernel link as the kernel shows it (a create's reply, an adoption).
    The kernel's kind string is kept where the class does not say it (`other`; a phys link
    has none to keep)."""
    cls = classify(k.kind, k.tun_tap)
    return LinkRecord(
        id=link_id, name=k.name, cls=cls, zone=zone, owner=owner,
        ifindex=k.ifindex, mac=k.mac, mtu=k.mtu, up=k.up, mode=k.mode, vni=k.vni,
        remote=k.remote, local=k.local, port=k.port,
        kind=k.kind if KINDS[cls].kernel_kind is None else None,
    )
