"""Compression on the real `shiftwatch worker` (issue 13 item 2).

One input topic holds batches in every codec a producer may use (none, gzip, snappy,
lz4, zstd) and one batch damaged on the broker's disk. The worker counts every record of
the good batches exactly once, counts the damaged one in
shiftwatch_input_errors_total{reason="undecodable_batch"}, dead-letters it with that
reason and its partition/offset, logs it once, and keeps running."""

from __future__ import annotations

import asyncio
import base64
import json
import time

import pytest

from datagen import T0
from aiokafka import AIOKafkaProducer

from stream.connection import KafkaConnection
from test_compression_kafka import CODECS
from worker_proc import Topics, WorkerProc, consume_until, json_values, run

pytestmark = pytest.mark.kafka

PER_BATCH, PER_MESSAGE = 10, 50  # messages per batch, events per message


async def send_batch(bootstrap: str, codec: str, topic: str, partition: int, values: list[bytes]) -> int:
    """values as exactly one batch in codec (producer built from a KafkaConnection); its base offset."""
    conn = KafkaConnection.from_options(f"kafka://{bootstrap}", compression=codec)
    p = AIOKafkaProducer(**conn.producer_kwargs(acks="all", max_batch_size=1 << 20))
    await p.start()
    try:
        batch = p.create_batch()
        for v in values:
            assert batch.append(key=None, value=v, timestamp=None) is not None
        return (await (await p.send_batch(batch, topic, partition=partition))).offset
    finally:
        await p.stop()


def batch_values(key: str, start: float) -> list[bytes]:
    """PER_BATCH messages of PER_MESSAGE events of key, 0.1 s apart from start."""
    out = []
    for m in range(PER_BATCH):
        evs = [{"key": key, "value": 20.0 + (m * PER_MESSAGE + i) % 37, "ts": start + 0.1 * (m * PER_MESSAGE + i)} for i in range(PER_MESSAGE)]
        out.append(json.dumps(evs).encode())
    return out


@pytest.mark.parametrize("how", ["codec", "bitrot"])
def test_every_codec_read_and_a_damaged_batch_skipped_counted_dead_lettered(kafka_broker, tmp_path, how):
    b = kafka_broker
    topics = Topics()
    b.create_topic(topics.events, 2)
    ts = T0
    damaged = None
    for codec in CODECS:
        for part in (0, 1):
            asyncio.run(send_batch(b.bootstrap, codec, topics.events, part, batch_values(f"k{part}", ts)))
        ts += PER_BATCH * PER_MESSAGE * 0.1
        if codec == "lz4":  # one more batch, damaged below: between lz4 and zstd in partition 0
            damaged = asyncio.run(send_batch(b.bootstrap, "gzip", topics.events, 0, batch_values("k0", ts)))
            ts += PER_BATCH * PER_MESSAGE * 0.1
    stored = {f[5] & 7 for part in (0, 1) for _, _, f in b.stored_batches(topics.events, part)}
    assert stored == {0, 1, 2, 3, 4}  # every codec really is on disk
    b.corrupt_batch(topics.events, 0, damaged, how=how)
    good_messages = len(CODECS) * 2 * PER_BATCH

    w = WorkerProc(b.bootstrap, topics, tmp_path).start()
    try:
        deadline, text = time.time() + 90, ""
        while time.time() < deadline:
            text = w.metrics()
            if _sample(text, "shiftwatch_events_accepted_total") >= good_messages * PER_MESSAGE and _errors(text) >= 1:
                break
            time.sleep(0.5)
        dead = json_values(run(consume_until(b.bootstrap, topics.dead, lambda r: len(r) >= 1, timeout=30, settle=3)))
        time.sleep(2)  # a crash loop or a re-read would show by now
        text = w.metrics()
        assert _sample(text, "shiftwatch_events_accepted_total") == good_messages * PER_MESSAGE, w.tail()
        assert _sample(text, "shiftwatch_messages_total") == good_messages
        assert _errors(text) == 1, "shiftwatch_input_errors_total{reason=\"undecodable_batch\"} must count the batch once"
        assert [d["reason"] for d in dead] == ["undecodable_batch"], dead
        src = dead[0]["source"]
        assert (src["topic"], src["partition"], src["offset"]) == (topics.events, 0, damaged), dead[0]
        assert base64.b64decode(dead[0]["raw_base64"])  # the stored batch, for whoever investigates
        assert w.proc.poll() is None and w.probe("/healthz")[0] == 200, w.tail()
        log = w.log_path.read_text(errors="replace")
        assert log.count("undecodable record batch") == 1, w.tail()
        assert f"partition 0: skipped an undecodable record batch at offsets {damaged}.." in log
        assert "Traceback" not in log and log.count("[^Worker]: Starting") == 1  # one process start, no crash
    finally:
        w.stop()


def _sample(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in /metrics")


def _errors(text: str) -> float:
    for line in text.splitlines():
        if line.startswith('shiftwatch_input_errors_total{reason="undecodable_batch"}'):
            return float(line.split()[-1])
    raise AssertionError('shiftwatch_input_errors_total{reason="undecodable_batch"} is missing from /metrics')
