"""The packages' layering, read from the source (issue 16): `zones` depends on nothing of
the project, `broker` (the daemon) on `zones`, and `clients` on the broker's client side
only (`broker.client` and the modules it is made of, and the pure link property table that
linkadm shares with the broker), so no two packages import each other and a client never loads
the daemon."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# What a client may import of `broker`: the typed client and what it is built from, and the
# pure link property table that linkadm reads as the broker does (broker._linkprops).
CLIENT_SIDE = {"broker", "broker.client", "broker._types", "broker._params", "broker._wire",
               "broker._errors", "broker._version", "broker._names", "broker._linkprops"}


def imports(path: Path) -> set[str]:
    """Every module a file imports, at any depth (function-level imports included)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
    return found


def sources(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("path", sources("zones"), ids=lambda p: p.name)
def test_zones_imports_nothing_of_the_broker_or_its_clients(path: Path) -> None:
    bad = {m for m in imports(path) if m.split(".")[0] in ("broker", "clients")}
    assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"


@pytest.mark.parametrize("path", sources("broker"), ids=lambda p: p.name)
def test_the_broker_imports_no_client_package(path: Path) -> None:
    bad = {m for m in imports(path) if m.split(".")[0] == "clients"}
    assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"


@pytest.mark.parametrize("path", sources("clients"), ids=lambda p: str(p.relative_to(ROOT)))
def test_clients_import_only_the_client_side_of_the_broker(path: Path) -> None:
    bad = {m for m in imports(path) if m.split(".")[0] == "zones"
           or (m.split(".")[0] == "broker" and m not in CLIENT_SIDE)}
    assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"


def test_the_client_side_itself_loads_no_daemon_module() -> None:
    """Every CLIENT_SIDE module's own imports stay within CLIENT_SIDE (so the list above is
    honest: adding a module to it cannot let a daemon module in through the back door)."""
    seen: set[str] = set()
    todo = sorted(CLIENT_SIDE)
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        path = ROOT / (module.replace(".", "/") + ".py")
        if not path.exists():
            path = ROOT / module.replace(".", "/") / "__init__.py"
        todo.extend(m for m in imports(path) if m.split(".")[0] == "broker")
    assert seen <= CLIENT_SIDE, sorted(seen - CLIENT_SIDE)


def test_linkadm_loads_no_netlink_library_and_no_daemon_module() -> None:
    """A fresh interpreter imports linkadm (all its verbs) and loads no pyroute2, no `zones`
    and of `broker` only CLIENT_SIDE (so none of _service, _daemon, _server, _rtnl, _netlink,
    _store...), as tests/test_agent_addresses.py checks for the agent: what the import reading
    above cannot see (a module loaded by a dependency, not by a line of ours) shows here."""
    probe = ("import sys, clients.linkadm.main; "
             "print(sorted(m for m in sys.modules if m.split('.')[0] in ('pyroute2', 'zones') "
             f"or (m.split('.')[0] == 'broker' and m not in {sorted(CLIENT_SIDE)!r})))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True, timeout=60, cwd=ROOT).stdout.strip()
    assert out == "[]", out
