"""Base-2 exponential histogram that lowers its resolution to stay inside a byte budget.

Bucket ``i`` at scale ``s`` holds ``(2**(i/2**s), 2**((i+1)/2**s)]`` (OpenTelemetry's
layout). The scale is always the finest one at which the serialized state fits in
``max_bytes``: it only ever goes down, by merging neighbouring buckets pairwise, so
two sketches of the same values in any split end up bucket for bucket identical and
merge is exact. Zero has its own bucket; negative values mirror into a second store.
Quantiles interpolate geometrically inside the bucket, with the first and last
occupied buckets narrowed to the exact min and max.
"""

from __future__ import annotations

import math
import struct
from bisect import bisect_right
from typing import Sequence

import numpy as np

from ._varint import Reader, SketchDecodeError, put_svarint, put_uvarint
from .mapping import MAX_SCALE, MIN_SCALE, LogMapping
from .store import BucketStore

__all__ = ["LogBuckets"]

_VERSION = 2
_F3 = struct.Struct("<3d")
_INF = math.inf
_MAXF = 1.7976931348623157e308
_MIN_BYTES = 64
_MAX_BYTES = 1 << 24
_log2 = math.log2
_ceil = math.ceil


class LogBuckets:
    """Mergeable quantile sketch within ``max_bytes`` of serialized state."""

    __slots__ = ("max_bytes", "scale", "zero", "pos", "neg", "count", "sum", "min", "max", "_f", "_limit", "_pd", "_nd")

    def __init__(self, max_bytes: int = 1024, *, scale: int = MAX_SCALE) -> None:
        if not _MIN_BYTES <= max_bytes <= _MAX_BYTES:
            raise ValueError(f"max_bytes must be in [{_MIN_BYTES}, {_MAX_BYTES}]")
        LogMapping(scale)  # validates
        self.max_bytes = int(max_bytes)
        self.scale = scale
        self.zero = 0
        self.pos = BucketStore()
        self.neg = BucketStore()
        self._pd = self.pos.counts  # aliases for the hot path; stores mutate in place
        self._nd = self.neg.counts
        self.count = 0
        self.sum = 0.0
        self.min = _INF
        self.max = -_INF
        self._f = math.ldexp(1.0, scale)
        self._limit = 64

    @property
    def mapping(self) -> LogMapping:
        return LogMapping(self.scale)

    # -- updates ---------------------------------------------------------
    def update(self, x: float) -> None:
        """Add one value (pure-Python hot path: one log2, one dict update)."""
        if 0.0 < x <= _MAXF:
            i = _ceil(_log2(x) * self._f) - 1
            try:
                self._pd[i] += 1
            except KeyError:
                self._new_bucket(self._pd, i, x)
                return
        else:
            self._update_other(x)
            return
        self.count += 1
        self.sum += x
        if x < self.min:  # min <= max once anything was added, so one test suffices
            self.min = x
        elif x > self.max:
            self.max = x

    def _new_bucket(self, d: dict[int, int], i: int, x: float) -> None:
        d[i] = 1
        self.count += 1
        self.sum += x
        if x < self.min:
            self.min = x
        if x > self.max:
            self.max = x
        if len(self._pd) + len(self._nd) > self._limit:
            self._fit()

    def _update_other(self, x: float) -> None:
        if x == 0.0:
            self.zero += 1
        elif -_MAXF <= x < 0.0:
            i = _ceil(_log2(-x) * self._f) - 1
            d = self._nd
            if i not in d:
                self._new_bucket(d, i, x)
                return
            d[i] += 1
        else:
            raise ValueError(f"LogBuckets takes finite values, got {x!r}")
        self.count += 1
        self.sum += x
        if x < self.min:
            self.min = x
        if x > self.max:
            self.max = x

    def update_many(self, values: np.ndarray | Sequence[float]) -> None:
        """Add many values at once (numpy: log2, ceil, bincount over the span)."""
        v = np.asarray(values, dtype=np.float64).ravel()
        if v.size == 0:
            return
        lo, hi = float(v.min()), float(v.max())
        if not (math.isfinite(lo) and math.isfinite(hi)):
            raise ValueError("LogBuckets takes finite values")  # nan propagates into min/max
        if lo > 0.0:
            self._add_indices(self.pos, (np.ceil(np.log2(v) * self._f) - 1).astype(np.int64))
        else:
            p = v[v > 0.0]
            n = v[v < 0.0]
            self.zero += int(v.size - p.size - n.size)
            if p.size:
                self._add_indices(self.pos, (np.ceil(np.log2(p) * self._f) - 1).astype(np.int64))
            if n.size:  # (the positive side may have coarsened the scale: recompute at it)
                self._add_indices(self.neg, (np.ceil(np.log2(-n) * self._f) - 1).astype(np.int64))
        self.count += int(v.size)
        with np.errstate(over="ignore", invalid="ignore"):
            self.sum += float(v.sum())  # may overflow to inf, like a float running sum
        self.min = min(self.min, lo)
        self.max = max(self.max, hi)
        if len(self._pd) + len(self._nd) > self._limit:
            self._fit()

    def _add_indices(self, store: BucketStore, idx: np.ndarray) -> None:
        # A span wider than the budget's bits can never fit (each bucket costs >= 1 bit),
        # so coarsen before counting: bounds the bincount whatever the data.
        lo, hi = int(idx.min()), int(idx.max())
        if store.counts:
            lo, hi = min(lo, min(store.counts)), max(hi, max(store.counts))
        by = 0
        while (hi >> by) - (lo >> by) >= 8 * self.max_bytes and self.scale - by > MIN_SCALE:
            by += 1
        if by:
            self._downscale(by)
            idx = idx >> by
        store.add_indices(idx)

    # -- budget ----------------------------------------------------------
    def _header(self) -> bytearray:
        out = bytearray([_VERSION])
        put_uvarint(out, self.max_bytes)
        put_svarint(out, self.scale)
        put_uvarint(out, self.count)
        put_uvarint(out, self.zero)
        if self.count:
            out += _F3.pack(self.min, self.max, self.sum)
        return out

    def encoded_size(self) -> int:
        return len(self._header()) + self.pos.encoded_size() + self.neg.encoded_size()

    def _downscale(self, by: int) -> None:
        by = min(by, self.scale - MIN_SCALE)
        if by <= 0:
            return
        for store in (self.pos, self.neg):
            new = BucketStore()
            new.counts = store.counts
            new.downscale(by)
            store.counts.clear()
            store.counts.update(new.counts)
        self.scale -= by
        self._f = math.ldexp(1.0, self.scale)

    def _fit(self) -> None:
        """Lower the scale until the serialized state fits (finest scale that fits)."""
        bits = 8 * self.max_bytes
        while self.scale > MIN_SCALE and self.pos.span() + self.neg.span() > bits:
            self._downscale(1)  # every bucket in the span costs at least one bit
        while self.scale > MIN_SCALE and self.pos.bits_lower_bound() + self.neg.bits_lower_bound() > bits:
            self._downscale(1)
        while self.scale > MIN_SCALE and self.encoded_size() > self.max_bytes:
            self._downscale(1)
        n = len(self.pos) + len(self.neg)
        self._limit = min(n + n // 4 + 16, 8 * self.max_bytes)


    # -- queries ---------------------------------------------------------
    def quantile(self, q: float) -> float:
        return float(self.quantiles([q])[0])

    def quantiles(self, qs: Sequence[float]) -> np.ndarray:
        """Estimates at ranks ``q * (count - 1)`` (numpy's linear definition); nan when empty."""
        qa = np.asarray(qs, dtype=np.float64).ravel()
        if qa.size and not ((qa >= 0.0) & (qa <= 1.0)).all():
            raise ValueError("quantiles must be in [0, 1]")
        out = np.full(qa.size, np.nan)
        if self.count == 0:
            return out
        self._fit()
        m = self.mapping
        # Buckets in value order as (count, lo, hi); zero is a point bucket.
        buckets: list[tuple[int, float, float]] = []
        for i, c in sorted(self.neg.counts.items(), reverse=True):
            buckets.append((c, -m.upper(i), -m.lower(i)))
        if self.zero:
            buckets.append((self.zero, 0.0, 0.0))
        for i, c in sorted(self.pos.counts.items()):
            buckets.append((c, m.lower(i), m.upper(i)))
        cum = np.cumsum([b[0] for b in buckets]).tolist()
        lo_v, hi_v = self.min, self.max

        def order_stat(k: int) -> float:
            """Estimate of the k-th smallest value (0-based)."""
            j = bisect_right(cum, k)
            j = min(j, len(buckets) - 1)
            c, lo, hi = buckets[j]
            # An edge holding the exact min or max anchors the first or last item on it.
            a = 0.0 if lo <= lo_v else 0.5
            b = 0.0 if hi >= hi_v else 0.5
            lo, hi = max(lo, lo_v), min(hi, hi_v)
            below = cum[j - 1] if j else 0
            den = c - 1 + a + b
            frac = min(max((k - below + a) / den, 0.0), 1.0) if den > 0 else 0.0
            if frac <= 0.0 or lo == hi:
                v = lo
            elif frac >= 1.0:
                v = hi
            elif lo > 0.0:
                v = math.exp(math.log(lo) + frac * (math.log(hi) - math.log(lo)))
            elif hi < 0.0:
                v = -math.exp(math.log(-hi) + (1.0 - frac) * (math.log(-lo) - math.log(-hi)))
            else:
                v = lo + (hi - lo) * frac
            return min(max(v, lo_v), hi_v)

        n1 = self.count - 1
        for k, q in enumerate(qa.tolist()):
            r = q * n1
            f = math.floor(r)
            g = r - f
            v = order_stat(f)
            if g > 0.0 and f < n1:
                # numpy's linear definition: between the two neighbouring order statistics
                v = v + g * (order_stat(f + 1) - v)
            out[k] = min(max(v, lo_v), hi_v)
        return out

    # -- merge -----------------------------------------------------------
    def merge(self, other: "LogBuckets") -> None:
        """Add ``other``'s counts in place (exact: indices agree after a shift)."""
        if not isinstance(other, LogBuckets):
            raise TypeError("can only merge another LogBuckets")
        if other.count == 0:
            return
        if other.scale < self.scale:
            self._downscale(self.scale - other.scale)
        shift = other.scale - self.scale
        self.pos.merge(other.pos, shift)
        self.neg.merge(other.neg, shift)
        self.zero += other.zero
        self.count += other.count
        self.sum += other.sum
        self.min = min(self.min, other.min)
        self.max = max(self.max, other.max)
        self._fit()

    def __add__(self, other: "LogBuckets") -> "LogBuckets":
        out = LogBuckets(max(self.max_bytes, other.max_bytes))
        out.merge(self)
        out.merge(other)
        return out

    def copy(self) -> "LogBuckets":
        out = LogBuckets(self.max_bytes, scale=self.scale)
        out.merge(self)
        return out

    def __eq__(self, other: object) -> bool:
        """Same buckets, scale, count, min and max (``sum`` is float-rounded, not compared)."""
        if not isinstance(other, LogBuckets):
            return NotImplemented
        self._fit()
        other._fit()
        return (self.scale, self.zero, self.count, self.min, self.max) == (
            other.scale, other.zero, other.count, other.min, other.max
        ) and self.pos == other.pos and self.neg == other.neg

    __hash__ = None  # type: ignore[assignment]

    # -- bytes -----------------------------------------------------------
    def to_bytes(self) -> bytes:
        """Version byte, varint header, min/max/sum, then the two Rice-coded stores."""
        self._fit()
        out = self._header()
        self.pos.encode(out)
        self.neg.encode(out)
        return bytes(out)

    @classmethod
    def from_bytes(cls, data: bytes) -> "LogBuckets":
        r = Reader(data)
        if r.byte() != _VERSION:
            raise SketchDecodeError("unknown LogBuckets version")
        max_bytes = r.uvarint(limit=_MAX_BYTES)
        if max_bytes < _MIN_BYTES:
            raise SketchDecodeError("max_bytes below 64")
        scale = r.svarint()
        if not MIN_SCALE <= scale <= MAX_SCALE:
            raise SketchDecodeError(f"scale {scale} out of range")
        s = cls(max_bytes, scale=scale)
        s.count = r.uvarint(limit=1 << 62)
        s.zero = r.uvarint(limit=1 << 62)
        if s.count:
            s.min, s.max, s.sum = _F3.unpack(r.take(_F3.size))
            # sum may legitimately have overflowed to inf (or nan); min and max may not.
            if not (math.isfinite(s.min) and math.isfinite(s.max) and s.min <= s.max):
                raise SketchDecodeError("invalid min/max")
        s.pos.counts.update(BucketStore.decode(r).counts)
        s.neg.counts.update(BucketStore.decode(r).counts)
        r.end()
        if s.zero + s.pos.total() + s.neg.total() != s.count:
            raise SketchDecodeError("bucket counts do not add up to the count")
        if s.count:
            m = s.mapping
            lo_ok = (s.min < 0 and s.neg.counts) or (s.min == 0 and s.zero) or (s.min > 0 and s.min <= m.upper(min(s.pos.counts)))
            hi_ok = (s.max > 0 and s.pos.counts) or (s.max == 0 and s.zero) or (s.max < 0 and -s.max <= m.upper(min(s.neg.counts)))
            if not (lo_ok and hi_ok):
                raise SketchDecodeError("min/max inconsistent with the buckets")
        n = len(s.pos) + len(s.neg)
        s._limit = min(n + n // 4 + 16, 8 * max_bytes)
        return s

    def __repr__(self) -> str:
        return f"LogBuckets(count={self.count}, scale={self.scale}, buckets={len(self.pos) + len(self.neg)})"
