"""CSIT-style grouping by Minimum Description Length, and trend compliance.

Why: MDL needs no significance level. Each group of samples is encoded as (where it
ends, its average, its standard deviation, the samples given those); the grouping
with the fewest bits wins, so a boundary survives only when describing two groups is
shorter than describing one. Averages of later groups are encoded with a density that
vanishes at the previous group's average, which discourages boundaries between
groups with nearly equal averages. Samples given average and deviation lie on a
sphere, so their cost is the sphere's area at the measurement precision.

Trend compliance (CSIT's dashboard figures): the short-term change compares the last
group average with the one ``short`` points earlier; the long-term change compares it
with the maximum group average over the ``long`` points before that.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy.special import gammaln

from .base import BatchDetector
from .records import ChangePoint

__all__ = ["MDLGrouping", "TrendCompliance", "TrendFigures", "group_bits"]

_LOG2E = 1.0 / math.log(2.0)


def group_bits(n: int, avg: float, std: float, prev_avg: float | None, max_value: float, unit: float, total: int) -> float:
    """Bits to encode one group of ``n`` samples."""
    top = max(max_value, unit)
    s = max(std, unit)
    bits = math.log2(total)  # where the group ends
    if prev_avg is None:
        bits += math.log2(top / unit)  # average: uniform on [0, max]
    else:
        # Density 2|a - prev| / (prev^2 + (max - prev)^2) on [0, max]: zero at prev.
        p = min(max(prev_avg, 0.0), top)
        norm = p * p + (top - p) * (top - p)
        dens = 2.0 * max(abs(avg - prev_avg), unit) / norm
        bits -= math.log2(max(dens * unit, 1e-300))
    if n >= 2:
        bits += math.log2(top / unit)  # deviation: uniform on [0, max]
        # Samples on the (n-2)-sphere of radius s*sqrt(n) inside the (n-1)-plane.
        d = n - 1
        log_area = math.log(2.0) + 0.5 * d * math.log(math.pi) - gammaln(0.5 * d) + (d - 1) * math.log(s * math.sqrt(n) / unit)
        bits += log_area * _LOG2E
    return bits


def _group_bits_many(n: np.ndarray, avg: np.ndarray, std: np.ndarray, prev_avg: np.ndarray, max_value: float, unit: float, total: int) -> np.ndarray:
    """``group_bits`` for many candidate groups at once (``prev_avg`` nan: first group)."""
    top = max(max_value, unit)
    s = np.maximum(std, unit)
    first = np.isnan(prev_avg)
    p = np.clip(np.where(first, 0.0, prev_avg), 0.0, top)
    norm = p * p + (top - p) * (top - p)
    dens = 2.0 * np.maximum(np.abs(avg - np.where(first, 0.0, prev_avg)), unit) / norm
    with np.errstate(divide="ignore"):
        later = -np.log2(np.maximum(dens * unit, 1e-300))
    bits = math.log2(total) + np.where(first, math.log2(top / unit), later)
    d = np.maximum(n - 1, 1).astype(np.float64)
    log_area = math.log(2.0) + 0.5 * d * math.log(math.pi) - gammaln(0.5 * d) + (d - 1) * np.log(s * np.sqrt(n) / unit)
    return bits + np.where(n >= 2, math.log2(top / unit) + log_area * _LOG2E, 0.0)


@dataclass(slots=True, frozen=True)
class MDLGrouping(BatchDetector):
    """Configure once, then ``groups(values)`` or ``detect(values)``.

    ``unit`` is the measurement precision; None means 1e-4 of the series' largest
    absolute value (relative precision, so the answer does not depend on units).
    ``max_group`` bounds a group's length so the search is O(n · max_group).
    """

    unit: float | None = None
    max_group: int = 1000

    def groups(self, values: Sequence[float] | np.ndarray) -> list[tuple[int, int]]:
        """[(start, end)] of the least-bits grouping (end exclusive)."""
        x = np.asarray(values, dtype=np.float64)
        if x.ndim != 1 or not np.all(np.isfinite(x)):
            raise ValueError("values must be a finite 1-d series")
        n = len(x)
        if n == 0:
            return []
        top = float(np.max(np.abs(x)))
        unit = self.unit if self.unit is not None else max(top * 1e-4, 1e-300)
        shift = float(x.mean())
        c1 = np.concatenate([[0.0], np.cumsum(x - shift)])
        c2 = np.concatenate([[0.0], np.cumsum((x - shift) ** 2)])
        best = np.full(n + 1, math.inf)
        best[0] = 0.0
        prev_start = [0] * (n + 1)
        last_avg = np.full(n + 1, math.nan)  # nan: the group is the first one
        for j in range(1, n + 1):
            # Every start i of a group ending at j at once (the scalar loop, vectorised).
            i = np.arange(max(0, j - self.max_group), j)
            k = j - i
            m = (c1[j] - c1[i]) / k
            var = np.maximum((c2[j] - c2[i]) / k - m * m, 0.0)
            avg = m + shift
            b = best[i] + _group_bits_many(k, avg, np.sqrt(var), last_avg[i], top, unit, n)
            a = int(np.argmin(b))  # first minimum, as the scalar loop's strict "<"
            if b[a] < math.inf:
                best[j] = b[a]
                prev_start[j] = int(i[a])
                last_avg[j] = avg[a]
        out = []
        j = n
        while j > 0:
            i = prev_start[j]
            out.append((i, j))
            j = i
        return out[::-1]

    def detect(self, values: Sequence[float] | np.ndarray) -> list[ChangePoint]:
        """Group starts (except the first) as change points.

        ``pvalue`` holds 2**-(bits saved by this boundary): how much less likely one
        group is than two, in MDL's terms.
        """
        x = np.asarray(values, dtype=np.float64)
        gs = self.groups(x)
        if len(gs) < 2:
            return []
        top = float(np.max(np.abs(x)))
        unit = self.unit if self.unit is not None else max(top * 1e-4, 1e-300)
        out = []
        for (a, b), (c, d) in zip(gs, gs[1:]):
            left, right = x[a:b], x[c:d]
            ml, mr = float(left.mean()), float(right.mean())
            sl, sr = float(left.std()), float(right.std())
            both = x[a:d]
            one = group_bits(len(both), float(both.mean()), float(both.std()), None, top, unit, len(x))
            two = group_bits(len(left), ml, sl, None, top, unit, len(x)) + group_bits(len(right), mr, sr, ml, top, unit, len(x))
            saved = one - two
            rel = 0.0 if ml == 0 else mr / ml - 1.0
            bwd = 0.0 if mr == 0 else ml / mr - 1.0
            out.append(ChangePoint(c, float(2.0 ** -max(saved, 0.0)), ml, mr, sl, sr, rel, max(abs(rel), abs(bwd)), saved))
        return out


@dataclass(slots=True, frozen=True)
class TrendFigures:
    """CSIT's trend-compliance figures (relative changes; nan when undefined)."""

    last_average: float
    short_term_change: float
    long_term_change: float


@dataclass(slots=True, frozen=True)
class TrendCompliance:
    """Short-term (e.g. a week of points) and long-term (e.g. a quarter) change of the
    last MDL group's average. Positive means the value went up."""

    short: int = 7
    long: int = 90
    grouping: MDLGrouping = MDLGrouping()

    def figures(self, values: Sequence[float] | np.ndarray) -> TrendFigures:
        x = np.asarray(values, dtype=np.float64)
        n = len(x)
        if n == 0:
            return TrendFigures(math.nan, math.nan, math.nan)
        avg = np.empty(n)
        for a, b in self.grouping.groups(x):
            avg[a:b] = x[a:b].mean()
        last = float(avg[-1])
        ref_i = n - 1 - self.short
        if ref_i < 0:
            return TrendFigures(last, math.nan, math.nan)
        ref = float(avg[ref_i])
        short = (last - ref) / ref if ref != 0 else math.nan
        lo = max(0, n - 1 - self.long)
        peak = float(avg[lo : ref_i + 1].max())
        long = (last - peak) / peak if peak != 0 else math.nan
        return TrendFigures(last, short, long)
