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
_NARROW_ROW = struct.Struct("<iI6f")  # rows are written and read one at a time through these
_WIDE_ROW = struct.Struct("<ddq6f")
_F32_MAX = float(np.finfo(np.float32).max)
_I32 = 1 << 31
_U32 = 0xFFFFFFFF
_HEAD = struct.Struct("<BdqI")  # layout (0 narrow, 1 wide), interval, w0, rows
_MAX_ROWS = 10_000


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
    __slots__ = ("key", "maxlen", "interval", "_w0", "_wide", "_buf", "_len")

    def __init__(self, key: str, maxlen: int, interval: float | None = None) -> None:
        self.key = key
        self.maxlen = maxlen
        #: The pipeline's snapshot interval; None: no grid, rows keep start and end.
        self.interval = interval if interval is not None and 0 < interval < math.inf else None
        self._w0 = 0  # window number of narrow row w = 0
        self._wide = False
        self._buf: bytearray | None = None  # rows [0, _len), room for up to maxlen
        self._len = 0

    # -- writing ---------------------------------------------------------
    def append(self, s: Snapshot) -> None:
        if self.maxlen <= 0:
            return
        w = self._window(s)
        if self._buf is None:
            if w is not None:
                self._w0 = w
            self._resize(min(8, self.maxlen), w is None)
        elif not self._wide and (w is None or not -_I32 <= w - self._w0 < _I32):
            self._resize(self._capacity(), True)
        buf, n = self._buf, self._len
        size = _WIDE_ROW.size if self._wide else _NARROW_ROW.size
        if (n + 1) * size > len(buf):  # type: ignore[arg-type]
            if n < self.maxlen:
                self._resize(min(2 * n, self.maxlen), self._wide)
                buf = self._buf
            else:  # full: drop the oldest
                buf[:-size] = buf[size:]  # type: ignore[index]
                n -= 1
        values = (s.mean, s.p50, s.p90, s.p99, s.min, s.max)
        try:
            self._pack(buf, n, s, w, values)  # type: ignore[arg-type]
        except OverflowError:  # a finite value beyond float32
            self._pack(buf, n, s, w, tuple(_f32(v) for v in values))  # type: ignore[arg-type]
        self._len = n + 1

    def _pack(self, buf: bytearray, n: int, s: Snapshot, w: int | None, values: tuple[float, ...]) -> None:
        if self._wide:
            _WIDE_ROW.pack_into(buf, n * _WIDE_ROW.size, s.start, s.end, s.count, *values)
        else:
            _NARROW_ROW.pack_into(buf, n * _NARROW_ROW.size, w - self._w0, s.count, *values)  # type: ignore[operator]

    def _window(self, s: Snapshot) -> int | None:
        """The window number of ``s`` if its start and end are exactly on the grid."""
        iv = self.interval
        if iv is None or not (0 <= s.count <= _U32) or not math.isfinite(s.start):
            return None
        w = round(s.start / iv)
        if w * iv != s.start or (w + 1) * iv != s.end:
            return None
        return w

    def _capacity(self) -> int:
        return len(self._buf) // (_WIDE if self._wide else _NARROW).itemsize if self._buf is not None else 0

    def _rows(self) -> np.ndarray:
        """The rows as a structured array (a view of the buffer)."""
        dtype = _WIDE if self._wide else _NARROW
        if self._buf is None:
            return np.zeros(0, dtype=dtype)
        return np.frombuffer(self._buf, dtype=dtype, count=self._len)

    def _resize(self, capacity: int, wide: bool) -> None:
        n = self._len
        buf = bytearray(capacity * (_WIDE if wide else _NARROW).itemsize)
        if n:
            old = self._rows()
            np.frombuffer(buf, dtype=_WIDE if wide else _NARROW, count=n)[:] = (
                old if wide == self._wide else _widen(old, self._w0, self.interval)  # type: ignore[arg-type]
            )
            del old
        self._buf, self._wide = buf, wide

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
        if self._wide:
            start, end, count, mean, p50, p90, p99, lo, hi = _WIDE_ROW.unpack_from(self._buf, i * _WIDE_ROW.size)  # type: ignore[arg-type]
        else:
            w, count, mean, p50, p90, p99, lo, hi = _NARROW_ROW.unpack_from(self._buf, i * _NARROW_ROW.size)  # type: ignore[arg-type]
            w += self._w0
            start, end = w * self.interval, (w + 1) * self.interval  # type: ignore[operator]
        return Snapshot(self.key, start, end, count, mean, p50, p90, p99, lo, hi)

    def __iter__(self) -> Iterator[Snapshot]:
        for i in range(len(self)):
            yield self[i]

    def column(self, name: str) -> list[float]:
        rows = self._rows()
        if name in VALUE_FIELDS:
            return rows["v"][:, VALUE_FIELDS.index(name)].tolist()
        if name == "count":
            return [float(c) for c in rows["count"].tolist()]
        if name not in ("start", "end"):
            raise ValueError(f"no column {name!r}")
        if self._wide:
            return rows[name].tolist()
        w = rows["w"].astype(np.int64) + (self._w0 + (name == "end"))
        return (w.astype(np.float64) * self.interval).tolist()

    # -- checkpoint form -------------------------------------------------
    def to_bytes(self) -> bytes:
        """Layout, w0, row count, then the rows as stored (little-endian)."""
        n = self._len * (_WIDE if self._wide else _NARROW).itemsize
        head = _HEAD.pack(int(self._wide), self.interval or 0.0, self._w0, self._len)
        return head + (bytes(self._buf[:n]) if self._buf is not None else b"")

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
        self._w0, self._wide, self._buf, self._len = w0, dtype is _WIDE, None, 0
        if n:
            buf = bytearray(max(n, min(8, self.maxlen)) * dtype.itemsize)
            np.frombuffer(buf, dtype=dtype, count=n)[:] = rows
            self._buf, self._len = buf, n
