"""linkbroker-cni's entry point: one CNI command per exec, answered on stdout.

ADD boots the container's namespace as a zone, has the broker make the veth (the container's
end named CNI_IFNAME, the host end a port of the bridge), delegates addresses to IPAM and puts
them on through the broker. DEL undoes that and never fails for something already gone. CHECK
compares the broker's view with prevResult; GC (1.1) drops attachments the runtime no longer
lists; STATUS (1.1) says whether the broker will take an ADD; VERSION lists the versions.
"""

from __future__ import annotations

import os
import sys

from clients.cni import _attach as attach
from clients.cni import _codec as json
from clients.cni._ipam import delegate
from clients.cni._names import HOST_END_STEM, ZONE_STEM, host_end_name, zone_name
from clients.cni._spec import (
    E_CHECK,
    E_IPAM,
    E_UNEXPECTED,
    LATEST,
    SUPPORTED_VERSIONS,
    CniError,
    Env,
    NetConf,
    at_least,
    build_result,
    error_object,
    parse_conf,
    read_env,
    require,
)
from clients.cni._varlink import BrokerError, Connection, Unreachable

TYPE_CHECKING = False  # `typing` costs milliseconds to import: for the checker only
if TYPE_CHECKING:
    from typing import Any

__all__ = ["main"]

DEFAULT_SOCKET = "/run/linkbroker/broker.sock"


def _connect(conf: NetConf) -> Connection:
    try:
        return Connection(conf.socket, timeout=60.0)
    except Unreachable as exc:
        raise CniError(11, "linkbroker is not reachable; try again later", str(exc)) from None


def cmd_add(env: Env, conf: NetConf, environ: dict[str, str]) -> dict[str, Any]:
    require(env, "container_id", "netns", "ifname", "path")
    zone = zone_name(env.container_id)
    b = _connect(conf)
    booted = made = leased = False
    try:
        bridge = attach.ensure_bridge(b, conf)
        booted = attach.boot_zone(b, env.container_id, env.netns)
        link = attach.create_veth(b, conf, env.container_id, env.ifname)
        made = True
        ipam: dict[str, Any] = {}
        if conf.ipam is not None:
            leased = True  # a failed IPAM ADD is released too (the spec's advice)
            ipam = delegate(conf, "ADD", environ, env.path)
            if not ipam.get("ips"):
                raise CniError(E_IPAM, "the IPAM plugin gave no address")
        attach.configure_addresses(b, zone, env.ifname, ipam)
        host = b.call("GetLink", name=host_end_name(env.container_id, env.ifname),
                      zone=attach.GLOBAL)["link"]
    except BaseException as exc:
        _undo(b, conf, env, environ, booted=booted, made=made, leased=leased)
        if isinstance(exc, Unreachable):
            raise CniError(11, "linkbroker went away during ADD; try again later",
                           str(exc)) from None
        if isinstance(exc, BrokerError):
            raise attach.refused(exc, "attach the container") from None
        raise
    finally:
        b.close()
    interfaces = [
        {"name": bridge["name"], "mac": bridge.get("mac", "")},
        {"name": host["name"], "mac": host.get("mac", "")},
        {"name": env.ifname, "mac": link.get("mac", ""), "sandbox": env.netns},
    ]
    return build_result(conf, env, interfaces, ipam, 2)


def _undo(b: Connection, conf: NetConf, env: Env, environ: dict[str, str], *,
          booted: bool, made: bool, leased: bool) -> None:
    """Take back what a failed ADD made: the lease, the veth, the zone if it booted it. On
    a fresh connection when the first one broke (a broker restarted meanwhile)."""
    if leased:
        try:  # noqa: SIM105 - contextlib is an import the plugin does without
            delegate(conf, "DEL", environ, env.path)
        except CniError:
            pass  # ADD's own error is the one to report
    if not (made or booted):
        return
    try:
        attach.undo_quietly(b, env.container_id, env.ifname, booted)
        b.call("WhoAmI")  # still talking? if not, once more on a new connection
    except Unreachable:
        try:
            with Connection(conf.socket, timeout=10.0) as again:
                attach.undo_quietly(again, env.container_id, env.ifname, booted)
        except Unreachable:
            pass  # the broker's own recovery (intents, vanished namespaces) is left


def cmd_del(env: Env, conf: NetConf, environ: dict[str, str]) -> None:
    require(env, "container_id", "ifname")
    if conf.ipam is not None:
        require(env, "path")
        delegate(conf, "DEL", environ, env.path)
    b = _connect(conf)
    try:
        attach.detach(b, env.container_id, env.ifname)
    except Unreachable as exc:
        raise CniError(11, "linkbroker went away during DEL; try again later",
                       str(exc)) from None
    finally:
        b.close()


def cmd_check(env: Env, conf: NetConf, environ: dict[str, str]) -> None:
    require(env, "container_id", "netns", "ifname", "path")
    prev = conf.prev_result
    if prev is None:
        raise CniError(7, "CHECK needs prevResult")
    if conf.ipam is not None:
        delegate(conf, "CHECK", environ, env.path)
    zone = zone_name(env.container_id)
    with _connect(conf) as b:
        try:
            link = b.call("GetLink", name=env.ifname, zone=zone)["link"]
            host = b.call("GetLink", name=host_end_name(env.container_id, env.ifname),
                          zone=attach.GLOBAL)["link"]
            have = {a["address"] for a in b.call("ListAddresses", link=env.ifname,
                                                   zone=zone)["addresses"]}
        except BrokerError as exc:
            if exc.name in ("ZoneNotFound", "LinkNotFound"):
                raise CniError(3, f"{env.ifname} of container {env.container_id} is not "
                               "attached", str(exc)) from None
            raise attach.refused(exc, "read the attachment") from None
        except Unreachable as exc:
            raise CniError(11, "linkbroker is not reachable", str(exc)) from None
    if link.get("state") != "up" or host.get("state") != "up":
        raise CniError(E_CHECK, f"{env.ifname} or its host end is not up")
    if host.get("master") != conf.bridge:
        raise CniError(E_CHECK, f"the host end of {env.ifname} is not a port of {conf.bridge}")
    interfaces = prev.get("interfaces") or []
    for ip in prev.get("ips") or []:
        index = ip.get("interface")
        if isinstance(index, int) and 0 <= index < len(interfaces) and (
                interfaces[index].get("name") != env.ifname):
            continue
        if ip.get("address") not in have:
            raise CniError(E_CHECK, f"{env.ifname} lacks {ip.get('address')} of prevResult",
                           f"has {sorted(have)}")


def cmd_gc(env: Env, conf: NetConf, environ: dict[str, str]) -> None:
    """Attachments on this network's bridge whose (container, interface) the runtime no
    longer lists: their veth, their lease (IPAM DEL, for host-local has no GC) and, when
    empty, their zone. Zones carry the full container ID (`cni_container`)."""
    valid = conf.raw.get("cni.dev/valid-attachments")
    if not isinstance(valid, list):
        raise CniError(7, "GC needs cni.dev/valid-attachments")
    keep = {(str(a.get("containerID")), str(a.get("ifname"))) for a in valid
            if isinstance(a, dict)}
    with _connect(conf) as b:
        try:
            zones = {z["name"]: z for z in b.call("ListZones")["zones"]
                     if z["name"].startswith(ZONE_STEM) and z.get("cni_container")}
            links = b.call("ListLinks")["links"]
            for host in links:
                if (host["zone"] != attach.GLOBAL or host.get("master") != conf.bridge
                        or not host["name"].startswith(HOST_END_STEM)):
                    continue
                stale = _stale_attachment(host, links, zones, keep)
                if stale is None:
                    continue
                cid, ifname = stale
                if conf.ipam is not None and env.path:
                    gone = {**environ, "CNI_CONTAINERID": cid, "CNI_IFNAME": ifname}
                    delegate(conf, "DEL", gone, env.path)
                attach.detach(b, cid, ifname)
        except BrokerError as exc:
            raise attach.refused(exc, "collect garbage") from None
        except Unreachable as exc:
            raise CniError(11, "linkbroker is not reachable", str(exc)) from None


def _stale_attachment(host: dict[str, Any], links: list[dict[str, Any]],
                      zones: dict[str, dict[str, Any]], keep: set[tuple[str, str]]
                      ) -> tuple[str, str] | None:
    for far in links:
        zone = zones.get(far["zone"])
        if zone is None or far.get("peer") != host["name"]:
            continue
        cid = str(zone["cni_container"])
        if host_end_name(cid, far["name"]) != host["name"]:
            continue  # not a host end this plugin named
        return None if (cid, far["name"]) in keep else (cid, far["name"])
    return None


def cmd_status(conf: NetConf) -> None:
    try:
        with Connection(conf.socket, timeout=10.0) as b:
            me = b.call("WhoAmI")
    except (Unreachable, BrokerError) as exc:
        raise CniError(50, "linkbroker is not available", str(exc)) from None
    missing = {"link.write", "zone.admin", "addr.write"} - set(me.get("authorizations", []))
    if me.get("zone") != attach.GLOBAL or missing:
        raise CniError(50, "this caller may not attach containers through linkbroker",
                       f"zone {me.get('zone')}, missing {sorted(missing)}")


def _version(stdin: bytes) -> dict[str, Any]:
    asked = LATEST
    try:
        body = json.loads(stdin) if stdin.strip() else {}
        if isinstance(body, dict) and isinstance(body.get("cniVersion"), str):
            asked = body["cniVersion"]
    except ValueError:
        pass
    return {"cniVersion": asked, "supportedVersions": list(SUPPORTED_VERSIONS)}


def run(environ: dict[str, str], stdin: bytes) -> dict[str, Any] | None:
    """One command: its result object (None when it prints nothing); CniError otherwise."""
    env = read_env(environ)
    if env.command == "VERSION":
        return _version(stdin)
    conf = parse_conf(stdin, DEFAULT_SOCKET)
    if env.command in ("GC", "STATUS") and not at_least(conf.version, "1.1.0"):
        raise CniError(1, f"{env.command} needs cniVersion 1.1.0", conf.version)
    if env.command == "ADD":
        return cmd_add(env, conf, environ)
    if env.command == "DEL":
        cmd_del(env, conf, environ)
    elif env.command == "CHECK":
        cmd_check(env, conf, environ)
    elif env.command == "GC":
        cmd_gc(env, conf, environ)
    elif env.command == "STATUS":
        cmd_status(conf)
    else:
        raise CniError(4, "CNI_COMMAND is not one of ADD, DEL, CHECK, GC, STATUS, VERSION",
                       env.command)
    return None


def build_parser() -> Any:
    """The command line a person sees (--help, --version): for the man page and completions."""
    from clients.cni._manual import build_parser as manual

    return manual()


def main() -> int:
    if "CNI_COMMAND" not in os.environ:  # a person, not a runtime: never wait on stdin
        from clients.cni._manual import main as by_hand

        return by_hand(sys.argv[1:])
    stdin = b"" if sys.stdin is None else sys.stdin.buffer.read()
    try:
        result = run(dict(os.environ), stdin)
    except CniError as exc:
        sys.stdout.write(error_object(exc, _reply_version(stdin)) + "\n")
        return 1
    except Exception as exc:  # never a traceback to the runtime: its own code, the reason
        err = CniError(E_UNEXPECTED, "linkbroker-cni failed unexpectedly",
                       f"{type(exc).__name__}: {exc}")
        sys.stdout.write(error_object(err, _reply_version(stdin)) + "\n")
        return 1
    if result is not None:
        sys.stdout.write(json.dumps(result) + "\n")
    return 0


def _reply_version(stdin: bytes) -> str:
    try:
        version = json.loads(stdin).get("cniVersion")
    except (ValueError, AttributeError):
        return LATEST
    return version if version in SUPPORTED_VERSIONS else LATEST


if __name__ == "__main__":
    sys.exit(main())
