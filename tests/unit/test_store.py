"""The SQLite store's ID state, on a real file: the secret and counter survive a reopen, and
stores from before (the counter days: only `next_id`; the Feistel days: `id_key`) keep their
IDs, which new ones never repeat."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from broker._store import Store
from tests.unit.test_ids import _feistel_id


def _old_meta(tmp_path: Path, rows: dict[str, int]) -> None:
    Store(str(tmp_path)).close()  # the schema, then what an old broker left in it
    db = sqlite3.connect(tmp_path / "linkbroker.db")
    db.execute("DELETE FROM meta")
    db.executemany("INSERT INTO meta(key, value) VALUES(?, ?)", rows.items())
    db.commit()
    db.close()


def test_the_id_secret_and_counter_survive_a_reopen(tmp_path: Path) -> None:
    store = Store(str(tmp_path))
    ids = store.load().ids
    made = [ids.allocate() for _ in range(5)]
    store.set_next_seq(ids.next_seq)
    store.close()
    again = Store(str(tmp_path)).load().ids
    assert (again.secret, again.next_seq) == (ids.secret, 6)
    assert [again.seq_of(i) for i in made] == [1, 2, 3, 4, 5]
    assert again.allocate() not in made
    db = sqlite3.connect(tmp_path / "linkbroker.db")
    (kind,) = db.execute("SELECT typeof(value) FROM meta WHERE key='id_secret'").fetchone()
    db.close()
    assert kind == "blob"


def test_a_store_from_before_keyed_ids_keeps_its_ids_unreused(tmp_path: Path) -> None:
    _old_meta(tmp_path, {"next_id": 300})
    ids = Store(str(tmp_path)).load().ids
    assert (ids.legacy_max, ids.next_seq) == (299, 300)
    assert ids.seq_of(17) == 17  # old IDs order by their own number, before new ones
    assert all(ids.allocate() > 299 for _ in range(2000))
    reopened = Store(str(tmp_path)).load().ids
    assert (reopened.secret, reopened.legacy_max) == (ids.secret, 299)


def test_a_feistel_era_store_keeps_its_ids_unreused(tmp_path: Path) -> None:
    key = 987654321
    _old_meta(tmp_path, {"id_key": key, "legacy_max": 10, "next_seq": 500})
    old = [i for i in (_feistel_id(key, s) for s in range(1, 500)) if i > 10]
    ids = Store(str(tmp_path)).load().ids
    assert (ids.feistel_key, ids.feistel_next, ids.legacy_max) == (key, 500, 10)
    assert sorted(old, key=ids.seq_of) == old  # old IDs keep their order
    new = [ids.allocate() for _ in range(5000)]
    assert not set(new) & set(old) and min(new) > 10
    reopened = Store(str(tmp_path)).load().ids
    assert (reopened.secret, reopened.feistel_key) == (ids.secret, key)
