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
import sys
import time
from dataclasses import dataclass
from typing import Any, Callable

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
from .connection import getmany_skipping, redact_kafka_logs
from .health import FatalKafkaError, Health, connect, fatal_exit, probe
from .incidents import IncidentGrouper
from .records import dumps
from .worker import Worker, WorkerTopics

__all__ = ["WorkerProcess", "build_worker", "ensure_topics", "run_worker", "read_changelog"]

log = logging.getLogger("shiftwatch.worker")


def state_topic(settings: Settings) -> str:
    return f"{settings.app_id}-state"


async def ensure_topics(settings: Settings, conn: Any = None) -> int:
    """Create missing topics; returns the input topic's partition count.

    Shift and dead-letter topics get ``--output-partitions`` (default: as many as the
    input), still keyed by key; every topic gets ``--replication-factor``, by default
    the broker's own ``default.replication.factor``.
    """
    conn = conn or settings.connection()
    admin = AIOKafkaAdminClient(**conn.admin_kwargs())
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


async def read_changelog(conn: Any, topic: str, partition: int) -> list[tuple[bytes, bytes | None]]:
    """Every (key, value) of one changelog partition, oldest first, up to its current end."""
    tp = TopicPartition(topic, partition)
    c = AIOKafkaConsumer(
        **conn.consumer_kwargs(enable_auto_commit=False, group_id=None, auto_offset_reset="earliest", max_partition_fetch_bytes=8 << 20)
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


def make_consumer(settings: Settings, conn: Any) -> AIOKafkaConsumer:
    """The input reader (created inside the running loop: aiokafka binds to it).

    With ``--instance-id`` it is a static member (group.instance.id): a restarted
    worker gets its partitions back without a rebalance, within the session timeout.
    """
    session_ms = int(settings.session_timeout * 1000)
    return AIOKafkaConsumer(
        **conn.consumer_kwargs(client_id=f"{settings.app_id}-input"),
        group_id=settings.app_id,
        group_instance_id=settings.instance_id or None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        # 1 MiB per partition holds only ~200 batched messages: the loop waited for data.
        max_partition_fetch_bytes=8 << 20,
        max_poll_records=settings.batch_size,
        session_timeout_ms=session_ms,
        heartbeat_interval_ms=max(500, session_ms // 10),
        rebalance_timeout_ms=max(session_ms, 10_000),
    )


def make_producer(conn: Any) -> AIOKafkaProducer:
    return AIOKafkaProducer(**conn.producer_kwargs(acks="all", linger_ms=5, max_request_size=8 << 20, enable_idempotence=True))


def incidents_publisher(topic: str) -> Callable[[Any], list[tuple[str, bytes, bytes]]]:
    """Incident records (many keys shifting together) beside the shifts, on the shift topic."""
    grouper = IncidentGrouper()

    def on_shift(event: Any) -> list[tuple[str, bytes, bytes]]:
        return [(topic, inc.id.encode(), dumps(inc.to_json()).encode()) for inc in grouper.update(event)]

    return on_shift


def build_worker(settings: Settings, conn: Any) -> WorkerProcess:
    """The Faust app around one :class:`Worker` (one per worker process)."""
    state = make_state(settings)
    app = _WorkerApp(settings.app_id, broker=settings.broker, web_enabled=False, store="memory://", datadir=settings.data_dir)
    box: dict[str, Any] = {}
    health = Health(started=time.monotonic())
    registry = make_registry(
        state,
        max_label_keys=settings.max_label_keys,
        last_event_wallclock=lambda: box["w"].last_wall if "w" in box else None,
        **({"buckets": settings.histogram_buckets} if settings.histogram_buckets else {}),
    )
    changelog = state_topic(settings)

    async def start() -> Worker:
        await connect(conn, health)
        if settings.create_topics:
            await ensure_topics(settings, conn)
        consumer, producer = make_consumer(settings, conn), make_producer(conn)
        await producer.start()
        await consumer.start()
        w = box["w"] = Worker(
            state,
            WorkerTopics(settings.input_topic, settings.shift_topic, settings.dead_letter_topic, changelog),
            consumer,
            producer,
            lambda part: read_changelog(conn, changelog, part),
            batch_size=settings.batch_size,
            batch_within_s=settings.batch_within,
            idle_close_after_s=settings.idle_close_after,
            commit_errors=(CommitFailedError, IllegalStateError),
            fetch=lambda timeout_ms, max_records: getmany_skipping(consumer, timeout_ms=timeout_ms, max_records=max_records),
            health=health,
            on_shift=incidents_publisher(settings.shift_topic),
        )
        consumer.subscribe([settings.input_topic], listener=_Listener(w))
        log.info("reading %s as group %s%s", settings.input_topic, settings.app_id, f" (static member {settings.instance_id})" if settings.instance_id else "")
        return w

    @app.task
    async def read_input() -> None:
        """The hot path: record batches from the input topic, applied in order."""
        try:
            w = await start()
            await w.run()
        except ConsumerStoppedError:
            if "w" not in box or not box["w"].stopping:
                raise
        except FatalKafkaError as exc:
            fatal_exit(str(exc))
        except Exception as exc:
            # Not bad input (that never raises): a bug or a lost broker beyond retries.
            # Crash the worker loudly rather than stall with a dead reader.
            log.exception("the input reader failed")
            await app.crash(exc)

    @app.timer(interval=max(0.2, min(5.0, settings.snapshot_interval / 4)))
    async def idle_close() -> None:
        if "w" in box:
            await box["w"].tick()

    @app.timer(interval=10.0)
    async def probe_broker() -> None:
        if "w" in box:
            await probe(conn, health)

    @app.on_before_shutdown.connect
    async def on_shutdown(_: Any, **kwargs: Any) -> None:
        w: Worker | None = box.get("w")
        if w is None:
            return
        await w.shutdown()
        # Leaving the group at once lets the others take the partitions without
        # waiting for the session timeout (a static member stays, by design).
        await w.consumer.stop()  # type: ignore[attr-defined]
        await w.producer.stop()  # type: ignore[attr-defined]

    @app.task
    async def web() -> None:
        ready = lambda: box["w"].readiness() if "w" in box else (False, health.reason)  # noqa: E731
        runner = await serve(make_web_app(state, registry, health=health, ready=ready), settings.web_host, settings.web_port)
        log.info("serving /metrics, /healthz, /readyz and the live page on http://%s:%d/", settings.web_host, settings.web_port)
        try:
            while True:
                await asyncio.sleep(3600)
        finally:
            await runner.cleanup()

    return WorkerProcess(app=app, state=state, settings=settings)


def run_worker(settings: Settings) -> int:
    try:
        conn = settings.connection(client_id=settings.app_id)
    except (ValueError, OSError) as e:
        print(f"shiftwatch: error: {e}", file=sys.stderr)
        return 2
    redact_kafka_logs()
    w = build_worker(settings, conn)
    worker = faust.Worker(w.app, loglevel=settings.log_level, quiet=True)
    worker.execute_from_commandline()
    return 0
