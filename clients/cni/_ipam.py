"""Delegation to the IPAM plugin, as the spec says: the plugin named by `ipam.type` is found
in CNI_PATH and exec'd with this call's environment (CNI_COMMAND set to the command) and the
same network configuration on stdin; its stdout is its result or its error object.

Debian's host-local (containernetworking-plugins 1.1) speaks up to 1.0.0: a 1.1.0
configuration is handed down as 1.0.0 when the IPAM plugin refuses 1.1.0 (code 1), since the
two results are the same shape.
"""

from __future__ import annotations

import os

from clients.cni import _codec as json
from clients.cni._spec import E_IPAM, CniError, NetConf

TYPE_CHECKING = False  # `typing` costs milliseconds to import: for the checker only
if TYPE_CHECKING:
    from typing import Any

__all__ = ["delegate"]


def _find(plugin: str, path: list[str]) -> str:
    for directory in path:
        candidate = os.path.join(directory, plugin)
        if os.access(candidate, os.X_OK) and os.path.isfile(candidate):
            return candidate
    raise CniError(E_IPAM, f"IPAM plugin {plugin!r} not found in CNI_PATH",
                   ":".join(path))


def _run(exe: str, command: str, conf: dict[str, Any], environ: dict[str, str]
         ) -> tuple[int, bytes]:
    """Exec `exe` with the config on stdin; (exit code, stdout). posix_spawn and two pipes
    rather than subprocess, whose imports (signal, selectors, threading) cost ~10 ms."""
    env = {**environ, "CNI_COMMAND": command}
    data = json.dumps(conf).encode()
    in_r, in_w = os.pipe()
    out_r, out_w = os.pipe()
    try:
        pid = os.posix_spawn(exe, [exe], env, file_actions=[
            (os.POSIX_SPAWN_DUP2, in_r, 0), (os.POSIX_SPAWN_DUP2, out_w, 1)])
    except OSError as exc:
        for fd in (in_r, in_w, out_r, out_w):
            os.close(fd)
        raise CniError(E_IPAM, f"IPAM plugin {exe} could not be run", str(exc)) from None
    os.close(in_r)
    os.close(out_w)
    try:
        view = memoryview(data)
        while view:  # a network config is far below a pipe's 64 KiB: no deadlock
            view = view[os.write(in_w, view):]
    except BrokenPipeError:
        pass  # it exited without reading: its status and output say why
    finally:
        os.close(in_w)
    chunks = []
    with open(out_r, "rb", closefd=True) as out:
        while chunk := out.read(1 << 16):
            chunks.append(chunk)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), b"".join(chunks)


def _error_from(exe: str, out: bytes) -> CniError:
    try:
        body = json.loads(out)
        return CniError(int(body["code"]), str(body.get("msg", "")),
                        str(body.get("details", "")))
    except (ValueError, KeyError, TypeError):
        text = out.decode(errors="replace").strip()
        return CniError(E_IPAM, f"IPAM plugin {exe} failed", text[:400])


def delegate(conf: NetConf, command: str, environ: dict[str, str], path: list[str]
             ) -> dict[str, Any]:
    """Run the IPAM plugin; its parsed result ({} when it prints nothing, as DEL does)."""
    assert conf.ipam is not None
    exe = _find(conf.ipam["type"], path)
    raw = conf.raw
    code, out = _run(exe, command, raw, environ)
    if code != 0 and conf.version == "1.1.0":
        err = _error_from(exe, out)
        if err.code == 1:
            code, out = _run(exe, command, {**raw, "cniVersion": "1.0.0"}, environ)
    if code != 0:
        raise _error_from(exe, out)
    if not out.strip():
        return {}
    try:
        result = json.loads(out)
    except ValueError:
        raise CniError(E_IPAM, f"IPAM plugin {exe} printed no JSON result",
                       out.decode(errors="replace")[:400]) from None
    if not isinstance(result, dict):
        raise CniError(E_IPAM, f"IPAM plugin {exe} printed no result object")
    return result
