"""Perfherder t-test, CSIT MDL grouping and trend compliance, Talos mixture: known answers."""

from __future__ import annotations

import numpy as np
import pytest

from detectors.mdl import MDLGrouping, TrendCompliance, group_bits
from detectors.perfherder import PerfherderTTest
from detectors.talos import GaussianMixture1D, TalosMixture


def steps(seed=0, n=200, at=(80, 150), factors=(1.1, 1 / 1.1), sd=2.0):
    rng = np.random.default_rng(seed)
    x = rng.normal(100.0, sd, n)
    for a, f in zip(at, factors):
        x[a:] *= f
    return x


def bimodal(seed, n=200, share_before=0.2, share_after=0.7, move_after=0.0):
    rng = np.random.default_rng(seed)
    share = np.where(np.arange(n) < n // 2, share_before, share_after)
    low = rng.normal(100.0, 2.0, n)
    high = rng.normal(150.0, 2.0, n)
    x = np.where(rng.random(n) < share, low, high)
    x[n // 2 :] += move_after
    return x


# ----------------------------------------------------------------- Perfherder


@pytest.mark.parametrize("seed", range(4))
def test_perfherder_finds_both_steps_exactly_once(seed):
    got = PerfherderTTest().detect(steps(seed))
    assert [c.index for c in got] == [80, 150]
    assert got[0].relative_change == pytest.approx(0.1, abs=0.02)
    assert got[1].relative_change == pytest.approx(-1 / 11, abs=0.02)
    assert all(c.qhat > 7 for c in got)


def test_perfherder_ignores_changes_below_two_percent_and_noise():
    assert PerfherderTTest().detect(steps(1, factors=(1.01, 1.0), sd=0.05)) == []
    assert PerfherderTTest().detect(np.random.default_rng(9).normal(100, 2, 400)) == []


def test_perfherder_reports_the_local_maximum_of_t():
    x = steps(2)
    t = PerfherderTTest().t_values(x)
    (first, _) = PerfherderTTest().detect(x)
    near = t[first.index - 5 : first.index + 6]
    assert t[first.index] == pytest.approx(np.nanmax(near))


# ----------------------------------------------------------------- MDL


@pytest.mark.parametrize("seed", range(3))
def test_mdl_groups_a_piecewise_constant_series(seed):
    x = steps(seed)
    assert MDLGrouping().groups(x) == [(0, 80), (80, 150), (150, 200)]
    cps = MDLGrouping().detect(x)
    assert [c.index for c in cps] == [80, 150]
    assert all(0 < c.pvalue < 1e-6 for c in cps)  # many bits saved


def test_mdl_keeps_one_group_for_noise_and_for_a_constant():
    assert MDLGrouping().groups(np.random.default_rng(3).normal(100, 2, 300)) == [(0, 300)]
    assert MDLGrouping().groups(np.full(50, 7.0)) == [(0, 50)]


def test_mdl_discourages_groups_with_close_averages():
    near = group_bits(20, 100.05, 1.0, 100.0, 200.0, 0.01, 100)
    far = group_bits(20, 110.0, 1.0, 100.0, 200.0, 0.01, 100)
    assert near > far


def test_trend_compliance_short_and_long_term():
    # 100 for 60 points, 120 for 30, then 90 for 10: last week -25 % vs a week ago
    # (120), and -25 % against the quarter's best group.
    rng = np.random.default_rng(4)
    x = np.concatenate([rng.normal(100, 0.5, 60), rng.normal(120, 0.5, 30), rng.normal(90, 0.5, 10)])
    f = TrendCompliance(short=15, long=90).figures(x)
    assert f.last_average == pytest.approx(90, abs=0.5)
    assert f.short_term_change == pytest.approx(-0.25, abs=0.01)
    assert f.long_term_change == pytest.approx(-0.25, abs=0.01)
    g = TrendCompliance(short=5, long=90).figures(x)
    assert g.short_term_change == pytest.approx(0.0, abs=1e-12)  # same group a "week" ago


# ----------------------------------------------------------------- Talos


def test_mixture_fit_recovers_two_modes_and_bic_picks_k():
    x = bimodal(0, n=400, share_before=0.3, share_after=0.3)
    g = TalosMixture().fit(x)
    assert g.k == 2
    assert g.means == pytest.approx([100, 150], abs=1.0)
    assert g.weights == pytest.approx([0.3, 0.7], abs=0.07)
    assert TalosMixture().fit(np.random.default_rng(1).normal(0, 1, 300)).k == 1
    assert GaussianMixture1D.fit(x, 2).bic(len(x)) < GaussianMixture1D.fit(x, 1).bic(len(x))


@pytest.mark.parametrize("seed", range(3))
def test_talos_is_quiet_when_only_the_mode_mix_changes(seed):
    assert TalosMixture(stride=2).detect(bimodal(seed)) == []


@pytest.mark.parametrize("seed", range(3))
def test_talos_fires_when_a_component_moves(seed):
    got = TalosMixture(stride=2).detect(bimodal(seed, share_before=0.4, share_after=0.4, move_after=10.0))
    assert len(got) == 1 and abs(got[0].index - 100) <= 3
    assert got[0].pvalue < 1e-6


def test_talos_finds_steps_in_unimodal_data():
    got = TalosMixture(stride=2).detect(steps(0))
    assert [abs(c.index - a) <= 3 for c, a in zip(got, (80, 150))] == [True, True]
