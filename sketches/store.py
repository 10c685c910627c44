"""Sparse bucket counts (index → count), kept apart from the value mapping.

A dict keeps the one-value-at-a-time path cheap (one hash update) and costs
nothing for the gaps of multi-modal data; the serialized form is dense over the
occupied span with delta + adaptive Rice coded counts (see ``_bits``).
"""

from __future__ import annotations

from typing import Iterator

import numpy as np

from ._bits import rice_bits, rice_decode, rice_encode, unzigzag, zigzag
from ._varint import Reader, SketchDecodeError, put_svarint, put_uvarint

__all__ = ["BucketStore"]

_MAX_INDEX = 1 << 40
_MAX_COUNT = 1 << 62


class BucketStore:
    __slots__ = ("counts",)

    def __init__(self) -> None:
        self.counts: dict[int, int] = {}

    def add(self, idx: int, n: int = 1) -> None:
        c = self.counts
        c[idx] = c.get(idx, 0) + n

    def add_indices(self, idx: np.ndarray) -> None:
        """Add one count per index (vectorised bincount over the occupied span)."""
        if idx.size == 0:
            return
        lo = int(idx.min())
        bc = np.bincount(idx - lo)
        nz = np.flatnonzero(bc)
        c = self.counts
        for i, n in zip((nz + lo).tolist(), bc[nz].tolist()):
            c[i] = c.get(i, 0) + n

    def merge(self, other: "BucketStore", shift: int = 0) -> None:
        c = self.counts
        for i, n in other.counts.items():
            j = i >> shift
            c[j] = c.get(j, 0) + n

    def downscale(self, by: int) -> None:
        if by <= 0:
            return
        new: dict[int, int] = {}
        for i, n in self.counts.items():
            j = i >> by
            new[j] = new.get(j, 0) + n
        self.counts = new

    def __len__(self) -> int:
        return len(self.counts)

    def total(self) -> int:
        return sum(self.counts.values())

    def span(self) -> int:
        c = self.counts
        return (max(c) - min(c) + 1) if c else 0

    def items(self) -> Iterator[tuple[int, int]]:
        return iter(sorted(self.counts.items()))

    def dense(self) -> tuple[int, list[int]]:
        """(offset, counts over the occupied span) — the OpenTelemetry form."""
        c = self.counts
        if not c:
            return 0, []
        lo, hi = min(c), max(c)
        return lo, [c.get(i, 0) for i in range(lo, hi + 1)]

    def _deltas(self) -> tuple[int, list[int]]:
        lo, dense = self.dense()
        prev = 0
        out = []
        for n in dense:
            out.append(zigzag(n - prev))
            prev = n
        return lo, out

    def bits_lower_bound(self) -> int:
        """A cheap (numpy) lower bound on the Rice payload: no code of ``z`` is shorter
        than ``max(1, bit_length(z))`` bits, whatever the parameter."""
        c = self.counts
        if not c:
            return 0
        keys = np.fromiter(c.keys(), dtype=np.int64, count=len(c))
        vals = np.fromiter(c.values(), dtype=np.float64, count=len(c))
        lo = int(keys.min())
        dense = np.zeros(int(keys.max()) - lo + 1)
        dense[keys - lo] = vals
        d = np.diff(dense, prepend=0.0)
        z = np.where(d >= 0, 2 * d, -2 * d - 1)
        return int(np.maximum(np.frexp(z)[1], 1).sum())

    def encoded_size(self) -> int:
        lo, d = self._deltas()
        if not d:
            return 1
        nbytes = (rice_bits(d) + 7) // 8
        return _vlen(zigzag(lo)) + _vlen(len(d)) + _vlen(nbytes) + nbytes

    def encode(self, out: bytearray) -> None:
        lo, d = self._deltas()
        put_uvarint(out, len(d))
        if not d:
            return
        put_svarint(out, lo)
        payload = rice_encode(d)
        put_uvarint(out, len(payload))
        out += payload

    @classmethod
    def decode(cls, r: Reader) -> "BucketStore":
        s = cls()
        span = r.uvarint(limit=8 * len(r.buf))
        if span == 0:
            return s
        lo = r.svarint()
        if abs(lo) > _MAX_INDEX or abs(lo + span) > _MAX_INDEX:
            raise SketchDecodeError("bucket index out of range")
        nbytes = r.uvarint(limit=len(r.buf))
        deltas = rice_decode(r.take(nbytes), span, 2 * _MAX_COUNT)
        prev = 0
        for k, z in enumerate(deltas):
            prev += unzigzag(z)
            if prev < 0 or prev > _MAX_COUNT:
                raise SketchDecodeError("bucket count out of range")
            if prev:
                s.counts[lo + k] = prev
        if not s.counts or (lo not in s.counts) or (lo + span - 1 not in s.counts):
            raise SketchDecodeError("bucket span not trimmed")
        return s

    def __eq__(self, other: object) -> bool:
        return isinstance(other, BucketStore) and self.counts == other.counts

    __hash__ = None  # type: ignore[assignment]


def _vlen(n: int) -> int:
    k = 1
    while n >= 0x80:
        n >>= 7
        k += 1
    return k
