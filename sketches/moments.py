"""Online count, exact sum, mean, variance, min and max (Welford), mergeable (Chan et al.).

``sum`` is exact: the running total is kept as an integer times a power of two (every
finite double is one), so it does not depend on the order values arrive in or how
they were split and merged, and for non-negative values it never decreases: what a
Prometheus ``_sum`` counter needs (``mean * count`` is neither). Reading it rounds
the exact total to the nearest double once.

Serialized form version 2 appends the exact sum (wide zig-zag varint mantissa and a
varint exponent); version 1 bytes are still read, their sum taken as ``mean * count``.
"""

from __future__ import annotations

import math
import struct
from typing import Sequence

import numpy as np

from ._varint import Reader, SketchDecodeError, put_svarint, put_uvarint

__all__ = ["Moments"]

_VERSION = 2
_V1 = 1
_F = struct.Struct("<4d")
_SMALL = 48  # below this many values a Python loop beats numpy's per-call cost
_CHUNK = 8192
_MAX_K = 1075  # a double's lowest bit is at 2**-1074
_SUM_BITS = 2240  # |sum| < 2**62 values * 2**1024 in units of 2**-1074


def _exact_scalar(x: float) -> tuple[int, int]:
    n, d = x.as_integer_ratio()
    return n, d.bit_length() - 1  # x == n / 2**k


def _exact_batch(v: np.ndarray, lo: float, hi: float) -> tuple[int, int]:
    """Exact sum of finite float64s (``lo``/``hi``: their min and max) as ``(n, k)``,
    the sum being ``n / 2**k``.

    Error-free extraction (Rump, Ogita & Oishi, "Accurate floating-point summation"):
    with ``sigma = 2**(e + m)``, ``|p| < 2**e`` and ``2**m >= len + 2``, each
    ``q = (sigma + p) - sigma`` and ``p - q`` are exact and the ``q`` are multiples of
    ``2**(e + m - 54)`` whose sum cannot round, in any order; what is left is below
    ``2**(e + m - 53)``, the next pass's ``e``. Each pass peels about ``53 - m`` bits
    off the values: latencies need two whole-array passes of four numpy calls."""
    if v.size < _SMALL:
        return _exact_loop(v.tolist())
    m = (min(v.size, _CHUNK) + 1).bit_length()  # 2**m >= values summed at once + 2
    e = math.frexp(max(hi, -lo))[1]  # |v| < 2**e
    if e + m > 1023:  # sigma would overflow: huge values, exactly the slow way
        return _exact_loop(v.tolist())
    # Chunks of _CHUNK values through two small buffers: cache-sized, and no fresh
    # large arrays (their first touch costs page faults).
    c = min(v.size, _CHUNK)
    buf = np.empty(2 * c)
    # When every value is >= lo > 0, all are multiples of lo's last bit: once the
    # remainder's bound is below that, it is zero (no check needed).
    floor = math.frexp(lo)[1] - 53 if lo > 0.0 else -1200
    n = k = 0
    for i in range(0, v.size, c):
        src = v[i : i + c]
        p, q = buf[: src.size], buf[c : c + src.size]
        f = e
        while True:
            sigma = math.ldexp(1.0, f + m)
            np.add(src, sigma, out=q)
            np.subtract(q, sigma, out=q)
            np.subtract(src, q, out=p)  # the remainder, exactly
            n, k = _add(n, k, *_exact_scalar(float(q.sum())))
            f += m - 53  # |remainder| < 2**f
            if f <= floor or f + m <= -1200 or not p.any():
                break
            src = p
    return n, k


def _exact_loop(xs: list[float]) -> tuple[int, int]:
    """The same sum one value at a time (cheaper than numpy for a few values)."""
    n = k = 0
    f = 1.0  # 2.0**k
    for x in xs:
        y = x * f
        if y.is_integer():
            n += int(y)
        else:
            n, k = _add(n, k, *_exact_scalar(x))
            f = math.ldexp(1.0, k) if k < 1024 else math.inf
    return n, k


def _add(n: int, k: int, n2: int, k2: int) -> tuple[int, int]:
    """``n / 2**k + n2 / 2**k2`` in the same form (the finer exponent)."""
    if k2 <= k:
        return n + (n2 << (k - k2)), k
    return (n << (k2 - k)) + n2, k2


class Moments:
    __slots__ = ("count", "mean", "_m2", "min", "max", "_sn", "_sk", "_sf")

    def __init__(self) -> None:
        self.count = 0
        self.mean = 0.0
        self._m2 = 0.0
        self.min = math.inf
        self.max = -math.inf
        self._sn = 0  # exact sum == _sn / 2**_sk
        self._sk = 0
        self._sf = 1.0  # 2.0**_sk (inf past the float range): the scalar fast path

    @property
    def sum(self) -> float:
        """Exact sum of the values, rounded once to the nearest double (±inf past the range)."""
        try:
            return self._sn / (1 << self._sk)
        except OverflowError:
            return math.inf if self._sn > 0 else -math.inf

    def update(self, x: float) -> None:
        if not math.isfinite(x):
            raise ValueError(f"Moments takes finite values, got {x!r}")
        self.count += 1
        y = x * self._sf  # exact (a power of two), unless it overflows to inf
        if y.is_integer():  # x is a multiple of 2**-_sk: the common case, no big shifts
            self._sn += int(y)
        else:
            self._add_exact(*_exact_scalar(float(x)))
        d = x - self.mean
        self.mean += d / self.count
        self._m2 += d * (x - self.mean)
        if x < self.min:
            self.min = x
        if x > self.max:
            self.max = x

    def _add_exact(self, n: int, k: int) -> None:
        self._sn, self._sk = _add(self._sn, self._sk, n, k)
        self._sf = math.ldexp(1.0, self._sk) if self._sk < 1024 else math.inf

    def update_many(self, values: np.ndarray | Sequence[float]) -> None:
        v = np.asarray(values, dtype=np.float64)
        if v.size == 0:
            return
        if not np.isfinite(v).all():
            raise ValueError("Moments takes finite values")
        other = Moments()
        other.count = int(v.size)
        other.mean = float(v.mean())
        other._m2 = float(((v - other.mean) ** 2).sum())
        other.min = float(v.min())
        other.max = float(v.max())
        other._add_exact(*_exact_batch(v.ravel(), other.min, other.max))
        self.merge(other)

    def merge(self, other: "Moments") -> None:
        """Exact parallel combination (Chan, Golub, LeVeque)."""
        if other.count == 0:
            return
        self._add_exact(other._sn, other._sk)
        if self.count == 0:
            self.count, self.mean, self._m2, self.min, self.max = other.count, other.mean, other._m2, other.min, other.max
            return
        n = self.count + other.count
        d = other.mean - self.mean
        self.mean += d * other.count / n
        self._m2 += other._m2 + d * d * self.count * other.count / n
        self.count = n
        self.min = min(self.min, other.min)
        self.max = max(self.max, other.max)

    @classmethod
    def from_summary(cls, count: int, total: float, lo: float, hi: float) -> "Moments":
        """Moments of ``count`` values known only by their sum, min and max (a histogram
        point): the mean is exact, the variance unknown and taken as 0."""
        m = cls()
        if count <= 0:
            return m
        if not (math.isfinite(total) and math.isfinite(lo) and math.isfinite(hi)):
            raise ValueError("Moments takes finite values")
        m.count, m.mean, m.min, m.max = int(count), total / count, lo, hi
        m._add_exact(*_exact_scalar(float(total)))
        return m

    def __add__(self, other: "Moments") -> "Moments":
        out = Moments()
        out.merge(self)
        out.merge(other)
        return out

    @property
    def variance(self) -> float:
        """Sample variance (n - 1); 0 for fewer than two values."""
        return self._m2 / (self.count - 1) if self.count > 1 else 0.0

    @property
    def std(self) -> float:
        return math.sqrt(self.variance)

    def to_bytes(self) -> bytes:
        out = bytearray([_VERSION])
        put_uvarint(out, self.count)
        out += _F.pack(self.mean, self._m2, self.min, self.max)
        n, k = self._sn, self._sk
        if n:  # normalized: no trailing zero bits in n beyond what k needs
            t = min((n & -n).bit_length() - 1, k)
            n, k = n >> t, k - t
        else:
            k = 0
        put_svarint(out, n)
        put_uvarint(out, k)
        return bytes(out)

    @classmethod
    def from_bytes(cls, data: bytes) -> "Moments":
        r = Reader(data)
        version = r.byte()
        if version not in (_VERSION, _V1):
            raise SketchDecodeError("unknown Moments version")
        m = cls()
        m.count = r.uvarint()
        m.mean, m._m2, m.min, m.max = _F.unpack(r.take(_F.size))
        if version == _V1:
            if m.count and math.isfinite(m.mean):
                m._add_exact(*_exact_scalar(m.mean * m.count))  # the best v1 can tell
        else:
            n = r.svarint(bits=_SUM_BITS)
            k = r.uvarint(limit=_MAX_K)
            if k and not n & 1:  # to_bytes writes the shortest form only
                raise SketchDecodeError("sum not normalized")
            m._add_exact(n, k)
        r.end()
        if m.count and not (math.isfinite(m.mean) and math.isfinite(m._m2) and m._m2 >= 0 and m.min <= m.max):
            raise SketchDecodeError("inconsistent Moments state")
        if m.count == 0 and (m.mean != 0.0 or m._m2 != 0.0 or m._sn):
            raise SketchDecodeError("inconsistent empty Moments state")
        if m.count and ((m.min >= 0 and m._sn < 0) or (m.max <= 0 and m._sn > 0)):
            raise SketchDecodeError("sum inconsistent with min/max")
        return m

    def __repr__(self) -> str:
        return f"Moments(count={self.count}, mean={self.mean:.6g}, std={self.std:.6g})"
