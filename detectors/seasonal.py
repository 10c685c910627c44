"""Trend-aware shift detection: a shift is a jump that the key's own drift cannot explain.

The rule (for users, two sentences): a shift is reported at snapshot c when, fitting the
log of each percentile over the key's last 120 snapshots (at most 3 hours) with a
straight line that may bend at c, the level still jumps at c by at least 10 % (plus one
step of the values' resolution, e.g. 1 ms, clearing that by 1.5 standard errors) with
p <= 1e-6 (its variance widened for autocorrelated residuals), and the medians of the 10
snapshots either side of c differ by as much. The new level must have held for 6 minutes
and 5 snapshots but not yet 60 snapshots (an older level is the baseline, not news), the
newest 3 and 80 % of them nearer the new level than the old, and
the snapshots of a brownout that ended (over 25 % and 4 robust deviations off the medians
of the 30 snapshots before and after) are left out of the fit.

So a daily load curve, a slow leak or a lunch-time hump (changes spread over many
snapshots) is not a shift, a brownout shorter than 6 minutes is not a shift, and a step
is found wherever the key was drifting. Why a bend as well as a line: a drift that
starts at some time (the morning ramp) is a change of slope, not of level. Reported
shifts become known steps of the fit, and the next shift must come at least 5 snapshots
after. No comparison with the same time yesterday (that needs a day of history per key).
Deterministic; no retractions (the confirmation waits instead). ``update``, ``to_bytes``
and ``from_bytes`` as ``SnapshotShiftDetector``; registered as streaming detector ``trend``.
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass
from functools import lru_cache
from operator import attrgetter
from typing import Any, Mapping, Sequence

import numpy as np
from scipy.special import stdtr, stdtrit

from .base import StreamingDetector
from .records import Direction, MetricChange, ShiftDecision

__all__ = ["SeasonalShiftDetector"]

_VERSION = 1
_HEAD_LEN = struct.Struct("<I")
_MAX_BYTES = 4 << 20
_FLOOR = 1e-12
_MAX_STEPS = 64
_MARGIN = 1.5  # the jump must clear the minimum by this many standard errors
_LOCAL = 10  # rows either side of a shift whose medians must show the step
_HAMPEL = 30  # rows on each side whose median finds brownout snapshots


@lru_cache(maxsize=512)
def _t_critical(df: int, pvalue: float) -> float:
    return float(stdtrit(df, 1.0 - pvalue / 2.0))


def _median_of_finite(w: np.ndarray) -> np.ndarray:
    """Median over the last axis of the finite entries (NaN pads the edges); NaN when
    fewer than 5 (np.nanmedian does the same, many times slower)."""
    srt = np.sort(w, axis=-1)  # NaN sorts last
    cnt = np.isfinite(w).sum(axis=-1)
    lo = np.take_along_axis(srt, np.maximum((cnt - 1) // 2, 0)[..., None], axis=-1)[..., 0]
    hi = np.take_along_axis(srt, np.maximum(cnt // 2, 0)[..., None], axis=-1)[..., 0]
    return np.where(cnt >= 5, 0.5 * (lo + hi), np.nan)


@dataclass(slots=True, frozen=True)
class _Params:
    metrics: tuple[str, ...]
    lower_is_better: bool
    min_count: int
    window: int
    window_s: float
    min_before: int
    min_after: int
    min_after_s: float
    max_after: int
    max_pvalue: float
    min_relative_change: float
    confirm: int
    min_fraction: float


_shared = lru_cache(maxsize=64)(_Params)


@dataclass(slots=True, frozen=True)
class _Fit:
    """The best candidate of one scan: position, per-metric jump, its t, the old line at c."""

    c: int
    delta: np.ndarray
    t: np.ndarray
    df: int
    level: np.ndarray
    old: np.ndarray  # fitted values without the jump and bend, rows x metrics
    keep: np.ndarray  # rows in the fit (brownout rows left out)


class SeasonalShiftDetector(StreamingDetector):
    """Streaming, trend-aware shift detector for one key's percentile snapshots."""

    __slots__ = ("_p", "_seq", "_idx", "_t", "_n", "_y", "_steps")

    def __init__(
        self,
        metrics: Sequence[str] = ("p50", "p90", "p99"),
        lower_is_better: bool = True,
        *,
        min_count: int = 30,
        window: int = 120,
        window_s: float = 10800.0,
        min_before: int = 15,
        min_after: int = 5,
        min_after_s: float = 330.0,
        max_after: int = 60,
        max_pvalue: float = 1e-6,
        min_relative_change: float = 0.1,
        confirm: int = 3,
        min_fraction: float = 0.8,
    ) -> None:
        if not metrics or len(set(metrics)) != len(metrics):
            raise ValueError("metrics must be distinct and at least one")
        if min_after < 3 or min_before < 5 or window < min_before + min_after + 2:
            raise ValueError("window must hold min_before + min_after snapshots (min_before >= 5, min_after >= 3)")
        if not 0 < max_pvalue < 1 or not window_s > 0 or min_relative_change < 0 or min_count < 0 or min_after_s < 0:
            raise ValueError("bad parameter")
        if not 1 <= confirm <= min_after or not 0.5 <= min_fraction <= 1.0 or max_after < min_after:
            raise ValueError("bad parameter")
        self._p = _shared(
            tuple(str(m) for m in metrics), bool(lower_is_better), int(min_count), int(window), float(window_s), int(min_before),
            int(min_after), float(min_after_s), int(max_after), float(max_pvalue), float(min_relative_change), int(confirm), float(min_fraction),
        )
        self._seq = 0
        m = len(self._p.metrics)
        self._idx = np.zeros(0, dtype=np.int64)
        self._t = np.zeros(0, dtype=np.float64)
        self._n = np.zeros(0, dtype=np.int64)
        self._y = np.zeros((0, m), dtype=np.float64)
        #: Snapshot indices of reported shifts still inside the window (known steps of the fit).
        self._steps: list[int] = []

    # ------------------------------------------------------------------ update

    def update(self, t: float, values: Mapping[str, float], count: int) -> list[ShiftDecision]:
        """Feed one closed snapshot (start time ``t``); returns the shift it confirms, if any."""
        seq = self._seq
        self._seq += 1
        try:
            vals = [float(values[m]) for m in self.metrics]
        except (KeyError, TypeError, ValueError):
            return []
        if not self.min_count <= count or not all(math.isfinite(v) for v in vals) or not math.isfinite(t):
            return []
        if len(self._t) and t <= self._t[-1]:
            return []
        self._append(seq, float(t), int(count), [math.log(max(v, _FLOOR)) for v in vals])
        d = self._detect()
        return [] if d is None else [d]

    def _append(self, seq: int, t: float, count: int, logs: list[float]) -> None:
        w = self.window
        self._idx = np.append(self._idx[-(w - 1) :], seq)
        self._t = np.append(self._t[-(w - 1) :], t)
        self._n = np.append(self._n[-(w - 1) :], count)
        self._y = np.vstack((self._y[-(w - 1) :], [logs]))
        old = int(np.searchsorted(self._t, t - self.window_s, side="right"))  # pooled rows span more time
        if old:
            self._idx, self._t, self._n, self._y = self._idx[old:], self._t[old:], self._n[old:], self._y[old:]
        first = int(self._idx[0])
        self._steps = [s for s in self._steps if s > first]

    # ------------------------------------------------------------------ the fit

    def _candidates(self) -> tuple[np.ndarray, int]:
        """Row positions a new regime may start at (any with 3 rows after it, to find the
        place), and the last one that may be reported now."""
        n = len(self._idx)
        # A regime older than max_after snapshots is the baseline now, not news.
        lo = max(self.min_before, n - self.max_after)
        if self._steps:
            lo = max(lo, int(np.searchsorted(self._idx, self._steps[-1])) + self.min_after)
        t = self._t
        # The new regime must span min_after snapshots and min_after_s of event time.
        hi = min(n - self.min_after, int(np.searchsorted(t, t[-1] - self.min_after_s, side="right")) - 1)
        return np.arange(lo, n - 2), hi

    def _design(self, x: np.ndarray, idx: np.ndarray) -> np.ndarray:
        """The fixed regressors: level, slope, and a step at each reported shift."""
        steps = [(idx >= s).astype(np.float64) for s in self._steps]
        # A step with no rows left on one side (they were left out) says nothing.
        return np.column_stack([np.ones(len(x)), x] + [c for c in steps if 0 < c.sum() < len(c)])

    def _outliers(self) -> np.ndarray:
        """Rows far (> 4 robust sd and > 25 %) on some metric from both the median of the
        30 rows before and that of the 30 rows after them: the snapshots of a brownout
        that ended, left out of the fit. A new regime's rows agree with the rows after
        them; rows with fewer than 5 on either side are never left out."""
        y, k = self._y, _HAMPEL
        pad = np.full((k, y.shape[1]), np.nan)
        win = np.lib.stride_tricks.sliding_window_view(np.vstack((pad, y, pad)), k, axis=0)
        n = len(y)
        mb, ma = _median_of_finite(win[:n]), _median_of_finite(win[k + 1 : k + 1 + n])  # rows i-k..i-1, i+1..i+k
        db, da = np.abs(y - mb), np.abs(y - ma)
        sd = 1.4826 * _median_of_finite(np.where(np.isfinite(db), db, da).T)
        thr = np.maximum(4.0 * np.nan_to_num(sd), math.log(1.25))[None, :]
        # The window's first rows have no before-side of their own: the after-side decides
        # (they are never candidates, only the baseline a candidate is measured against).
        first = (np.arange(n) < k)[:, None]
        out = ((da > thr) & ((db > thr) | first)).any(axis=1)
        # The windows a brownout began or ended in hold part of it: leave them out too.
        out[1:] |= out[:-1]
        out[:-1] |= out[1:].copy() & ~out[:-1]
        return out

    def _scan(self, cs: np.ndarray, hi: int) -> _Fit | None:
        """Line + known steps, then for every candidate c a bend and a jump at c (by
        partialling out the fixed regressors). The jump must be significant with the
        bend; where it is, the candidate whose jump alone is sharpest is the place."""
        keep = ~self._outliers()
        cs = cs[keep[cs]]
        pos = np.flatnonzero(keep)
        x_all = (self._t - self._t[-1]) / 3600.0
        y, x = self._y[keep], x_all[keep]
        z = self._design(x, self._idx[keep])
        n, k = z.shape
        df = n - k - 2
        if df < 3 or not len(cs):
            return None
        q, _ = np.linalg.qr(z)
        ry = y - q @ (q.T @ y)
        d = (pos[:, None] >= cs[None, :]).astype(np.float64)  # jump regressors, n x C
        h = np.maximum(x[:, None] - x_all[cs][None, :], 0.0)  # bend regressors
        d -= q @ (q.T @ d)
        h -= q @ (q.T @ h)
        hh, dd, hd = (h * h).sum(0), (d * d).sum(0), (h * d).sum(0)
        hy, dy, yy = h.T @ ry, d.T @ ry, (ry * ry).sum(0)[None, :]  # C x m
        det = hh * dd - hd * hd
        det = np.where(det > 1e-9 * hh * dd, det, np.inf)[:, None]
        delta = (hh[:, None] * dy - hd[:, None] * hy) / det
        g = (dd[:, None] * hy - hd[:, None] * dy) / det
        var = np.maximum(yy - g * hy - delta * dy, 0.0) / df * hh[:, None] / det
        tb = delta / np.sqrt(np.maximum(var, 1e-300))
        dd = np.maximum(dd, 1e-300)[:, None]
        var0 = np.maximum(yy - dy * dy / dd, 0.0) / (df + 1) / dd
        tj = np.abs(dy / dd) / np.sqrt(np.maximum(var0, 1e-300))
        se = np.sqrt(np.maximum(var, 0.0))
        ok = (np.abs(delta) - _MARGIN * se >= self._min_jump()[None, :]) & (np.abs(tb) >= _t_critical(df, self.max_pvalue))
        score = np.where(ok, tj, 0.0).max(axis=1)
        j = int(np.argmax(score))
        if score[j] <= 0.0 or cs[j] > hi:  # nothing, or a new regime still too young
            return None
        return self._refit(int(cs[j]), x_all, keep, df)

    def _refit(self, c: int, x_all: np.ndarray, keep: np.ndarray, df: int) -> _Fit:
        """The full model at c, with the jump's t shrunk for autocorrelated residuals
        (a slow wander is not independent noise): variance x (1 + r) / (1 - r), r the
        lag-1 autocorrelation of the residuals."""
        n = len(self._idx)
        z_all = self._design(x_all, self._idx)
        jump = (np.arange(n) >= c).astype(np.float64)
        bend = np.maximum(x_all - x_all[c], 0.0)
        full = np.column_stack((z_all, bend, jump))[keep]
        y = self._y[keep]
        beta, *_ = np.linalg.lstsq(full, y, rcond=None)
        e = y - full @ beta
        cov = np.linalg.pinv(full.T @ full)[-1, -1]
        s2 = (e * e).sum(0) / df
        r = np.clip((e[1:] * e[:-1]).sum(0) / np.maximum((e * e).sum(0), 1e-300), 0.0, 0.9)
        t = beta[-1] / np.sqrt(np.maximum(s2 * cov * (1 + r) / (1 - r), 1e-300))
        old = z_all @ beta[: z_all.shape[1]]
        return _Fit(c, beta[-1], t, df, old[c], old, keep)

    def _min_jump(self) -> np.ndarray:
        """Per metric, the smallest log-jump that counts: the relative threshold, plus one
        quantization step of the metric when its values sit on a coarse grid."""
        base = math.log1p(self.min_relative_change)
        v = np.exp(self._y)
        out = np.full(v.shape[1], base)
        for j in range(v.shape[1]):
            u, c = np.unique(np.round(v[:, j], 9), return_counts=True)
            common = u[c >= max(3, len(v) // 20)]  # values the metric keeps coming back to
            if len(common) > 1 and c[c >= max(3, len(v) // 20)].sum() >= len(v) // 2:
                step = float(np.diff(common).min())
                out[j] = base + math.log1p(step / float(np.median(v[:, j])))
        return out

    def _detect(self) -> ShiftDecision | None:
        if len(self._idx) < self.min_before + self.min_after:
            return None
        fit = self._scan(*self._candidates())
        if fit is None:
            return None
        c, y = fit.c, self._y
        crit = _t_critical(fit.df, self.max_pvalue)
        jump = self._min_jump()
        se = np.abs(fit.delta) / np.maximum(np.abs(fit.t), 1e-300)
        moved = [j for j in range(len(self.metrics)) if abs(fit.t[j]) >= crit and abs(fit.delta[j]) - _MARGIN * se[j] >= jump[j]]
        if not moved:
            return None
        a = max(moved, key=lambda j: abs(fit.t[j]))
        sign = 1.0 if fit.delta[a] > 0 else -1.0
        # Persistence (the brownout rule): nearer the new level than the old.
        r = (y[c:, a] - fit.old[c:, a]) * sign
        half = 0.5 * abs(fit.delta[a])
        if np.any(r[-self.confirm :] <= half) or np.mean(r > half) < self.min_fraction:
            return None
        if not self._abrupt(fit, a, sign, jump[a]):
            return None
        return self._decide(fit, moved, a)

    def _abrupt(self, fit: _Fit, a: int, sign: float, jump: float) -> bool:
        """Abrupt relative to the drift: the detrended medians of the ten rows either side
        of c differ by at least the minimum jump and half the fitted jump (a slow
        wander that the line and bend fit badly has no such step at c)."""
        r = (self._y[:, a] - fit.old[:, a])[fit.keep]
        c = int(np.searchsorted(np.flatnonzero(fit.keep), fit.c))
        m = min(_LOCAL, c, len(r) - c)
        local = (float(np.median(r[c : c + m])) - float(np.median(r[c - m : c]))) * sign
        return local >= jump and local >= 0.5 * abs(float(fit.delta[a]))

    def _decide(self, fit: _Fit, moved: list[int], a: int) -> ShiftDecision:
        c = fit.c
        changes = []
        for j in moved:
            before = math.exp(fit.level[j])
            after = math.exp(fit.level[j] + fit.delta[j])
            p = float(2.0 * stdtr(fit.df, -abs(float(fit.t[j]))))
            changes.append(MetricChange(self.metrics[j], before, after, after / before - 1.0, p))
        worse = fit.delta[a] > 0 if self.lower_is_better else fit.delta[a] < 0
        direction: Direction = "regression" if worse else "improvement"
        at_index = int(self._idx[c])
        self._steps.append(at_index)
        if len(self._steps) > _MAX_STEPS:
            del self._steps[0]
        return ShiftDecision(
            kind="shift",
            at=float(self._t[c]),
            index=at_index,
            direction=direction,
            pvalue=min(ch.pvalue for ch in changes if ch.metric == self.metrics[a]),
            changes=tuple(changes),
            snapshots_before=c,
            snapshots_after=len(self._idx) - c,
            samples_before=int(self._n[:c].sum()),
            samples_after=int(self._n[c:].sum()),
        )

    # ------------------------------------------------------------------ state

    def _config(self) -> dict[str, Any]:
        return {name: (list(v) if isinstance(v, tuple) else v) for name in _Params.__slots__ for v in [getattr(self._p, name)]}

    def to_bytes(self) -> bytes:
        """Version 1: JSON header (config, counters, known steps), then the window's rows
        (int64 index and count, float64 time and logs). Deterministic."""
        head = json.dumps(
            {"config": self._config(), "seq": self._seq, "rows": len(self._idx), "steps": self._steps},
            separators=(",", ":"), allow_nan=False,
        ).encode()
        body = b"".join(a.astype("<f8" if a.dtype.kind == "f" else "<i8").tobytes() for a in (self._idx, self._n, self._t, self._y))
        return bytes([_VERSION]) + _HEAD_LEN.pack(len(head)) + head + body

    @classmethod
    def from_bytes(cls, b: bytes) -> "SeasonalShiftDetector":
        """Inverse of ``to_bytes``; ``ValueError`` on anything malformed."""
        if not isinstance(b, (bytes, bytearray, memoryview)):
            raise ValueError("expected bytes")
        b = bytes(b)
        if len(b) < 1 + _HEAD_LEN.size or len(b) > _MAX_BYTES or b[0] != _VERSION:
            raise ValueError("not a version-1 seasonal detector state")
        (k,) = _HEAD_LEN.unpack_from(b, 1)
        off = 1 + _HEAD_LEN.size
        try:
            s = json.loads(b[off : off + k].decode("utf-8"))
            cfg = s["config"]
            d = cls(**{**cfg, "metrics": tuple(str(m) for m in cfg["metrics"])})
            n, seq, steps = s["rows"], s["seq"], s["steps"]
            if not all(type(v) is int and v >= 0 for v in [n, seq, *steps]) or n > d.window or len(steps) > _MAX_STEPS:
                raise ValueError("bad counters")
            m = len(d.metrics)
            body = b[off + k :]
            if len(body) != 8 * n * (3 + m):
                raise ValueError("rows do not match their count")
            a = np.frombuffer(body, dtype="<i8", count=2 * n)
            f = np.frombuffer(body, dtype="<f8", offset=16 * n)
            idx, cnt, t, y = a[:n].astype(np.int64), a[n:].astype(np.int64), f[:n].astype(np.float64), f[n:].astype(np.float64).reshape(n, m)
            if n and (idx[-1] >= seq or (np.diff(idx) <= 0).any() or (np.diff(t) <= 0).any() or (cnt < 0).any()):
                raise ValueError("rows out of order")
            if not (np.isfinite(t).all() and np.isfinite(y).all()):
                raise ValueError("non-finite state")
            if steps != sorted(steps) or any(st >= seq for st in steps):
                raise ValueError("bad steps")
            d._seq, d._idx, d._n, d._t, d._y, d._steps = seq, idx, cnt, t, y, list(steps)
            return d
        except ValueError:
            raise
        except (KeyError, TypeError, AttributeError, IndexError, UnicodeDecodeError, OverflowError, RecursionError) as e:
            raise ValueError(f"malformed detector state: {e}") from None


for _name in _Params.__slots__:
    setattr(SeasonalShiftDetector, _name, property(attrgetter(f"_p.{_name}")))
del _name
