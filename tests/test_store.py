"""The SQLite store's ID state, on a real file: the key and counter survive a reopen, and a
store from the counter days (only `next_id` in meta) keeps its IDs out of the new range."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from broker._store import Store


def test_the_id_key_and_counter_survive_a_reopen(tmp_path: Path) -> None:
    store = Store(str(tmp_path))
    ids = store.load().ids
    made = [ids.allocate() for _ in range(5)]
    store.set_next_seq(ids.next_seq)
    store.close()
    again = Store(str(tmp_path)).load().ids
    assert (again.key, again.next_seq) == (ids.key, 6)
    assert [again.seq_of(i) for i in made] == [1, 2, 3, 4, 5]
    assert again.allocate() not in made


def test_a_store_from_before_keyed_ids_keeps_its_ids_unreused(tmp_path: Path) -> None:
    Store(str(tmp_path)).close()  # the schema, then what an old broker left in it
    db = sqlite3.connect(tmp_path / "linkbroker.db")
    db.execute("DELETE FROM meta")
    db.execute("INSERT INTO meta(key, value) VALUES('next_id', 300)")
    db.commit()
    db.close()
    ids = Store(str(tmp_path)).load().ids
    assert (ids.legacy_max, ids.next_seq) == (299, 300)
    assert ids.seq_of(17) == 17  # old IDs order by their own number, before new ones
    assert all(ids.allocate() > 299 for _ in range(2000))
    reopened = Store(str(tmp_path)).load().ids
    assert (reopened.key, reopened.legacy_max) == (ids.key, 299)
