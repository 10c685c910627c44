"""OTLP exponential points into sketches: deltas of cumulative points (scale drops
included), downscaling, exact merges; points made by the real opentelemetry-sdk."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sketches import ExponentialHistogramDataPoint, LogBuckets, OtelBuckets, from_otel, to_otel  # noqa: E402
from sketches.otel import check_point, downscale_point, merge_otel, point_delta  # noqa: E402

SETTINGS = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
lat = st.lists(st.one_of(st.floats(1e-4, 1e3, allow_nan=False), st.just(0.0)), max_size=150)


def _sketch(values, max_bytes=4096, scale=12):
    s = LogBuckets(max_bytes, scale=scale)
    s.update_many(np.asarray(values, dtype=np.float64))
    return s


def _at(s: LogBuckets, scale: int) -> LogBuckets:
    out = LogBuckets(s.max_bytes, scale=min(scale, s.scale))
    out.merge(s)
    return out


def _sdk_points(batches, max_size=160):
    """Cumulative exponential points from the real SDK, one collection after each batch."""
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.metrics.view import ExponentialBucketHistogramAggregation, View

    reader = InMemoryMetricReader()
    provider = MeterProvider(
        metric_readers=[reader], views=[View(instrument_name="lat", aggregation=ExponentialBucketHistogramAggregation(max_size=max_size))]
    )
    hist = provider.get_meter("test").create_histogram("lat")
    out = []
    for batch in batches:
        for x in batch:
            hist.record(float(x))
        p = reader.get_metrics_data().resource_metrics[0].scope_metrics[0].metrics[0].data.data_points[0]
        out.append(
            ExponentialHistogramDataPoint(
                scale=p.scale, count=p.count, sum=p.sum, zero_count=p.zero_count,
                positive=OtelBuckets(p.positive.offset, tuple(p.positive.bucket_counts)),
                negative=OtelBuckets(p.negative.offset, tuple(p.negative.bucket_counts)), min=p.min, max=p.max,
            )
        )
    provider.shutdown()
    return out


def test_sdk_cumulative_points_difference_across_a_scale_drop():
    rng = np.random.default_rng(1)
    first = rng.lognormal(np.log(0.05), 0.1, 1000)  # narrow: a fine scale
    second = rng.lognormal(np.log(0.05), 2.0, 1000)  # wide: the SDK drops the scale
    p1, p2 = _sdk_points([first, second])
    assert p2.scale < p1.scale  # the situation under test
    delta = point_delta(p2, p1)
    assert delta is not None and delta.scale == p2.scale and delta.count == 1000
    assert delta.sum == pytest.approx(second.sum())
    # the SDK's buckets are ours: the delta is the second batch's sketch at that scale
    assert from_otel(delta).pos == _sketch(second, 16384, delta.scale).pos
    s = LogBuckets(4096)
    merge_otel(s, p1)
    merge_otel(s, delta)
    whole = from_otel(p2, 4096)
    assert s.scale == whole.scale and s.pos == whole.pos and s.count == 2000
    assert point_delta(p1, p2) is None  # counts went down: a reset, a new baseline


def test_sdk_points_merge_exactly_into_a_sketch_of_the_values():
    rng = np.random.default_rng(2)
    a, b = rng.lognormal(np.log(0.2), 0.5, 3000), rng.lognormal(np.log(0.3), 0.5, 3000)
    (pa,) = _sdk_points([a])
    (pb,) = _sdk_points([b])
    s = LogBuckets(4096)
    merge_otel(s, pa)
    merge_otel(s, pb)
    ref = _at(_sketch(np.concatenate([a, b]), 16384), s.scale)
    assert s.pos == ref.pos and s.count == 6000
    assert s.min == min(a.min(), b.min()) and s.max == max(a.max(), b.max())
    np.testing.assert_allclose(s.quantiles([0.5, 0.99]), np.quantile(np.concatenate([a, b]), [0.5, 0.99]), rtol=0.02)


@SETTINGS
@given(lat, lat, st.sampled_from([256, 1024]), st.integers(0, 8))
def test_delta_of_cumulative_sketch_points_is_the_new_values(old, new, max_bytes, drop):
    before = to_otel(_sketch(old, max_bytes))
    after = to_otel(_at(_sketch(old + new, max_bytes), before.scale - drop))  # a scale that may drop
    delta = point_delta(after, before)
    assert delta is not None
    check_point(delta)
    assert delta.count == len(new) and delta.zero_count == new.count(0.0)
    got = from_otel(delta, 16384)
    ref = _at(_sketch(new, 16384), got.scale)
    assert got.scale == ref.scale and got.pos == ref.pos
    if new and any(x > 0 for x in old):
        assert point_delta(before, after) is None or not any(x > 0 for x in new)


@SETTINGS
@given(lat, st.integers(0, 6))
def test_downscale_point_is_exact(values, by):
    s = _sketch(values, 4096)
    dp = to_otel(s)
    down = downscale_point(dp, dp.scale - by)
    assert down.scale == dp.scale - by and down.count == dp.count and (down.min, down.max) == (dp.min, dp.max)
    assert from_otel(down, 4096).pos == _at(s, dp.scale - by).pos
    with pytest.raises(ValueError, match="refine"):
        downscale_point(dp, dp.scale + 1)


def test_merge_otel_in_both_directions_of_scale():
    v1, v2 = np.linspace(0.01, 1.0, 500), np.linspace(0.5, 5.0, 500)
    fine = to_otel(_sketch(v1, 16384, 8))
    coarse = to_otel(_sketch(v2, 16384, 3))
    s = _sketch(v1[:10], 16384, 6)
    merge_otel(s, fine)  # finer point: merged down to the sketch's scale
    assert s.scale == 6 and s.count == 510
    merge_otel(s, coarse)  # coarser point: the sketch coarsens to it
    assert s.scale == 3 and s.count == 1010
    assert s.pos == _at(_sketch(np.concatenate([v1[:10], v1, v2]), 16384), 3).pos


@pytest.mark.parametrize(
    "dp, match",
    [
        (ExponentialHistogramDataPoint(scale=0, count=1, sum=0.0, zero_count=0, positive=OtelBuckets(0, (2, -1))), "non-negative"),
        (ExponentialHistogramDataPoint(scale=0, count=3, sum=0.0, zero_count=0, positive=OtelBuckets(0, (1, 1))), "does not match"),
        (ExponentialHistogramDataPoint(scale=0, count=1, sum=0.0, zero_count=-1, positive=OtelBuckets(0, (2,))), "zero_count"),
        (ExponentialHistogramDataPoint(scale=0, count=1, sum=0.0, zero_count=0, positive=OtelBuckets(0.5, (1,))), "offset"),  # type: ignore[arg-type]
        (ExponentialHistogramDataPoint(scale=1.5, count=0, sum=0.0, zero_count=0), "scale"),  # type: ignore[arg-type]
    ],
)
def test_bad_points_are_named(dp, match):
    with pytest.raises(ValueError, match=match):
        check_point(dp)
    with pytest.raises(ValueError):
        merge_otel(LogBuckets(), dp)
    with pytest.raises(ValueError):
        point_delta(dp, dp)
