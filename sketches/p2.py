"""Extended P² quantile estimator (Jain & Chlamtac; Raatikainen's multi-quantile form).

For ``m`` quantiles it keeps ``2m + 3`` markers (min, max, each quantile and the
midpoints between them) and moves them by piecewise-parabolic prediction, so it
needs O(m) memory and no sorting. Exact while fewer values than markers have been
seen (they are simply kept).

**Merge is an approximation** (P² has no exact merge): each side's markers are read
as a piecewise-linear CDF through (height, rank); the two CDFs are added with their
counts as weights and the new markers are placed where the sum reaches their desired
ranks. Buffered values (fewer than the marker count) are replayed exactly instead.
Deterministic. Measured on 100k i.i.d. values merged from four parts (p50/p90/p99
relative error; single stream in brackets): lognormal 0.38/1.39/1.63 % (0.06/0.19/
0.38 %), exponential 0.19/0.18/0.49 %, uniform under 0.04 %. Parts that differ (a
shift between them) and repeated merges drift further; use :class:`LogBuckets`
where merges must be exact.
"""

from __future__ import annotations

import math
import struct
from typing import Sequence

import numpy as np

from ._varint import Reader, SketchDecodeError, put_uvarint
from .base import Estimator

__all__ = ["P2Quantiles"]

_VERSION = 1
_D = struct.Struct("<d")
_MAX_QUANTILES = 64


class P2Quantiles(Estimator):
    __slots__ = ("probs", "count", "_f", "_q", "_n", "_np", "_buf")

    def __init__(self, probs: Sequence[float] = (0.5, 0.9, 0.99)) -> None:
        ps = [float(p) for p in probs]
        if not 1 <= len(ps) <= _MAX_QUANTILES:
            raise ValueError(f"between 1 and {_MAX_QUANTILES} quantiles")
        if any(not 0.0 < p < 1.0 for p in ps) or any(b <= a for a, b in zip(ps, ps[1:])):
            raise ValueError("quantiles must be strictly increasing inside (0, 1)")
        self.probs = tuple(ps)
        f = [0.0]
        for a, b in zip([0.0] + ps, ps + [1.0]):
            f += [(a + b) / 2.0, b]
        f[-1] = 1.0
        # f = 0, p1/2, p1, (p1+p2)/2, p2, ..., pm, (pm+1)/2, 1  → 2m + 3 markers
        self._f = f
        self.count = 0
        self._q: list[float] = []  # marker heights
        self._n: list[int] = []  # actual positions (1-based)
        self._np: list[float] = []  # desired positions
        self._buf: list[float] = []

    @classmethod
    def create(cls, *, max_bytes: int = 1024, quantiles: Sequence[float] = (0.5, 0.9, 0.99), seed: int = 0) -> "P2Quantiles":
        """Registry constructor: tracks ``quantiles`` (0 and 1 are its min/max markers
        anyway, so they are dropped; duplicates too). Its size is fixed by their number
        (``2m + 3`` markers, ~17 bytes each), so ``max_bytes`` is unused."""
        ps = sorted({float(q) for q in quantiles if 0.0 < q < 1.0})
        return cls(ps or (0.5,))

    @property
    def markers(self) -> int:
        return len(self._f)

    def update(self, x: float) -> None:
        if not math.isfinite(x):
            raise ValueError(f"P2Quantiles takes finite values, got {x!r}")
        self.count += 1
        M = len(self._f)
        if self.count <= M:
            self._buf.append(x)
            if self.count == M:
                self._q = sorted(self._buf)
                self._n = list(range(1, M + 1))
                self._np = [1.0 + (M - 1) * fi for fi in self._f]
                self._buf = []
            return
        q, n, npos, f = self._q, self._n, self._np, self._f
        if x < q[0]:
            q[0] = x
            k = 0
        elif x >= q[-1]:
            q[-1] = x
            k = M - 2
        else:
            k = 0
            while x >= q[k + 1]:
                k += 1
        for i in range(k + 1, M):
            n[i] += 1
        for i in range(M):
            npos[i] += f[i]
        for i in range(1, M - 1):
            d = npos[i] - n[i]
            if (d >= 1.0 and n[i + 1] - n[i] > 1) or (d <= -1.0 and n[i - 1] - n[i] < -1):
                s = 1 if d > 0 else -1
                qi = _parabolic(q, n, i, s)
                if not q[i - 1] < qi < q[i + 1]:
                    qi = q[i] + s * (q[i + s] - q[i]) / (n[i + s] - n[i])
                q[i] = qi
                n[i] += s

    def update_many(self, values: np.ndarray | Sequence[float]) -> None:
        """Sequential by nature: P² has no vectorised form; this only validates once."""
        v = np.asarray(values, dtype=np.float64).ravel()
        if v.size and not np.isfinite(v).all():
            raise ValueError("P2Quantiles takes finite values")
        upd = self.update
        for x in v.tolist():
            upd(x)

    def quantile(self, p: float) -> float:
        return float(self.quantiles([p])[0])

    def quantiles(self, ps: Sequence[float]) -> np.ndarray:
        """Tracked quantiles read their marker; others interpolate linearly between the
        markers' target probabilities (monotone in ``p`` because heights are sorted)."""
        pa = np.asarray(ps, dtype=np.float64).ravel()
        if pa.size and not ((pa >= 0) & (pa <= 1)).all():
            raise ValueError("quantiles must be in [0, 1]")
        if self.count == 0:
            return np.full(pa.size, np.nan)
        if self._buf:
            return np.quantile(np.asarray(self._buf), pa)
        return np.interp(pa, np.asarray(self._f), np.asarray(self._q))

    # -- merge (approximate: see the module docstring) -----------------
    def merge(self, other: "P2Quantiles") -> None:
        if not isinstance(other, P2Quantiles):
            raise TypeError("can only merge another P2Quantiles")
        if other.probs != self.probs:
            raise ValueError(f"cannot merge P2Quantiles tracking {other.probs} into {self.probs}")
        if other.count == 0:
            return
        if other._buf:  # few values: replay them exactly
            self.update_many(other._buf)
            return
        if self._buf or self.count == 0:
            mine = self._buf
            self.count, self._q, self._n, self._np, self._buf = other.count, list(other._q), list(other._n), list(other._np), []
            self.update_many(mine)
            return
        self._merge_markers(other)

    def _merge_markers(self, other: "P2Quantiles") -> None:
        """Both sides past the buffer: markers from the count-weighted sum of their CDFs."""
        total = self.count + other.count
        xs = np.unique(np.concatenate((self._q, other._q)))
        ranks = np.zeros_like(xs)  # values <= x in both streams (piecewise linear in x)
        for q, n in ((self._q, self._n), (other._q, other._n)):
            ranks += np.interp(xs, np.asarray(q), np.asarray(n, dtype=np.float64), left=0.0)
        M = len(self._f)
        want = [1.0 + (total - 1) * fi for fi in self._f]
        pos = [1]
        for i in range(1, M - 1):  # nearest integers, strictly increasing, room for the rest
            pos.append(min(max(round(want[i]), pos[-1] + 1), total - (M - 1 - i)))
        pos.append(total)
        heights = np.interp(np.asarray(pos, dtype=np.float64), ranks, xs)
        heights[0], heights[-1] = min(self._q[0], other._q[0]), max(self._q[-1], other._q[-1])
        self._q = np.maximum.accumulate(heights).tolist()
        self._n = pos
        self._np = want
        self.count = total

    def to_bytes(self) -> bytes:
        out = bytearray([_VERSION])
        put_uvarint(out, len(self.probs))
        for p in self.probs:
            out += _D.pack(p)
        put_uvarint(out, self.count)
        if self._buf:
            for x in self._buf:
                out += _D.pack(x)
        elif self.count:
            for x in self._q:
                out += _D.pack(x)
            for x in self._np:
                out += _D.pack(x)
            prev = 0
            for x in self._n:
                put_uvarint(out, x - prev)
                prev = x
        return bytes(out)

    @classmethod
    def from_bytes(cls, data: bytes) -> "P2Quantiles":
        r = Reader(data)
        if r.byte() != _VERSION:
            raise SketchDecodeError("unknown P2Quantiles version")
        m = r.uvarint(limit=_MAX_QUANTILES)
        probs = [_D.unpack(r.take(8))[0] for _ in range(m)]
        try:
            s = cls(probs)
        except ValueError as e:
            raise SketchDecodeError(str(e)) from None
        s.count = r.uvarint(limit=1 << 62)
        M = s.markers
        if 0 < s.count < M:
            s._buf = [_D.unpack(r.take(8))[0] for _ in range(s.count)]
            if not all(math.isfinite(x) for x in s._buf):
                raise SketchDecodeError("non-finite buffered value")
        elif s.count:
            s._q = [_D.unpack(r.take(8))[0] for _ in range(M)]
            s._np = [_D.unpack(r.take(8))[0] for _ in range(M)]
            pos, n = 0, []
            for _ in range(M):
                pos += r.uvarint(limit=s.count)
                n.append(pos)
            s._n = n
            if not all(math.isfinite(x) for x in s._q + s._np):
                raise SketchDecodeError("non-finite marker")
            if any(b < a for a, b in zip(s._q, s._q[1:])):
                raise SketchDecodeError("marker heights not sorted")
            if n[0] != 1 or n[-1] != s.count or any(b <= a for a, b in zip(n, n[1:])):
                raise SketchDecodeError("marker positions invalid")
        r.end()
        return s

    def __repr__(self) -> str:
        return f"P2Quantiles(probs={self.probs}, count={self.count})"


def _parabolic(q: list[float], n: list[int], i: int, d: int) -> float:
    return q[i] + d / (n[i + 1] - n[i - 1]) * (
        (n[i] - n[i - 1] + d) * (q[i + 1] - q[i]) / (n[i + 1] - n[i])
        + (n[i + 1] - n[i] - d) * (q[i] - q[i - 1]) / (n[i] - n[i - 1])
    )
