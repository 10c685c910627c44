"""detectors.seasonal.SeasonalShiftDetector: steps found, drifts and brownouts not."""

from __future__ import annotations

import math

import numpy as np
import pytest

from detectors import SnapshotShiftDetector
from detectors.seasonal import SeasonalShiftDetector

T0 = 1_763_964_000.0
IV = 30.0


def _series(level: np.ndarray, seed: int = 1, noise: float = 0.04, tail: float = 3.0) -> list[tuple[float, dict[str, float], int]]:
    """Snapshots whose log-p50 follows ``level`` plus noise; p90/p99 move with it."""
    rng = np.random.default_rng(seed)
    out = []
    for i, lv in enumerate(level):
        p50 = 0.05 * math.exp(lv + noise * rng.standard_normal())
        out.append((T0 + i * IV, {"p50": p50, "p90": p50 * 1.9 * math.exp(noise * rng.standard_normal()), "p99": p50 * tail * math.exp(2 * noise * rng.standard_normal())}, 300))
    return out


def _run(det, snaps):
    return [(int(round((d.at - T0) / IV)), d) for s in snaps for d in det.update(*s)]


def test_a_step_is_reported_once_at_its_snapshot_with_the_moved_percentiles():
    level = np.where(np.arange(300) >= 200, math.log(1.3), 0.0)
    got = _run(SeasonalShiftDetector(), _series(level))
    assert [i for i, _ in got] == [200]
    d = got[0][1]
    assert d.kind == "shift" and d.direction == "regression" and d.pvalue <= 1e-6
    p50 = next(c for c in d.changes if c.metric == "p50")
    assert p50.relative_change == pytest.approx(0.3, abs=0.05)
    assert d.snapshots_after >= 11 and d.samples_before == 300 * d.snapshots_before


def test_a_daily_ramp_is_not_a_shift_but_the_flat_mean_detector_calls_it_one():
    level = np.linspace(0.0, math.log(1.8), 720)  # +80 % over six hours, no code change
    snaps = _series(level, seed=2)
    assert _run(SeasonalShiftDetector(), snaps) == []
    assert _run(SnapshotShiftDetector(), snaps) != []


def test_a_lunch_hump_and_a_ramp_that_starts_are_not_shifts():
    t = np.arange(720) * IV
    hump = 0.3 * np.exp(-0.5 * ((t - 3 * 3600) / 2400) ** 2)
    ramp = np.maximum(t - 3600, 0) / 3600 * 0.15  # flat, then +15 % per hour
    assert _run(SeasonalShiftDetector(), _series(hump, seed=3)) == []
    assert _run(SeasonalShiftDetector(), _series(ramp, seed=4)) == []


def test_a_step_on_top_of_a_ramp_is_found_where_it_happened():
    level = np.linspace(0.0, math.log(1.6), 600) + np.where(np.arange(600) >= 400, math.log(0.75), 0.0)
    got = _run(SeasonalShiftDetector(), _series(level, seed=5))
    assert [(i, d.direction) for i, d in got] == [(400, "improvement")]


def test_brownouts_are_not_shifts_and_do_not_hide_a_later_step():
    level = np.zeros(400)
    level[100:108] = math.log(3.0)  # a four-minute brownout
    level[180:189] = math.log(2.5)
    level[300:] = math.log(1.25)
    got = _run(SeasonalShiftDetector(), _series(level, seed=6))
    assert [i for i, _ in got] == [300]


def test_a_regression_fixed_forty_minutes_later_gives_both_shifts():
    level = np.zeros(400)
    level[200:280] = math.log(1.5)
    got = _run(SeasonalShiftDetector(), _series(level, seed=7))
    assert [(i, d.direction) for i, d in got] == [(200, "regression"), (280, "improvement")]


def test_a_tail_only_shift_lists_p99_alone():
    snaps = _series(np.zeros(300), seed=8)
    for t, v, n in snaps[200:]:
        v["p99"] *= 1.8
    got = _run(SeasonalShiftDetector(), snaps)
    assert [i for i, _ in got] == [200]
    assert [c.metric for c in got[0][1].changes] == ["p99"]


def test_whole_millisecond_flips_of_a_fast_key_are_not_shifts():
    rng = np.random.default_rng(9)
    snaps = []
    for i in range(600):  # a 4.4 ms median read in whole ms: p50 is 4 or 5
        v = np.rint(4.4 * np.exp(0.03 * math.sin(i / 40) + 0.45 * rng.standard_normal(300)))
        q = np.quantile(v, [0.5, 0.9, 0.99]) / 1000
        snaps.append((T0 + i * IV, {"p50": q[0], "p90": q[1], "p99": q[2]}, 300))
    assert _run(SeasonalShiftDetector(), snaps) == []


def test_snapshots_with_too_few_samples_or_missing_metrics_are_ignored():
    det = SeasonalShiftDetector()
    level = np.where(np.arange(300) >= 200, math.log(1.5), 0.0)
    got = []
    for i, (t, v, n) in enumerate(_series(level, seed=10)):
        if i % 3 == 0:
            assert det.update(t, v, 5) == []
            assert det.update(t + 1, {"p50": v["p50"]}, n) == []
            continue
        got += det.update(t, v, n)
    assert len(got) == 1 and abs(got[0].at - (T0 + 200 * IV)) <= IV


def test_metric_names_and_direction_are_configurable():
    rng = np.random.default_rng(11)
    det = SeasonalShiftDetector(metrics=("mean", "p95"), lower_is_better=False)
    out = []
    for i in range(300):
        f = 1.4 if i >= 200 else 1.0
        out += det.update(T0 + i * IV, {"mean": f * math.exp(0.03 * rng.standard_normal()), "p95": f * 3 * math.exp(0.05 * rng.standard_normal())}, 100)
    assert len(out) == 1 and out[0].direction == "improvement"
    assert {c.metric for c in out[0].changes} <= {"mean", "p95"}


def test_state_round_trip_continues_identically_and_encodes_deterministically():
    level = np.linspace(0, 0.3, 500) + np.where(np.arange(500) >= 250, math.log(1.3), 0.0)
    snaps = _series(level, seed=12)
    ref = SeasonalShiftDetector()
    expected = [d for s in snaps for d in ref.update(*s)]
    det = SeasonalShiftDetector()
    got = []
    for i, s in enumerate(snaps):
        if i % 37 == 0:
            b = det.to_bytes()
            det = SeasonalShiftDetector.from_bytes(b)
            assert det.to_bytes() == b
        got += det.update(*s)
    assert got == expected and len(got) == 1
    assert det.to_bytes() == ref.to_bytes()


def test_malformed_state_raises_value_error():
    det = SeasonalShiftDetector()
    for s in _series(np.zeros(50)):
        det.update(*s)
    b = det.to_bytes()
    for bad in (b"", b"\x07" + b[1:], b[:-8], b + b"\x00" * 8, b[:3], "text"):
        with pytest.raises(ValueError):
            SeasonalShiftDetector.from_bytes(bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        SeasonalShiftDetector(window=10)
