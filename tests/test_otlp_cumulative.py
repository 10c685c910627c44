"""CumulativeDifferencer: deltas are exact, never negative, and survive scale drops and resets."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from sketches import ExponentialHistogramDataPoint, OtelBuckets, downscale_point
from stream.otlp.cumulative import CumulativeDifferencer
from stream.otlp.points import Hist

S = 10**9


def _hist(idx: list[int], zeros: int, scale: int, start: int, t: int) -> Hist:
    """The exponential histogram of bucket indices ``idx`` (given at scale 8) at ``scale``."""
    a = np.array(idx, dtype=np.int64) >> (8 - scale)
    if a.size:
        off = int(a.min())
        counts = np.bincount(a - off).astype(np.int64)
    else:
        off, counts = 0, np.zeros(0, dtype=np.int64)
    return Hist(start, t, len(idx) + zeros, float(len(idx)), None, None, counts, scale=scale, offset=off, zero=zeros)


def _dense(h: Hist, scale: int) -> dict[int, int]:
    dp = ExponentialHistogramDataPoint(h.scale, h.count, 0.0, h.zero, OtelBuckets(h.offset, tuple(h.counts.tolist())))
    b = downscale_point(dp, scale).positive
    return {b.offset + i: int(n) for i, n in enumerate(b.bucket_counts) if n}


steps = st.lists(st.tuples(st.lists(st.integers(-300, 300), max_size=30), st.integers(0, 3), st.integers(0, 2)), min_size=1, max_size=8)


@given(steps)
@settings(max_examples=150, deadline=None)
def test_deltas_add_up_to_the_last_cumulative_at_its_scale(plan):
    d = CumulativeDifferencer()
    seen: list[int] = []
    zeros = 0
    scale = 8
    deltas = []
    for t, (new, z, drop) in enumerate(plan, start=1):
        seen += new
        zeros += z
        scale = max(scale - drop, -2)
        out = d.update(b"s", _hist(seen, zeros, scale, 1 * S, (1 + t) * S))
        if out is not None:
            assert out.count == len(new) + z and (out.counts >= 0).all() and out.zero == z
            assert out.scale <= scale
            deltas.append(out)
        else:
            assert len(new) + z == 0
    total: dict[int, int] = {}
    for h in deltas:
        for i, n in _dense(h, scale).items():
            total[i] = total.get(i, 0) + n
    assert total == _dense(_hist(seen, zeros, scale, 0, 0), scale)
    assert sum(h.zero for h in deltas) == zeros


def test_count_drop_without_new_start_is_a_reset_never_negative():
    d = CumulativeDifferencer()
    assert d.update(b"s", _hist([1, 2, 3], 0, 8, S, 2 * S)).count == 3
    out = d.update(b"s", _hist([5], 0, 8, S, 3 * S))  # counter went down: a reset
    assert out is None and d.resets == 1  # same start: cannot tell what is new; baseline only
    assert d.update(b"s", _hist([5, 6], 0, 8, S, 4 * S)).count == 1


def test_explicit_bounds_change_is_a_reset():
    d = CumulativeDifferencer()
    b1, b2 = np.array([0.1, 0.2]), np.array([0.1, 0.3])
    h1 = Hist(S, 2 * S, 3, 0.3, None, None, np.array([1, 1, 1]), bounds=b1)
    h2 = Hist(S, 3 * S, 4, 0.4, None, None, np.array([1, 2, 1]), bounds=b2)
    d.update(b"s", h1)
    assert d.update(b"s", h2) is None and d.resets == 1
    h3 = Hist(5 * S, 6 * S, 2, 0.2, None, None, np.array([0, 2, 0]), bounds=b2)  # restarted after: all new
    assert d.update(b"s", h3).count == 2


def test_lru_keeps_the_recently_updated_streams():
    d = CumulativeDifferencer(max_streams=2)
    day = 86400 * S  # processes up for a day: a first point is a baseline only
    for sid in (b"a", b"b", b"a", b"c"):
        d.update(sid, _hist([1], 0, 8, S, day))
    restored = CumulativeDifferencer.from_bytes(d.to_bytes())
    assert len(restored) == 2 and restored.evicted == 1
    assert restored.update(b"a", _hist([1, 1], 0, 8, S, day + S)).count == 1  # a was kept
    assert restored.update(b"b", _hist([1, 1], 0, 8, S, day + S)) is None  # b was evicted: baseline


@given(st.binary(max_size=200))
@settings(max_examples=200, deadline=None)
def test_from_bytes_refuses_garbage_with_value_error(blob):
    try:
        CumulativeDifferencer.from_bytes(blob)
    except ValueError:
        pass
