"""The Faust worker: Kafka in, the shared pipeline, shift events and dead letters out.

- The agent takes events in batches (``take_events``) so our per-message work is
  amortised; it runs with concurrency 1 (more breaks at-least-once, faust #606).
- State is one pipeline per input partition (:mod:`stream.partitions`),
  checkpointed to a compacted changelog topic ``<app_id>-state`` with the input
  offset inside each record. Faust's periodic commit is switched off: offsets are
  committed right after a checkpoint is flushed, so committed offsets never run
  ahead of saved state. Faust's own commit on revoke/stop is followed at once by
  our checkpoint of the partitions that leave (signals ``on_partitions_revoked``
  and ``on_before_shutdown``).
- Why not a Faust ``Table``: a table cannot be written from ``take_events``
  without ``use_partitioner`` (faust #497), which would place a key's state by
  hashing the key rather than in the partition its events come from; and a table
  gives no way to tie its changelog position to the input offsets. Reading our
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
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from .events import Source
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
    app = faust.App(
        settings.app_id,
        broker=settings.broker,
        value_serializer="raw",
        key_serializer="raw",
        web_enabled=False,
        store="memory://",
        datadir=settings.data_dir,
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor,
        broker_session_timeout=settings.session_timeout,
        broker_heartbeat_interval=max(0.5, settings.session_timeout / 10),
        broker_rebalance_timeout=max(settings.session_timeout, 10.0),
        # Commits happen only after a checkpoint (see module docstring).
        broker_commit_every=1 << 40,
        broker_commit_interval=10.0**9,
        consumer_auto_offset_reset="earliest",
        # 1 MiB per partition holds only ~200 batched messages: the agent waited for data.
        consumer_max_fetch_size=8 << 20,
        stream_buffer_maxsize=16384,
        producer_acks=-1,
    )
    events_topic = app.topic(settings.input_topic, value_type=bytes, key_type=bytes, partitions=None)
    last_wall: list[float | None] = [None]
    registry = make_registry(state, max_label_keys=settings.max_label_keys, last_event_wallclock=lambda: last_wall[0])
    restoring: dict[int, asyncio.Task[None]] = {}
    producer_box: list[AIOKafkaProducer] = []

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

    async def checkpoint(partitions: list[int]) -> int:
        """Write dirty keys of ``partitions`` to the changelog and flush; returns records written."""
        p = await producer()
        n = 0
        for part in partitions:
            if part not in state.parts:
                continue
            for key, value in state.checkpoint_records(part):
                await p.send(changelog, value, key=key, partition=part)
                n += 1
        await p.flush()
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

    @app.agent(events_topic, concurrency=1)
    async def consume(stream: Any) -> None:
        async for batch in stream.take_events(settings.batch_size, within=settings.batch_within):
            out = Output()
            for ev in batch:
                msg = ev.message
                if msg.partition not in state.parts or msg.partition in restoring and not restoring[msg.partition].done():
                    await ensure_restored(msg.partition)
                state.stats.messages += 1
                ts = msg.timestamp if msg.timestamp and msg.timestamp > 0 else None
                decoded = state.parts[msg.partition].pipeline.decoder.decode(ev.value, Source(msg.topic, msg.partition, msg.offset), default_ts=ts)
                out.extend(state.process(msg.partition, msg.offset, decoded))
            await publish(out)
            last_wall[0] = time.time()
            due = state.due_partitions()
            if due:
                await checkpoint(due)
                # Offsets of earlier batches (acked) are committed; this batch is acked
                # after the loop body and is covered by the checkpoint's offsets.
                await app.consumer.commit()

    @app.timer(interval=max(0.2, min(5.0, settings.snapshot_interval / 4)))
    async def idle_close() -> None:
        # With no traffic the event-time watermark stops; advance it by wall time
        # so the last windows of quiet keys still close.
        if last_wall[0] is None:
            return
        idle = time.time() - last_wall[0]
        max_ts = state.max_ts
        if idle >= settings.idle_close_after and max_ts > 0:
            out = state.advance_to(max_ts + idle)
            await publish(out)
            due = state.due_partitions()
            if due:
                await checkpoint(due)

    @app.on_partitions_assigned.connect
    async def on_assigned(_: Any, assigned: set[Any], **kwargs: Any) -> None:
        for tp in assigned:
            if tp.topic == settings.input_topic and tp.partition not in state.parts and tp.partition not in restoring:
                restoring[tp.partition] = asyncio.ensure_future(restore(tp.partition))

    @app.on_partitions_revoked.connect
    async def on_revoked(_: Any, revoked: set[Any], **kwargs: Any) -> None:
        parts = sorted(tp.partition for tp in revoked if tp.topic == settings.input_topic)
        mine = [p for p in parts if p in state.parts]
        if mine:
            n = await checkpoint(mine)
            log.info("partitions %s revoked: checkpointed %d keys", mine, n)
        for p in parts:
            state.revoke(p)
            restoring.pop(p, None)

    @app.on_before_shutdown.connect
    async def on_shutdown(_: Any, **kwargs: Any) -> None:
        parts = sorted(state.parts)
        if parts:
            n = await checkpoint(parts)
            log.info("shutdown: checkpointed %d keys", n)
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
