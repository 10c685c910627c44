"""Base-2 exponential histogram that lowers its resolution to stay inside a byte budget.

Bucket ``i`` at scale ``s`` holds values in (2^(i/2^s), 2^((i+1)/2^s)], the layout of
OpenTelemetry's exponential histogram. Indices are always computed at the initial
scale and shifted down, so two sketches fed the same values in any split agree
bucket for bucket: merge is exact. Zero has its own bucket; negative values mirror
into a second store. Quantiles interpolate geometrically inside the bucket and are
clamped to the exact min and max.
"""

from __future__ import annotations

import math
import struct
from typing import Sequence

import numpy as np

from ._varint import Reader, SketchDecodeError, put_svarint, put_uvarint

__all__ = ["LogBuckets"]

_VERSION = 1
_F2 = struct.Struct("<2d")
INITIAL_SCALE = 8
MIN_SCALE = -4


class _Store:
    """Dense bucket counts from ``offset``: the store, separate from the mapping."""

    __slots__ = ("offset", "counts")

    def __init__(self) -> None:
        self.offset = 0
        self.counts = np.zeros(0, dtype=np.int64)

    def add(self, idx: int, n: int = 1) -> None:
        c = self.counts
        if c.size == 0:
            self.offset = idx
            self.counts = np.zeros(1, dtype=np.int64)
        elif idx < self.offset:
            self.counts = np.concatenate((np.zeros(self.offset - idx, dtype=np.int64), c))
            self.offset = idx
        elif idx >= self.offset + c.size:
            self.counts = np.concatenate((c, np.zeros(idx - self.offset - c.size + 1, dtype=np.int64)))
        self.counts[idx - self.offset] += n

    def add_many(self, idx: np.ndarray) -> None:
        if idx.size == 0:
            return
        lo, hi = int(idx.min()), int(idx.max())
        self.add(lo, 0)
        self.add(hi, 0)
        self.counts += np.bincount(idx - self.offset, minlength=self.counts.size)

    def span(self) -> int:
        return int(self.counts.size)

    def downscale(self, by: int) -> None:
        if by <= 0 or self.counts.size == 0:
            return
        new_lo = self.offset >> by
        new_hi = (self.offset + self.counts.size - 1) >> by
        idx = (np.arange(self.counts.size, dtype=np.int64) + self.offset) >> by
        self.counts = np.bincount(idx - new_lo, weights=self.counts, minlength=new_hi - new_lo + 1).astype(np.int64)
        self.offset = new_lo

    def total(self) -> int:
        return int(self.counts.sum())

    def trim(self) -> None:
        nz = np.flatnonzero(self.counts)
        if nz.size == 0:
            self.counts = np.zeros(0, dtype=np.int64)
            self.offset = 0
        else:
            self.offset += int(nz[0])
            self.counts = self.counts[nz[0] : nz[-1] + 1].copy()


class LogBuckets:
    """Mergeable quantile sketch within ``max_bytes`` of serialized state."""

    __slots__ = ("max_bytes", "scale", "zero", "pos", "neg", "count", "min", "max", "_factor", "_shift")

    def __init__(self, max_bytes: int = 1024) -> None:
        if max_bytes < 64:
            raise ValueError("max_bytes must be at least 64")
        self.max_bytes = int(max_bytes)
        self.scale = INITIAL_SCALE
        self.zero = 0
        self.pos = _Store()
        self.neg = _Store()
        self.count = 0
        self.min = math.inf
        self.max = -math.inf
        self._factor = float(1 << INITIAL_SCALE)
        self._shift = 0

    # -- mapping ---------------------------------------------------------
    def _index(self, a: float) -> int:
        return math.floor(math.log2(a) * self._factor) >> self._shift

    def _lower(self, idx: int) -> float:
        return 2.0 ** (idx / 2.0**self.scale)

    # -- updates ---------------------------------------------------------
    def update(self, x: float) -> None:
        if not math.isfinite(x):
            raise ValueError(f"LogBuckets takes finite values, got {x!r}")
        self.count += 1
        if x < self.min:
            self.min = x
        if x > self.max:
            self.max = x
        if x > 0.0:
            self.pos.add(self._index(x))
        elif x < 0.0:
            self.neg.add(self._index(-x))
        else:
            self.zero += 1
            return
        self._fit()

    def update_many(self, values: np.ndarray | Sequence[float]) -> None:
        v = np.asarray(values, dtype=np.float64).ravel()
        if v.size == 0:
            return
        if not np.isfinite(v).all():
            raise ValueError("LogBuckets takes finite values")
        self.count += int(v.size)
        self.min = min(self.min, float(v.min()))
        self.max = max(self.max, float(v.max()))
        p = v[v > 0]
        n = v[v < 0]
        self.zero += int(v.size - p.size - n.size)
        if p.size:
            self.pos.add_many(np.floor(np.log2(p) * self._factor).astype(np.int64) >> self._shift)
        if n.size:
            self.neg.add_many(np.floor(np.log2(-n) * self._factor).astype(np.int64) >> self._shift)
        self._fit()

    def _fit(self) -> None:
        # Keep the dense span within the byte budget (at least one byte per bucket).
        limit = (self.max_bytes - 48) // 2
        while self.pos.span() + self.neg.span() > limit and self.scale > MIN_SCALE:
            self._downscale(1)

    def _downscale(self, by: int) -> None:
        self.pos.downscale(by)
        self.neg.downscale(by)
        self.scale -= by
        self._shift += by

    # -- queries ---------------------------------------------------------
    def quantile(self, q: float) -> float:
        return float(self.quantiles([q])[0])

    def quantiles(self, qs: Sequence[float]) -> np.ndarray:
        out = np.full(len(qs), np.nan)
        if self.count == 0:
            return out
        neg = self.neg.counts[::-1]  # most negative first
        neg_cum = np.cumsum(neg) if neg.size else np.zeros(0, dtype=np.int64)
        n_neg = int(neg_cum[-1]) if neg.size else 0
        pos_cum = np.cumsum(self.pos.counts) if self.pos.counts.size else np.zeros(0, dtype=np.int64)
        for i, q in enumerate(qs):
            if not 0.0 <= q <= 1.0:
                raise ValueError(f"quantile must be in [0, 1], got {q}")
            rank = q * (self.count - 1)
            if rank < n_neg:
                j = int(np.searchsorted(neg_cum, rank, side="right"))
                idx = self.neg.offset + self.neg.counts.size - 1 - j
                below = float(neg_cum[j - 1]) if j else 0.0
                frac = (rank - below + 0.5) / float(neg[j])
                lo, hi = self._lower(idx), self._lower(idx + 1)
                v = -(hi * (lo / hi) ** frac)
            elif rank < n_neg + self.zero:
                v = 0.0
            else:
                r = rank - n_neg - self.zero
                j = int(np.searchsorted(pos_cum, r, side="right"))
                j = min(j, pos_cum.size - 1)
                below = float(pos_cum[j - 1]) if j else 0.0
                frac = (r - below + 0.5) / float(self.pos.counts[j])
                lo, hi = self._lower(self.pos.offset + j), self._lower(self.pos.offset + j + 1)
                v = lo * (hi / lo) ** frac
            out[i] = min(max(v, self.min), self.max)
        return out

    # -- merge -----------------------------------------------------------
    def merge(self, other: "LogBuckets") -> None:
        """Add ``other``'s counts (exact: both map values at the same initial scale)."""
        if other.count == 0:
            return
        if other.scale < self.scale:
            self._downscale(self.scale - other.scale)
        shift = other.scale - self.scale
        for mine, theirs in ((self.pos, other.pos), (self.neg, other.neg)):
            if theirs.counts.size:
                idx = (np.arange(theirs.counts.size, dtype=np.int64) + theirs.offset) >> shift
                mine.add(int(idx[0]), 0)
                mine.add(int(idx[-1]), 0)
                np.add.at(mine.counts, idx - mine.offset, theirs.counts)
        self.zero += other.zero
        self.count += other.count
        self.min = min(self.min, other.min)
        self.max = max(self.max, other.max)
        self._fit()

    def __add__(self, other: "LogBuckets") -> "LogBuckets":
        out = LogBuckets(max(self.max_bytes, other.max_bytes))
        out.merge(self)
        out.merge(other)
        return out

    # -- bytes -----------------------------------------------------------
    def _encode(self) -> bytes:
        out = bytearray([_VERSION])
        put_uvarint(out, self.max_bytes)
        put_svarint(out, self.scale)
        put_uvarint(out, self.count)
        put_uvarint(out, self.zero)
        out += _F2.pack(self.min, self.max)
        for store in (self.pos, self.neg):
            store.trim()
            put_svarint(out, store.offset)
            put_uvarint(out, store.counts.size)
            for c in store.counts.tolist():
                put_uvarint(out, c)
        return bytes(out)

    def to_bytes(self) -> bytes:
        data = self._encode()
        while len(data) > self.max_bytes and self.scale > MIN_SCALE:
            self._downscale(1)
            data = self._encode()
        return data

    @classmethod
    def from_bytes(cls, data: bytes) -> "LogBuckets":
        r = Reader(data)
        if r.byte() != _VERSION:
            raise SketchDecodeError("unknown LogBuckets version")
        max_bytes = r.uvarint(limit=1 << 24)
        if max_bytes < 64:
            raise SketchDecodeError("max_bytes below 64")
        s = cls(max_bytes)
        scale = r.svarint()
        if not MIN_SCALE <= scale <= INITIAL_SCALE:
            raise SketchDecodeError(f"scale {scale} out of range")
        s.scale = scale
        s._shift = INITIAL_SCALE - scale
        s.count = r.uvarint()
        s.zero = r.uvarint()
        s.min, s.max = _F2.unpack(r.take(_F2.size))
        total = s.zero
        for store in (s.pos, s.neg):
            store.offset = r.svarint()
            if abs(store.offset) > 1 << 40:
                raise SketchDecodeError("bucket offset out of range")
            n = r.uvarint(limit=len(data))  # each count takes at least one byte
            counts = [r.uvarint(limit=1 << 53) for _ in range(n)]
            total += sum(counts)
            store.counts = np.array(counts, dtype=np.int64) if n else np.zeros(0, dtype=np.int64)
        r.end()
        if total != s.count:
            raise SketchDecodeError("bucket counts do not add up to the count")
        if s.count and not (math.isfinite(s.min) and math.isfinite(s.max) and s.min <= s.max):
            raise SketchDecodeError("invalid min/max")
        return s

    def __repr__(self) -> str:
        return f"LogBuckets(count={self.count}, scale={self.scale}, buckets={self.pos.span() + self.neg.span()})"
