"""Everything shiftwatch keeps for one key, in bounded memory, and the live-key budget."""

from __future__ import annotations

import math
from array import array
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from sketches import LogBuckets, Moments

from .history import SnapshotHistory
from .records import Labels, ShiftEvent
from .window import Window

if TYPE_CHECKING:  # pragma: no cover
    from .pipeline import PipelineConfig

__all__ = ["KeyState", "KeyBudget"]


@dataclass(slots=True)
class KeyBudget:
    """How many live keys a worker may hold, shared by its partition pipelines."""

    limit: int
    used: int = 0

    def full(self) -> bool:
        return self.used >= self.limit


class KeyState:
    """Everything shiftwatch keeps for one key, in bounded memory."""

    __slots__ = (
        "key", "_alltime", "_cold", "_pending", "moments", "windows", "detector", "recent", "horizon", "_shifts",
        "labels", "pool", "pool_start", "pool_windows", "_ex_w", "_ex_v", "sources",
    )  # fmt: skip
    #: Closed windows whose example values are kept (for a shift event's ``examples``).
    EXAMPLE_WINDOWS = 32
    #: Example values a shift event carries on each side of its ``at``.
    EXAMPLES = 16
    #: Values a cold key takes before its sketch is thawed (0.5 KiB at most): a quiet key
    #: is never thawed between checkpoints, a busy one soon joins the hot keys.
    PENDING = 64
    _SMALL_DICT = {0: 0}.__sizeof__()  # a dict's size with room for 5 entries

    def __init__(self, key: str, config: PipelineConfig) -> None:
        self.key = key
        self._alltime: LogBuckets | None = LogBuckets(max_bytes=config.sketch_bytes)
        #: The all-time sketch in serialized form while the key is cold (see Pipeline.hot_keys).
        self._cold: bytes | None = None
        #: Values not yet in the cold sketch (None while the key is hot or has none).
        self._pending: array | None = None
        self.moments = Moments()
        self.windows: dict[int, Window] = {}
        #: Stage 1 of the two-stage topology runs no detector.
        self.detector = config.new_detector() if config.stage != "partials" else None
        self.recent = SnapshotHistory(key, config.recent_snapshots, config.snapshot_interval_s, config.names)
        #: Windows ending at or before this event time are closed for this key.
        self.horizon = -math.inf
        self._shifts: list[ShiftEvent] | None = None  # most keys never shift
        #: (field path or attribute, value) pairs the key was built from; () for a plain key.
        self.labels: Labels = ()
        #: Closed windows pooled for the detector until they hold enough samples (low traffic).
        self.pool: Window | None = None
        self.pool_start = 0.0
        self.pool_windows = 0
        #: Stage 2: window -> bitmask of the source partitions merged into it (None elsewhere).
        self.sources: dict[int, int] | None = None
        #: A few real values of recent closed windows: their window numbers and the values.
        self._ex_w: array | None = None
        self._ex_v: array | None = None

    def keep_examples(self, w: int, values: list[float]) -> None:
        if not values:
            return
        if self._ex_w is None:
            self._ex_w, self._ex_v = array("q"), array("d")
        self._ex_w.extend([w] * len(values))
        self._ex_v.extend(values)  # type: ignore[union-attr]
        extra = len(self._ex_w) - self.EXAMPLE_WINDOWS
        if extra > 0:
            del self._ex_w[:extra]
            del self._ex_v[:extra]  # type: ignore[union-attr]

    def examples_around(self, w_at: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """Up to ``EXAMPLES`` kept values from windows before ``w_at`` and from it on."""
        if self._ex_w is None:
            return (), ()
        k = self.EXAMPLES
        before = [float(v) for w, v in zip(self._ex_w, self._ex_v) if w < w_at][-k:]  # type: ignore[arg-type]
        after = [float(v) for w, v in zip(self._ex_w, self._ex_v) if w >= w_at][:k]  # type: ignore[arg-type]
        return tuple(before), tuple(after)

    def examples_bytes(self) -> bytes:
        if self._ex_w is None:
            return b""
        return self._ex_w.tobytes() + self._ex_v.tobytes()  # type: ignore[union-attr]

    def restore_examples(self, data: bytes) -> None:
        if not data:
            return
        if len(data) % 16 or len(data) // 16 > self.EXAMPLE_WINDOWS:
            raise ValueError("examples record does not match its size")
        n = len(data) // 16
        self._ex_w, self._ex_v = array("q"), array("d")
        self._ex_w.frombytes(data[: 8 * n])
        self._ex_v.frombytes(data[8 * n :])

    @property
    def shifts(self) -> list[ShiftEvent] | tuple[()]:
        """The key's newest shift events (at most 16), oldest first."""
        return self._shifts or ()

    def add_shift(self, ev: ShiftEvent) -> None:
        if self._shifts is None:
            self._shifts = []
        self._shifts.append(ev)
        if len(self._shifts) > 16:
            del self._shifts[0]

    def compact_windows(self) -> None:
        """Drop the slack a burst of open windows left in ``windows`` (dicts never shrink)."""
        w = self.windows
        if len(w) <= 5 and w.__sizeof__() > self._SMALL_DICT:
            self.windows = dict(w.items())

    @property
    def hot(self) -> bool:
        return self._alltime is not None

    def add(self, x: float) -> None:
        """One value into the all-time sketch (a cold key's waits beside it)."""
        if self._alltime is not None:
            self._alltime.update(x)
        else:
            self._waiting().append(x)
            self._thaw_if_busy()

    def add_many(self, v: np.ndarray) -> None:
        """Many values into the all-time sketch (a cold key's wait beside it)."""
        if self._alltime is not None:
            self._alltime.update_many(v)
        else:
            self._waiting().frombytes(np.ascontiguousarray(v, dtype=np.float64).tobytes())
            self._thaw_if_busy()

    def _waiting(self) -> array:
        if self._pending is None:
            self._pending = array("d")
        return self._pending

    def _thaw_if_busy(self) -> None:
        if len(self._pending) >= self.PENDING:  # type: ignore[arg-type]
            self._thaw()

    def _merged_cold(self) -> LogBuckets:
        sketch = LogBuckets.from_bytes(self._cold)  # type: ignore[arg-type]
        if self._pending:
            sketch.update_many(np.frombuffer(self._pending, dtype=np.float64))
        return sketch

    def _thaw(self) -> None:
        self._alltime = self._merged_cold()
        self._cold = self._pending = None

    @property
    def alltime(self) -> LogBuckets:
        """The all-time sketch, thawed (and kept thawed) if the key was cold."""
        if self._alltime is None:
            self._thaw()
        return self._alltime  # type: ignore[return-value]

    @alltime.setter
    def alltime(self, sketch: LogBuckets) -> None:
        self._alltime, self._cold, self._pending = sketch, None, None

    def alltime_bytes(self) -> bytes:
        """The serialized sketch; a cold key's pending values are folded in (it stays cold)."""
        if self._alltime is not None:
            return self._alltime.to_bytes()
        if self._pending:
            self._cold = self._merged_cold().to_bytes()
            self._pending = None
        return self._cold  # type: ignore[return-value]

    def alltime_view(self) -> LogBuckets:
        """The sketch for reading (metrics, page) without thawing a cold key for good."""
        return self._alltime if self._alltime is not None else self._merged_cold()

    def freeze(self) -> None:
        """Keep only the serialized sketch (~1 KiB instead of tens of KiB of buckets)."""
        if self._alltime is not None:
            self._cold = self._alltime.to_bytes()
            self._alltime = None
