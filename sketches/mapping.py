"""Value → bucket index for base-2 exponential buckets (the OpenTelemetry layout).

At scale ``s`` the base is ``2**(2**-s)`` and bucket ``i`` holds ``(base**i, base**(i+1)]``.
Indices at a coarser scale are the finer indices shifted right, which is what makes
merging sketches of different scales exact.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

__all__ = ["LogMapping", "MIN_SCALE", "MAX_SCALE"]

MIN_SCALE = -10
MAX_SCALE = 12


@dataclass(slots=True, frozen=True)
class LogMapping:
    """The one place that turns values into bucket indices and back (``LogBuckets``
    holds one per scale; ``otel`` converts layouts with it)."""

    scale: int
    factor: float = field(init=False, repr=False, compare=False)  # 2**scale, cached

    def __post_init__(self) -> None:
        if not isinstance(self.scale, int) or not MIN_SCALE <= self.scale <= MAX_SCALE:
            raise ValueError(f"scale {self.scale} outside [{MIN_SCALE}, {MAX_SCALE}]")
        object.__setattr__(self, "factor", math.ldexp(1.0, self.scale))

    def index(self, x: float) -> int:
        """Bucket of a positive finite ``x`` (upper-inclusive, as OpenTelemetry)."""
        return math.ceil(math.log2(x) * self.factor) - 1

    def indices(self, x: np.ndarray) -> np.ndarray:
        """:meth:`index` of each (positive, finite) value, as int64."""
        return (np.ceil(np.log2(x) * self.factor) - 1).astype(np.int64)

    def lower(self, i: int) -> float:
        """Lower bound of bucket ``i`` (``inf``/``0`` past the float range)."""
        e = i / self.factor
        if e >= 1024:
            return math.inf
        if e < -1075:
            return 0.0
        return 2.0**e

    def upper(self, i: int) -> float:
        return self.lower(i + 1)

    def coarser(self, by: int) -> "LogMapping":
        return LogMapping(self.scale - by)
