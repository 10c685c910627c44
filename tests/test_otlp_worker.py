"""End to end: SDK spans and histograms, encoded as the SDK's OTLP exporter does, in the
Collector's Kafka records (one export request per record, empty key), read by
`shiftwatch worker --input-format otlp_*`: the injected latency shift is found on exactly
the right labels, and nothing shifts on the steady series."""

from __future__ import annotations

import numpy as np
import pytest
from opentelemetry.trace import SpanKind

from test_otlp_common import SpanMaker, collector_json
from worker_proc import Topics, WorkerProc, consume_until, json_values, produce, run

pytestmark = pytest.mark.kafka
T0_S = 1_763_800_000
WINDOWS, SHIFT_AT, PER_WINDOW, INTERVAL = 70, 40, 200, 10


def _span_records(encoding: str) -> list[bytes]:
    """cart GET /api/cart x1.5 from window 40; cart GET /api/items and checkout POST /pay
    steady; cart's client spans x3 from window 40 (filtered out by --span-kinds server)."""
    rng = np.random.default_rng(11)
    cart, checkout = SpanMaker("cart"), SpanMaker("checkout")
    series = [(cart, "GET /api/cart", SpanKind.SERVER, 1.5), (cart, "GET /api/items", SpanKind.SERVER, 1.0),
              (checkout, "POST /pay", SpanKind.SERVER, 1.0), (cart, "SELECT carts", SpanKind.CLIENT, 3.0)]
    records = []
    for w in range(WINDOWS):
        for maker, name, kind, factor in series:
            starts = (T0_S + w * INTERVAL + np.sort(rng.random(PER_WINDOW)) * (INTERVAL - 1)) * 1e9
            dur_ms = 40.0 * np.exp(0.4 * rng.standard_normal(PER_WINDOW)) * (factor if w >= SHIFT_AT else 1.0)
            for s, d in zip(starts.astype(np.int64).tolist(), (dur_ms * 1e6).astype(np.int64).tolist()):
                maker.span(name, s, d, kind)
        for maker in (cart, checkout):  # each service exports once per window
            req = maker.request()
            records.append(req.SerializeToString() if encoding == "otlp_proto" else collector_json(req))
    return records


@pytest.mark.parametrize("encoding", ["otlp_proto", "otlp_json"])
def test_worker_finds_the_span_shift_on_exactly_its_labels(kafka_broker, tmp_path, encoding):
    topics = Topics()
    kafka_broker.create_topic(topics.events, 1)
    records = _span_records(encoding)
    records.insert(5, b"\x08\x96\x01 not an export request")
    worker = WorkerProc(kafka_broker.bootstrap, topics, tmp_path, "--input-format", encoding, "--span-kinds", "server",
                        "--snapshot-interval", str(INTERVAL)).start()
    try:
        run(produce(kafka_broker.bootstrap, topics.events, [(None, r) for r in records]))
        shifts = json_values(run(consume_until(kafka_broker.bootstrap, topics.shifts, lambda r: len(r) >= 1, timeout=180, settle=10)))
        found = [(d.get("labels"), d["direction"]) for d in shifts if d["type"] == "shift"]
        assert found == [({"service.name": "cart", "span.name": "GET /api/cart"}, "regression")], (shifts, worker.tail())
        assert abs(shifts[0]["at"] - (T0_S + SHIFT_AT * INTERVAL)) <= 3 * INTERVAL
        dead = json_values(run(consume_until(kafka_broker.bootstrap, topics.dead, lambda r: len(r) >= 1, timeout=30, settle=2)))
        assert [d["reason"] for d in dead] == ["invalid_protobuf" if encoding == "otlp_proto" else "invalid_otlp_json"]
        assert dead[0]["source"]["offset"] == 5
    finally:
        worker.stop()


def _metric_records(encoding: str) -> list[bytes]:
    """Two replicas of cart export cumulative exponential histograms once per window (their
    times set to simulated event time); route /api/cart x1.5 from window 40, /api/items steady."""
    from test_otlp_common import MetricMaker

    rng = np.random.default_rng(5)
    replicas = [MetricMaker("cart", instance=f"pod-{i}", exponential=True) for i in range(2)]
    records = []
    for w in range(WINDOWS):
        for m in replicas:
            for route, factor in (("/api/cart", 1.5), ("/api/items", 1.0)):
                v = 0.040 * np.exp(0.4 * rng.standard_normal(PER_WINDOW // 2)) * (factor if w >= SHIFT_AT else 1.0)
                m.record(v.tolist(), **{"http.route": route})
            req = m.request()
            for rm in req.resource_metrics:
                for sm in rm.scope_metrics:
                    for metric in sm.metrics:
                        for dp in metric.exponential_histogram.data_points:
                            dp.start_time_unix_nano = (T0_S - 1) * 10**9
                            dp.time_unix_nano = int((T0_S + w * INTERVAL + INTERVAL - 0.5) * 1e9)
            records.append(req.SerializeToString() if encoding == "otlp_proto" else collector_json(req))
    for m in replicas:
        m.shutdown()
    return records


@pytest.mark.parametrize("encoding", ["otlp_proto", "otlp_json"])
def test_worker_finds_the_histogram_shift_of_a_replicated_service(kafka_broker, tmp_path, encoding):
    topics = Topics()
    kafka_broker.create_topic(topics.events, 1)
    records = _metric_records(encoding)
    worker = WorkerProc(kafka_broker.bootstrap, topics, tmp_path, "--input-format", encoding, "--snapshot-interval", str(INTERVAL)).start()
    try:
        run(produce(kafka_broker.bootstrap, topics.events, [(None, r) for r in records]))
        shifts = json_values(run(consume_until(kafka_broker.bootstrap, topics.shifts, lambda r: len(r) >= 1, timeout=180, settle=10)))
        found = [(d.get("labels"), d["direction"]) for d in shifts if d["type"] == "shift"]
        want = {"service.name": "cart", "metric.name": "http.server.request.duration", "http.route": "/api/cart"}
        assert found == [(want, "regression")], (shifts, worker.tail())
        assert abs(shifts[0]["at"] - (T0_S + SHIFT_AT * INTERVAL)) <= 3 * INTERVAL
        # every recorded value counted once: 2 replicas x 2 routes x PER_WINDOW/2 per window
        accepted = [line for line in worker.metrics().splitlines() if line.startswith("shiftwatch_events_accepted_total ")]
        assert accepted and float(accepted[0].split()[1]) == 2 * WINDOWS * PER_WINDOW
    finally:
        worker.stop()


def test_the_cumulative_differencer_survives_a_checkpoint_round_trip():
    """A restarted worker continues each cumulative stream's deltas (no new baseline)."""
    import numpy as np

    from stream.events import Source
    from stream.partitions import DECODER_KEY, PartitionedState
    from stream.pipeline import PipelineConfig
    from stream.settings import Settings
    from test_otlp_common import MetricMaker

    settings = Settings(input_format="otlp_proto")
    m = MetricMaker(instance="a", bounds=[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0])
    rng = np.random.default_rng(2)
    m.record(rng.uniform(0.011, 0.024, 200), **{"http.route": "/x"})
    first = m.request().SerializeToString()
    m.record(rng.uniform(0.26, 0.49, 50), **{"http.route": "/x"})
    second = m.request().SerializeToString()
    m.shutdown()

    a = PartitionedState(PipelineConfig(), settings.make_decoder)
    a.process(0, 0, a.part(0).pipeline.decoder.decode(first, Source("t", 0, 0)))
    records = a.checkpoint_records(0)
    assert any(k == DECODER_KEY for k, _ in records)
    b = PartitionedState(PipelineConfig(), settings.make_decoder)
    b.restore(0, records)
    after = b.part(0).pipeline.decoder.decode(second, Source("t", 0, 1))
    assert [h.count for h in after.hists] == [50]  # a delta, not the cumulative 250
    c = PartitionedState(PipelineConfig(), settings.make_decoder)
    c.restore(0, [(DECODER_KEY, b"garbage")])
    assert c.stats.checkpoint_errors == 1  # reported, and the partition still runs


@pytest.mark.parametrize("encoding", ["otlp_proto", "otlp_json"])
def test_replay_reads_otlp_files_and_finds_the_same_shift(tmp_path, capsys, encoding):
    """Files: otlp_json one Collector record per line; otlp_proto length-delimited records
    (a varint length before each, protobuf's writeDelimitedTo framing)."""
    import json

    from sketches._varint import uvarint_bytes
    from stream.cli import main

    records = _span_records(encoding)
    path = tmp_path / f"spans.{encoding}"
    if encoding == "otlp_proto":
        path.write_bytes(b"".join(uvarint_bytes(len(r)) + r for r in records) + uvarint_bytes(50) + b"truncated")
    else:
        path.write_bytes(b"\n".join(records) + b"\n{not json\n")
    argv = ["replay", str(path), "--input-format", encoding, "--span-kinds", "server", "--snapshot-interval", str(INTERVAL), "--emit", "shift,dead_letter"]
    assert main(argv) == 0
    docs = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    shifts = [d for d in docs if d["type"] == "shift"]
    assert [d["labels"] for d in shifts] == [{"service.name": "cart", "span.name": "GET /api/cart"}]
    assert abs(shifts[0]["at"] - (T0_S + SHIFT_AT * INTERVAL)) <= 3 * INTERVAL
    assert [d["reason"] for d in docs if d["type"] == "dead_letter"] == ["invalid_protobuf" if encoding == "otlp_proto" else "invalid_otlp_json"]
