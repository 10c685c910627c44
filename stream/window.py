"""One open snapshot window of one key.

A window only has to answer for its own values (typically hundreds to a few
thousand per interval), so it keeps them exactly — exact window percentiles are
what the detector should see — and spills into a byte-bounded LogBuckets only
when a window gets busier than ``exact_limit`` values. Constant memory either way.
"""

from __future__ import annotations

import struct
from array import array
from typing import Sequence

import numpy as np

from sketches import LogBuckets, Moments

__all__ = ["Window", "EXACT_LIMIT"]

EXACT_LIMIT = 4096
_EXACT, _SKETCH = 0, 1


class Window:
    __slots__ = ("values", "sketch", "moments", "sketch_bytes")

    def __init__(self, sketch_bytes: int = 1024) -> None:
        self.values: array | None = array("d")
        self.sketch: LogBuckets | None = None
        self.moments = Moments()
        self.sketch_bytes = sketch_bytes

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
        else:
            body = bytes([_SKETCH]) + self.sketch.to_bytes()  # type: ignore[union-attr]
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
        else:
            raise ValueError(f"unknown window tag {tag}")
        return win
