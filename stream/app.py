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
from dataclasses import dataclass, replace
from typing import Any, Callable

import faust
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import CommitFailedError, ConsumerStoppedError, IllegalStateError, TopicAlreadyExistsError
from faust.app.base import BootStrategy

from .metrics import make_registry
from .merge import MergeState
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


def partials_topic(settings: Settings) -> str:
    return f"{settings.app_id}-partials"


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
        compact = {"cleanup.policy": "compact"}
        wanted = [
            NewTopic(settings.shift_topic, outputs, rf),
            NewTopic(settings.dead_letter_topic, outputs, rf),
            NewTopic(state_topic(settings), partitions, rf, topic_configs=compact),
        ]
        if settings.topology == "two_stage":
            wanted += [
                NewTopic(partials_topic(settings), partitions, rf, topic_configs={"retention.ms": str(7 * 86400 * 1000)}),
                NewTopic(f"{settings.app_id}-merge-state", partitions, rf, topic_configs=compact),
            ]
        await _create(admin, [t for t in wanted if t.name not in existing])
        return partitions
    finally:
        await admin.close()


async def topic_partitions(conn: Any, topics: list[str], wait_s: float = 30.0) -> dict[str, int]:
    """Partition counts of the topics, waiting for just-created ones to show in the
    metadata (0 for one still missing after ``wait_s``)."""
    admin = AIOKafkaAdminClient(**conn.admin_kwargs())
    await admin.start()
    try:
        deadline = time.monotonic() + wait_s
        while True:
            counts = {t["topic"]: len(t.get("partitions") or []) for t in await admin.describe_topics(topics)}
            if all(counts.get(t) for t in topics) or time.monotonic() > deadline:
                return counts
            await asyncio.sleep(0.5)
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
    """What :func:`build_worker` wires: the Faust app hosting the process, and its Workers."""

    app: faust.App
    settings: Settings
    workers: list[Worker]


@dataclass(slots=True, frozen=True)
class StageSpec:
    """One consumer group of the process: what it reads, its state, where it writes."""

    name: str
    group: str
    state: PartitionedState
    topics: WorkerTopics
    fetch_skipping: bool
    publish_incidents: bool


def stage_specs(settings: Settings, input_partitions: int, partials_partitions: int) -> list[StageSpec]:
    """Keyed: one stage. Two-stage: partials per input partition, then the merge."""
    t = settings
    if t.topology == "keyed":
        state = PartitionedState(t.pipeline_config(), t.make_decoder, max_checkpoint_age=t.checkpoint_interval)
        topics = WorkerTopics(t.input_topic, t.shift_topic, t.dead_letter_topic, state_topic(t))
        return [StageSpec("input", t.app_id, state, topics, True, True)]
    s1 = PartitionedState(replace(t.pipeline_config(), stage="partials"), t.make_decoder, max_checkpoint_age=t.checkpoint_interval)
    topics1 = WorkerTopics(
        t.input_topic, t.shift_topic, t.dead_letter_topic, state_topic(t), partials_topic(t), partials_partitions, input_partitions
    )
    s2 = MergeState(replace(t.pipeline_config(), stage="merge"), t.checkpoint_interval, t.merge_grace, stats=s1.stats)
    topics2 = WorkerTopics(partials_topic(t), t.shift_topic, t.dead_letter_topic, f"{t.app_id}-merge-state")
    return [StageSpec("input", t.app_id, s1, topics1, True, False), StageSpec("merge", f"{t.app_id}-merge", s2, topics2, False, True)]


def make_consumer(settings: Settings, conn: Any, group: str, instance: str | None) -> AIOKafkaConsumer:
    """The input reader (created inside the running loop: aiokafka binds to it).

    With ``--instance-id`` it is a static member (group.instance.id): a restarted
    worker gets its partitions back without a rebalance, within the session timeout.
    """
    session_ms = int(settings.session_timeout * 1000)
    return AIOKafkaConsumer(
        **conn.consumer_kwargs(client_id=f"{group}-input"),
        group_id=group,
        group_instance_id=instance,
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


async def start_stage(settings: Settings, conn: Any, spec: StageSpec, producer: AIOKafkaProducer, health: Health) -> Worker:
    """The stage's consumer joined to its group, and its Worker."""
    instance = f"{settings.instance_id}-{spec.name}" if settings.instance_id else None
    consumer = make_consumer(settings, conn, spec.group, instance)
    await consumer.start()
    w = Worker(
        spec.state,
        spec.topics,
        consumer,
        producer,
        lambda part: read_changelog(conn, spec.topics.changelog, part),
        batch_size=settings.batch_size,
        batch_within_s=settings.batch_within,
        idle_close_after_s=settings.idle_close_after,
        empty_partition_after_s=settings.empty_partition_after,
        commit_errors=(CommitFailedError, IllegalStateError),
        fetch=(lambda ms, n: getmany_skipping(consumer, timeout_ms=ms, max_records=n)) if spec.fetch_skipping else None,
        health=health,
        on_shift=incidents_publisher(settings.shift_topic) if spec.publish_incidents else None,
    )
    consumer.subscribe([spec.topics.input], listener=_Listener(w))
    log.info("reading %s as group %s%s", spec.topics.input, spec.group, f" (static member {instance})" if instance else "")
    return w


def build_worker(settings: Settings, conn: Any) -> WorkerProcess:
    """The Faust app around the process's Workers: one (keyed) or two (two-stage) consumer groups."""
    app = _WorkerApp(settings.app_id, broker=settings.broker, web_enabled=False, store="memory://", datadir=settings.data_dir)
    health = Health(started=time.monotonic())
    workers: list[Worker] = []
    box: dict[str, Any] = {}

    async def start() -> None:
        await connect(conn, health)
        if settings.create_topics:
            await ensure_topics(settings, conn)
        wanted = [settings.input_topic] + ([partials_topic(settings)] if settings.topology == "two_stage" else [])
        counts = await topic_partitions(conn, wanted)
        if settings.topology == "two_stage" and not counts.get(partials_topic(settings)):
            raise FatalKafkaError(f"topic {partials_topic(settings)} is missing: create it (as many partitions as the input) or run with --create-topics")
        producer = box["producer"] = make_producer(conn)
        await producer.start()
        specs = box["specs"] = stage_specs(settings, counts.get(settings.input_topic, 0), counts.get(partials_topic(settings), 0))
        for spec in specs:
            workers.append(await start_stage(settings, conn, spec, producer, health))

    view = _View(box, PartitionedState(settings.pipeline_config(), settings.make_decoder))
    registry = make_registry(
        view,
        max_label_keys=settings.max_label_keys,
        last_event_wallclock=lambda: workers[0].last_wall if workers else None,
        **({"buckets": settings.histogram_buckets} if settings.histogram_buckets else {}),
    )

    @app.task
    async def run() -> None:
        """The hot path: each stage's record batches, applied in order."""
        try:
            await start()
            await asyncio.gather(*(w.run() for w in workers))
        except ConsumerStoppedError:
            if not workers or not workers[0].stopping:
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
        for w in workers:
            await w.tick()

    @app.timer(interval=10.0)
    async def probe_broker() -> None:
        if workers:
            await probe(conn, health)

    @app.on_before_shutdown.connect
    async def on_shutdown(_: Any, **kwargs: Any) -> None:
        for w in workers:  # stage 1 first: its last partials reach stage 2's topic before it stops
            await w.shutdown()
        # Leaving the groups at once lets the others take the partitions without waiting
        # for the session timeout (a static member stays, by design).
        for w in workers:
            await w.consumer.stop()  # type: ignore[attr-defined]
        if "producer" in box:
            await box["producer"].stop()

    @app.task
    async def web() -> None:
        runner = await serve(make_web_app(view, registry, health=health, ready=lambda: _ready(workers, health)), settings.web_host, settings.web_port)
        log.info("serving /metrics, /healthz, /readyz and the live page on http://%s:%d/", settings.web_host, settings.web_port)
        try:
            while True:
                await asyncio.sleep(3600)
        finally:
            await runner.cleanup()

    return WorkerProcess(app=app, settings=settings, workers=workers)


def _ready(workers: list[Worker], health: Health) -> tuple[bool, str]:
    if not workers:
        return False, health.reason
    for w in workers:
        ok, why = w.readiness()
        if not ok:
            return False, why
    return True, "ok"


class _View:
    """What /metrics and the page read: the stage that holds the per-key state (the
    last); before the stages exist (still connecting), an empty state."""

    def __init__(self, box: dict[str, Any], empty: PartitionedState) -> None:
        self._box, self._empty = box, empty

    def __getattr__(self, name: str) -> Any:
        specs = self._box.get("specs")
        return getattr(specs[-1].state if specs else self._empty, name)


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
