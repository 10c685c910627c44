"""The interface every percentile estimator implements, so the stream can pick one by name.

Why an abstract base rather than a structural Protocol: the shared parts (``quantile``,
``+``, ``nbytes``) live here once, and a new estimator that forgets a method fails at
class creation, not on the first checkpoint.

``nbytes`` is the **serialized** size (``len(to_bytes())``): that is what a checkpoint,
a window partial or a cold key costs, and it is comparable across estimators whatever
their in-memory layout. Estimators that can compute it without encoding override it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Sequence, TypeVar

import numpy as np

__all__ = ["Estimator"]

E = TypeVar("E", bound="Estimator")


class Estimator(ABC):
    """A streaming quantile estimator over finite floats with a bounded serialized state."""

    __slots__ = ()

    @classmethod
    @abstractmethod
    def create(cls: type[E], *, max_bytes: int, quantiles: Sequence[float], seed: int) -> E:
        """A fresh estimator from the registry's common settings (each uses what it needs)."""

    @abstractmethod
    def update(self, x: float) -> None:
        """Add one finite value (non-finite raises ``ValueError``)."""

    @abstractmethod
    def update_many(self, values: np.ndarray | Sequence[float]) -> None:
        """Add many values; same result as calling :meth:`update` on each in order."""

    @abstractmethod
    def merge(self, other: E) -> None:
        """Fold ``other`` (same type) into this estimator, in place."""

    @abstractmethod
    def quantiles(self, qs: Sequence[float]) -> np.ndarray:
        """Estimates at each ``q`` in [0, 1]; nan for every ``q`` while empty."""

    @property
    @abstractmethod
    def count(self) -> int:
        """Values seen (merged ones included)."""

    @abstractmethod
    def to_bytes(self) -> bytes:
        """Version byte first; :meth:`from_bytes` gives back an equal estimator."""

    @classmethod
    @abstractmethod
    def from_bytes(cls: type[E], data: bytes) -> E:
        """Decode; bad input raises ``ValueError`` (never crashes, hangs or allocates without bound)."""

    def quantile(self, q: float) -> float:
        return float(self.quantiles([q])[0])

    @property
    def nbytes(self) -> int:
        """Serialized size in bytes (see the module docstring)."""
        return len(self.to_bytes())

    def copy(self: E) -> E:
        return type(self).from_bytes(self.to_bytes())

    def __add__(self: E, other: E) -> E:
        """A new estimator holding both (neither operand changes)."""
        out = self.copy()
        out.merge(other)
        return out
