"""The Estimator contract, checked on every registered estimator, and the registry."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sketches import ESTIMATORS, Estimator, LogBuckets, P2Quantiles, Reservoir, make_estimator  # noqa: E402

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
NAMES = sorted(ESTIMATORS)
QS = (0.5, 0.9, 0.99)
values = st.lists(st.floats(0.0, 1e4, allow_nan=False), max_size=200)


def _lognormal(n: int, seed: int = 3) -> np.ndarray:
    return np.random.default_rng(seed).lognormal(np.log(0.05), 0.6, n)


def test_registry_names_and_types():
    assert set(NAMES) == {"logbuckets", "p2", "reservoir"}
    assert ESTIMATORS["logbuckets"] is LogBuckets and ESTIMATORS["p2"] is P2Quantiles and ESTIMATORS["reservoir"] is Reservoir
    for name in NAMES:
        assert issubclass(ESTIMATORS[name], Estimator)
        assert isinstance(make_estimator(name), ESTIMATORS[name])
    with pytest.raises(TypeError):
        ESTIMATORS["x"] = LogBuckets  # type: ignore[index]  # read-only


def test_unknown_name_lists_the_choices_and_bad_settings_are_refused():
    with pytest.raises(ValueError, match="logbuckets, p2, reservoir"):
        make_estimator("tdigest")
    for name in NAMES:
        with pytest.raises(ValueError, match="quantiles"):
            make_estimator(name, quantiles=(0.5, 1.5))
        with pytest.raises(ValueError, match="quantiles"):
            make_estimator(name, quantiles=(float("nan"),))
    with pytest.raises(ValueError, match="max_bytes"):
        make_estimator("logbuckets", max_bytes=10)


def test_an_estimator_missing_a_method_fails_at_creation():
    class Half(Estimator):
        def update(self, x: float) -> None:
            pass

    with pytest.raises(TypeError):
        Half()  # type: ignore[abstract]


@pytest.mark.parametrize("name", NAMES)
def test_empty_estimator_gives_nan(name):
    e = make_estimator(name)
    assert e.count == 0
    assert np.isnan(e.quantiles([0.1, 0.5, 0.99])).all() and np.isnan(e.quantile(0.5))
    back = type(e).from_bytes(e.to_bytes())
    assert back.count == 0 and np.isnan(back.quantiles(QS)).all()


@pytest.mark.parametrize("name", NAMES)
def test_accuracy_bytes_and_round_trip(name):
    v = _lognormal(20_000)
    e = make_estimator(name, max_bytes=1024, quantiles=QS, seed=1)
    e.update_many(v)
    assert e.count == v.size
    true = np.quantile(v, QS)
    est = e.quantiles(QS)
    tol = {"logbuckets": 0.01, "p2": 0.05, "reservoir": 0.5}[name]
    assert (np.abs(est / true - 1) < tol).all(), (name, est, true)
    data = e.to_bytes()
    assert e.nbytes == len(data) <= 1024
    back = type(e).from_bytes(data)
    assert back.count == e.count
    np.testing.assert_array_equal(back.quantiles(QS), est)
    assert back.to_bytes() == data


@pytest.mark.parametrize("name", NAMES)
@SETTINGS
@given(values, values)
def test_merge_and_plus(name, a_vals, b_vals):
    a = make_estimator(name, seed=2)
    b = make_estimator(name, seed=3)
    a.update_many(a_vals)
    b.update_many(b_vals)
    a_bytes, b_bytes = a.to_bytes(), b.to_bytes()
    c = a + b
    assert a.to_bytes() == a_bytes and b.to_bytes() == b_bytes  # + leaves its operands alone
    assert c.count == len(a_vals) + len(b_vals)
    a.merge(b)
    assert a.to_bytes() == c.to_bytes()  # deterministic: the same merge gives the same state
    both = a_vals + b_vals
    est = c.quantiles([0.0, 0.5, 1.0])
    if both:
        assert min(both) <= est[0] <= est[1] <= est[2] <= max(both)
    else:
        assert np.isnan(est).all()


@pytest.mark.parametrize("name", NAMES)
def test_merge_refuses_another_type(name):
    other = LogBuckets() if name != "logbuckets" else Reservoir()
    with pytest.raises(TypeError):
        make_estimator(name).merge(other)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", NAMES)
@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=300))
def test_from_bytes_rejects_garbage_with_value_error(name, data):
    cls = ESTIMATORS[name]
    try:
        e = cls.from_bytes(data)
    except ValueError:
        return
    e.quantiles(QS)  # accepted bytes give a usable estimator


@pytest.mark.parametrize("name", NAMES)
def test_from_bytes_rejects_every_truncation_and_non_bytes(name):
    e = make_estimator(name)
    e.update_many(_lognormal(500))
    data = e.to_bytes()
    for k in range(len(data)):
        with pytest.raises(ValueError):
            type(e).from_bytes(data[:k])
    with pytest.raises(ValueError):
        type(e).from_bytes(data + b"\x00")
    with pytest.raises(ValueError):
        type(e).from_bytes("abc")  # type: ignore[arg-type]


@pytest.mark.parametrize("name", NAMES)
def test_non_finite_values_are_refused(name):
    e = make_estimator(name)
    with pytest.raises(ValueError):
        e.update(float("nan"))
    with pytest.raises(ValueError):
        e.update_many([1.0, float("inf")])


def test_reservoir_is_deterministic_given_the_seed_and_sized_by_the_budget():
    v = _lognormal(5000)
    runs = []
    for _ in range(2):
        r = make_estimator("reservoir", seed=9, max_bytes=512)
        r.update_many(v)
        runs.append(r.to_bytes())
    assert runs[0] == runs[1]
    assert len(runs[0]) <= 512 and make_estimator("reservoir", max_bytes=512).size == (512 - 72) // 8
    other = make_estimator("reservoir", seed=10, max_bytes=512)
    other.update_many(v)
    assert other.to_bytes() != runs[0]


def test_p2_takes_the_quantile_set():
    p = make_estimator("p2", quantiles=(0.99, 0.5, 0.0, 1.0, 0.5))
    assert p.probs == (0.5, 0.99)
