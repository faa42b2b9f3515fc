"""The attach helper's guard against running zone-controlled code as the host's root.

After ``setns(CLONE_NEWNS)`` every path the helper's Python resolves is the zone's: a module
imported then, a shared library loaded, a program spawned, would be the zone's code running
with the host's root and the broker's capabilities. :func:`arm_guard` installs an audit hook
(PEP 578) right before setns; from then on any such event ends the process on the spot. Audit
hooks cannot be removed, and the hook needs nothing it would have to import.
"""

from __future__ import annotations

import os
import sys

__all__ = ["arm_guard"]

# Audit events that load or run code, refused once the helper is inside the zone's mount
# namespace: every path there is the zone's, so an import (or a shared library, or a program)
# found after setns would be zone-controlled code run as the host's root.
_CODE_EVENTS = frozenset({
    "import", "exec", "compile", "ctypes.dlopen", "os.exec", "os.posix_spawn", "os.spawn",
    "os.system", "os.fork", "os.forkpty", "subprocess.Popen", "pty.spawn",
})
_CODE_SUFFIXES = (b".py", b".pyc", b".pyo", b".pyw", b".so", b".pth", b".zip", b".pyz")
_state = {"armed": False}


def _guard(event: str, args: tuple[object, ...]) -> None:
    """sys.addaudithook: once armed, end the helper on the spot at any attempt to load code.

    os._exit, not an exception: no handler, finally block or traceback printer (which would
    itself open .py files of the zone) gets to run."""
    if not _state["armed"]:
        return
    path = args[0] if args else None
    if event in _CODE_EVENTS or (
        event == "open"
        and isinstance(path, (str, bytes))
        and os.fsencode(path).endswith(_CODE_SUFFIXES)
    ):
        os.write(2, f"attach helper: {event} {path!r} refused inside the zone's mount "
                    "namespace\n".encode("utf-8", "replace"))
        os._exit(70)


def arm_guard() -> None:
    """Install (once) and arm the guard; called right before setns. Audit hooks cannot be
    removed, so nothing after this point can load code from the zone's filesystem."""
    if not _state["armed"]:
        sys.addaudithook(_guard)
        _state["armed"] = True
