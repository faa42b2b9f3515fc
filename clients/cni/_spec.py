"""The CNI specification's side of the plugin: versions, the environment, the network
configuration, error objects and results. Pure: no I/O beyond what it is handed.

Codes are the spec's well-known ones (1 incompatible version, 3 unknown container, 4 bad
environment, 6 undecodable config, 7 invalid config, 11 try again later, 50 not available);
100 and up are the plugin's own, listed in docs/cni.md.
"""

from __future__ import annotations

from clients.cni import _codec as json

TYPE_CHECKING = False  # typing costs ~4 ms to import: for the checker only
if TYPE_CHECKING:
    from typing import Any

__all__ = [
    "SUPPORTED_VERSIONS",
    "CniError",
    "Env",
    "NetConf",
    "error_object",
    "parse_conf",
    "read_env",
]

SUPPORTED_VERSIONS = ("0.4.0", "1.0.0", "1.1.0")
LATEST = "1.1.0"

# The plugin's own codes (docs/cni.md).
E_BROKER_REFUSED = 100      # the broker answered with an error the plugin cannot act on
E_NAMESPACE_TAKEN = 101     # CNI_NETNS is already a zone under another name
E_ATTACHED = 102            # CNI_IFNAME is already in the container's zone
E_NOT_A_BRIDGE = 103        # `bridge` names a link of the global zone that is no bridge
E_NETNS_PATH = 104          # CNI_NETNS is neither under /run/netns nor /proc/PID/ns/net
E_IPAM = 105                # the IPAM plugin could not be run or gave an unusable result
E_UNEXPECTED = 109          # anything else (a bug): the reason is in details
E_CHECK = 110               # CHECK found the attachment not as prevResult says

_ALNUM = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
_ID_CHARS = _ALNUM | frozenset("_.-")


def is_identifier(text: str) -> bool:
    """[A-Za-z0-9][A-Za-z0-9_.-]*: the spec's container IDs and network names (no `re`:
    the plugin's import time is part of every call)."""
    return bool(text) and text[0] in _ALNUM and all(c in _ID_CHARS for c in text)


def is_ifname(text: str) -> bool:
    """A name the kernel takes for an interface: 1-15 bytes, no '/', ':' or whitespace."""
    return (0 < len(text.encode()) <= 15 and text not in (".", "..")
            and not any(c in "/:" or c.isspace() for c in text))


def is_version(text: str) -> bool:
    parts = text.split(".")
    return len(parts) == 3 and all(p.isdigit() and p.isascii() for p in parts)


class CniError(Exception):
    """An error the runtime gets as the spec's error object (and a non-zero exit)."""

    def __init__(self, code: int, msg: str, details: str = "") -> None:
        super().__init__(msg)
        self.code = code
        self.msg = msg
        self.details = details


def error_object(err: CniError, version: str) -> str:
    body: dict[str, Any] = {"cniVersion": version, "code": err.code, "msg": err.msg}
    if err.details:
        body["details"] = err.details
    return json.dumps(body)


class Env:
    """The CNI_* variables of this call."""

    __slots__ = ("command", "container_id", "ifname", "netns", "path")

    def __init__(self, command: str, container_id: str, netns: str, ifname: str,
                 path: list[str]) -> None:
        self.command = command
        self.container_id = container_id
        self.netns = netns
        self.ifname = ifname
        self.path = path


def read_env(environ: dict[str, str] | Any) -> Env:
    """The CNI_* variables; what a command needs is checked by `require`."""
    return Env(
        command=environ.get("CNI_COMMAND", ""),
        container_id=environ.get("CNI_CONTAINERID", ""),
        netns=environ.get("CNI_NETNS", ""),
        ifname=environ.get("CNI_IFNAME", ""),
        path=[p for p in environ.get("CNI_PATH", "").split(":") if p],
    )


def require(env: Env, *names: str) -> None:
    for name in names:
        value = getattr(env, name)
        if not value:
            raise CniError(4, f"CNI_{name.upper().replace('_', '')} is required for "
                              f"{env.command}")
    if "container_id" in names and not is_identifier(env.container_id):
        raise CniError(4, "CNI_CONTAINERID has characters the spec does not allow",
                       env.container_id)
    if "ifname" in names and not is_ifname(env.ifname):
        raise CniError(4, "CNI_IFNAME is not a usable interface name", env.ifname)


class NetConf:
    """The network configuration's keys the plugin uses; `raw` is all of it, as read."""

    __slots__ = ("bridge", "ipam", "mtu", "name", "prev_result", "raw", "socket", "version")

    def __init__(self, *, version: str, name: str, bridge: str, socket: str, mtu: int | None,
                 ipam: dict[str, Any] | None, raw: dict[str, Any],
                 prev_result: dict[str, Any] | None = None) -> None:
        self.version = version
        self.name = name
        self.bridge = bridge
        self.socket = socket
        self.mtu = mtu
        self.ipam = ipam
        self.raw = raw
        self.prev_result = prev_result


def _version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in version.split("."))


def at_least(version: str, floor: str) -> bool:
    return _version_tuple(version) >= _version_tuple(floor)


def parse_conf(data: bytes, default_socket: str) -> NetConf:
    """The network configuration from stdin, checked key by key (code 6 or 7, or 1)."""
    try:
        raw = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise CniError(6, "the network configuration is not JSON", str(exc)) from None
    if not isinstance(raw, dict):
        raise CniError(6, "the network configuration is not a JSON object")
    version = raw.get("cniVersion")
    if not isinstance(version, str) or not is_version(version):
        raise CniError(7, "cniVersion is missing or not a version", repr(version))
    if version not in SUPPORTED_VERSIONS:
        raise CniError(1, "incompatible CNI versions",
                       f"config is {version}, plugin supports {list(SUPPORTED_VERSIONS)}")
    name = raw.get("name")
    if not isinstance(name, str) or not is_identifier(name):
        raise CniError(7, "name is missing or not a network name", repr(name))
    bridge = raw.get("bridge")
    if not isinstance(bridge, str) or not is_ifname(bridge):
        raise CniError(7, "bridge is missing or not an interface name", repr(bridge))
    sock = raw.get("socket", default_socket)
    if not isinstance(sock, str) or not sock.startswith("/"):
        raise CniError(7, "socket must be an absolute path", repr(sock))
    mtu = raw.get("mtu")
    if mtu is not None and (type(mtu) is not int or not 68 <= mtu <= 65535):
        raise CniError(7, "mtu must be an integer from 68 to 65535", repr(mtu))
    ipam = raw.get("ipam")
    if ipam is not None and (not isinstance(ipam, dict) or not isinstance(ipam.get("type"), str)
                             or not ipam["type"] or "/" in ipam["type"]):
        raise CniError(7, "ipam must be an object naming a plugin in `type`", repr(ipam))
    prev = raw.get("prevResult")
    if prev is not None and not isinstance(prev, dict):
        raise CniError(7, "prevResult must be an object")
    return NetConf(version=version, name=name, bridge=bridge, socket=sock, mtu=mtu,
                   ipam=ipam or None, raw=raw, prev_result=prev)


def build_result(conf: NetConf, env: Env, interfaces: list[dict[str, Any]],
                 ipam: dict[str, Any], sandbox_index: int) -> dict[str, Any]:
    """The ADD result in the config's version: interfaces, ips on the sandbox interface,
    routes and dns as IPAM gave them."""
    ips = []
    for ip in ipam.get("ips") or []:
        entry: dict[str, Any] = {"address": ip["address"], "interface": sandbox_index}
        if ip.get("gateway"):
            entry["gateway"] = ip["gateway"]
        if not at_least(conf.version, "1.0.0"):
            entry["version"] = "6" if ":" in ip["address"] else "4"
        ips.append(entry)
    result: dict[str, Any] = {"cniVersion": conf.version, "interfaces": interfaces, "ips": ips}
    if ipam.get("routes"):
        result["routes"] = ipam["routes"]
    result["dns"] = ipam.get("dns") or {}
    return result
