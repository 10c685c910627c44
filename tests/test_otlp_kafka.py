"""OTLP records through the real broker: produced as the Collector's Kafka exporter does
(one export request per record, empty key, no headers), read back with aiokafka and
decoded with OtlpDecoder.decode_batch."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from opentelemetry.trace import SpanKind

from stream.events import Source
from stream.labels import compose_key
from stream.otlp import OtlpDecoder
from test_otlp_common import T0, MetricMaker, SpanMaker, collector_json

pytestmark = pytest.mark.kafka
MS = 1_000_000


async def _produce(bootstrap: str, topic: str, values: list[bytes]) -> None:
    p = AIOKafkaProducer(bootstrap_servers=bootstrap, compression_type="gzip")
    await p.start()
    try:
        for v in values:
            await p.send_and_wait(topic, v, key=None)
    finally:
        await p.stop()


async def _consume(bootstrap: str, topic: str, n: int, decoder: OtlpDecoder):
    c = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id=f"g-{uuid.uuid4().hex[:8]}")
    await c.start()
    got, out = 0, []
    try:
        while got < n:
            batch = await asyncio.wait_for(c.getmany(timeout_ms=500), 30)
            for tp, recs in batch.items():
                got += len(recs)
                assert all(r.key is None and not r.headers for r in recs)
                out.append(decoder.decode_batch([(r.value, r.offset, r.timestamp / 1000.0) for r in recs], tp.topic, tp.partition))
    finally:
        await c.stop()
    return out


def _span_records() -> list[bytes]:
    recs = []
    for i in range(4):
        m = SpanMaker("cart")
        for j in range(200):
            m.span(f"GET /r{j % 2}", T0 + (i * 200 + j) * MS, (10 + j % 7) * MS, SpanKind.SERVER, error=j % 50 == 0)
        recs.append(m.request())
    return recs


@pytest.mark.parametrize("fmt", ["otlp_proto", "otlp_json"])
def test_spans_through_kafka_decode_like_the_bytes_themselves(kafka_broker, fmt):
    topic = f"otlp_spans_{fmt}_{uuid.uuid4().hex[:6]}"
    kafka_broker.create_topic(topic, 1)
    reqs = _span_records()
    values = [r.SerializeToString() if fmt == "otlp_proto" else collector_json(r) for r in reqs]
    values.insert(2, b"\x00not otlp\xff")
    asyncio.run(_produce(kafka_broker.bootstrap, topic, values))
    batches = asyncio.run(_consume(kafka_broker.bootstrap, topic, len(values), OtlpDecoder(fmt)))
    keys = [k for b in batches for k in b.keys]
    vals = [v for b in batches for v in b.values]
    direct = OtlpDecoder(fmt).decode_batch([(v, i, None) for i, v in enumerate(values)], topic, 0)
    assert keys == direct.keys and vals == direct.values and len(keys) == 800
    assert set(keys) == {compose_key(["cart", f"GET /r{k}"]) for k in (0, 1)} | {compose_key(["cart", "GET /r0", "error"])}
    dead = [d for b in batches for d in b.dead]
    assert [(d.reason, d.source) for d in dead] == [("invalid_protobuf" if fmt == "otlp_proto" else "invalid_otlp_json", Source(topic, 0, 2))]
    assert dead[0].raw == values[2]


def test_histograms_of_two_replicas_through_kafka(kafka_broker):
    topic = f"otlp_metrics_{uuid.uuid4().hex[:6]}"
    kafka_broker.create_topic(topic, 1)
    a, b = MetricMaker(instance="a", exponential=True), MetricMaker(instance="b", exponential=True)
    values, recorded = [], 0
    for rnd in range(3):
        for m, n in ((a, 20), (b, 30)):
            m.record([0.01 * (rnd + 1)] * n, **{"http.route": "/api/cart"})
            recorded += n
            values.append(m.request().SerializeToString())
    asyncio.run(_produce(kafka_broker.bootstrap, topic, values))
    batches = asyncio.run(_consume(kafka_broker.bootstrap, topic, len(values), OtlpDecoder()))  # signal from the topic name
    points = [p for bt in batches for p in bt.hists]
    assert {p.key for p in points} == {compose_key(["cart", "http.server.request.duration", "/api/cart"])}
    assert sum(p.count for p in points) == recorded
    assert all(not bt.dead for bt in batches)
    a.shutdown(); b.shutdown()
