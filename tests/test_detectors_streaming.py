"""StreamingEDivisive: same answer as a full run on its history, each point once."""

from __future__ import annotations

import numpy as np
import pytest

from detectors import EDivisive, StreamingEDivisive


def steps(n=900, seed=0, every=150, size=4.0):
    rng = np.random.default_rng(seed)
    x = rng.normal(100.0, 1.0, n)
    truth = list(range(every, n, every))
    for k, a in enumerate(truth):
        x[a:] += size if k % 2 == 0 else -size
    return x, truth


@pytest.mark.parametrize("quirk", [True, False])
def test_after_every_update_the_answer_is_edivisive_on_the_history(quirk):
    x, _ = steps(700, seed=1)
    s = StreamingEDivisive(history=200, otava_quirk=quirk)
    ed = EDivisive(otava_quirk=quirk)
    for i, v in enumerate(x):
        s.update(v, float(i))
        want = [(c.index + s.start, c.pvalue) for c in ed.detect(s.values())]
        assert [(c.index, c.pvalue) for c in s.change_points()] == want, i


def test_history_is_bounded_and_moves_in_whole_steps():
    s = StreamingEDivisive(history=200, window=50)
    x, _ = steps(1000, seed=2)
    for v in x:
        s.update(v)
        assert 0 <= len(s.values()) - min(200, s._n) < 25
        assert s.start % 25 == 0
    assert len(s._cache.first) <= 20 and all(k >= s.start for k in s._cache.first)
    assert all(k[0] >= s.start for k in s._memo)


def test_every_true_step_is_confirmed_once_with_a_stable_id():
    x, truth = steps(900, seed=3)
    s = StreamingEDivisive(history=200)
    events = []
    for i, v in enumerate(x):
        events += [(i, e) for e in s.update(v, 1000.0 + i)]
    shifts = [e for _, e in events if e.kind == "shift"]
    ids = [e.id for e in shifts]
    assert len(ids) == len(set(ids)), "an id was reported twice"
    final = {e.index for e in shifts} - {e.index for _, e in events if e.kind == "retraction"}
    for a in truth:
        assert a in final
    for i, e in events:
        assert e.id == f"cp-{e.index}" and e.t == 1000.0 + e.index
        if e.kind == "shift":
            assert i - e.index + 1 >= s.min_after  # confirmed only with enough points in the new segment
    # A retraction names a point reported before.
    seen = set()
    for _, e in events:
        if e.kind == "retraction":
            assert e.id in seen
        seen.add(e.id)


def test_a_point_lost_on_revalidation_is_retracted_and_never_reported_again():
    # A level that looks like a step for a few points then returns.
    rng = np.random.default_rng(4)
    x = np.concatenate([rng.normal(0, 1, 100), rng.normal(3.0, 1, 6), rng.normal(0, 1, 150)])
    s = StreamingEDivisive(history=200, min_after=3)
    ev = s.extend(x)
    kinds = [(e.kind, e.index) for e in ev]
    reported = [i for k, i in kinds if k == "shift"]
    assert len(reported) == len(set(reported))
    for k, i in kinds:
        if k == "retraction":
            assert ("shift", i) in kinds
    # Whatever it did on the way, the final answer equals a full run.
    assert [c.index for c in s.change_points()] == [c.index + s.start for c in EDivisive().detect(s.values())]


def test_quiet_normal_stream_has_no_confirmed_change_on_large_shifts_only():
    s = StreamingEDivisive(history=200, min_magnitude=0.05)
    rng = np.random.default_rng(5)
    ev = s.extend(rng.normal(100.0, 1.0, 1500))
    assert [e for e in ev if e.kind == "shift"] == []


def test_rejects_non_finite():
    with pytest.raises(ValueError):
        StreamingEDivisive().update(float("inf"))
    with pytest.raises(ValueError):
        StreamingEDivisive(history=10, window=50)


def test_state_round_trip_continues_identically():
    x, _ = steps(700, seed=6)
    ref = StreamingEDivisive(history=200)
    ref_ev = [(i, e) for i, v in enumerate(x) for e in ref.update(v, float(i))]
    s = StreamingEDivisive(history=200)
    got = []
    for i, v in enumerate(x):
        if i % 97 == 5:
            b = s.to_bytes()
            assert b[0] == 1
            s = StreamingEDivisive.from_bytes(b)
            assert s.to_bytes() == b
        got += [(i, e) for e in s.update(v, float(i))]
    assert got == ref_ev


def test_from_bytes_rejects_garbage():
    from hypothesis import given, settings, strategies as st

    s = StreamingEDivisive(history=60, window=20)
    s.extend(np.random.default_rng(0).normal(size=90))
    good = s.to_bytes()

    @settings(max_examples=150, deadline=None)
    @given(st.integers(0, 10_000), st.integers(0, 255))
    def corrupt(pos, byte):
        b = bytearray(good)
        b[pos % len(b)] = byte
        try:
            StreamingEDivisive.from_bytes(bytes(b))
        except ValueError:
            pass

    corrupt()
    for bad in (b"", b"\x02{}", b"\x01not json", b"\x01[]", b"\x01{}"):
        with pytest.raises(ValueError):
            StreamingEDivisive.from_bytes(bad)
