"""detectors.base: the two detector shapes, the registries, and the stream adapter."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from detectors.adapter import BatchStreamingDetector
from detectors.base import (
    BATCH_DETECTORS,
    STREAMING_DETECTORS,
    BatchDetector,
    StreamingDetector,
    batch_class,
    make_batch,
    make_streaming,
    streaming_names,
)

METRICS = ("p50", "p95", "p999")
QS = (0.5, 0.95, 0.999)


def snapshots(n, shift_at=None, factor=1.5, per=400, seed=0, fix_at=None, counts=None):
    """(t, {p50, p95, p999}, count) per snapshot of lognormal latencies."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        c = per if counts is None else counts[i]
        v = 0.04 * np.exp(0.4 * rng.standard_normal(c))
        if shift_at is not None and i >= shift_at and (fix_at is None or i < fix_at):
            v *= factor
        out.append((1_800_000_000.0 + 30.0 * i, dict(zip(METRICS, np.quantile(v, QS))), c))
    return out


def run(det, snaps):
    return [(i, d) for i, (t, v, c) in enumerate(snaps) for d in det.update(t, v, c)]


# Talos is slow in the stream (a mixture fit per split); the others run on every case.
FAST = [n for n in streaming_names() if n != "talos"]


def test_every_registered_name_resolves_to_its_shape():
    assert set(streaming_names()) == set(BATCH_DETECTORS) | set(STREAMING_DETECTORS)
    assert {"edivisive", "perfherder", "mdl", "talos"} <= set(streaming_names())
    for name in BATCH_DETECTORS:
        assert issubclass(batch_class(name), BatchDetector)
        assert isinstance(make_batch(name), BatchDetector)
    for name in streaming_names():
        assert isinstance(make_streaming(name, metrics=METRICS), StreamingDetector)
    assert type(make_streaming("edivisive")).__name__ == "SnapshotShiftDetector"


def test_unknown_names_and_options_are_value_errors_that_list_the_choices():
    with pytest.raises(ValueError, match="choices: edivisive, mdl, perfherder, talos"):
        make_streaming("cusum")
    with pytest.raises(ValueError, match="choices:"):
        make_batch("snapshot")
    with pytest.raises(ValueError, match="'windw'.*window"):
        make_batch("edivisive", windw=3)
    with pytest.raises(ValueError, match="'t_thresh'.*t_threshold"):
        make_streaming("perfherder", t_thresh=3)
    with pytest.raises(ValueError, match="'history'"):
        make_streaming("edivisive", history="long")


@pytest.mark.parametrize("name", FAST)
def test_a_step_in_any_quantile_set_is_reported_once_near_the_truth(name):
    for seed in range(2):
        got = run(make_streaming(name, metrics=METRICS), snapshots(140, shift_at=60, seed=seed))
        assert len(got) == 1, (name, got)
        seen, d = got[0]
        assert d.kind == "shift" and d.direction == "regression" and abs(d.index - 60) <= 3
        assert seen - d.index <= 15
        assert {c.metric for c in d.changes} <= set(METRICS) and "p50" in {c.metric for c in d.changes}
        p50 = next(c for c in d.changes if c.metric == "p50")
        assert p50.relative_change == pytest.approx(0.5, abs=0.1)
        assert d.samples_before == 400 * d.snapshots_before and d.samples_after == 400 * d.snapshots_after
        assert d.at == 1_800_000_000.0 + 30.0 * d.index


@pytest.mark.parametrize("name", FAST)
def test_quiet_keys_stay_quiet_and_a_fix_is_an_improvement(name):
    assert run(make_streaming(name, metrics=METRICS), snapshots(200, seed=77)) == []
    got = run(make_streaming(name, metrics=METRICS), snapshots(130, shift_at=40, fix_at=75, seed=5))
    assert [(d.kind, d.direction) for _, d in got] == [("shift", "regression"), ("shift", "improvement")], got
    assert abs(got[0][1].index - 40) <= 3 and abs(got[1][1].index - 75) <= 3


def test_talos_runs_in_the_stream():
    got = run(make_streaming("talos", metrics=METRICS, stride=2, em_iters=30), snapshots(110, shift_at=50, factor=1.6))
    assert len(got) == 1 and abs(got[0][1].index - 50) <= 5 and got[0][1].direction == "regression"


@pytest.mark.parametrize("name", FAST)
def test_state_round_trip_mid_stream_continues_identically(name):
    snaps = snapshots(120, shift_at=55, seed=9)
    ref = run(make_streaming(name, metrics=METRICS), snaps)
    d = make_streaming(name, metrics=METRICS)
    got = []
    for i, (t, v, c) in enumerate(snaps):
        if i % 9 == 4:
            b = d.to_bytes()
            d = type(d).from_bytes(b)
            assert d.to_bytes() == b
        got += [(i, x) for x in d.update(t, v, c)]
    assert got == ref and len(ref) == 1


def test_adapter_skips_small_missing_and_non_finite_snapshots():
    counts = [400] * 50 + [5] * 50
    snaps = snapshots(100, shift_at=50, factor=3.0, counts=counts)
    assert run(make_streaming("perfherder", metrics=METRICS), snaps) == []
    assert len(run(make_streaming("perfherder", metrics=METRICS, min_count=1), snaps)) == 1
    d = make_streaming("perfherder", metrics=METRICS)
    assert d.update(0.0, {"p50": 1.0}, 100) == []
    assert d.update(1.0, {"p50": 1.0, "p95": float("nan"), "p999": 2.0}, 100) == []
    assert d.update(float("inf"), dict(zip(METRICS, (1.0, 2.0, 3.0))), 100) == []
    assert type(d).from_bytes(d.to_bytes()).to_bytes() == d.to_bytes() and d._len == 0


def test_adapter_options_reach_the_batch_detector_and_the_state():
    d = make_streaming("perfherder", metrics=METRICS, t_threshold=4.5, history=60, log=True)
    assert isinstance(d, BatchStreamingDetector) and d.history == 60 and d.log
    assert d._method.t_threshold == 4.5
    r = type(d).from_bytes(d.to_bytes())
    assert r._method == d._method and r.history == 60 and r.metrics == METRICS


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=200), st.integers(0, 2000), st.integers(0, 255))
def test_adapter_from_bytes_refuses_garbage_and_corruption(blob, pos, byte):
    for b in (blob, bytes([1]) + blob):
        try:
            BatchStreamingDetector.from_bytes(b)
        except ValueError:
            pass
    d = make_streaming("perfherder", metrics=METRICS)
    run(d, snapshots(30, seed=2))
    good = bytearray(d.to_bytes())
    good[pos % len(good)] = byte
    try:
        BatchStreamingDetector.from_bytes(bytes(good))
    except ValueError:
        pass
