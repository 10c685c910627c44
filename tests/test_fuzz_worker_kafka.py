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
