"""Value → bucket index for base-2 exponential buckets (the OpenTelemetry layout).

At scale ``s`` the base is ``2**(2**-s)`` and bucket ``i`` holds ``(base**i, base**(i+1)]``.
Indices at a coarser scale are the finer indices shifted right, which is what makes
merging sketches of different scales exact.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["LogMapping", "MIN_SCALE", "MAX_SCALE"]

MIN_SCALE = -10
MAX_SCALE = 12


@dataclass(slots=True, frozen=True)
class LogMapping:
    scale: int

    def __post_init__(self) -> None:
        if not MIN_SCALE <= self.scale <= MAX_SCALE:
            raise ValueError(f"scale {self.scale} outside [{MIN_SCALE}, {MAX_SCALE}]")

    @property
    def factor(self) -> float:
        return math.ldexp(1.0, self.scale)

    def index(self, x: float) -> int:
        """Bucket of a positive finite ``x`` (upper-inclusive, as OpenTelemetry)."""
        return math.ceil(math.log2(x) * math.ldexp(1.0, self.scale)) - 1

    def indices(self, x: np.ndarray) -> np.ndarray:
        return (np.ceil(np.log2(x) * math.ldexp(1.0, self.scale)) - 1).astype(np.int64)

    def lower(self, i: int) -> float:
        """Lower bound of bucket ``i`` (``inf``/``0`` past the float range)."""
        e = i / math.ldexp(1.0, self.scale)
        if e >= 1024:
            return math.inf
        if e < -1075:
            return 0.0
        return 2.0**e

    def upper(self, i: int) -> float:
        return self.lower(i + 1)
