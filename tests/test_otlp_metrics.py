"""OTLP histograms -> HistPoint deltas: SDK meter providers as replicas, restarts, scale drops."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest

from stream.labels import compose_key
from stream.otlp import CumulativeDifferencer, OtlpDecoder
from test_otlp_common import MetricMaker, collector_json

BOUNDS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0]
KEY = compose_key(["cart", "http.server.request.duration", "/api/cart"])


def _metrics(fmt: str = "otlp_proto", **kw) -> OtlpDecoder:
    return OtlpDecoder(fmt, signal="metrics", **kw)


def _decode(dec: OtlpDecoder, req, fmt: str = "otlp_proto"):
    raw = req.SerializeToString() if fmt == "otlp_proto" else collector_json(req)
    return dec.decode(raw)


def _total(points):
    return sum(p.count for p in points), sum(p.total for p in points)


def test_explicit_histogram_first_point_then_deltas_with_labels():
    rng = np.random.default_rng(1)
    m = MetricMaker(instance="a", bounds=BOUNDS)
    dec = _metrics()
    first = rng.uniform(0.011, 0.024, 200)
    m.record(first, **{"http.route": "/api/cart"})
    d1 = _decode(dec, m.request())
    second = rng.uniform(0.26, 0.49, 50)
    m.record(second, **{"http.route": "/api/cart"})
    d2 = _decode(dec, m.request())
    assert d1.dead == d2.dead == []
    (p1,), (p2,) = d1.hists, d2.hists
    assert (p1.key, p1.count, p2.key, p2.count) == (KEY, 200, KEY, 50)
    assert p1.total == pytest.approx(first.sum()) and p2.total == pytest.approx(second.sum())
    # values spread within their buckets: the delta's median lies in the (0.25, 0.5] bucket
    assert 0.25 <= p2.sketch.quantile(0.5) <= 0.5 and 0.01 <= p1.sketch.quantile(0.5) <= 0.025
    assert p1.min == pytest.approx(first.min()) and p1.max == pytest.approx(first.max())
    assert d1.labels[KEY] == {"service.name": "cart", "metric.name": "http.server.request.duration", "http.route": "/api/cart"}
    m.shutdown()


def test_same_json_variant_gives_the_same_points():
    m = MetricMaker(instance="a", bounds=BOUNDS)
    m.record([0.02, 0.03, 0.2], **{"http.route": "/api/cart"})
    req = m.request()
    a, b = _decode(_metrics(), req), _decode(_metrics("otlp_json"), req, "otlp_json")
    assert b.dead == []
    assert [(p.key, p.ts, p.count, p.total, p.sketch) for p in a.hists] == [(p.key, p.ts, p.count, p.total, p.sketch) for p in b.hists]
    m.shutdown()


def test_two_replicas_are_differenced_apart_and_merged_into_one_series():
    """Each SDK replica has its own service.instance.id: differenced per stream, its deltas
    land on the one series key; nothing is counted twice."""
    a, b = MetricMaker(instance="a", exponential=True), MetricMaker(instance="b", exponential=True)
    dec = _metrics()
    recorded = []
    for rnd in range(3):
        for mk, base in ((a, 0.02), (b, 0.04)):
            vals = np.full(10 + rnd, base * (rnd + 1))
            mk.record(vals, **{"http.route": "/api/cart"})
            recorded.extend(vals)
    # a Collector batch holding both replicas' exports
    points = []
    for rnd in range(1):
        ra, rb = a.request(), b.request()
        ra.resource_metrics.extend(rb.resource_metrics)
        points += _decode(dec, ra).hists
    for extra in (0.5, 0.7):
        a.record([extra] * 5, **{"http.route": "/api/cart"})
        b.record([extra] * 7, **{"http.route": "/api/cart"})
        recorded += [extra] * 12
        points += _decode(dec, a.request()).hists + _decode(dec, b.request()).hists
    assert {p.key for p in points} == {KEY}
    count, total = _total(points)
    assert count == len(recorded) and total == pytest.approx(sum(recorded))
    assert len(dec.differencer) == 2
    merged = points[0].sketch.copy()
    for p in points[1:]:
        merged.merge(p.sketch)
    # a delta's max is its top bucket's bound (min/max of a cumulative cannot be differenced)
    assert merged.quantile(1.0) == pytest.approx(0.7, rel=2 ** (2 ** -merged.scale) - 1)
    a.shutdown(); b.shutdown()


def test_restart_with_new_start_time_is_a_new_baseline_never_negative():
    dec = _metrics()
    m = MetricMaker(instance="pod-1", bounds=BOUNDS)
    m.record([0.02] * 100, **{"http.route": "/api/cart"})
    _decode(dec, m.request())
    m.record([0.02] * 100, **{"http.route": "/api/cart"})
    assert [p.count for p in _decode(dec, m.request()).hists] == [100]
    m.shutdown()
    # same instance id restarted: start time changes, counts start again from 0
    m2 = MetricMaker(instance="pod-1", bounds=BOUNDS)
    m2.record([0.3] * 7, **{"http.route": "/api/cart"})
    d = _decode(dec, m2.request())
    assert [(p.count, p.total) for p in d.hists] == [(7, pytest.approx(2.1))]
    assert 0.25 <= d.hists[0].sketch.quantile(0.5) <= 0.5
    assert dec.differencer.resets == 1
    m2.shutdown()


def test_exponential_scale_drop_mid_stream_is_downscaled_exactly():
    m = MetricMaker(instance="a", exponential=True, max_size=20)
    dec = _metrics()
    m.record(np.linspace(0.100, 0.101, 50), **{"http.route": "/api/cart"})
    r1 = m.request()
    m.record([0.001, 5.0], **{"http.route": "/api/cart"})  # forces a much coarser scale
    r2 = m.request()
    s1 = r1.resource_metrics[0].scope_metrics[0].metrics[0].exponential_histogram.data_points[0].scale
    s2 = r2.resource_metrics[0].scope_metrics[0].metrics[0].exponential_histogram.data_points[0].scale
    assert s2 < s1
    (p1,) = _decode(dec, r1).hists
    d2 = _decode(dec, r2)
    assert d2.dead == []
    (p2,) = d2.hists
    assert (p1.count, p2.count) == (50, 2)
    assert p2.total == pytest.approx(5.001)
    lo, hi = p2.sketch.quantile(0.0), p2.sketch.quantile(1.0)
    assert 0.0005 < lo < 0.002 and 2.5 < hi < 10.0  # the two new values, in their (coarse) buckets
    assert p2.sketch.scale <= s2
    m.shutdown()


def test_delta_temporality_points_are_used_as_they_are():
    m = MetricMaker(instance="a", exponential=True, temporality_delta=True)
    dec = _metrics()
    m.record([0.01] * 3, **{"http.route": "/api/cart"})
    m.record([0.2] * 2, **{"http.route": "/api/cart"})
    p1 = _decode(dec, m.request()).hists
    m.record([0.05] * 4, **{"http.route": "/api/cart"})
    p2 = _decode(dec, m.request()).hists
    assert [p.count for p in p1 + p2] == [5, 4]
    assert len(dec.differencer) == 0
    assert p1[0].sketch.quantile(0.0) == pytest.approx(0.01, rel=0.01) and p1[0].sketch.quantile(1.0) == pytest.approx(0.2, rel=0.01)
    m.shutdown()


def test_non_latency_metrics_are_ignored_not_dead_lettered():
    m = MetricMaker(instance="a")
    m.meter.create_counter("requests").add(3)
    m.meter.create_histogram("http.server.request.body.size", unit="By").record(512)
    m.record([0.1], **{"http.route": "/api/cart"})
    dec = _metrics()
    d = _decode(dec, m.request())
    assert [p.key for p in d.hists] == [KEY] and d.dead == []
    assert dec.stats.metrics_ignored == 2
    m.shutdown()


def _one_point(exponential: bool = False):
    m = MetricMaker(instance="a", exponential=exponential, bounds=None if exponential else BOUNDS, temporality_delta=True)
    m.record([0.02, 0.03, 0.3], **{"http.route": "/api/cart"})
    req = m.request()
    m.shutdown()
    metric = req.resource_metrics[0].scope_metrics[0].metrics[0]
    return req, (metric.exponential_histogram if exponential else metric.histogram).data_points[0]


def _break_bounds(dp):
    dp.explicit_bounds[2], dp.explicit_bounds[3] = dp.explicit_bounds[3], dp.explicit_bounds[2]


def _break_count(dp):
    dp.count += 1


def _huge_count(dp):
    dp.bucket_counts[1] = (1 << 64) - 1  # -1 as int64, sent unsigned


def _drop_buckets(dp):
    del dp.bucket_counts[-1]


@pytest.mark.parametrize("breaker,reason", [
    (_break_bounds, "bounds_not_increasing"), (_break_count, "bad_histogram"),
    (_huge_count, "negative_count"), (_drop_buckets, "bad_histogram"),
])
def test_bad_points_are_dead_lettered_with_a_reason_and_others_kept(breaker, reason):
    req, dp = _one_point()
    good = req.resource_metrics[0].scope_metrics[0].metrics[0].histogram.data_points.add()
    good.CopyFrom(dp)
    breaker(dp)
    d = _metrics().decode(req.SerializeToString())
    assert [x.reason for x in d.dead] == [reason]
    assert d.dead[0].raw == dp.SerializeToString()
    assert [p.count for p in d.hists] == [3]


def test_negative_count_in_json_and_missing_service_name():
    req, _ = _one_point()
    doc = json.loads(collector_json(req))
    doc["resourceMetrics"][0]["scopeMetrics"][0]["metrics"][0]["histogram"]["dataPoints"][0]["bucketCounts"][1] = "-2"
    d = _metrics("otlp_json").decode(json.dumps(doc).encode())
    assert [x.reason for x in d.dead] == ["negative_count"] and d.hists == []
    res = req.resource_metrics[0].resource
    keep = [kv for kv in res.attributes if kv.key != "service.name"]
    del res.attributes[:]
    res.attributes.extend(keep)
    d = _metrics().decode(req.SerializeToString())
    assert [x.reason for x in d.dead] == ["missing_service_name"] and d.hists == []


def test_exponential_negative_values_are_refused():
    req, dp = _one_point(exponential=True)
    dp.negative.offset = 3
    dp.negative.bucket_counts.extend([2])
    dp.count += 2
    d = _metrics().decode(req.SerializeToString())
    assert [x.reason for x in d.dead] == ["negative_value"]


def test_exponential_points_in_seconds_import_exactly():
    req, dp = _one_point(exponential=True)
    (p,) = _metrics().decode(req.SerializeToString()).hists
    # every SDK bucket count is in the sketch at the SDK's scale (or an exact merge of it)
    shift = dp.scale - p.sketch.scale
    want: dict[int, int] = {}
    for k, c in enumerate(dp.positive.bucket_counts):
        if c:
            want[(dp.positive.offset + k) >> shift] = want.get((dp.positive.offset + k) >> shift, 0) + c
    off, dense = p.sketch.pos.dense()
    assert {off + i: c for i, c in enumerate(dense) if c} == want


def test_differencer_state_round_trip_continues_identically():
    m = MetricMaker(instance="a", exponential=True)
    dec = _metrics()
    m.record([0.01] * 5)
    _decode(dec, m.request())
    state = dec.differencer.to_bytes()
    m.record([0.02] * 3)
    req = m.request()
    after = _decode(dec, req).hists
    restored = _metrics(differencer=CumulativeDifferencer.from_bytes(state))
    again = _decode(restored, req).hists
    assert [(p.count, p.total, p.sketch) for p in after] == [(p.count, p.total, p.sketch) for p in again] and after[0].count == 3
    with pytest.raises(ValueError):
        CumulativeDifferencer.from_bytes(state[:-3])
    with pytest.raises(ValueError):
        CumulativeDifferencer.from_bytes(b"\x09" + state[1:])
    m.shutdown()


def test_differencer_is_bounded_by_stream_count():
    dec = _metrics(differencer=CumulativeDifferencer(max_streams=3))
    m = MetricMaker(instance="a", bounds=BOUNDS)
    for i in range(10):
        m.record([0.02], **{"http.route": f"/r{i}"})
    _decode(dec, m.request())
    assert len(dec.differencer) == 3 and dec.differencer.evicted == 7
    assert len(CumulativeDifferencer.from_bytes(dec.differencer.to_bytes())) == 3
    m.shutdown()


def test_stale_point_is_ignored_and_first_old_point_is_only_a_baseline():
    m = MetricMaker(instance="a", bounds=BOUNDS)
    m.record([0.02] * 4)
    r1 = m.request()
    m.record([0.02] * 4)
    r2 = m.request()
    dec = _metrics()
    assert [p.count for p in _decode(dec, r1).hists] == [4]
    assert [p.count for p in _decode(dec, r2).hists] == [4]
    assert _decode(dec, r1).hists == [] and dec.differencer.stale == 1  # redelivered older point
    old = ExportMetricsServiceRequest()
    old.CopyFrom(r2)
    dp = old.resource_metrics[0].scope_metrics[0].metrics[0].histogram.data_points[0]
    dp.start_time_unix_nano = dp.time_unix_nano - 3600 * 10**9  # a process up for an hour
    assert _decode(_metrics(), old).hists == []  # its counts span the hour: baseline only
    m.shutdown()


def test_signal_from_topic_name_or_content():
    """A topic named like neither signal: the request type is told from the bytes."""
    from stream.events import Source
    from test_otlp_common import T0, SpanMaker

    m = MetricMaker(instance="a", bounds=BOUNDS)
    m.record([0.02, 0.3], **{"http.route": "/api/cart"})
    mraw = m.request().SerializeToString()
    s = SpanMaker("cart")
    s.span("GET /a", T0, 5_000_000)
    traw = s.request().SerializeToString()
    dec = OtlpDecoder()
    assert [p.count for p in dec.decode(mraw, Source("prod-events", 0, 1)).hists] == [2]
    assert dec.decode(traw, Source("prod-events", 0, 2)).values == [0.005]
    assert [p.count for p in OtlpDecoder().decode(mraw, Source("otlp_metrics", 0, 1)).hists] == [2]
    wrong = OtlpDecoder().decode(mraw, Source("otlp_spans", 0, 1))  # the topic says traces: no samples, dead letters
    assert len(wrong) == 0 and wrong.hists == [] and wrong.dead
    m.shutdown()


def test_an_empty_delta_point_adds_nothing():
    req, dp = _one_point()
    dp.count = 0
    dp.sum = 0.0
    dp.ClearField("min")
    dp.ClearField("max")
    for i in range(len(dp.bucket_counts)):
        dp.bucket_counts[i] = 0
    d = _metrics().decode(req.SerializeToString())
    assert d.hists == [] and d.dead == []


@given(st.integers(-4, 20), st.integers(-3000, 3000), st.lists(st.integers(0, 5), min_size=1, max_size=12), st.integers(0, 3),
       st.floats(0, 1e4), st.floats(0, 1e4), st.sampled_from(["s", "ms"]))
@settings(max_examples=400, deadline=None)
def test_points_with_odd_min_max_still_make_checkpointable_sketches(scale, offset, counts, zero, lo, hi, unit):
    """A producer's min/max may disagree with its buckets (a zero threshold, rounding):
    the sketch must still survive to_bytes/from_bytes (checkpoints); absurd bucket
    ranges are dead-lettered."""
    from sketches import LogBuckets

    req, dp = _one_point(exponential=True)
    req.resource_metrics[0].scope_metrics[0].metrics[0].unit = unit
    dp.scale, dp.zero_count, dp.min, dp.max = scale, zero, min(lo, hi), max(lo, hi)
    dp.positive.offset = offset
    del dp.positive.bucket_counts[:]
    dp.positive.bucket_counts.extend(counts)
    dp.count = sum(counts) + zero
    d = _metrics().decode(req.SerializeToString())
    assert {x.reason for x in d.dead} <= {"bad_histogram"}
    for p in d.hists:
        back = LogBuckets.from_bytes(p.sketch.to_bytes())
        assert back.count == p.count == dp.count and back.min <= back.max


@given(st.lists(st.floats(0.0, 100.0), min_size=0, max_size=8, unique=True), st.lists(st.integers(0, 4), min_size=9, max_size=9),
       st.floats(0, 200), st.floats(0, 200), st.booleans(), st.sampled_from(["s", "ms"]))
@settings(max_examples=300, deadline=None)
def test_explicit_points_make_checkpointable_sketches(bounds, counts, lo, hi, with_min_max, unit):
    from sketches import LogBuckets

    req, dp = _one_point()
    req.resource_metrics[0].scope_metrics[0].metrics[0].unit = unit
    bounds = sorted(bounds)
    del dp.explicit_bounds[:]
    dp.explicit_bounds.extend(bounds)
    del dp.bucket_counts[:]
    dp.bucket_counts.extend(counts[: len(bounds) + 1])
    dp.count = sum(counts[: len(bounds) + 1])
    dp.ClearField("min")
    dp.ClearField("max")
    if with_min_max:
        dp.min, dp.max = min(lo, hi), max(lo, hi)
    d = _metrics().decode(req.SerializeToString())
    assert d.dead == []
    for p in d.hists:
        back = LogBuckets.from_bytes(p.sketch.to_bytes())
        assert back.count == p.count == dp.count
        if with_min_max and p.count > 1:
            assert back.min <= back.max
