"""EDivisive: parity with Apache Otava 0.8.0 on its vendored test series (tests/data/otava), and the maths."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from detectors import EDivisive
from detectors.edivisive import merge_change_points, q_matrices, ttest

#: Vendored Apache Otava 0.8.0 test series and outputs (tests/data/otava/NOTICE).
DATA = Path(__file__).resolve().parent / "data" / "otava"


def _cases():
    return sorted(json.loads((DATA / "expected.json").read_text())["datasets"].items())


def _values(name: str) -> list[float]:
    return json.loads((DATA / "datasets" / f"{name}.json").read_text())["values"]


def test_all_thirteen_series_are_present():
    assert len(_cases()) == 13
    assert sorted(p.stem for p in (DATA / "datasets").glob("*.json")) == [name for name, _ in _cases()]


@pytest.mark.parametrize("quirk", [True, False])
@pytest.mark.parametrize("name,expected", _cases())
def test_default_parameters_match_otava_indexes(name, expected, quirk):
    got = EDivisive(window=50, max_pvalue=0.001, min_magnitude=0.0, otava_quirk=quirk).detect(_values(name))
    assert [c.index for c in got] == expected["otava_default_indexes"]


def _ttest_checks():
    out = []
    for name, e in _cases():
        for c in e.get("upstream_test_checks") or []:
            p = c["params"]
            if p.get("orig") or p.get("detector") == "permutation":
                continue  # permutation-test variants are not t-test based
            out.append(pytest.param(name, p, c["otava_indexes"], id=f"{name}:{c['test']}"))
    assert out, "no upstream parameter sets"
    return out


@pytest.mark.parametrize("name,params,expected", _ttest_checks())
def test_upstream_parameter_sets_match_otava(name, params, expected):
    det = EDivisive(
        window=params.get("window_len", 50),
        max_pvalue=params.get("max_pvalue", 0.001),
        min_magnitude=params.get("min_magnitude", 0.0),
    )
    assert [c.index for c in det.detect(_values(name))] == expected


def test_statistics_of_reported_points_match_otava_output():
    exp = dict(_cases())["analysis_single_series"]["otava_default"]["change_points"][0]
    (cp,) = EDivisive().detect(_values("analysis_single_series"))
    assert cp.index == exp["index"]
    assert cp.pvalue == pytest.approx(exp["pvalue"], rel=1e-6)
    assert cp.mean_before == pytest.approx(exp["mean_before"])
    assert cp.mean_after == pytest.approx(exp["mean_after"])
    assert cp.std_before == pytest.approx(exp["stddev_before"])
    assert cp.magnitude == pytest.approx(exp["magnitude"])
    assert cp.qhat == pytest.approx(exp["qhat"], rel=1e-9)


def _naive_q(x: np.ndarray, tau: int, kappa: int) -> float:
    """Matteson–James divergence straight from its definition (α = 1)."""
    X, Y = x[:tau], x[tau:kappa]
    n, m = len(X), len(Y)
    cross = sum(abs(a - b) for a in X for b in Y)
    wx = sum(abs(a - b) for a, b in itertools.combinations(X, 2))
    wy = sum(abs(a - b) for a, b in itertools.combinations(Y, 2))
    q = 2.0 / (m + n) * cross
    if n > 1:
        q -= 2.0 * m / (m + n) / (n - 1) * wx
    if m > 1:
        q -= 2.0 * n / (m + n) / (m - 1) * wy
    return q


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(-1e3, 1e3, allow_nan=False), min_size=2, max_size=12))
def test_prefix_sum_divergence_equals_the_definition(values):
    x = np.asarray(values)
    Q = q_matrices(x[None, :])[0]
    L = len(x)
    for tau in range(1, L):
        for kappa in range(2, L + 1):
            want = _naive_q(x, tau, kappa) if kappa > tau else 0.0
            assert Q[tau - 1, kappa - 2] == pytest.approx(want, rel=1e-9, abs=1e-6)


def test_batched_windows_equal_single_windows():
    X = np.random.default_rng(3).normal(size=(70, 17))
    batched = q_matrices(X)
    for b in (0, 33, 69):
        np.testing.assert_allclose(batched[b], q_matrices(X[b : b + 1])[0])


def test_ttest_matches_scipy():
    from scipy.stats import ttest_ind_from_stats

    rng = np.random.default_rng(0)
    for _ in range(20):
        a, b = rng.normal(0, 1, rng.integers(2, 30)), rng.normal(0.5, 2, rng.integers(2, 30))
        *_, p = ttest(a, b)
        ref = ttest_ind_from_stats(a.mean(), a.std(), len(a), b.mean(), b.std(), len(b)).pvalue
        assert p == pytest.approx(ref, rel=1e-9)


def test_finds_steps_in_a_long_series_and_nothing_in_a_constant_one():
    rng = np.random.default_rng(1)
    x = rng.normal(100, 1, 600)
    x[200:] += 8
    x[420:] -= 15
    got = [c.index for c in EDivisive().detect(x)]
    assert 200 in got and 420 in got
    assert EDivisive().detect(np.full(300, 5.0)) == []
    assert EDivisive().detect([1.0]) == []


def test_quirk_flag_only_changes_the_left_neighbour_statistics():
    # Weak points 30, 33, 60: removing 33 leaves 30 with stale right-segment stats
    # under the quirk; the corrected merge recomputes them.
    rng = np.random.default_rng(7)
    x = np.concatenate([rng.normal(0, 1, 30), rng.normal(3, 1, 3), rng.normal(3, 1, 27), rng.normal(6, 1, 30)])
    quirk = merge_change_points(x, [30, 33, 60], 0.001, 0.0, otava_quirk=True)
    fixed = merge_change_points(x, [30, 33, 60], 0.001, 0.0, otava_quirk=False)
    assert [c.index for c in quirk] == [c.index for c in fixed] == [30, 60]
    q30, f30 = quirk[0], fixed[0]
    assert f30.mean_after == pytest.approx(x[30:60].mean())
    assert q30.mean_after == pytest.approx(x[30:33].mean())  # stale: the removed point's segment


def test_invalid_input_is_rejected():
    with pytest.raises(ValueError):
        EDivisive(window=1)
    with pytest.raises(ValueError):
        EDivisive().detect([1.0, float("nan"), 2.0])


def test_random_series_match_installed_otava():
    """Beyond the 13 vendored series: random step series (real-valued, so no exact ties
    in the divergence), random parameters, against the installed Otava when present."""
    otava = pytest.importorskip("otava.analysis")
    import warnings

    for seed in range(40):
        rng = np.random.default_rng(1000 + seed)
        n = int(rng.integers(20, 400))
        x = rng.normal(100, rng.uniform(0.5, 5), n)
        for a in sorted(rng.integers(3, n - 3, rng.integers(0, 6))):
            x[a:] += rng.normal(0, 4)
        w = int(rng.choice([10, 30, 50]))
        p = float(rng.choice([1e-4, 1e-3, 1e-2, 0.1]))
        mm = float(rng.choice([0.0, 0.02]))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            want = [int(c.index) for c in otava.compute_change_points(list(map(float, x)), w, p, mm)[0]]
        assert [c.index for c in EDivisive(w, p, mm).detect(x)] == want, (seed, w, p, mm)
