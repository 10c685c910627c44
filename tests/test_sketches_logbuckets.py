"""LogBuckets: properties (hypothesis), budget, exact merge, serialization, hostile bytes."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sketches import LogBuckets, SketchDecodeError  # noqa: E402
from sketches._varint import put_svarint, put_uvarint  # noqa: E402

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

finite = st.floats(allow_nan=False, allow_infinity=False, width=64)
latencies = st.floats(min_value=0.0, max_value=1e4, allow_nan=False)
values_lists = st.lists(st.one_of(finite, latencies, st.sampled_from([0.0, 0.001, 0.002, 1.0, -1.0])), min_size=0, max_size=300)
budgets = st.sampled_from([64, 100, 256, 1024])


def _sketch(values, max_bytes=1024, scalar=False) -> LogBuckets:
    s = LogBuckets(max_bytes)
    if scalar:
        for x in values:
            s.update(x)
    else:
        s.update_many(np.asarray(values, dtype=np.float64))
    return s


@SETTINGS
@given(values_lists, budgets, st.lists(st.floats(0.0, 1.0), min_size=1, max_size=12))
def test_quantiles_monotone_and_inside_min_max(values, max_bytes, qs):
    s = _sketch(values, max_bytes)
    qs = sorted(qs)
    est = s.quantiles(qs)
    if not values:
        assert np.isnan(est).all()
        return
    assert (np.diff(est) >= 0).all(), est
    assert (est >= min(values)).all() and (est <= max(values)).all()
    assert s.quantile(0.0) == min(values) and s.quantile(1.0) == max(values)


@SETTINGS
@given(values_lists, budgets, st.integers(0, 300), st.booleans())
def test_merge_of_parts_equals_sketch_of_whole(values, max_bytes, cut, scalar):
    cut = min(cut, len(values))
    whole = _sketch(values, max_bytes, scalar)
    a = _sketch(values[:cut], max_bytes, scalar)
    b = _sketch(values[cut:], max_bytes, scalar)
    merged = a + b
    assert merged == whole
    assert merged.to_bytes() == whole.to_bytes() or not math.isfinite(whole.sum) or merged.sum != whole.sum
    a.merge(b)
    assert a == whole


@SETTINGS
@given(values_lists, budgets)
def test_serialization_round_trip_within_budget(values, max_bytes):
    s = _sketch(values, max_bytes)
    data = s.to_bytes()
    assert len(data) <= max_bytes or s.scale == -10
    t = LogBuckets.from_bytes(data)
    assert t == s
    assert t.to_bytes() == data
    np.testing.assert_array_equal(t.quantiles([0.1, 0.5, 0.99]), s.quantiles([0.1, 0.5, 0.99]))


@SETTINGS
@given(st.binary(max_size=200))
def test_random_bytes_rejected_cleanly(data):
    try:
        s = LogBuckets.from_bytes(data)
    except ValueError:
        return
    assert s.to_bytes()  # whatever decoded must be a usable sketch


@SETTINGS
@given(values_lists, st.data())
def test_corrupted_bytes_rejected_cleanly(values, data):
    good = bytearray(_sketch(values, 256).to_bytes())
    mode = data.draw(st.sampled_from(["flip", "truncate", "extend"]))
    if mode == "flip":
        i = data.draw(st.integers(0, len(good) - 1))
        good[i] ^= data.draw(st.integers(1, 255))
    elif mode == "truncate":
        del good[data.draw(st.integers(0, len(good) - 1)) :]
    else:
        good += data.draw(st.binary(min_size=1, max_size=8))
    try:
        s = LogBuckets.from_bytes(bytes(good))
    except ValueError:
        return
    assert s.count == s.zero + s.pos.total() + s.neg.total()


def test_hostile_header_cannot_force_a_huge_allocation():
    out = bytearray([2])
    put_uvarint(out, 1024)
    put_svarint(out, 0)
    put_uvarint(out, 10**15)
    put_uvarint(out, 0)
    out += b"\0" * 24
    put_uvarint(out, 1 << 40)  # claims a 2^40-bucket span with no payload
    with pytest.raises(SketchDecodeError):
        LogBuckets.from_bytes(bytes(out))
    with pytest.raises(SketchDecodeError, match="version"):
        LogBuckets.from_bytes(b"\x07")
    with pytest.raises(ValueError):
        LogBuckets.from_bytes(b"")
    with pytest.raises(ValueError):
        LogBuckets.from_bytes("not bytes")  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_rejected(bad):
    s = LogBuckets()
    with pytest.raises(ValueError, match="finite"):
        s.update(bad)
    with pytest.raises(ValueError, match="finite"):
        s.update_many([1.0, bad])
    assert s.count == 0


def test_empty_and_bad_quantiles():
    s = LogBuckets()
    assert math.isnan(s.quantile(0.5))
    s.update(1.0)
    with pytest.raises(ValueError):
        s.quantile(1.5)
    assert s.quantile(0.5) == 1.0


def test_scalar_and_batched_updates_agree():
    v = np.random.default_rng(3).lognormal(-3, 1.5, 20000)
    a, b = LogBuckets(), LogBuckets()
    for x in v.tolist():
        a.update(x)
    b.update_many(v)
    assert a == b


def test_negative_zero_and_positive_values():
    v = np.concatenate([-np.arange(1, 101, dtype=float), np.zeros(50), np.arange(1, 101, dtype=float)])
    s = _sketch(v, 4096)
    assert s.zero == 50 and s.count == 250
    est = s.quantiles([0.0, 0.1, 0.5, 0.9, 1.0])
    true = np.quantile(v, [0.0, 0.1, 0.5, 0.9, 1.0])
    assert est[0] == -100 and est[-1] == 100 and est[2] == 0.0
    np.testing.assert_allclose(est, true, rtol=0.01)


def test_accuracy_within_one_kib():
    rng = np.random.default_rng(7)
    for v in (rng.lognormal(np.log(0.05), 1.0, 200_000), (rng.pareto(1.5, 200_000) + 1) * 0.01):
        s = _sketch(v, 1024)
        assert len(s.to_bytes()) <= 1024
        qs = [0.5, 0.9, 0.99, 0.999]
        rel = np.abs(s.quantiles(qs) / np.quantile(v, qs) - 1)
        assert rel.max() < 0.01, rel


def test_budget_lowers_scale_and_keeps_it_within_max_bytes():
    v = np.random.default_rng(1).lognormal(0, 3, 100_000)
    small, big = _sketch(v, 128), _sketch(v, 16384)
    assert small.scale < big.scale
    assert len(small.to_bytes()) <= 128 and len(big.to_bytes()) <= 16384
    assert len(big.to_bytes()) > 1024  # the budget is used, not just respected


def test_merge_of_different_scales_is_exact():
    rng = np.random.default_rng(5)
    narrow = rng.uniform(1.0, 1.1, 5000)  # stays fine-grained
    wide = rng.lognormal(0, 4, 5000)  # forces a coarse scale
    a, b = _sketch(narrow, 512), _sketch(wide, 512)
    assert a.scale > b.scale
    assert a + b == _sketch(np.concatenate([narrow, wide]), 512)
    with pytest.raises(TypeError):
        a.merge(object())  # type: ignore[arg-type]


def test_memory_stays_bounded_under_scalar_updates_of_wide_data():
    rng = np.random.default_rng(2)
    s = LogBuckets(1024)
    for x in (rng.lognormal(0, 20, 50_000) * rng.choice([-1.0, 1.0], 50_000)).tolist():
        s.update(x)
    # in-memory arrays never exceed a small multiple of the budget's bits
    assert s.pos.arr.size + s.neg.arr.size <= 4 * 8 * 1024
    assert len(s.to_bytes()) <= 1024 and s.count == 50_000


def test_buffered_scalar_updates_are_visible_immediately():
    s = LogBuckets()
    s.update(3.0)
    s.update(0.0)
    s.update(-2.0)
    assert (s.count, s.zero, s.min, s.max) == (3, 1, -2.0, 3.0)
    assert s.sum == pytest.approx(1.0)
    assert s.quantile(1.0) == 3.0 and s.quantile(0.0) == -2.0
    t = LogBuckets.from_bytes(s.to_bytes())
    assert t == s


def test_integer_millisecond_data_with_zeros_and_repeats():
    rng = np.random.default_rng(9)
    ms = np.round(rng.lognormal(np.log(20.0), 1.0, 200_000))
    ms[rng.random(ms.size) < 0.3] = 0.0
    ms[rng.random(ms.size) < 0.05] = 250.0
    v = ms / 1000.0
    s = _sketch(v, 1024)
    qs = [0.5, 0.9, 0.99, 0.999]
    rel = np.abs(s.quantiles(qs) / np.quantile(v, qs) - 1)
    assert rel.max() < 0.01, rel


def test_decimal_lattice_detected_merged_and_lost_on_continuous_data():
    ms = _sketch(np.array([0.0, 0.012, 0.25, 1.5]))
    assert ms.quantum == pytest.approx(0.001)
    whole_s = _sketch(np.array([2.0, 30.0]))
    assert whole_s.quantum == pytest.approx(1.0)
    assert (ms + whole_s).quantum == pytest.approx(0.001)
    cont = _sketch(np.array([0.0123456789123]))
    assert cont.quantum is None and (ms + cont).quantum is None
    assert LogBuckets.from_bytes(ms.to_bytes()).quantum == ms.quantum


def test_lattice_snapping_returns_exact_repeated_values():
    # 5 distinct millisecond values in 2.2 %-wide buckets: interpolation alone misses
    # them, snapping to the millisecond lattice recovers each exactly
    v = np.repeat(np.array([3, 7, 12, 40, 250]) / 1000.0, [100, 300, 400, 150, 50])
    s = LogBuckets(4096, scale=5)
    s.update_many(v)
    qs = [0.05, 0.2, 0.5, 0.9, 0.999]
    np.testing.assert_array_equal(s.quantiles(qs), np.quantile(v, qs))
    off = LogBuckets(4096, scale=5)
    off.update_many(v)
    off._qexp = -128  # the same sketch without the lattice is not exact
    assert not np.array_equal(off.quantiles(qs), np.quantile(v, qs))


def test_oversized_input_rejected_before_decoding():
    with pytest.raises(SketchDecodeError):
        LogBuckets.from_bytes(b"\x03" + b"\xff" * (1 << 20))
