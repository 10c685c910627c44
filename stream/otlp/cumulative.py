"""CUMULATIVE histogram points -> deltas, per stream, with bounded, serialisable state.

A *stream* is one point series as its producer keeps it: all resource attributes
(``service.instance.id`` included, so each replica is its own stream), the scope, the
metric and the point attributes. Each new point minus the stream's previous one is a
delta; the deltas of a service's replicas then land in the same series key.

Rules (no wall clock, so a replay gives the same deltas):
- first point of a stream: emitted whole when its start time is known and at most
  ``new_stream_max_age_s`` before its time (a process that just started), else kept
  only as the baseline (its counts may span days);
- same start time, later time: the difference; a point not later than the baseline is
  stale (already contained in it) and ignored;
- reset (start time changed, or any count fell, or the explicit bounds changed): the
  point becomes the new baseline, and is emitted whole when everything in it is new
  (its start is not before the baseline's time, or the start is unknown) - never a
  negative count;
- exponential points whose scale dropped are differenced at the lower scale (the
  baseline is downscaled exactly: bucket ``i`` -> ``i >> by``; ``sketches.point_delta``).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Optional

import msgspec
import numpy as np

from sketches import ExponentialHistogramDataPoint, OtelBuckets, point_delta

from .points import MAX_BUCKETS, Hist

__all__ = ["CumulativeDifferencer", "subtract"]

_VERSION = 1
_Row = tuple[bytes, int, int, int, float, Optional[float], Optional[float], bytes, Optional[bytes], Optional[int], int, int]


def _point(h: Hist) -> ExponentialHistogramDataPoint:
    return ExponentialHistogramDataPoint(scale=int(h.scale), count=h.count, sum=0.0, zero_count=h.zero,  # type: ignore[arg-type]
                                         positive=OtelBuckets(h.offset, tuple(h.counts.tolist())))


def _sub_exponential(cur: Hist, prev: Hist) -> tuple[int, int, np.ndarray] | None:
    """Through ``sketches.point_delta``: at the coarser scale, None if any count fell."""
    d = point_delta(_point(cur), _point(prev))
    if d is None:
        return None
    return d.scale, d.positive.offset, np.array(d.positive.bucket_counts, dtype=np.int64)


def subtract(cur: Hist, prev: Hist) -> Hist | None:
    """``cur - prev`` of one stream, or None when that is not a valid delta (a reset)."""
    count, zero = cur.count - prev.count, cur.zero - prev.zero
    if count < 0 or zero < 0 or (cur.bounds is None) != (prev.bounds is None):
        return None
    total = cur.sum - prev.sum
    if cur.bounds is not None:
        if cur.bounds.size != prev.bounds.size or not np.array_equal(cur.bounds, prev.bounds):  # type: ignore[union-attr]
            return None
        d = cur.counts - prev.counts
        if (d < 0).any():
            return None
        return Hist(prev.time_ns, cur.time_ns, count, max(total, 0.0), None, None, d, bounds=cur.bounds)
    res = _sub_exponential(cur, prev)
    if res is None:
        return None
    scale, off, d = res
    return Hist(prev.time_ns, cur.time_ns, count, max(total, 0.0), None, None, d, scale=scale, offset=off, zero=zero)


class CumulativeDifferencer:
    """Per-stream baselines, least recently updated streams evicted beyond ``max_streams``."""

    __slots__ = ("max_streams", "max_age_ns", "_streams", "resets", "stale", "evicted")

    def __init__(self, max_streams: int = 50_000, new_stream_max_age_s: float = 300.0) -> None:
        if max_streams < 1:
            raise ValueError("max_streams must be >= 1")
        self.max_streams = int(max_streams)
        self.max_age_ns = int(new_stream_max_age_s * 1e9)
        self._streams: OrderedDict[bytes, Hist] = OrderedDict()
        self.resets = self.stale = self.evicted = 0

    def __len__(self) -> int:
        return len(self._streams)

    def update(self, stream_id: bytes, cur: Hist) -> Hist | None:
        """The delta ``cur`` adds to its stream (None: nothing new), and ``cur`` as the baseline."""
        prev = self._streams.get(stream_id)
        if prev is None:
            self._put(stream_id, cur)
            fresh = cur.start_ns > 0 and 0 <= cur.time_ns - cur.start_ns <= self.max_age_ns
            return cur if fresh and cur.count else None
        self._streams.move_to_end(stream_id)
        if cur.start_ns == prev.start_ns and cur.time_ns <= prev.time_ns:
            self.stale += 1
            return None
        self._streams[stream_id] = cur
        delta = subtract(cur, prev) if cur.start_ns == prev.start_ns else None
        if delta is not None:
            return delta if delta.count else None
        self.resets += 1
        all_new = cur.start_ns == 0 or cur.start_ns >= prev.time_ns
        return cur if all_new and cur.count else None

    def _put(self, stream_id: bytes, h: Hist) -> None:
        self._streams[stream_id] = h
        if len(self._streams) > self.max_streams:
            self._streams.popitem(last=False)
            self.evicted += 1

    # -- checkpoints -------------------------------------------------------
    def to_bytes(self) -> bytes:
        """Version byte, then msgpack: settings, counters and one row per stream (LRU order)."""
        rows = [
            (sid, h.start_ns, h.time_ns, h.count, h.sum, h.min, h.max, h.counts.astype("<i8").tobytes(),
             None if h.bounds is None else h.bounds.astype("<f8").tobytes(), h.scale, h.offset, h.zero)
            for sid, h in self._streams.items()
        ]
        body = (self.max_streams, self.max_age_ns, self.resets, self.stale, self.evicted, rows)
        return bytes([_VERSION]) + msgspec.msgpack.encode(body)

    @classmethod
    def from_bytes(cls, data: bytes) -> "CumulativeDifferencer":
        """Raises ``ValueError`` on anything but a state :meth:`to_bytes` wrote."""
        if not data or data[0] != _VERSION:
            raise ValueError(f"unknown differencer state version {data[:1]!r}")
        try:
            m, age, resets, stale, evicted, rows = msgspec.msgpack.decode(data[1:], type=tuple[int, int, int, int, int, list[_Row]])
        except (msgspec.DecodeError, msgspec.ValidationError) as e:
            raise ValueError(f"bad differencer state: {e}") from None
        if m < 1 or len(rows) > m:
            raise ValueError("bad differencer state: stream count above its bound")
        out = cls(m)
        out.max_age_ns, out.resets, out.stale, out.evicted = age, resets, stale, evicted
        for row in rows:
            out._streams[row[0]] = _row_hist(row)
        return out


def _row_hist(row: tuple) -> Hist:
    _, start, time, count, total, lo, hi, counts_b, bounds_b, scale, offset, zero = row
    if len(counts_b) % 8 or len(counts_b) // 8 > MAX_BUCKETS or (bounds_b is not None and len(bounds_b) % 8):
        raise ValueError("bad differencer state: bucket array length")
    counts = np.frombuffer(counts_b, dtype="<i8").astype(np.int64)
    if counts.size and counts.min() < 0 or count < 0 or zero < 0:
        raise ValueError("bad differencer state: negative count")
    bounds = None if bounds_b is None else np.frombuffer(bounds_b, dtype="<f8").astype(np.float64)
    if (bounds is None) == (scale is None) or (bounds is not None and bounds.size + 1 != counts.size):
        raise ValueError("bad differencer state: neither explicit nor exponential")
    return Hist(start, time, count, total, lo, hi, counts, bounds=bounds, scale=scale, offset=offset, zero=zero)


