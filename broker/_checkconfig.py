"""linkbrokerd --check-config: say whether the daemon would start with these files, and why not.

Run before a restart or an upgrade (ExecStartPre, a package's postinst, an operator after
editing the policy): a bad policy or an unreadable store found here costs nothing, while found
by the starting daemon it leaves every zone without its broker until someone fixes it. Nothing
is changed: the policy is parsed exactly as the daemon parses it, and the store is opened
read-only (no directory is made, no schema written, no WAL replayed into the file).
"""

from __future__ import annotations

import os
import sqlite3
import stat
from dataclasses import dataclass

import msgspec

from broker._policy_file import DEFAULT_POLICY_PATH, PolicyError, load_policy
from broker._table import LinkRecord, ZoneRecord

__all__ = ["ConfigProblem", "check_config"]

_TABLES = {"meta", "zones", "links", "intents"}


@dataclass
class ConfigProblem(Exception):
    """What is wrong, and the exit code that says which part (2 policy, 3 state)."""

    message: str
    code: int

    def __str__(self) -> str:
        return self.message


def check_config(policy_path: str | None, state_dir: str) -> list[str]:
    """Lines describing what was checked; ConfigProblem on the first thing that is wrong."""
    try:
        load_policy(policy_path)
    except PolicyError as exc:
        raise ConfigProblem(f"policy: {exc}", 2) from None
    name = policy_path or DEFAULT_POLICY_PATH
    said = [f"policy {name}: ok" if policy_path or os.path.exists(name)
            else f"policy: no {name}, built-in defaults apply"]
    said.append(_check_state(state_dir))
    return said


def _check_state(state_dir: str) -> str:
    try:
        st = os.stat(state_dir)
    except FileNotFoundError:
        parent = os.path.dirname(os.path.abspath(state_dir))
        if not os.path.isdir(parent):
            raise ConfigProblem(f"state directory {state_dir}: neither it nor its parent "
                                f"{parent} exists", 3) from None
        return f"state directory {state_dir}: absent, will be created (mode 0700)"
    except OSError as exc:
        raise ConfigProblem(f"state directory {state_dir}: {exc.strerror}", 3) from None
    if not stat.S_ISDIR(st.st_mode):
        raise ConfigProblem(f"state directory {state_dir}: not a directory", 3)
    if st.st_uid not in (0, os.geteuid()):
        raise ConfigProblem(f"state directory {state_dir}: owned by uid {st.st_uid}, not by "
                            "root", 3)
    db = os.path.join(state_dir, "linkbroker.db")
    if not os.path.exists(db):
        return f"state directory {state_dir}: ok, no store yet (a first start)"
    try:
        zones, links = _read_store(db)
    except (sqlite3.Error, msgspec.MsgspecError) as exc:
        raise ConfigProblem(f"store {db}: unreadable: {exc}", 3) from None
    return f"store {db}: ok, {zones} zones and {links} links"


def _read_store(db: str) -> tuple[int, int]:
    """Decode every row as the daemon would, through a read-only connection."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        tables = {row[0] for row in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table'")}
        if _TABLES - tables:
            raise sqlite3.DatabaseError(f"tables missing: {', '.join(sorted(_TABLES - tables))}")
        (ok,) = conn.execute("PRAGMA quick_check").fetchone()
        if ok != "ok":
            raise sqlite3.DatabaseError(f"quick_check: {ok}")
        zones = [msgspec.msgpack.decode(body, type=ZoneRecord)
                 for (body,) in conn.execute("SELECT body FROM zones")]
        links = [msgspec.msgpack.decode(body, type=LinkRecord)
                 for (body,) in conn.execute("SELECT body FROM links")]
        return len(zones), len(links)
    finally:
        conn.close()
