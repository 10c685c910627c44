"""Bucket counts (index → count), kept apart from the value mapping.

In memory a dense int64 array over the occupied span (a budgeted sketch's span is
at most ``8 * max_bytes`` buckets), so a batch is one ``bincount`` and an exact
downscale or merge is one ``add.reduceat``. Serialized dense too, as zig-zagged
neighbour differences in an adaptive Rice code (see ``_bits``).
"""

from __future__ import annotations

from typing import Iterator

import numpy as np

from ._bits import rice_bits, rice_decode, rice_encode, unzigzag, zigzag
from ._varint import Reader, SketchDecodeError, put_svarint, put_uvarint

__all__ = ["BucketStore"]

_MAX_INDEX = 1 << 40
_MAX_COUNT = 1 << 60  # zig-zagged deltas must stay inside int64


class BucketStore:
    """Dense int64 counts from ``offset`` (with slack at the ends for cheap growth)."""

    __slots__ = ("offset", "arr")

    def __init__(self) -> None:
        self.offset = 0
        self.arr = np.zeros(0, dtype=np.int64)

    def _reserve(self, lo: int, hi: int) -> None:
        a = self.arr
        if a.size == 0:
            pad = 16
            self.offset = lo - pad
            self.arr = np.zeros(hi - lo + 1 + 2 * pad, dtype=np.int64)
            return
        cur_lo, cur_hi = self.offset, self.offset + a.size - 1
        if lo >= cur_lo and hi <= cur_hi:
            return
        pad = max(16, a.size // 4)
        new_lo = min(lo - pad, cur_lo) if lo < cur_lo else cur_lo
        new_hi = max(hi + pad, cur_hi) if hi > cur_hi else cur_hi
        new = np.zeros(new_hi - new_lo + 1, dtype=np.int64)
        new[cur_lo - new_lo : cur_lo - new_lo + a.size] = a
        self.offset, self.arr = new_lo, new

    def add(self, idx: int, n: int = 1) -> None:
        self._reserve(idx, idx)
        self.arr[idx - self.offset] += n

    def add_indices(self, idx: np.ndarray) -> None:
        """Add one count per index (one bincount over the batch's span)."""
        if idx.size == 0:
            return
        lo, hi = int(idx.min()), int(idx.max())
        self._reserve(lo, hi)
        bc = np.bincount(idx - lo)
        start = lo - self.offset
        self.arr[start : start + bc.size] += bc

    def add_dense(self, lo: int, counts: np.ndarray) -> None:
        if counts.size == 0:
            return
        self._reserve(lo, lo + counts.size - 1)
        start = lo - self.offset
        self.arr[start : start + counts.size] += counts

    def _shifted(self, by: int) -> tuple[int, np.ndarray]:
        """(offset, counts) of this store at ``by`` scales coarser (exact int sums)."""
        b = self.bounds()
        if b is None:
            return 0, np.zeros(0, dtype=np.int64)
        lo, hi = b
        a = self.arr[lo - self.offset : hi - self.offset + 1]
        if by <= 0:
            return lo, a.copy()
        idx = np.arange(lo, hi + 1, dtype=np.int64) >> by
        starts = np.flatnonzero(np.diff(idx, prepend=idx[0] - 1))
        out = np.zeros(int(idx[-1] - idx[0]) + 1, dtype=np.int64)
        out[idx[starts] - idx[0]] = np.add.reduceat(a, starts)
        return int(idx[0]), out

    def merge(self, other: "BucketStore", shift: int = 0) -> None:
        lo, counts = other._shifted(shift)
        self.add_dense(lo, counts)

    def downscale(self, by: int) -> None:
        if by <= 0:
            return
        self.offset, self.arr = self._shifted(by)

    def bounds(self) -> tuple[int, int] | None:
        nz = np.flatnonzero(self.arr)
        if nz.size == 0:
            return None
        return self.offset + int(nz[0]), self.offset + int(nz[-1])

    def __len__(self) -> int:
        return int(np.count_nonzero(self.arr))

    def __bool__(self) -> bool:
        return bool(self.arr.any())

    def total(self) -> int:
        return int(self.arr.sum())

    def span(self) -> int:
        b = self.bounds()
        return 0 if b is None else b[1] - b[0] + 1

    def items(self) -> list[tuple[int, int]]:
        """Occupied buckets as (index, count), in index order."""
        nz = np.flatnonzero(self.arr)
        return list(zip((nz + self.offset).tolist(), self.arr[nz].tolist()))

    def to_dict(self) -> dict[int, int]:
        return dict(self.items())

    def update(self, counts: dict[int, int]) -> None:
        for i, n in counts.items():
            if n:
                self.add(i, n)

    def dense(self) -> tuple[int, list[int]]:
        """(offset, counts over the occupied span) — the OpenTelemetry form."""
        lo, a = self._shifted(0)
        return lo, a.tolist()

    def _deltas(self) -> tuple[int, list[int]]:
        lo, a = self._shifted(0)
        d = np.diff(a, prepend=0)
        z = np.where(d >= 0, 2 * d, -2 * d - 1)
        return lo, z.tolist()

    def bits_lower_bound(self) -> int:
        """A cheap (numpy) lower bound on the Rice payload: no code of ``z`` is shorter
        than ``max(1, bit_length(z))`` bits, whatever the parameter."""
        lo, a = self._shifted(0)
        if a.size == 0:
            return 0
        d = np.diff(a, prepend=0).astype(np.float64)
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
        span = r.uvarint(limit=8 * len(r.buf))  # every bucket costs at least one bit
        if span == 0:
            return s
        lo = r.svarint()
        if abs(lo) > _MAX_INDEX or abs(lo + span) > _MAX_INDEX:
            raise SketchDecodeError("bucket index out of range")
        nbytes = r.uvarint(limit=len(r.buf))
        deltas = rice_decode(r.take(nbytes), span, 2 * _MAX_COUNT)
        prev = 0
        counts = []
        for z in deltas:
            prev += unzigzag(z)
            if prev < 0 or prev > _MAX_COUNT:
                raise SketchDecodeError("bucket count out of range")
            counts.append(prev)
        if not counts[0] or not counts[-1]:
            raise SketchDecodeError("bucket span not trimmed")
        s.offset, s.arr = lo, np.array(counts, dtype=np.int64)
        return s

    def __eq__(self, other: object) -> bool:
        return isinstance(other, BucketStore) and self.items() == other.items()

    __hash__ = None  # type: ignore[assignment]


def _vlen(n: int) -> int:
    k = 1
    while n >= 0x80:
        n >>= 7
        k += 1
    return k
