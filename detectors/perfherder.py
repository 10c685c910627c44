"""Mozilla Perfherder-style t-test detector.

Why: the simplest detector that has run in production for years. At each point it
compares a linearly weighted back window (12 points, growing to 24 while no change
was found) with a fore window (12 points); it fires where |t| exceeds a threshold
(7) and the change is at least 2 %, keeping only local maxima of t so one step gives
one alert.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy.special import stdtr

from .base import BatchDetector
from .records import ChangePoint

__all__ = ["PerfherderTTest"]


def _weighted(seg: np.ndarray, nearest_first: bool) -> tuple[float, float]:
    """Linearly weighted mean and variance; the point nearest the split weighs most."""
    n = len(seg)
    w = 1.0 - np.arange(n) / n
    if not nearest_first:
        w = w[::-1]
    sw = w.sum()
    m = float((w * seg).sum() / sw)
    v = float((w * (seg - m) ** 2).sum() / sw) if n > 1 else 0.0
    return m, v


@dataclass(slots=True, frozen=True)
class PerfherderTTest(BatchDetector):
    """Configure once, then ``detect(values)``."""

    min_back: int = 12
    max_back: int = 24
    fore: int = 12
    t_threshold: float = 7.0
    min_change: float = 0.02

    def __post_init__(self) -> None:
        if not 2 <= self.min_back <= self.max_back or self.fore < 2:
            raise ValueError("bad windows")

    def t_values(self, values: Sequence[float] | np.ndarray) -> np.ndarray:
        """t at every split (nan where the windows do not fit), ignoring earlier alerts."""
        x = np.asarray(values, dtype=np.float64)
        out = np.full(len(x), np.nan)
        for i in range(self.min_back, len(x) - self.fore + 1):
            out[i] = self._t(x, max(0, i - self.max_back), i)[0]
        return out

    def _t(self, x: np.ndarray, lo: int, i: int) -> tuple[float, float, float, float, float, int, int]:
        back = x[lo:i]
        fore = x[i : i + self.fore]
        mb, vb = _weighted(back, nearest_first=False)
        mf, vf = _weighted(fore, nearest_first=True)
        nb, nf = len(back), len(fore)
        se = np.sqrt(vb / nb + vf / nf)
        if se == 0:
            t = 0.0 if mf == mb else np.inf
        else:
            t = abs(mf - mb) / se
        return float(t), mb, mf, vb, vf, nb, nf

    def detect(self, values: Sequence[float] | np.ndarray) -> list[ChangePoint]:
        x = np.asarray(values, dtype=np.float64)
        if x.ndim != 1 or not np.all(np.isfinite(x)):
            raise ValueError("values must be a finite 1-d series")
        n = len(x)
        last = 0  # the back window never reaches behind the last change
        out: list[ChangePoint] = []
        i = last + self.min_back
        while i <= n - self.fore:
            t, mb, mf, vb, vf, nb, nf = self._t(x, max(last, i - self.max_back), i)
            rel = 0.0 if mb == 0 else mf / mb - 1.0
            if t > self.t_threshold and abs(rel) >= self.min_change:
                # Climb to the local maximum of t in this run of firing points.
                while i + 1 <= n - self.fore:
                    t2 = self._t(x, max(last, i + 1 - self.max_back), i + 1)[0]
                    if t2 <= t:
                        break
                    i += 1
                    t = t2
                t, mb, mf, vb, vf, nb, nf = self._t(x, max(last, i - self.max_back), i)
                df = nb + nf - 2
                p = float(2.0 * stdtr(df, -t)) if np.isfinite(t) else 0.0
                rel = 0.0 if mb == 0 else mf / mb - 1.0
                bwd = 0.0 if mf == 0 else mb / mf - 1.0
                out.append(ChangePoint(i, p, mb, mf, float(np.sqrt(vb)), float(np.sqrt(vf)), rel, max(abs(rel), abs(bwd)), t))
                last = i
                i = last + self.min_back
                continue
            i += 1
        return out
