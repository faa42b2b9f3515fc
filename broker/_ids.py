"""Link IDs that say nothing about other zones: a keyed permutation of a counter.

The contract wants IDs allocated once and never reused, and it wants no field to tell a zone
what other zones hold. A plain counter breaks the second rule: a zone that creates two links
reads, from the gap between their IDs, how many links the rest of the host made meanwhile
(the same leak the per-zone event `seq` closes). So the broker keeps the counter (the
*sequence*, which also gives creation order) to itself and hands out its image under a
secret permutation of [1, 2**31): distinct sequences give distinct IDs, so nothing is reused,
and without the key consecutive IDs look unrelated. The permutation is a four-round Feistel
network on 32 bits with BLAKE2b rounds, walked until it lands inside the range.

A state directory from before this scheme has sequential IDs up to `legacy_max`; those keep
their numbers (their sequence is the ID), and new IDs skip that range so none is reused.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

__all__ = ["ID_LIMIT", "LinkIds"]

# IDs fit a signed 32-bit integer, like illumos's datalink_id_t and every JSON parser.
ID_LIMIT = 2**31
_ROUNDS = 4
_HALF = 0xFFFF


@dataclass
class LinkIds:
    key: int
    next_seq: int = 1
    legacy_max: int = 0

    @classmethod
    def fresh(cls) -> LinkIds:
        return cls(key=secrets.randbits(63))

    def allocate(self) -> int:
        while True:
            seq = self.next_seq
            self.next_seq += 1
            link_id = self.id_of(seq)
            if link_id > self.legacy_max:
                return link_id

    def saw(self, link_id: int) -> int:
        """A loaded or re-created ID: the counter must stay past its sequence (returned)."""
        seq = self.seq_of(link_id)
        self.next_seq = max(self.next_seq, seq + 1)
        return seq

    def id_of(self, seq: int) -> int:
        if not 1 <= seq < ID_LIMIT:
            raise OverflowError(f"link sequence {seq} out of range")
        x = seq - 1
        while True:  # cycle-walk: the 32-bit permutation restricted to [0, 2**31 - 1)
            x = self._encrypt(x)
            if x < ID_LIMIT - 1:
                return x + 1

    def seq_of(self, link_id: int) -> int:
        """The creation sequence of an ID (for ordering): the inverse of `id_of`."""
        if link_id <= self.legacy_max:
            return link_id
        x = link_id - 1
        while True:
            x = self._decrypt(x)
            if x < ID_LIMIT - 1:
                return x + 1

    def _round(self, r: int, half: int) -> int:
        digest = hashlib.blake2b(
            half.to_bytes(2, "big") + bytes((r,)), digest_size=2,
            key=self.key.to_bytes(8, "big")).digest()
        return int.from_bytes(digest, "big")

    def _encrypt(self, x: int) -> int:
        left, right = x >> 16, x & _HALF
        for r in range(_ROUNDS):
            left, right = right, left ^ self._round(r, right)
        return (left << 16) | right

    def _decrypt(self, x: int) -> int:
        left, right = x >> 16, x & _HALF
        for r in reversed(range(_ROUNDS)):
            left, right = right ^ self._round(r, left), left
        return (left << 16) | right
