"""Estimators by name: what ``--estimator NAME`` chooses from.

Adding an estimator is one line here (plus its own file and test); nothing else
in the code base lists estimators.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Mapping, Sequence

from .base import Estimator
from .logbuckets import LogBuckets
from .p2 import P2Quantiles
from .reservoir import Reservoir

__all__ = ["ESTIMATORS", "DEFAULT_ESTIMATOR", "make_estimator"]

ESTIMATORS: Mapping[str, type[Estimator]] = MappingProxyType({
    "logbuckets": LogBuckets,
    "p2": P2Quantiles,
    "reservoir": Reservoir,
})
DEFAULT_ESTIMATOR = "logbuckets"


def make_estimator(
    name: str, *, max_bytes: int = 1024, quantiles: Sequence[float] = (0.5, 0.9, 0.99), seed: int = 0
) -> Estimator:
    """A fresh estimator. ``max_bytes`` bounds the serialized state (P² ignores it: its
    size is fixed by ``quantiles``, the ones it tracks exactly); ``seed`` makes the
    reservoir deterministic."""
    try:
        cls = ESTIMATORS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown estimator {name!r}; choose one of {', '.join(sorted(ESTIMATORS))}") from None
    qs = tuple(float(q) for q in quantiles)
    if not all(0.0 <= q <= 1.0 for q in qs):  # (false for nan too)
        raise ValueError(f"quantiles must be in [0, 1], got {qs}")
    return cls.create(max_bytes=max_bytes, quantiles=qs, seed=seed)
