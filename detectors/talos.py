"""Talos-style detector: a Gaussian mixture per window, z-test per component.

Why: Talos data is often bimodal; a mean-based test fires when only the share of
the modes changes. Here one mixture (EM, K chosen by BIC) is fitted on the whole
window, then each component's mean is compared between the window's halves with a
z-test on the points it is responsible for. A change in the mode mix moves no
component, so it stays quiet; a component that moves fires.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy.special import ndtr

from .base import BatchDetector
from .records import ChangePoint

__all__ = ["GaussianMixture1D", "TalosMixture"]


@dataclass(slots=True, frozen=True)
class GaussianMixture1D:
    """Fitted 1-d mixture: weights, means, variances (sorted by mean)."""

    weights: np.ndarray
    means: np.ndarray
    variances: np.ndarray
    loglik: float

    @property
    def k(self) -> int:
        return len(self.means)

    def bic(self, n: int) -> float:
        return (3 * self.k - 1) * math.log(n) - 2.0 * self.loglik

    def responsibilities(self, x: np.ndarray) -> np.ndarray:
        logp = _log_components(x, self.weights, self.means, self.variances)
        logp -= logp.max(axis=1, keepdims=True)
        r = np.exp(logp)
        return r / r.sum(axis=1, keepdims=True)

    @classmethod
    def fit(cls, x: np.ndarray, k: int, iters: int = 100, tol: float = 1e-8) -> "GaussianMixture1D":
        """EM from a deterministic start (means at spread quantiles)."""
        x = np.asarray(x, dtype=np.float64)
        n = len(x)
        span = float(np.var(x)) + 1e-12 * (float(np.mean(np.abs(x))) ** 2 + 1e-300)
        floor = 1e-6 * span
        means = np.quantile(x, (np.arange(k) + 0.5) / k)
        var = np.full(k, span / k)
        w = np.full(k, 1.0 / k)
        prev = -math.inf
        ll = prev
        for _ in range(iters):
            logp = _log_components(x, w, means, var)
            mx = logp.max(axis=1, keepdims=True)
            s = np.exp(logp - mx)
            tot = s.sum(axis=1, keepdims=True)
            ll = float((np.log(tot) + mx).sum())
            r = s / tot
            nk = r.sum(axis=0) + 1e-12
            w = nk / n
            means = (r * x[:, None]).sum(axis=0) / nk
            var = np.maximum((r * (x[:, None] - means) ** 2).sum(axis=0) / nk, floor)
            if ll - prev < tol * (abs(ll) + 1.0):
                break
            prev = ll
        order = np.argsort(means)
        return cls(w[order], means[order], var[order], ll)


def _log_components(x: np.ndarray, w: np.ndarray, m: np.ndarray, v: np.ndarray) -> np.ndarray:
    d = x[:, None] - m[None, :]
    return np.log(np.maximum(w, 1e-300))[None, :] - 0.5 * (np.log(2 * math.pi * v)[None, :] + d * d / v[None, :])


@dataclass(slots=True, frozen=True)
class TalosMixture(BatchDetector):
    """Configure once, then ``detect(values)``.

    ``half`` points each side of a split; K from 1..``max_k`` by BIC; a component
    fires when |z| > ``z_threshold`` and both halves hold at least ``min_weight``
    points of it. Consecutive firing splits give one change at their largest |z|.
    """

    half: int = 20
    max_k: int = 3
    z_threshold: float = 5.0
    min_weight: float = 3.0
    min_change: float = 0.0
    #: Evaluate every ``stride``-th split, then refine around the firing ones.
    stride: int = 1
    em_iters: int = 50

    @property
    def reach(self) -> int:
        """Points either side of a split that its decision depends on (for the stream adapter)."""
        return self.half

    def fit(self, x: np.ndarray) -> GaussianMixture1D:
        best: GaussianMixture1D | None = None
        for k in range(1, self.max_k + 1):
            if len(x) < 3 * k:
                break
            g = GaussianMixture1D.fit(x, k, iters=self.em_iters, tol=1e-6)
            if best is None or g.bic(len(x)) < best.bic(len(x)):
                best = g
        assert best is not None
        return best

    def z_at(self, x: np.ndarray, i: int) -> tuple[float, float, float, float, float]:
        """(max |z| over components, signed z, mean before, mean after, component spread)."""
        win = x[i - self.half : i + self.half]
        g = self.fit(win)
        r = g.responsibilities(win)
        left, right = r[: self.half], r[self.half :]
        xl, xr = win[: self.half], win[self.half :]
        nl, nr = left.sum(axis=0), right.sum(axis=0)
        pairs = [(k, k) for k in range(g.k) if nl[k] >= self.min_weight and nr[k] >= self.min_weight]
        # A component present only before and one present only after: the mixture
        # split one moving mode in two. Pair them as the same mode, moved.
        gone = [k for k in range(g.k) if nl[k] >= self.min_weight and nr[k] < 0.2 * nl[k]]
        new = [k for k in range(g.k) if nr[k] >= self.min_weight and nl[k] < 0.2 * nr[k]]
        for a in gone:
            if new:
                b = min(new, key=lambda b: abs(g.means[b] - g.means[a]))
                pairs.append((a, b))
        best = (0.0, 0.0, 0.0, 0.0, 0.0)
        for a, b in pairs:
            wl, wr = left[:, a], right[:, b]
            ml = float((wl * xl).sum() / nl[a])
            mr = float((wr * xr).sum() / nr[b])
            # The model's component variances, fitted on the whole window, are steadier
            # than per-half estimates from a handful of points.
            se = math.sqrt(g.variances[a] / nl[a] + g.variances[b] / nr[b])
            floor = 1e-9 * (abs(ml) + abs(mr) + 1e-300)
            z = (mr - ml) / max(se, floor)
            if abs(z) > best[0]:
                best = (abs(z), z, ml, mr, math.sqrt(g.variances[b]))
        return best

    def detect(self, values: Sequence[float] | np.ndarray) -> list[ChangePoint]:
        x = np.asarray(values, dtype=np.float64)
        if x.ndim != 1 or not np.all(np.isfinite(x)):
            raise ValueError("values must be a finite 1-d series")
        out: list[ChangePoint] = []
        run: list[tuple[float, int, float, float, float]] = []

        def close_run() -> None:
            if run:
                az, i, z, ml, mr = max(run)
                rel = 0.0 if ml == 0 else mr / ml - 1.0
                bwd = 0.0 if mr == 0 else ml / mr - 1.0
                if abs(rel) >= self.min_change:
                    p = float(2.0 * ndtr(-az))
                    cp = ChangePoint(i, p, ml, mr, 0.0, 0.0, rel, max(abs(rel), abs(bwd)), z)
                    # Runs split by a dip below the threshold are one change.
                    if out and i - out[-1].index < self.half:
                        if az > abs(out[-1].qhat):
                            out[-1] = cp
                    else:
                        out.append(cp)
                run.clear()

        lo, hi = self.half, len(x) - self.half
        step = max(1, self.stride)
        for i in range(lo, hi + 1, step):
            az, z, ml, mr, _ = self.z_at(x, i)
            if az > self.z_threshold:
                run.append((az, i, z, ml, mr))
                if step > 1:
                    for j in range(max(lo, i - step + 1), min(hi, i + step - 1) + 1):
                        if j != i:
                            az2, z2, ml2, mr2, _ = self.z_at(x, j)
                            if az2 > self.z_threshold:
                                run.append((az2, j, z2, ml2, mr2))
            else:
                close_run()
        close_run()
        return out
