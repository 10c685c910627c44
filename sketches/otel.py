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
from dataclasses import dataclass, field

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


def _check_counts(counts: tuple[int, ...] | list[int]) -> None:
    if len(counts) > _MAX_BUCKETS:
        raise ValueError("too many buckets")
    for c in counts:
        if not isinstance(c, int) or not 0 <= c <= _MAX_COUNT:
            raise ValueError(f"bucket counts must be non-negative integers, got {c!r}")


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


def from_otel(dp: ExponentialHistogramDataPoint, max_bytes: int = 1024) -> LogBuckets:
    """Import a data point; scales above ours are merged down exactly."""
    if not isinstance(dp.scale, int) or dp.scale < MIN_SCALE:
        raise ValueError(f"scale {dp.scale!r} below {MIN_SCALE}")
    scale = min(dp.scale, MAX_SCALE)
    shift = dp.scale - scale
    s = LogBuckets(max_bytes, scale=scale)
    s.zero = int(dp.zero_count)
    if s.zero < 0:
        raise ValueError("negative zero_count")
    sides = []
    for b in (dp.positive, dp.negative):
        _check_counts(b.bucket_counts)
        if not isinstance(b.offset, int):
            raise ValueError("bucket offset must be an integer")
        d: dict[int, int] = {}
        for k, c in enumerate(b.bucket_counts):
            if c:
                j = (b.offset + k) >> shift
                d[j] = d.get(j, 0) + c
        sides.append(d)
    _insert(s, sides[0], sides[1])
    return _finish(s, dp.count, dp.sum, dp.min, dp.max)


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

