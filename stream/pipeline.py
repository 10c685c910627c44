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
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable, Iterable

import numpy as np

from detectors import SnapshotShiftDetector
from detectors.base import make_streaming
from sketches import Moments

from .events import DeadLetter, Decoded, Decoder, HistPoint, Source
from .keystate import KeyBudget, KeyState
from .output import Output, Stats
from .partials import partial_of
from .records import MetricMove, ShiftEvent, Snapshot, event_id
from .window import Window

__all__ = ["PipelineConfig", "Pipeline", "Output", "Stats", "KeyState", "KeyBudget", "quantile_names"]

log = logging.getLogger("shiftwatch.pipeline")

DetectorFactory = Callable[[], SnapshotShiftDetector]


def quantile_names(qs: tuple[float, ...]) -> tuple[str, ...]:
    """0.5 → p50, 0.99 → p99, 0.999 → p999 (the names snapshots and detectors use)."""
    return tuple("p" + repr(float(q))[2:].ljust(2, "0") for q in qs)


def make_detector(name: str, metrics: tuple[str, ...]) -> SnapshotShiftDetector:
    """A streaming detector from the registry (lower latency is better)."""
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
    #: A key's closed windows are pooled for the detector until they hold this many
    #: samples (low-traffic keys); busy keys' windows pass one by one. 0: no pooling.
    pool_min_samples: int = 30
    #: A pool older than this (event seconds) is given up: it would mix regimes.
    pool_max_span_s: float = 3600.0
    #: Real values kept per closed window for the examples of a shift event.
    examples_per_window: int = 1
    #: "full": one stage; "partials": stage 1 of the two-stage topology (windows closed by
    #: the partition's watermark become partials, no detector); "merge": stage 2 (merged
    #: windows arrive through :meth:`Pipeline.apply_window`).
    stage: str = "full"

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


class Pipeline:
    """Configure once; feed messages or decoded events; collect outputs.

    One ingest path: decoded batch (:mod:`stream.events`) → per-key state
    (:mod:`stream.keystate`) → event-time window (:mod:`stream.window`) → snapshot →
    pooled detector point → detector (:mod:`detectors`) → outputs (:mod:`stream.output`).
    """

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
        self._interval = self.config.snapshot_interval_s
        self._lateness = self.config.lateness
        self._partials = self.config.stage == "partials"
        #: Stage 1: the partition's source index and the window number its watermark closed up to.
        self.source = 0
        self._closed_upto = -(1 << 62)
        self.sent_mark = -math.inf
        #: Stage 1: how far the partition may run past a key's window before it is closed anyway.
        self._force_lag = self._lateness + 2 * self._interval
        #: Labels of the keys in the batch being processed (set by :meth:`process`).
        self._pending_labels: dict[str, dict[str, str]] = {}

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
        decoded = Decoded()
        for raw in raws:
            self.stats.messages += 1
            decoded.extend(self.decoder.decode(raw))
        return self.process(decoded)

    def process(self, decoded: Decoded) -> Output:
        """Apply decoded events in order.

        Small inputs go event by event; larger ones are grouped by key and applied
        with vectorised sketch updates. Both give the same state and the same
        snapshots and shifts per key (lateness is decided per event from the key's
        earlier events, by one rule: :meth:`_late`); across keys, a large input's
        outputs are ordered by key (first appearance) rather than interleaved in time.
        """
        out = Output()
        for d in decoded.dead:
            self._reject(d)
        out.dead.extend(decoded.dead)
        self._pending_labels = decoded.labels
        wm = self._partition_watermarks(decoded) if self._partials else None
        if len(decoded.keys) >= self.VECTOR_MIN:
            self._process_grouped(decoded, out, wm)
        else:
            self._process_each(decoded, out, wm)
        for h in decoded.hists:
            self._apply_hist(h, out)
        self._pending_labels = {}
        if self._partials:
            self._close_by_watermark(self.max_ts - self._force_lag, out)
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
            labels = self._pending_labels.get(key)
            if labels:
                st.labels = tuple(labels.items())
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

    # -- lateness: one rule for every path --------------------------------
    def _late(self, w: int, watermark: float) -> bool:
        """An event of window ``w`` is late once the key's watermark passed the window's end."""
        return (w + 1) * self._interval <= watermark

    def _late_many(self, st: KeyState, t: np.ndarray, w: np.ndarray, floor: np.ndarray | None = None) -> np.ndarray:
        """:meth:`_late` for consecutive events of one key: the watermark in force before
        each is the key's horizon, raised by the events before it (and, in stage 1, by the
        partition's forced watermark ``floor``)."""
        before = np.empty_like(t)
        before[0] = st.horizon
        if len(t) > 1:
            np.maximum(np.maximum.accumulate(t[:-1]) - self._lateness, st.horizon, out=before[1:])
        if floor is not None:
            np.maximum(before, floor, out=before)
        return (w + 1) * self._interval <= before

    def _advance_key(self, st: KeyState, ts: float, out: Output) -> None:
        """Raise the key's watermark to ``ts`` minus the lateness; close what it passes
        (stage 1: the partition's watermark closes windows, after the batch)."""
        if ts - self._lateness > st.horizon:
            st.horizon = ts - self._lateness
            if st.windows:
                self._close_key(st, st.horizon, out)
        if ts > self.max_ts:
            self.max_ts = ts

    # -- applying events --------------------------------------------------
    def _partition_watermarks(self, decoded: Decoded) -> np.ndarray:
        """Stage 1: the partition's forced watermark in force before each event (its newest
        event time so far minus ``force_lag``): a key's window closes by the key's own
        watermark, or at the latest once the partition is ``force_lag`` past its end. Per
        event, so what is late does not depend on batching."""
        _, t = decoded.arrays()
        if not len(t):
            return t
        before = np.empty_like(t)
        before[0] = self.max_ts
        np.maximum.accumulate(t[:-1], out=before[1:])
        np.maximum(before, self.max_ts, out=before)
        # never below a source watermark already sent: stage 2 may have closed those windows
        return np.maximum(before - self._force_lag, self.sent_mark)

    def _process_each(self, decoded: Decoded, out: Output, wm: np.ndarray | None = None) -> None:
        dirty = self.dirty
        for i, (key, value, ts) in enumerate(zip(decoded.keys, decoded.values, decoded.ts)):
            st = self._state(key)
            dirty.add(key)
            self._apply_one(st, value, ts, out, None if wm is None else float(wm[i]))

    def _apply_one(self, st: KeyState, value: float, ts: float, out: Output, wm: float | None = None) -> None:
        """One event of a key: the per-event path (no numpy call per event)."""
        if not self._partials:  # stage 1 keeps windows only; the all-time state is stage 2's
            st.add(value)
            if st.hot:
                self._warm(st.key)
            st.moments.update(value)
        self.stats.accepted += 1
        w = math.floor(ts / self._interval)
        if self._late(w, st.horizon if wm is None else max(st.horizon, wm)):
            self.stats.late += 1
            if self._partials:
                self._late_window(st).update(value)
        else:
            self._window(st, w).update(value)
        self._advance_key(st, ts, out)

    def _late_window(self, st: KeyState) -> Window:
        """Stage 1: late events of a key, for stage 2's all-time state (they ride along
        with the key's next partial; ``pool`` is free, stage 1 runs no detector)."""
        if st.pool is None:
            st.pool = Window(self.config.sketch_bytes)
        return st.pool

    def _window(self, st: KeyState, w: int) -> Window:
        win = st.windows.get(w)
        if win is None:
            c = self.config
            win = st.windows[w] = Window(c.sketch_bytes, c.estimator, c.quantiles)
        return win

    def _groups(self, decoded: Decoded) -> dict[str, list[tuple[int, int]]]:
        """Each key's (start, end) spans in the batch, through the runs of consecutive events."""
        groups: dict[str, list[tuple[int, int]]] = {}
        pos = 0
        for key, n in decoded.key_runs():
            g = groups.get(key)
            if g is None:
                groups[key] = [(pos, pos + n)]
            else:
                g.append((pos, pos + n))
            pos += n
        return groups

    def _process_grouped(self, decoded: Decoded, out: Output, wm: np.ndarray | None = None) -> None:
        values, stamps = decoded.arrays()
        small = self.SMALL_GROUP
        vlist, tlist = decoded.values, decoded.ts
        for key, spans in self._groups(decoded).items():
            st = self._state(key)
            self.dirty.add(key)
            if sum(b - a for a, b in spans) < small:  # numpy's per-call cost outweighs a few scalar updates
                for a, b in spans:
                    for i in range(a, b):
                        self._apply_one(st, vlist[i], tlist[i], out, None if wm is None else float(wm[i]))
                continue
            if len(spans) == 1:
                sel: slice | np.ndarray = slice(spans[0][0], spans[0][1])
            else:
                sel = np.concatenate([np.arange(a, b) for a, b in spans])
            self._apply_many(st, values[sel], stamps[sel], out, None if wm is None else wm[sel])

    def _apply_many(self, st: KeyState, v: np.ndarray, t: np.ndarray, out: Output, wm: np.ndarray | None = None) -> None:
        """Consecutive events of one key, vectorised."""
        if not self._partials:
            st.add_many(v)
            if st.hot:
                self._warm(st.key)
            st.moments.update_many(v)
        self.stats.accepted += len(v)
        w = np.floor(t / self._interval)
        late = self._late_many(st, t, w, wm)
        n_late = int(late.sum())
        self.stats.late += n_late
        if n_late and self._partials:
            self._late_window(st).update_many(v[late])
        keep = ~late if n_late else slice(None)
        wk, vk = w[keep], v[keep]
        if len(wk):
            # Events of one window between two closings are applied together.
            for wv in np.unique(wk):
                self._window(st, int(wv)).update_many(vk[wk == wv])
        self._advance_key(st, float(t.max()), out)

    def _apply_hist(self, h: HistPoint, out: Output) -> None:
        """A pre-aggregated distribution (OTLP histogram delta) as ``h.count`` events at ``h.ts``."""
        st = self._state(h.key)
        self.dirty.add(h.key)
        st.alltime.merge(h.sketch)
        m = Moments.from_summary(h.count, h.total, h.min, h.max)
        st.moments.merge(m)
        self.stats.accepted += h.count
        w = math.floor(h.ts / self._interval)
        if self._late(w, max(st.horizon, self.max_ts - self._force_lag, self.sent_mark) if self._partials else st.horizon):
            self.stats.late += h.count
            if self._partials:
                self._late_window(st).merge_sketch(h.sketch, m)
        else:
            self._window(st, w).merge_sketch(h.sketch, m)
        self._advance_key(st, h.ts, out)

    def advance_to(self, t: float) -> Output:
        """Move every key's watermark to event time ``t`` (the input is idle)."""
        if self._partials:
            out = Output()
            self._close_by_watermark(t - self._lateness, out)  # idle: no more disorder to wait for
            return out
        return self._close_all(t - self._lateness, move_horizon=True)

    def _close_by_watermark(self, wm: float, out: Output) -> None:
        """Stage 1: the forced watermark closes every key's windows ending by it; then the
        source watermark (no partial will end at or before it) goes out once per window
        boundary it crosses: the forced watermark, or the oldest window still open."""
        if not wm > -math.inf:
            return
        upto = math.floor(wm / self._interval)
        if upto <= self._closed_upto:
            return
        self._closed_upto = upto
        out.extend(self._close_all(upto * self._interval, move_horizon=True))
        oldest = min((w for st in self.states.values() for w in st.windows), default=upto)
        mark = min(upto, oldest) * self._interval
        if mark > self.sent_mark:
            self.sent_mark = mark
            out.watermarks[self.source] = mark

    def announce_empty(self) -> Output:
        """Stage 1, a partition caught up to its end that has never held an event: a
        watermark of +inf ("nothing pending here"), so stage 2 closes windows without
        waiting out its merge grace for this source. Its first event sends a finite
        watermark again (:meth:`_close_by_watermark`), and stage 2 waits for it anew."""
        out = Output()
        if self._partials and self.max_ts == -math.inf:
            out.watermarks[self.source] = math.inf
        return out

    def apply_window(self, key: str, w: int, win: Window, labels: tuple[tuple[str, str], ...] = ()) -> Output:
        """Stage 2: one key's merged window ``w`` from every source partition, closed."""
        out = Output()
        st = self._state(key)
        if labels and not st.labels:
            st.labels = labels
        self.dirty.add(key)
        if win.values is not None:
            st.add_many(np.frombuffer(win.values, dtype=np.float64))
        elif win.sketch is not None:
            st.alltime.merge(win.sketch)
        if st.hot:
            self._warm(key)
        st.moments.merge(win.moments)
        st.horizon = max(st.horizon, (w + 1) * self._interval)
        self.max_ts = max(self.max_ts, (w + 1) * self._interval)
        st.windows[w] = win
        self._close_window(st, w, out)
        return out

    def flush(self) -> Output:
        """Close every open window (end of a finite input)."""
        return self._close_all(math.inf, move_horizon=False)

    # -- keys --------------------------------------------------------------
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

    # -- closing windows ---------------------------------------------------
    def _close_key(self, st: KeyState, horizon: float, out: Output) -> None:
        for w in sorted(w for w in st.windows if (w + 1) * self._interval <= horizon):
            self._close_window(st, w, out)

    def _close_all(self, horizon: float, move_horizon: bool) -> Output:
        """Close windows ending by ``horizon`` on every key, oldest window first."""
        out = Output()
        due = sorted((w, key) for key, st in self.states.items() for w in st.windows if (w + 1) * self._interval <= horizon)
        for w, key in due:
            self.dirty.add(key)
            self._close_window(self.states[key], w, out)
        if move_horizon:
            for st in self.states.values():
                if horizon > st.horizon:
                    st.horizon = horizon
        return out

    def _close_window(self, st: KeyState, w: int, out: Output) -> None:
        win = st.windows.pop(w)
        if self._partials:
            out.partials.append(partial_of(st.key, w, self.source, win, st.labels, self.config.sketch_bytes, st.pool))
            st.pool = None
            return
        snap = self._snapshot(st, w * self._interval, (w + 1) * self._interval, win)
        self.stats.snapshots += 1
        st.compact_windows()
        st.recent.append(snap)
        out.snapshots.append(snap)
        st.keep_examples(w, win.examples(self.config.examples_per_window, w))
        point = self._pool(st, w, win, snap)
        if point is not None:
            out.shifts.extend(self._detect(st, *point))

    def _snapshot(self, st: KeyState, start: float, end: float, win: Window, windows: int = 1) -> Snapshot:
        c = self.config
        m = win.moments
        q = tuple(float(x) for x in win.quantiles(c.quantiles))
        return Snapshot(st.key, start, end, int(m.count), float(m.mean), q, float(m.min), float(m.max), c.names, st.labels, windows)

    def _pool(self, st: KeyState, w: int, win: Window, snap: Snapshot) -> tuple[Snapshot, int] | None:
        """The detector's next point: the window's snapshot itself, or once a low-traffic
        key's consecutive windows hold ``pool_min_samples`` values, their union."""
        need = self.config.pool_min_samples
        if st.pool is None and win.moments.count >= need:
            return snap, 1
        if st.pool is not None and (w * self._interval - st.pool_start) > self.config.pool_max_span_s:
            st.pool = None  # too old to mix with: start afresh
        if st.pool is None:
            st.pool, st.pool_start, st.pool_windows = win, w * self._interval, 1
        else:
            st.pool.merge(win)
            st.pool_windows += 1
        if st.pool.moments.count < need:
            return None
        pool, start, n = st.pool, st.pool_start, st.pool_windows
        st.pool = None
        return self._snapshot(st, start, (w + 1) * self._interval, pool, n), n

    def _detect(self, st: KeyState, point: Snapshot, pooled: int) -> list[ShiftEvent]:
        decisions = st.detector.update(point.start, point.quantiles(), point.count)
        events = [self._event(st, d, point.end, pooled) for d in decisions]
        for ev in events:
            self._count(ev)
            st.add_shift(ev)
            self.recent_shifts.append(ev)
            if len(self.recent_shifts) > 100:
                del self.recent_shifts[0]
        return events

    def _event(self, st: KeyState, d: object, detected_at: float, pooled: int) -> ShiftEvent:
        at = float(d.at)  # type: ignore[attr-defined]
        before, after = st.examples_around(math.floor(at / self._interval))
        return ShiftEvent(
            kind=d.kind,  # type: ignore[attr-defined]
            id=event_id(st.key, at),
            key=st.key,
            at=at,
            detected_at=detected_at,
            direction=d.direction,  # type: ignore[attr-defined]
            pvalue=float(d.pvalue),  # type: ignore[attr-defined]
            metrics=tuple(MetricMove(c.metric, float(c.before), float(c.after), float(c.relative_change), float(c.pvalue)) for c in d.changes),  # type: ignore[attr-defined]
            snapshots_before=int(d.snapshots_before),  # type: ignore[attr-defined]
            snapshots_after=int(d.snapshots_after),  # type: ignore[attr-defined]
            samples_before=int(d.samples_before),  # type: ignore[attr-defined]
            samples_after=int(d.samples_after),  # type: ignore[attr-defined]
            snapshot_interval_s=self._interval,
            detector=self.config.detector_name,
            labels=st.labels,
            examples_before=before if d.kind == "shift" else (),  # type: ignore[attr-defined]
            examples_after=after if d.kind == "shift" else (),  # type: ignore[attr-defined]
            pooled_windows=pooled,
        )

    def _count(self, ev: ShiftEvent) -> None:
        if ev.kind == "shift":
            self.stats.shifts += 1
            k = (ev.key, ev.direction)
            self.stats.shifts_by_key_direction[k] = self.stats.shifts_by_key_direction.get(k, 0) + 1
        else:
            self.stats.retractions += 1
