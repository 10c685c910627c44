"""Pool a low-traffic key's consecutive snapshot windows until they hold enough samples.

Why: the detector ignores a snapshot with fewer than ``min_count`` (30) samples, so a
key at 0.15 events/s (4.5 per 30 s window) never gets a shift. A ``Pooler`` merges a
key's closed windows, in event-time order, until they hold ``min_samples`` values and
then yields one ``PooledWindow``: start of the first window, end of the last, the
percentiles of the merged values (exact while at most ``EXACT_LIMIT``, else a merged
``LogBuckets``), the count, and the pooled length. A busy key's windows pass through one
by one (``windows == 1``), unchanged. Deterministic: the output depends only on the
windows added, in order. A pool whose first window is more than ``max_span_s`` older
than the window being added is dropped (counted in ``expired``): percentiles across hours
of silence mix regimes; its samples still count in the key's all-time quantiles.
"""

from __future__ import annotations

import math
import struct
from array import array
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from sketches import LogBuckets

__all__ = ["Pooler", "PooledWindow", "EXACT_LIMIT"]

EXACT_LIMIT = 4096
_VERSION = 1
_HEAD = struct.Struct("<BIdIddqqddd?I")  # version, min_samples, max_span, sketch_bytes, start, end, count, expired, total, lo, hi, exact, windows
_QS = (0.5, 0.9, 0.99)


@dataclass(slots=True, frozen=True)
class PooledWindow:
    """One pooled snapshot: [start, end) covering ``windows`` consecutive closed windows."""

    start: float
    end: float
    count: int
    windows: int
    p50: float
    p90: float
    p99: float
    mean: float
    min: float
    max: float

    @property
    def length_s(self) -> float:
        """Event time the pool spans (the evidence a shift on a slow key rests on)."""
        return self.end - self.start

    def percentiles(self) -> dict[str, float]:
        return {"p50": self.p50, "p90": self.p90, "p99": self.p99}


class Pooler:
    """Per key: ``add`` each closed window in event-time order; a ``PooledWindow`` comes
    back once the pool holds ``min_samples`` values (None until then)."""

    __slots__ = ("min_samples", "max_span_s", "sketch_bytes", "expired", "_start", "_end", "_count", "_windows", "_values", "_sketch", "_total", "_lo", "_hi")

    def __init__(self, min_samples: int = 30, max_span_s: float = 3600.0, sketch_bytes: int = 1024) -> None:
        if not 1 <= min_samples <= EXACT_LIMIT:
            raise ValueError(f"min_samples must be in [1, {EXACT_LIMIT}]")
        if not max_span_s > 0:
            raise ValueError("max_span_s must be > 0")
        self.min_samples = int(min_samples)
        self.max_span_s = float(max_span_s)
        self.sketch_bytes = int(sketch_bytes)
        #: Pools dropped because they grew older than ``max_span_s`` before filling.
        self.expired = 0
        self._reset()

    def _reset(self) -> None:
        self._start = math.nan
        self._end = math.nan
        self._count = 0
        self._windows = 0
        self._values: array | None = array("d")
        self._sketch: LogBuckets | None = None
        self._total = 0.0
        self._lo = math.inf
        self._hi = -math.inf

    @property
    def pending(self) -> int:
        """Samples waiting in the open pool."""
        return self._count

    def add(self, start: float, end: float, data: np.ndarray | Sequence[float] | LogBuckets, count: int | None = None) -> PooledWindow | None:
        """One closed window [start, end) with its values (or its sketch)."""
        if not (math.isfinite(start) and math.isfinite(end) and end > start):
            raise ValueError("a window needs finite start < end")
        if self._windows and start < self._end:
            raise ValueError("windows must be added in event-time order")
        if self._windows and end - self._start > self.max_span_s:
            self.expired += 1
            self._reset()
        if isinstance(data, LogBuckets):
            self._add_sketch(data)
        else:
            v = np.asarray(data, dtype=np.float64).ravel()
            if count is not None and count != len(v):
                raise ValueError("count does not match the values")
            self._add_values(v)
        if not self._windows:
            self._start = float(start)
        self._end = float(end)
        self._windows += 1
        if self._count < self.min_samples:
            return None
        out = self._emit()
        self._reset()
        return out

    def _add_values(self, v: np.ndarray) -> None:
        if not len(v):
            return
        self._count += len(v)
        self._total += float(v.sum())
        self._lo = min(self._lo, float(v.min()))
        self._hi = max(self._hi, float(v.max()))
        if self._values is not None:
            self._values.frombytes(np.ascontiguousarray(v).tobytes())
            if len(self._values) > EXACT_LIMIT:
                self._spill()
        else:
            self._sketch.update_many(v)  # type: ignore[union-attr]

    def _add_sketch(self, s: LogBuckets) -> None:
        if not s.count:
            return
        self._count += int(s.count)
        self._total += float(s.sum)
        self._lo = min(self._lo, float(s.min))
        self._hi = max(self._hi, float(s.max))
        if self._values is not None:
            self._spill()
        self._sketch.merge(s)  # type: ignore[union-attr]

    def _spill(self) -> None:
        sk = LogBuckets(max_bytes=self.sketch_bytes)
        if self._values:
            sk.update_many(np.frombuffer(self._values, dtype=np.float64))
        self._sketch, self._values = sk, None

    def _emit(self) -> PooledWindow:
        if self._values is not None:
            q = np.quantile(np.frombuffer(self._values, dtype=np.float64), _QS)
        else:
            q = self._sketch.quantiles(_QS)  # type: ignore[union-attr]
        return PooledWindow(
            self._start, self._end, self._count, self._windows, float(q[0]), float(q[1]), float(q[2]), self._total / self._count, self._lo, self._hi
        )

    # -- checkpoint form -------------------------------------------------
    def to_bytes(self) -> bytes:
        """Version 1: a fixed header, then the pool's exact values (float64) or its sketch."""
        exact = self._values is not None
        head = _HEAD.pack(
            _VERSION, self.min_samples, self.max_span_s, self.sketch_bytes, self._start, self._end,
            self._count, self.expired, self._total, self._lo, self._hi, exact, self._windows,
        )
        body = self._values.tobytes() if exact else self._sketch.to_bytes()  # type: ignore[union-attr]
        return head + body

    @classmethod
    def from_bytes(cls, data: bytes) -> "Pooler":
        """Inverse of ``to_bytes``; ``ValueError`` on anything malformed."""
        data = bytes(data)
        if len(data) < _HEAD.size or data[0] != _VERSION:
            raise ValueError("not a version-1 pooler state")
        ver, ms, span, sb, start, end, count, expired, total, lo, hi, exact, windows = _HEAD.unpack_from(data)
        try:
            p = cls(ms, span, sb)
        except ValueError as e:
            raise ValueError(f"bad pooler configuration: {e}") from None
        body = data[_HEAD.size :]
        if count < 0 or expired < 0 or (windows == 0) != (count == 0 and math.isnan(start)):
            raise ValueError("inconsistent pooler state")
        if exact:
            if len(body) % 8 or len(body) // 8 != count or count > EXACT_LIMIT:
                raise ValueError("pooled values do not match their count")
            p._values = array("d")
            p._values.frombytes(body)
            if not np.isfinite(np.frombuffer(p._values, dtype=np.float64)).all():
                raise ValueError("non-finite pooled value")
        else:
            p._values = None
            p._sketch = LogBuckets.from_bytes(body)
            if p._sketch.count != count:
                raise ValueError("pooled sketch does not match its count")
        if windows and not (math.isfinite(start) and math.isfinite(end) and end > start):
            raise ValueError("bad pooled window bounds")
        p._start, p._end, p._count, p._windows, p.expired = start, end, count, windows, expired
        p._total, p._lo, p._hi = total, lo, hi
        return p
