"""One open snapshot window of one key.

A window only has to answer for its own values (typically hundreds to a few
thousand per interval), so it keeps them exactly — exact window percentiles are
what the detector should see — and spills into a byte-bounded LogBuckets only
when a window gets busier than ``exact_limit`` values. Constant memory either way.
"""

from __future__ import annotations

import struct
from array import array
from typing import Any, Sequence

import numpy as np

from sketches import ESTIMATORS, LogBuckets, Moments, make_estimator

__all__ = ["Window", "EXACT_LIMIT"]

EXACT_LIMIT = 4096
_EXACT, _SKETCH, _OTHER = 0, 1, 2


class Window:
    """Values of one window: exact up to ``EXACT_LIMIT``, then an estimator.

    ``estimator`` names the registered estimator (sketches.ESTIMATORS) a busy window
    spills into; LogBuckets (the default) is mergeable, so pooled windows and
    histogram points merge into it exactly. A non-default estimator is used from the
    first value (``exact_limit`` 0), so choosing it is visible on every window.
    """

    __slots__ = ("values", "sketch", "moments", "sketch_bytes", "estimator", "kept")

    def __init__(self, sketch_bytes: int = 1024, estimator: str = "logbuckets", quantiles: Sequence[float] = (0.5, 0.9, 0.99)) -> None:
        self.values: array | None = array("d") if estimator == "logbuckets" else None
        self.sketch: Any = None if self.values is not None else make_estimator(estimator, max_bytes=sketch_bytes, quantiles=quantiles)
        self.moments = Moments()
        self.sketch_bytes = sketch_bytes
        self.estimator = estimator
        #: A few exact values kept when the window spilled (shift-event examples).
        self.kept: tuple[float, ...] = ()

    def examples(self, k: int, seed: int) -> list[float]:
        """Up to ``k`` real values of the window, chosen deterministically by ``seed``."""
        if self.values is None:
            return list(self.kept[:k])
        v = np.frombuffer(self.values, dtype=np.float64)
        if len(v) <= k:
            return v.tolist()
        idx = np.sort(np.random.default_rng(seed & 0xFFFFFFFF).choice(len(v), size=k, replace=False))
        return v[idx].tolist()

    def merge(self, other: "Window") -> None:
        """Fold ``other`` (a later window of the same key) into this one: pooling."""
        self.moments.merge(other.moments)
        if self.values is not None and other.values is not None:
            self.values.extend(other.values)
            if len(self.values) > EXACT_LIMIT:
                self._spill()
            return
        if self.values is not None:
            self._spill()
        self.kept = self.kept or other.kept
        if other.values is not None:
            self.sketch.update_many(np.frombuffer(other.values, dtype=np.float64))
        else:
            self.sketch.merge(other.sketch)

    def merge_sketch(self, sketch: LogBuckets, moments: Moments) -> None:
        """A pre-aggregated distribution (an OTLP histogram point) into this window."""
        self.moments.merge(moments)
        if self.values is not None:
            self._spill()
        self.sketch.merge(sketch)

    def update(self, x: float) -> None:
        self.moments.update(x)
        if self.values is not None:
            self.values.append(x)
            if len(self.values) > EXACT_LIMIT:
                self._spill()
        else:
            self.sketch.update(x)  # type: ignore[union-attr]

    def update_many(self, v: np.ndarray) -> None:
        self.moments.update_many(v)
        if self.values is not None:
            self.values.frombytes(np.ascontiguousarray(v, dtype=np.float64).tobytes())
            if len(self.values) > EXACT_LIMIT:
                self._spill()
        else:
            self.sketch.update_many(v)  # type: ignore[union-attr]

    def _spill(self) -> None:
        self.kept = tuple(self.examples(2, len(self.values)))  # type: ignore[arg-type]
        self.sketch = LogBuckets(max_bytes=self.sketch_bytes)
        self.sketch.update_many(np.frombuffer(self.values, dtype=np.float64))  # type: ignore[arg-type]
        self.values = None

    def quantiles(self, qs: Sequence[float]) -> np.ndarray:
        if self.values is not None:
            return np.quantile(np.frombuffer(self.values, dtype=np.float64), qs)
        return self.sketch.quantiles(qs)  # type: ignore[union-attr]

    # -- checkpoint form -------------------------------------------------
    def to_bytes(self) -> bytes:
        m = self.moments.to_bytes()
        if self.values is not None:
            body = bytes([_EXACT]) + struct.pack("<I", len(self.values)) + self.values.tobytes()
        elif self.estimator == "logbuckets":
            body = bytes([_SKETCH]) + self.sketch.to_bytes()  # type: ignore[union-attr]
        else:
            name = self.estimator.encode()
            body = bytes([_OTHER, len(name)]) + name + self.sketch.to_bytes()
        return struct.pack("<I", len(m)) + m + body

    @classmethod
    def from_bytes(cls, data: bytes, sketch_bytes: int = 1024) -> "Window":
        if len(data) < 5:
            raise ValueError("window record too short")
        (mlen,) = struct.unpack_from("<I", data)
        if 4 + mlen + 1 > len(data):
            raise ValueError("window record truncated")
        win = cls(sketch_bytes)
        win.moments = Moments.from_bytes(data[4 : 4 + mlen])
        tag = data[4 + mlen]
        rest = data[5 + mlen :]
        if tag == _EXACT:
            if len(rest) < 4:
                raise ValueError("window record truncated")
            (n,) = struct.unpack_from("<I", rest)
            if n > EXACT_LIMIT or len(rest) != 4 + 8 * n:
                raise ValueError("window value count does not match its bytes")
            win.values = array("d")
            win.values.frombytes(rest[4:])
            if n != win.moments.count:
                raise ValueError("window values disagree with its moments")
        elif tag == _SKETCH:
            win.values = None
            win.sketch = LogBuckets.from_bytes(rest)
        elif tag == _OTHER and rest and len(rest) > rest[0]:
            name = rest[1 : 1 + rest[0]].decode("ascii", "replace")
            if name not in ESTIMATORS:
                raise ValueError(f"window of unknown estimator {name!r}")
            win.values, win.estimator = None, name
            win.sketch = ESTIMATORS[name].from_bytes(rest[1 + rest[0] :])
        else:
            raise ValueError(f"unknown window tag {tag}")
        return win
