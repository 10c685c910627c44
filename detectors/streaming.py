"""Streaming E-Divisive over a bounded history.

Why: Otava re-runs on the whole history and its incremental mode can disagree with a
full run. Here the history is bounded (``history`` .. ``history + step`` points) and
its start only moves in whole E-Divisive steps, so the sliding windows of one update
are the windows of the previous one plus the newest: per-window results of full
windows are cached by global index and only the tail is recomputed. The answer after
every update is exactly ``EDivisive.detect`` on the current history (tested).

Reporting: a change point is confirmed once ``min_after`` points follow it; it is
reported once with a stable id (its global index). While it is still inside the
history it is re-validated at every update; if a full run no longer finds it, a
retraction with the same id is emitted, and that id is never reported again.
"""

from __future__ import annotations

import json
import math
from collections import deque
from dataclasses import replace
from typing import Sequence

import numpy as np

from ._envelope import open_envelope, seal
from .edivisive import SplitCache, first_pass_pvalue, merge_change_points, split_weak
from .records import ChangePoint, StreamEvent

__all__ = ["StreamingEDivisive"]


class StreamingEDivisive:
    """Configure once, then ``update(value, t)`` per point; returns confirmations and
    retractions. Memory and per-update cost are bounded by ``history``."""

    def __init__(
        self,
        history: int = 200,
        window: int = 50,
        max_pvalue: float = 0.001,
        min_magnitude: float = 0.0,
        min_after: int = 5,
        min_before: int = 5,
        otava_quirk: bool = True,
    ) -> None:
        if window < 2 or history < window:
            raise ValueError("need 2 <= window <= history")
        if min_after < 1 or min_before < 0:
            raise ValueError("bad min_after/min_before")
        self.history = int(history)
        self.window = int(window)
        self.step = int(window / 2)
        self.max_pvalue = float(max_pvalue)
        self.min_magnitude = float(min_magnitude)
        self.min_after = int(min_after)
        self.min_before = int(min_before)
        self.otava_quirk = bool(otava_quirk)
        self._first_p = first_pass_pvalue(self.max_pvalue)
        self._n = 0  # points seen
        self._start = 0  # global index of the first point kept
        self._buf = np.empty(4 * (self.history + self.step))
        self._lo = 0
        self._hi = 0
        self._times: deque[float] = deque()
        self._cache = SplitCache.empty()
        self._memo: dict[tuple[int, int, int], ChangePoint] = {}
        self._current: list[ChangePoint] = []  # indices relative to _offset
        self._offset = 0
        self._confirmed: dict[int, StreamEvent] = {}
        self._done: deque[int] = deque(maxlen=1024)  # ids ever reported (never again)
        self._done_set: set[int] = set()

    # ------------------------------------------------------------------ queries

    @property
    def start(self) -> int:
        """Global index of the oldest point in the history."""
        return self._start

    def values(self) -> np.ndarray:
        """The current history (the series ``EDivisive`` would see)."""
        return self._buf[self._lo : self._hi].copy()

    def change_points(self) -> list[ChangePoint]:
        """Change points of the current history, with global indices."""
        off = self._offset
        return [c if off == 0 else replace(c, index=c.index + off) for c in self._current]

    # ------------------------------------------------------------------ update

    def update(self, value: float, t: float | None = None) -> list[StreamEvent]:
        v = float(value)
        if not math.isfinite(v):
            raise ValueError("value must be finite")
        tt = float(self._n if t is None else t)
        # Values live in a flat buffer [lo, hi) that is compacted now and then, so the
        # history is a view, not a copy per update.
        if self._hi == len(self._buf):
            keep = self._buf[self._lo : self._hi].copy()
            self._buf[: len(keep)] = keep
            self._lo, self._hi = 0, len(keep)
        self._buf[self._hi] = v
        self._hi += 1
        self._times.append(tt)
        self._n += 1
        # Keep between history and history + step - 1 points; the start moves by whole steps.
        if self._n > self.history:
            new_start = ((self._n - self.history) // self.step) * self.step
            if new_start > self._start:
                for _ in range(new_start - self._start):
                    self._times.popleft()
                self._lo += new_start - self._start
                self._start = new_start
                self._cache.evict_before(new_start)
                for k in [k for k in self._memo if k[0] < new_start]:
                    del self._memo[k]
        self._recompute()
        return self._decide()

    def _recompute(self) -> None:
        x = self._buf[self._lo : self._hi]
        off = self._start
        weak = split_weak(x, self.window, self._first_p, off, self._cache)
        self._current = merge_change_points(
            x, list(weak), self.max_pvalue, self.min_magnitude, self.otava_quirk, weak, off, self._memo
        )
        self._offset = off

    def _decide(self) -> list[StreamEvent]:
        out: list[StreamEvent] = []
        off = self._offset
        found = {c.index + off: c for c in self._current}
        stable_from = self._start + self.min_before
        # Retractions first: confirmed points still under review that a full run lost.
        for idx in sorted(self._confirmed):
            if idx < stable_from:
                del self._confirmed[idx]  # aged out: final
            elif idx not in found:
                ev = self._confirmed.pop(idx)
                out.append(StreamEvent("retraction", ev.id, idx, ev.t, ev.change))
        for idx, cp in found.items():
            if idx in self._confirmed or idx in self._done_set:
                continue
            if idx < stable_from or self._n - idx < self.min_after:
                continue
            t = self._times[idx - self._start]
            ev = StreamEvent("shift", f"cp-{idx}", idx, t, cp if off == 0 else replace(cp, index=idx))
            self._confirmed[idx] = ev
            if len(self._done) == self._done.maxlen:
                self._done_set.discard(self._done[0])
            self._done.append(idx)
            self._done_set.add(idx)
            out.append(ev)
        return out

    def extend(self, values: Sequence[float]) -> list[StreamEvent]:
        """``update`` for each value; concatenated events."""
        out: list[StreamEvent] = []
        for v in values:
            out += self.update(v)
        return out

    # ------------------------------------------------------------------ state

    def to_bytes(self) -> bytes:
        """Version byte, then JSON of config, history and reporting state. Caches are
        derived and rebuilt, so a restored detector continues identically."""
        state = {
            "config": [self.history, self.window, self.max_pvalue, self.min_magnitude, self.min_after, self.min_before, self.otava_quirk],
            "n": self._n,
            "start": self._start,
            "values": self._buf[self._lo : self._hi].tolist(),
            "times": list(self._times),
            "confirmed": [[i, ev.t, *_cp_fields(ev.change)] for i, ev in sorted(self._confirmed.items())],
            "done": list(self._done),
        }
        return seal(_VERSION, state, allow_nan=True)

    @classmethod
    def from_bytes(cls, b: bytes) -> "StreamingEDivisive":
        """Inverse of ``to_bytes``; ``ValueError`` on anything malformed."""
        body = open_envelope(b, _VERSION, _MAX_BYTES)
        try:
            st = json.loads(body.decode("utf-8"))
            h, w, p, mm, ma, mb, q = st["config"]
            if not all(isinstance(v, int) and not isinstance(v, bool) for v in (h, w, ma, mb)) or not isinstance(q, bool):
                raise ValueError("bad config types")
            if h > 1_000_000:
                raise ValueError("history too large")
            d = cls(history=h, window=w, max_pvalue=float(p), min_magnitude=float(mm), min_after=ma, min_before=mb, otava_quirk=q)
            n, start = st["n"], st["start"]
            values, times = st["values"], st["times"]
            if not (isinstance(n, int) and isinstance(start, int) and isinstance(values, list) and isinstance(times, list)):
                raise ValueError("bad state types")
            if not (0 <= start <= n and len(values) == len(times) == n - start <= d.history + d.step):
                raise ValueError("inconsistent history")
            if start % d.step or (n > d.history and start != ((n - d.history) // d.step) * d.step) or (n <= d.history and start):
                raise ValueError("history start off the step grid")
            vals = [float(v) for v in values]
            ts = [float(t) for t in times]
            if not all(math.isfinite(v) for v in vals):
                raise ValueError("non-finite value")
            d._n, d._start = n, start
            d._buf[: len(vals)] = vals
            d._lo, d._hi = 0, len(vals)
            d._times.extend(ts)
            done = st["done"]
            if not isinstance(done, list) or len(done) > (d._done.maxlen or 0):
                raise ValueError("bad done list")
            for i in done:
                if not isinstance(i, int) or not 0 <= i < n:
                    raise ValueError("bad id")
                d._done.append(i)
                d._done_set.add(i)
            conf = st["confirmed"]
            if not isinstance(conf, list) or len(conf) > d.history + d.step:
                raise ValueError("bad confirmed list")
            for row in conf:
                if not isinstance(row, list) or len(row) != 10 or not isinstance(row[0], int) or not start <= row[0] < n:
                    raise ValueError("bad confirmed entry")
                i = row[0]
                cp = ChangePoint(i, *(float(v) for v in row[2:10]))
                d._confirmed[i] = StreamEvent("shift", f"cp-{i}", i, float(row[1]), cp)
            if d._hi:
                d._recompute()
            return d
        except ValueError:
            raise
        except (KeyError, TypeError, AttributeError, IndexError, UnicodeDecodeError, OverflowError, RecursionError) as e:
            raise ValueError(f"malformed detector state: {e}") from None


_VERSION = 1
_MAX_BYTES = 16 << 20


def _cp_fields(c: ChangePoint) -> list[float]:
    return [c.pvalue, c.mean_before, c.mean_after, c.std_before, c.std_after, c.relative_change, c.magnitude, c.qhat]
