"""OpenTelemetry exponential histogram and Prometheus native histogram round trips."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sketches import (  # noqa: E402
    ExponentialHistogramDataPoint,
    LogBuckets,
    OtelBuckets,
    PromNativeHistogram,
    from_otel,
    from_prometheus,
    to_otel,
    to_prometheus,
)

SETTINGS = settings(max_examples=100, deadline=None)
vals = st.lists(st.one_of(st.floats(-1e6, 1e6, allow_nan=False), st.just(0.0)), max_size=200)


def _sketch(values, max_bytes=512):
    s = LogBuckets(max_bytes)
    s.update_many(np.asarray(values, dtype=np.float64))
    return s


@SETTINGS
@given(vals, st.sampled_from([128, 512, 4096]))
def test_otel_round_trip(values, max_bytes):
    s = _sketch(values, max_bytes)
    dp = to_otel(s)
    assert dp.count == len(values) and dp.zero_count == sum(1 for x in values if x == 0)
    assert sum(dp.positive.bucket_counts) + sum(dp.negative.bucket_counts) + dp.zero_count == dp.count
    back = from_otel(dp, max_bytes)
    assert to_otel(back) == dp
    assert (back.scale, back.zero, back.count, back.min, back.max) == (s.scale, s.zero, s.count, s.min, s.max)
    assert back.pos == s.pos and back.neg == s.neg
    assert back.quantum is None  # the data point cannot say whether values sat on a lattice


@SETTINGS
@given(vals)
def test_prometheus_round_trip(values):
    s = _sketch(values, 512)
    h = to_prometheus(s)
    assert -4 <= h.schema <= 8
    back = from_prometheus(h, 512)
    ref = LogBuckets(512, scale=min(s.scale, 8))  # Prometheus stops at schema 8
    ref.merge(s)
    assert (back.scale, back.zero, back.count) == (ref.scale, ref.zero, ref.count) == (h.schema, s.zero, s.count)
    assert back.pos == ref.pos and back.neg == ref.neg
    assert to_prometheus(back) == h


def test_otel_bucket_boundaries_are_upper_inclusive():
    s = LogBuckets(4096, scale=0)  # base 2: bucket i is (2^i, 2^(i+1)]
    s.update_many([2.0, 2.5, 4.0, 4.5])
    dp = to_otel(s)
    assert dp.scale == 0
    assert dp.positive.offset == 0 and dp.positive.bucket_counts == (1, 2, 1)


def test_prometheus_spans_and_deltas_layout():
    s = LogBuckets(4096, scale=0)
    s.update_many([1.5, 1.5, 3.0, 100.0])  # OTel buckets 0, 0, 1, 6 → Prometheus 1, 2, 7
    h = to_prometheus(s)
    assert h.positive_spans == ((1, 2), (4, 1))
    assert h.positive_deltas == (2, -1, 0)
    assert h.zero_count == 0 and h.count == 4


def test_high_otel_scale_is_merged_down_exactly():
    dp = ExponentialHistogramDataPoint(
        scale=20, count=3, sum=3.0, zero_count=0, positive=OtelBuckets(0, (1, 1, 1)), min=1.0, max=1.0000011
    )
    s = from_otel(dp)
    assert s.scale <= 12 and s.count == 3
    assert [c for _, c in s.pos.items()] == [3]


def test_scales_above_prometheus_are_exported_at_schema_8():
    s = _sketch(np.random.default_rng(0).uniform(1.0, 1.01, 1000), 16384)
    assert s.scale > 8
    h = to_prometheus(s)
    assert h.schema == 8 and sum(np.cumsum(h.positive_deltas)) == 1000


@pytest.mark.parametrize(
    "dp",
    [
        ExponentialHistogramDataPoint(scale=0, count=5, sum=0.0, zero_count=1, positive=OtelBuckets(0, (1,))),
        ExponentialHistogramDataPoint(scale=0, count=1, sum=0.0, zero_count=0, positive=OtelBuckets(0, (-1, 2))),
        ExponentialHistogramDataPoint(scale=-11, count=0, sum=0.0, zero_count=0),
    ],
)
def test_bad_otel_points_rejected(dp):
    with pytest.raises(ValueError):
        from_otel(dp)


def test_bad_prometheus_histograms_rejected():
    with pytest.raises(ValueError):
        from_prometheus(PromNativeHistogram(schema=9, count=0, sum=0.0, zero_count=0))
    with pytest.raises(ValueError):
        from_prometheus(PromNativeHistogram(schema=0, count=1, sum=0.0, zero_count=0, positive_spans=((0, 2),), positive_deltas=(1,)))
    with pytest.raises(ValueError):
        from_prometheus(PromNativeHistogram(schema=0, count=1, sum=0.0, zero_count=0, positive_spans=((0, 2),), positive_deltas=(1, -2)))


def test_hostile_index_ranges_are_coarsened_not_allocated():
    # two buckets 200 000 indices apart (~780 octaves): coarsened, never a 200k array
    h = PromNativeHistogram(
        schema=8, count=2, sum=0.0, zero_count=0, positive_spans=((0, 1), (200_000, 1)), positive_deltas=(1, 0)
    )
    s = from_prometheus(h, 1024)
    assert s.count == 2 and s.pos.arr.size < 8 * 1024 and s.scale < 8
    # past the float range the bounds are infinite: rejected, not allocated
    far = PromNativeHistogram(
        schema=8, count=2, sum=0.0, zero_count=0, positive_spans=((0, 1), (10**12, 1)), positive_deltas=(1, 0)
    )
    with pytest.raises(ValueError):
        from_prometheus(far, 1024)
    with pytest.raises(ValueError):
        from_otel(ExponentialHistogramDataPoint(scale=0, count=2**70, sum=0.0, zero_count=0, positive=OtelBuckets(0, (2**70,))))
