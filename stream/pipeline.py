"""The core: decoded events → per-key state → event-time snapshots → shift events.

No Kafka here. The Faust agent, file replay, the demo and the tests all drive this
same object, so what is tested is what runs.

Windows are tumbling and aligned to multiples of the snapshot interval in event
time. Each key has its own watermark: the newest event time seen *for that key*
minus the allowed lateness. A key's window closes when its watermark passes the
window's end; an event whose window has already closed is *late*: it still counts
in the all-time quantiles and in the ``late`` counter, but not in a snapshot.

Why per key: a key lives in one Kafka partition, so its events arrive in that
partition's order, while partitions are consumed unevenly (a worker catching up
on one partition would make a global watermark declare another partition's
events late). Lateness is decided per event from the key's earlier events, so
the output does not depend on how messages were batched. Quiet keys are closed
by :meth:`Pipeline.advance_to` (the worker calls it when the input is idle) or by
:meth:`Pipeline.flush` at the end of a file.
"""

from __future__ import annotations

import logging
import math
from array import array
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Callable, Iterable

import numpy as np

from detectors import SnapshotShiftDetector
from sketches import LogBuckets, Moments

from .events import DeadLetter, Decoded, Decoder, Source
from .records import MetricMove, ShiftEvent, Snapshot, event_id
from .history import SnapshotHistory
from .window import Window

__all__ = ["PipelineConfig", "Pipeline", "Output", "Stats", "KeyState", "KeyBudget"]

log = logging.getLogger("shiftwatch.pipeline")

DetectorFactory = Callable[[], SnapshotShiftDetector]


def quantile_names(qs: tuple[float, ...]) -> tuple[str, ...]:
    """0.5 → p50, 0.99 → p99, 0.999 → p999 (the names snapshots and detectors use)."""
    return tuple("p" + repr(float(q))[2:].ljust(2, "0") for q in qs)


def make_detector(name: str, metrics: tuple[str, ...]) -> SnapshotShiftDetector:
    """A streaming detector from the registry (lower latency is better)."""
    try:
        from detectors import make_streaming  # type: ignore[attr-defined]
    except ImportError:
        if name != "edivisive":
            raise ValueError(f"unknown detector {name!r}") from None
        return SnapshotShiftDetector(metrics=metrics, lower_is_better=True)
    return make_streaming(name, metrics=metrics, lower_is_better=True)


@dataclass(slots=True, frozen=True)
class PipelineConfig:
    snapshot_interval_s: float = 30.0
    #: How far behind the newest event time a window stays open; None → 10 % of the interval.
    allowed_lateness_s: float | None = None
    #: Serialized-size budget of each quantile sketch.
    sketch_bytes: int = 1024
    #: Live keys kept per worker; beyond it the least recently updated key is evicted.
    max_keys: int = 100_000
    #: Recent snapshots kept per key for the live page.
    recent_snapshots: int = 60
    #: Keys whose all-time sketch stays expanded in memory; colder keys keep it serialized.
    hot_keys: int = 2000
    #: Quantiles of each snapshot, in order; their names (p50, p99, ...) key the detector's metrics.
    quantiles: tuple[float, ...] = (0.5, 0.9, 0.99)
    #: Estimator of each snapshot window's quantiles once it holds more than the exact values.
    estimator: str = "logbuckets"
    detector_factory: DetectorFactory | None = None
    detector_name: str = "edivisive"

    @property
    def names(self) -> tuple[str, ...]:
        return quantile_names(self.quantiles)

    def new_detector(self) -> SnapshotShiftDetector:
        if self.detector_factory is not None:
            return self.detector_factory()
        return make_detector(self.detector_name, self.names)

    @property
    def lateness(self) -> float:
        if self.allowed_lateness_s is None:
            return 0.1 * self.snapshot_interval_s
        return self.allowed_lateness_s

    def __post_init__(self) -> None:
        if not (self.snapshot_interval_s > 0 and math.isfinite(self.snapshot_interval_s)):
            raise ValueError("snapshot_interval_s must be a positive number")
        if self.allowed_lateness_s is not None and not (0 <= self.allowed_lateness_s < math.inf):
            raise ValueError("allowed_lateness_s must be >= 0")
        if self.max_keys < 1:
            raise ValueError("max_keys must be >= 1")


@dataclass(slots=True)
class Stats:
    """Counters; they reconcile: received == accepted + rejected."""

    messages: int = 0
    accepted: int = 0
    rejected: int = 0
    late: int = 0
    snapshots: int = 0
    shifts: int = 0
    retractions: int = 0
    evicted: int = 0
    replayed: int = 0
    checkpoint_errors: int = 0
    rejected_by_reason: dict[str, int] = field(default_factory=dict)
    shifts_by_key_direction: dict[tuple[str, str], int] = field(default_factory=dict)


@dataclass(slots=True)
class KeyBudget:
    """How many live keys a worker may hold, shared by its partition pipelines."""

    limit: int
    used: int = 0

    def full(self) -> bool:
        return self.used >= self.limit


@dataclass(slots=True)
class Output:
    snapshots: list[Snapshot] = field(default_factory=list)
    shifts: list[ShiftEvent] = field(default_factory=list)
    dead: list[DeadLetter] = field(default_factory=list)

    def extend(self, other: "Output") -> None:
        self.snapshots.extend(other.snapshots)
        self.shifts.extend(other.shifts)
        self.dead.extend(other.dead)


class KeyState:
    """Everything shiftwatch keeps for one key, in bounded memory."""

    __slots__ = ("key", "_alltime", "_cold", "_pending", "moments", "windows", "detector", "recent", "horizon", "_shifts")
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
        self.detector = config.new_detector()
        self.recent = SnapshotHistory(key, config.recent_snapshots, config.snapshot_interval_s)
        #: Windows ending at or before this event time are closed for this key.
        self.horizon = -math.inf
        self._shifts: list[ShiftEvent] | None = None  # most keys never shift

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


class Pipeline:
    """Configure once; feed messages or decoded events; collect outputs."""

    def __init__(
        self,
        config: PipelineConfig | None = None,
        decoder: Decoder | None = None,
        stats: Stats | None = None,
        budget: "KeyBudget | None" = None,
    ) -> None:
        self.config = config or PipelineConfig()
        self.decoder = decoder or Decoder()
        #: Shared with sibling pipelines of one worker, so counters survive rebalances.
        self.stats = stats or Stats()
        #: Live-key budget, shared likewise; None: this pipeline's own ``max_keys``.
        self.budget = budget or KeyBudget(self.config.max_keys)
        #: Keys whose all-time sketch is expanded, least recently used first.
        self._hot: OrderedDict[str, None] = OrderedDict()
        #: Keys changed since the last checkpoint, and keys evicted since then.
        self.dirty: set[str] = set()
        self.evicted: list[str] = []
        self.states: OrderedDict[str, KeyState] = OrderedDict()
        #: Newest event time seen on any key (for lag metrics and the idle sweep).
        self.max_ts = -math.inf
        #: Recent shift events of all keys (newest last), for the live page.
        self.recent_shifts: list[ShiftEvent] = []

    # -- read view (metrics, live page) ----------------------------------
    def key_count(self) -> int:
        return len(self.states)

    def keys_recent_first(self, limit: int) -> list[KeyState]:
        """Up to ``limit`` keys, most recently updated first."""
        out = []
        for key in reversed(self.states):
            if len(out) >= limit:
                break
            out.append(self.states[key])
        return out

    # -- input -----------------------------------------------------------
    def feed(self, raw: bytes, source: Source | None = None, default_ts: float | None = None) -> Output:
        """Decode one message and process it."""
        self.stats.messages += 1
        return self.process(self.decoder.decode(raw, source, default_ts))

    def feed_many(self, raws: Iterable[bytes]) -> Output:
        out = Output()
        decoded = Decoded()
        for raw in raws:
            self.stats.messages += 1
            decoded.extend(self.decoder.decode(raw))
        out.extend(self.process(decoded))
        return out

    def process(self, decoded: Decoded) -> Output:
        """Apply decoded events in order.

        Small inputs go event by event; larger ones are grouped by key and applied
        with vectorised sketch updates. Both give the same state and the same
        snapshots and shifts per key (lateness is decided per event from the key's
        earlier events); across keys, a large input's outputs are ordered by key
        (first appearance) rather than interleaved in time.
        """
        out = Output()
        for d in decoded.dead:
            self._reject(d)
        out.dead.extend(decoded.dead)
        if len(decoded.keys) >= self.VECTOR_MIN:
            self._process_grouped(decoded, out)
        else:
            self._process_each(decoded, out)
        if len(self._hot) > self.config.hot_keys:
            self._cool()
        return out

    #: Batches at least this large take the grouped, vectorised path.
    VECTOR_MIN = 64
    #: Within it, a key with fewer events than this is updated event by event.
    SMALL_GROUP = 16

    def _state(self, key: str) -> KeyState:
        st = self.states.get(key)
        if st is None:
            st = self._new_key(key)
        else:
            self.states.move_to_end(key)
        return st

    def _warm(self, key: str) -> None:
        """``key`` (hot) was just updated: it is the most recent of the hot keys."""
        hot = self._hot
        if key in hot:
            hot.move_to_end(key)
        else:
            hot[key] = None

    def _cool(self) -> None:
        """Serialize the all-time sketches of keys beyond the ``hot_keys`` most recent."""
        hot = self._hot
        while len(hot) > self.config.hot_keys:
            key, _ = hot.popitem(last=False)
            st = self.states.get(key)
            if st is not None:
                st.freeze()

    def _process_each(self, decoded: Decoded, out: Output) -> None:
        dirty = self.dirty
        for key, value, ts in zip(decoded.keys, decoded.values, decoded.ts):
            st = self._state(key)
            dirty.add(key)
            self._apply_one(st, value, ts, out)

    def _apply_one(self, st: KeyState, value: float, ts: float, out: Output) -> None:
        """One event of a key: the per-event path (no numpy call per event)."""
        st.add(value)
        if st.hot:
            self._warm(st.key)
        st.moments.update(value)
        self.stats.accepted += 1
        interval = self.config.snapshot_interval_s
        w = math.floor(ts / interval)
        if (w + 1) * interval <= st.horizon:
            self.stats.late += 1
        else:
            self._window(st, w).update(value)
        self._advance_key(st, ts, out)

    def _window(self, st: KeyState, w: int) -> Window:
        win = st.windows.get(w)
        if win is None:
            win = st.windows[w] = Window(self.config.sketch_bytes)
        return win

    def _advance_key(self, st: KeyState, ts: float, out: Output) -> None:
        """Raise the key's watermark to ``ts`` minus the lateness; close what it passes."""
        if ts - self.config.lateness > st.horizon:
            st.horizon = ts - self.config.lateness
            if st.windows:
                self._close_key(st, st.horizon, out)
        if ts > self.max_ts:
            self.max_ts = ts

    def _process_grouped(self, decoded: Decoded, out: Output) -> None:
        interval = self.config.snapshot_interval_s
        lateness = self.config.lateness
        values, stamps = decoded.arrays()
        # Group by key through the runs of consecutive events (one per message, mostly).
        groups: dict[str, list[tuple[int, int]]] = {}
        pos = 0
        for key, n in decoded.key_runs():
            g = groups.get(key)
            if g is None:
                groups[key] = [(pos, pos + n)]
            else:
                g.append((pos, pos + n))
            pos += n
        small = self.SMALL_GROUP
        vlist, tlist = decoded.values, decoded.ts
        for key, spans in groups.items():
            st = self._state(key)
            self.dirty.add(key)
            if len(spans) == 1:
                a, b = spans[0]
                if b - a < small:  # numpy's per-call cost outweighs a few scalar updates
                    for i in range(a, b):
                        self._apply_one(st, vlist[i], tlist[i], out)
                    continue
                v, t = values[a:b], stamps[a:b]
            else:
                if sum(b - a for a, b in spans) < small:
                    for a, b in spans:
                        for i in range(a, b):
                            self._apply_one(st, vlist[i], tlist[i], out)
                    continue
                idx = np.concatenate([np.arange(a, b) for a, b in spans])
                v, t = values[idx], stamps[idx]
            st.add_many(v)
            if st.hot:
                self._warm(key)
            st.moments.update_many(v)
            self.stats.accepted += len(v)
            # The watermark in force before each event: the key's horizon, raised by
            # the events before it in this batch.
            before = np.empty_like(t)
            before[0] = st.horizon
            if len(t) > 1:
                np.maximum(np.maximum.accumulate(t[:-1]) - lateness, st.horizon, out=before[1:])
            w = np.floor(t / interval)
            late = (w + 1) * interval <= before
            n_late = int(late.sum())
            self.stats.late += n_late
            keep = ~late if n_late else slice(None)
            wk, vk = w[keep], v[keep]
            if len(wk):
                # Events of one window between two closings are applied together.
                for wv in np.unique(wk):
                    sel = wk == wv
                    win = self._window(st, int(wv))
                    win.update_many(vk[sel])
            self._advance_key(st, float(t.max()), out)

    def advance_to(self, t: float) -> Output:
        """Move every key's watermark to event time ``t`` (the input is idle)."""
        return self._close_all(t - self.config.lateness, move_horizon=True)

    def flush(self) -> Output:
        """Close every open window (end of a finite input)."""
        return self._close_all(math.inf, move_horizon=False)

    # -- internals -------------------------------------------------------
    def _reject(self, d: DeadLetter) -> None:
        self.stats.rejected += 1
        by = self.stats.rejected_by_reason
        by[d.reason] = by.get(d.reason, 0) + 1

    def _new_key(self, key: str) -> KeyState:
        if self.budget.full() and self.states:
            self.evict_idlest()
        st = self.states[key] = KeyState(key, self.config)
        self.budget.used += 1
        return st

    def evict_idlest(self) -> str:
        old_key, _ = self.states.popitem(last=False)
        self._hot.pop(old_key, None)
        self.budget.used -= 1
        self.stats.evicted += 1
        self.dirty.discard(old_key)
        self.evicted.append(old_key)
        log.warning("key limit %d reached: evicted the least recently updated key %r", self.budget.limit, old_key)
        return old_key

    def adopt(self, st: KeyState) -> None:
        """Install a restored key state (from a checkpoint)."""
        if st.key not in self.states:
            if self.budget.full() and self.states:
                self.evict_idlest()
            self.budget.used += 1
        self.states[st.key] = st

    def release(self) -> None:
        """Give this pipeline's keys back to the budget (its partition moved away)."""
        self.budget.used -= len(self.states)
        self.states.clear()
        self._hot.clear()

    def _close_key(self, st: KeyState, horizon: float, out: Output) -> None:
        interval = self.config.snapshot_interval_s
        for w in sorted(w for w in st.windows if (w + 1) * interval <= horizon):
            snap = self._snapshot(st.key, w, st.windows.pop(w))
            out.snapshots.append(snap)
            out.shifts.extend(self._detect(st, snap))

    def _close_all(self, horizon: float, move_horizon: bool) -> Output:
        """Close windows ending by ``horizon`` on every key, oldest window first."""
        out = Output()
        interval = self.config.snapshot_interval_s
        due = sorted((w, key) for key, st in self.states.items() for w in st.windows if (w + 1) * interval <= horizon)
        for w, key in due:
            st = self.states[key]
            snap = self._snapshot(key, w, st.windows.pop(w))
            out.snapshots.append(snap)
            out.shifts.extend(self._detect(st, snap))
        if move_horizon:
            for st in self.states.values():
                if horizon > st.horizon:
                    st.horizon = horizon
        return out

    def _snapshot(self, key: str, w: int, win: Window) -> Snapshot:
        interval = self.config.snapshot_interval_s
        p50, p90, p99 = (float(x) for x in win.quantiles([0.5, 0.9, 0.99]))
        m = win.moments
        snap = Snapshot(
            key=key,
            start=w * interval,
            end=(w + 1) * interval,
            count=int(m.count),
            mean=float(m.mean),
            p50=p50,
            p90=p90,
            p99=p99,
            min=float(m.min),
            max=float(m.max),
        )
        self.stats.snapshots += 1
        return snap

    def _detect(self, st: KeyState, snap: Snapshot) -> list[ShiftEvent]:
        st.compact_windows()
        st.recent.append(snap)
        decisions = st.detector.update(snap.start, {"p50": snap.p50, "p90": snap.p90, "p99": snap.p99}, snap.count)
        events: list[ShiftEvent] = []
        for d in decisions:
            ev = ShiftEvent(
                kind=d.kind,
                id=event_id(st.key, float(d.at)),
                key=st.key,
                at=float(d.at),
                detected_at=snap.end,
                direction=d.direction,
                pvalue=float(d.pvalue),
                metrics=tuple(
                    MetricMove(c.metric, float(c.before), float(c.after), float(c.relative_change), float(c.pvalue))
                    for c in d.changes
                ),
                snapshots_before=int(d.snapshots_before),
                snapshots_after=int(d.snapshots_after),
                samples_before=int(d.samples_before),
                samples_after=int(d.samples_after),
                snapshot_interval_s=self.config.snapshot_interval_s,
                detector=self.config.detector_name,
            )
            events.append(ev)
            if d.kind == "shift":
                self.stats.shifts += 1
                k = (st.key, d.direction)
                self.stats.shifts_by_key_direction[k] = self.stats.shifts_by_key_direction.get(k, 0) + 1
            else:
                self.stats.retractions += 1
            st.add_shift(ev)
            self.recent_shifts.append(ev)
            if len(self.recent_shifts) > 100:
                del self.recent_shifts[0]
        return events
