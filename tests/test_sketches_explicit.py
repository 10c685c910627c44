"""Explicit-bounds histogram points spread into LogBuckets: validation, exact counts,
values kept inside their buckets, the documented accuracy, real SDK points."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sketches import LogBuckets  # noqa: E402
from sketches.explicit import check_explicit, explicit_delta, explicit_to_sketch, merge_explicit  # noqa: E402

SETTINGS = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
PROM = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]
EXP12 = (0.001 * 1.2 ** np.arange(64)).tolist()
QS = [0.5, 0.9, 0.99]


def _bucketed(v: np.ndarray, bounds) -> list[int]:
    """How an exporter counts ``v``: bucket i holds (bounds[i-1], bounds[i]]."""
    return np.bincount(np.searchsorted(bounds, v, side="left"), minlength=len(bounds) + 1).tolist()


@pytest.mark.parametrize(
    "bounds, counts, match",
    [
        ([1.0, 1.0, 2.0], [0, 1, 0, 0], "strictly increasing: bounds\\[1\\]"),
        ([2.0, 1.0], [0, 1, 0], "strictly increasing"),
        ([1.0, 2.0], [0, 1], "2 bucket counts for 2 bounds \\(need 3\\)"),
        ([1.0, 2.0], [0, -1, 3], "counts\\[1\\] = -1"),
        ([1.0, 2.0], [0, 1.5, 3], "non-negative integers"),
        ([1.0, float("nan")], [0, 1, 3], "finite"),
        ([1.0, float("inf")], [0, 1, 3], "finite"),
    ],
)
def test_bad_points_are_refused_with_the_reason(bounds, counts, match):
    with pytest.raises(ValueError, match=match):
        check_explicit(bounds, counts)
    with pytest.raises(ValueError, match=match):
        explicit_to_sketch(bounds, counts)


def test_min_and_max_must_lie_in_the_occupied_extremes():
    with pytest.raises(ValueError, match="min"):
        explicit_to_sketch([1.0, 2.0], [0, 5, 0], min=2.5)
    with pytest.raises(ValueError, match="max"):
        explicit_to_sketch([1.0, 2.0], [0, 5, 0], max=0.5)
    s = explicit_to_sketch([1.0, 2.0], [0, 5, 0], min=1.2, max=1.9, sum=7.5)
    assert (s.min, s.max, s.sum, s.count) == (1.2, 1.9, 7.5, 5)


@SETTINGS
@given(
    st.lists(st.floats(-1e3, 1e4, allow_nan=False).filter(lambda x: x == 0 or abs(x) > 1e-6), min_size=0, max_size=20, unique=True),
    st.lists(st.integers(0, 10**6), min_size=21, max_size=21),
    st.sampled_from(["log", "linear"]),
)
def test_counts_are_exact_and_values_stay_in_their_buckets(bounds, counts, spread):
    b = sorted(bounds)
    c = counts[: len(b) + 1]
    s = explicit_to_sketch(b, c, spread=spread)
    assert s.count == sum(c)
    if not sum(c):
        assert np.isnan(s.quantile(0.5))
        return
    assert LogBuckets.from_bytes(s.to_bytes()) == s  # a valid sketch state
    base = 2.0 ** (2.0**-s.scale)
    cum = np.cumsum(c)
    edges = [-np.inf] + b + [np.inf]
    for i, n in enumerate(c):
        if n == 0:
            continue
        q = (cum[i] - n / 2) / s.count  # a rank in the middle of bucket i
        x = s.quantile(min(max(q, 0.0), 1.0))
        lo, hi = edges[i], edges[i + 1]
        slack = lambda y: abs(y) * (base - 1) + 1e-300  # noqa: E731  (one sketch bucket)
        assert lo - slack(lo) <= x or lo == -np.inf
        assert x <= hi + slack(hi) + (slack(lo) if hi == np.inf else 0) or hi == np.inf


@pytest.mark.parametrize("bounds, spread, bound", [(PROM, "log", (0.005, 0.20, 0.42)), (PROM, "linear", (0.005, 0.32, 0.47)), (EXP12, "log", (0.002, 0.006, 0.011))])
def test_accuracy_is_the_documented_one(bounds, spread, bound):
    """The numbers in sketches/explicit.py's docstring (lognormal, sigma 0.5-1.0)."""
    for sigma in (0.5, 0.8, 1.0):
        v = np.random.default_rng(int(sigma * 10)).lognormal(np.log(0.05), sigma, 100_000)
        s = explicit_to_sketch(bounds, _bucketed(v, bounds), sum=float(v.sum()), min=float(v.min()), max=float(v.max()), spread=spread)
        rel = np.abs(s.quantiles(QS) / np.quantile(v, QS) - 1)
        assert (rel <= bound).all(), (sigma, rel)
        assert s.min == v.min() and s.max == v.max() and s.sum == v.sum()


def test_log_spread_beats_linear_on_geometric_layouts():
    v = np.random.default_rng(8).lognormal(np.log(0.05), 0.8, 100_000)
    c = _bucketed(v, PROM)
    err = {sp: np.abs(explicit_to_sketch(PROM, c, spread=sp).quantiles(QS) / np.quantile(v, QS) - 1).max() for sp in ("log", "linear")}
    assert err["log"] < err["linear"]


def test_open_ends_without_min_and_max():
    s = explicit_to_sketch([1.0, 2.0], [3, 0, 4])  # (-inf, 1] from 0; (2, inf) just above 2
    assert s.count == 7 and 0.0 < s.min < 1.0 and 2.0 < s.max <= 2.0 * 2.0 ** (2.0**-s.scale)
    assert 0.0 < s.quantile(0.3) <= 1.0 and s.quantile(0.5) > 2.0
    z = explicit_to_sketch([0.0, 1.0], [5, 0, 0])  # (-inf, 0]: zeros (latency histograms)
    assert z.zero == 5 and z.quantile(0.5) == 0.0
    neg = explicit_to_sketch([-4.0, -1.0, 3.0], [0, 6, 8, 0])  # negatives and a bucket across 0
    assert neg.count == 14 and len(neg.neg) and len(neg.pos)
    assert -4.0 * 1.01 <= neg.quantile(0.0) and neg.quantile(1.0) <= 3.0 * 1.01


def test_merge_explicit_into_a_live_sketch():
    rng = np.random.default_rng(4)
    a, b = rng.lognormal(np.log(0.05), 0.5, 5000), rng.lognormal(np.log(0.05), 0.5, 5000)
    s = LogBuckets(1024)
    s.update_many(a)
    merge_explicit(s, EXP12, _bucketed(b, EXP12), sum=float(b.sum()))
    assert s.count == 10_000 and s.sum == pytest.approx(a.sum() + b.sum())
    both = np.concatenate([a, b])
    np.testing.assert_allclose(s.quantiles(QS), np.quantile(both, QS), rtol=0.015)


def test_explicit_delta():
    assert explicit_delta([1, 2], [1, 2, 3], [1, 2], [0, 2, 1]).tolist() == [1, 0, 2]
    assert explicit_delta([1, 2], [1, 2, 3], [1, 2], [2, 2, 1]) is None  # a count went down: reset
    assert explicit_delta([1, 3], [1, 2, 3], [1, 2], [0, 2, 1]) is None  # new bounds: new baseline


def test_real_sdk_explicit_histogram():
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    hist = provider.get_meter("test").create_histogram("lat_ms", unit="ms")
    v = np.random.default_rng(5).lognormal(np.log(40.0), 0.7, 20_000)
    for x in v.tolist():
        hist.record(x)
    p = reader.get_metrics_data().resource_metrics[0].scope_metrics[0].metrics[0].data.data_points[0]
    provider.shutdown()
    s = explicit_to_sketch(p.explicit_bounds, p.bucket_counts, sum=p.sum, min=p.min, max=p.max)
    assert s.count == 20_000 and s.sum == pytest.approx(v.sum()) and (s.min, s.max) == (v.min(), v.max())
    rel = np.abs(s.quantiles(QS) / np.quantile(v, QS) - 1)
    assert (rel < 0.42).all(), rel  # the SDK's default bounds (0, 5, 10, 25, ... ms): coarse
