"""Snapshot windows: exact percentiles while small, bounded sketch when busy, both checkpointable."""

from __future__ import annotations

import numpy as np
import pytest

from stream.window import EXACT_LIMIT, Window


def test_small_windows_are_exact_and_big_ones_spill_into_the_sketch():
    rng = np.random.default_rng(3)
    small = rng.lognormal(3, 0.5, 500)
    w = Window()
    w.update_many(small[:200])
    for x in small[200:]:
        w.update(float(x))
    assert w.sketch is None
    assert list(w.quantiles([0.5, 0.9, 0.99])) == list(np.quantile(small, [0.5, 0.9, 0.99]))
    big = rng.lognormal(3, 0.5, 3 * EXACT_LIMIT)
    w2 = Window()
    w2.update_many(big)
    assert w2.values is None and w2.sketch is not None and w2.moments.count == big.size
    np.testing.assert_allclose(w2.quantiles([0.5, 0.99]), np.quantile(big, [0.5, 0.99]), rtol=0.02)


@pytest.mark.parametrize("n", [0, 10, 3 * EXACT_LIMIT])
def test_round_trip(n):
    w = Window()
    w.update_many(np.linspace(1, 2, n))
    back = Window.from_bytes(w.to_bytes())
    assert back.moments.count == n
    if n:
        assert list(back.quantiles([0.5])) == list(w.quantiles([0.5]))


def test_corrupt_window_bytes_are_rejected():
    w = Window()
    w.update_many(np.arange(1.0, 11.0))
    data = w.to_bytes()
    for bad in (data[:-3], data[:6], data + b"\x00", data[:4] + b"\xff" * (len(data) - 4)):
        with pytest.raises(ValueError):
            Window.from_bytes(bad)
