"""SnapshotShiftDetector: the stream's contract, on seeded percentile snapshots."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from detectors import SnapshotShiftDetector


def snapshots(n, shift_at=None, factor=1.5, per=300, seed=0, tail_only=False, brownouts=(), counts=None):
    """(t, {p50, p90, p99}, count) per snapshot from lognormal latencies (seconds)."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        c = per if counts is None else counts[i]
        v = 0.04 * np.exp(0.4 * rng.standard_normal(c))
        if shift_at is not None and i >= shift_at:
            if tail_only:
                k = max(1, c // 50)
                v[:k] = v[:k] * 4.0
            else:
                v = v * factor
        if i in brownouts:
            v = v * 3.0
        q = np.quantile(v, [0.5, 0.9, 0.99])
        out.append((1_763_800_000.0 + 30.0 * i, {"p50": q[0], "p90": q[1], "p99": q[2]}, c))
    return out


def run(det, snaps):
    got = []
    for i, (t, v, c) in enumerate(snaps):
        for d in det.update(t, v, c):
            got.append((i, d))
    return got


@pytest.mark.parametrize("seed", range(6))
def test_a_median_step_is_reported_once_near_the_truth_and_quickly(seed):
    got = run(SnapshotShiftDetector(), snapshots(120, shift_at=40, seed=seed))
    assert len(got) == 1, got
    seen_at, d = got[0]
    assert d.kind == "shift" and d.direction == "regression"
    assert abs(d.index - 40) <= 3
    assert seen_at - 40 <= 10
    moved = {c.metric: c for c in d.changes}
    assert set(moved) == {"p50", "p90", "p99"}
    assert moved["p50"].relative_change == pytest.approx(0.5, abs=0.1)
    assert d.pvalue < 1e-5 and d.snapshots_before >= 10 and d.snapshots_after >= 5
    assert d.samples_before == 300 * d.snapshots_before and d.samples_after == 300 * d.snapshots_after
    assert d.at == 1_763_800_000.0 + 30.0 * d.index


@pytest.mark.parametrize("seed", range(5))
def test_a_quiet_key_stays_quiet_for_200_snapshots(seed):
    assert run(SnapshotShiftDetector(), snapshots(200, seed=100 + seed)) == []


def test_improvement_when_latency_drops_and_regression_when_higher_is_better():
    (_, d), = run(SnapshotShiftDetector(), snapshots(80, shift_at=40, factor=0.6, seed=3))
    assert d.direction == "improvement"
    (_, d), = run(SnapshotShiftDetector(lower_is_better=False), snapshots(80, shift_at=40, factor=0.6, seed=3))
    assert d.direction == "regression"


def test_a_tail_only_step_names_the_tail_but_not_the_median():
    got = run(SnapshotShiftDetector(), snapshots(100, shift_at=40, tail_only=True, seed=2))
    assert len(got) == 1, got
    d = got[0][1]
    names = {c.metric for c in d.changes}
    assert "p99" in names and "p50" not in names
    assert abs(d.index - 40) <= 3


@pytest.mark.parametrize("length", [1, 2, 3])
def test_a_short_brownout_is_not_a_shift(length):
    brown = tuple(range(50, 50 + length))
    for seed in range(3):
        assert run(SnapshotShiftDetector(), snapshots(120, seed=seed, brownouts=brown)) == []


def test_regression_then_fix_gives_two_shifts_with_distinct_at():
    snaps = snapshots(60, shift_at=30, seed=5) + [
        (1_763_800_000.0 + 30.0 * (60 + i), v, c) for i, (_, v, c) in enumerate(snapshots(60, seed=6))
    ]
    got = run(SnapshotShiftDetector(), snaps)
    kinds = [(d.kind, d.direction) for _, d in got]
    assert kinds == [("shift", "regression"), ("shift", "improvement")], got
    assert abs(got[0][1].index - 30) <= 3 and abs(got[1][1].index - 60) <= 3


def test_small_snapshots_are_not_evidence():
    counts = [300] * 40 + [5] * 40
    snaps = snapshots(80, shift_at=40, factor=3.0, counts=counts, seed=1)
    assert run(SnapshotShiftDetector(min_count=30), snaps) == []
    assert len(run(SnapshotShiftDetector(min_count=1), snaps)) == 1


def test_state_round_trip_mid_stream_gives_identical_decisions():
    snaps = snapshots(90, shift_at=50, seed=8)
    ref = run(SnapshotShiftDetector(), snaps)
    d = SnapshotShiftDetector()
    got = []
    for i, (t, v, c) in enumerate(snaps):
        if i % 7 == 3:
            b = d.to_bytes()
            assert b[0] == 2
            d = SnapshotShiftDetector.from_bytes(b)
            assert d.to_bytes() == b
            # states written by earlier releases (version 1, JSON) read back the same
            assert SnapshotShiftDetector.from_bytes(d._to_bytes_v1()).to_bytes() == b
        got += [(i, x) for x in d.update(t, v, c)]
    assert got == ref and len(ref) == 1


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_from_bytes_rejects_garbage_with_value_error(blob):
    try:
        SnapshotShiftDetector.from_bytes(blob)
    except ValueError:
        pass


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 400), st.integers(0, 255))
def test_from_bytes_rejects_corrupted_state(pos, byte):
    d = SnapshotShiftDetector()
    for t, v, c in snapshots(30, seed=1):
        d.update(t, v, c)
    b = bytearray(d.to_bytes())
    b[pos % len(b)] = byte
    try:
        SnapshotShiftDetector.from_bytes(bytes(b))
    except ValueError:
        pass


def test_missing_or_non_finite_metrics_are_skipped():
    d = SnapshotShiftDetector()
    assert d.update(0.0, {"p50": 0.01}, 100) == []
    assert d.update(1.0, {"p50": float("nan"), "p90": 1.0, "p99": 1.0}, 100) == []
    assert SnapshotShiftDetector.from_bytes(d.to_bytes()).to_bytes() == d.to_bytes()
    assert SnapshotShiftDetector.from_bytes(d._to_bytes_v1()).to_bytes() == d.to_bytes()


def test_binary_state_is_compact_and_corruption_is_refused():
    d = SnapshotShiftDetector()
    run(d, snapshots(150, seed=4))
    b, v1 = d.to_bytes(), d._to_bytes_v1()
    assert len(b) < len(v1) / 2 and len(b) < 3300  # 120 rows x 24 bytes plus a small header
    for cut in (1, 5, len(b) // 2, len(b) - 1):
        with pytest.raises(ValueError):
            SnapshotShiftDetector.from_bytes(b[:cut])
    with pytest.raises(ValueError):
        SnapshotShiftDetector.from_bytes(b + b"\0")
    with pytest.raises(ValueError):
        SnapshotShiftDetector.from_bytes(bytes([3]) + b[1:])


@pytest.mark.parametrize("length", [6, 8])
def test_a_short_regression_and_its_fix_are_both_reported(length):
    base = snapshots(40, seed=11)
    bad = snapshots(length, shift_at=0, seed=12)
    after = snapshots(30, seed=13)
    snaps = [(1_763_800_000.0 + 30.0 * i, v, c) for i, (_, v, c) in enumerate(base + bad + after)]
    got = run(SnapshotShiftDetector(), snaps)
    kinds = [(d.kind, d.direction, d.index) for _, d in got]
    assert [k[:2] for k in kinds] == [("shift", "regression"), ("shift", "improvement")], kinds
    assert abs(kinds[0][2] - 40) <= 1 and abs(kinds[1][2] - (40 + length)) <= 1


@pytest.mark.parametrize("seed", range(3))
def test_a_shift_whose_evidence_fades_is_retracted_once(seed):
    # +14 % for 5 snapshots (reported), then only +2 %: the move no longer clears
    # min_relative_change, and nothing inside the regime changed significantly.
    rng = np.random.default_rng(seed)
    snaps = []
    for i in range(90):
        v = 0.04 * np.exp(0.4 * rng.standard_normal(300)) * (1.0 if i < 40 else 1.14 if i < 45 else 1.02)
        q = np.quantile(v, [0.5, 0.9, 0.99])
        snaps.append((1_763_800_000.0 + 30.0 * i, {"p50": q[0], "p90": q[1], "p99": q[2]}, 300))
    got = run(SnapshotShiftDetector(), snaps)
    assert [d.kind for _, d in got] == ["shift", "retraction"], got
    shift, retraction = got[0][1], got[1][1]
    assert retraction.at == shift.at and retraction.index == shift.index
    assert abs(shift.index - 40) <= 1
    assert got[1][0] - got[0][0] <= 10  # within the re-validation window


def _full_precision_state(det, snaps):
    """The state as the deque-of-floats implementation wrote it: float64 logs."""
    import json
    import math

    b = det._to_bytes_v1()
    s = json.loads(b[1:])
    by_t = {t: v for t, v, _ in snaps}
    s["logs"] = [[math.log(max(by_t[t][m], 1e-12)) for m in det.metrics] for t in s["t"]]
    return bytes([1]) + json.dumps(s, separators=(",", ":")).encode()


def test_states_with_float64_logs_are_still_read_and_decide_the_same():
    snaps = snapshots(90, shift_at=50, seed=8)
    ref = run(SnapshotShiftDetector(), snaps)
    d = SnapshotShiftDetector()
    run(d, snaps[:45])
    old = _full_precision_state(d, snaps)
    assert old != d.to_bytes()
    restored = SnapshotShiftDetector.from_bytes(old)
    assert restored.to_bytes() == d.to_bytes()  # logs rounded to the float32 kept in memory
    got = [(i + 45, x) for i, x in run(restored, snaps[45:])]
    assert got == ref and len(ref) == 1


def test_history_is_packed_and_configuration_shared():
    import sys

    a, b = SnapshotShiftDetector(), SnapshotShiftDetector()
    run(a, snapshots(150, seed=4))
    # 120 rows of 24 bytes, no per-row objects (the deques of floats took ~27 KB).
    assert a._len == a.history == 120 and len(a._buf) == 120 * 24
    assert sys.getsizeof(a) <= 104 and a._reported is None
    assert a._p is b._p and a.min_count == 30 and a.metrics == ("p50", "p90", "p99")
    assert SnapshotShiftDetector(min_count=5)._p is not a._p
    with pytest.raises(AttributeError):
        a.min_count = 3


def test_indices_and_counts_beyond_32_bits_are_kept_exactly():
    import json

    d = SnapshotShiftDetector()
    s = json.loads(d._to_bytes_v1()[1:])
    s["seq"] = (1 << 40) + 7
    d = SnapshotShiftDetector.from_bytes(bytes([1]) + json.dumps(s).encode())
    snaps = snapshots(20, seed=2)
    for i, (t, v, c) in enumerate(snaps):
        d.update(t, v, (1 << 33) + i if i % 2 else c)
    s = json.loads(d._to_bytes_v1()[1:])
    assert s["idx"][0] == (1 << 40) + 7 and s["idx"][-1] == (1 << 40) + 26
    assert s["n"][:2] == [300, (1 << 33) + 1]
    assert SnapshotShiftDetector.from_bytes(d.to_bytes()).to_bytes() == d.to_bytes()


@pytest.mark.parametrize(
    "times, wide",
    [
        ([k * (1 + 2.0**-20) for k in range(40)], False),  # offsets outgrow float32: rebased
        ([w * 0.1 for w in range(17_638_000_000, 17_638_000_040)], False),
        ([1_763_800_000.0 + 1.1 * k for k in range(40)], True),  # no exact float32 offsets
        ([0.0] + [1_763_800_000.0 + 10 * k for k in range(39)], True),
    ],
)
def test_times_are_kept_exactly(times, wide):
    import json

    d = SnapshotShiftDetector(history=15)
    for t, (_, v, c) in zip(times, snapshots(len(times), seed=3)):
        d.update(t, v, c)
    assert d._lay.wide == wide
    assert json.loads(d._to_bytes_v1()[1:])["t"] == times[-15:]
    assert SnapshotShiftDetector.from_bytes(d.to_bytes()).to_bytes() == d.to_bytes()


def test_pvalues_are_welch_unequal_variance_with_sample_deviations():
    from scipy.stats import ttest_ind

    from detectors.snapshot import welch_ttest

    rng = np.random.default_rng(4)
    for _ in range(30):
        a = rng.normal(0.0, rng.uniform(0.1, 2.0), rng.integers(2, 60))
        b = rng.normal(rng.normal(0, 1), rng.uniform(0.1, 2.0), rng.integers(2, 12))
        ma, mb, sa, sb, p = welch_ttest(a, b)
        assert p == pytest.approx(ttest_ind(a, b, equal_var=False).pvalue, rel=1e-9)
        assert sa == pytest.approx(a.std(ddof=1)) and sb == pytest.approx(b.std(ddof=1))
    assert welch_ttest(np.array([1.0]), np.array([2.0, 3.0]))[4] == 1.0
    assert welch_ttest(np.ones(5), np.full(5, 2.0))[4] == 0.0
    # A reported shift's p-values are Welch's on the logs of baseline vs new regime.
    snaps = snapshots(120, shift_at=40, seed=3)
    (i, d), = run(SnapshotShiftDetector(), snaps)
    logs = np.log([[v[m] for m in ("p50", "p90", "p99")] for _, v, _ in snaps[: i + 1]]).astype(np.float32)
    for ch in d.changes:
        y = logs[:, ("p50", "p90", "p99").index(ch.metric)].astype(np.float64)
        assert ch.pvalue == pytest.approx(ttest_ind(y[: d.index], y[d.index :], equal_var=False).pvalue, rel=1e-6)
        assert ch.pvalue <= SnapshotShiftDetector().list_pvalue
    assert d.pvalue == min(ch.pvalue for ch in d.changes) <= SnapshotShiftDetector().max_pvalue


def test_states_without_the_listing_and_inner_thresholds_read_with_defaults():
    import json

    d = SnapshotShiftDetector(max_pvalue=1e-5)
    run(d, snapshots(30, seed=1))
    s = json.loads(d._to_bytes_v1()[1:])
    for k in ("list_pvalue", "inner_pvalue"):
        del s["config"][k]
    r = SnapshotShiftDetector.from_bytes(bytes([1]) + json.dumps(s).encode())
    assert (r.max_pvalue, r.list_pvalue, r.inner_pvalue) == (1e-5, 1e-2, 1e-4)
    assert r._rows().tobytes() == d._rows().tobytes()


def _series(values, per=300):
    return [(1_763_800_000.0 + 30.0 * i, {"p50": v, "p90": 2 * v, "p99": 4 * v}, per) for i, v in enumerate(values)]


@pytest.mark.parametrize("seed", range(3))
def test_a_steady_drift_is_not_a_shift_but_a_step_on_top_of_it_is(seed):
    rng = np.random.default_rng(seed)
    drift = 0.05 * np.exp(0.01 * np.arange(150) + 0.03 * rng.standard_normal(150))  # +1 % per snapshot
    assert run(SnapshotShiftDetector(), _series(drift)) == []
    # Without the drift and wander rules the same key is a staircase of shifts.
    assert len(run(SnapshotShiftDetector(trend_pvalue=0.0, max_rho=1.0), _series(drift))) >= 10
    step = drift * np.where(np.arange(150) >= 90, 1.4, 1.0)
    got = run(SnapshotShiftDetector(), _series(step))
    assert [(d.kind, d.direction) for _, d in got] == [("shift", "regression")], got
    assert abs(got[0][1].index - 90) <= 2


def test_a_wandering_key_gives_far_fewer_shifts():
    # Random walks of the level (each snapshot 4 % off the last): correlated snapshots.
    with_rule = without = 0
    for seed in range(6):
        rng = np.random.default_rng(50 + seed)
        walk = _series(0.05 * np.exp(np.cumsum(0.04 * rng.standard_normal(200))))
        with_rule += len(run(SnapshotShiftDetector(), walk))
        without += len(run(SnapshotShiftDetector(max_rho=1.0), walk))
    assert with_rule * 3 <= without, (with_rule, without)
