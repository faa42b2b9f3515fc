"""Link IDs that say nothing about other zones: a keyed pseudorandom permutation of a counter.

The contract wants IDs allocated once and never reused, and it wants no field to tell a zone
what other zones hold. A plain counter breaks the second rule: a zone that creates two links
reads, from the gap between their IDs, how many links the rest of the host made meanwhile
(the same leak the per-zone event `seq` closes). So the broker keeps the counter (the
*sequence*, which also gives creation order) to itself and hands out its image under a
secret permutation of [1, 2**31): distinct sequences give distinct IDs, so nothing is reused,
and without the key consecutive IDs look unrelated.

The permutation is FF3-1 (NIST SP 800-38G Rev. 1, format-preserving encryption) over 31-bit
binary strings, with AES from the `cryptography` package as its round function, cycle-walked
into the range. It replaces a home-made 4-round Feistel with 16-bit halves, which a zone that
collected about 2**16 IDs could tell from random (finding 7 of the hostile-zone review). The
construction is checked bit for bit against the `ff3` package in the unit tests.

Older state directories keep every ID they handed out: a counter-era store's IDs are 1 up to
`legacy_max`; a Feistel-era store's are the Feistel images of sequences below `feistel_next`.
New IDs skip both, and old IDs order before new ones.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.ciphers import Cipher, CipherContext, algorithms, modes

from broker._errors import LimitExceeded

__all__ = ["FF31", "ID_LIMIT", "SECRET_SIZE", "LinkIds"]

# IDs fit a signed 32-bit integer, like illumos's datalink_id_t and every JSON parser.
ID_LIMIT = 2**31
_BITS = 31
SECRET_SIZE = 16 + 7  # an AES-128 key and FF3-1's 56-bit tweak


def _reverse_bits(x: int, width: int) -> int:
    """REV of a `width`-digit binary numeral string, as a number."""
    return int(format(x, f"0{width}b")[::-1], 2) if width else 0


class FF31:
    """FF3-1 with radix 2 over `n`-bit numbers: a keyed permutation of [0, 2**n).

    Numeral strings are kept as numbers (most significant digit first), so NUM, STR and REV of
    the specification become shifts and `_reverse_bits`.
    """

    def __init__(self, key: bytes, tweak: bytes, n: int = _BITS) -> None:
        if len(key) not in (16, 24, 32) or len(tweak) != 7 or not 20 <= n <= 192:
            raise ValueError("FF3-1 needs an AES key, a 7-byte tweak and 20 <= n <= 192")
        # The specification's CIPH_REVB(K): AES under the byte-reversed key.
        self._aes: CipherContext = Cipher(algorithms.AES(key[::-1]), modes.ECB()).encryptor()
        t = int.from_bytes(tweak, "big")
        self._tl = (t >> 24) & 0xFFFF_FFF0
        self._tr = ((t & 0xFF_FFFF) << 8) | ((t >> 24 & 0xF) << 4)
        self._u, self._v = (n + 1) // 2, n // 2

    def _round(self, w: int, i: int, half: int, width: int) -> int:
        block = (w ^ i).to_bytes(4, "big") + _reverse_bits(half, width).to_bytes(12, "big")
        return int.from_bytes(self._aes.update(block[::-1])[::-1], "big")

    def encrypt(self, x: int) -> int:
        u, v = self._u, self._v
        a, b, b_width = x >> v, x & ((1 << v) - 1), v
        for i in range(8):
            m, w = (u, self._tr) if i % 2 == 0 else (v, self._tl)
            c = (_reverse_bits(a, m) + self._round(w, i, b, b_width)) % (1 << m)
            a, b, b_width = b, _reverse_bits(c, m), m
        return (a << b_width) | b

    def decrypt(self, x: int) -> int:
        u, v = self._u, self._v
        a, b, a_width = x >> v, x & ((1 << v) - 1), u
        for i in reversed(range(8)):
            m, w = (u, self._tr) if i % 2 == 0 else (v, self._tl)
            c = (_reverse_bits(b, m) - self._round(w, i, a, a_width)) % (1 << m)
            a, b, a_width = _reverse_bits(c, m), a, m
        return (a << v) | b


class _Feistel:
    """The Feistel permutation of Feistel-era stores, kept only to recognise their IDs."""

    def __init__(self, key: int) -> None:
        self._key = key.to_bytes(8, "big")

    def _f(self, r: int, half: int) -> int:
        digest = hashlib.blake2b(half.to_bytes(2, "big") + bytes((r,)), digest_size=2,
                                 key=self._key).digest()
        return int.from_bytes(digest, "big")

    def seq_of(self, link_id: int) -> int:
        x = link_id - 1
        while True:
            left, right = x >> 16, x & 0xFFFF
            for r in reversed(range(4)):
                left, right = right ^ self._f(r, left), left
            x = (left << 16) | right
            if x < ID_LIMIT - 1:
                return x + 1


@dataclass
class LinkIds:
    secret: bytes
    next_seq: int = 1
    legacy_max: int = 0
    feistel_key: int | None = None
    feistel_next: int = 1
    _prp: FF31 = field(init=False, repr=False, compare=False)
    _feistel: _Feistel | None = field(init=False, repr=False, compare=False)
    # Sequences of IDs this process handed out and the table has not taken yet: LinkTable.add
    # asks `saw` for the sequence of the ID `allocate` just made, and an FF3-1 decryption
    # (~25 us) to learn what was known a moment before would be waste. Bounded: an ID never
    # added (a refused create) is forgotten at the next clear, and then decrypted if needed.
    _issued: dict[int, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if len(self.secret) != SECRET_SIZE:
            raise ValueError(f"an ID secret is {SECRET_SIZE} bytes, not {len(self.secret)}")
        self._prp = FF31(self.secret[:16], self.secret[16:])
        self._feistel = None if self.feistel_key is None else _Feistel(self.feistel_key)
        self._issued = {}

    @classmethod
    def fresh(cls) -> LinkIds:
        return cls(secret=secrets.token_bytes(SECRET_SIZE))

    def allocate(self) -> int:
        """The next ID; LimitExceeded (changing nothing) once 2**31 - 1 were handed out."""
        while True:
            seq = self.next_seq
            if seq >= ID_LIMIT:
                raise LimitExceeded("link IDs", ID_LIMIT - 1)
            link_id = self.id_of(seq)
            self.next_seq += 1
            if link_id > self.legacy_max and not self._feistel_issued(link_id):
                if len(self._issued) >= 4096:
                    self._issued.clear()
                self._issued[link_id] = seq
                return link_id

    def saw(self, link_id: int) -> int:
        """A loaded or re-created ID: the counter must stay past its sequence (returned)."""
        seq = self.seq_of(link_id)
        self.next_seq = max(self.next_seq, seq + 1)
        return seq

    def id_of(self, seq: int) -> int:
        if not 1 <= seq < ID_LIMIT:
            raise LimitExceeded("link IDs", ID_LIMIT - 1)
        x = seq - 1
        while True:  # cycle-walk: the 31-bit permutation restricted to [0, 2**31 - 1)
            x = self._prp.encrypt(x)
            if x < ID_LIMIT - 1:
                return x + 1

    def seq_of(self, link_id: int) -> int:
        """The creation sequence of an ID (for ordering): the inverse of `id_of`."""
        issued = self._issued.pop(link_id, None)
        if issued is not None:
            return issued
        if link_id <= self.legacy_max:
            return link_id
        if self._feistel is not None and (
                old := self._feistel.seq_of(link_id)) < self.feistel_next:
            return old
        x = link_id - 1
        while True:
            x = self._prp.decrypt(x)
            if x < ID_LIMIT - 1:
                return x + 1

    def _feistel_issued(self, link_id: int) -> bool:
        return self._feistel is not None and self._feistel.seq_of(link_id) < self.feistel_next
