"""Online count, mean, variance, min and max (Welford), exactly mergeable (Chan et al.)."""

from __future__ import annotations

import math
import struct
from typing import Sequence

import numpy as np

from ._varint import Reader, SketchDecodeError, put_uvarint

__all__ = ["Moments"]

_VERSION = 1
_F = struct.Struct("<4d")


class Moments:
    __slots__ = ("count", "mean", "_m2", "min", "max")

    def __init__(self) -> None:
        self.count = 0
        self.mean = 0.0
        self._m2 = 0.0
        self.min = math.inf
        self.max = -math.inf

    def update(self, x: float) -> None:
        if not math.isfinite(x):
            raise ValueError(f"Moments takes finite values, got {x!r}")
        self.count += 1
        d = x - self.mean
        self.mean += d / self.count
        self._m2 += d * (x - self.mean)
        if x < self.min:
            self.min = x
        if x > self.max:
            self.max = x

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
        self.merge(other)

    def merge(self, other: "Moments") -> None:
        """Exact parallel combination (Chan, Golub, LeVeque)."""
        if other.count == 0:
            return
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
        return bytes(out)

    @classmethod
    def from_bytes(cls, data: bytes) -> "Moments":
        r = Reader(data)
        if r.byte() != _VERSION:
            raise SketchDecodeError("unknown Moments version")
        m = cls()
        m.count = r.uvarint()
        m.mean, m._m2, m.min, m.max = _F.unpack(r.take(_F.size))
        r.end()
        if m.count and not (math.isfinite(m.mean) and math.isfinite(m._m2) and m._m2 >= 0 and m.min <= m.max):
            raise SketchDecodeError("inconsistent Moments state")
        if m.count == 0 and (m.mean != 0.0 or m._m2 != 0.0):
            raise SketchDecodeError("inconsistent empty Moments state")
        return m

    def __repr__(self) -> str:
        return f"Moments(count={self.count}, mean={self.mean:.6g}, std={self.std:.6g})"
