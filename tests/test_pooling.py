"""stream.pooling.Pooler: low-traffic windows pooled to enough samples, deterministically."""

from __future__ import annotations

import numpy as np
import pytest

from sketches import LogBuckets
from stream.pooling import EXACT_LIMIT, PooledWindow, Pooler


def _windows(rng, n, per, interval=30.0, t0=1_000_020.0):
    return [(t0 + i * interval, t0 + (i + 1) * interval, rng.lognormal(-3, 0.5, per)) for i in range(n)]


def test_a_busy_key_passes_each_window_through_unchanged():
    rng = np.random.default_rng(1)
    p = Pooler(30)
    for start, end, v in _windows(rng, 5, 200):
        w = p.add(start, end, v, len(v))
        assert isinstance(w, PooledWindow)
        assert (w.start, w.end, w.count, w.windows) == (start, end, 200, 1)
        assert [w.p50, w.p90, w.p99] == list(np.quantile(v, [0.5, 0.9, 0.99]))
        assert w.mean == pytest.approx(v.mean()) and (w.min, w.max) == (v.min(), v.max())


def test_a_slow_key_gets_one_snapshot_per_thirty_samples_spanning_its_windows():
    rng = np.random.default_rng(2)
    wins = _windows(rng, 24, 4)  # 0.13 events/s
    p = Pooler(30)
    out = [(i, w) for i, (s, e, v) in enumerate(wins) if (w := p.add(s, e, v, len(v))) is not None]
    assert [i for i, _ in out] == [7, 15, 23]
    first = out[0][1]
    vals = np.concatenate([v for _, _, v in wins[:8]])
    assert (first.start, first.end, first.count, first.windows) == (wins[0][0], wins[7][1], 32, 8)
    assert first.length_s == 240.0
    assert [first.p50, first.p90, first.p99] == list(np.quantile(vals, [0.5, 0.9, 0.99]))
    assert p.pending == 0


def test_empty_and_uneven_windows_pool_by_samples_not_windows():
    p = Pooler(10)
    assert p.add(0.0, 30.0, [], 0) is None
    assert p.add(30.0, 60.0, [1.0] * 9, 9) is None
    w = p.add(90.0, 120.0, [2.0, 3.0], 2)  # a silent window in between is allowed
    assert (w.start, w.end, w.count, w.windows) == (0.0, 120.0, 11, 3)


def test_sketch_windows_merge_into_the_percentiles_of_all_values():
    rng = np.random.default_rng(3)
    p = Pooler(30)
    allv = []
    for i in range(3):
        v = rng.lognormal(-3, 0.5, 12)
        allv.append(v)
        s = LogBuckets()
        s.update_many(v)
        w = p.add(30.0 * i, 30.0 * (i + 1), s)
    allv = np.concatenate(allv)
    assert w is not None and w.count == 36 and w.windows == 3
    exact = np.quantile(allv, [0.5, 0.9, 0.99])
    assert np.allclose([w.p50, w.p90, w.p99], exact, rtol=0.03)
    assert w.mean == pytest.approx(allv.mean())


def test_a_pool_beyond_the_exact_limit_spills_into_a_sketch():
    p = Pooler(EXACT_LIMIT)
    v = np.linspace(0.001, 1.0, EXACT_LIMIT - 1)
    assert p.add(0.0, 30.0, v) is None
    w = p.add(30.0, 60.0, [0.5, 0.6])
    assert w.count == EXACT_LIMIT + 1
    assert w.p50 == pytest.approx(0.5, rel=0.02)


def test_a_pool_older_than_max_span_is_dropped_and_counted():
    p = Pooler(30, max_span_s=600.0)
    assert p.add(0.0, 30.0, [0.1] * 10) is None
    assert p.add(3600.0, 3630.0, [0.2] * 25) is None  # the old 10 are dropped
    assert p.expired == 1 and p.pending == 25
    w = p.add(3630.0, 3660.0, [0.2] * 5)
    assert (w.start, w.count) == (3600.0, 30)


def test_bad_input_is_refused_with_a_clear_error():
    p = Pooler(30)
    p.add(60.0, 90.0, [0.1])
    with pytest.raises(ValueError, match="order"):
        p.add(30.0, 60.0, [0.1])
    with pytest.raises(ValueError, match="count"):
        p.add(90.0, 120.0, [0.1, 0.2], 3)
    with pytest.raises(ValueError):
        p.add(120.0, 120.0, [0.1])
    with pytest.raises(ValueError):
        Pooler(0)


@pytest.mark.parametrize("sketch", [False, True])
def test_state_round_trip_mid_pool_gives_the_same_pooled_windows(sketch):
    rng = np.random.default_rng(4)
    wins = _windows(rng, 40, 3)

    def data(v):
        if not sketch:
            return v
        s = LogBuckets()
        s.update_many(v)
        return s

    ref, a = Pooler(30), Pooler(30)
    expected = [ref.add(s, e, data(v)) for s, e, v in wins]
    got = []
    for s, e, v in wins:
        a = Pooler.from_bytes(a.to_bytes())
        got.append(a.add(s, e, data(v)))
    assert got == expected
    assert a.to_bytes() == ref.to_bytes()


def test_malformed_state_raises_value_error():
    p = Pooler(30)
    p.add(0.0, 30.0, [0.1, 0.2])
    b = p.to_bytes()
    for bad in (b"", b"\x02" + b[1:], b[:-8], b + b"\x00" * 8, b[:10]):
        with pytest.raises(ValueError):
            Pooler.from_bytes(bad)
