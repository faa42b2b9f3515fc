"""The packages' layering, read from the source (issue 16): `zones` depends on nothing of
the project, `broker` (the daemon) on `zones`, and `clients` on the broker's client side
only (`broker.client` and the modules it is made of), so no two packages import each other
and a client never loads the daemon."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# What a client may import of `broker`: the typed client and what it is built from.
CLIENT_SIDE = {"broker", "broker.client", "broker._types", "broker._params", "broker._wire",
               "broker._errors", "broker._version", "broker._names"}


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
    """broker.client's own imports stay within CLIENT_SIDE (so the list above is honest)."""
    seen: set[str] = set()
    todo = ["broker.client"]
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
