"""The Faust worker: Kafka in, the shared pipeline, shift events and dead letters out.

The agent takes events in batches (``take_events``) so our per-message work is
amortised; it runs with concurrency 1 (more breaks at-least-once, faust #606).
Outputs carry stable ids, so a replay after a crash re-sends the same shift event
rather than a different one.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

import faust
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from .events import Decoded, Source
from .metrics import make_registry
from .pipeline import Output, Pipeline
from .records import dumps
from .settings import Settings
from .web import make_web_app, serve

__all__ = ["Worker", "build_worker", "ensure_topics"]

log = logging.getLogger("shiftwatch.worker")


def _bootstrap(broker: str) -> str:
    return ",".join(b.split("://", 1)[-1] for b in broker.split(","))


async def ensure_topics(settings: Settings) -> None:
    """Create the input, shift and dead-letter topics if they do not exist."""
    admin = AIOKafkaAdminClient(bootstrap_servers=_bootstrap(settings.broker), client_id="shiftwatch-admin")
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = [
            NewTopic(settings.input_topic, settings.partitions, settings.replication_factor),
            NewTopic(settings.shift_topic, 1, settings.replication_factor),
            NewTopic(settings.dead_letter_topic, 1, settings.replication_factor),
        ]
        missing = [t for t in wanted if t.name not in existing]
        if missing:
            try:
                await admin.create_topics(missing)
            except TopicAlreadyExistsError:
                pass
            log.info("created topics %s", [t.name for t in missing])
    finally:
        await admin.close()


@dataclass(slots=True)
class Worker:
    app: faust.App
    pipeline: Pipeline
    settings: Settings


def build_worker(settings: Settings) -> Worker:
    """A configured Faust app around one pipeline (one per worker process)."""
    pipeline = settings.make_pipeline()
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
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
    )
    events_topic = app.topic(settings.input_topic, value_type=bytes, key_type=bytes, partitions=settings.partitions)
    shift_topic = app.topic(settings.shift_topic, value_type=bytes, key_type=bytes)
    dead_topic = app.topic(settings.dead_letter_topic, value_type=bytes, key_type=bytes)
    last_wall: list[float | None] = [None]
    registry = make_registry(pipeline, max_label_keys=settings.max_label_keys, last_event_wallclock=lambda: last_wall[0])

    async def publish(out: Output) -> None:
        for d in out.dead:
            await dead_topic.send(key=(d.source.topic if d.source else "").encode(), value=dumps(d.to_json()).encode())
        for s in out.shifts:
            await shift_topic.send(key=s.key.encode(), value=dumps(s.to_json()).encode())
            log.info("%s %s at %s: %s", s.kind, s.key, s.at, [(m.metric, round(m.relative_change, 3)) for m in s.metrics])

    @app.agent(events_topic, concurrency=1)
    async def consume(stream: Any) -> None:
        async for batch in stream.take_events(settings.batch_size, within=settings.batch_within):
            decoded = Decoded()
            for ev in batch:
                msg = ev.message
                pipeline.stats.messages += 1
                ts = msg.timestamp if msg.timestamp and msg.timestamp > 0 else None
                decoded.extend(
                    pipeline.decoder.decode(ev.value, Source(msg.topic, msg.partition, msg.offset), default_ts=ts)
                )
            await publish(pipeline.process(decoded))
            last_wall[0] = time.time()

    @app.timer(interval=max(0.2, min(5.0, settings.snapshot_interval / 4)))
    async def idle_close() -> None:
        # With no traffic the event-time watermark stops; advance it by wall time
        # so the last windows of quiet keys still close.
        if last_wall[0] is None or pipeline.max_ts <= 0:
            return
        idle = time.time() - last_wall[0]
        if idle >= settings.idle_close_after:
            await publish(pipeline.advance_to(pipeline.max_ts + idle))

    @app.task
    async def web() -> None:
        runner = await serve(make_web_app(pipeline, registry), settings.web_host, settings.web_port)
        log.info("serving /metrics and the live page on http://%s:%d/", settings.web_host, settings.web_port)
        try:
            while True:
                await asyncio.sleep(3600)
        finally:
            await runner.cleanup()

    return Worker(app=app, pipeline=pipeline, settings=settings)


def run_worker(settings: Settings) -> None:
    asyncio.run(ensure_topics(settings)) if settings.create_topics else None
    w = build_worker(settings)
    worker = faust.Worker(w.app, loglevel=settings.log_level, quiet=True)
    worker.execute_from_commandline()
