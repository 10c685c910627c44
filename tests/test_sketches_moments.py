"""Moments: Welford updates against numpy, Chan merge, serialization."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sketches import Moments  # noqa: E402

SETTINGS = settings(max_examples=150, deadline=None)
vals = st.lists(st.floats(-1e6, 1e6, allow_nan=False), max_size=200)


def _m(values, scalar=False) -> Moments:
    m = Moments()
    if scalar:
        for x in values:
            m.update(x)
    else:
        m.update_many(np.asarray(values, dtype=np.float64))
    return m


@SETTINGS
@given(vals, st.booleans())
def test_matches_numpy(values, scalar):
    m = _m(values, scalar)
    assert m.count == len(values)
    if values:
        v = np.asarray(values)
        assert m.mean == pytest.approx(v.mean(), rel=1e-9, abs=1e-6)
        if len(values) > 1:
            assert m.variance == pytest.approx(v.var(ddof=1), rel=1e-7, abs=1e-4)
        assert (m.min, m.max) == (v.min(), v.max())


@SETTINGS
@given(vals, st.integers(0, 200))
def test_merge_of_parts_equals_whole(values, cut):
    whole = _m(values)
    a, b = _m(values[:cut]), _m(values[cut:])
    merged = a + b
    assert (merged.count, merged.min, merged.max) == (whole.count, whole.min, whole.max)
    assert merged.mean == pytest.approx(whole.mean, rel=1e-9, abs=1e-6)
    assert merged.variance == pytest.approx(whole.variance, rel=1e-7, abs=1e-4)


@SETTINGS
@given(vals)
def test_round_trip(values):
    m = _m(values)
    t = Moments.from_bytes(m.to_bytes())
    assert (t.count, t.mean, t.variance, t.min, t.max) == (m.count, m.mean, m.variance, m.min, m.max)


@SETTINGS
@given(st.binary(max_size=64))
def test_random_bytes(data):
    try:
        m = Moments.from_bytes(data)
    except ValueError:
        return
    assert m.variance >= 0 and m.to_bytes() == data


def test_welford_is_stable_with_a_large_offset():
    v = 1e9 + np.array([4.0, 7.0, 13.0, 16.0])
    m = _m(v.tolist(), scalar=True)
    assert m.variance == pytest.approx(30.0, rel=1e-9)
    assert m.std == pytest.approx(math.sqrt(30.0))


def test_non_finite_rejected():
    m = Moments()
    with pytest.raises(ValueError):
        m.update(math.nan)
    with pytest.raises(ValueError):
        m.update_many([1.0, math.inf])
    assert m.count == 0
