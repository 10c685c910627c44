"""OTLP histogram data points, checked and held as numpy arrays.

:class:`Hist` is the one shape both point types become: explicit-bound points carry
``bounds`` (and ``scale`` None), exponential points carry ``scale``, ``zero`` and the
positive buckets as ``offset`` + dense ``counts``. Everything the differencer and the
sketch conversion need, nothing protobuf.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["Hist", "PointReject", "from_explicit", "from_exponential", "MAX_BUCKETS"]

#: More buckets than this in one point is refused (the SDK's default is 160).
MAX_BUCKETS = 4096
_MAX_COUNT = 1 << 62  # a uint64 above this is a negative int64 written unsigned
_MIN_SCALE, _MAX_SCALE = -10, 20


class PointReject(Exception):
    def __init__(self, reason: str, error: str) -> None:
        super().__init__(error)
        self.reason = reason
        self.error = error


@dataclass(slots=True, frozen=True)
class Hist:
    """One histogram point (cumulative or delta), in the metric's own unit."""

    start_ns: int
    time_ns: int
    count: int
    sum: float  # nan when the point has none
    min: float | None
    max: float | None
    counts: np.ndarray  # int64; explicit: len(bounds)+1 buckets; exponential: positive buckets
    bounds: np.ndarray | None = None  # float64, strictly increasing (explicit points)
    scale: int | None = None  # exponential points
    offset: int = 0  # index of counts[0] (exponential)
    zero: int = 0  # exponential zero bucket


def _counts(values: Any, what: str) -> np.ndarray:
    if len(values) > MAX_BUCKETS:
        raise PointReject("bad_histogram", f"{len(values)} {what}; the limit is {MAX_BUCKETS}")
    a = np.array(values, dtype=np.uint64)
    if a.size and int(a.max()) > _MAX_COUNT:
        raise PointReject("negative_count", f"{what} hold a count above 2**62 (a negative count sent as unsigned)")
    return a.astype(np.int64)


def _count(v: int, what: str) -> int:
    if v > _MAX_COUNT:
        raise PointReject("negative_count", f"{what} {v} is above 2**62 (a negative count sent as unsigned)")
    return int(v)


def _min_max(dp: Any) -> tuple[float | None, float | None]:
    lo = dp.min if dp.HasField("min") else None
    hi = dp.max if dp.HasField("max") else None
    for v in (lo, hi):
        if v is not None and not math.isfinite(v):
            raise PointReject("bad_histogram", f"min/max must be finite, got {v!r}")
    if lo is not None and hi is not None and lo > hi:
        raise PointReject("bad_histogram", f"min {lo!r} > max {hi!r}")
    if lo is not None and lo < 0:
        raise PointReject("negative_value", f"min {lo!r} is negative; latencies are >= 0")
    return lo, hi


def _sum(dp: Any) -> float:
    if not dp.HasField("sum"):
        return math.nan
    if not math.isfinite(dp.sum):
        raise PointReject("bad_histogram", f"sum must be finite, got {dp.sum!r}")
    return float(dp.sum)


def from_explicit(dp: Any) -> Hist:
    """A ``HistogramDataPoint``; raises :class:`PointReject` with the reason."""
    count = _count(dp.count, "count")
    counts = _counts(dp.bucket_counts, "bucket_counts")
    bounds = np.array(dp.explicit_bounds, dtype=np.float64)
    if bounds.size > MAX_BUCKETS:
        raise PointReject("bad_histogram", f"{bounds.size} explicit_bounds; the limit is {MAX_BUCKETS}")
    if not np.isfinite(bounds).all():
        raise PointReject("bounds_not_increasing", "explicit_bounds must be finite")
    if bounds.size > 1 and not (np.diff(bounds) > 0).all():
        raise PointReject("bounds_not_increasing", f"explicit_bounds are not strictly increasing: {bounds.tolist()[:20]}")
    if counts.size == 0 and count:
        raise PointReject("bad_histogram", f"count {count} but no bucket_counts (a histogram without buckets)")
    if counts.size and counts.size != bounds.size + 1:
        raise PointReject("bad_histogram", f"{counts.size} bucket_counts for {bounds.size} explicit_bounds (need {bounds.size + 1})")
    if int(counts.sum()) != count:
        raise PointReject("bad_histogram", f"count {count} != sum of bucket_counts {int(counts.sum())}")
    lo, hi = _min_max(dp)
    if counts.size == 0:
        counts = np.zeros(bounds.size + 1, dtype=np.int64)
    return Hist(int(dp.start_time_unix_nano), int(dp.time_unix_nano), count, _sum(dp), lo, hi, counts, bounds=bounds)


def from_exponential(dp: Any) -> Hist:
    """An ``ExponentialHistogramDataPoint``; negative buckets with counts are refused
    (a latency is never negative)."""
    count = _count(dp.count, "count")
    zero = _count(dp.zero_count, "zero_count")
    if not _MIN_SCALE <= dp.scale <= _MAX_SCALE:
        raise PointReject("bad_histogram", f"scale {dp.scale} outside [{_MIN_SCALE}, {_MAX_SCALE}]")
    pos = _counts(dp.positive.bucket_counts, "positive bucket_counts")
    neg = _counts(dp.negative.bucket_counts, "negative bucket_counts")
    if neg.size and neg.any():
        raise PointReject("negative_value", f"{int(neg.sum())} values in negative buckets; latencies are >= 0")
    if zero + int(pos.sum()) != count:
        raise PointReject("bad_histogram", f"count {count} != zero_count + bucket counts ({zero + int(pos.sum())})")
    nz = np.flatnonzero(pos)
    if nz.size:  # in any time unit a latency lies within [2**-100, 2**64)
        lo, hi = (dp.positive.offset + int(nz[0])) * 2.0 ** -dp.scale, (dp.positive.offset + int(nz[-1]) + 1) * 2.0 ** -dp.scale
        if lo < -100 or hi > 64:
            raise PointReject("bad_histogram", f"occupied buckets span 2**{lo:g} .. 2**{hi:g}, outside any latency's range")
    lo, hi = _min_max(dp)
    return Hist(int(dp.start_time_unix_nano), int(dp.time_unix_nano), count, _sum(dp), lo, hi, pos,
                scale=int(dp.scale), offset=int(dp.positive.offset), zero=zero)
