"""LogBuckets as Prometheus native buckets of a chosen schema and as classic le counts."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sketches import LogBuckets, Moments, from_prometheus, to_prometheus  # noqa: E402
from sketches.prometheus import le_counts, native_buckets  # noqa: E402

SETTINGS = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
lat = st.lists(st.one_of(st.floats(1e-5, 1e4, allow_nan=False), st.just(0.0), st.floats(-10, -1e-3)), max_size=300)


def _sketch(values, max_bytes=1024, scale=12):
    s = LogBuckets(max_bytes, scale=scale)
    s.update_many(np.asarray(values, dtype=np.float64))
    return s


def _width(scale: int) -> float:
    return 2.0 ** (2.0**-scale) - 1.0


@SETTINGS
@given(lat, st.integers(-4, 8), st.sampled_from([128, 1024, 4096]))
def test_native_counts_add_up_and_quantiles_stay_within_the_schema_width(values, schema, max_bytes):
    s = _sketch(values, max_bytes)
    if s.scale - schema < -10:
        with pytest.raises(ValueError, match="finer"):
            native_buckets(s, schema)
        return
    nb = native_buckets(s, schema)
    assert nb.zero_count + sum(c for _, c in nb.positive) + sum(c for _, c in nb.negative) == nb.count == len(values)
    assert all(c > 0 for _, c in nb.positive + nb.negative)
    assert [i for i, _ in nb.positive] == sorted(i for i, _ in nb.positive)
    if not values:
        return
    back = from_prometheus(nb.to_histogram(), 16384)
    assert back.count == s.count
    # Order statistics (no interpolation between values) lie in the same bucket of the
    # coarser of the two layouts, so they agree within its width.
    tol = _width(min(schema, s.scale))
    n = len(values)
    qs = sorted({k / (n - 1) for k in (0, n // 4, n // 2, (9 * n) // 10, n - 1)}) if n > 1 else [0.5]
    for q, ours, theirs in zip(qs, s.quantiles(qs), back.quantiles(qs)):
        assert np.sign(ours) == np.sign(theirs), (q, ours, theirs)
        if ours != 0.0:
            assert abs(theirs / ours - 1.0) <= tol * (1 + 1e-9) + 1e-12, (q, ours, theirs)


@SETTINGS
@given(lat)
def test_native_at_or_below_the_sketch_scale_is_the_exact_merge(values):
    s = _sketch(values, 4096)
    schema = min(s.scale, 8) - 1 if s.scale > -4 else -4
    ref = LogBuckets(4096, scale=schema)
    ref.merge(s)
    nb = native_buckets(s, schema)
    assert dict(nb.positive) == {i + 1: c for i, c in ref.pos.items()}
    assert dict(nb.negative) == {i + 1: c for i, c in ref.neg.items()}
    assert nb.to_histogram() == to_prometheus(ref)


def test_finer_schema_splits_each_bucket_evenly():
    s = LogBuckets(4096, scale=0)  # bucket (1, 2] holds 10, (2, 4] holds 3
    s.update_many([1.5] * 10 + [3.0] * 3)
    nb = native_buckets(s, 2)  # four pieces per bucket
    assert nb.positive == ((1, 3), (2, 2), (3, 3), (4, 2), (5, 1), (6, 1), (8, 1))
    assert nb.count == 13


def test_exact_sum_and_validation():
    v = np.random.default_rng(1).lognormal(-3, 1, 1000)
    s, m = _sketch(v), Moments()
    m.update_many(v)
    assert native_buckets(s, 3, sum=m.sum).sum == m.sum
    for bad in (9, -5, 3.0):
        with pytest.raises(ValueError, match="schema"):
            native_buckets(s, bad)  # type: ignore[arg-type]


def test_native_quantiles_of_a_latency_sketch_at_schema_3_and_4():
    v = np.random.default_rng(2).lognormal(np.log(0.05), 0.8, 100_000)
    s = _sketch(v)
    true = np.quantile(v, [0.5, 0.9, 0.99])
    for schema in (3, 4):
        est = from_prometheus(native_buckets(s, schema).to_histogram(), 16384).quantiles([0.5, 0.9, 0.99])
        assert (np.abs(est / true - 1) <= _width(schema)).all()


@SETTINGS
@given(lat, st.lists(st.floats(-20, 2e4, allow_nan=False), min_size=1, max_size=30, unique=True))
def test_le_counts_are_monotone_and_within_one_bucket_of_the_truth(values, bounds):
    s = _sketch(values, 1024)
    b = np.sort(np.asarray(bounds))
    got = le_counts(s, b)
    assert got.dtype == np.int64 and (np.diff(got) >= 0).all() and (got >= 0).all() and (got <= s.count).all()
    v = np.asarray(values)
    true = np.array([(v <= x).sum() for x in b])
    m = s.mapping
    for x, g, t in zip(b, got, true):
        if x >= s.max:
            assert g == s.count
        elif x < s.min:
            assert g == 0
        else:  # off by at most the count of the sketch bucket that the bound cuts
            cut = 0
            if x > 0:
                i = m.index(x)
                cut = dict(s.pos.items()).get(i, 0)
            elif x < 0:
                cut = dict(s.neg.items()).get(m.index(-x), 0) + dict(s.neg.items()).get(m.index(-x) - 1, 0)
            assert abs(int(g) - int(t)) <= cut, (x, g, t, cut)


def test_le_counts_exact_on_bucket_edges_and_validation():
    s = LogBuckets(4096, scale=0)
    s.update_many([0.0, 0.5, 1.5, 1.7, 3.0, 3.5, 9.0])
    assert le_counts(s, [-1.0, 0.0, 1.0, 2.0, 4.0, 8.0, 16.0]).tolist() == [0, 1, 2, 4, 6, 6, 7]
    assert le_counts(LogBuckets(), [1.0]).tolist() == [0]
    with pytest.raises(ValueError, match="increasing"):
        le_counts(s, [2.0, 1.0])
    with pytest.raises(ValueError):
        le_counts(s, [1.0, float("inf")])
