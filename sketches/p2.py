"""Extended P² quantile estimator (Jain & Chlamtac; Raatikainen's multi-quantile form).

For ``m`` quantiles it keeps ``2m + 3`` markers (min, max, each quantile and the
midpoints between them) and moves them by piecewise-parabolic prediction, so it
needs O(m) memory and no sorting. Exact while fewer values than markers have been
seen (they are simply kept). **Not mergeable**: markers of two streams do not
combine; use :class:`LogBuckets` where sketches must be added.
"""

from __future__ import annotations

import math
import struct
from typing import Sequence

import numpy as np

from ._varint import Reader, SketchDecodeError, put_uvarint

__all__ = ["P2Quantiles"]

_VERSION = 1
_D = struct.Struct("<d")
_MAX_QUANTILES = 64


class P2Quantiles:
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
