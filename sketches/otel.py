"""Conversion to and from OpenTelemetry ExponentialHistogram data points and
Prometheus native histograms, as plain dataclasses (no otel or prometheus import).

The bucket layouts are the same family: OpenTelemetry bucket ``i`` at scale ``s`` is
``(base**i, base**(i+1)]`` (our layout exactly); Prometheus calls the scale
``schema`` (−4..8) and numbers the same bucket ``i + 1``. Our zero bucket holds
exact zeros only, so ``zero_threshold`` is 0 on export; on import any zero
threshold's count goes to the zero bucket.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np

from .logbuckets import _QNONE, LogBuckets
from .mapping import MAX_SCALE, MIN_SCALE
from .store import BucketStore

__all__ = [
    "OtelBuckets",
    "ExponentialHistogramDataPoint",
    "PromNativeHistogram",
    "to_otel",
    "from_otel",
    "to_prometheus",
    "from_prometheus",
    "check_point",
    "downscale_point",
    "point_delta",
    "merge_otel",
]

PROM_MIN_SCHEMA = -4
PROM_MAX_SCHEMA = 8
_MAX_BUCKETS = 1 << 20  # refuse absurd imports instead of allocating without bound
_MAX_COUNT = 1 << 60


@dataclass(slots=True, frozen=True)
class OtelBuckets:
    offset: int = 0
    bucket_counts: tuple[int, ...] = ()


@dataclass(slots=True, frozen=True)
class ExponentialHistogramDataPoint:
    """The fields of OTLP's ``ExponentialHistogramDataPoint`` that carry the distribution."""

    scale: int
    count: int
    sum: float
    zero_count: int
    positive: OtelBuckets = field(default_factory=OtelBuckets)
    negative: OtelBuckets = field(default_factory=OtelBuckets)
    min: float | None = None
    max: float | None = None
    zero_threshold: float = 0.0


@dataclass(slots=True, frozen=True)
class PromNativeHistogram:
    """A Prometheus native histogram sample: spans are ``(offset, length)``, the first
    offset absolute, later ones the gap after the previous span; deltas are each
    bucket's count minus the previous bucket's (the first is absolute)."""

    schema: int
    count: int
    sum: float
    zero_count: int
    zero_threshold: float = 0.0
    positive_spans: tuple[tuple[int, int], ...] = ()
    positive_deltas: tuple[int, ...] = ()
    negative_spans: tuple[tuple[int, int], ...] = ()
    negative_deltas: tuple[int, ...] = ()


def to_otel(s: LogBuckets) -> ExponentialHistogramDataPoint:
    s._fit()
    po, pc = s.pos.dense()
    no, nc = s.neg.dense()
    return ExponentialHistogramDataPoint(
        scale=s.scale,
        count=s.count,
        sum=s.sum,
        zero_count=s.zero,
        positive=OtelBuckets(po, tuple(pc)),
        negative=OtelBuckets(no, tuple(nc)),
        min=s.min if s.count else None,
        max=s.max if s.count else None,
    )


def _insert(s: LogBuckets, pos: dict[int, int], neg: dict[int, int]) -> None:
    """Put imported counts into an empty sketch, coarsening first if their span could
    never fit the budget (so a hostile index range cannot force a huge array)."""
    by = 0
    for d in (pos, neg):
        if d:
            lo, hi = min(d), max(d)
            while (hi >> by) - (lo >> by) >= 8 * s.max_bytes and s.scale - by > MIN_SCALE:
                by += 1
    s._downscale(by)
    for store, d in ((s.pos, pos), (s.neg, neg)):
        for i, c in d.items():
            store.add(i >> by, c)


def _check_counts(counts: "tuple[int, ...] | list[int] | np.ndarray") -> None:
    if len(counts) > _MAX_BUCKETS:
        raise ValueError("too many buckets")
    a = np.asarray(counts)
    if a.size and a.dtype.kind in "iu":
        if int(a.min()) >= 0 and int(a.max()) <= _MAX_COUNT:
            return
    elif a.size == 0:
        return
    for c in a.tolist():  # (find the culprit for the message)
        if not isinstance(c, int) or isinstance(c, bool) or not 0 <= c <= _MAX_COUNT:
            raise ValueError(f"bucket counts must be non-negative integers up to 2**60, got {c!r}")
    raise ValueError("bucket counts must be integers")


def _finish(s: LogBuckets, count: int, total: float, lo: float | None, hi: float | None) -> LogBuckets:
    n = s.zero + s.pos.total() + s.neg.total()
    if count != n:
        raise ValueError(f"count {count} does not match the buckets ({n})")
    s.count = n
    s.sum = float(total)
    s._qexp = _QNONE  # imported buckets say nothing about a lattice
    s._fitted = False
    if n:
        m = s.mapping
        pb, nb = s.pos.bounds(), s.neg.bounds()
        cand_lo = [-m.upper(nb[1])] if nb else []
        cand_hi = [-m.lower(nb[0])] if nb else []
        if s.zero:
            cand_lo.append(0.0)
            cand_hi.append(0.0)
        if pb:
            cand_lo.append(m.lower(pb[0]))
            cand_hi.append(m.upper(pb[1]))
        s.min = float(lo) if lo is not None else min(cand_lo)
        s.max = float(hi) if hi is not None else max(cand_hi)
        if not (math.isfinite(s.min) and math.isfinite(s.max) and s.min <= s.max):
            raise ValueError("min/max invalid")
    s._fit()
    return s


def check_point(dp: ExponentialHistogramDataPoint) -> None:
    """Raise ``ValueError`` (with what is wrong) unless ``dp`` is a consistent point."""
    if not isinstance(dp.scale, int) or isinstance(dp.scale, bool) or not -(1 << 20) < dp.scale < (1 << 20):
        raise ValueError(f"scale must be an integer, got {dp.scale!r}")
    if not isinstance(dp.zero_count, int) or not 0 <= dp.zero_count <= _MAX_COUNT:
        raise ValueError(f"zero_count must be a non-negative integer, got {dp.zero_count!r}")
    total = dp.zero_count
    for name, b in (("positive", dp.positive), ("negative", dp.negative)):
        if not isinstance(b.offset, int) or not -(1 << 40) < b.offset < (1 << 40):
            raise ValueError(f"{name} bucket offset must be an integer, got {b.offset!r}")
        _check_counts(b.bucket_counts)
        total += sum(b.bucket_counts)
    if dp.count != total:
        raise ValueError(f"count {dp.count} does not match the buckets ({total})")


def _dense(b: OtelBuckets) -> BucketStore:
    st = BucketStore()
    st.add_dense(b.offset, np.asarray(b.bucket_counts, dtype=np.int64))
    return st


def _from_store(st: BucketStore) -> OtelBuckets:
    off, counts = st.dense()
    return OtelBuckets(off, tuple(counts))


def downscale_point(dp: ExponentialHistogramDataPoint, scale: int) -> ExponentialHistogramDataPoint:
    """``dp`` at the coarser ``scale`` (exact: ``2**(dp.scale - scale)`` buckets merge into one)."""
    check_point(dp)
    by = dp.scale - scale
    if by < 0:
        raise ValueError(f"cannot refine scale {dp.scale} to {scale} exactly")
    if by == 0:
        return dp
    sides = []
    for b in (dp.positive, dp.negative):
        st = _dense(b)
        st.downscale(by)
        sides.append(_from_store(st))
    return replace(dp, scale=scale, positive=sides[0], negative=sides[1])


def _trimmed(b: OtelBuckets) -> tuple[int, np.ndarray]:
    """(offset, counts) without the empty buckets at either end."""
    c = np.asarray(b.bucket_counts, dtype=np.int64)
    nz = np.flatnonzero(c)
    if nz.size == 0:
        return 0, c[:0]
    return b.offset + int(nz[0]), c[nz[0] : nz[-1] + 1]


def _side_delta(x: OtelBuckets, y: OtelBuckets) -> OtelBuckets | None:
    xo, xc = _trimmed(x)
    yo, yc = _trimmed(y)
    if yc.size == 0:
        return OtelBuckets(xo, tuple(xc.tolist()))
    start = yo - xo
    if start < 0 or start + yc.size > xc.size:  # an old bucket outside the new span went to 0
        return None
    d = xc.copy()
    d[start : start + yc.size] -= yc
    if (d < 0).any():
        return None
    off, d = _trimmed(OtelBuckets(xo, d))
    return OtelBuckets(off, tuple(d.tolist()))


def point_delta(cur: ExponentialHistogramDataPoint, prev: ExponentialHistogramDataPoint) -> ExponentialHistogramDataPoint | None:
    """``cur - prev`` of two CUMULATIVE points of one stream, at the coarser of their
    scales (a scale that dropped between them is downscaled, never an error). None
    when any count went down: a reset, so ``cur`` starts a new baseline. min and max
    of the interval are unknown (None); sum is the difference of the sums."""
    scale = min(cur.scale, prev.scale)
    a, b = downscale_point(cur, scale), downscale_point(prev, scale)
    if a.zero_count < b.zero_count or a.count < b.count:
        return None
    pos = _side_delta(a.positive, b.positive)
    neg = _side_delta(a.negative, b.negative)
    if pos is None or neg is None:
        return None
    return ExponentialHistogramDataPoint(
        scale=scale, count=a.count - b.count, sum=a.sum - b.sum, zero_count=a.zero_count - b.zero_count,
        positive=pos, negative=neg, zero_threshold=a.zero_threshold,
    )


def from_otel(dp: ExponentialHistogramDataPoint, max_bytes: int = 1024) -> LogBuckets:
    """Import a data point; scales above ours are merged down exactly."""
    check_point(dp)
    if dp.scale < MIN_SCALE:
        raise ValueError(f"scale {dp.scale!r} below {MIN_SCALE}")
    scale = min(dp.scale, MAX_SCALE)
    s = LogBuckets(max_bytes, scale=scale)
    s.zero = int(dp.zero_count)
    for store, b in ((s.pos, dp.positive), (s.neg, dp.negative)):
        if any(b.bucket_counts):
            st = _dense(b)
            lo, hi = st.bounds()  # type: ignore[misc]
            by = dp.scale - s.scale  # and coarser still if the span could never fit the budget
            while (hi >> by) - (lo >> by) >= 8 * max_bytes and dp.scale - by > MIN_SCALE:
                by += 1
            s._downscale(by - (dp.scale - s.scale))
            store.merge(st, dp.scale - s.scale)
    return _finish(s, dp.count, dp.sum, dp.min, dp.max)


def merge_otel(s: LogBuckets, dp: ExponentialHistogramDataPoint) -> None:
    """Add a (delta) point's counts to ``s`` in place: exact bucket for bucket, at the
    coarser of the two scales (a finer point is merged down, a coarser one coarsens ``s``)."""
    s.merge(from_otel(dp, s.max_bytes))


def _spans(offset: int, counts: list[int]) -> tuple[tuple[tuple[int, int], ...], tuple[int, ...]]:
    spans: list[tuple[int, int]] = []
    deltas: list[int] = []
    prev_end = None  # index one past the last bucket emitted
    prev_count = 0
    k = 0
    while k < len(counts):
        if counts[k] == 0:
            k += 1
            continue
        start = k
        while k < len(counts) and counts[k]:
            deltas.append(counts[k] - prev_count)
            prev_count = counts[k]
            k += 1
        idx = offset + start
        spans.append((idx if prev_end is None else idx - prev_end, k - start))
        prev_end = offset + k
    return tuple(spans), tuple(deltas)


def to_prometheus(s: LogBuckets) -> PromNativeHistogram:
    """Export; scales above Prometheus' 8 are merged down (exactly) to schema 8."""
    s._fit()
    if s.scale < PROM_MIN_SCHEMA:
        raise ValueError(f"scale {s.scale} below Prometheus' minimum schema {PROM_MIN_SCHEMA}")
    schema = min(s.scale, PROM_MAX_SCHEMA)
    shift = s.scale - schema
    out = {}
    for name, store in (("positive", s.pos), ("negative", s.neg)):
        st = BucketStore()
        st.merge(store, shift)
        off, dense = st.dense()
        out[name] = _spans(off + 1, dense)  # Prometheus index = OpenTelemetry index + 1
    return PromNativeHistogram(
        schema=schema,
        count=s.count,
        sum=s.sum,
        zero_count=s.zero,
        positive_spans=out["positive"][0],
        positive_deltas=out["positive"][1],
        negative_spans=out["negative"][0],
        negative_deltas=out["negative"][1],
    )


def _unspan(spans: tuple[tuple[int, int], ...], deltas: tuple[int, ...]) -> dict[int, int]:
    if sum(n for _, n in spans) != len(deltas) or len(deltas) > _MAX_BUCKETS:
        raise ValueError("spans and deltas disagree in length")
    out: dict[int, int] = {}
    idx = None
    count = 0
    k = 0
    for j, (off, n) in enumerate(spans):
        if n < 0 or (j and off < 0):
            raise ValueError("negative span")
        idx = off if idx is None else idx + off
        for _ in range(n):
            count += deltas[k]
            k += 1
            if not 0 <= count <= _MAX_COUNT:
                raise ValueError("bucket count out of range")
            if count:
                out[idx - 1] = count  # back to OpenTelemetry numbering
            idx += 1
    return out


def from_prometheus(h: PromNativeHistogram, max_bytes: int = 1024) -> LogBuckets:
    """Import; min and max are not in the format, so they become the outer bucket bounds."""
    if not PROM_MIN_SCHEMA <= h.schema <= PROM_MAX_SCHEMA:
        raise ValueError(f"schema {h.schema} outside [{PROM_MIN_SCHEMA}, {PROM_MAX_SCHEMA}]")
    s = LogBuckets(max_bytes, scale=h.schema)
    if h.zero_count < 0:
        raise ValueError("negative zero_count")
    s.zero = int(h.zero_count)
    _insert(s, _unspan(h.positive_spans, h.positive_deltas), _unspan(h.negative_spans, h.negative_deltas))
    return _finish(s, h.count, h.sum, None, None)

