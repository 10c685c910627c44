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

from fractions import Fraction  # noqa: E402
import struct  # noqa: E402

from sketches import Moments  # noqa: E402
from sketches.moments import _exact_batch  # noqa: E402

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
    assert m.variance >= 0
    assert m.to_bytes() == data or data[0] == 1  # version 1 bytes are rewritten as version 2
    assert Moments.from_bytes(m.to_bytes()).sum == m.sum


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


wide = st.lists(st.one_of(st.floats(allow_nan=False, allow_infinity=False), st.floats(-1e3, 1e3, allow_nan=False), st.sampled_from([0.1, 0.2, 0.3, 1e16, -1e16, 5e-324])), max_size=120)


def _exact(values) -> float:
    total = sum((Fraction(x) for x in values), Fraction(0))
    try:
        return float(total)  # (correctly rounded)
    except OverflowError:
        return math.inf if total > 0 else -math.inf


@SETTINGS
@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@given(wide, st.integers(0, 120), st.booleans())
def test_sum_is_exact_in_any_split_and_order(values, cut, scalar):
    whole = _m(values, scalar)
    assert whole.sum == _exact(values)
    a, b = _m(values[:cut], not scalar), _m(values[cut:], scalar)
    assert (b + a).sum == whole.sum and (a + b).sum == whole.sum
    assert _m(values[::-1], scalar).sum == whole.sum
    if math.isfinite(whole.mean) and math.isfinite(whole.variance):  # (else not serializable, as before)
        back = Moments.from_bytes(whole.to_bytes())
        assert back.sum == whole.sum and back.to_bytes() == whole.to_bytes()


def test_exact_batch_on_large_arrays_with_a_wide_range():
    rng = np.random.default_rng(4)
    for v in (
        rng.lognormal(np.log(0.05), 3.0, 50_000),
        rng.normal(0, 1, 20_000) * 10.0 ** rng.integers(-300, 300, 20_000),
        np.concatenate([rng.normal(0, 1, 1000), [1e308, 1e308, -1e308, 5e-324]]),
    ):
        n, k = _exact_batch(v, float(v.min()), float(v.max()))
        assert Fraction(n, 2**k) == sum(Fraction(x) for x in v.tolist())


def test_sum_never_decreases_for_non_negative_values():
    rng = np.random.default_rng(5)
    m = Moments()
    last = 0.0
    for i in range(3000):
        if i % 3:
            m.update(float(rng.lognormal(-3, 2)))
        else:
            m.update_many(rng.lognormal(-3, 2, int(rng.integers(1, 40))))
        assert m.sum >= last
        last = m.sum
    tiny = Moments()
    tiny.update(1e16)
    for _ in range(100):
        tiny.update(1.0)  # a float running sum would stay at 1e16 forever
    assert tiny.sum == 1e16 + 100


def test_version_1_bytes_are_still_read():
    old = bytes([1, 3]) + struct.pack("<4d", 2.0, 2.0, 1.0, 3.0)  # 1, 2, 3
    m = Moments.from_bytes(old)
    assert (m.count, m.mean, m.variance, m.sum) == (3, 2.0, 1.0, 6.0)
    assert m.to_bytes()[0] == 2 and Moments.from_bytes(m.to_bytes()).sum == 6.0


def test_inconsistent_sums_are_rejected():
    m = _m([1.0, 2.0])
    data = bytearray(m.to_bytes())
    with pytest.raises(ValueError):
        Moments.from_bytes(bytes(data[:-2]) + bytes([0x03, 0x00]))  # sum -2 with min 1
    empty = bytes([2, 0]) + struct.pack("<4d", 0.0, 0.0, math.inf, -math.inf) + bytes([0x02, 0x00])
    with pytest.raises(ValueError, match="empty"):
        Moments.from_bytes(empty)
    with pytest.raises(ValueError, match="normalized"):
        Moments.from_bytes(bytes(data[:-2]) + bytes([0x0C, 0x01]))  # 6 / 2: not the shortest form


def test_from_summary_keeps_count_sum_min_max():
    m = Moments.from_summary(4, 10.0, 1.0, 4.0)
    assert (m.count, m.sum, m.mean, m.min, m.max) == (4, 10.0, 2.5, 1.0, 4.0)
    m.merge(_m([5.0]))
    assert m.sum == 15.0 and m.count == 5
    assert Moments.from_summary(0, 0.0, 0.0, 0.0).count == 0
