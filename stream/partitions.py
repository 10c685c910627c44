"""A worker's state: one :class:`Pipeline` per assigned input partition.

State is partitioned like the input, so when Kafka moves a partition to another
worker its keys' state moves with it (through the state changelog), and nothing
depends on how producers key their messages. All pipelines share one
:class:`Stats` and one key budget, so counters never go backwards on a rebalance.

Checkpoint protocol (see README, "Delivery guarantees"):
1. after a batch, a key that published a shift is written at once; a partition that
   closed snapshot windows (at most every ``min_checkpoint_gap`` seconds), or whose
   last checkpoint is older than ``max_checkpoint_age``, gets all its dirty keys
   written to the compacted changelog as ``key → encode_key_state(state, next_offset)``
   (both gaps stretch to ``COST_FACTOR`` times the partition's last checkpoint time,
   so checkpointing 100,000 keys cannot starve the input);
2. the producer is flushed, then — after a full checkpoint only — the consumer
   offsets are committed.
On assignment the changelog partition is read back; each key remembers the offset
its state reflects, and events below it are skipped (counted as ``replayed``), so
a restart neither loses nor double-counts accepted events.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable, Protocol, Sequence

from .checkpoint import CheckpointError, decode_key_state, encode_key_state
from .events import Decoded, Decoder, Source
from .pipeline import KeyBudget, KeyState, Output, Pipeline, PipelineConfig, Stats
from .records import ShiftEvent

__all__ = ["PartitionedState", "StateView", "MergedKey", "PARTITION_KEY"]

#: Changelog key of a stage-1 partition's own record (its newest event time): not UTF-8,
#: so never an event key.
PARTITION_KEY = b"\xffpartition"
#: Changelog key of the partition's OTLP cumulative-to-delta state (the decoder's).
DECODER_KEY = b"\xffdecoder"

log = logging.getLogger("shiftwatch.state")


class StateView(Protocol):
    """What /metrics and the live page read; a Pipeline and a PartitionedState both are one."""

    stats: Stats
    config: PipelineConfig
    max_ts: float
    recent_shifts: list[ShiftEvent]

    def key_count(self) -> int: ...

    def keys_recent_first(self, limit: int) -> list[KeyState]: ...


@dataclass(slots=True)
class _Part:
    pipeline: Pipeline
    #: Next input offset to read: everything below it is in ``pipeline``.
    next_offset: int = -1
    #: key → offset its restored state reflects (events below it are skipped).
    skip: dict[str, int] = field(default_factory=dict)
    skip_until: int = -1
    last_checkpoint: float = 0.0
    #: A snapshot closed (checkpoint soon).
    due: bool = False
    #: Keys that published a shift since their last checkpoint (checkpointed at once).
    urgent: set[str] = field(default_factory=set)
    #: Seconds the last full checkpoint of this partition took to encode.
    cost: float = 0.0
    #: Input offset last committed for this partition (-1: none by this worker).
    committed: int = -1


class InputRecord(Protocol):
    """What :meth:`PartitionedState.process_records` reads of a Kafka record (aiokafka's ConsumerRecord)."""

    offset: int
    timestamp: int  # epoch milliseconds; <= 0 when unknown
    value: bytes | None


def _record_ts(r: InputRecord) -> float | None:
    """The record's timestamp in epoch seconds, the stand-in for events without ``ts``."""
    ts = r.timestamp
    return ts / 1000.0 if ts and ts > 0 else None


class MergedKey:
    """A read-only union of one key's state in several partitions."""

    __slots__ = ("key", "alltime", "moments", "recent", "shifts")

    def __init__(self, states: list[KeyState]) -> None:
        first = states[0]
        self.key = first.key
        self.alltime = first.alltime_view() + states[1].alltime_view()
        self.moments = type(first.moments)()
        for st in states:
            self.moments.merge(st.moments)
        for st in states[2:]:
            self.alltime = self.alltime + st.alltime_view()
        newest = max(states, key=lambda s: s.recent[-1].end if s.recent else float("-inf"))
        self.recent = newest.recent
        self.shifts = sorted((e for s in states for e in s.shifts), key=lambda e: e.detected_at)

    def alltime_view(self):  # type: ignore[no-untyped-def]
        return self.alltime


class PartitionedState:
    def __init__(
        self,
        config: PipelineConfig,
        decoder_factory: Callable[[], Decoder],
        max_checkpoint_age: float = 30.0,
        min_checkpoint_gap: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        stats: Stats | None = None,
    ) -> None:
        self.config = config
        self.clock = clock
        self.decoder_factory = decoder_factory
        #: Shared with the other stage in the two-stage topology (one set of counters).
        self.stats = stats or Stats()
        self.budget = KeyBudget(config.max_keys)
        self.parts: dict[int, _Part] = {}
        self.recent_shifts: list[ShiftEvent] = []
        self.max_checkpoint_age = max_checkpoint_age
        #: Snapshot-triggered checkpoints of a partition are at least this many seconds apart.
        self.min_checkpoint_gap = min_checkpoint_gap

    # -- partitions ------------------------------------------------------
    def part(self, partition: int) -> _Part:
        p = self.parts.get(partition)
        if p is None:
            pipe = Pipeline(self.config, self.decoder_factory(), stats=self.stats, budget=self.budget)
            pipe.recent_shifts = self.recent_shifts
            pipe.source = partition
            p = self.parts[partition] = _Part(pipe, last_checkpoint=self.clock())
        return p

    def restore(self, partition: int, records: Iterable[tuple[bytes, bytes | None]]) -> int:
        """Load a partition's changelog (key, value) records, oldest first; returns keys restored."""
        p = self.part(partition)
        latest: dict[bytes, bytes | None] = {}
        for k, v in records:
            latest[k] = v
        own = latest.pop(PARTITION_KEY, None)
        if own is not None:
            self._restore_partition(p, own)
        dec = latest.pop(DECODER_KEY, None)
        if dec is not None:
            self._restore_decoder(p, dec)
        restored = 0
        for kb, value in latest.items():
            if value is None:
                continue
            key = kb.decode("utf-8", "surrogateescape")
            try:
                st, offset = decode_key_state(key, value, self.config)
            except CheckpointError as e:
                self.stats.checkpoint_errors += 1
                log.error("partition %d: %s; the key starts from empty state", partition, e)
                continue
            p.pipeline.adopt(st)
            p.skip[key] = offset
            p.skip_until = max(p.skip_until, offset)
            restored += 1
        log.info("partition %d: restored %d keys from the state changelog", partition, restored)
        return restored

    def _restore_partition(self, p: _Part, value: bytes) -> None:
        """Stage 1: the partition's newest event time, so its watermark resumes where it was."""
        try:
            doc = json.loads(value)
            p.pipeline.max_ts = float(doc["max_ts"])
            p.pipeline.sent_mark = float(doc.get("sent_mark", float("-inf")))
        except (ValueError, KeyError, TypeError) as e:
            self.stats.checkpoint_errors += 1
            log.error("partition record is invalid (%s); its watermark restarts", e)

    def _restore_decoder(self, p: _Part, value: bytes) -> None:
        """OTLP: the cumulative streams' last points, so deltas continue across a restart."""
        diff = getattr(p.pipeline.decoder, "differencer", None)
        if diff is None:
            return
        try:
            p.pipeline.decoder.differencer = type(diff).from_bytes(value)
        except ValueError as e:
            self.stats.checkpoint_errors += 1
            log.error("OTLP differencer state is invalid (%s); cumulative streams start a new baseline", e)

    def revoke(self, partition: int) -> None:
        p = self.parts.pop(partition, None)
        if p is not None:
            p.pipeline.release()

    # -- processing ------------------------------------------------------
    def process(self, partition: int, offset: int, decoded: Decoded) -> Output:
        """Process one message's events from ``partition`` at ``offset``."""
        p = self.part(partition)
        if offset < p.skip_until:
            decoded = self._drop_replayed(p, offset, decoded)
        out = p.pipeline.process(decoded)
        if offset + 1 > p.next_offset:
            p.next_offset = offset + 1
        if out.shifts:
            # a published shift is checkpointed at once (no re-publish after a crash)
            p.urgent.update(ev.key for ev in out.shifts)
        if out.snapshots or out.partials:
            p.due = True
        return out

    def process_records(self, topic: str, partition: int, records: Sequence[InputRecord]) -> Output:
        """Decode and apply consecutive records of one partition (offset order) as one batch.

        Records that a restored checkpoint already covers go message by message
        (their events are skipped per key); the rest are decoded into one batch, so
        the pipeline groups each key's events across messages.
        """
        out = Output()
        if not records:
            return out
        p = self.part(partition)
        decoder = p.pipeline.decoder
        self.stats.messages += len(records)
        i = 0
        while i < len(records) and records[i].offset < p.skip_until:
            r = records[i]
            out.extend(self.process(partition, r.offset, decoder.decode(r.value, Source(topic, partition, r.offset), default_ts=_record_ts(r))))
            i += 1
        if i < len(records):
            batch = decoder.decode_batch(((r.value, r.offset, _record_ts(r)) for r in records[i:]), topic, partition)
            out.extend(self.process(partition, records[-1].offset, batch))
        return out

    def _drop_replayed(self, p: _Part, offset: int, decoded: Decoded) -> Decoded:
        keep = Decoded(dead=decoded.dead)
        for k, v, t in zip(decoded.keys, decoded.values, decoded.ts):
            if offset < p.skip.get(k, -1):
                self.stats.replayed += 1
                continue
            keep.keys.append(k)
            keep.values.append(v)
            keep.ts.append(t)
        return keep

    def advance_idle(self, idle_s: float) -> Output:
        """The input has been idle ``idle_s`` wall seconds: move each partition's event time
        on by that much from its own newest event (never by another partition's clock; a
        partition that has seen nothing stays put — stage 2's merge grace covers it)."""
        out = Output()
        for p in self.parts.values():
            if p.pipeline.max_ts > float("-inf"):
                out.extend(self._advance(p, p.pipeline.max_ts + idle_s))
        return out

    def announce_empty(self, partition: int) -> Output:
        """Stage 1: ``partition`` is caught up and has never held an event (see
        :meth:`Pipeline.announce_empty`)."""
        p = self.parts.get(partition)
        return p.pipeline.announce_empty() if p is not None else Output()

    def _advance(self, p: _Part, t: float) -> Output:
        o = p.pipeline.advance_to(t)
        if o.snapshots or o.partials:
            p.due = True
        return o

    def advance_to(self, t: float) -> Output:
        out = Output()
        for p in self.parts.values():
            o = p.pipeline.advance_to(t)
            if o.snapshots or o.partials:
                p.due = True
            out.extend(o)
        return out

    # -- checkpoints -----------------------------------------------------
    #: A partition's checkpoints are spaced at least this many times their own encoding
    #: time, so with very many keys checkpointing stays a bounded share of the worker.
    COST_FACTOR = 10.0

    def due_partitions(self, now: float | None = None) -> list[int]:
        """Partitions whose dirty keys should be checkpointed (and offsets committed) now."""
        now = self.clock() if now is None else now
        out = []
        for n, p in self.parts.items():
            if not (p.pipeline.dirty or p.pipeline.evicted):
                # Everything is saved (e.g. by a shift's urgent checkpoint) but maybe not
                # committed: commit it within max_checkpoint_age, or consumer lag stalls.
                if p.next_offset > p.committed and now - p.last_checkpoint >= self.max_checkpoint_age:
                    out.append(n)
                continue
            age = now - p.last_checkpoint
            floor = self.COST_FACTOR * p.cost
            if (p.due and age >= max(self.min_checkpoint_gap, floor)) or age >= max(self.max_checkpoint_age, floor):
                out.append(n)
        return sorted(out)

    def mark_committed(self, partition: int, offset: int) -> None:
        p = self.parts.get(partition)
        if p is not None:
            p.committed = max(p.committed, offset)

    def urgent_partitions(self) -> list[int]:
        """Partitions with keys whose published shift is not checkpointed yet."""
        return sorted(n for n, p in self.parts.items() if p.urgent)

    def urgent_records(self, partition: int) -> list[tuple[bytes, bytes | None]]:
        """Changelog records for just the keys that published a shift; marks them clean.

        Offsets are not committed after these (other keys may be dirty); each record
        carries its own offset, so a restart skips exactly what the key had applied.
        """
        p = self.parts[partition]
        pipe = p.pipeline
        records = []
        for key in sorted(p.urgent):
            st = pipe.states.get(key)
            if st is not None and key in pipe.dirty:
                records.append((key.encode("utf-8", "surrogateescape"), encode_key_state(st, p.next_offset)))
                pipe.dirty.discard(key)
        p.urgent.clear()
        return records

    def checkpoint_records(self, partition: int) -> list[tuple[bytes, bytes | None]]:
        """Changelog records for the dirty (and evicted) keys of a partition; marks them clean."""
        started = time.perf_counter()
        p = self.parts[partition]
        pipe = p.pipeline
        records: list[tuple[bytes, bytes | None]] = []
        for key in sorted(pipe.dirty):
            st = pipe.states.get(key)
            if st is not None:
                records.append((key.encode("utf-8", "surrogateescape"), encode_key_state(st, p.next_offset)))
        for key in pipe.evicted:
            records.append((key.encode("utf-8", "surrogateescape"), None))
        if self.config.stage == "partials" and pipe.max_ts > float("-inf"):
            records.append((PARTITION_KEY, json.dumps({"max_ts": pipe.max_ts, "sent_mark": pipe.sent_mark}).encode()))
        diff = getattr(pipe.decoder, "differencer", None)
        if diff is not None and len(diff):
            records.append((DECODER_KEY, diff.to_bytes()))
        pipe.dirty.clear()
        pipe.evicted.clear()
        p.due = False
        p.urgent.clear()
        p.last_checkpoint = self.clock()
        p.cost = time.perf_counter() - started
        return records

    # -- read view -------------------------------------------------------
    @property
    def max_ts(self) -> float:
        return max((p.pipeline.max_ts for p in self.parts.values()), default=float("-inf"))

    def key_count(self) -> int:
        return self.budget.used

    def keys_recent_first(self, limit: int) -> list[KeyState]:
        if len(self.parts) == 1:
            return next(iter(self.parts.values())).pipeline.keys_recent_first(limit)
        groups: dict[str, list[KeyState]] = {}
        for p in self.parts.values():
            for st in p.pipeline.keys_recent_first(limit):
                groups.setdefault(st.key, []).append(st)
        merged: list[KeyState] = [g[0] if len(g) == 1 else MergedKey(g) for g in groups.values()]  # type: ignore[misc]
        return merged[:limit]
