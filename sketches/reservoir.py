"""Uniform reservoir sample (Algorithm L skip-ahead), seeded and mergeable.

Algorithm L draws how many values to skip before the next replacement, so the
per-value cost is one comparison and random numbers are spent only on the
O(k log(n/k)) replacements. The random generator (PCG64) state is part of the
serialized form, so a restored reservoir continues exactly as the original would.
Two reservoirs merge into a uniform sample of the union: the number taken from
each side is hypergeometric in the counts they have seen.
"""

from __future__ import annotations

import math
import struct
from typing import Sequence

import numpy as np

from ._varint import Reader, SketchDecodeError, put_uvarint
from .base import Estimator

__all__ = ["Reservoir"]

_VERSION = 1
_D = struct.Struct("<d")
_MAX_SIZE = 1 << 16
_U128 = (1 << 128) - 1
_OVERHEAD = 72  # serialized bytes besides the samples at most (varints at full width, generator state)


class Reservoir(Estimator):
    __slots__ = ("size", "count", "sample", "_rng", "_w", "_next")

    def __init__(self, size: int = 128, seed: int | None = 0) -> None:
        if not 1 <= size <= _MAX_SIZE:
            raise ValueError(f"size must be in [1, {_MAX_SIZE}]")
        self.size = int(size)
        self.count = 0
        self.sample: list[float] = []
        self._rng = np.random.Generator(np.random.PCG64(seed))
        self._w = 0.0
        self._next = 0  # 0-based stream position of the next value to take

    @classmethod
    def create(cls, *, max_bytes: int = 1024, quantiles: Sequence[float] = (), seed: int = 0) -> "Reservoir":
        """Registry constructor: as many samples as fit ``max_bytes`` serialized (8 bytes
        each after a header of at most 72 bytes; 119 at 1 KiB)."""
        return cls(max(1, min(_MAX_SIZE, (int(max_bytes) - _OVERHEAD) // 8)), seed=seed)

    # -- Algorithm L -----------------------------------------------------
    def _u(self) -> float:
        u = float(self._rng.random())
        return u if u > 0.0 else 5e-324

    def _skip(self) -> None:
        w = self._w
        gap = math.floor(math.log(self._u()) / math.log1p(-w)) if w < 1.0 else 0
        self._next += min(gap, 1 << 62) + 1

    def _start_skipping(self) -> None:
        self._w = math.exp(math.log(self._u()) / self.size)
        self._next = self.count - 1
        self._skip()

    def update(self, x: float) -> None:
        if not math.isfinite(x):
            raise ValueError(f"Reservoir takes finite values, got {x!r}")
        i = self.count
        self.count = i + 1
        if i < self.size:
            self.sample.append(x)
            if self.count == self.size:
                self._start_skipping()
        elif i == self._next:
            self.sample[int(self._rng.integers(self.size))] = x
            self._w *= math.exp(math.log(self._u()) / self.size)
            self._skip()

    def update_many(self, values: np.ndarray | Sequence[float]) -> None:
        """Jump straight to the positions Algorithm L selects inside the batch."""
        v = np.asarray(values, dtype=np.float64).ravel()
        if v.size == 0:
            return
        if not np.isfinite(v).all():
            raise ValueError("Reservoir takes finite values")
        start = self.count
        fill = min(max(self.size - start, 0), v.size)
        for x in v[:fill].tolist():
            self.update(x)
        end = start + v.size
        while self.count >= self.size and self._next < end:
            x = float(v[self._next - start])
            self.sample[int(self._rng.integers(self.size))] = x
            self._w *= math.exp(math.log(self._u()) / self.size)
            self._skip()
        self.count = end

    # -- queries ---------------------------------------------------------
    def values(self) -> np.ndarray:
        return np.asarray(self.sample, dtype=np.float64)

    def quantile(self, q: float) -> float:
        return float(self.quantiles([q])[0])

    def quantiles(self, qs: Sequence[float]) -> np.ndarray:
        qa = np.asarray(qs, dtype=np.float64).ravel()
        if qa.size and not ((qa >= 0) & (qa <= 1)).all():
            raise ValueError("quantiles must be in [0, 1]")
        if not self.sample:
            return np.full(qa.size, np.nan)
        return np.quantile(self.values(), qa)

    # -- merge -----------------------------------------------------------
    def merge(self, other: "Reservoir") -> None:
        """Uniform sample of the union: draw sides hypergeometrically by counts seen.
        Deterministic given this reservoir's generator (its seed and history). Sizes
        must agree (a smaller sample cannot stand for its share of a larger one)."""
        if not isinstance(other, Reservoir):
            raise TypeError("can only merge another Reservoir")
        if other.size != self.size:
            raise ValueError(f"cannot merge a reservoir of {other.size} into one of {self.size}")
        if other.count == 0:
            return
        total = self.count + other.count
        k = min(self.size, total)
        rng = self._rng
        a = list(self.sample)
        b = list(other.sample)
        rng.shuffle(a)
        rng.shuffle(b)
        na, nb = self.count, other.count
        out: list[float] = []
        for _ in range(k):
            if rng.random() * (na + nb) < na:  # (a side's sample never runs out first:
                out.append(a.pop())  # it holds min(size, seen) and at most size are drawn)
                na -= 1
            else:
                out.append(b.pop())
                nb -= 1
        self.sample = out
        self.count = total
        if total >= self.size:
            # After n values the threshold W is Beta(k, n - k + 1); draw it afresh.
            self._w = float(rng.beta(self.size, total - self.size + 1))
            self._next = total - 1
            self._skip()

    # -- bytes -----------------------------------------------------------
    def to_bytes(self) -> bytes:
        out = bytearray([_VERSION])
        put_uvarint(out, self.size)
        put_uvarint(out, self.count)
        put_uvarint(out, len(self.sample))
        for x in self.sample:
            out += _D.pack(x)
        st = self._rng.bit_generator.state
        out += int(st["state"]["state"]).to_bytes(16, "little") + int(st["state"]["inc"]).to_bytes(16, "little")
        out.append(int(st["has_uint32"]) & 1)
        out += (int(st["uinteger"]) & 0xFFFFFFFF).to_bytes(4, "little")
        out += _D.pack(self._w)
        put_uvarint(out, self._next)
        return bytes(out)

    @classmethod
    def from_bytes(cls, data: bytes) -> "Reservoir":
        r = Reader(data)
        if r.byte() != _VERSION:
            raise SketchDecodeError("unknown Reservoir version")
        size = r.uvarint(limit=_MAX_SIZE)
        if size < 1:
            raise SketchDecodeError("reservoir size 0")
        s = cls(size)
        s.count = r.uvarint(limit=1 << 62)
        n = r.uvarint(limit=size)
        if n != min(size, s.count):
            raise SketchDecodeError("sample length does not match the count")
        s.sample = [_D.unpack(r.take(8))[0] for _ in range(n)]
        if not all(math.isfinite(x) for x in s.sample):
            raise SketchDecodeError("non-finite sample value")
        state = int.from_bytes(r.take(16), "little")
        inc = int.from_bytes(r.take(16), "little")
        has32 = r.byte()
        u32 = int.from_bytes(r.take(4), "little")
        if not inc & 1 or has32 > 1:
            raise SketchDecodeError("invalid generator state")
        s._rng.bit_generator.state = {
            "bit_generator": "PCG64",
            "state": {"state": state, "inc": inc},
            "has_uint32": has32,
            "uinteger": u32,
        }
        (s._w,) = _D.unpack(r.take(8))
        s._next = r.uvarint(limit=1 << 63)
        r.end()
        if s.count >= size and not (0.0 <= s._w <= 1.0 and s._next >= s.count - 1):
            raise SketchDecodeError("invalid skip state")
        return s

    def __repr__(self) -> str:
        return f"Reservoir(size={self.size}, count={self.count})"
