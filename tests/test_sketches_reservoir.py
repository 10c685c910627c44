"""Reservoir: uniform inclusion (scalar, batched, merged), determinism, round trips."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sketches import Reservoir  # noqa: E402

SETTINGS = settings(max_examples=100, deadline=None)


def _inclusion(make, trials=1500, n=60):
    hits = np.zeros(n)
    for seed in range(trials):
        hits[np.asarray(make(seed).sample, dtype=int)] += 1
    return hits / trials


def _check_uniform(freq, k, n):
    # Each item is kept with probability k/n; 1500 trials → sd ≈ 0.012 at k/n = 1/6.
    assert np.abs(freq - k / n).max() < 0.05, freq
    # the late items are not favoured over the early ones
    assert abs(freq[: n // 2].mean() - freq[n // 2 :].mean()) < 0.02


def test_scalar_updates_are_uniform():
    def make(seed):
        r = Reservoir(10, seed=seed)
        for x in range(60):
            r.update(float(x))
        return r

    _check_uniform(_inclusion(make), 10, 60)


def test_batched_updates_match_scalar_updates_exactly():
    for seed in range(20):
        a, b = Reservoir(7, seed=seed), Reservoir(7, seed=seed)
        v = np.arange(500, dtype=float)
        for x in v:
            a.update(float(x))
        b.update_many(v[:13])
        b.update_many(v[13:])
        assert a.sample == b.sample and a.count == b.count == 500


def test_weighted_merge_is_uniform_over_the_union():
    def make(seed):
        a = Reservoir(10, seed=seed)
        a.update_many(np.arange(15, dtype=float))
        b = Reservoir(10, seed=seed + 10_000)
        b.update_many(np.arange(15, 60, dtype=float))
        a.merge(b)
        assert a.count == 60 and len(a.sample) == 10
        return a

    freq = _inclusion(make)
    _check_uniform(freq, 10, 60)
    # the smaller side contributes in proportion to what it saw, not half the sample
    assert abs(freq[:15].sum() - 10 * 15 / 60) < 0.2


def test_merge_then_continue_stays_uniform():
    def make(seed):
        a = Reservoir(10, seed=seed)
        a.update_many(np.arange(20, dtype=float))
        b = Reservoir(10, seed=seed + 10_000)
        b.update_many(np.arange(20, 30, dtype=float))
        a.merge(b)
        a.update_many(np.arange(30, 60, dtype=float))
        return a

    _check_uniform(_inclusion(make), 10, 60)


@SETTINGS
@given(st.lists(st.floats(-1e9, 1e9, allow_nan=False), max_size=300), st.integers(1, 20), st.integers(0, 2**32))
def test_round_trip_continues_identically(values, size, seed):
    r = Reservoir(size, seed=seed)
    r.update_many(values)
    t = Reservoir.from_bytes(r.to_bytes())
    assert t.to_bytes() == r.to_bytes()
    more = np.linspace(0, 1, 257)
    r.update_many(more)
    t.update_many(more)
    assert r.sample == t.sample
    if values:
        est = r.quantiles([0.0, 0.5, 1.0])
        assert est[0] <= est[1] <= est[2]


@SETTINGS
@given(st.binary(max_size=300))
def test_random_bytes_rejected_cleanly(data):
    try:
        Reservoir.from_bytes(data)
    except ValueError:
        pass


def test_bad_arguments():
    with pytest.raises(ValueError):
        Reservoir(0)
    with pytest.raises(ValueError):
        Reservoir().update(float("inf"))
    with pytest.raises(TypeError):
        Reservoir().merge(object())  # type: ignore[arg-type]


def test_merge_needs_equal_sizes_and_keeps_the_invariant():
    a = Reservoir(20, seed=1)
    with pytest.raises(ValueError, match="reservoir of 5"):
        a.merge(Reservoir(5))
    b = Reservoir(20, seed=2)
    b.update_many(np.arange(100.0, 200.0))
    a.update_many(np.arange(3.0))
    a.merge(b)
    assert a.count == 103 and len(a.sample) == 20 and set(a.sample) <= set(range(3)) | set(range(100, 200))
    assert Reservoir.from_bytes(a.to_bytes()).sample == a.sample


def test_registry_size_fits_the_budget_even_with_full_width_varints():
    from sketches import make_estimator

    for budget in (128, 1024, 4096):
        r = make_estimator("reservoir", max_bytes=budget)
        r.update_many(np.arange(float(r.size)))
        r.count = 2**62 - 1  # the widest count and skip position a state can hold
        r._next = 2**62
        assert len(r.to_bytes()) <= budget
