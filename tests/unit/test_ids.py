"""Keyed link IDs (`broker/_ids.py`): a permutation, so never reused; invertible, so creation
order survives; keyed, so a zone cannot read other zones' activity from the gaps."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from broker._ids import ID_LIMIT, LinkIds

keys = st.integers(0, 2**63 - 1)
seqs = st.integers(1, ID_LIMIT - 1)


@given(keys, seqs)
def test_seq_of_inverts_id_of(key: int, seq: int) -> None:
    ids = LinkIds(key=key)
    link_id = ids.id_of(seq)
    assert 1 <= link_id < ID_LIMIT
    assert ids.seq_of(link_id) == seq


@given(keys, st.lists(seqs, min_size=2, max_size=50, unique=True))
def test_distinct_sequences_get_distinct_ids(key: int, some: list[int]) -> None:
    ids = LinkIds(key=key)
    assert len({ids.id_of(seq) for seq in some}) == len(some)


def test_a_small_domain_is_a_permutation_exhaustively() -> None:
    """20,000 consecutive allocations: no ID twice, each maps back to its sequence."""
    ids = LinkIds(key=12345)
    made = [ids.allocate() for _ in range(20_000)]
    assert len(set(made)) == len(made)
    assert [ids.seq_of(i) for i in made] == list(range(1, 20_001))


def test_gaps_between_a_zones_ids_say_nothing() -> None:
    """The leak this closes: with a counter, a zone's consecutive IDs differ by one plus what
    others made. Here IDs from consecutive sequences are spread over the whole range."""
    ids = LinkIds(key=99)
    made = [ids.allocate() for _ in range(1000)]
    gaps = [abs(b - a) for a, b in itertools.pairwise(made)]
    assert sum(1 for gap in gaps if gap <= 2) < 5
    assert max(made) > ID_LIMIT // 2 > min(made)


def test_another_key_gives_other_ids() -> None:
    assert [LinkIds(key=1).id_of(s) for s in range(1, 20)] != [
        LinkIds(key=2).id_of(s) for s in range(1, 20)]


def test_legacy_ids_keep_their_numbers_and_new_ones_skip_them() -> None:
    """A store from the counter days: IDs 1..500 exist or existed; none may come back."""
    ids = LinkIds(key=5, next_seq=501, legacy_max=500)
    assert ids.seq_of(42) == 42  # an old ID orders by its own number
    made = [ids.allocate() for _ in range(5000)]
    assert min(made) > 500
    assert all(ids.seq_of(i) > 500 for i in made)


def test_the_range_is_bounded() -> None:
    with pytest.raises(OverflowError):
        LinkIds(key=1).id_of(ID_LIMIT)
