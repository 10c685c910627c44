"""Hostile input at a running worker: it never crashes, every reject reaches the
dead-letter topic with a reason, and accepted + rejected = received, exactly."""

from __future__ import annotations

import json
import random
import time

import pytest
from prometheus_client.parser import text_string_to_metric_families

from stream.events import REASONS, DecodeLimits, Decoder
from worker_proc import Topics, WorkerProc, consume_until, json_values, produce, run

pytestmark = pytest.mark.kafka

TS = 1763800000.0


def hostile_messages(n: int, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    good = lambda: {"key": rng.choice("abc"), "value": round(rng.lognormvariate(3, 0.5), 3), "ts": TS + rng.random() * 100}
    makers = [
        lambda: bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 64))),
        lambda: json.dumps(good()).encode(),
        lambda: json.dumps([good() for _ in range(rng.randint(1, 20))]).encode(),
        lambda: json.dumps({**good(), "value": rng.choice(["12", None, True, [], {}, "NaN"])}).encode(),
        lambda: ('{"key": "a", "value": %s, "ts": %r}' % (rng.choice(["NaN", "Infinity", "-Infinity", "-1", "1e308", "1e999"]), TS)).encode(),
        lambda: json.dumps({**good(), "key": "k" * rng.choice([257, 100_000])}).encode(),
        lambda: json.dumps({**good(), "key": rng.choice([1, None, [], ""])}).encode(),
        lambda: json.dumps({**good(), "ts": rng.choice(["soon", -5, 1e20, "2025-13-40T00:00:00Z", None])}).encode(),
        lambda: b"[" * 50_000 + b"]" * 50_000,
        lambda: b'{"key": "a", "value": 1, "ts": 1763800000, "x": "\xc3\x28"}',
        lambda: json.dumps([good(), {"key": "a"}, good(), 7, "x", None]).encode(),
        lambda: json.dumps({"key": "b", "values": [1, "x", -2, 3.5, None], "ts": TS}).encode(),
        lambda: json.dumps({"key": "c", "values": [1, 2, 3], "ts": [TS, TS]}).encode(),
        lambda: b" " * 300_000 + b"{}",  # over the worker's 200 kB message limit (below the broker's)
        lambda: b"",
    ]
    return [rng.choice(makers)() for _ in range(n)]


def test_running_worker_survives_hostile_input_and_counts_reconcile(kafka_broker, tmp_path):
    b = kafka_broker.bootstrap
    topics = Topics()
    msgs = hostile_messages(600, seed=42)
    # What the decoder says, computed here with the same code: the ground truth.
    dec = Decoder(limits=DecodeLimits(max_message_bytes=200_000))
    expected_accepted = expected_rejected = 0
    for m in msgs:
        out = dec.decode(m)
        expected_accepted += len(out.keys)
        expected_rejected += len(out.dead)
    assert expected_rejected > 300 and expected_accepted > 500

    w = WorkerProc(b, topics, tmp_path, "--snapshot-interval", "10", "--max-message-bytes", "200000").start()
    try:
        run(produce(b, topics.events, [(None, m) for m in msgs]))
        dead = run(consume_until(b, topics.dead, lambda r: len(r) >= expected_rejected, timeout=90, settle=3))
        assert w.proc.poll() is None, w.tail()
        docs = json_values(dead)
        assert len(docs) == expected_rejected
        assert all(d["reason"] in REASONS and d["error"] and d["source"]["topic"] == topics.events for d in docs)
        s = {}
        for fam in text_string_to_metric_families(w.metrics()):
            for smp in fam.samples:
                s.setdefault(smp.name, 0.0)
                s[smp.name] += smp.value
        assert s["shiftwatch_events_accepted_total"] == expected_accepted
        assert s["shiftwatch_events_rejected_total"] == expected_rejected
        assert s["shiftwatch_messages_total"] == len(msgs)
        # Still healthy: a good event after the storm is accepted.
        run(produce(b, topics.events, [(b"a", json.dumps({"key": "a", "value": 5, "ts": TS + 200}).encode())]))
        deadline = time.time() + 30
        while time.time() < deadline:
            acc = [x.value for f in text_string_to_metric_families(w.metrics()) for x in f.samples if x.name == "shiftwatch_events_accepted_total"][0]
            if acc == expected_accepted + 1:
                break
            time.sleep(0.3)
        assert acc == expected_accepted + 1
    finally:
        w.stop()


def poison_messages() -> list[tuple[str, bytes]]:
    """(what, bytes) of messages that once crashed a worker or could: valid JSON that is
    not valid Unicode, nesting beyond any parser's stack, numbers at the edges."""
    return [
        ("lone high surrogate key", rb'{"key": "\ud800", "value": 5, "ts": 1763800010}'),
        ("lone low surrogate key", rb'{"key": "x\udfff", "value": 5, "ts": 1763800010}'),
        ("surrogate key in an array", rb'[{"key": "a", "value": 5, "ts": 1763800011}, {"key": "\udbff", "value": 5, "ts": 1763800011}]'),
        ("surrogate key, columnar", rb'{"key": "\ud800", "values": [1, 2], "ts": 1763800012}'),
        ("deep object", b'{"a":' * 20_000 + b"1" + b"}" * 20_000),
        ("deep array", b"[" * 50_000 + b"]" * 50_000),
        ("deep field of a good event", b'{"key": "a", "value": 1, "ts": 1763800013, "x": ' + b"[" * 5000 + b"]" * 5000 + b"}"),
        ("ts in milliseconds", b'{"key": "a", "value": 1, "ts": 1763800013000}'),
        ("huge integer value", b'{"key": "a", "value": ' + b"9" * 400 + b', "ts": 1763800013}'),
        ("NaN value", b'{"key": "a", "value": NaN, "ts": 1763800013}'),
        ("byte-order mark", b'\xef\xbb\xbf{"key": "a", "value": 1, "ts": 1763800013}'),
    ]


async def committed_offsets(bootstrap: str, group: str) -> dict[int, int]:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return {tp.partition: om.offset for tp, om in (await admin.list_consumer_group_offsets(group)).items()}
    finally:
        await admin.close()


def test_poison_pills_are_dead_lettered_and_committed_past(kafka_broker, tmp_path):
    b = kafka_broker.bootstrap
    topics = Topics()
    poison = poison_messages()
    msgs: list[bytes] = []
    for i, (_, raw) in enumerate(poison):
        msgs.append(json.dumps({"key": "good", "value": 10 + i, "ts": TS + i}).encode())
        msgs.append(raw)
    msgs.append(json.dumps({"key": "good", "value": 99, "ts": TS + 20}).encode())
    dec = Decoder()
    expected = [dec.decode(m) for m in msgs]
    expected_dead = [d.reason for out in expected for d in out.dead]
    assert sorted(set(expected_dead)) == ["bad_key", "bad_timestamp", "invalid_json", "non_finite_value", "too_deep"]

    w = WorkerProc(b, topics, tmp_path, "--partitions", "1", "--snapshot-interval", "10", "--checkpoint-interval", "1").start()
    try:
        run(produce(b, topics.events, [(b"good", m) for m in msgs]))
        dead = json_values(run(consume_until(b, topics.dead, lambda r: len(r) >= len(expected_dead), timeout=90, settle=2)))
        assert w.proc.poll() is None, w.tail()
        assert sorted(d["reason"] for d in dead) == sorted(expected_dead)
        by_offset = {d["source"]["offset"]: d for d in dead}
        assert "not valid Unicode" in by_offset[1]["error"] and "looks like epoch milliseconds" in by_offset[15]["error"]
        assert {by_offset[o]["reason"] for o in (9, 11, 13)} == {"too_deep"}
        # The state holding the accepted events is checkpointed and the group's offset
        # moves past every poison message (a crash at checkpoint encoding never commits).
        deadline = time.time() + 60
        while time.time() < deadline and run(committed_offsets(b, topics.app_id)).get(0, -1) < len(msgs):
            assert w.proc.poll() is None, w.tail()
            time.sleep(0.5)
        assert run(committed_offsets(b, topics.app_id)).get(0) == len(msgs), w.tail()
    finally:
        w.stop()
    assert "Traceback" not in w.log_path.read_text(errors="replace")
    # A restart resumes after them: nothing is dead-lettered twice, the worker stays up.
    w2 = WorkerProc(b, topics, tmp_path, "--partitions", "1", "--snapshot-interval", "10", "--checkpoint-interval", "1", name="w2").start()
    try:
        run(produce(b, topics.events, [(b"good", json.dumps({"key": "good", "value": 1, "ts": TS + 30}).encode())]))
        deadline = time.time() + 60
        while time.time() < deadline and run(committed_offsets(b, topics.app_id)).get(0, -1) < len(msgs) + 1:
            time.sleep(0.5)
        assert run(committed_offsets(b, topics.app_id)).get(0) == len(msgs) + 1, w2.tail()
        assert w2.proc.poll() is None, w2.tail()
        again = run(consume_until(b, topics.dead, lambda r: False, timeout=3))
        assert len(again) == len(expected_dead)
    finally:
        w2.stop()


def test_worker_reads_ts_unit_and_field_mapping(kafka_broker, tmp_path):
    """--ts-unit and the field mapping on the real worker: access logs with epoch-ms
    timestamps are accepted; a seconds timestamp and a missing field are dead-lettered
    with reasons that say so."""
    b = kafka_broker.bootstrap
    topics = Topics()
    t_ms = int(TS * 1000)
    good = [
        {"service": {"name": "cart"}, "http": {"route": "/api/cart"}, "duration_ms": 10 + i % 5, "@timestamp": t_ms + i * 50}
        for i in range(400)
    ]
    bad = [
        {"service": {"name": "cart"}, "http": {"route": "/api/cart"}, "duration_ms": 10, "@timestamp": int(TS)},
        {"service": {"name": "cart"}, "http": {}, "duration_ms": 10, "@timestamp": t_ms},
        {"service": {"name": "cart"}, "http": {"route": "/api/cart"}, "duration_ms": "slow", "@timestamp": t_ms},
    ]
    msgs = [json.dumps(d).encode() for d in good[:200] + bad + good[200:]]
    w = WorkerProc(
        b, topics, tmp_path, "--partitions", "1", "--snapshot-interval", "10", "--ts-unit", "ms",
        "--key-fields", "service.name,http.route", "--value-field", "duration_ms", "--ts-field", "@timestamp",
    ).start()
    try:
        run(produce(b, topics.events, [(b"cart", m) for m in msgs]))
        dead = json_values(run(consume_until(b, topics.dead, lambda r: len(r) >= 3, timeout=60, settle=2)))
        assert [(d["reason"], d["source"]["offset"]) for d in sorted(dead, key=lambda d: d["source"]["offset"])] == [
            ("bad_timestamp", 200), ("missing_field", 201), ("bad_value", 202)
        ]
        errors = {d["reason"]: d["error"] for d in dead}
        assert "looks like epoch seconds" in errors["bad_timestamp"] and errors["bad_timestamp"].startswith("@timestamp:")
        assert "'http.route'" in errors["missing_field"] and errors["bad_value"].startswith("duration_ms:")
        deadline = time.time() + 30
        while time.time() < deadline:
            acc = [x.value for f in text_string_to_metric_families(w.metrics()) for x in f.samples if x.name == "shiftwatch_events_accepted_total"]
            if acc and acc[0] == len(good):
                break
            time.sleep(0.3)
        assert acc == [len(good)]
        assert "cart|/api/cart" in w.metrics()
        assert w.proc.poll() is None, w.tail()
    finally:
        w.stop()
