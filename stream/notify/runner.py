"""``shiftwatch notify``: a consumer group on the shift topic feeding the sinks.

Each sink has its own queue (``dispatch``) and delivers in topic order at its own pace;
a partition's offset is committed up to its first record some sink has not finished
(delivered, filtered, duplicate or dead-lettered, all recorded in the delivered topic).
A crash therefore re-reads only unfinished records, and the delivered topic keeps the
ones a sink did finish from being posted twice.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import random
import signal
import sys
import tomllib
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import web
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError, TopicAlreadyExistsError
from prometheus_client import generate_latest

from .config import ConfigError, NotifyConfig, load_config
from .delivery import RetryPolicy
from .dispatch import Dispatcher
from .notifier import Notifier, NotifyMetrics
from .secrets import Redactor
from .sinks import make_sink
from .store import DeliveredStore

__all__ = ["Clients", "run_notify", "build_notify_parser", "notify_async", "bootstrap_servers"]

log = logging.getLogger("shiftwatch.notify")


def bootstrap_servers(broker: str) -> str:
    """``kafka://h1:9092,kafka://h2:9092`` -> ``h1:9092,h2:9092``."""
    return ",".join(b.strip().split("://", 1)[-1] for b in broker.split(","))


@dataclass(slots=True, frozen=True)
class Clients:
    """aiokafka kwargs (bootstrap and security) for each kind of client."""

    consumer: dict[str, Any]
    producer: dict[str, Any]
    admin: dict[str, Any]

    @classmethod
    def plain(cls, broker: str, extra: dict[str, Any] | None = None) -> "Clients":
        kw = {"bootstrap_servers": bootstrap_servers(broker), **(extra or {})}
        return cls(kw, kw, kw)

    @classmethod
    def from_connection(cls, conn: Any) -> "Clients":
        """From a ``stream.connection.KafkaConnection`` (TLS, SASL)."""
        return cls(conn.consumer_kwargs(), conn.producer_kwargs(), conn.admin_kwargs())


async def ensure_topics(clients: Clients, cfg: NotifyConfig, shift_topic: str) -> None:
    admin = AIOKafkaAdminClient(**clients.admin)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        rf = cfg.replication_factor
        wanted = [NewTopic(cfg.delivered_topic, 1, rf, topic_configs={"cleanup.policy": "compact"}),
                  NewTopic(cfg.dead_letter_topic, 1, rf), NewTopic(shift_topic, 1, rf)]
        todo = [t for t in wanted if t.name not in existing]
        if todo:
            try:
                await admin.create_topics(todo)
            except TopicAlreadyExistsError:
                pass
    finally:
        await admin.close()


def _web(metrics: NotifyMetrics, ready: asyncio.Event) -> web.Application:
    async def readyz(_: web.Request) -> web.Response:
        return web.Response(text="ready\n" if ready.is_set() else "starting\n", status=200 if ready.is_set() else 503)

    async def metrics_page(_: web.Request) -> web.Response:
        return web.Response(body=generate_latest(metrics.registry), headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"})

    app = web.Application()
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/healthz", lambda _: web.Response(text="ok\n"))
    app.router.add_get("/metrics", metrics_page)
    return app


class _Rebalance(ConsumerRebalanceListener):
    """Revoked: commit what every sink finished, drop the rest (the next owner re-reads it).
    Assigned: read what other notifiers delivered meanwhile, then report ready."""

    def __init__(self, store: DeliveredStore, ready: asyncio.Event) -> None:
        self.store, self.ready = store, ready
        self.consumer: AIOKafkaConsumer | None = None
        self.dispatcher: Dispatcher | None = None

    async def on_partitions_revoked(self, revoked: Any) -> None:
        if self.consumer is not None and self.dispatcher is not None and revoked:
            gone = {(tp.topic, tp.partition) for tp in revoked}
            await _commit(self.consumer, self.dispatcher, only=gone)
            self.dispatcher.forget(gone)

    async def on_partitions_assigned(self, assigned: Any) -> None:
        await self.store.catch_up()
        self.ready.set()


async def notify_async(clients: Clients, shift_topic: str, cfg: NotifyConfig, stop: asyncio.Event, redact: Redactor | None = None) -> None:
    """Run until ``stop`` is set."""
    redact = redact or Redactor(cfg.secrets())
    await ensure_topics(clients, cfg, shift_topic)
    producer = AIOKafkaProducer(**{**clients.producer, "acks": "all", "enable_idempotence": True, "linger_ms": 0})
    await producer.start()
    metrics, ready = NotifyMetrics([s.name for s in cfg.sinks]), asyncio.Event()
    runner = web.AppRunner(_web(metrics, ready), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, cfg.web_host, cfg.web_port)
    await site.start()
    consumer = None
    try:
        store = DeliveredStore(cfg.delivered_topic, lambda k, v: producer.send_and_wait(cfg.delivered_topic, v, key=k), clients.consumer)
        await store.catch_up()
        rng = random.Random(cfg.jitter_seed)
        policy = lambda: RetryPolicy(cfg.max_attempts, cfg.backoff_initial_s, cfg.backoff_max_s, rng)  # noqa: E731
        async with aiohttp.ClientSession() as session:
            notifier = Notifier(cfg, [make_sink(s) for s in cfg.sinks], store, session,
                                lambda v: producer.send_and_wait(cfg.dead_letter_topic, v), metrics, redact, policy)
            dispatcher = Dispatcher(notifier)
            consumer = AIOKafkaConsumer(**{
                **clients.consumer, "group_id": cfg.group, "enable_auto_commit": False, "auto_offset_reset": cfg.start,
                "fetch_max_wait_ms": 100,  # a shift waits at most this long in an idle fetch
                "session_timeout_ms": int(cfg.session_timeout_s * 1000),
                "heartbeat_interval_ms": max(100, int(cfg.session_timeout_s * 100)),
            })
            await consumer.start()
            listener = _Rebalance(store, ready)
            listener.consumer, listener.dispatcher = consumer, dispatcher
            consumer.subscribe([shift_topic], listener=listener)
            log.info("notify: group %s on %s, %d sink(s): %s", cfg.group, shift_topic, len(cfg.sinks), ", ".join(f"{s.name} ({s.type})" for s in cfg.sinks))
            await _loop(consumer, dispatcher, stop, cfg.timeout_s)
    finally:
        if consumer is not None:
            await consumer.stop()
        await producer.stop()
        await runner.cleanup()


async def _loop(consumer: AIOKafkaConsumer, dispatcher: Dispatcher, stop: asyncio.Event, drain_s: float) -> None:
    """Fetch, queue per sink, commit what all sinks finished; pause fetching while a sink's
    queue is full (the consumer keeps polling, so it stays in the group)."""
    dispatcher.start()
    try:
        while not stop.is_set() and dispatcher.error is None:
            assigned = consumer.assignment()
            (consumer.pause if dispatcher.full else consumer.resume)(*assigned)
            batch = await consumer.getmany(timeout_ms=100, max_records=100)
            for tp, records in batch.items():
                for rec in records:
                    await dispatcher.submit(tp.topic, tp.partition, rec.offset, rec.value)
            await _commit(consumer, dispatcher)
        await dispatcher.drain(drain_s)
        await _commit(consumer, dispatcher)
    finally:
        await dispatcher.close()
    if dispatcher.error is not None:
        raise dispatcher.error


async def _commit(consumer: AIOKafkaConsumer, dispatcher: Dispatcher, only: set[tuple[str, int]] | None = None) -> None:
    assigned = {(tp.topic, tp.partition) for tp in consumer.assignment()}
    todo = {TopicPartition(t, p): off for (t, p), off in dispatcher.committable().items()
            if (t, p) in assigned and (only is None or (t, p) in only) and dispatcher.committed.get((t, p)) != off}
    if not todo:
        return
    try:
        await consumer.commit(todo)
    except (CommitFailedError, IllegalStateError) as e:
        log.warning("offset commit failed (%s); the records are re-read and de-duplicated", e)
        return
    dispatcher.committed.update({(tp.topic, tp.partition): off for tp, off in todo.items()})


def run_notify(broker: str, shift_topic: str, config_path: str, web_port: int | None = None,
               client_kwargs: dict[str, Any] | None = None, env: dict[str, str] | None = None, connection: Any = None) -> int:
    """Load the config and run until SIGTERM/SIGINT. 0 on a clean stop, 2 on a bad config, 1 on a broker error.
    ``connection`` (a ``KafkaConnection``) wins over ``broker`` and ``client_kwargs``."""
    try:
        cfg = load_config(config_path, env)
    except ConfigError as e:
        print(f"shiftwatch notify: error: {e}", file=sys.stderr)
        return 2
    if web_port is not None:
        cfg = _with_port(cfg, web_port)
    redact = Redactor(cfg.secrets())
    for h in logging.getLogger().handlers or []:
        h.addFilter(redact)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        clients = Clients.from_connection(connection) if connection is not None else Clients.plain(broker, client_kwargs)
        await notify_async(clients, shift_topic, cfg, stop, redact)

    try:
        asyncio.run(main())
    except (KafkaError, OSError) as e:
        log.error("notify stopped: %s", redact(str(e) or type(e).__name__))
        return 1
    return 0


def _with_port(cfg: NotifyConfig, port: int) -> NotifyConfig:
    from dataclasses import replace

    return replace(cfg, web_port=port)


def connection_from_settings(settings: Any) -> Any:
    """The shared ``KafkaConnection`` from the worker's settings (same broker, TLS, SASL)."""
    from ..connection import KafkaConnection

    sasl = str(settings.security_protocol).upper().startswith("SASL_")
    return KafkaConnection.from_options(
        settings.broker, security_protocol=settings.security_protocol, sasl_mechanism=settings.sasl_mechanism if sasl else None,
        sasl_username=settings.sasl_username or None, sasl_password_file=settings.sasl_password_file or None,
        ssl_cafile=settings.ssl_cafile or None, ssl_certfile=settings.ssl_certfile or None, ssl_keyfile=settings.ssl_keyfile or None,
        compression=settings.compression, client_id="shiftwatch-notify",
    )


def run_notify_settings(settings: Any, config_path: str, web_port: int | None = None) -> int:
    """``shiftwatch notify``: the worker's Kafka options from the settings table, sinks from ``config_path``."""
    try:
        conn = connection_from_settings(settings)
    except ValueError as e:
        print(f"shiftwatch notify: error: {e}", file=sys.stderr)
        return 2
    return run_notify(settings.broker, settings.shift_topic, config_path, web_port=web_port, connection=conn)


def settings_file(config_path: str | None) -> str | None:
    """The notifier's file also serves the shared options when it has a [shiftwatch] table."""
    if not config_path:
        return None
    try:
        with open(config_path, "rb") as fh:
            return config_path if "shiftwatch" in tomllib.load(fh) else None
    except (OSError, tomllib.TOMLDecodeError):
        return None


def add_notify_arguments(p: argparse.ArgumentParser, standalone: bool = True) -> None:
    if standalone:
        p.add_argument("--config", required=True, metavar="FILE", help="notifier config (TOML, or YAML): sinks, filters, retries")
        p.add_argument("--broker", default=os.environ.get("SHIFTWATCH_BROKER", "kafka://127.0.0.1:9092"), help="kafka://HOST:PORT[,...] (env SHIFTWATCH_BROKER)")
        p.add_argument("--shift-topic", default=os.environ.get("SHIFTWATCH_SHIFT_TOPIC", "shiftwatch-shifts"), help="topic of shift events (env SHIFTWATCH_SHIFT_TOPIC)")
        p.add_argument("--log-level", default=os.environ.get("SHIFTWATCH_LOG_LEVEL", "info"), choices=("crit", "error", "warn", "info", "debug"))
    p.add_argument("--notify-web-port", "--web-port" if standalone else "--notify-port", dest="notify_web_port", type=int, default=None,
                   help="port of the notifier's /metrics and /readyz (overrides notify.web_port in the config)")


def build_notify_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``notify`` to the shiftwatch CLI's subparsers; the caller adds the shared Kafka
    options (whose --config FILE is the notifier's config)."""
    p = subparsers.add_parser("notify", help="deliver shifts, retractions and incidents to Slack, webhooks and Grafana annotations",
                              description="Reads the shift topic in its own consumer group and delivers each event to the sinks "
                              "of the --config file (TOML or YAML: [notify], [[sinks]]; an optional [shiftwatch] table holds the Kafka options).")
    add_notify_arguments(p, standalone=False)
    return p


def main(argv: list[str] | None = None) -> int:
    """``python -m stream.notify``: the notifier on its own, with a plain broker string."""
    from ..connection import KafkaConnection

    p = argparse.ArgumentParser(prog="shiftwatch notify")
    add_notify_arguments(p)
    args = p.parse_args(argv)
    level = {"crit": logging.CRITICAL, "warn": logging.WARNING}.get(args.log_level, args.log_level.upper())
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        conn = KafkaConnection.from_options(args.broker, compression="none", client_id="shiftwatch-notify")
    except ValueError as e:
        print(f"shiftwatch notify: error: {e}", file=sys.stderr)
        return 2
    return run_notify(args.broker, args.shift_topic, args.config, web_port=args.notify_web_port, connection=conn)
