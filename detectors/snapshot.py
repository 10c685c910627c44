"""Per-key shift detection over percentile snapshots (e.g. p50/p90/p99 every interval).

Why: the stream closes one snapshot per key and interval; a shift is a lasting move
of one or more of its percentiles. E-Divisive on the log of each metric over a bounded
window proposes where the current regime split; Welch's t-test between the whole
baseline and the whole new regime confirms it. Guards against the usual false alarms:

* snapshots with fewer than ``min_count`` samples are not evidence (small samples lie);
* the new regime must last ``min_after`` snapshots, contain no significant change of
  its own, and its last snapshots must still sit on the new side (a brownout is not a
  shift);
* a metric only counts as moved with at least ``min_relative_change``;
* all metrics that moved at the same snapshot are one decision;
* a reported ``at`` is never reported again; a shift that fails re-validation within
  ``revalidate`` snapshots is retracted, and the old baseline is restored.
"""

from __future__ import annotations

import json
import math
import struct
from array import array
from dataclasses import dataclass
from functools import lru_cache
from operator import attrgetter
from typing import Any, Mapping, Sequence

import numpy as np
from scipy.special import stdtr

from ._envelope import open_envelope, seal
from .base import DEFAULT_METRICS, StreamingDetector
from .edivisive import split_weak
from .records import Direction, MetricChange, ShiftDecision

__all__ = ["SnapshotShiftDetector", "welch_ttest"]

_VERSION = 2
_HEAD_LEN = struct.Struct("<I")
_MAX_BYTES = 4 << 20
_FLOOR = 1e-12  # log floor for zero latencies
_MAX_REPORTED = 256
_U32 = 0xFFFFFFFF
_MAX_COUNT = 1 << 62
_F32_MAX = float(np.finfo(np.float32).max)



def welch_ttest(left: np.ndarray, right: np.ndarray) -> tuple[float, float, float, float, float]:
    """(mean_left, mean_right, std_left, std_right, two-sided p) of Welch's t-test.

    Why Welch: a new regime often has another spread than the baseline (a tail that
    grew, a brownout), so the variances are not pooled; sample deviations (ddof=1)
    and Welch–Satterthwaite degrees of freedom. Fewer than 2 points on a side: p = 1.
    Zero spread on both sides: p = 0 when the means differ, nan when they do not.
    """
    n1, n2 = len(left), len(right)
    m1, m2 = float(left.mean()), float(right.mean())
    if n1 < 2 or n2 < 2:
        return m1, m2, 0.0, 0.0, 1.0
    v1, v2 = float(left.var(ddof=1)), float(right.var(ddof=1))
    a, b = v1 / n1, v2 / n2
    se2 = a + b
    if se2 == 0.0:
        return m1, m2, 0.0, 0.0, (math.nan if m1 == m2 else 0.0)
    df = se2 * se2 / (a * a / (n1 - 1) + b * b / (n2 - 1))
    p = 2.0 * float(stdtr(df, -abs(m1 - m2) / math.sqrt(se2)))
    return m1, m2, math.sqrt(v1), math.sqrt(v2), p


class _Layout:
    """One history row: snapshot index, sample count, time, log of each metric.

    Narrow rows (24 bytes for three metrics): uint32 index and count, and the time as a
    float32 offset from the detector's ``_t0``, used only while that gives back every
    time exactly (snapshot starts on a whole-second grid do, for a year and more).
    Wide rows (40 bytes) keep int64 index and count and the float64 time. The logs are
    float32 either way: 7 significant digits, far below the noise of a percentile.
    Rows are written one at a time with ``row`` and read in bulk through ``dtype``.
    """

    __slots__ = ("wide", "row", "size", "dtype")

    def __init__(self, metrics: int, wide: bool) -> None:
        self.wide = wide
        self.row = struct.Struct(f"<qqd{metrics}f" if wide else f"<IIf{metrics}f")
        self.size = self.row.size
        i, t = ("<i8", "<f8") if wide else ("<u4", "<f4")
        self.dtype = np.dtype([("i", i), ("n", i), ("t", t), ("y", "<f4", (metrics,))])
        assert self.dtype.itemsize == self.size


_layout = lru_cache(maxsize=16)(_Layout)


@dataclass(slots=True, frozen=True)
class _Params:
    """A detector's configuration: one shared object per distinct configuration."""

    metrics: tuple[str, ...]
    lower_is_better: bool
    min_count: int
    history: int
    min_before: int
    min_after: int
    max_pvalue: float
    list_pvalue: float
    inner_pvalue: float
    candidate_pvalue: float
    min_relative_change: float
    revalidate: int
    confirm: int
    min_fraction: float
    trend_pvalue: float
    max_rho: float


_shared_params = lru_cache(maxsize=64)(_Params)


@dataclass(slots=True)
class _Reported:
    index: int
    at: float
    base: int  # first index of the baseline the shift was measured against
    report_index: int
    direction: Direction
    metrics: tuple[str, ...]


class SnapshotShiftDetector(StreamingDetector):
    """Streaming shift detector for one key's percentile snapshots.

    Configure once; call ``update`` per closed snapshot; decisions come back in order.
    Memory is bounded by ``history`` snapshots, kept as one packed array of 24-byte
    rows (three metrics); the configuration is shared by equally configured detectors.
    """

    __slots__ = ("_p", "_seq", "_base", "_lay", "_buf", "_len", "_t0", "_last", "_reported")

    def __init__(
        self,
        metrics: Sequence[str] = DEFAULT_METRICS,
        lower_is_better: bool = True,
        *,
        min_count: int = 30,
        history: int = 120,
        min_before: int = 10,
        min_after: int = 5,
        max_pvalue: float = 2e-3,
        list_pvalue: float = 1e-2,
        inner_pvalue: float = 1e-4,
        candidate_pvalue: float = 1e-3,
        min_relative_change: float = 0.1,
        revalidate: int = 10,
        confirm: int = 3,
        min_fraction: float = 0.75,
        trend_pvalue: float = 0.01,
        max_rho: float = 0.3,
    ) -> None:
        if not metrics:
            raise ValueError("at least one metric")
        if len(set(metrics)) != len(metrics):
            raise ValueError("metrics must be distinct")
        if min_after < 2 or min_before < 2:
            raise ValueError("min_before and min_after must be >= 2")
        if history < min_before + min_after:
            raise ValueError("history must hold min_before + min_after snapshots")
        if not all(0 < p < 1 for p in (max_pvalue, list_pvalue, inner_pvalue, candidate_pvalue)) or list_pvalue < max_pvalue:
            raise ValueError("p-values must be in (0, 1)")
        if not (0.0 <= trend_pvalue < 1.0 and 0.0 <= max_rho <= 1.0):
            raise ValueError("trend_pvalue must be in [0, 1) and max_rho in [0, 1]")
        if min_count < 0 or min_relative_change < 0 or revalidate < 0 or not 1 <= confirm <= min_after or not 0.5 <= min_fraction <= 1.0:
            raise ValueError("bad parameter")
        self._p = _shared_params(
            tuple(str(m) for m in metrics),
            bool(lower_is_better),
            int(min_count),
            int(history),
            int(min_before),
            int(min_after),
            float(max_pvalue),
            float(list_pvalue),
            float(inner_pvalue),
            float(candidate_pvalue),
            float(min_relative_change),
            int(revalidate),
            int(confirm),
            float(min_fraction),
            float(trend_pvalue),
            float(max_rho),
        )
        self._seq = 0
        self._base = 0  # index of the first snapshot of the current regime
        #: Accepted snapshots, oldest first: rows [0, _len) of a buffer that grows to ``history``.
        self._lay = _layout(len(self.metrics), False)
        self._buf: bytearray | None = None
        self._len = 0
        self._t0 = 0.0  # narrow rows keep times as float32 offsets from this
        self._last: _Reported | None = None
        #: Indices of reported shifts (the newest 256), None until the first.
        self._reported: array | None = None

    # ------------------------------------------------------------------ buffer

    def _rows(self) -> np.ndarray:
        """The kept rows as a structured array (a view: writes go to the buffer)."""
        if self._buf is None:
            return np.zeros(0, dtype=self._lay.dtype)
        return np.frombuffer(self._buf, dtype=self._lay.dtype, count=self._len)

    def _append(self, seq: int, t: float, count: int, logs: tuple[float, ...]) -> None:
        if self._buf is None:
            self._t0 = t
            self._resize(min(16, self.history), False)
        lay, buf, n = self._lay, self._buf, self._len
        size = lay.size
        if (n + 1) * size > len(buf):  # type: ignore[arg-type]
            if n < self.history:
                self._resize(min(2 * n, self.history), lay.wide)
            else:  # full: drop the oldest
                buf[:-size] = buf[size:]  # type: ignore[index]
                n = self._len = n - 1
        if not self._lay.wide:
            d = self._offset(seq, t, count)
            if d is None:
                self._resize(len(self._buf) // size, True)  # type: ignore[arg-type]
            else:
                t = d
        self._lay.row.pack_into(self._buf, n * self._lay.size, seq, count, t, *logs)  # type: ignore[arg-type]
        self._len = n + 1

    def _offset(self, seq: int, t: float, count: int) -> float | None:
        """``t`` as a float32 offset for a narrow row (rebasing ``_t0`` if that helps), else None."""
        if seq > _U32 or not 0 <= count <= _U32:
            return None
        d = float(np.float32(t - self._t0))
        if self._t0 + d == t:
            return d
        # Rebase on the oldest kept snapshot (the offsets grow with the key's age).
        rows = self._rows()
        ts = self._times(rows)
        t0 = float(ts[0]) if len(ts) else t
        ds = (ts - t0).astype(np.float32)
        d = float(np.float32(t - t0))
        if t0 + d != t or not np.array_equal(ds.astype(np.float64) + t0, ts):
            return None
        rows["t"] = ds
        self._t0 = t0
        return d

    def _times(self, rows: np.ndarray) -> np.ndarray:
        if self._lay.wide:
            return rows["t"].copy()
        return rows["t"].astype(np.float64) + self._t0

    def _resize(self, capacity: int, wide: bool) -> None:
        lay = _layout(len(self.metrics), wide)
        buf = bytearray(capacity * lay.size)
        n = self._len
        if n:
            if lay is self._lay:
                buf[: n * lay.size] = self._buf[: n * lay.size]  # type: ignore[index]
            else:  # narrow → wide
                old = self._rows()
                new = np.frombuffer(buf, dtype=lay.dtype, count=n)
                for f in ("i", "n", "y"):
                    new[f] = old[f]
                new["t"] = self._times(old)
                del old, new
        self._lay, self._buf = lay, buf

    def _load(self, idx: list[Any], ts: list[Any], ns: list[Any], logs: list[Any]) -> None:
        """All rows of a version-1 (JSON) state at once, checked like ``update`` checks one."""
        m, n = len(self.metrics), len(idx)
        if not (all(type(v) is int for v in idx) and all(type(v) is int for v in ns)):
            raise ValueError("bad integer")
        if not all(type(r) is list and len(r) == m for r in logs):
            raise ValueError("bad row")
        self._load_arrays(
            np.array(idx, dtype=np.int64), np.array(ts, dtype=np.float64), np.array(ns, dtype=np.int64), np.array(logs, dtype=np.float64).reshape(n, m)
        )

    def _load_arrays(self, i: np.ndarray, t: np.ndarray, c: np.ndarray, y: np.ndarray, layout: tuple[bool, float] | None = None) -> None:
        """Install rows; ``layout`` (wide, t0) restores the exact in-memory form a version-2
        state was written from, so it re-encodes to the same bytes."""
        n, m = len(i), len(self.metrics)
        if i[0] < 0 or i[-1] >= self._seq or (np.diff(i) <= 0).any():
            raise ValueError("buffer indices out of order")
        if (c < 0).any() or (c > _MAX_COUNT).any():
            raise ValueError("bad integer")
        # Logs are kept as float32 (states written before 2026-11 hold float64 ones).
        if not (np.isfinite(t).all() and (np.abs(y) < _F32_MAX).all()):
            raise ValueError("non-finite state")
        t0 = float(t[0]) if layout is None else layout[1]
        off = (t - t0).astype(np.float32)
        narrow_ok = int(i[-1]) <= _U32 and int(c.max()) <= _U32 and np.array_equal(off.astype(np.float64) + t0, t)
        if layout is None:
            wide = not narrow_ok
        else:
            wide = layout[0]
            if not (wide or narrow_ok):
                raise ValueError("bad row layout")
        cap = min(16, self.history)
        while cap < n:
            cap = min(2 * cap, self.history)
        lay = _layout(m, wide)
        buf = bytearray(cap * lay.size)
        rows = np.frombuffer(buf, dtype=lay.dtype, count=n)
        rows["i"] = i
        rows["n"] = c
        rows["t"] = t if wide else off
        rows["y"] = y
        del rows
        self._lay, self._buf, self._len, self._t0 = lay, buf, n, t0

    def _was_reported(self, index: int) -> bool:
        return self._reported is not None and index in self._reported

    def _report(self, index: int) -> None:
        rep = self._reported
        if rep is None:
            rep = self._reported = array("q")
        rep.append(index)
        if len(rep) > _MAX_REPORTED:
            del rep[0]

    # ------------------------------------------------------------------ update

    def update(self, t: float, values: Mapping[str, float], count: int) -> list[ShiftDecision]:
        """Feed one closed snapshot; returns the shifts/retractions it confirms."""
        seq = self._seq
        self._seq += 1
        try:
            vals = tuple(float(values[m]) for m in self.metrics)
        except (KeyError, TypeError, ValueError):
            return []
        if not self.min_count <= count <= _MAX_COUNT or not all(math.isfinite(v) for v in vals) or not math.isfinite(t):
            return []
        self._append(seq, float(t), int(count), tuple(math.log(max(v, _FLOOR)) for v in vals))
        out: list[ShiftDecision] = []
        shift = self._detect()
        if shift is not None:
            out.append(shift)
            return out
        retraction = self._revalidate()
        if retraction is not None:
            out.append(retraction)
        return out

    # ------------------------------------------------------------------ internals

    def _arrays(self, start_index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        rows = self._rows()
        idx = rows["i"].astype(np.int64)
        k = int(np.searchsorted(idx, start_index))
        rows = rows[k:]
        # Contiguous float64/int64 copies: the arithmetic is the same whatever the packing.
        logs = np.array(rows["y"], dtype=np.float64, order="C")
        return idx[k:], self._times(rows), rows["n"].astype(np.int64), logs

    def _metric_change(self, name: str, y: np.ndarray, c: int) -> tuple[MetricChange, float]:
        mb, ma, _, _, p = welch_ttest(y[:c], y[c:])
        before, after = math.exp(mb), math.exp(ma)
        return MetricChange(name, before, after, after / before - 1.0, p), ma - mb

    def _moved(self, logs: np.ndarray, c: int, listing: bool = False) -> list[tuple[MetricChange, float]]:
        out = []
        lp = self.list_pvalue if listing else self.max_pvalue
        for j, name in enumerate(self.metrics):
            ch, d = self._metric_change(name, logs[:, j], c)
            if ch.pvalue <= lp and abs(ch.relative_change) >= self.min_relative_change:
                out.append((ch, d))
        if listing and not any(ch.pvalue <= self.max_pvalue for ch, _ in out):
            return []
        return out

    def _significant_inner(self, y: np.ndarray, c: int, cps: list[int]) -> bool:
        """True when the would-be new regime y[c:] itself changes (spike, brownout)."""
        seg = y[c:]
        for c2 in cps:
            k = c2 - c
            if 0 < k < len(seg):
                mb, ma, _, _, p = welch_ttest(seg[:k], seg[k:])
                if p <= self.inner_pvalue and abs(math.exp(ma - mb) - 1.0) >= self.min_relative_change:
                    return True
        return False

    def _baseline_slope(self, y: np.ndarray, x: np.ndarray, c: int, prev: tuple[np.ndarray, np.ndarray] | None) -> float:
        """The baseline's least-squares slope when it is significant (two-sided
        p <= ``trend_pvalue``), else 0. ``prev`` (times, values) is the regime before
        a reported shift the baseline starts at: one slope, a level per regime, so a
        short baseline after a step on a drifting key still knows the drift."""
        segs = [(x[:c], y[:c])] + ([prev] if prev is not None and len(prev[0]) >= 2 else [])
        n = sum(len(sx) for sx, _ in segs)
        dof = n - 1 - len(segs)
        if c < 4 or dof < 2 or self.trend_pvalue <= 0:
            return 0.0
        dxs = [(sx - sx.mean(), sy - sy.mean()) for sx, sy in segs]
        sxx = sum(float((dx * dx).sum()) for dx, _ in dxs)
        if sxx == 0.0:
            return 0.0
        slope = sum(float((dx * dy).sum()) for dx, dy in dxs) / sxx
        s2 = sum(float(((dy - slope * dx) ** 2).sum()) for dx, dy in dxs) / dof
        if s2 > 0.0:
            p = 2.0 * float(stdtr(dof, -abs(slope) / math.sqrt(s2 / sxx)))
        else:
            p = 0.0 if slope != 0.0 else 1.0
        return slope if p <= self.trend_pvalue else 0.0

    def _drift_explains(self, yd: np.ndarray, c: int, d: float) -> bool:
        """On the detrended log values ``yd``: True unless the new regime departs from
        the baseline's trend line significantly, by ``min_relative_change``, in the
        direction of the move."""
        before, away = yd[:c], yd[c:]
        p = welch_ttest(before, away)[4]
        step = float(away.mean() - before.mean())
        return not (p <= self.max_pvalue and abs(math.expm1(step)) >= self.min_relative_change and step * d > 0)

    def _wander_explains(self, y: np.ndarray, c: int) -> bool:
        """True when the baseline wanders (its snapshots are correlated: lag-1
        autocorrelation rho of its deviations above ``max_rho``) so much that, with
        the effective sample sizes n·(1-rho)/(1+rho), the move is no longer significant."""
        if self.max_rho >= 1.0 or c < 4:
            return False
        # Deviations from each side's own mean: a true step leaves them uncorrelated.
        r1, r2 = y[:c] - y[:c].mean(), y[c:] - y[c:].mean()
        den = float((r1 * r1).sum() + (r2 * r2).sum())
        if den == 0.0:
            return False
        rho = float((r1[1:] * r1[:-1]).sum() + (r2[1:] * r2[:-1]).sum()) / den
        if rho <= self.max_rho:
            return False
        shrink = (1.0 - rho) / (1.0 + rho)
        a, b = y[:c], y[c:]
        n1, n2 = max(len(a) * shrink, 1.0 + 1e-9), max(len(b) * shrink, 1.0 + 1e-9)
        v1, v2 = float(a.var(ddof=1)), float(b.var(ddof=1))
        se2 = v1 / n1 + v2 / n2
        if se2 == 0.0:
            return False
        df = se2 * se2 / ((v1 / n1) ** 2 / max(n1 - 1, 1e-9) + (v2 / n2) ** 2 / max(n2 - 1, 1e-9))
        p = 2.0 * float(stdtr(df, -abs(float(a.mean()) - float(b.mean())) / math.sqrt(se2)))
        return p > self.max_pvalue

    def _stays(self, y: np.ndarray, c: int, d: float) -> bool:
        """The strongest metric stays moved: each of the newest ``confirm`` snapshots,
        and ``min_fraction`` of the new regime, sit on the new side of the midpoint (a
        brownout that ended, or a few short ones, leave snapshots on the old side)."""
        mid = 0.5 * (y[:c].mean() + y[c:].mean())
        if np.any((y[-self.confirm :] - mid) * d <= 0):
            return False
        return bool(np.mean((y[c:] - mid) * d > 0) >= self.min_fraction)

    def _explained(self, y: np.ndarray, x: np.ndarray, c: int, d: float, prev: tuple[np.ndarray, np.ndarray] | None) -> bool:
        """The drift rule, then the wander rule (on the detrended values)."""
        slope = self._baseline_slope(y, x, c, prev)
        yd = y - slope * (x - x[0]) if slope else y
        if slope and self._drift_explains(yd, c, d):
            return True
        return self._wander_explains(yd, c)

    def _previous_regime(self) -> tuple[np.ndarray, np.ndarray] | None:
        """(times as indices, logs) of the regime before the reported shift at ``_base``."""
        rep = self._reported
        if rep is None or not self._was_reported(self._base):
            return None
        earlier = [r for r in rep if r < self._base]
        start = max(earlier) if earlier else 0
        idx, _, _, logs = self._arrays(start)
        k = int(np.searchsorted(idx, self._base))
        return idx[:k].astype(np.float64), logs[:k]

    def _detect(self) -> ShiftDecision | None:
        idx, ts, ns, logs = self._arrays(self._base)
        n = len(idx)
        # A regime that starts at a reported shift has a known start: it needs only
        # min_after snapshots of its own before the next change (a short regression
        # followed by its fix).
        min_before = self.min_after if self._was_reported(self._base) else self.min_before
        if n < min_before + self.min_after:
            return None
        # Cheap screen: the newest snapshots must differ from the rest on some metric.
        tail = logs[-self.min_after :]
        head = logs[: -self.min_after]
        sd = head.std(axis=0) + 1e-12
        z = np.abs(tail.mean(axis=0) - head.mean(axis=0)) / (sd * math.sqrt(1.0 / self.min_after + 1.0 / len(head)))
        if not np.any(z >= 3.0):
            return None
        cands: dict[int, list[int]] = {}
        for j in range(len(self.metrics)):
            y = logs[:, j]
            cps = list(split_weak(y, n, self.candidate_pvalue))
            for c in cps:
                cands.setdefault(c, []).append(j)
            cands_j = cps
            for c in list(cps):
                if self._significant_inner(y, c, cands_j):
                    cands.setdefault(c, []).append(-1 - j)  # veto mark
        prev = self._previous_regime()
        best: tuple[float, int, list[tuple[MetricChange, float]]] | None = None
        for c, who in sorted(cands.items()):
            if c < min_before or n - c < self.min_after:
                continue
            if self._was_reported(int(idx[c])):
                continue
            moved = self._moved(logs, c, listing=True)
            if not moved:
                continue
            vetoed = {-1 - j for j in who if j < 0}
            names = [m.metric for m, _ in moved]
            if any(self.metrics.index(nm) in vetoed for nm in names):
                continue
            anchor, d = min(moved, key=lambda md: md[0].pvalue)
            j = self.metrics.index(anchor.metric)
            y = logs[:, j]
            if not self._stays(y, c, d):
                continue
            if self._explained(y, idx.astype(np.float64), c, d, None if prev is None else (prev[0], prev[1][:, j])):
                continue
            p = anchor.pvalue
            if best is None or p < best[0]:
                best = (p, c, moved)
        if best is None:
            return None
        p, c, moved = best
        anchor, d = min(moved, key=lambda md: md[0].pvalue)
        worse = d > 0 if self.lower_is_better else d < 0
        direction: Direction = "regression" if worse else "improvement"
        at_index = int(idx[c])
        decision = ShiftDecision(
            kind="shift",
            at=float(ts[c]),
            index=at_index,
            direction=direction,
            pvalue=float(p),
            changes=tuple(m for m, _ in moved),
            snapshots_before=c,
            snapshots_after=n - c,
            samples_before=int(ns[:c].sum()),
            samples_after=int(ns[c:].sum()),
        )
        self._last = _Reported(at_index, float(ts[c]), self._base, int(idx[-1]), direction, tuple(m.metric for m, _ in moved))
        self._report(at_index)
        self._base = at_index
        return decision

    def _revalidate(self) -> ShiftDecision | None:
        last = self._last
        if last is None:
            return None
        newest = self._lay.row.unpack_from(self._buf, (self._len - 1) * self._lay.size)[0]  # type: ignore[arg-type]
        if newest - last.report_index > self.revalidate:
            self._last = None
            return None
        idx, ts, ns, logs = self._arrays(last.base)
        c = int(np.searchsorted(idx, last.index))
        if c <= 0 or c >= len(idx) or int(idx[c]) != last.index:
            return None
        # A pending change inside the new regime (e.g. a fix) is not a failure of this one.
        moved = self._moved(logs, c)
        names = {m.metric for m, _ in moved}
        if names & set(last.metrics):
            return None
        reg = logs[c:]
        for j in range(len(self.metrics)):
            if split_weak(reg[:, j], len(reg), self.inner_pvalue):
                return None
        changes = tuple(self._metric_change(m, logs[:, self.metrics.index(m)], c)[0] for m in last.metrics)
        p = min(ch.pvalue for ch in changes)
        self._last = None
        self._base = last.base
        return ShiftDecision(
            kind="retraction",
            at=last.at,
            index=last.index,
            direction=last.direction,
            pvalue=float(p),
            changes=changes,
            snapshots_before=c,
            snapshots_after=len(idx) - c,
            samples_before=int(ns[:c].sum()),
            samples_after=int(ns[c:].sum()),
        )

    # ------------------------------------------------------------------ state

    def _config(self) -> dict[str, Any]:
        return {
            "metrics": list(self.metrics),
            "lower_is_better": self.lower_is_better,
            "min_count": self.min_count,
            "history": self.history,
            "min_before": self.min_before,
            "min_after": self.min_after,
            "max_pvalue": self.max_pvalue,
            "list_pvalue": self.list_pvalue,
            "inner_pvalue": self.inner_pvalue,
            "candidate_pvalue": self.candidate_pvalue,
            "min_relative_change": self.min_relative_change,
            "revalidate": self.revalidate,
            "confirm": self.confirm,
            "min_fraction": self.min_fraction,
            "trend_pvalue": self.trend_pvalue,
            "max_rho": self.max_rho,
        }

    def to_bytes(self) -> bytes:
        """Version 2: a small JSON header (config, counters, the last shift, the row
        layout), then the history rows exactly as kept in memory (little-endian, 24
        bytes per snapshot for three metrics). Deterministic; about a third of the JSON
        form's size and a fraction of its encoding time — a worker checkpoints every
        busy key every interval."""
        last = self._last
        n = self._len if self._buf is not None else 0
        header = {
            "config": self._config(),
            "seq": self._seq,
            "base": self._base,
            "rows": n,
            "wide": self._lay.wide,
            "t0": self._t0,
            "last": None
            if last is None
            else [last.index, last.at, last.base, last.report_index, last.direction, list(last.metrics)],
            "reported": self._reported.tolist() if self._reported is not None else [],
        }
        head = json.dumps(header, separators=(",", ":"), allow_nan=False).encode()
        body = bytes(self._buf[: n * self._lay.size]) if n else b""  # type: ignore[index]
        return b"".join((bytes([_VERSION]), _HEAD_LEN.pack(len(head)), head, body))

    def _to_bytes_v1(self) -> bytes:
        """The version-1 form (JSON throughout), kept to test that it is still read."""
        last = self._last
        rows = self._rows()
        state = {
            "config": self._config(),
            "seq": self._seq,
            "base": self._base,
            "idx": rows["i"].tolist(),
            "t": self._times(rows).tolist(),
            "n": rows["n"].tolist(),
            # The exact float64 value of each float32 log: read back, it is the same float32.
            "logs": rows["y"].astype(np.float64).tolist(),
            "last": None
            if last is None
            else [last.index, last.at, last.base, last.report_index, last.direction, list(last.metrics)],
            "reported": self._reported.tolist() if self._reported is not None else [],
        }
        return seal(1, state, allow_nan=False)

    @classmethod
    def from_bytes(cls, b: bytes) -> "SnapshotShiftDetector":
        """Inverse of ``to_bytes`` (versions 1 and 2); ``ValueError`` on anything malformed."""
        if isinstance(b, (bytes, bytearray, memoryview)) and len(b) and b[0] == 1:
            body = open_envelope(b, 1, _MAX_BYTES)
            columns = None
        else:
            body = open_envelope(b, _VERSION, _MAX_BYTES)
            if len(body) < _HEAD_LEN.size:
                raise ValueError("truncated state")
            (k,) = _HEAD_LEN.unpack_from(body)
            columns = body[_HEAD_LEN.size + k :]
            body = body[_HEAD_LEN.size : _HEAD_LEN.size + k]
        try:
            s = json.loads(body.decode("utf-8"))
            cfg = s["config"]
            d = cls(
                metrics=tuple(str(m) for m in cfg["metrics"]),
                lower_is_better=bool(cfg["lower_is_better"]),
                min_count=int(cfg["min_count"]),
                history=int(cfg["history"]),
                min_before=int(cfg["min_before"]),
                min_after=int(cfg["min_after"]),
                max_pvalue=float(cfg["max_pvalue"]),
                # States written before these existed (2026-12) get today's defaults.
                list_pvalue=float(cfg.get("list_pvalue", max(1e-2, float(cfg["max_pvalue"])))),
                inner_pvalue=float(cfg.get("inner_pvalue", 1e-4)),
                candidate_pvalue=float(cfg["candidate_pvalue"]),
                min_relative_change=float(cfg["min_relative_change"]),
                revalidate=int(cfg["revalidate"]),
                confirm=int(cfg["confirm"]),
                min_fraction=float(cfg["min_fraction"]),
                trend_pvalue=float(cfg.get("trend_pvalue", 0.0)),
                max_rho=float(cfg.get("max_rho", 1.0)),
            )
            if d.history > 100_000 or len(d.metrics) > 64:
                raise ValueError("configuration too large")
            d._seq = _int(s["seq"])
            d._base = _int(s["base"])
            if columns is None:
                idx, ts, ns, logs = s["idx"], s["t"], s["n"], s["logs"]
                if not (isinstance(idx, list) and isinstance(ts, list) and isinstance(ns, list) and isinstance(logs, list)):
                    raise ValueError("bad buffers")
                if not len(idx) == len(ts) == len(ns) == len(logs) <= d.history:
                    raise ValueError("inconsistent buffers")
                if idx:
                    d._load(idx, ts, ns, logs)
            else:
                n, wide, t0 = _int(s["rows"]), s["wide"], s["t0"]
                if type(wide) is not bool or type(t0) not in (int, float) or not math.isfinite(t0):
                    raise ValueError("bad row layout")
                lay = _layout(len(d.metrics), wide)
                if n > d.history or len(columns) != n * lay.size:
                    raise ValueError("inconsistent buffers")
                if n:
                    rows = np.frombuffer(columns, lay.dtype, n)
                    t = rows["t"].astype(np.float64) + (0.0 if wide else float(t0))
                    d._load_arrays(rows["i"].astype(np.int64), t, rows["n"].astype(np.int64), rows["y"].astype(np.float64), (wide, float(t0)))
                else:
                    d._t0, d._lay = float(t0), lay
            last = s["last"]
            if last is not None:
                if not isinstance(last, list) or len(last) != 6 or last[4] not in ("regression", "improvement"):
                    raise ValueError("bad last shift")
                metrics = tuple(str(m) for m in last[5])
                if not set(metrics) <= set(d.metrics):
                    raise ValueError("unknown metric")
                d._last = _Reported(_int(last[0]), float(last[1]), _int(last[2]), _int(last[3]), last[4], metrics)
            rep = s["reported"]
            if not isinstance(rep, list) or len(rep) > 256:
                raise ValueError("bad reported list")
            for r in rep:
                d._report(_int(r))
            return d
        except ValueError:
            raise
        except (KeyError, TypeError, AttributeError, IndexError, UnicodeDecodeError, OverflowError, RecursionError) as e:
            raise ValueError(f"malformed detector state: {e}") from None


# The configuration reads as plain attributes (detector.min_count, ...), from the shared _Params.
for _name in _Params.__slots__:
    setattr(SnapshotShiftDetector, _name, property(attrgetter(f"_p.{_name}")))
del _name


def _int(v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < 0 or v > 1 << 62:
        raise ValueError("bad integer")
    return v
