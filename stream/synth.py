"""Seeded synthetic response-time traffic with injected shifts.

One generator serves the demo, the load generator, tests and benchmarks, so they
all see the same kind of data: lognormal latencies per key (medians and spreads
like real endpoints), optional shifts that multiply a key's latencies from a
given time on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator

import numpy as np

__all__ = ["KeyProfile", "Shift", "SyntheticTraffic", "DEFAULT_PROFILES"]


@dataclass(slots=True, frozen=True)
class KeyProfile:
    key: str
    median_ms: float
    sigma: float = 0.5
    rate_per_s: float = 200.0


@dataclass(slots=True, frozen=True)
class Shift:
    """From ``at`` (seconds after the start) on, ``key``'s latencies are × ``factor``."""

    key: str
    at: float
    factor: float


DEFAULT_PROFILES: tuple[KeyProfile, ...] = (
    KeyProfile("checkout", 120.0, 0.45),
    KeyProfile("search", 35.0, 0.6),
    KeyProfile("login", 60.0, 0.35),
    KeyProfile("payments", 250.0, 0.5),
)


@dataclass(slots=True)
class SyntheticTraffic:
    profiles: tuple[KeyProfile, ...] = DEFAULT_PROFILES
    shifts: tuple[Shift, ...] = ()
    seed: int = 7
    _rng: np.random.Generator = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._rng = np.random.default_rng(self.seed)

    def factor(self, key: str, offset: float) -> float:
        f = 1.0
        for s in self.shifts:
            if s.key == key and offset >= s.at:
                f = s.factor
        return f

    def second(self, t0: float, offset: float) -> list[dict[str, object]]:
        """Events of one second [t0+offset, t0+offset+1), time-ordered, values in ms."""
        rng = self._rng
        events: list[tuple[float, str, float]] = []
        for p in self.profiles:
            n = int(rng.poisson(p.rate_per_s))
            if n == 0:
                continue
            ts = t0 + offset + np.sort(rng.random(n))
            vals = p.median_ms * np.exp(p.sigma * rng.standard_normal(n)) * self.factor(p.key, offset)
            events.extend(zip(ts.tolist(), [p.key] * n, np.round(vals, 3).tolist()))
        events.sort(key=lambda e: e[0])
        return [{"key": k, "value": v, "ts": round(t, 6)} for t, k, v in events]

    def seconds(self, t0: float, duration: int) -> Iterator[list[dict[str, object]]]:
        for i in range(duration):
            yield self.second(t0, float(i))
