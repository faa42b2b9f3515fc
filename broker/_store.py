"""The state store: SQLite in WAL mode under --state-dir, written before any reply goes out.

Rows hold msgspec-encoded records, so the schema is the dataclasses'. Every change is one
transaction. Before a kernel link is made the broker writes an *intent* (the ID counter and the
names it is about to create) in its own transaction; the link rows replace the intent only after
the kernel confirms. A broker killed in between finds the intent at start and removes what the
kernel may hold under those names: a link nobody was told about is an orphan, not a link.
WAL with synchronous=NORMAL survives a killed process (every commit is in the WAL before the
call returns); only a power loss can drop the newest commits. `meta` holds the ID counter
(`next_seq`) and the secret that turns it into IDs (`id_secret`, see `_ids`).
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import msgspec

from broker._ids import LinkIds
from broker._table import LinkRecord, ZoneRecord

__all__ = ["Intent", "Loaded", "Store"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS zones (name TEXT PRIMARY KEY, body BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS links (id INTEGER PRIMARY KEY, body BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS intents (id INTEGER PRIMARY KEY, body BLOB NOT NULL);
-- Persistent addresses and routes (broker._addresses): re-applied when their link is back
-- in `zone`; routes with no link_id when the zone boots.
CREATE TABLE IF NOT EXISTS addr_configs (link_id INTEGER NOT NULL, zone TEXT NOT NULL,
    address TEXT NOT NULL, PRIMARY KEY (link_id, address));
CREATE TABLE IF NOT EXISTS route_configs (zone TEXT NOT NULL, key TEXT NOT NULL,
    link_id INTEGER, body BLOB NOT NULL, PRIMARY KEY (zone, key));
-- The `protection` link property (broker._nospoof), by link ID.
CREATE TABLE IF NOT EXISTS protections (link_id INTEGER PRIMARY KEY, body BLOB NOT NULL);
"""


class Intent(msgspec.Struct, frozen=True):
    """Kernel links (zone, name) a request is about to create under link ID `id`."""

    id: int
    links: list[tuple[str, str]]


@dataclass
class Loaded:
    ids: LinkIds
    zones: list[ZoneRecord] = field(default_factory=list)
    links: list[LinkRecord] = field(default_factory=list)
    intents: list[Intent] = field(default_factory=list)


class Store:
    def __init__(self, state_dir: str) -> None:
        os.makedirs(state_dir, mode=0o700, exist_ok=True)
        os.chmod(state_dir, 0o700)
        self.path = os.path.join(state_dir, "linkbroker.db")
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self._in_tx = False

    def close(self) -> None:
        self._db.close()

    def load(self) -> Loaded:
        loaded = Loaded(ids=self._load_ids())
        for (body,) in self._db.execute("SELECT body FROM zones"):
            loaded.zones.append(msgspec.msgpack.decode(body, type=ZoneRecord))
        for (body,) in self._db.execute("SELECT body FROM links ORDER BY id"):
            loaded.links.append(msgspec.msgpack.decode(body, type=LinkRecord))
        for (body,) in self._db.execute("SELECT body FROM intents ORDER BY id"):
            loaded.intents.append(msgspec.msgpack.decode(body, type=Intent))
        return loaded

    @contextmanager
    def transaction(self) -> Iterator[Store]:
        """One atomic commit; nesting joins the outer transaction."""
        if self._in_tx:
            yield self
            return
        self._db.execute("BEGIN IMMEDIATE")
        self._in_tx = True
        try:
            yield self
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        else:
            self._db.execute("COMMIT")
        finally:
            self._in_tx = False

    def _load_ids(self) -> LinkIds:
        """The ID secret and counter; made on first use. Older stores keep their IDs: a
        counter-era store has only `next_id` (its IDs were the counter), a Feistel-era store
        `id_key` (its IDs were the Feistel images of sequences below `next_seq`)."""
        meta = dict(self._db.execute("SELECT key, value FROM meta").fetchall())
        if "id_secret" in meta:
            feistel = meta.get("feistel_key")
            return LinkIds(secret=bytes(meta["id_secret"]), next_seq=int(meta["next_seq"]),
                           legacy_max=int(meta.get("legacy_max", 0)),
                           feistel_key=None if feistel is None else int(feistel),
                           feistel_next=int(meta.get("feistel_next", 1)))
        ids = LinkIds.fresh()
        if "id_key" in meta:
            ids = LinkIds(secret=ids.secret, next_seq=int(meta["next_seq"]),
                          legacy_max=int(meta.get("legacy_max", 0)),
                          feistel_key=int(meta["id_key"]), feistel_next=int(meta["next_seq"]))
        else:
            legacy_next = int(meta.get("next_id", 1))
            ids.next_seq, ids.legacy_max = legacy_next, legacy_next - 1
        with self.transaction():
            self._put_meta("id_secret", ids.secret)  # a BLOB: never coerced to a number
            self._put_meta("legacy_max", ids.legacy_max)
            self._put_meta("next_seq", ids.next_seq)
            if ids.feistel_key is not None:
                self._put_meta("feistel_key", ids.feistel_key)
                self._put_meta("feistel_next", ids.feistel_next)
        return ids

    def _put_meta(self, key: str, value: int | bytes) -> None:
        self._db.execute(
            "INSERT INTO meta(key, value) VALUES(?, ?) "
            "ON CONFLICT(key) DO UPDATE SET value=excluded.value",
            (key, value),
        )

    def set_next_seq(self, next_seq: int) -> None:
        with self.transaction():
            self._put_meta("next_seq", next_seq)

    def put_links(self, links: Iterable[LinkRecord]) -> None:
        with self.transaction():
            self._db.executemany(
                "INSERT OR REPLACE INTO links(id, body) VALUES(?, ?)",
                [(link.id, msgspec.msgpack.encode(link)) for link in links],
            )

    def delete_links(self, ids: Iterable[int]) -> None:
        with self.transaction():
            self._db.executemany("DELETE FROM links WHERE id=?", [(i,) for i in ids])

    def put_zone(self, zone: ZoneRecord) -> None:
        with self.transaction():
            self._db.execute(
                "INSERT OR REPLACE INTO zones(name, body) VALUES(?, ?)",
                (zone.name, msgspec.msgpack.encode(zone)),
            )

    def delete_zone(self, name: str) -> None:
        with self.transaction():
            self._db.execute("DELETE FROM zones WHERE name=?", (name,))

    def put_intent(self, intent: Intent) -> None:
        with self.transaction():
            self._db.execute(
                "INSERT OR REPLACE INTO intents(id, body) VALUES(?, ?)",
                (intent.id, msgspec.msgpack.encode(intent)),
            )

    def delete_intent(self, intent_id: int) -> None:
        with self.transaction():
            self._db.execute("DELETE FROM intents WHERE id=?", (intent_id,))

    # ---- persistent addresses and routes (broker._addresses) -------------------------------

    def put_addr_config(self, link_id: int, zone: str, address: str) -> None:
        with self.transaction():
            self._db.execute("INSERT OR REPLACE INTO addr_configs(link_id, zone, address) "
                             "VALUES(?, ?, ?)", (link_id, zone, address))

    def delete_addr_config(self, link_id: int, address: str) -> bool:
        with self.transaction():
            cur = self._db.execute("DELETE FROM addr_configs WHERE link_id=? AND address=?",
                                   (link_id, address))
        return cur.rowcount > 0

    def addr_configs(self) -> list[tuple[int, str, str]]:
        """(link_id, zone, address) of every persistent address."""
        return list(self._db.execute("SELECT link_id, zone, address FROM addr_configs "
                                     "ORDER BY rowid"))

    def put_route_config(self, zone: str, key: str, link_id: int | None, body: bytes) -> None:
        with self.transaction():
            self._db.execute("INSERT OR REPLACE INTO route_configs(zone, key, link_id, body) "
                             "VALUES(?, ?, ?, ?)", (zone, key, link_id, body))

    def delete_route_config(self, zone: str, key: str) -> bool:
        with self.transaction():
            cur = self._db.execute("DELETE FROM route_configs WHERE zone=? AND key=?",
                                   (zone, key))
        return cur.rowcount > 0

    def route_configs(self) -> list[tuple[str, str, int | None, bytes]]:
        """(zone, key, link_id, body) of every persistent route."""
        return list(self._db.execute("SELECT zone, key, link_id, body FROM route_configs "
                                     "ORDER BY rowid"))

    def delete_link_configs(self, ids: Iterable[int]) -> None:
        """A link that is gone takes its persistent addresses and routes with it."""
        rows = [(i,) for i in ids]
        with self.transaction():
            self._db.executemany("DELETE FROM addr_configs WHERE link_id=?", rows)
            self._db.executemany("DELETE FROM route_configs WHERE link_id=?", rows)
            self._db.executemany("DELETE FROM protections WHERE link_id=?", rows)

    def put_protection(self, link_id: int, body: bytes | None) -> None:
        """Set (or, with None, clear) a link's protection property."""
        with self.transaction():
            if body is None:
                self._db.execute("DELETE FROM protections WHERE link_id=?", (link_id,))
            else:
                self._db.execute("INSERT OR REPLACE INTO protections(link_id, body) "
                                 "VALUES(?, ?)", (link_id, body))

    def protections(self) -> list[tuple[int, bytes]]:
        return list(self._db.execute("SELECT link_id, body FROM protections ORDER BY link_id"))
