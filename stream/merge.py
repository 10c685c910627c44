"""Stage 2 of the two-stage topology: merge a key's window partials from every source.

One :class:`MergeState` per worker holds, per *partials* partition, a merge-mode
:class:`~stream.pipeline.Pipeline` and the newest watermark of every source (input)
partition. A key's window ``w`` is merged from the partials of each source as they
arrive and closes once every source's watermark has passed its end — or, for a source
silent for ``merge_grace_s`` wall-clock seconds (an idle input partition), without
it. A source that announced itself empty (watermark +inf: read to its end, never an
event) is not waited for; its first partial or finite watermark makes it a source
again, and a partial of a window closed while it was empty is late (all-time only). The closed window then runs through the same snapshot → pool → detector
path as the one-stage topology, so shift events, ids and all-time state do not depend
on how the producer partitioned the input.

Merging is idempotent: a window remembers which sources it holds (a bitmask), and a
key's horizon which windows it closed, so a partial re-published after a stage-1 crash,
or re-read after a stage-2 restore, is counted once. That is why stage 2 needs no
per-key offsets: offsets of the partials topic are committed behind its checkpoints.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable, Sequence

from .checkpoint import CheckpointError
from .events import DeadLetter, Source
from .output import Output, Stats
from .partials import PartialError, SourceWatermark, WindowPartial, decode_record
from .partitions import InputRecord, PartitionedState, _Part
from .pipeline import PipelineConfig
from .window import Window

__all__ = ["MergeState", "WATERMARKS_KEY"]

log = logging.getLogger("shiftwatch.merge")

#: Changelog key of a partials partition's source watermarks (never an event key: not UTF-8).
WATERMARKS_KEY = b"\xffwatermarks"


@dataclass(slots=True)
class _Sources:
    """What one partials partition knows of the source partitions."""

    count: int = 0
    wm: dict[int, float] = field(default_factory=dict)
    #: wall clock (monotonic) of each source's last watermark advance; not checkpointed
    heard: dict[int, float] = field(default_factory=dict)
    closed_upto: float = float("-inf")
    #: sources that announced themselves empty (not waited for)
    empty: set[int] = field(default_factory=set)
    #: source -> ``closed_upto`` when it came back from empty: its partials of windows
    #: ending by then are late, not replays
    rejoined: dict[int, float] = field(default_factory=dict)
    changed: bool = False
    #: when this worker took the partition (the grace of sources not heard from yet)
    since: float = 0.0


class MergeState(PartitionedState):
    """A :class:`PartitionedState` whose records are partials and watermarks."""

    def __init__(
        self,
        config: PipelineConfig,
        max_checkpoint_age: float = 30.0,
        merge_grace_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        stats: Stats | None = None,
    ) -> None:
        super().__init__(config, lambda: None, max_checkpoint_age=max_checkpoint_age, clock=clock, stats=stats)  # type: ignore[arg-type,return-value]
        self.merge_grace_s = merge_grace_s
        self.sources: dict[int, _Sources] = {}

    def _src(self, partition: int) -> _Sources:
        s = self.sources.get(partition)
        if s is None:
            s = self.sources[partition] = _Sources(since=self.clock())
        return s

    # -- records ----------------------------------------------------------
    def process_records(self, topic: str, partition: int, records: Sequence[InputRecord]) -> Output:
        out = Output()
        if not records:
            return out
        p, src = self.part(partition), self._src(partition)
        for r in records:
            try:
                rec = decode_record(r.value)
            except PartialError as e:
                self._reject(out, topic, partition, r, str(e))
                continue
            if isinstance(rec, SourceWatermark):
                self._watermark(src, rec)
            else:
                self._add(p, src, rec)
        p.next_offset = max(p.next_offset, records[-1].offset + 1)
        out.extend(self._close_ready(p, src))
        return out

    def _reject(self, out: Output, topic: str, partition: int, r: InputRecord, error: str) -> None:
        self.stats.rejected += 1
        self.stats.rejected_by_reason["bad_partial"] = self.stats.rejected_by_reason.get("bad_partial", 0) + 1
        out.dead.append(DeadLetter("bad_partial", error, r.value or b"", None, Source(topic, partition, r.offset)))

    def _watermark(self, src: _Sources, wm: SourceWatermark) -> None:
        src.count = max(src.count, wm.sources)
        if wm.t == math.inf:
            if wm.source not in src.empty:
                src.empty.add(wm.source)
                src.heard[wm.source] = self.clock()
                src.changed = True
            return
        if wm.source in src.empty:
            self._rejoin(src, wm.source)
            src.wm[wm.source] = wm.t
            src.heard[wm.source] = self.clock()
        elif wm.t > src.wm.get(wm.source, float("-inf")):
            src.wm[wm.source] = wm.t
            src.heard[wm.source] = self.clock()
            src.changed = True

    def _rejoin(self, src: _Sources, source: int) -> None:
        src.empty.discard(source)
        src.rejoined[source] = src.closed_upto
        src.changed = True

    def _add(self, p: _Part, src: _Sources, part: WindowPartial) -> None:
        """Merge one partial (at most once per key, window and source)."""
        pipe = p.pipeline
        interval = self.config.snapshot_interval_s
        if part.source in src.empty:
            self._rejoin(src, part.source)
        if (part.w + 1) * interval <= src.rejoined.get(part.source, -math.inf):
            self._late_partial(p, part)
            return
        st = pipe.states.get(part.key)
        if st is not None and (part.w + 1) * interval <= st.horizon:
            self.stats.replayed += 1  # its window is closed: a re-sent partial, or a late one
            return
        st = st if st is not None else pipe._state(part.key)
        bit = 1 << part.source
        if st.sources is None:
            st.sources = {}
        mask = st.sources.get(part.w, 0)
        if mask & bit:
            self.stats.replayed += 1
            return
        st.sources[part.w] = mask | bit
        if part.late_sketch is not None and part.late_moments is not None:
            st.alltime.merge(part.late_sketch)  # late at its source: all-time only
            st.moments.merge(part.late_moments)
        if part.labels and not st.labels:
            st.labels = part.labels
        win = st.windows.get(part.w)
        if win is None:
            st.windows[part.w] = part.window(self.config.sketch_bytes)
        else:
            win.merge(part.window(self.config.sketch_bytes))
        pipe.dirty.add(part.key)

    def _late_partial(self, p: _Part, part: WindowPartial) -> None:
        """A window closed while its source was empty: its events count all-time only
        (as events late at their source do). Not deduplicated: a stage-1 crash right
        after sending it may count it twice all-time (windows are unaffected)."""
        st = p.pipeline._state(part.key)
        for sketch, moments in ((part.sketch, part.moments), (part.late_sketch, part.late_moments)):
            if sketch is not None and moments is not None and moments.count:
                st.alltime.merge(sketch)
                st.moments.merge(moments)
                self.stats.late += moments.count
        p.pipeline.dirty.add(part.key)

    # -- closing ----------------------------------------------------------
    def _threshold(self, src: _Sources) -> float:
        """Windows ending by this are complete: every source's watermark passed them,
        sources silent for longer than the grace aside."""
        now = self.clock()
        marks = []
        for s in range(src.count):
            if s in src.empty:
                continue
            silent = now - src.heard.get(s, src.since) >= self.merge_grace_s
            if s in src.wm and not silent:
                marks.append(src.wm[s])
            elif s not in src.wm and not silent:
                return float("-inf")  # not heard from yet, still within the grace
        return min(marks) if marks else float("-inf")

    def _close_ready(self, p: _Part, src: _Sources, threshold: float | None = None) -> Output:
        t = self._threshold(src) if threshold is None else threshold
        out = Output()
        if t <= src.closed_upto:
            return out
        src.closed_upto = t
        interval = self.config.snapshot_interval_s
        pipe = p.pipeline
        due = sorted((w, key) for key, st in pipe.states.items() for w in st.windows if (w + 1) * interval <= t)
        for w, key in due:
            st = pipe.states[key]
            win: Window = st.windows.pop(w)
            if st.sources:
                st.sources.pop(w, None)
            out.extend(pipe.apply_window(key, w, win))
        if out.snapshots:
            p.due = True
        if out.shifts:
            p.urgent.update(ev.key for ev in out.shifts)
        return out

    def advance_idle(self, idle_s: float) -> Output:
        """No partial for ``idle_s`` wall seconds: as :meth:`advance_to` from the newest
        merged event time."""
        return self.advance_to(self.max_ts + idle_s)

    def advance_to(self, t: float) -> Output:
        """No record for a while: close what the event time ``t`` has passed — only once
        every source is silent past the grace (a source still within it may be behind)."""
        out = Output()
        now = self.clock()
        for n, p in self.parts.items():
            src = self._src(n)
            waiting = any(s not in src.empty and now - src.heard.get(s, src.since) < self.merge_grace_s for s in range(src.count))
            t_src = self._threshold(src)
            out.extend(self._close_ready(p, src, t_src if waiting else max(t_src, t - self.config.lateness)))
        return out

    # -- checkpoints ------------------------------------------------------
    def checkpoint_records(self, partition: int) -> list[tuple[bytes, bytes | None]]:
        records = super().checkpoint_records(partition)
        src = self._src(partition)
        if src.changed:
            doc = {
                "count": src.count,
                "wm": {str(k): v for k, v in src.wm.items()},
                "closed_upto": src.closed_upto,
                "empty": sorted(src.empty),
                "rejoined": {str(k): v for k, v in src.rejoined.items()},
            }
            records.append((WATERMARKS_KEY, json.dumps(doc).encode()))
            src.changed = False
        return records

    def due_partitions(self, now: float | None = None) -> list[int]:
        due = set(super().due_partitions(now))
        now = self.clock() if now is None else now
        for n, p in self.parts.items():
            if self._src(n).changed and now - p.last_checkpoint >= self.max_checkpoint_age:
                due.add(n)
        return sorted(due)

    def restore(self, partition: int, records: Iterable[tuple[bytes, bytes | None]]) -> int:
        rest = []
        for k, v in records:
            if k == WATERMARKS_KEY:
                if v is not None:
                    self._restore_watermarks(partition, v)
            else:
                rest.append((k, v))
        n = super().restore(partition, rest)
        # Merging is idempotent: re-read partials are recognised by the state itself.
        p = self.parts[partition]
        p.skip.clear()
        p.skip_until = -1
        return n

    def _restore_watermarks(self, partition: int, value: bytes) -> None:
        try:
            doc = json.loads(value)
            src = self._src(partition)
            src.count = int(doc["count"])
            src.wm = {int(k): float(v) for k, v in doc["wm"].items()}
            src.closed_upto = float(doc["closed_upto"])
            src.empty = {int(s) for s in doc.get("empty", ())}
            src.rejoined = {int(k): float(v) for k, v in doc.get("rejoined", {}).items()}
        except (ValueError, KeyError, TypeError) as e:
            self.stats.checkpoint_errors += 1
            log.error("partials partition %d: %s", partition, CheckpointError(f"bad watermark record: {e}"))

    def revoke(self, partition: int) -> None:
        super().revoke(partition)
        self.sources.pop(partition, None)
