"""The worker's logic: assignment, restore, apply, checkpoint, commit and publish.

Kafka is injected behind three small protocols (:class:`Consumer`, :class:`Producer`,
a changelog reader) and time behind :class:`Clock`, so rebalances, restores and the
order of checkpoint and commit are unit-tested in-process with fakes
(``tests/test_worker.py``); ``stream/app.py`` only wires aiokafka, Faust's timer,
the web task and signals to this object.

Why a checkpoint precedes every commit: a committed offset says "everything below is
in saved state". :meth:`Worker.checkpoint` therefore (1) writes the dirty keys of the
partitions to the changelog, (2) flushes the producer, (3) commits exactly the input
offsets those records reflect. A crash between any two steps re-reads input that the
restored state then skips per key, so nothing is lost or counted twice.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Iterable, Protocol, Sequence

from aiokafka.partitioner import DefaultPartitioner

from .events import DeadLetter, Source
from .health import Health
from .partials import SourceWatermark, encode_partial, encode_watermark
from .partitions import PartitionedState
from .pipeline import Output
from .records import dumps

__all__ = ["Worker", "WorkerTopics", "Consumer", "Producer", "Clock", "SystemClock", "TP"]

log = logging.getLogger("shiftwatch.worker")


class TP(Protocol):
    """A topic-partition (aiokafka's ``TopicPartition`` is one)."""

    topic: str
    partition: int


class Record(Protocol):
    offset: int
    timestamp: int
    value: bytes | None
    key: bytes | None


class Consumer(Protocol):
    """The part of ``AIOKafkaConsumer`` the worker uses."""

    async def getmany(self, *, timeout_ms: int, max_records: int) -> dict[Any, list[Any]]: ...

    async def commit(self, offsets: dict[Any, int]) -> None: ...

    def assignment(self) -> set[Any]: ...

    def seek(self, tp: Any, offset: int) -> None: ...

    async def committed(self, tp: Any) -> int | None: ...

    def highwater(self, tp: Any) -> int | None: ...

    async def position(self, tp: Any) -> int: ...


class Producer(Protocol):
    """The part of ``AIOKafkaProducer`` the worker uses."""

    async def send(self, topic: str, value: bytes | None, key: bytes | None = None, partition: int | None = None, headers: Any = None) -> Any: ...

    async def flush(self) -> None: ...


class Clock(Protocol):
    def wall(self) -> float: ...

    def monotonic(self) -> float: ...


class SystemClock:
    def wall(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()


ChangelogReader = Callable[[int], Awaitable[list[tuple[bytes, bytes | None]]]]
CommitErrors = tuple[type[BaseException], ...]


@dataclass(slots=True, frozen=True)
class WorkerTopics:
    input: str
    shifts: str
    dead_letter: str
    changelog: str
    #: Two-stage topology, stage 1: where window partials and source watermarks go.
    partials: str | None = None
    partials_partitions: int = 0
    #: Partitions of the input topic (the sources stage 2 waits for).
    sources: int = 0


@dataclass
class Worker:
    state: PartitionedState
    topics: WorkerTopics
    consumer: Consumer
    producer: Producer
    read_changelog: ChangelogReader
    clock: Clock = field(default_factory=SystemClock)
    batch_size: int = 1000
    batch_within_s: float = 0.2
    idle_close_after_s: float = 10.0
    #: Stage 1: an input partition read to its end this long without an event is announced
    #: empty, so stage 2 stops waiting for it (0: never; stage 2 waits its merge grace).
    empty_partition_after_s: float = 10.0
    #: Exceptions of ``consumer.commit`` that mean "the group moved on" (logged, not raised).
    commit_errors: CommitErrors = ()
    #: Called with each shift event published; returns more (topic, key, value) records (incidents).
    on_shift: Callable[[Any], Iterable[tuple[str, bytes, bytes]]] | None = None
    #: Fetches a batch: ``(timeout_ms, max_records) -> (records by partition, undecodable batches)``;
    #: None: ``consumer.getmany``.
    fetch: Callable[[int, int], Awaitable[tuple[dict[Any, list[Any]], list[Any]]]] | None = None
    health: Health | None = None

    def __post_init__(self) -> None:
        self.lock = asyncio.Lock()
        self.stopping = False
        #: Rebalances begun so far: a batch fetched before one is stale (see :meth:`step`).
        self.generation = 0
        self.restoring: dict[int, asyncio.Task[None]] = {}
        #: Wall time of the last applied batch (drives the idle close).
        self.last_wall: float | None = None
        if self.health is None:
            self.health = Health(started=self.clock.monotonic())
        #: partition -> offset last committed by this worker.
        self.committed: dict[int, int] = {}
        #: partitions revoked with their state kept (and the offset it reflects) until the next assignment.
        self.kept: dict[int, int] = {}
        #: Stage 1: when each input partition was assigned (monotonic), and those checked for emptiness.
        self.assigned_at: dict[int, float] = {}
        self.checked_empty: set[int] = set()

    # -- outputs ----------------------------------------------------------
    async def publish(self, out: Output, origin: dict[tuple[int, int], Any] | None = None) -> None:
        """Dead letters and shift events, keyed so one key's records stay in order.

        A dead letter keeps the original record's key and headers (``origin`` maps
        (partition, offset) to the input record)."""
        p = self.producer
        for d in out.dead:
            rec = origin.get((d.source.partition, d.source.offset)) if origin and d.source else None
            key = rec.key if rec is not None else None
            headers = list(rec.headers) if rec is not None and getattr(rec, "headers", None) else None
            await p.send(self.topics.dead_letter, dumps(d.to_json()).encode(), key=key, headers=headers)
        if out.partials or out.watermarks:
            await self._publish_partials(out)
        for s in out.shifts:
            await p.send(self.topics.shifts, dumps(s.to_json()).encode(), key=s.key.encode("utf-8", "surrogateescape"))
            log.info("%s %s at %s: %s", s.kind, s.key, s.at, [(m.metric, round(m.relative_change, 3)) for m in s.metrics])
            if self.on_shift is not None:
                for topic, key, value in self.on_shift(s):
                    await p.send(topic, value, key=key)

    async def _publish_partials(self, out: Output) -> None:
        """Stage 1: each partial to its key's partials partition (the same partition
        whichever source sent it), then each source watermark to every partials partition."""
        t, n = self.topics, self.topics.partials_partitions
        for part in out.partials:
            key = part.key.encode("utf-8", "surrogatepass")
            await self.producer.send(t.partials, encode_partial(part), key=key, partition=key_partition(key, n))  # type: ignore[arg-type]
        for source, wm in sorted(out.watermarks.items()):
            rec = encode_watermark(SourceWatermark(source, t.sources, wm))
            for pp in range(n):
                await self.producer.send(t.partials, rec, partition=pp)  # type: ignore[arg-type]

    # -- checkpoints ------------------------------------------------------
    async def checkpoint(self, partitions: Sequence[int]) -> int:
        """Save then commit: (1) write the dirty keys of ``partitions`` to the changelog,
        (2) flush the producer, (3) commit exactly the input offsets those records
        reflect. Returns the number of records written."""
        n = 0
        offsets: dict[Any, int] = {}
        state = self.state
        for part in partitions:
            if part not in state.parts:
                continue
            for key, value in state.checkpoint_records(part):
                await self.producer.send(self.topics.changelog, value, key=key, partition=part)
                n += 1
                if n % 512 == 0:
                    await asyncio.sleep(0)  # heartbeats and /metrics keep running
            nxt = state.parts[part].next_offset
            if nxt >= 0:
                offsets[_tp(self.topics.input, part)] = nxt
        await self.producer.flush()
        await self._commit(offsets)
        log.debug("checkpoint of partitions %s: %d records", list(partitions), n)
        return n

    async def _commit(self, offsets: dict[Any, int]) -> None:
        if not offsets:
            return
        try:
            await self.consumer.commit(offsets)
        except self.commit_errors as e:
            # The group moved on (too slow, or fenced): the checkpoint holds its offsets,
            # so the next owner skips what we applied.
            log.warning("offset commit of partitions %s failed: %s", sorted(tp.partition for tp in offsets), e)
            return
        for tp, off in offsets.items():
            self.committed[tp.partition] = off
            self.state.mark_committed(tp.partition, off)

    async def checkpoint_urgent(self) -> None:
        """Write just the keys that published a shift (no commit: other keys may be dirty)."""
        for part in self.state.urgent_partitions():
            for key, value in self.state.urgent_records(part):
                await self.producer.send(self.topics.changelog, value, key=key, partition=part)
        await self.producer.flush()

    async def checkpoint_due(self) -> None:
        due = self.state.due_partitions(self.clock.monotonic())
        if due:
            await self.checkpoint(due)
        if self.state.urgent_partitions():
            await self.checkpoint_urgent()

    # -- rebalances -------------------------------------------------------
    async def on_revoked(self, revoked: Iterable[TP]) -> None:
        """Partitions leave: checkpoint and commit them before the group moves them.

        Their state stays in memory until the assignment that follows: a partition this
        worker gets back, untouched by anyone else, resumes without a reload."""
        self.generation += 1
        parts = sorted(tp.partition for tp in revoked if tp.topic == self.topics.input)
        async with self.lock:
            mine = [p for p in parts if p in self.state.parts and self._restored(p)]
            if mine:
                n = await self.checkpoint(mine)
                log.info("partitions %s revoked: checkpointed %d keys", mine, n)
            for p in parts:
                task = self.restoring.pop(p, None)
                if task is not None and not task.done():
                    task.cancel()
                    self.state.revoke(p)
                elif p in mine and self.committed.get(p) == self.state.parts[p].next_offset:
                    self.kept[p] = self.committed[p]
                else:
                    self.state.revoke(p)
            self.health.assigned = False  # type: ignore[union-attr]

    def _restored(self, p: int) -> bool:
        task = self.restoring.get(p)
        return task is None or task.done()

    async def on_assigned(self, assigned: Iterable[TP]) -> None:
        """Partitions arrive: keep the state of those we still hold (if no one else
        committed past it meanwhile), restore the others from the changelog (awaited
        before their first record)."""
        tps = [tp for tp in assigned if tp.topic == self.topics.input]
        parts = sorted(tp.partition for tp in tps)
        kept, self.kept = self.kept, {}
        for p in set(kept) - set(parts):
            self.state.revoke(p)
        reused = []
        for tp in tps:
            p = tp.partition
            if p in kept:
                if await self.consumer.committed(tp) == kept[p]:
                    reused.append(p)
                    continue
                self.state.revoke(p)  # someone else moved it on: our copy is stale
            if p not in self.state.parts and p not in self.restoring:
                self.restoring[p] = asyncio.ensure_future(self._restore(p))
        now = self.clock.monotonic()
        self.assigned_at = {p: self.assigned_at.get(p, now) if p in reused else now for p in parts}
        self.checked_empty &= set(reused)
        log.info("partitions %s assigned%s", parts, f" (state kept for {sorted(reused)})" if reused else "")
        self.health.assigned = bool(parts)  # type: ignore[union-attr]

    async def _restore(self, partition: int) -> None:
        self.state.restore(partition, await self.read_changelog(partition))

    async def ensure_restored(self, partition: int) -> None:
        task = self.restoring.get(partition)
        if task is None:
            task = self.restoring[partition] = asyncio.ensure_future(self._restore(partition))
        await task

    def restored(self) -> bool:
        return all(t.done() for t in self.restoring.values())

    # -- the input loop ---------------------------------------------------
    async def apply(self, batch: dict[Any, list[Any]]) -> None:
        out = Output()
        for tp in sorted(batch, key=lambda tp: tp.partition):
            task = self.restoring.get(tp.partition)
            if tp.partition not in self.state.parts or (task is not None and not task.done()):
                await self.ensure_restored(tp.partition)
            out.extend(self.state.process_records(tp.topic, tp.partition, batch[tp]))
        origin = {(tp.partition, r.offset): r for tp, recs in batch.items() for r in recs} if out.dead else None
        await self.publish(out, origin)
        self.last_wall = self.clock.wall()
        await self.checkpoint_due()

    async def step(self) -> bool:
        """Fetch one batch and apply it; False once stopping."""
        gen = self.generation
        timeout_ms = int(self.batch_within_s * 1000)
        if self.fetch is None:
            batch, bad = await self.consumer.getmany(timeout_ms=timeout_ms, max_records=self.batch_size), []
        else:
            batch, bad = await self.fetch(timeout_ms, self.batch_size)
        self.health.last_loop = self.clock.monotonic()  # type: ignore[union-attr]
        if bad:
            await self._undecodable(bad)
        if not batch:
            return not self.stopping
        async with self.lock:
            if self.stopping:
                return False  # shutdown checkpointed what was applied; these are read again
            if self.generation != gen:
                self._put_back(batch)
                return True
            await self.apply(batch)
        return True

    async def _undecodable(self, bad: list[Any]) -> None:
        """Record batches the client cannot decode: counted, logged once, dead-lettered, skipped."""
        out = Output()
        for b in bad:
            log.error("partition %d: skipped an undecodable record batch at offsets %d..%d: %s", b.partition, b.first_offset, b.next_offset - 1, b.reason)
            by = self.state.stats.input_errors_by_reason
            reason = "undecodable_batch"
            by[reason] = by.get(reason, 0) + 1
            out.dead.append(DeadLetter(reason, b.reason, b.raw, None, Source(b.topic, b.partition, b.first_offset)))
        await self.publish(out)

    def readiness(self) -> tuple[bool, str]:
        """(ready, reason) for /readyz: assigned, restored, and the broker answering."""
        h = self.health
        if not h.broker_ok:  # type: ignore[union-attr]
            return False, h.reason  # type: ignore[union-attr]
        if not self.state.parts and not self.restoring:
            return False, "no partitions assigned"
        if not self.restored():
            return False, "restoring state from the changelog"
        return True, "ok"

    def _put_back(self, batch: dict[Any, list[Any]]) -> None:
        """A rebalance came between fetch and apply. Its revoke checkpointed and committed
        our partitions, and a re-assigned partition restarts from its committed offset,
        so applying this batch too could count records twice: seek back instead."""
        mine = self.consumer.assignment()
        for tp, recs in batch.items():
            if tp in mine and recs:
                try:
                    self.consumer.seek(tp, recs[0].offset)
                except Exception:  # moved on meanwhile: its new owner reads it
                    pass
        log.info("re-reading a batch fetched across a rebalance (%d records)", sum(map(len, batch.values())))

    async def run(self) -> None:
        while await self.step():
            pass

    async def tick(self) -> None:
        """The timer: close quiet windows by wall time, then checkpoint what is due.

        With no traffic the event-time watermark stops; advancing it by the idle time
        lets the last windows of quiet keys close.
        """
        if self.stopping:
            return
        async with self.lock:
            await self._announce_empty()
            if self.last_wall is not None:
                idle = self.clock.wall() - self.last_wall
                if idle >= self.idle_close_after_s and self.state.max_ts > 0:
                    await self.publish(self.state.advance_idle(idle))
            await self.checkpoint_due()

    async def _announce_empty(self) -> None:
        """Stage 1: an input partition assigned for ``empty_partition_after_s``, read to its
        end and without a single event tells stage 2 not to wait for it. Without this, a
        topic with fewer keys than partitions holds the first windows back by the merge
        grace. The price: if such a partition later gets events older than what stage 2
        has closed, they count all-time only (late), as with Flink's idle sources."""
        after = self.empty_partition_after_s
        if self.topics.partials is None or after <= 0:
            return
        now = self.clock.monotonic()
        for p in sorted(self.state.parts):
            if p in self.checked_empty or now - self.assigned_at.get(p, now) < after or not self._restored(p):
                continue
            if not await self._caught_up(p):
                continue  # a backlog not fetched yet is not an empty partition
            self.checked_empty.add(p)
            out = self.state.announce_empty(p)
            if out.watermarks:
                log.info("partition %d is empty: stage 2 will not wait for it", p)
                await self.publish(out)

    async def _caught_up(self, partition: int) -> bool:
        tp = _tp(self.topics.input, partition)
        try:
            hw = self.consumer.highwater(tp)
            return hw is not None and await asyncio.wait_for(self.consumer.position(tp), 1.0) >= hw
        except Exception:  # not assigned any more, or no position yet: ask again next time
            return False

    async def shutdown(self) -> int:
        """Stop applying, checkpoint and commit every partition; returns records written."""
        self.stopping = True
        async with self.lock:
            parts = sorted(self.state.parts)
            n = await self.checkpoint(parts) if parts else 0
            log.info("shutdown: checkpointed %d keys", n)
            return n


def key_partition(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner (murmur2, as the Java client) picks for ``key``."""
    return DefaultPartitioner()(key, list(range(partitions)), None)


def _tp(topic: str, partition: int) -> Any:
    from aiokafka import TopicPartition

    return TopicPartition(topic, partition)
