"""Every codec a producer may use is read; a batch nobody can decode is skipped, not retried forever.

The undecodable batches are made on the real broker: produced normally, then altered in
the broker's own log segment (KafkaBroker.corrupt_batch; CRC32C recomputed, so only
decoding fails). The broker validates batches on produce, so a bad one cannot be sent
in; on disk (bit rot, a buggy proxy or a foreign client writing a codec id this client
lacks) is where they come from."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from stream.connection import DECODE_ERRORS, KafkaConnection, UndecodableBatch, getmany_skipping

pytestmark = pytest.mark.kafka

CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]
CODEC_ID = {"none": 0, "gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}


async def send_batch(conn: KafkaConnection, topic: str, partition: int, values: list[bytes]) -> int:
    """Produce values as exactly one batch with conn's compression; returns its base offset."""
    p = AIOKafkaProducer(**conn.producer_kwargs(acks="all"))
    await p.start()
    try:
        batch = p.create_batch()
        for v in values:
            assert batch.append(key=None, value=v, timestamp=None) is not None
        fut = await p.send_batch(batch, topic, partition=partition)
        return (await fut).offset
    finally:
        await p.stop()


def conn_for(broker, compression: str = "none") -> KafkaConnection:
    return KafkaConnection.from_options(f"kafka://{broker.bootstrap}", compression=compression)


def test_every_codec_in_one_topic_is_read(kafka_broker):
    topic = f"codecs-{uuid.uuid4().hex[:8]}"
    kafka_broker.create_topic(topic, 2)
    want = []
    for codec in CODECS:
        for part in (0, 1):
            values = [f"{codec}-{part}-{i}-".encode() * 5 for i in range(100)]
            asyncio.run(send_batch(conn_for(kafka_broker, codec), topic, part, values))
            want += values
    # The broker kept each batch as produced (topic compression.type=producer).
    stored = {f[5] & 7 for part in (0, 1) for _, _, f in kafka_broker.stored_batches(topic, part)}
    assert stored == set(CODEC_ID.values())

    async def read_all() -> list[bytes]:
        c = AIOKafkaConsumer(topic, **conn_for(kafka_broker).consumer_kwargs(group_id=f"g-{topic}", auto_offset_reset="earliest"))
        await c.start()
        got: list[bytes] = []
        try:
            while len(got) < len(want):
                batch = await asyncio.wait_for(c.getmany(timeout_ms=500), 30)
                got += [r.value for recs in batch.values() for r in recs]
        finally:
            await c.stop()
        return got

    assert sorted(asyncio.run(read_all())) == sorted(want)


GOOD_PARTITIONS = (0, 2, 3)


@pytest.fixture
def damaged_topic(kafka_broker):
    """p0, p2, p3: 100 good records each. p1: 50 good, a 20-record lz4 batch with scrambled
    bytes, 30 good, a 20-record gzip batch relabelled with codec id 5, 30 good. With three
    healthy partitions fetched beside p1, most runs have some of them drained in the very
    getmany() call that fails (aiokafka then drops them although their positions moved)."""
    topic = f"damaged-{uuid.uuid4().hex[:8]}"
    kafka_broker.create_topic(topic, 4)
    plain, lz4, gz = conn_for(kafka_broker), conn_for(kafka_broker, "lz4"), conn_for(kafka_broker, "gzip")

    async def fill() -> tuple[int, int]:
        for part in GOOD_PARTITIONS:
            await send_batch(plain, topic, part, [f"p{part}-{i}".encode() for i in range(50)])
        await send_batch(plain, topic, 1, [f"p1-{i}".encode() for i in range(50)])
        bad1 = await send_batch(lz4, topic, 1, [f"lz4-{i}-".encode() * 20 for i in range(20)])
        await send_batch(plain, topic, 1, [f"p1-{i}".encode() for i in range(70, 100)])
        bad2 = await send_batch(gz, topic, 1, [f"gz-{i}-".encode() * 20 for i in range(20)])
        await send_batch(plain, topic, 1, [f"p1-{i}".encode() for i in range(120, 150)])
        for part in GOOD_PARTITIONS:
            await send_batch(plain, topic, part, [f"p{part}-{i}".encode() for i in range(50, 100)])
        return bad1, bad2

    bad1, bad2 = asyncio.run(fill())
    assert (bad1, bad2) == (50, 100)
    kafka_broker.corrupt_batch(topic, 1, bad1, "payload")
    kafka_broker.corrupt_batch(topic, 1, bad2, "codec")
    return topic


def test_plain_getmany_fails_at_the_same_offset_on_every_retry(kafka_broker, damaged_topic):
    """The problem getmany_skipping exists for: the error names no partition and never moves on."""
    async def go() -> list[tuple[str, int]]:
        c = AIOKafkaConsumer(damaged_topic, **conn_for(kafka_broker).consumer_kwargs(group_id=f"n-{damaged_topic}", auto_offset_reset="earliest"))
        await c.start()
        seen = []
        try:
            while len(seen) < 4:
                try:
                    await asyncio.wait_for(c.getmany(timeout_ms=500), 30)
                except DECODE_ERRORS as e:
                    seen.append((type(e).__name__, await c.position(TopicPartition(damaged_topic, 1))))
        finally:
            await c.stop()
        return seen

    seen = asyncio.run(asyncio.wait_for(go(), 60))
    assert seen == [("DecompressionError", 0)] * 4


def test_undecodable_batches_are_skipped_and_no_other_record_is_lost(kafka_broker, damaged_topic):
    want = {f"p{p}-{i}".encode() for p in GOOD_PARTITIONS for i in range(100)}
    want |= {f"p1-{i}".encode() for i in [*range(50), *range(70, 100), *range(120, 150)]}

    async def go() -> tuple[list[bytes], list[UndecodableBatch]]:
        c = AIOKafkaConsumer(damaged_topic, **conn_for(kafka_broker).consumer_kwargs(group_id=f"s-{damaged_topic}", auto_offset_reset="earliest"))
        await c.start()
        got: list[bytes] = []
        bad: list[UndecodableBatch] = []
        try:
            while len(got) < len(want) or len(bad) < 2:
                records, skipped = await getmany_skipping(c, timeout_ms=500)
                got += [r.value for recs in records.values() for r in recs]
                bad += skipped
        finally:
            await c.stop()
        return got, bad

    got, bad = asyncio.run(asyncio.wait_for(go(), 60))
    assert sorted(got) == sorted(want)  # every good record exactly once, both partitions
    assert [(b.partition, b.first_offset, b.next_offset) for b in bad] == [(1, 50, 70), (1, 100, 120)]
    assert bad[0].reason.startswith("DecompressionError: lz4")
    assert bad[1].reason == "UnsupportedCodecError: Unknown compression codec 0x05"
    assert all(b.topic == damaged_topic and b.skipped_offsets == 20 and len(b.raw) > 61 for b in bad)


@pytest.mark.parametrize("codec", ["zstd", "lz4"])
def test_topic_level_compression_is_read(kafka_broker, codec):
    """compression.type set on the topic: the broker recompresses whatever comes in. With zstd,
    clients that fetch with Fetch < v10 get UNSUPPORTED_COMPRESSION_TYPE (aiokafka #1112)."""
    topic = f"topic-{codec}-{uuid.uuid4().hex[:8]}"
    kafka_broker.create_topic(topic, 1, **{"compression.type": codec})
    values = [f"{codec}-{i}-".encode() * 5 for i in range(200)]
    asyncio.run(send_batch(conn_for(kafka_broker, "none"), topic, 0, values))
    assert {f[5] & 7 for _, _, f in kafka_broker.stored_batches(topic, 0)} == {CODEC_ID[codec]}

    async def read_all() -> list[bytes]:
        c = AIOKafkaConsumer(topic, **conn_for(kafka_broker).consumer_kwargs(group_id=f"g-{topic}", auto_offset_reset="earliest"))
        await c.start()
        got: list[bytes] = []
        try:
            while len(got) < len(values):
                got += [r.value for recs in (await asyncio.wait_for(c.getmany(timeout_ms=500), 30)).values() for r in recs]
        finally:
            await c.stop()
        return got

    assert asyncio.run(asyncio.wait_for(read_all(), 60)) == values


def test_a_batch_failing_its_crc_is_skipped_too(kafka_broker):
    """Plain bit rot: the stored CRC no longer matches (aiokafka checks CRCs by default)."""
    topic = f"bitrot-{uuid.uuid4().hex[:8]}"
    kafka_broker.create_topic(topic, 1)
    plain = conn_for(kafka_broker)

    async def fill() -> int:
        await send_batch(plain, topic, 0, [b"a%d" % i for i in range(10)])
        bad = await send_batch(plain, topic, 0, [b"rotten-%d" % i for i in range(10)])
        await send_batch(plain, topic, 0, [b"b%d" % i for i in range(10)])
        return bad

    bad_at = asyncio.run(fill())
    kafka_broker.corrupt_batch(topic, 0, bad_at, "bitrot")

    async def go() -> tuple[list[bytes], list[UndecodableBatch]]:
        c = AIOKafkaConsumer(topic, **plain.consumer_kwargs(group_id=f"g-{topic}", auto_offset_reset="earliest"))
        await c.start()
        got, bad = [], []
        try:
            while len(got) < 20 or not bad:
                records, skipped = await getmany_skipping(c, timeout_ms=500)
                got += [r.value for recs in records.values() for r in recs]
                bad += skipped
        finally:
            await c.stop()
        return got, bad

    got, bad = asyncio.run(asyncio.wait_for(go(), 60))
    assert got == [b"a%d" % i for i in range(10)] + [b"b%d" % i for i in range(10)]
    assert [(b.first_offset, b.next_offset) for b in bad] == [(10, 20)]
    assert bad[0].reason.startswith("CorruptRecordException") and "Invalid CRC" in bad[0].reason


def test_skipping_respects_max_records(kafka_broker, damaged_topic):
    """The records before a bad batch come back max_records at a time, like getmany's."""
    async def go() -> tuple[list[bytes], list[UndecodableBatch], int]:
        c = AIOKafkaConsumer(damaged_topic, **conn_for(kafka_broker).consumer_kwargs(group_id=f"m-{damaged_topic}", auto_offset_reset="earliest"))
        await c.start()
        got, bad, biggest = [], [], 0
        try:
            while len(got) < 410 or len(bad) < 2:
                records, skipped = await getmany_skipping(c, timeout_ms=500, max_records=7)
                n = sum(len(v) for v in records.values())
                biggest = max(biggest, n)
                got += [r.value for recs in records.values() for r in recs]
                bad += skipped
        finally:
            await c.stop()
        return got, bad, biggest

    got, bad, biggest = asyncio.run(asyncio.wait_for(go(), 60))
    assert len(got) == len(set(got)) == 410 and biggest <= 7
    assert [(b.first_offset, b.next_offset) for b in bad] == [(50, 70), (100, 120)]


def test_read_committed_consumer_skips_a_bad_batch_after_an_aborted_transaction(kafka_broker):
    """Under read_committed the consumer hides aborted records the raw scan still counts;
    the skip must not wait for records that will never come."""
    topic = f"txn-{uuid.uuid4().hex[:8]}"
    kafka_broker.create_topic(topic, 1)
    plain = conn_for(kafka_broker)

    async def fill() -> int:
        await send_batch(plain, topic, 0, [b"a%d" % i for i in range(10)])
        p = AIOKafkaProducer(**plain.producer_kwargs(transactional_id=f"tx-{topic}", enable_idempotence=True))
        await p.start()
        try:
            await p.begin_transaction()
            for i in range(5):
                await p.send(topic, b"aborted-%d" % i, partition=0)
            await p.abort_transaction()
        finally:
            await p.stop()
        bad = await send_batch(conn_for(kafka_broker, "lz4"), topic, 0, [b"lz4-%d-" % i * 20 for i in range(10)])
        await send_batch(plain, topic, 0, [b"b%d" % i for i in range(10)])
        return bad

    bad_at = asyncio.run(fill())
    kafka_broker.corrupt_batch(topic, 0, bad_at, "payload")

    async def go() -> tuple[list[bytes], list[UndecodableBatch]]:
        c = AIOKafkaConsumer(topic, **plain.consumer_kwargs(group_id=f"g-{topic}", auto_offset_reset="earliest", isolation_level="read_committed"))
        await c.start()
        got, bad = [], []
        try:
            while len(got) < 20 or not bad:
                records, skipped = await getmany_skipping(c, timeout_ms=500)
                got += [r.value for recs in records.values() for r in recs]
                bad += skipped
        finally:
            await c.stop()
        return got, bad

    got, bad = asyncio.run(asyncio.wait_for(go(), 45))
    assert got == [b"a%d" % i for i in range(10)] + [b"b%d" % i for i in range(10)]
    assert [(b.first_offset, b.next_offset) for b in bad] == [(bad_at, bad_at + 10)]
