"""The walking skeleton on a real Apache Kafka broker: events in, shift event out,
percentiles on /metrics, malformed input in the dead-letter topic."""

from __future__ import annotations

import base64
import json
import subprocess
import sys

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from datagen import T0, shift_stream
from stream.events import REASONS, Decoder
from worker_proc import Topics, WorkerProc, consume_until, json_values, produce, run

pytestmark = pytest.mark.kafka

BAD = [
    b"this is not json",
    b'{"key": "A", "value": -5, "ts": 1763800001}',
    b'[{"key": "A", "value": 10, "ts": 1763800002}, {"key": "A", "value": "NaN", "ts": 1763800002}]',
    b'{"key": "A", "value": 10, "ts": "last tuesday"}',
]


def metric_samples(text: str) -> dict:
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_shift_metrics_and_dead_letters_end_to_end(kafka_broker, tmp_path):
    bootstrap = kafka_broker.bootstrap
    topics = Topics()
    events, values = shift_stream(interval=10.0, snapshots=70, shift_snapshot=40, per_snapshot=300, factor=1.5, seed=5)
    # Many events per message (JSON arrays of one key), keyed by key like a real producer.
    messages: list[tuple[bytes | None, bytes]] = []
    for key in ("A", "B"):
        mine = [e for e in events if e["key"] == key]
        for i in range(0, len(mine), 100):
            messages.append((key.encode(), json.dumps(mine[i : i + 100]).encode()))
    messages.sort(key=lambda m: json.loads(m[1])[0]["ts"])
    messages[10:10] = [(b"A", raw) for raw in BAD]

    worker = WorkerProc(bootstrap, topics, tmp_path, "--snapshot-interval", "10").start()
    try:
        run(produce(bootstrap, topics.events, messages))
        shifts = run(consume_until(bootstrap, topics.shifts, lambda r: len(r) >= 1, timeout=120, settle=8))
        shift_docs = json_values(shifts)
        assert [d["key"] for d in shift_docs] == ["A"], (shift_docs, worker.tail())
        ev = shift_docs[0]
        assert ev["type"] == "shift" and ev["version"] == 1 and ev["direction"] == "regression"
        assert abs(ev["at"] - (T0 + 400)) <= 3 * 10
        assert shifts[0].key == b"A"
        assert {m["metric"] for m in ev["metrics"]} >= {"p50"}

        dead = json_values(run(consume_until(bootstrap, topics.dead, lambda r: len(r) >= 4, timeout=30, settle=2)))
        assert sorted(d["reason"] for d in dead) == ["bad_timestamp", "bad_value", "invalid_json", "negative_value"]
        by_reason = {d["reason"]: d for d in dead}
        assert base64.b64decode(by_reason["invalid_json"]["raw_base64"]) == b"this is not json"
        assert by_reason["invalid_json"]["source"]["topic"] == topics.events
        assert by_reason["bad_value"]["index"] == 1

        s = metric_samples(worker.metrics())
        exact = np.append(values["A"], 10.0) / 1000.0  # with the valid event of the mixed batch
        buckets = sorted((float(dict(lbl)["le"]), v) for (name, lbl), v in s.items() if name == "shiftwatch_latency_seconds_bucket" and dict(lbl)["key"] == "A")
        assert s[("shiftwatch_latency_seconds_count", (("key", "A"),))] == len(exact)
        assert s[("shiftwatch_latency_seconds_sum", (("key", "A"),))] == pytest.approx(float(np.sum(exact)), rel=1e-9)
        for q in (0.5, 0.99):
            assert histogram_quantile(q, buckets) == pytest.approx(np.quantile(exact, q), rel=0.05)
        good = len(events) + 1  # plus the one valid event inside the mixed batch
        assert s[("shiftwatch_events_accepted_total", ())] == good
        rejected = {dict(lbl)["reason"]: v for (name, lbl), v in s.items() if name == "shiftwatch_events_rejected_total"}
        assert set(rejected) >= set(REASONS)  # every reason is exported, from 0 (OTLP ones too)
        assert {r: v for r, v in rejected.items() if v} == {"invalid_json": 1, "negative_value": 1, "bad_value": 1, "bad_timestamp": 1}
        assert s[("shiftwatch_shifts_total", (("direction", "regression"), ("key", "B")))] == 0
        assert s[("shiftwatch_shifts_total", (("direction", "regression"), ("key", "A")))] == 1
        assert s[("shiftwatch_messages_total", ())] == len(messages)

        # `shiftwatch shifts` reads the same change topic and prints it for people.
        table = subprocess.run(
            [sys.executable, "-m", "stream.cli", "shifts", "--broker", f"kafka://{bootstrap}", "--shift-topic", topics.shifts],
            capture_output=True, text=True, timeout=60, check=True,
        ).stdout.splitlines()
        assert table[0].startswith("at (UTC)") and len(table) == 3
        assert " A " in f" {table[2]} " and "regression" in table[2] and ev["id"] in table[2]
    finally:
        worker.stop()


def histogram_quantile(q: float, buckets: list[tuple[float, float]]) -> float:
    """What PromQL's histogram_quantile computes from cumulative (le, count) buckets."""
    total = buckets[-1][1]
    rank, prev_le, prev_c = q * total, 0.0, 0.0
    for le, c in buckets:
        if c >= rank:
            if le == float("inf"):
                return prev_le
            return prev_le + (le - prev_le) * (rank - prev_c) / max(c - prev_c, 1e-12)
        prev_le, prev_c = le, c
    return prev_le


def test_loadgen_produces_events_the_worker_accepts(kafka_broker):
    topic = "loadgen-" + Topics().prefix
    subprocess.run(
        [sys.executable, "-m", "stream.cli", "loadgen", "--broker", f"kafka://{kafka_broker.bootstrap}", "--input-topic", topic,
         "--duration", "2", "--rate", "50", "--keys", "3"],
        check=True, timeout=60, capture_output=True,
    )
    recs = run(consume_until(kafka_broker.bootstrap, topic, lambda r: len(r) >= 6, timeout=30, settle=1))
    dec = Decoder()
    keys = set()
    for r in recs:
        out = dec.decode(r.value)
        assert out.dead == [] and len(out.keys) > 0
        assert set(out.keys) == {r.key.decode()}  # one key per message, keyed by it
        keys |= set(out.keys)
    assert len(keys) == 3
