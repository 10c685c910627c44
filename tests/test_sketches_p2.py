"""Extended P²: exact below the marker count, accurate on i.i.d. streams, round trips."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sketches import P2Quantiles  # noqa: E402

SETTINGS = settings(max_examples=100, deadline=None)


def test_marker_count_is_2m_plus_3():
    assert P2Quantiles([0.5]).markers == 5
    assert P2Quantiles([0.5, 0.9, 0.99]).markers == 9


@SETTINGS
@given(st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=1, max_size=8))
def test_exact_while_fewer_values_than_markers(values):
    p = P2Quantiles([0.5, 0.9, 0.99])
    p.update_many(values)
    qs = [0.0, 0.5, 0.9, 0.99, 1.0]
    np.testing.assert_allclose(p.quantiles(qs), np.quantile(values, qs))


@pytest.mark.parametrize("dist", ["lognormal", "exponential", "uniform"])
def test_accuracy_on_iid_streams(dist):
    rng = np.random.default_rng(11)
    v = getattr(rng, dist)(size=100_000)
    p = P2Quantiles([0.5, 0.9, 0.99])
    p.update_many(v)
    rel = np.abs(p.quantiles([0.5, 0.9, 0.99]) / np.quantile(v, [0.5, 0.9, 0.99]) - 1)
    assert rel.max() < 0.01, rel


@SETTINGS
@given(st.lists(st.floats(-1e3, 1e3, allow_nan=False), max_size=200), st.lists(st.floats(0.01, 0.99), min_size=1, max_size=8))
def test_monotone_inside_min_max_and_round_trip(values, qs):
    p = P2Quantiles([0.25, 0.5, 0.75])
    p.update_many(values)
    est = p.quantiles(sorted(qs))
    if values:
        assert (np.diff(est) >= -1e-9).all()
        assert est.min() >= min(values) and est.max() <= max(values)
    q = P2Quantiles.from_bytes(p.to_bytes())
    assert q.to_bytes() == p.to_bytes()
    np.testing.assert_array_equal(q.quantiles(qs), p.quantiles(qs))


@SETTINGS
@given(st.binary(max_size=300))
def test_random_bytes_rejected_cleanly(data):
    try:
        P2Quantiles.from_bytes(data)
    except ValueError:
        pass


def test_bad_arguments():
    for probs in ([], [0.5, 0.5], [0.0], [1.0], [0.9, 0.5]):
        with pytest.raises(ValueError):
            P2Quantiles(probs)
    with pytest.raises(ValueError):
        P2Quantiles().update(float("nan"))
    assert np.isnan(P2Quantiles().quantile(0.5))


@pytest.mark.parametrize("dist", ["lognormal", "exponential", "uniform"])
def test_merged_halves_stay_close_to_the_truth(dist):
    rng = np.random.default_rng(12)
    v = getattr(rng, dist)(size=100_000)
    parts = []
    for chunk in np.array_split(v, 4):
        p = P2Quantiles([0.5, 0.9, 0.99])
        p.update_many(chunk)
        parts.append(p)
    merged = parts[0] + parts[1]
    merged.merge(parts[2] + parts[3])
    assert merged.count == v.size
    qs = [0.5, 0.9, 0.99]
    rel = np.abs(merged.quantiles(qs) / np.quantile(v, qs) - 1)
    assert (rel < 0.03).all(), rel
    assert merged._n[0] == 1 and merged._n[-1] == v.size and np.all(np.diff(merged._n) > 0)
    back = P2Quantiles.from_bytes(merged.to_bytes())  # a merged state is a valid state
    np.testing.assert_array_equal(back.quantiles(qs), merged.quantiles(qs))
    merged.update_many(v[:1000])  # and keeps updating
    assert merged.count == v.size + 1000


def test_merge_with_few_values_replays_them_exactly():
    a, b = P2Quantiles([0.5]), P2Quantiles([0.5])
    a.update_many([1.0, 2.0])
    b.update_many([3.0, 4.0])
    a.merge(b)
    assert a.quantile(0.5) == 2.5 and a.count == 4
    big = P2Quantiles([0.5])
    big.update_many(np.arange(100.0))
    a.merge(big)  # buffered side into a full one: the full state plus the buffered values
    assert a.count == 104 and 40 < a.quantile(0.5) < 60
    with pytest.raises(ValueError, match="tracking"):
        a.merge(P2Quantiles([0.9]))
