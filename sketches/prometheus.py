"""A LogBuckets as the buckets Prometheus aggregates: native (exponential) histogram
buckets of a chosen schema, and classic cumulative ``le`` counts.

Native buckets share our layout: schema ``n`` is our scale ``n`` (base
``2**(2**-n)``), and Prometheus' bucket ``i`` is our bucket ``i - 1``, holding
``(base**(i-1), base**i]``. Counts are exact in total. At a schema at or below the
sketch's scale, ``2**(scale - schema)`` of our buckets merge into one: exact, and a
quantile read from the result is within the schema's bucket width (``base - 1``:
9.05 % at schema 3, 4.4 % at 4) of the sketch's own. At a finer schema each of our
buckets is split evenly (log-uniform, integer counts by cumulative rounding): no
information is added, so the error stays the sketch's bucket width.

Classic ``le`` counts: values at or below each bound, taking values as log-uniform
inside the bucket a bound cuts (narrowed to the exact min and max, as quantiles
are); exact for bounds on bucket edges, else off by at most that bucket's count.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .logbuckets import LogBuckets
from .otel import PROM_MAX_SCHEMA, PROM_MIN_SCHEMA, PromNativeHistogram, _spans

__all__ = ["NativeBuckets", "native_buckets", "le_counts"]

_MAX_REFINE = 10  # a schema at most this much finer than the sketch (2**10 pieces per bucket)
_MAX_PIECES = 1 << 20  # and at most this many buckets out


@dataclass(slots=True, frozen=True)
class NativeBuckets:
    """A native histogram's content: sparse ``(Prometheus index, count)`` pairs in
    index order (counts > 0), negative buckets by magnitude."""

    schema: int
    zero_threshold: float
    zero_count: int
    count: int
    sum: float
    positive: tuple[tuple[int, int], ...]
    negative: tuple[tuple[int, int], ...]

    def to_histogram(self) -> PromNativeHistogram:
        """Spans and deltas, as the exposition formats carry them."""
        sides = []
        for pairs in (self.positive, self.negative):
            if not pairs:
                sides.append(((), ()))
                continue
            first = pairs[0][0]
            dense = [0] * (pairs[-1][0] - first + 1)
            for i, c in pairs:
                dense[i - first] = c
            sides.append(_spans(first, dense))
        (ps, pd), (ns, nd) = sides
        return PromNativeHistogram(self.schema, self.count, self.sum, self.zero_count, self.zero_threshold, ps, pd, ns, nd)


def _side(idx: np.ndarray, counts: np.ndarray, d: int) -> tuple[tuple[int, int], ...]:
    """Our buckets ``idx`` (increasing) with ``counts`` as Prometheus buckets ``d``
    scales coarser (``d < 0``: finer, split evenly)."""
    if idx.size == 0:
        return ()
    if d >= 0:
        j = idx >> d
        u, first = np.unique(j, return_index=True)
        c = np.add.reduceat(counts, first)
    else:
        k = 1 << -d
        pieces = np.arange(k + 1, dtype=np.int64)
        # cumulative rounding of c * piece / k, in integers: (2 c p + k) // 2k, no float
        hi, lo = counts >> -d, counts & (k - 1)  # c = hi * k + lo (keeps c * p inside int64)
        cum = hi[:, None] * pieces + (2 * lo[:, None] * pieces + k) // (2 * k)
        c = np.diff(cum, axis=1).ravel()
        u = ((idx << -d)[:, None] + pieces[:-1]).ravel()
        keep = c > 0
        u, c = u[keep], c[keep]
    return tuple(zip((u + 1).tolist(), c.tolist()))


def native_buckets(s: LogBuckets, schema: int = 3, *, sum: float | None = None) -> NativeBuckets:
    """``s`` as native-histogram buckets at ``schema`` (-4..8). ``sum``: the exact sum
    to report (e.g. ``Moments.sum``; default the sketch's running float sum)."""
    if not isinstance(schema, int) or not PROM_MIN_SCHEMA <= schema <= PROM_MAX_SCHEMA:
        raise ValueError(f"schema must be an integer in [{PROM_MIN_SCHEMA}, {PROM_MAX_SCHEMA}], got {schema!r}")
    count = s.count  # (flushes buffered updates)
    d = s.scale - schema
    if d < -_MAX_REFINE:
        raise ValueError(f"schema {schema} is more than {_MAX_REFINE} finer than the sketch's scale {s.scale}")
    sides = []
    for store in (s.pos, s.neg):
        nz = np.flatnonzero(store.arr)
        if d < 0 and nz.size << -d > _MAX_PIECES:
            raise ValueError(f"schema {schema} would split {nz.size} buckets into more than {_MAX_PIECES}")
        sides.append(_side(nz.astype(np.int64) + store.offset, store.arr[nz].astype(np.int64), d))
    return NativeBuckets(schema, 0.0, s.zero, count, float(s.sum if sum is None else sum), sides[0], sides[1])


def _value_buckets(s: LogBuckets) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Occupied buckets in value order as (low, high, count), narrowed to [min, max]."""
    f = s.mapping.factor
    parts = []
    for store, sign in ((s.neg, -1.0), (s.pos, 1.0)):
        nz = np.flatnonzero(store.arr)
        i = nz.astype(np.float64) + store.offset
        with np.errstate(over="ignore"):
            a, b = np.exp2(i / f), np.exp2((i + 1) / f)
        c = store.arr[nz].astype(np.int64)
        parts.append((-b[::-1], -a[::-1], c[::-1]) if sign < 0 else (a, b, c))
        if sign < 0 and s.zero:
            parts.append((np.zeros(1), np.zeros(1), np.array([s.zero], dtype=np.int64)))
    lo, hi, c = (np.concatenate(x) for x in zip(*parts))
    return np.maximum(lo, s.min), np.minimum(hi, s.max), c


def le_counts(s: LogBuckets, bounds: Sequence[float]) -> np.ndarray:
    """Cumulative counts of values ``<= bound`` for each of the increasing ``bounds``
    (the ``+Inf`` bucket, ``s.count``, is not included)."""
    b = np.asarray(bounds, dtype=np.float64).ravel()
    if b.size and not (np.isfinite(b).all() and (np.diff(b) > 0).all()):
        raise ValueError("le bounds must be finite and strictly increasing")
    if s.count == 0 or b.size == 0:
        return np.zeros(b.size, dtype=np.int64)
    lo, hi, c = _value_buckets(s)
    cum = np.concatenate(([0], np.cumsum(c)))
    k = np.searchsorted(hi, b, side="right")  # buckets entirely at or below b
    below = cum[k]
    inside = np.minimum(k, c.size - 1)
    a, z, n = lo[inside], hi[inside], c[inside]
    with np.errstate(divide="ignore", invalid="ignore"):
        pos = (np.log(b) - np.log(a)) / (np.log(z) - np.log(a))  # positive buckets
        neg = (np.log(-a) - np.log(-b)) / (np.log(-a) - np.log(-z))  # negative: by magnitude
    frac = np.where(a > 0, pos, np.where(z < 0, neg, (b - a) / np.where(z > a, z - a, 1.0)))
    frac = np.where((k < c.size) & (b > a), np.clip(np.nan_to_num(frac, nan=0.0), 0.0, 1.0), 0.0)
    return (below + np.floor(frac * n + 0.5).astype(np.int64)).astype(np.int64)
