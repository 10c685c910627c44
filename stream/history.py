"""A key's recent snapshots, kept as packed rows rather than objects.

Sixty Snapshot objects cost ~20 KB per key. Here a snapshot is one 32-byte row: its
window number (start = w × interval, end = (w + 1) × interval, exactly as the
pipeline computes them), its count, and mean, p50, p90, p99, min, max as float32 —
7 significant digits, plenty for the live page and the gauges; reading a row back
gives the same values every time, and storing them again (a checkpoint restore)
keeps them unchanged. A snapshot whose times are not on the interval grid, or whose
count does not fit 32 bits, turns the history into 48-byte rows that keep start, end
and count exactly. Reads build Snapshot records on demand.
"""

from __future__ import annotations

import math
import struct
from typing import Iterator

import numpy as np

from .records import Snapshot

__all__ = ["SnapshotHistory", "VALUE_FIELDS"]

#: The float32 fields of a row, in order.
VALUE_FIELDS = ("mean", "p50", "p90", "p99", "min", "max")
_NARROW = np.dtype([("w", "<i4"), ("count", "<u4"), ("v", "<f4", (6,))])
_WIDE = np.dtype([("start", "<f8"), ("end", "<f8"), ("count", "<i8"), ("v", "<f4", (6,))])
_F32_MAX = float(np.finfo(np.float32).max)
_I32 = 1 << 31
_U32 = 0xFFFFFFFF
_HEAD = struct.Struct("<BdqI")  # layout (0 narrow, 1 wide), interval, w0, rows
_MAX_ROWS = 10_000


def _narrow(rows: np.ndarray) -> bool:
    return rows.dtype.names[0] == "w"  # type: ignore[index]


def _widen(rows: np.ndarray, w0: int, interval: float) -> np.ndarray:
    """Narrow rows as wide rows (start and end spelled out)."""
    out = np.zeros(len(rows), dtype=_WIDE)
    w = rows["w"].astype(np.int64) + w0
    out["start"] = w * interval
    out["end"] = (w + 1) * interval
    out["count"] = rows["count"]
    out["v"] = rows["v"]
    return out


def _f32(x: float) -> float:
    """A value ready for float32 (finite values beyond its range are clamped, not made infinite)."""
    if (x > _F32_MAX or x < -_F32_MAX) and math.isfinite(x):
        return math.copysign(_F32_MAX, x)
    return x


class SnapshotHistory:
    __slots__ = ("key", "maxlen", "interval", "_w0", "_rows", "_len")

    def __init__(self, key: str, maxlen: int, interval: float | None = None) -> None:
        self.key = key
        self.maxlen = maxlen
        #: The pipeline's snapshot interval; None: no grid, rows keep start and end.
        self.interval = interval if interval is not None and 0 < interval < math.inf else None
        self._w0 = 0  # window number of narrow row w = 0
        self._rows: np.ndarray | None = None
        self._len = 0

    # -- writing ---------------------------------------------------------
    def append(self, s: Snapshot) -> None:
        if self.maxlen <= 0:
            return
        rows, n = self._rows, self._len
        w = self._window(s)
        if rows is None:
            if w is not None:
                self._w0 = w
            rows = self._resize(min(8, self.maxlen), _NARROW if w is not None else _WIDE)
        elif _narrow(rows) and (w is None or not -_I32 <= w - self._w0 < _I32):
            rows = self._resize(len(rows), _WIDE)
        if n == len(rows):
            if n < self.maxlen:
                rows = self._resize(min(2 * n, self.maxlen), rows.dtype)
            else:  # full: drop the oldest
                rows[:-1] = rows[1:]
                n -= 1
        values = (_f32(s.mean), _f32(s.p50), _f32(s.p90), _f32(s.p99), _f32(s.min), _f32(s.max))
        if _narrow(rows):
            rows[n] = (w - self._w0, s.count, values)  # type: ignore[operator]
        else:
            rows[n] = (s.start, s.end, s.count, values)
        self._len = n + 1

    def _window(self, s: Snapshot) -> int | None:
        """The window number of ``s`` if its start and end are exactly on the grid."""
        iv = self.interval
        if iv is None or not (0 <= s.count <= _U32) or not math.isfinite(s.start):
            return None
        w = round(s.start / iv)
        if w * iv != s.start or (w + 1) * iv != s.end:
            return None
        return w

    def _resize(self, capacity: int, dtype: np.dtype) -> np.ndarray:
        old, n = self._rows, self._len
        rows = np.zeros(capacity, dtype=dtype)
        if old is not None and n:
            rows[:n] = old[:n] if old.dtype == dtype else _widen(old[:n], self._w0, self.interval)  # type: ignore[arg-type]
        self._rows = rows
        return rows

    # -- reading ---------------------------------------------------------
    def __len__(self) -> int:
        return self._len

    def __bool__(self) -> bool:
        return self._len > 0

    def __getitem__(self, i: int) -> Snapshot:
        n = self._len
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError("snapshot history index out of range")
        row = self._rows[i]  # type: ignore[index]
        mean, p50, p90, p99, lo, hi = row["v"].tolist()
        if _narrow(self._rows):  # type: ignore[arg-type]
            w = self._w0 + int(row["w"])
            start, end = w * self.interval, (w + 1) * self.interval  # type: ignore[operator]
        else:
            start, end = float(row["start"]), float(row["end"])
        return Snapshot(self.key, start, end, int(row["count"]), mean, p50, p90, p99, lo, hi)

    def __iter__(self) -> Iterator[Snapshot]:
        for i in range(len(self)):
            yield self[i]

    def column(self, name: str) -> list[float]:
        rows = self._rows
        if rows is None:
            return []
        rows = rows[: self._len]
        if name in VALUE_FIELDS:
            return rows["v"][:, VALUE_FIELDS.index(name)].tolist()
        if name == "count":
            return [float(c) for c in rows["count"].tolist()]
        if name not in ("start", "end"):
            raise ValueError(f"no column {name!r}")
        if not _narrow(rows):
            return rows[name].tolist()
        w = rows["w"].astype(np.int64) + (self._w0 + (name == "end"))
        return (w.astype(np.float64) * self.interval).tolist()

    # -- checkpoint form -------------------------------------------------
    def to_bytes(self) -> bytes:
        """Layout, w0, row count, then the rows as stored (little-endian)."""
        rows = self._rows
        if rows is None:
            return _HEAD.pack(0, 0.0, 0, 0)
        head = _HEAD.pack(0 if _narrow(rows) else 1, self.interval or 0.0, self._w0, self._len)
        return head + rows[: self._len].tobytes()

    def restore(self, data: bytes) -> None:
        """Replace the contents with ``to_bytes`` output; ``ValueError`` if malformed."""
        if len(data) < _HEAD.size:
            raise ValueError("snapshot history record too short")
        layout, interval, w0, n = _HEAD.unpack_from(data)
        if layout not in (0, 1):
            raise ValueError(f"unknown snapshot history layout {layout}")
        dtype = _WIDE if layout else _NARROW
        if n > _MAX_ROWS or len(data) != _HEAD.size + n * dtype.itemsize:
            raise ValueError("snapshot history rows do not match their bytes")
        rows = np.frombuffer(data, dtype=dtype, count=n, offset=_HEAD.size)
        if layout == 0 and n and interval != self.interval:
            # Written with another snapshot interval: keep the times it implied.
            if not 0 < interval < math.inf:
                raise ValueError("snapshot history on a grid, but no interval")
            rows, dtype = _widen(rows, w0, interval), _WIDE
        if n > self.maxlen:
            rows = rows[n - self.maxlen :]
            n = self.maxlen
        self._w0 = w0
        self._rows = None
        self._len = 0
        if n:
            self._rows = np.zeros(max(n, min(8, self.maxlen)), dtype=dtype)
            self._rows[:n] = rows
            self._len = n
