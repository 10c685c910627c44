"""Per-key shift detection over percentile snapshots (p50/p90/p99 every interval).

Why: the stream closes one snapshot per key and interval; a shift is a lasting move
of one or more of its percentiles. E-Divisive on the log of each metric over a bounded
window proposes where the current regime split; a pooled t-test between the whole
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
from collections import deque
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from ._envelope import open_envelope, seal
from .edivisive import split_weak, ttest
from .records import Direction, MetricChange, ShiftDecision

__all__ = ["SnapshotShiftDetector"]

_VERSION = 1
_MAX_BYTES = 4 << 20
_FLOOR = 1e-12  # log floor for zero latencies


@dataclass(slots=True)
class _Reported:
    index: int
    at: float
    base: int  # first index of the baseline the shift was measured against
    report_index: int
    direction: Direction
    metrics: tuple[str, ...]


class SnapshotShiftDetector:
    """Streaming shift detector for one key's percentile snapshots.

    Configure once; call ``update`` per closed snapshot; decisions come back in order.
    Memory is bounded by ``history`` snapshots.
    """

    def __init__(
        self,
        metrics: Sequence[str] = ("p50", "p90", "p99"),
        lower_is_better: bool = True,
        *,
        min_count: int = 30,
        history: int = 120,
        min_before: int = 10,
        min_after: int = 5,
        max_pvalue: float = 1e-5,
        candidate_pvalue: float = 1e-3,
        min_relative_change: float = 0.1,
        revalidate: int = 10,
        confirm: int = 3,
        min_fraction: float = 0.8,
    ) -> None:
        if not metrics:
            raise ValueError("at least one metric")
        if len(set(metrics)) != len(metrics):
            raise ValueError("metrics must be distinct")
        if min_after < 2 or min_before < 2:
            raise ValueError("min_before and min_after must be >= 2")
        if history < min_before + min_after:
            raise ValueError("history must hold min_before + min_after snapshots")
        if not (0 < max_pvalue < 1 and 0 < candidate_pvalue < 1):
            raise ValueError("p-values must be in (0, 1)")
        if min_count < 0 or min_relative_change < 0 or revalidate < 0 or not 1 <= confirm <= min_after or not 0.5 <= min_fraction <= 1.0:
            raise ValueError("bad parameter")
        self.metrics = tuple(str(m) for m in metrics)
        self.lower_is_better = bool(lower_is_better)
        self.min_count = int(min_count)
        self.history = int(history)
        self.min_before = int(min_before)
        self.min_after = int(min_after)
        self.max_pvalue = float(max_pvalue)
        self.candidate_pvalue = float(candidate_pvalue)
        self.min_relative_change = float(min_relative_change)
        self.revalidate = int(revalidate)
        self.confirm = int(confirm)
        self.min_fraction = float(min_fraction)
        self._seq = 0
        self._base = 0  # index of the first snapshot of the current regime
        self._idx: deque[int] = deque(maxlen=self.history)
        self._t: deque[float] = deque(maxlen=self.history)
        self._n: deque[int] = deque(maxlen=self.history)
        self._logs: deque[tuple[float, ...]] = deque(maxlen=self.history)
        self._last: _Reported | None = None
        self._reported: deque[int] = deque(maxlen=256)

    # ------------------------------------------------------------------ update

    def update(self, t: float, values: Mapping[str, float], count: int) -> list[ShiftDecision]:
        """Feed one closed snapshot; returns the shifts/retractions it confirms."""
        seq = self._seq
        self._seq += 1
        try:
            vals = tuple(float(values[m]) for m in self.metrics)
        except (KeyError, TypeError, ValueError):
            return []
        if count < self.min_count or not all(math.isfinite(v) for v in vals) or not math.isfinite(t):
            return []
        self._idx.append(seq)
        self._t.append(float(t))
        self._n.append(int(count))
        self._logs.append(tuple(math.log(max(v, _FLOOR)) for v in vals))
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
        idx = np.fromiter(self._idx, dtype=np.int64, count=len(self._idx))
        k = int(np.searchsorted(idx, start_index))
        logs = np.asarray(self._logs, dtype=np.float64).reshape(len(self._idx), len(self.metrics))[k:]
        ts = np.fromiter(self._t, dtype=np.float64, count=len(self._t))[k:]
        ns = np.fromiter(self._n, dtype=np.int64, count=len(self._n))[k:]
        return idx[k:], ts, ns, logs

    def _metric_change(self, name: str, y: np.ndarray, c: int) -> tuple[MetricChange, float]:
        mb, ma, _, _, p = ttest(y[:c], y[c:])
        before, after = math.exp(mb), math.exp(ma)
        return MetricChange(name, before, after, after / before - 1.0, p), ma - mb

    def _moved(self, logs: np.ndarray, c: int) -> list[tuple[MetricChange, float]]:
        out = []
        for j, name in enumerate(self.metrics):
            ch, d = self._metric_change(name, logs[:, j], c)
            if ch.pvalue <= self.max_pvalue and abs(ch.relative_change) >= self.min_relative_change:
                out.append((ch, d))
        return out

    def _significant_inner(self, y: np.ndarray, c: int, cps: list[int]) -> bool:
        """True when the would-be new regime y[c:] itself changes (spike, brownout)."""
        seg = y[c:]
        for c2 in cps:
            k = c2 - c
            if 0 < k < len(seg):
                mb, ma, _, _, p = ttest(seg[:k], seg[k:])
                if p <= self.max_pvalue and abs(math.exp(ma - mb) - 1.0) >= self.min_relative_change:
                    return True
        return False

    def _detect(self) -> ShiftDecision | None:
        idx, ts, ns, logs = self._arrays(self._base)
        n = len(idx)
        # A regime that starts at a reported shift has a known start: it needs only
        # min_after snapshots of its own before the next change (a short regression
        # followed by its fix).
        min_before = self.min_after if self._base in self._reported else self.min_before
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
        best: tuple[float, int, list[tuple[MetricChange, float]]] | None = None
        for c, who in sorted(cands.items()):
            if c < min_before or n - c < self.min_after:
                continue
            if int(idx[c]) in self._reported:
                continue
            moved = self._moved(logs, c)
            if not moved:
                continue
            vetoed = {-1 - j for j in who if j < 0}
            names = [m.metric for m, _ in moved]
            if any(self.metrics.index(nm) in vetoed for nm in names):
                continue
            # Each of the newest snapshots must still be on the new side for the strongest
            # metric: a brownout that ended has some back on the old side.
            anchor, d = min(moved, key=lambda md: md[0].pvalue)
            j = self.metrics.index(anchor.metric)
            y = logs[:, j]
            mid = 0.5 * (y[:c].mean() + y[c:].mean())
            if np.any((y[-self.confirm :] - mid) * d <= 0):
                continue
            # And most of the new regime sits there: a few brownouts pull a mean up
            # but leave most snapshots on the old side.
            if np.mean((y[c:] - mid) * d > 0) < self.min_fraction:
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
        self._reported.append(at_index)
        self._base = at_index
        return decision

    def _revalidate(self) -> ShiftDecision | None:
        last = self._last
        if last is None:
            return None
        newest = self._idx[-1]
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
            if split_weak(reg[:, j], len(reg), self.max_pvalue):
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
            "candidate_pvalue": self.candidate_pvalue,
            "min_relative_change": self.min_relative_change,
            "revalidate": self.revalidate,
            "confirm": self.confirm,
            "min_fraction": self.min_fraction,
        }

    def to_bytes(self) -> bytes:
        """Version byte, then JSON of config and bounded state (deterministic)."""
        last = self._last
        state = {
            "config": self._config(),
            "seq": self._seq,
            "base": self._base,
            "idx": list(self._idx),
            "t": list(self._t),
            "n": list(self._n),
            "logs": [list(r) for r in self._logs],
            "last": None
            if last is None
            else [last.index, last.at, last.base, last.report_index, last.direction, list(last.metrics)],
            "reported": list(self._reported),
        }
        return seal(_VERSION, state, allow_nan=False)

    @classmethod
    def from_bytes(cls, b: bytes) -> "SnapshotShiftDetector":
        """Inverse of ``to_bytes``; ``ValueError`` on anything malformed."""
        body = open_envelope(b, _VERSION, _MAX_BYTES)
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
                candidate_pvalue=float(cfg["candidate_pvalue"]),
                min_relative_change=float(cfg["min_relative_change"]),
                revalidate=int(cfg["revalidate"]),
                confirm=int(cfg["confirm"]),
                min_fraction=float(cfg["min_fraction"]),
            )
            if d.history > 100_000 or len(d.metrics) > 64:
                raise ValueError("configuration too large")
            d._seq = _int(s["seq"])
            d._base = _int(s["base"])
            idx, ts, ns, logs = s["idx"], s["t"], s["n"], s["logs"]
            if not (isinstance(idx, list) and isinstance(ts, list) and isinstance(ns, list) and isinstance(logs, list)):
                raise ValueError("bad buffers")
            if not len(idx) == len(ts) == len(ns) == len(logs) <= d.history:
                raise ValueError("inconsistent buffers")
            prev = -1
            for i, t, n, row in zip(idx, ts, ns, logs):
                i = _int(i)
                if i <= prev or i >= d._seq:
                    raise ValueError("buffer indices out of order")
                prev = i
                t = float(t)
                n = _int(n)
                if not isinstance(row, list) or len(row) != len(d.metrics):
                    raise ValueError("bad row")
                r = tuple(float(v) for v in row)
                if not (math.isfinite(t) and all(math.isfinite(v) for v in r)):
                    raise ValueError("non-finite state")
                d._idx.append(i)
                d._t.append(t)
                d._n.append(n)
                d._logs.append(r)
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
            d._reported.extend(_int(r) for r in rep)
            return d
        except ValueError:
            raise
        except (KeyError, TypeError, AttributeError, IndexError, UnicodeDecodeError, OverflowError, RecursionError) as e:
            raise ValueError(f"malformed detector state: {e}") from None


def _int(v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < 0 or v > 1 << 62:
        raise ValueError("bad integer")
    return v
