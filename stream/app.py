"""The worker process: wires Kafka clients, Faust and the web task to a :class:`Worker`.

The logic (assignment, restore, apply, checkpoint, commit, publish) lives in
:mod:`stream.worker`, behind small protocols so it is tested in-process. Here:

- Faust (faust-streaming) hosts the process — its services, the idle-close timer,
  the web task, signals and shutdown — with its own Kafka client switched off.
- The input topic is read by one aiokafka consumer in the worker's group, a record
  batch at a time, not by a Faust agent: an agent costs ~160 µs per message before
  its body runs (a Message, an Event, a task per delivery, an ack each), which caps a
  worker at ~6,000 messages/s (benchmarks/throughput.py).
- aiokafka's rebalance listener calls :meth:`Worker.on_revoked` (checkpoint and
  commit before the rejoin) and :meth:`Worker.on_assigned` (restore from the
  compacted changelog ``<app_id>-state`` before the first record).
- Why not a Faust ``Table``: a table's changelog position cannot be tied to the
  input offsets, and writing one from batches places a key's state by hashing the
  key rather than in the partition its events come from (faust #497).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

import faust
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import CommitFailedError, ConsumerStoppedError, IllegalStateError, TopicAlreadyExistsError
from faust.app.base import BootStrategy

from .metrics import make_registry
from .partitions import PartitionedState
from .settings import Settings
from .web import make_web_app, serve
from .worker import Worker, WorkerTopics

__all__ = ["WorkerProcess", "build_worker", "ensure_topics", "run_worker", "read_changelog"]

log = logging.getLogger("shiftwatch.worker")


def bootstrap_servers(broker: str) -> str:
    return ",".join(b.split("://", 1)[-1] for b in broker.split(","))


def state_topic(settings: Settings) -> str:
    return f"{settings.app_id}-state"


async def ensure_topics(settings: Settings) -> int:
    """Create missing topics; returns the input topic's partition count.

    Shift and dead-letter topics get ``--output-partitions`` (default: as many as the
    input), still keyed by key; every topic gets ``--replication-factor``, by default
    the broker's own ``default.replication.factor``.
    """
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers(settings.broker), client_id="shiftwatch-admin")
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        rf = settings.replication_factor if settings.replication_factor > 0 else await broker_default_rf(admin)
        if settings.input_topic not in existing:
            await _create(admin, [NewTopic(settings.input_topic, settings.partitions, rf)])
        meta = await admin.describe_topics([settings.input_topic])
        partitions = len(meta[0]["partitions"]) if meta and meta[0].get("partitions") else settings.partitions
        outputs = settings.output_partitions or partitions
        wanted = [
            NewTopic(settings.shift_topic, outputs, rf),
            NewTopic(settings.dead_letter_topic, outputs, rf),
            NewTopic(state_topic(settings), partitions, rf, topic_configs={"cleanup.policy": "compact"}),
        ]
        await _create(admin, [t for t in wanted if t.name not in existing])
        return partitions
    finally:
        await admin.close()


async def broker_default_rf(admin: AIOKafkaAdminClient) -> int:
    """The cluster's ``default.replication.factor``, capped at its broker count.

    aiokafka speaks CreateTopics up to v3, which cannot ask for "the broker's default"
    (-1, KIP-464), so the default is read from a broker's configuration instead.
    """
    cluster = await admin.describe_cluster()
    brokers = [b["node_id"] for b in cluster.get("brokers", [])]
    if not brokers:
        return 1
    resp = await admin.describe_configs([ConfigResource(ConfigResourceType.BROKER, str(brokers[0]), configs={"default.replication.factor": None})])
    for r in resp:
        for res in r.resources:
            for entry in res[4]:
                if entry[0] == "default.replication.factor" and entry[1]:
                    return max(1, min(int(entry[1]), len(brokers)))
    return 1


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


class _Listener(ConsumerRebalanceListener):
    """aiokafka's rebalance callbacks, handed to the :class:`Worker`."""

    def __init__(self, worker: Worker) -> None:
        self.worker = worker

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self.worker.on_revoked(revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        await self.worker.on_assigned(assigned)


@dataclass(slots=True)
class WorkerProcess:
    """What :func:`build_worker` wires: the Faust app hosting the process, and the state."""

    app: faust.App
    state: PartitionedState
    settings: Settings


def make_state(settings: Settings) -> PartitionedState:
    return PartitionedState(settings.pipeline_config(), settings.make_decoder, max_checkpoint_age=settings.checkpoint_interval)


def make_consumer(settings: Settings) -> AIOKafkaConsumer:
    """The input reader (created inside the running loop: aiokafka binds to it)."""
    session_ms = int(settings.session_timeout * 1000)
    return AIOKafkaConsumer(
        bootstrap_servers=bootstrap_servers(settings.broker),
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


def make_producer(settings: Settings) -> AIOKafkaProducer:
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap_servers(settings.broker), acks="all", linger_ms=5, max_request_size=8 << 20, enable_idempotence=True
    )


def build_worker(settings: Settings) -> WorkerProcess:
    """The Faust app around one :class:`Worker` (one per worker process)."""
    state = make_state(settings)
    app = _WorkerApp(settings.app_id, broker=settings.broker, web_enabled=False, store="memory://", datadir=settings.data_dir)
    box: dict[str, Any] = {}
    registry = make_registry(state, max_label_keys=settings.max_label_keys, last_event_wallclock=lambda: box["w"].last_wall if "w" in box else None)
    bootstrap = bootstrap_servers(settings.broker)
    changelog = state_topic(settings)

    async def start() -> Worker:
        consumer, producer = make_consumer(settings), make_producer(settings)
        await producer.start()
        await consumer.start()
        w = box["w"] = Worker(
            state,
            WorkerTopics(settings.input_topic, settings.shift_topic, settings.dead_letter_topic, changelog),
            consumer,
            producer,
            lambda part: read_changelog(bootstrap, changelog, part),
            batch_size=settings.batch_size,
            batch_within_s=settings.batch_within,
            idle_close_after_s=settings.idle_close_after,
            commit_errors=(CommitFailedError, IllegalStateError),
        )
        consumer.subscribe([settings.input_topic], listener=_Listener(w))
        log.info("reading %s as group %s", settings.input_topic, settings.app_id)
        return w

    @app.task
    async def read_input() -> None:
        """The hot path: record batches from the input topic, applied in order."""
        w = await start()
        try:
            await w.run()
        except ConsumerStoppedError:
            if not w.stopping:
                raise
        except Exception as exc:
            # Not bad input (that never raises): a bug or a lost broker beyond retries.
            # Crash the worker loudly rather than stall with a dead reader.
            log.exception("the input reader failed")
            await app.crash(exc)

    @app.timer(interval=max(0.2, min(5.0, settings.snapshot_interval / 4)))
    async def idle_close() -> None:
        if "w" in box:
            await box["w"].tick()

    @app.on_before_shutdown.connect
    async def on_shutdown(_: Any, **kwargs: Any) -> None:
        w: Worker | None = box.get("w")
        if w is None:
            return
        await w.shutdown()
        # Leaving the group at once lets the others take the partitions without
        # waiting for the session timeout.
        await w.consumer.stop()  # type: ignore[attr-defined]
        await w.producer.stop()  # type: ignore[attr-defined]

    @app.task
    async def web() -> None:
        runner = await serve(make_web_app(state, registry), settings.web_host, settings.web_port)
        log.info("serving /metrics and the live page on http://%s:%d/", settings.web_host, settings.web_port)
        try:
            while True:
                await asyncio.sleep(3600)
        finally:
            await runner.cleanup()

    return WorkerProcess(app=app, state=state, settings=settings)


def run_worker(settings: Settings) -> None:
    if settings.create_topics:
        asyncio.run(ensure_topics(settings))
    w = build_worker(settings)
    worker = faust.Worker(w.app, loglevel=settings.log_level, quiet=True)
    worker.execute_from_commandline()
