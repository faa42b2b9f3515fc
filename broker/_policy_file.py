"""The policy file: read it safely, parse its TOML into a `broker._policy.Policy`, and say
exactly where it is wrong.

Split from the pure policy because it is the part with I/O and the part that is long:
`load_policy` is the only function that touches a file (it refuses a file others can write,
since whoever writes it grants themselves everything), and most of the rest recovers TOML line
numbers, because a policy file that is silently half-read grants or withholds the wrong thing:
every unknown key, wrong type or bad value is a `PolicyError` naming its line.
"""

from __future__ import annotations

import errno
import os
import re
import stat
import tomllib
from collections.abc import Callable, Mapping
from typing import Any

from broker._errors import InvalidName
from broker._names import GLOBAL_ZONE, validate_link_name, validate_zone_name
from broker._policy import (
    ALL_AUTHORIZATIONS,
    ANY_ZONE,
    AUTHORIZATIONS,
    DEFAULT_POLICY,
    Policy,
    Rule,
    check_id,
    check_limit,
    names_of,
)

__all__ = ["DEFAULT_POLICY_PATH", "PolicyError", "load_policy", "parse_policy"]

DEFAULT_POLICY_PATH = "/etc/linkbroker/policy.toml"


class PolicyError(Exception):
    """A policy file that cannot be used, with where and why.

    Not a LinkbrokerError: it stops the daemon at start and never travels over the wire.
    """

    def __init__(self, message: str, *, line: int | None = None, source: str = "<policy>"):
        super().__init__(message)
        self.message = message
        self.line = line
        self.source = source

    def __str__(self) -> str:
        where = self.source if self.line is None else f"{self.source}:{self.line}"
        return f"{where}: {self.message}"


def parse_policy(text: str, source: str = "<policy>") -> Policy:
    """Parse policy TOML text; any key, type or value this module does not know is an error."""
    return _Parser(text, source).policy()


def load_policy(path: str | os.PathLike[str] | None) -> Policy:
    """Read and parse the policy file.

    With no path, the default file is optional: a host without one gets DEFAULT_POLICY. A path
    given explicitly must exist, since a typo in `--policy` must not silently mean "defaults".
    The file must be owned by root (or the daemon's own uid) and writable by nobody else, since
    whoever can write it can grant themselves every authorization.
    """
    explicit = path is not None
    name = os.fspath(path) if path is not None else DEFAULT_POLICY_PATH
    try:
        fd = os.open(name, os.O_RDONLY | os.O_CLOEXEC | os.O_NOCTTY)
    except OSError as e:
        if e.errno == errno.ENOENT and not explicit:
            return DEFAULT_POLICY
        raise PolicyError(f"cannot open: {e.strerror}", source=name) from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise PolicyError("not a regular file", source=name)
        if st.st_uid not in (0, os.geteuid()):
            raise PolicyError(f"owned by uid {st.st_uid}, not by root", source=name)
        if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            raise PolicyError(
                f"mode {stat.S_IMODE(st.st_mode):04o} lets group or others write it", source=name
            )
        chunks: list[bytes] = []
        while chunk := os.read(fd, 1 << 16):
            chunks.append(chunk)
        data = b"".join(chunks)
    except OSError as e:
        raise PolicyError(f"cannot read: {e.strerror}", source=name) from None
    finally:
        os.close(fd)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise PolicyError("not valid UTF-8", line=line, source=name) from None
    return parse_policy(text, name)




# --- the parser --------------------------------------------------------------------------------

Path = tuple[str | int, ...]

_TOML_POS = re.compile(r"\(at line (\d+), column \d+\)$")
_TOML_END = re.compile(r"\(at end of document\)$")
_KEY_PART = re.compile(r"""[ \t]*([A-Za-z0-9_-]+|"(?:[^"\\]|\\.)*"|'[^']*')[ \t]*""")
_INLINE_KEY = re.compile(
    r"""[{,][ \t]*((?:[A-Za-z0-9_-]+|"(?:[^"\\]|\\.)*"|'[^']*')"""
    r"""(?:[ \t]*\.[ \t]*(?:[A-Za-z0-9_-]+|"(?:[^"\\]|\\.)*"|'[^']*'))*)[ \t]*="""
)


class _Parser:
    """Checks the decoded TOML against the format and builds the Policy.

    tomllib gives no positions, so on an error the line is found again in the text: a scan of
    table headers and `key =` lines rebuilds each key's path. It is best effort (multi-line
    strings can mislead it); when a key cannot be found, its nearest enclosing table's line is
    given instead.
    """

    def __init__(self, text: str, source: str) -> None:
        self.text = text
        self.source = source
        self._index: list[tuple[Path, int]] | None = None

    # errors and their lines

    def fail(self, path: Path, message: str, needle: str | None = None) -> PolicyError:
        return PolicyError(message, line=self.line_of(path, needle), source=self.source)

    def line_of(self, path: Path, needle: str | None = None) -> int | None:
        index = self._scan()
        for k in range(len(path), 0, -1):
            prefix = path[:k]
            line = next((n for p, n in index if p == prefix), None)
            if line is None:
                line = next((n for p, n in index if p[:k] == prefix), None)
            if line is not None:
                if needle is not None and k == len(path):
                    return self._find_needle(line, needle, index)
                return line
        return None

    def _find_needle(self, start: int, needle: str, index: list[tuple[Path, int]]) -> int:
        """The line at or after `start` where the string `needle` is written, before the next
        key; `start` when it is not found (e.g. written with escapes)."""
        stop = min((n for _, n in index if n > start), default=None)
        lines = self.text.splitlines()
        quoted = (f'"{needle}"', f"'{needle}'")
        for n in range(start, (stop or len(lines) + 1)):
            if any(q in lines[n - 1] for q in quoted):
                return n
        return start

    def _scan(self) -> list[tuple[Path, int]]:
        if self._index is not None:
            return self._index
        index: list[tuple[Path, int]] = []
        table: Path = ()
        counts: dict[Path, int] = {}
        for n, raw in enumerate(self.text.splitlines(), 1):
            line = raw.strip()
            if line.startswith("[["):
                keys, end = _key_path(line, 2)
                if keys is not None and line.startswith("]]", end):
                    i = counts.get(keys, 0)
                    counts[keys] = i + 1
                    table = (*keys, i)
                    index.append((table, n))
            elif line.startswith("["):
                keys, end = _key_path(line, 1)
                if keys is not None and line.startswith("]", end):
                    table = keys
                    index.append((table, n))
            elif line and not line.startswith("#"):
                keys, end = _key_path(line, 0)
                if keys is not None and line.startswith("=", end):
                    here = (*table, *keys)
                    index.append((here, n))
                    value = line[end + 1 :].lstrip()
                    if value.startswith("{"):
                        for m in _INLINE_KEY.finditer(value):
                            inner, _ = _key_path(m.group(1), 0)
                            if inner is not None:
                                index.append(((*here, *inner), n))
        self._index = index
        return index

    # the format

    def policy(self) -> Policy:
        try:
            doc = tomllib.loads(self.text)
        except tomllib.TOMLDecodeError as e:
            message = str(e)
            line: int | None = None
            if m := _TOML_POS.search(message):
                line = int(m.group(1))
            elif _TOML_END.search(message):
                line = max(1, len(self.text.splitlines()))
            raise PolicyError(message, line=line, source=self.source) from None
        self.keys((), doc, {"limits", "assign", "bridges", "rule"})
        limits = self.table(("limits",), doc.get("limits", {}))
        self.keys(("limits",), limits, {"links_per_zone", "zones",
                                        "host_bridge_ports_per_zone", "macvtaps_per_zone"})
        shared = {key: self.limit(("limits", key), limits[key])
                  for key in ("host_bridge_ports_per_zone", "macvtaps_per_zone")
                  if key in limits}
        per_zone = limits.get("links_per_zone")
        if per_zone is not None:
            per_zone = self.limit(("limits", "links_per_zone"), per_zone)
        zones = self.table(("limits", "zones"), limits.get("zones", {}))
        zone_limits = frozenset(
            (self.zone(("limits", "zones", z), z, allow_global=True, key=True),
             self.limit(("limits", "zones", z), v))
            for z, v in zones.items()
        )
        assign = self.table(("assign",), doc.get("assign", {}))
        self.keys(("assign",), assign, {"phys"})
        phys = frozenset(
            self.link(("assign", "phys"), name)
            for name in self.strings(("assign", "phys"), assign.get("phys", []))
        )
        bridges = self.table(("bridges",), doc.get("bridges", {}))
        self.keys(("bridges",), bridges, {"attachable"})
        attachable: set[tuple[str, str]] = set()
        for bridge, zone_list in self.table(
            ("bridges", "attachable"), bridges.get("attachable", {})
        ).items():
            where = ("bridges", "attachable", bridge)
            self.link(where, bridge, key=True)
            for z in self.strings(where, zone_list):
                if z == GLOBAL_ZONE:
                    raise self.fail(where, "the global zone owns its bridges: do not list it", z)
                attachable.add((bridge, z if z == ANY_ZONE else self.zone(where, z)))
        rules = doc.get("rule", [])
        if not isinstance(rules, list):
            raise self.fail(("rule",), f"'rule' must be an array of tables ([[rule]]), "
                            f"got {_type_name(rules)}")
        return Policy(
            rules=tuple(self.rule(i, r) for i, r in enumerate(rules)),
            links_per_zone=per_zone,
            zone_link_limits=zone_limits,
            assignable_phys=phys,
            attachable_bridges=frozenset(attachable),
            **shared,
        )

    def rule(self, i: int, raw: object) -> Rule:
        where: Path = ("rule", i)
        r = self.table(where, raw)
        self.keys(where, r, {"zone", "uid", "group", "root", "grant", "revoke"})
        zone = r.get("zone")
        if zone is not None:
            zone = self.string((*where, "zone"), zone)
            zone = None if zone == ANY_ZONE else self.zone((*where, "zone"), zone,
                                                           allow_global=True)
        uid = None if "uid" not in r else self.ident((*where, "uid"), r["uid"], "uid")
        gid = None if "group" not in r else self.ident((*where, "group"), r["group"], "group")
        root = r.get("root")
        if root is not None and not isinstance(root, bool):
            raise self.fail((*where, "root"), f"'root' must be true or false, got "
                            f"{_type_name(root)}")
        grant = self.auths((*where, "grant"), r.get("grant", []))
        revoke = self.auths((*where, "revoke"), r.get("revoke", []))
        if not grant and not revoke:
            raise self.fail(where, "a rule must grant or revoke something")
        if both := grant & revoke:
            raise self.fail((*where, "revoke"), f"{names_of(both)} both granted and revoked by one "
                            "rule", min(both))
        return Rule(grant=grant, revoke=revoke, zone=zone, uid=uid, gid=gid, root=root)

    # typed values

    def keys(self, where: Path, table: Mapping[str, Any], known: set[str]) -> None:
        for key in table:
            if key not in known:
                raise self.fail((*where, key), f"unknown key {key!r} in {_where(where)} "
                                f"(known: {', '.join(sorted(known))})")

    def table(self, where: Path, value: object) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(where, f"{_where(where)} must be a table, got {_type_name(value)}")
        return value

    def strings(self, where: Path, value: object) -> list[str]:
        if not isinstance(value, list):
            raise self.fail(where, f"'{where[-1]}' must be an array of strings, got "
                            f"{_type_name(value)}")
        for item in value:
            if not isinstance(item, str):
                raise self.fail(where, f"'{where[-1]}' must hold only strings, got "
                                f"{_type_name(item)}")
        return value

    def string(self, where: Path, value: object) -> str:
        if not isinstance(value, str):
            raise self.fail(where, f"'{where[-1]}' must be a string, got {_type_name(value)}")
        return value

    def integer(self, where: Path, value: object) -> int:
        if not isinstance(value, int) or isinstance(value, bool):
            raise self.fail(where, f"'{where[-1]}' must be an integer, got {_type_name(value)}")
        return value

    def limit(self, where: Path, value: object) -> int:
        n = self.integer(where, value)
        return self.checked(where, check_limit, n)

    def ident(self, where: Path, value: object, what: str) -> int:
        n = self.integer(where, value)
        return self.checked(where, lambda v: check_id(v, what), n)

    def checked(self, where: Path, check: Callable[[int], None], value: int) -> int:
        try:
            check(value)
        except ValueError as e:
            raise self.fail(where, str(e)) from None
        return value

    def auths(self, where: Path, value: object) -> frozenset[str]:
        names = self.strings(where, value)
        for name in names:
            if name not in ALL_AUTHORIZATIONS:
                raise self.fail(where, f"unknown authorization {name!r} (known: "
                                f"{', '.join(AUTHORIZATIONS)})", name)
        return frozenset(names)

    def zone(self, where: Path, name: str, *, allow_global: bool = False,
             key: bool = False) -> str:
        try:
            return validate_zone_name(name, allow_global=allow_global)
        except InvalidName as e:
            raise self.fail(where, f"bad zone name {name!r}: {e.reason}",
                            None if key else name) from None

    def link(self, where: Path, name: str, *, key: bool = False) -> str:
        try:
            return validate_link_name(name)
        except InvalidName as e:
            raise self.fail(where, f"bad link name {name!r}: {e.reason}",
                            None if key else name) from None


def _key_path(line: str, pos: int) -> tuple[tuple[str, ...] | None, int]:
    """Read a (dotted, possibly quoted) TOML key at `pos`: its parts and where it ends."""
    parts: list[str] = []
    while True:
        m = _KEY_PART.match(line, pos)
        if m is None:
            return None, pos
        token = m.group(1)
        if token[0] in "\"'":
            try:
                token = tomllib.loads(f"k = {token}")["k"]
            except tomllib.TOMLDecodeError:
                return None, pos
        parts.append(token)
        pos = m.end()
        if not line.startswith(".", pos):
            return tuple(parts), pos
        pos += 1


def _where(path: Path) -> str:
    """A table's path as a reader of the file would write it: `[limits.zones]`, `[[rule]] #2`."""
    if not path:
        return "the top level"
    if isinstance(path[-1], int):
        return f"[[{'.'.join(str(p) for p in path[:-1])}]] #{path[-1] + 1}"
    return f"[{'.'.join(str(p) for p in path)}]"


def _type_name(value: object) -> str:
    return {
        bool: "a boolean", int: "an integer", float: "a float", str: "a string",
        list: "an array", dict: "a table",
    }.get(type(value), type(value).__name__)
