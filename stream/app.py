"""The worker: Kafka in, the shared pipeline, shift events and dead letters out.

It is a Faust application (faust-streaming on aiokafka): Faust runs the process —
its services, the idle-close timer, the web server task, signals and shutdown.
The input topic, though, is read by one aiokafka consumer in the worker's consumer
group, a record batch at a time, not by a Faust agent. Measured on our 2-core
machines, a Faust agent costs about 160 µs per message before its body runs (it
creates a Message, an Event, a task per delivery, and acks each one), which caps
a worker at ~6,000 messages/s; reading ``getmany()`` batches and decoding them in
one go is what lets a worker run near the Kafka client's own limit
(benchmarks/throughput.py).

- State is one pipeline per input partition (:mod:`stream.partitions`),
  checkpointed to a compacted changelog topic ``<app_id>-state`` with the input
  offset inside each record. Offsets are committed explicitly, per partition, to
  exactly the offset the flushed checkpoint reflects, so committed offsets never
  run ahead of saved state.
- Rebalances go through aiokafka's listener: partitions leaving are checkpointed
  and committed before the group moves them (``on_partitions_revoked`` runs before
  the rejoin); partitions arriving are restored from the changelog before their
  first record is applied. One lock serialises batches, timer sweeps, rebalance
  callbacks and shutdown, so a checkpoint never sees half a batch.
- Why not a Faust ``Table``: a table's changelog position cannot be tied to the
  input offsets, and writing it from batches places a key's state by hashing the
  key rather than in the partition its events come from (faust #497). Reading our
  own changelog back is a plain compacted-topic read.
- Outputs carry stable ids, so a re-send after a crash repeats the same event.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

import faust
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import CommitFailedError, ConsumerStoppedError, IllegalStateError, TopicAlreadyExistsError
from faust.app.base import BootStrategy

from .metrics import make_registry
from .partitions import PartitionedState
from .pipeline import Output
from .records import dumps
from .settings import Settings
from .web import make_web_app, serve

__all__ = ["Worker", "build_worker", "ensure_topics", "run_worker", "read_changelog"]

log = logging.getLogger("shiftwatch.worker")


def bootstrap_servers(broker: str) -> str:
    return ",".join(b.split("://", 1)[-1] for b in broker.split(","))


def state_topic(settings: Settings) -> str:
    return f"{settings.app_id}-state"


async def ensure_topics(settings: Settings) -> int:
    """Create missing topics; returns the input topic's partition count."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers(settings.broker), client_id="shiftwatch-admin")
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        rf = settings.replication_factor
        if settings.input_topic not in existing:
            await _create(admin, [NewTopic(settings.input_topic, settings.partitions, rf)])
        meta = await admin.describe_topics([settings.input_topic])
        partitions = len(meta[0]["partitions"]) if meta and meta[0].get("partitions") else settings.partitions
        wanted = [
            NewTopic(settings.shift_topic, 1, rf),
            NewTopic(settings.dead_letter_topic, 1, rf),
            NewTopic(state_topic(settings), partitions, rf, topic_configs={"cleanup.policy": "compact"}),
        ]
        await _create(admin, [t for t in wanted if t.name not in existing])
        return partitions
    finally:
        await admin.close()


async def _create(admin: AIOKafkaAdminClient, topics: list[NewTopic]) -> None:
    if not topics:
        return
    try:
        await admin.create_topics(topics)
        log.info("created topics %s", [t.name for t in topics])
    except TopicAlreadyExistsError:
        pass


async def read_changelog(bootstrap: str, topic: str, partition: int) -> list[tuple[bytes, bytes | None]]:
    """Every (key, value) of one changelog partition, oldest first, up to its current end."""
    tp = TopicPartition(topic, partition)
    c = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None, auto_offset_reset="earliest", max_partition_fetch_bytes=8 << 20
    )
    await c.start()
    try:
        c.assign([tp])
        end = (await c.end_offsets([tp]))[tp]
        # An explicit offset: seek_to_beginning() left the position at the end here.
        c.seek(tp, (await c.beginning_offsets([tp]))[tp])
        out: list[tuple[bytes, bytes | None]] = []
        while await c.position(tp) < end:
            batch = await c.getmany(tp, timeout_ms=1000)
            for rec in batch.get(tp, []):
                if rec.key is not None:
                    out.append((rec.key, rec.value))
        return out
    finally:
        await c.stop()


class _WorkerBoot(BootStrategy):
    """Faust without its own Kafka consumer and producer: the worker brings both."""

    enable_kafka = False
    enable_web = False


class _WorkerApp(faust.App):
    BootStrategy = _WorkerBoot


@dataclass(slots=True)
class Worker:
    app: faust.App
    state: PartitionedState
    settings: Settings


def build_worker(settings: Settings) -> Worker:
    """A configured Faust app around the partitioned state (one per worker process)."""
    base = settings.make_pipeline()
    state = PartitionedState(base.config, lambda: settings.make_pipeline().decoder, max_checkpoint_age=settings.checkpoint_interval)
    bootstrap = bootstrap_servers(settings.broker)
    changelog = state_topic(settings)
    topic = settings.input_topic
    app = _WorkerApp(settings.app_id, broker=settings.broker, web_enabled=False, store="memory://", datadir=settings.data_dir)
    last_wall: list[float | None] = [None]
    registry = make_registry(state, max_label_keys=settings.max_label_keys, last_event_wallclock=lambda: last_wall[0])
    restoring: dict[int, asyncio.Task[None]] = {}
    producer_box: list[AIOKafkaProducer] = []
    lock = asyncio.Lock()
    stopping = asyncio.Event()
    session_ms = int(settings.session_timeout * 1000)
    consumer_box: list[AIOKafkaConsumer] = []

    def make_consumer() -> AIOKafkaConsumer:
        # Created inside the running loop (aiokafka binds to it).
        return AIOKafkaConsumer(
            bootstrap_servers=bootstrap,
            group_id=settings.app_id,
            client_id=f"{settings.app_id}-input",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            # 1 MiB per partition holds only ~200 batched messages: the loop waited for data.
            max_partition_fetch_bytes=8 << 20,
            max_poll_records=settings.batch_size,
            session_timeout_ms=session_ms,
            heartbeat_interval_ms=max(500, session_ms // 10),
            rebalance_timeout_ms=max(session_ms, 10_000),
        )

    async def producer() -> AIOKafkaProducer:
        if not producer_box:
            p = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5, max_request_size=8 << 20, enable_idempotence=True)
            await p.start()
            producer_box.append(p)
        return producer_box[0]

    async def publish(out: Output) -> None:
        if not (out.dead or out.shifts):
            return
        p = await producer()
        for d in out.dead:
            await p.send(settings.dead_letter_topic, dumps(d.to_json()).encode(), key=(d.source.topic if d.source else "").encode())
        for s in out.shifts:
            await p.send(settings.shift_topic, dumps(s.to_json()).encode(), key=s.key.encode())
            log.info("%s %s at %s: %s", s.kind, s.key, s.at, [(m.metric, round(m.relative_change, 3)) for m in s.metrics])

    async def checkpoint_urgent() -> None:
        """Write the keys that just published a shift (no commit: other keys may be dirty)."""
        p = await producer()
        for part in state.urgent_partitions():
            for key, value in state.urgent_records(part):
                await p.send(changelog, value, key=key, partition=part)
        await p.flush()

    async def checkpoint(partitions: list[int]) -> int:
        """Write dirty keys of ``partitions`` to the changelog, flush, then commit their
        input offsets (exactly the offsets the records reflect); returns records written."""
        p = await producer()
        n = 0
        offsets: dict[TopicPartition, int] = {}
        for part in partitions:
            if part not in state.parts:
                continue
            for key, value in state.checkpoint_records(part):
                await p.send(changelog, value, key=key, partition=part)
                n += 1
                if n % 512 == 0:
                    await asyncio.sleep(0)  # heartbeats and /metrics keep running
            nxt = state.parts[part].next_offset
            if nxt >= 0:
                offsets[TopicPartition(topic, part)] = nxt
        await p.flush()
        if offsets and consumer_box:
            try:
                await consumer_box[0].commit(offsets)
            except (CommitFailedError, IllegalStateError) as e:
                # The group moved on (we were too slow or were fenced): the checkpoint is
                # saved with its offsets, so the next owner skips what we applied.
                log.warning("offset commit of partitions %s failed: %s", sorted(tp.partition for tp in offsets), e)
        log.debug("checkpoint of partitions %s: %d records", partitions, n)
        return n

    async def restore(partition: int) -> None:
        records = await read_changelog(bootstrap, changelog, partition)
        state.restore(partition, records)

    async def ensure_restored(partition: int) -> None:
        task = restoring.get(partition)
        if task is None:
            task = restoring[partition] = asyncio.ensure_future(restore(partition))
        await task

    #: Rebalances begun so far: a batch fetched before one is stale (see read_input).
    generation = [0]

    class Listener(ConsumerRebalanceListener):
        async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
            generation[0] += 1
            parts = sorted(tp.partition for tp in revoked if tp.topic == topic)
            async with lock:
                mine = [p for p in parts if p in state.parts]
                if mine:
                    n = await checkpoint(mine)
                    log.info("partitions %s revoked: checkpointed %d keys", mine, n)
                for p in parts:
                    state.revoke(p)
                    task = restoring.pop(p, None)
                    if task is not None and not task.done():
                        task.cancel()

        async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
            parts = sorted(tp.partition for tp in assigned if tp.topic == topic)
            log.info("partitions %s assigned", parts)
            for p in parts:
                if p not in state.parts and p not in restoring:
                    restoring[p] = asyncio.ensure_future(restore(p))

    async def apply(batch: dict[TopicPartition, list[Any]]) -> None:
        out = Output()
        for tp in sorted(batch, key=lambda tp: tp.partition):
            records = batch[tp]
            if tp.partition not in state.parts or tp.partition in restoring and not restoring[tp.partition].done():
                await ensure_restored(tp.partition)
            out.extend(state.process_records(tp.topic, tp.partition, records))
        await publish(out)
        last_wall[0] = time.time()
        await checkpoint_due()

    async def checkpoint_due() -> None:
        due = state.due_partitions()
        if due:
            await checkpoint(due)
        if state.urgent_partitions():
            await checkpoint_urgent()

    @app.task
    async def read_input() -> None:
        """The hot path: record batches from the input topic, applied in order."""
        consumer = make_consumer()
        consumer_box.append(consumer)
        await consumer.start()
        consumer.subscribe([topic], listener=Listener())
        log.info("reading %s as group %s", topic, settings.app_id)
        try:
            while not stopping.is_set():
                gen = generation[0]
                batch = await consumer.getmany(timeout_ms=int(settings.batch_within * 1000), max_records=settings.batch_size)
                if not batch:
                    continue
                async with lock:
                    if stopping.is_set():
                        break  # shutdown checkpointed what was applied; these are read again
                    if generation[0] != gen:
                        # A rebalance came between the fetch and now. Its revoke checkpointed
                        # and committed our partitions, and a partition assigned again restarts
                        # from its committed offset, so applying this batch as well could count
                        # records twice. Put the records back instead: still-assigned
                        # partitions are re-read from the batch's first offsets, the rest by
                        # their new owners.
                        mine = consumer.assignment()
                        for tp, recs in batch.items():
                            if tp in mine and recs:
                                try:
                                    consumer.seek(tp, recs[0].offset)
                                except IllegalStateError:  # moved on meanwhile: its owner reads it
                                    pass
                        log.info("re-reading a batch fetched across a rebalance (%d records)", sum(map(len, batch.values())))
                        continue
                    await apply(batch)
        except ConsumerStoppedError:
            if not stopping.is_set():
                raise
        except Exception as exc:
            # Not bad input (that never raises): a bug or a lost broker beyond retries.
            # Crash the worker loudly rather than stall with a dead reader.
            log.exception("the input reader failed")
            await app.crash(exc)

    @app.timer(interval=max(0.2, min(5.0, settings.snapshot_interval / 4)))
    async def idle_close() -> None:
        # With no traffic the event-time watermark stops; advance it by wall time
        # so the last windows of quiet keys still close.
        if last_wall[0] is None or stopping.is_set():
            return
        idle = time.time() - last_wall[0]
        async with lock:
            max_ts = state.max_ts
            if idle >= settings.idle_close_after and max_ts > 0:
                out = state.advance_to(max_ts + idle)
                await publish(out)
            await checkpoint_due()

    @app.on_before_shutdown.connect
    async def on_shutdown(_: Any, **kwargs: Any) -> None:
        stopping.set()
        async with lock:
            parts = sorted(state.parts)
            if parts:
                n = await checkpoint(parts)
                log.info("shutdown: checkpointed %d keys", n)
            # Leaving the group at once lets the others take the partitions without
            # waiting for the session timeout.
            if consumer_box:
                await consumer_box[0].stop()
            if producer_box:
                await producer_box[0].stop()
                producer_box.clear()

    @app.task
    async def web() -> None:
        runner = await serve(make_web_app(state, registry), settings.web_host, settings.web_port)
        log.info("serving /metrics and the live page on http://%s:%d/", settings.web_host, settings.web_port)
        try:
            while True:
                await asyncio.sleep(3600)
        finally:
            await runner.cleanup()

    return Worker(app=app, state=state, settings=settings)


def run_worker(settings: Settings) -> None:
    if settings.create_topics:
        asyncio.run(ensure_topics(settings))
    w = build_worker(settings)
    worker = faust.Worker(w.app, loglevel=settings.log_level, quiet=True)
    worker.execute_from_commandline()
