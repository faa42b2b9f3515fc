"""The agent's label scheme, and which labels count as orders.

A container's labels (``docker inspect``'s ``Config.Labels``) merge the image's labels with the
ones given at ``docker run --label`` or in compose. An image is not the operator: anyone who
publishes one could write ``io.linkbroker.*`` labels into it, and the agent is a global-zone
administrator. So :func:`operator_labels` keeps only the ``io.linkbroker.*`` labels the image
does not carry (a label whose key and value the image has is the image's, and is ignored);
:func:`parse_labels` then reads what is left. Pure: no Docker, no broker.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

__all__ = [
    "LABELS_HELP",
    "LABEL_PREFIX",
    "LINK_PREFIX",
    "ZONE_LABEL",
    "LabelError",
    "LinkDecl",
    "operator_labels",
    "parse_labels",
]

LABEL_PREFIX = "io.linkbroker."
ZONE_LABEL = "io.linkbroker.zone"
LINK_PREFIX = "io.linkbroker.link."
MAX_NAME = 15

LABELS_HELP = """\
label scheme (on the containers, read when they start):

  Only labels the operator gives the container count (docker run --label, compose `labels:`).
  io.linkbroker.* labels that come with the image are ignored, with a log line: an image is
  not an administrator.

  io.linkbroker.zone=NAME
      boot the container as zone NAME (1-15 bytes, Linux link-name rules). A name that is
      already a zone of another kind or of another container is refused.

  io.linkbroker.link.IFNAME=veth[,bridge=BR][,host=HOSTNAME][,mtu=N][,addr=A/P]
      a veth pair: its end IFNAME lives in the zone (lent by the global zone, owner global),
      its peer HOSTNAME stays in the global zone. HOSTNAME defaults to lbZONE for eth0 and
      lbZONE.IFNAME otherwise (at most 15 bytes; give host= when longer); it must be a new
      name: an existing link is never adopted. With bridge=BR the host end is made a port of
      bridge BR in the global zone, which the broker's policy must let the zone attach to
      ([bridges] attachable); the agent creates BR (not persistent) if missing and deletes it
      again when no port is left on it.

  io.linkbroker.link.IFNAME=macvlan,parent=HOSTLINK[,mode=bridge][,mtu=N][,addr=A/P]
      a macvlan IFNAME in the zone over the global zone's link HOSTLINK, which the broker's
      policy must hand to zones: a phys link in [assign] phys, or a bridge in [bridges]
      attachable for the zone (mode: private, vepa, bridge (default), passthru).

  Both ends are brought up. addr= (an IPv4 or IPv6 address with prefix length) is set on the
  zone's end, through the broker (AddAddress), as linkadm create-addr would. Every link
  the agent makes is non-persistent, and when the container stops the agent deletes exactly
  the links it made for it (by broker link ID), nothing else.

examples:
  io.linkbroker.zone=red
  io.linkbroker.link.eth0=veth,bridge=lbbr0,addr=192.0.2.1/24
  io.linkbroker.link.mv0=macvlan,parent=eth1,mode=bridge,mtu=1400
"""

_MACVLAN_MODES = ("private", "vepa", "bridge", "passthru")


class LabelError(ValueError):
    """A link label that cannot be understood."""


@dataclass(frozen=True)
class LinkDecl:
    """One io.linkbroker.link.* label, parsed."""

    ifname: str
    cls: str
    bridge: str | None = None
    host: str | None = None
    parent: str | None = None
    mode: str | None = None
    mtu: int | None = None
    addr: str | None = None


def operator_labels(
    container: Mapping[str, str], image: Mapping[str, str]
) -> tuple[dict[str, str], list[str]]:
    """(the io.linkbroker.* labels the operator gave, the keys ignored as the image's).

    Docker merges image labels into the container's; a key the operator set again with another
    value is the operator's, one whose key and value both come with the image is not.
    """
    ours = {k: v for k, v in container.items() if k.startswith(LABEL_PREFIX)}
    ignored = sorted(k for k, v in ours.items() if image.get(k) == v)
    return {k: v for k, v in ours.items() if k not in ignored}, ignored


def _check_name(what: str, name: str) -> str:
    raw = name.encode()
    if not 1 <= len(raw) <= MAX_NAME or name in (".", "..") or any(
        c in name for c in "/: \t\n\0"
    ):
        raise LabelError(f"{what} {name!r} is not a valid link name (1-15 bytes)")
    return name


def _parse_link(zone: str, ifname: str, value: str) -> LinkDecl:
    parts = [p.strip() for p in value.split(",") if p.strip()]
    if not parts:
        raise LabelError(f"link {ifname}: empty label")
    cls = parts[0]
    opts: dict[str, str] = {}
    for part in parts[1:]:
        key, sep, val = part.partition("=")
        if not sep or not val:
            raise LabelError(f"link {ifname}: {part!r} is not key=value")
        opts[key.strip()] = val.strip()
    allowed = {"veth": {"bridge", "host", "mtu", "addr"},
               "macvlan": {"parent", "mode", "mtu", "addr"}}
    if cls not in allowed:
        raise LabelError(f"link {ifname}: class {cls!r} not supported (veth, macvlan)")
    unknown = set(opts) - allowed[cls]
    if unknown:
        raise LabelError(f"link {ifname}: unknown option(s) {', '.join(sorted(unknown))}")
    mtu: int | None = None
    if "mtu" in opts:
        try:
            mtu = int(opts["mtu"])
        except ValueError:
            raise LabelError(f"link {ifname}: mtu {opts['mtu']!r} is not a number") from None
    addr = opts.get("addr")
    if addr is not None and "/" not in addr:
        raise LabelError(f"link {ifname}: addr {addr!r} needs a prefix length (A/P)")
    _check_name("link", ifname)
    if cls == "veth":
        host = opts.get("host") or (f"lb{zone}" if ifname == "eth0" else f"lb{zone}.{ifname}")
        _check_name("host end", host)
        bridge = opts.get("bridge")
        if bridge is not None:
            _check_name("bridge", bridge)
        return LinkDecl(ifname, cls, bridge=bridge, host=host, mtu=mtu, addr=addr)
    parent = opts.get("parent")
    if parent is None:
        raise LabelError(f"link {ifname}: macvlan needs parent=HOSTLINK")
    mode = opts.get("mode", "bridge")
    if mode not in _MACVLAN_MODES:
        raise LabelError(f"link {ifname}: mode {mode!r} not one of {', '.join(_MACVLAN_MODES)}")
    return LinkDecl(ifname, cls, parent=_check_name("parent", parent), mode=mode, mtu=mtu,
                    addr=addr)


def parse_labels(labels: Mapping[str, str]) -> tuple[str | None, list[LinkDecl]]:
    """(zone name or None, link declarations) from a container's (operator's) labels."""
    zone = labels.get(ZONE_LABEL)
    if zone is None:
        return None, []
    _check_name("zone", zone)
    decls = [
        _parse_link(zone, key[len(LINK_PREFIX):], value)
        for key, value in sorted(labels.items())
        if key.startswith(LINK_PREFIX)
    ]
    return zone, decls
