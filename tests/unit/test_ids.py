"""Keyed link IDs (`broker/_ids.py`): a permutation, so never reused; invertible, so creation
order survives; keyed, so a zone cannot read other zones' activity from the gaps; FF3-1 as
specified (checked against the independent `ff3` package); older stores' IDs kept."""

from __future__ import annotations

import hashlib
import itertools

import pytest
from ff3 import FF3Cipher
from hypothesis import given
from hypothesis import strategies as st

from broker._errors import LimitExceeded
from broker._ids import FF31, ID_LIMIT, SECRET_SIZE, LinkIds

secrets_ = st.binary(min_size=SECRET_SIZE, max_size=SECRET_SIZE)
seqs = st.integers(1, ID_LIMIT - 1)


def ids_with(n: int) -> LinkIds:
    return LinkIds(secret=bytes([n]) * SECRET_SIZE)


@given(st.binary(min_size=16, max_size=16), st.binary(min_size=7, max_size=7),
       st.integers(0, 2**31 - 1))
def test_ff31_is_the_specification_s_ff3_1(key: bytes, tweak: bytes, x: int) -> None:
    """Bit for bit what the `ff3` package (tested against NIST's vectors) computes."""
    reference = FF3Cipher.withCustomAlphabet(key.hex(), tweak.hex(), "01")
    ours = FF31(key, tweak)
    expected = int(reference.encrypt(format(x, "031b")), 2)
    assert ours.encrypt(x) == expected
    assert ours.decrypt(expected) == x


@given(secrets_, seqs)
def test_seq_of_inverts_id_of(secret: bytes, seq: int) -> None:
    ids = LinkIds(secret=secret)
    link_id = ids.id_of(seq)
    assert 1 <= link_id < ID_LIMIT
    assert ids.seq_of(link_id) == seq


@given(secrets_, st.lists(seqs, min_size=2, max_size=50, unique=True))
def test_distinct_sequences_get_distinct_ids(secret: bytes, some: list[int]) -> None:
    ids = LinkIds(secret=secret)
    assert len({ids.id_of(seq) for seq in some}) == len(some)


def test_many_allocations_are_a_permutation() -> None:
    """20,000 consecutive allocations: no ID twice, each maps back to its sequence."""
    ids = ids_with(7)
    made = [ids.allocate() for _ in range(20_000)]
    assert len(set(made)) == len(made)
    assert [ids.seq_of(i) for i in made] == list(range(1, 20_001))


def test_gaps_between_a_zones_ids_say_nothing() -> None:
    """The leak this closes: with a counter, a zone's consecutive IDs differ by one plus what
    others made. Here IDs from consecutive sequences are spread over the whole range."""
    ids = ids_with(99)
    made = [ids.allocate() for _ in range(1000)]
    gaps = [abs(b - a) for a, b in itertools.pairwise(made)]
    assert sum(1 for gap in gaps if gap <= 2) < 5
    assert max(made) > ID_LIMIT // 2 > min(made)


def test_another_secret_gives_other_ids() -> None:
    assert [ids_with(1).id_of(s) for s in range(1, 20)] != [
        ids_with(2).id_of(s) for s in range(1, 20)]


def test_the_low_bits_of_consecutive_ids_are_balanced() -> None:
    """The old Feistel's 16-bit halves showed structure to a zone holding ~2**16 IDs; a
    coarse check that FF3-1's output bits are unbiased over consecutive sequences."""
    ids = ids_with(3)
    made = [ids.id_of(s) for s in range(1, 20_001)]
    for bit in range(0, 31, 5):
        ones = sum(i >> bit & 1 for i in made)
        assert 9_400 < ones < 10_600, (bit, ones)


def test_legacy_ids_keep_their_numbers_and_new_ones_skip_them() -> None:
    """A store from the counter days: IDs 1..500 exist or existed; none may come back."""
    ids = LinkIds(secret=bytes(SECRET_SIZE), next_seq=501, legacy_max=500)
    assert ids.seq_of(42) == 42  # an old ID orders by its own number
    made = [ids.allocate() for _ in range(5000)]
    assert min(made) > 500
    assert all(ids.seq_of(i) > 500 for i in made)


def _feistel_id(key: int, seq: int) -> int:
    """How a Feistel-era broker (373da71) turned a sequence into an ID."""
    def f(r: int, half: int) -> int:
        return int.from_bytes(hashlib.blake2b(half.to_bytes(2, "big") + bytes((r,)),
                                              digest_size=2, key=key.to_bytes(8, "big"))
                              .digest(), "big")
    x = seq - 1
    while True:
        left, right = x >> 16, x & 0xFFFF
        for r in range(4):
            left, right = right, left ^ f(r, right)
        x = (left << 16) | right
        if x < ID_LIMIT - 1:
            return x + 1


def test_feistel_era_ids_stay_valid_in_order_and_are_never_handed_out_again() -> None:
    key, issued = 424242, 3000
    old = [_feistel_id(key, s) for s in range(1, issued)]
    ids = LinkIds(secret=bytes([5]) * SECRET_SIZE, next_seq=issued, feistel_key=key,
                  feistel_next=issued)
    assert [ids.seq_of(i) for i in old] == list(range(1, issued))
    made = [ids.allocate() for _ in range(20_000)]
    assert not set(made) & set(old)
    assert [ids.seq_of(i) for i in made] == sorted(ids.seq_of(i) for i in made)
    assert min(ids.seq_of(i) for i in made) >= issued


def test_running_out_of_ids_is_a_typed_error_that_changes_nothing() -> None:
    ids = LinkIds(secret=bytes(SECRET_SIZE), next_seq=ID_LIMIT - 1)
    last = ids.allocate()
    assert 1 <= last < ID_LIMIT
    with pytest.raises(LimitExceeded) as refused:
        ids.allocate()
    assert (refused.value.what, refused.value.limit) == ("link IDs", ID_LIMIT - 1)
    assert ids.next_seq == ID_LIMIT
    with pytest.raises(LimitExceeded):
        ids.id_of(ID_LIMIT)


def test_a_secret_of_the_wrong_size_is_refused() -> None:
    with pytest.raises(ValueError, match="23 bytes"):
        LinkIds(secret=b"short")
