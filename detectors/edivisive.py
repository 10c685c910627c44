"""Hunter/Otava-style E-Divisive: windowed Matteson–James splitting, then merging.

Why this shape: E-Divisive proposes the split that maximises the energy divergence
(α = 1, U-statistic normalisation, over τ and κ); a Student t-test decides whether the
split is real. Running it on sliding windows keeps the cost linear in the series
length, and the bottom-up merge over the weak change points of a looser first pass
recovers the points a single window would miss (Fleming et al., ICPE 2023).

The divergence of all (τ, κ) pairs of a window comes from prefix sums of the pairwise
distance matrix (O(L²) per window, never a pairwise sum per pair), and the first
candidate of every window is computed for a batch of windows at once.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import lru_cache
import math
from typing import Sequence

import numpy as np
from scipy.special import stdtr, stdtrit

from .base import BatchDetector
from .records import ChangePoint

__all__ = ["EDivisive", "q_matrices", "ttest", "first_pass_pvalue", "merge_change_points"]


# --------------------------------------------------------------------------- divergence


@lru_cache(maxsize=64)
def _coefficients(L: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per-length constants of Q = A·within(:κ) − B·within(:τ) − C·within(τ:κ)."""
    tau = np.arange(1, L, dtype=np.float64)[:, None]
    kap = np.arange(2, L + 1, dtype=np.float64)[None, :]
    m = kap - tau
    upper = m > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        # cross = within(:κ) − within(:τ) − within(τ:κ), so each within-sum's
        # coefficient folds in the cross term's.
        a = np.where(upper, 2.0 / kap, 0.0)
        b = np.where(upper, 2.0 / kap * np.where(tau > 1, (kap - 1) / (tau - 1), 1.0), 0.0)
        c = np.where(upper, 2.0 / kap * np.where(m > 1, (kap - 1) / (m - 1), 1.0), 0.0)
    mask = np.triu(np.ones((L, L)), 1)
    return a, b, -c, mask  # c negated: Q starts as −c·W(τ, κ)


def within_sums(X: np.ndarray) -> np.ndarray:
    """S[b, t, c] = sum of |x_j - x_k| over t <= j < k <= c, for every window b.

    Built from row prefix sums and then suffix sums over rows of the masked distance
    matrix: O(L²) per window. Any sub-interval's sums are slices of this, bit for bit
    equal to computing them on the sub-array (the extra terms are exact zeros).
    """
    B, L = X.shape
    mask = _coefficients(L)[3]
    D = X[:, :, None] - X[:, None, :]
    np.abs(D, out=D)
    D *= mask
    np.cumsum(D, axis=2, out=D)
    return np.cumsum(D[:, ::-1, :], axis=1)[:, ::-1, :]


def _q_from_sums(S: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """Q of the sub-interval [lo, hi) from the within sums of its window(s)."""
    a, b, nc, _ = _coefficients(hi - lo)
    Q = S[..., lo + 1 : hi, lo + 1 : hi] * nc
    Q += S[..., lo, None, lo + 1 : hi] * a
    Q -= S[..., lo, lo : hi - 1, None] * b
    return Q


def q_matrices(X: np.ndarray) -> np.ndarray:
    """Divergence Q[b, τ-1, κ-2] of ``X[b, :τ]`` against ``X[b, τ:κ]`` for every window b.

    Q = a·W(0, κ) − b·W(0, τ) − c·W(τ, κ) with W the within sums. Entries with κ ≤ τ
    are 0, so the arg-max of a window has the same layout (and the same
    first-occurrence tie rule) as Otava's matrix. Batches are processed in chunks
    small enough to stay in cache.
    """
    X = np.asarray(X, dtype=np.float64)
    B, L = X.shape
    if L < 2:
        return np.zeros((B, 0, 0))
    if B > 32:
        return np.concatenate([q_matrices(X[i : i + 32]) for i in range(0, B, 32)])
    return _q_from_sums(within_sums(X), 0, L)


def _q_matrix(x: np.ndarray) -> np.ndarray:
    return q_matrices(x[None, :])[0]


def _argmax_split(Q: np.ndarray) -> tuple[int, float]:
    flat = int(np.argmax(Q))
    i, j = divmod(flat, Q.shape[1])
    return i + 1, float(Q[i, j])


def _best_split(x: np.ndarray) -> tuple[int, float]:
    """(τ, qhat) maximising the divergence of ``x`` (τ = first index of the right part)."""
    return _argmax_split(_q_matrix(x))


# --------------------------------------------------------------------------- t-test


def _pvalue(m1, m2, s1, s2, n1, n2):
    """Two-sided pooled Student t-test from stats, with Otava's conventions (vectorised).

    s1, s2 are population (ddof=0) deviations, plugged in where sample ones belong, as
    Otava does; fewer than 3 points in total give p = 1.
    """
    n1 = np.asarray(n1, dtype=np.float64)
    n2 = np.asarray(n2, dtype=np.float64)
    df = n1 + n2 - 2.0
    with np.errstate(divide="ignore", invalid="ignore"):
        svar = ((n1 - 1.0) * s1 * s1 + (n2 - 1.0) * s2 * s2) / df
        denom = np.sqrt(svar * (1.0 / n1 + 1.0 / n2))
        t = (m1 - m2) / denom
        p = 2.0 * stdtr(np.where(df > 0, df, 1.0), -np.abs(t))
    p = np.where(np.isnan(t), np.nan, p)
    return np.where(n1 + n2 > 2, p, 1.0)


def _mean_std(a: np.ndarray) -> tuple[float, float]:
    """np.mean / np.std (ddof 0) with the same operations, minus their overhead."""
    n = len(a)
    m = float(a.sum()) / n
    if n < 2:
        return m, 0.0
    d = a - m
    return m, math.sqrt(float((d * d).sum()) / n)


def ttest(left: np.ndarray, right: np.ndarray) -> tuple[float, float, float, float, float]:
    """(mean_left, mean_right, std_left, std_right, pvalue) of two non-empty segments."""
    n1, n2 = len(left), len(right)
    if n1 == 0 or n2 == 0:
        raise ValueError("empty segment")
    ml, sl = _mean_std(left)
    mr, sr = _mean_std(right)
    if n1 + n2 <= 2:
        return ml, mr, sl, sr, 1.0
    df = n1 + n2 - 2.0
    svar = ((n1 - 1.0) * sl * sl + (n2 - 1.0) * sr * sr) / df
    denom = math.sqrt(svar * (1.0 / n1 + 1.0 / n2))
    diff = ml - mr
    if denom == 0.0:
        p = math.nan if diff == 0.0 else 0.0
    else:
        p = 2.0 * float(stdtr(df, -abs(diff / denom)))
    return ml, mr, sl, sr, p


@lru_cache(maxsize=256)
def _t_critical(df: int, pvalue: float) -> float:
    """|t| at or above which the two-sided p-value is <= pvalue (a hair loose)."""
    return float(stdtrit(df, 1.0 - pvalue / 2.0)) * (1.0 - 1e-6) if pvalue < 1.0 else 0.0


def _split_t2(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """t² of Otava's t-test at every split τ = 1..L-1 of every window, from prefix sums
    of centred values, and the smaller of the two segment variances (for spotting
    degenerate, zero-spread splits)."""
    B, L = X.shape
    Y = X - X.mean(axis=1, keepdims=True)
    c1 = np.cumsum(Y, axis=1)
    c2 = np.cumsum(Y * Y, axis=1)
    n1 = np.arange(1, L, dtype=np.float64)
    n2 = L - n1
    s1, q1 = c1[:, :-1], c2[:, :-1]
    s2, q2 = c1[:, -1:] - s1, c2[:, -1:] - q1
    m1, m2 = s1 / n1, s2 / n2
    v1 = np.maximum(q1 / n1 - m1 * m1, 0.0)
    v2 = np.maximum(q2 / n2 - m2 * m2, 0.0)
    svar = ((n1 - 1.0) * v1 + (n2 - 1.0) * v2) / max(L - 2.0, 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        t2 = (m1 - m2) ** 2 / (svar * (1.0 / n1 + 1.0 / n2))
    return t2, np.minimum(v1, v2)


def _any_split_significant(X: np.ndarray, pvalue: float) -> np.ndarray:
    """Per window: could any split τ pass the t-test at ``pvalue``?

    The candidate split is one of these τ, so windows where none passes cannot yield a
    change point and skip the O(L²) divergence. Loose by a relative 1e-6 on |t|, so
    rounding never drops a window the exact test would keep.
    """
    B, L = X.shape
    if L < 3:
        return np.zeros(B, dtype=bool)
    t2, _ = _split_t2(X)
    tc = _t_critical(L - 2, pvalue)
    return np.any(t2 >= tc * tc, axis=1)


@lru_cache(maxsize=256)
def _split_constants(L: int, pvalue: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    n1 = np.arange(1, L, dtype=np.float64)
    n2 = L - n1
    tc = _t_critical(L - 2, pvalue)
    k = tc * tc * (1.0 / n1 + 1.0 / n2) / (L - 2.0)
    return 1.0 / n1, 1.0 / n2, (n1 - 1.0) * k, (n2 - 1.0) * k, n1


def _one_split_significant(seg: np.ndarray, pvalue: float) -> bool:
    """``_any_split_significant`` for one window, with fewer array operations.

    (m1 - m2)² >= t_c² · svar · (1/n1 + 1/n2), multiplied out so that zero spread
    passes (the exact test then decides) instead of dividing by zero.
    """
    L = len(seg)
    if L < 3:
        return False
    i1, i2, w1, w2, _ = _split_constants(L, pvalue)
    y = seg - float(seg.sum()) / L
    c1 = y.cumsum()
    y *= y
    c2 = y.cumsum()
    s1 = c1[:-1]
    m1 = s1 * i1
    m2 = (c1[-1] - s1) * i2
    q1 = c2[:-1]
    # Rounding can only make a variance slightly negative, which lowers the bar:
    # conservative, so no clamping.
    rhs = (q1 * i1 - m1 * m1) * w1
    rhs += ((c2[-1] - q1) * i2 - m2 * m2) * w2
    m1 -= m2
    m1 *= m1
    return bool((m1 >= rhs).any())


def _rel(a: float, b: float) -> float:
    return 0.0 if a == 0 else b / a - 1.0


def _make_cp(index: int, x: np.ndarray, lo: int, hi: int, qhat: float = 0.0) -> ChangePoint:
    ml, mr, sl, sr, p = ttest(x[lo:index], x[index:hi])
    fwd, bwd = _rel(ml, mr), _rel(mr, ml)
    return ChangePoint(index, p, ml, mr, sl, sr, fwd, max(abs(fwd), abs(bwd)), qhat)


def first_pass_pvalue(max_pvalue: float) -> float:
    """Otava's looser first-pass threshold (10× below 0.05, 2× below 0.5)."""
    if max_pvalue < 0.05:
        return max_pvalue * 10
    if max_pvalue < 0.5:
        return max_pvalue * 2
    return max_pvalue


# --------------------------------------------------------------------------- split


_QUIET = (0, 0.0, math.inf)  # a window in which no split can pass the test


@dataclass(slots=True)
class _WindowScan:
    """First candidates of a batch of equally long windows, memoised by window start."""

    x: np.ndarray
    window: int
    step: int
    pvalue: float
    #: Full windows only, keyed by global start (offset + local start): their content
    #: never changes, so a streaming caller can keep this across updates.
    cache: dict[int, tuple[int, float, float]]
    offset: int = 0
    hits: int = 0
    misses: int = 0
    sums: dict[int, np.ndarray] = field(default_factory=dict)

    def first(self, start: int) -> tuple[int, float, float]:
        """(τ local, qhat, pvalue) of the first split of the window at ``start``."""
        hit = self.cache.get(start + self.offset)
        if hit is not None:
            self.hits += 1
            self.misses = 0
            return hit
        n = len(self.x)
        L = min(self.window, n - start)
        if L < 2:
            return (0, 0.0, 1.0)
        full = start + self.window <= n
        self.misses += 1
        if not full or self.misses <= 3:
            # A partial window, or the first few after a change point moved the
            # window grid: one window at a time is cheaper than a speculative batch.
            seg = self.x[start : start + L]
            if not _one_split_significant(seg, self.pvalue):
                res = _QUIET
            else:
                S = within_sums(seg[None, :])[0]
                tau, q = _argmax_split(_q_from_sums(S, 0, L))
                res = (tau, q, ttest(seg[:tau], seg[tau:])[4])
                if full and res[2] <= self.pvalue:
                    self.sums[start + self.offset] = S
            if full:
                self.cache[start + self.offset] = res
            return res
        # Speculate that the following windows start a step apart (true unless a
        # change point pushes the next start); batch them.
        last = n - self.window
        # Batch size follows how many speculated windows the last batch served.
        size = min(32, max(8, 2 * self.hits))
        self.hits = 0
        starts = np.arange(start, last + 1, self.step)[:size]
        idx = starts[:, None] + np.arange(self.window)[None, :]
        Xall = self.x[idx]
        L = self.window
        if L < 3:
            for s0 in starts.tolist():
                self.cache[s0 + self.offset] = _QUIET
            return self.cache[start + self.offset]
        t2all, vmin_all = _split_t2(Xall)
        tc = _t_critical(L - 2, self.pvalue)
        live = np.any(t2all >= tc * tc, axis=1)
        for s0 in starts[~live].tolist():
            self.cache[s0 + self.offset] = _QUIET
        if not live.any():
            return self.cache[start + self.offset]
        X = Xall[live]
        t2 = t2all[live]
        vmin = vmin_all[live]
        B = len(X)
        # Chunks small enough for the cache; keep only each window's best split.
        Ss, flats, qvals = [], [], []
        for i in range(0, B, 32):
            Sc = within_sums(X[i : i + 32])
            Qc = _q_from_sums(Sc, 0, L).reshape(len(Sc), -1)
            fc = np.argmax(Qc, axis=1)
            Ss.append(Sc)
            flats.append(fc)
            qvals.append(Qc[np.arange(len(Sc)), fc])
        S = Ss[0] if len(Ss) == 1 else np.concatenate(Ss)
        flat = flats[0] if len(flats) == 1 else np.concatenate(flats)
        qs = (qvals[0] if len(qvals) == 1 else np.concatenate(qvals)).tolist()
        ii, jj = np.divmod(flat, L - 1)
        rows = np.arange(B)
        t2c = t2[rows, ii]
        with np.errstate(invalid="ignore"):
            ps = (2.0 * stdtr(L - 2.0, -np.sqrt(t2c))).tolist()
        scale = np.abs(X).max(axis=1)
        degenerate = (vmin[rows, ii] <= 1e-20 * scale * scale).tolist()
        nan = np.isnan(t2c).tolist()
        for b, s0, tau, q, p in zip(range(B), starts[live].tolist(), (ii + 1).tolist(), qs, ps):
            # Near the threshold, or with (near) zero spread, use the exact per-segment
            # test so rounding cannot flip a decision.
            if nan[b] or degenerate[b] or abs(p - self.pvalue) <= 1e-6 * self.pvalue:
                seg = X[b]
                p = ttest(seg[:tau], seg[tau:])[4]
            self.cache[s0 + self.offset] = (tau, q, p)
            if p <= self.pvalue:
                self.sums[s0 + self.offset] = S[b]  # the divisive step reuses them
        return self.cache[start + self.offset]


def _intervals(cps: list[int], n: int) -> list[tuple[int, int]]:
    bounds = [0, *cps, n]
    return [(bounds[i], bounds[i + 1]) for i in range(len(bounds) - 1) if bounds[i] != bounds[i + 1]]


@lru_cache(maxsize=1024)
def _t_crit_sq(df: int, pvalue: float) -> float:
    t = float(stdtrit(df, 1.0 - pvalue / 2.0))
    return t * t


class _PrefixStats:
    """Prefix sums of one window for quick t-test decisions on its splits; the exact
    test decides whenever the quick one is within rounding of the threshold."""

    __slots__ = ("seg", "c1", "c2", "tiny")

    def __init__(self, seg: np.ndarray) -> None:
        self.seg = seg
        y = seg - float(seg.sum()) / len(seg)
        self.c1 = [0.0, *np.cumsum(y).tolist()]
        self.c2 = [0.0, *np.cumsum(y * y).tolist()]
        top = float(np.abs(seg).max())
        self.tiny = 1e-20 * top * top

    def significant(self, lo: int, idx: int, hi: int, pvalue: float) -> bool:
        n1, n2 = idx - lo, hi - idx
        if n1 + n2 <= 2:
            return 1.0 <= pvalue
        c1, c2 = self.c1, self.c2
        s1, s2 = c1[idx] - c1[lo], c1[hi] - c1[idx]
        m1, m2 = s1 / n1, s2 / n2
        v1 = (c2[idx] - c2[lo]) / n1 - m1 * m1
        v2 = (c2[hi] - c2[idx]) / n2 - m2 * m2
        df = n1 + n2 - 2
        svar = ((n1 - 1) * v1 + (n2 - 1) * v2) / df
        if svar > self.tiny and min(v1 if n1 > 1 else math.inf, v2 if n2 > 1 else math.inf) > self.tiny:
            t2 = (m1 - m2) ** 2 / (svar * (1.0 / n1 + 1.0 / n2))
            crit = _t_crit_sq(df, pvalue)
            if t2 > crit * (1.0 + 1e-6):
                return True
            if t2 < crit * (1.0 - 1e-6):
                return False
        seg = self.seg
        return ttest(seg[lo:idx], seg[idx:hi])[4] <= pvalue


def _divisive_window(
    seg: np.ndarray, pvalue: float, first: tuple[int, float, float] | None, S: np.ndarray | None = None
) -> list[tuple[int, float]]:
    """Matteson–James divisive splitting of one window with a t-test stop rule."""
    n = len(seg)
    cps: list[int] = []
    qs: dict[int, float] = {}
    cand: dict[tuple[int, int], tuple[int, float]] = {}
    if first is not None:
        cand[(0, n)] = (first[0], first[1])
    pv_first = None if first is None else first[2]
    # S: within sums of the window, shared by all sub-intervals (computed lazily).
    sums: _PrefixStats | None = None
    while True:
        best: tuple[float, int, int, int] | None = None
        for lo, hi in _intervals(cps, n):
            if hi - lo < 2:
                continue
            c = cand.get((lo, hi))
            if c is None:
                if S is None:
                    S = within_sums(seg[None, :])[0]
                tau, q = _argmax_split(_q_from_sums(S, lo, hi))
                c = cand[(lo, hi)] = (lo + tau, q)
            if best is None or c[1] > best[0]:
                best = (c[1], c[0], lo, hi)
        if best is None:
            break
        q, idx, lo, hi = best
        if pv_first is not None and (lo, hi) == (0, n):
            significant = pv_first <= pvalue
        else:
            if sums is None:
                sums = _PrefixStats(seg)
            significant = sums.significant(lo, idx, hi, pvalue)
        if significant:
            cps.append(idx)
            cps.sort()
            qs[idx] = q
        else:
            break
    return [(c, qs[c]) for c in cps]


@dataclass(slots=True)
class SplitCache:
    """Per-window results of full windows, keyed by global start; valid for as long as
    the values at those global indices do not change (always, for an append-only stream)."""

    first: dict[int, tuple[int, float, float]]
    divisive: dict[int, list[tuple[int, float]]]
    #: Where the walk over full windows stopped: (offset, global start, found so far).
    chain: tuple[int, int, dict[int, float]] | None = None

    @classmethod
    def empty(cls) -> "SplitCache":
        return cls({}, {})

    def evict_before(self, start: int) -> None:
        for d in (self.first, self.divisive):
            for k in [k for k in d if k < start]:
                del d[k]


def split_weak(
    x: np.ndarray, window: int, pvalue: float, offset: int = 0, cache: SplitCache | None = None
) -> dict[int, float]:
    """Union of the change points of the sliding windows (Otava's split step).

    Returns {index: qhat}, sorted by index; the first window to find a point wins.
    ``offset`` is the global index of ``x[0]`` for the keys of ``cache``.
    """
    n = len(x)
    if window < 2:
        raise ValueError("window must be at least 2")
    step = int(window / 2)
    cache = cache or SplitCache.empty()
    scan = _WindowScan(x, window, step, pvalue, cache.first, offset)
    found: dict[int, float] = {}
    start = 0
    # The walk over full windows depends only on their (fixed) values: resume it.
    ch = cache.chain
    if ch is not None and ch[0] == offset and ch[1] - offset <= n:
        start = ch[1] - offset
        found = dict(ch[2])
    saved = False
    while start < n:
        if not saved and start + window > n:
            cache.chain = (offset, start + offset, dict(found))
            saved = True
        end = min(start + window, n)
        first = scan.first(start)
        new: list[tuple[int, float]] = []
        if end - start >= 2 and first[2] <= pvalue:
            full = start + window <= n
            got = cache.divisive.get(start + offset) if full else None
            if got is None:
                got = _divisive_window(x[start:end], pvalue, first, scan.sums.pop(start + offset, None))
                if full:
                    cache.divisive[start + offset] = got
            new = [(start + c, q) for c, q in got]
        last_new = new[-1][0] if new else 0
        start = max(last_new, start + step)
        for c, q in new:
            found.setdefault(c, q)
    return dict(sorted(found.items()))


# --------------------------------------------------------------------------- merge


def merge_change_points(
    x: np.ndarray,
    weak: Sequence[int],
    max_pvalue: float,
    min_magnitude: float,
    otava_quirk: bool = True,
    qhats: dict[int, float] | None = None,
    offset: int = 0,
    memo: dict[tuple[int, int, int], ChangePoint] | None = None,
) -> list[ChangePoint]:
    """Bottom-up merge: drop the weakest point until all pass both criteria.

    With ``otava_quirk`` the left neighbour of a removed point keeps its stale
    statistics, as Otava 0.8.0 does; without it both neighbours are recomputed.
    ``memo`` keeps segment statistics by global (lo, index, hi) across calls.
    """
    n = len(x)
    q = qhats or {}
    memo = {} if memo is None else memo

    def make(i: int, lo: int, hi: int, qhat: float) -> ChangePoint:
        if hi == n:  # the open tail segment changes with every new point: not worth keeping
            return _make_cp(i, x, lo, hi, qhat)
        key = (lo + offset, i + offset, hi + offset)
        cp = memo.get(key)
        if cp is None or cp.qhat != qhat:
            cp = memo[key] = _make_cp(i, x, lo, hi, qhat)
        return cp if cp.index == i else replace(cp, index=i)

    idx = list(weak)
    cps: list[ChangePoint] = []
    for k, i in enumerate(idx):
        lo = idx[k - 1] if k > 0 else 0
        hi = idx[k + 1] if k + 1 < len(idx) else n
        cps.append(make(i, lo, hi, q.get(i, 0.0)))

    def recompute(k: int) -> None:
        if 0 <= k < len(cps):
            lo = cps[k - 1].index if k > 0 else 0
            hi = cps[k + 1].index if k + 1 < len(cps) else n
            cps[k] = make(cps[k].index, lo, hi, cps[k].qhat)

    while cps:
        weakest = max(cps, key=lambda c: c.pvalue)  # first maximum, NaN handled as max() does
        if weakest.pvalue < max_pvalue:
            weakest = min(cps, key=lambda c: c.magnitude)
            if weakest.magnitude > min_magnitude:
                break
        k = next(i for i, c in enumerate(cps) if c is weakest)
        del cps[k]
        if not otava_quirk:
            recompute(k - 1)
        recompute(k)
        recompute(k + 1)
    return cps


# --------------------------------------------------------------------------- public


@dataclass(slots=True, frozen=True)
class EDivisive(BatchDetector):
    """Hunter/Otava E-Divisive change-point detection. Configure once, then ``detect``.

    ``otava_quirk=True`` reproduces Otava 0.8.0's merge exactly (the left neighbour of a
    merged point keeps stale statistics); ``False`` recomputes it, which is the
    statistically correct variant.
    """

    window: int = 50
    max_pvalue: float = 0.001
    min_magnitude: float = 0.0
    otava_quirk: bool = True

    def __post_init__(self) -> None:
        if self.window < 2:
            raise ValueError("window must be at least 2")
        if not 0.0 < self.max_pvalue <= 1.0:
            raise ValueError("max_pvalue must be in (0, 1]")
        if self.min_magnitude < 0:
            raise ValueError("min_magnitude must be >= 0")

    def weak_change_points(self, values: Sequence[float] | np.ndarray) -> list[int]:
        """Indices of the first pass (looser p-value), before merging."""
        x = _as_series(values)
        return list(split_weak(x, self.window, first_pass_pvalue(self.max_pvalue)))

    def detect(self, values: Sequence[float] | np.ndarray) -> list[ChangePoint]:
        """Change points of ``values``, sorted by index."""
        x = _as_series(values)
        if len(x) < 2:
            return []
        weak = split_weak(x, self.window, first_pass_pvalue(self.max_pvalue))
        return merge_change_points(x, list(weak), self.max_pvalue, self.min_magnitude, self.otava_quirk, weak)


def _as_series(values: Sequence[float] | np.ndarray) -> np.ndarray:
    x = np.asarray(values, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError("values must be one-dimensional")
    if not np.all(np.isfinite(x)):
        raise ValueError("values must be finite")
    return x
