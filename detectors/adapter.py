"""Any batch detector in the stream: re-run over a key's recent snapshots.

Why: a batch method (Perfherder, MDL, Talos, E-Divisive, ...) sees a whole series; the
stream sees one snapshot at a time. The adapter keeps the newest ``history`` accepted
snapshots, runs the batch method on each metric after every snapshot, and reports a
change point once it has ``min_before`` snapshots of history before it, ``min_after``
after it and ``min_after`` since the method's previous change point, unless a change
within ``min_after`` snapshots of it was already reported. Metrics whose change points
lie within ``min_after`` of the strongest one form one decision. A batch method has no
notion of fading evidence, so the adapter never retracts. Cost: one batch run per
metric over ``history`` points per update; a method that declares a ``reach`` (the
points either side a decision depends on, e.g. Talos's half window) is run on the
newest ``2 * (reach + min_after)`` points only, and changes within ``reach`` of a
reported one count as that one.
"""

from __future__ import annotations

import json
import math
from typing import Any, Mapping, Sequence

import numpy as np

from ._envelope import open_envelope, seal
from .base import DEFAULT_METRICS, BatchDetector, StreamingDetector, batch_class, make_batch
from .records import ChangePoint, Direction, MetricChange, ShiftDecision

__all__ = ["BatchStreamingDetector"]

_VERSION = 1
_MAX_BYTES = 4 << 20
_MAX_REPORTED = 256
_MAX_COUNT = 1 << 62
_FLOOR = 1e-12
_ADAPTER_OPTIONS = ("history", "min_count", "min_before", "min_after", "log")


class BatchStreamingDetector(StreamingDetector):
    """``batch`` names a registered batch detector; ``options`` are its keyword options
    (plain JSON values, kept in the state). ``log`` runs the method on log values, so a
    relative change of a percentile is the same size at any latency."""

    __slots__ = ("batch", "options", "metrics", "lower_is_better", "history", "min_count", "min_before", "min_after", "log",
                 "_method", "_seq", "_ints", "_floats", "_len", "_reported")

    def __init__(
        self,
        batch: str,
        metrics: Sequence[str] = DEFAULT_METRICS,
        lower_is_better: bool = True,
        *,
        options: Mapping[str, Any] | None = None,
        history: int = 120,
        min_count: int = 30,
        min_before: int = 10,
        min_after: int = 5,
        log: bool = False,
    ) -> None:
        metrics = tuple(str(m) for m in metrics)
        if not metrics or len(set(metrics)) != len(metrics):
            raise ValueError("metrics must be distinct and at least one")
        if min_before < 2 or min_after < 2 or history < min_before + min_after or min_count < 0:
            raise ValueError("bad history, min_before, min_after or min_count")
        opts = dict(options or {})
        if not all(v is None or type(v) in (int, float, bool, str) for v in opts.values()):
            raise ValueError("options must be plain numbers, booleans, strings or None")
        self.batch, self.options = str(batch), opts
        self._method: BatchDetector = make_batch(self.batch, **opts)
        self.metrics, self.lower_is_better = metrics, bool(lower_is_better)
        self.history, self.min_count = int(history), int(min_count)
        self.min_before, self.min_after, self.log = int(min_before), int(min_after), bool(log)
        self._seq = 0
        self._ints = np.zeros((self.history, 2), dtype=np.int64)  # snapshot index, samples
        self._floats = np.zeros((self.history, 1 + len(metrics)))  # time, one value per metric
        self._len = 0
        self._reported: list[int] = []

    @classmethod
    def for_batch(cls, name: str, metrics: Sequence[str] = DEFAULT_METRICS, lower_is_better: bool = True, **options: Any) -> "BatchStreamingDetector":
        """Split ``options`` into the adapter's own and the batch detector's."""
        from .base import _check_options

        own = {k: options.pop(k) for k in _ADAPTER_OPTIONS if k in options}
        _check_options(cls, name, own)
        _check_options(batch_class(name), name, options, extra=_ADAPTER_OPTIONS)
        return cls(name, metrics, lower_is_better, options=options, **own)

    # ------------------------------------------------------------------ update

    def update(self, t: float, values: Mapping[str, float], count: int) -> list[ShiftDecision]:
        seq = self._seq
        self._seq += 1
        try:
            vals = [float(values[m]) for m in self.metrics]
        except (KeyError, TypeError, ValueError):
            return []
        try:
            ok = self.min_count <= count <= _MAX_COUNT and math.isfinite(t) and all(map(math.isfinite, vals))
        except TypeError:
            ok = False
        if not ok:
            return []
        self._append(seq, float(t), int(count), vals)
        if self._len < self.min_before + self.min_after:
            return []
        return self._decide()

    def _append(self, seq: int, t: float, count: int, vals: list[float]) -> None:
        if self._len == self.history:
            self._ints[:-1] = self._ints[1:]
            self._floats[:-1] = self._floats[1:]
            self._len -= 1
        self._ints[self._len] = (seq, count)
        self._floats[self._len] = (t, *vals)
        self._len += 1

    def _candidates(self) -> list[tuple[float, int, int, ChangePoint, int, int]]:
        """(pvalue, local index, metric, change point, segment start, segment end) of the
        change points ready to report."""
        n = self._len
        y = self._floats[:n, 1:]
        if self.log:
            y = np.log(np.maximum(y, _FLOOR))
        idx = self._ints[:n, 0]
        reach = self._reach()
        # A local method (one that declares its reach) only needs the newest points.
        start = 0 if reach is None else max(0, n - 2 * (reach + self.min_after))
        gap = self._gap()
        out = []
        for j in range(len(self.metrics)):
            cps = self._method.detect(y[start:, j])
            for k, cp in enumerate(cps):
                c = start + cp.index
                lo = start + cps[k - 1].index if k else start
                hi = start + cps[k + 1].index if k + 1 < len(cps) else n
                if c < self.min_before or c - lo < self.min_after or n - c < self.min_after:
                    continue
                if any(abs(int(idx[c]) - r) <= gap for r in self._reported):
                    continue
                p = cp.pvalue if math.isfinite(cp.pvalue) else 1.0
                out.append((p, c, j, cp, lo, hi))
        return sorted(out, key=lambda r: (r[0], r[1], r[2]))

    def _reach(self) -> int | None:
        reach = getattr(self._method, "reach", None)
        return None if reach is None else int(reach)

    def _gap(self) -> int:
        """Change points closer than this to a reported one are the same change."""
        return max(self.min_after, self._reach() or 0)

    def _decide(self) -> list[ShiftDecision]:
        found = self._candidates()
        gap = self._gap()
        out: list[ShiftDecision] = []
        while found:
            p, c, j, cp, lo, hi = found[0]
            group = {}
            for r in found:  # the strongest point of each metric near the anchor
                if abs(r[1] - c) <= gap and r[2] not in group:
                    group[r[2]] = r
            found = [r for r in found if abs(r[1] - c) > gap]
            out.append(self._decision(c, lo, hi, [group[k] for k in sorted(group)], cp))
        return sorted(out, key=lambda d: d.index)

    def _decision(self, c: int, lo: int, hi: int, group: list[tuple], anchor: ChangePoint) -> ShiftDecision:
        changes = tuple(self._change(self.metrics[r[2]], r[3]) for r in group)
        a = self._change("", anchor)
        worse = a.after > a.before if self.lower_is_better else a.after < a.before
        direction: Direction = "regression" if worse else "improvement"
        ns = self._ints[: self._len, 1]
        index = int(self._ints[c, 0])
        self._reported.append(index)
        del self._reported[:-_MAX_REPORTED]
        return ShiftDecision(
            kind="shift",
            at=float(self._floats[c, 0]),
            index=index,
            direction=direction,
            pvalue=float(a.pvalue),
            changes=changes,
            snapshots_before=c - lo,
            snapshots_after=hi - c,
            samples_before=int(ns[lo:c].sum()),
            samples_after=int(ns[c:hi].sum()),
        )

    def _change(self, metric: str, cp: ChangePoint) -> MetricChange:
        before, after = cp.mean_before, cp.mean_after
        if self.log:
            before, after = math.exp(before), math.exp(after)
        rel = after / before - 1.0 if before != 0 else 0.0
        p = cp.pvalue if math.isfinite(cp.pvalue) else 1.0
        return MetricChange(metric, float(before), float(after), float(rel), float(p))

    # ------------------------------------------------------------------ state

    def to_bytes(self) -> bytes:
        """Version byte, then JSON: configuration, counters, the kept snapshots."""
        n = self._len
        state = {
            "batch": self.batch,
            "options": self.options,
            "metrics": list(self.metrics),
            "lower_is_better": self.lower_is_better,
            "config": [self.history, self.min_count, self.min_before, self.min_after, self.log],
            "seq": self._seq,
            "ints": self._ints[:n].tolist(),
            "floats": self._floats[:n].tolist(),
            "reported": self._reported,
        }
        return seal(_VERSION, state, allow_nan=False)

    @classmethod
    def from_bytes(cls, b: bytes) -> "BatchStreamingDetector":
        """Inverse of ``to_bytes``; ``ValueError`` on anything malformed."""
        body = open_envelope(b, _VERSION, _MAX_BYTES)
        try:
            s = json.loads(body.decode("utf-8"))
            h, mc, mb, ma, lg = s["config"]
            if not (all(_is_int(v) for v in (h, mc, mb, ma)) and type(lg) is bool and h <= 100_000):
                raise ValueError("bad config")
            if not isinstance(s["options"], dict) or not isinstance(s["metrics"], list) or len(s["metrics"]) > 64:
                raise ValueError("bad options or metrics")
            d = cls(str(s["batch"]), s["metrics"], bool(s["lower_is_better"]), options=s["options"],
                    history=h, min_count=mc, min_before=mb, min_after=ma, log=lg)
            ints, floats, rep, seq = s["ints"], s["floats"], s["reported"], s["seq"]
            if not (_is_int(seq) and isinstance(ints, list) and isinstance(floats, list) and isinstance(rep, list)):
                raise ValueError("bad state")
            n = len(ints)
            if n != len(floats) or n > d.history or len(rep) > _MAX_REPORTED or not all(_is_int(r) for r in rep):
                raise ValueError("inconsistent state")
            if not all(isinstance(r, list) and len(r) == 2 and _is_int(r[0]) and _is_int(r[1]) for r in ints):
                raise ValueError("bad rows")
            if not all(isinstance(r, list) and all(type(v) in (int, float) for v in r) for r in floats):
                raise ValueError("bad rows")
            if n:
                iv = np.array(ints, dtype=np.int64).reshape(n, 2)
                fv = np.array(floats, dtype=np.float64).reshape(n, 1 + len(d.metrics))
                if (np.diff(iv[:, 0]) <= 0).any() or iv[0, 0] < 0 or iv[-1, 0] >= seq or (iv[:, 1] < 0).any():
                    raise ValueError("bad rows")
                if not np.isfinite(fv).all():
                    raise ValueError("non-finite rows")
                d._ints[:n], d._floats[:n] = iv, fv
            d._seq, d._len, d._reported = seq, n, list(rep)
            return d
        except ValueError:
            raise
        except (KeyError, TypeError, AttributeError, IndexError, UnicodeDecodeError, OverflowError, RecursionError) as e:
            raise ValueError(f"malformed detector state: {e}") from None


def _is_int(v: Any) -> bool:
    return type(v) is int and 0 <= v <= _MAX_COUNT
