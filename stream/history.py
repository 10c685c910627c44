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
from dataclasses import dataclass
from functools import cached_property, lru_cache
from typing import Iterator

import numpy as np

from .records import DEFAULT_NAMES, Snapshot

__all__ = ["SnapshotHistory", "VALUE_FIELDS"]

#: The float32 fields of a row with the default quantiles, in order.
VALUE_FIELDS = ("mean", *DEFAULT_NAMES, "min", "max")


@dataclass(frozen=True)
class _Layout:
    """Row formats for ``n`` float32 values (mean, the quantiles, min, max)."""

    n: int

    @cached_property
    def narrow(self) -> np.dtype:
        return np.dtype([("w", "<i4"), ("count", "<u4"), ("v", "<f4", (self.n,))])

    @cached_property
    def wide(self) -> np.dtype:
        return np.dtype([("start", "<f8"), ("end", "<f8"), ("count", "<i8"), ("v", "<f4", (self.n,))])

    @cached_property
    def narrow_row(self) -> struct.Struct:  # rows are written and read one at a time through these
        return struct.Struct(f"<iI{self.n}f")

    @cached_property
    def wide_row(self) -> struct.Struct:
        return struct.Struct(f"<ddq{self.n}f")


@lru_cache(maxsize=16)
def _layout(n: int) -> _Layout:
    return _Layout(n)
_F32_MAX = float(np.finfo(np.float32).max)
_I32 = 1 << 31
_U32 = 0xFFFFFFFF
_HEAD = struct.Struct("<BdqI")  # layout (0 narrow, 1 wide; +2: a column count follows), interval, w0, rows
_MAX_ROWS = 10_000


def _widen(rows: np.ndarray, w0: int, interval: float) -> np.ndarray:
    """Narrow rows as wide rows (start and end spelled out)."""
    out = np.zeros(len(rows), dtype=_layout(rows.dtype["v"].shape[0]).wide)
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
    __slots__ = ("key", "maxlen", "interval", "names", "_lay", "_w0", "_wide", "_buf", "_len")

    def __init__(self, key: str, maxlen: int, interval: float | None = None, names: tuple[str, ...] = DEFAULT_NAMES) -> None:
        self.key = key
        self.names = names
        self._lay = _layout(len(names) + 3)
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
        size = self._lay.wide_row.size if self._wide else self._lay.narrow_row.size
        if (n + 1) * size > len(buf):  # type: ignore[arg-type]
            if n < self.maxlen:
                self._resize(min(2 * n, self.maxlen), self._wide)
                buf = self._buf
            else:  # full: drop the oldest
                buf[:-size] = buf[size:]  # type: ignore[index]
                n -= 1
        values = (s.mean, *s.q, s.min, s.max)
        try:
            self._pack(buf, n, s, w, values)  # type: ignore[arg-type]
        except OverflowError:  # a finite value beyond float32
            self._pack(buf, n, s, w, tuple(_f32(v) for v in values))  # type: ignore[arg-type]
        self._len = n + 1

    def _pack(self, buf: bytearray, n: int, s: Snapshot, w: int | None, values: tuple[float, ...]) -> None:
        if self._wide:
            row = self._lay.wide_row
            row.pack_into(buf, n * row.size, s.start, s.end, s.count, *values)
        else:
            row = self._lay.narrow_row
            row.pack_into(buf, n * row.size, w - self._w0, s.count, *values)  # type: ignore[operator]

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
        return len(self._buf) // self._dtype(self._wide).itemsize if self._buf is not None else 0

    def _dtype(self, wide: bool) -> np.dtype:
        return self._lay.wide if wide else self._lay.narrow

    def _rows(self) -> np.ndarray:
        """The rows as a structured array (a view of the buffer)."""
        dtype = self._dtype(self._wide)
        if self._buf is None:
            return np.zeros(0, dtype=dtype)
        return np.frombuffer(self._buf, dtype=dtype, count=self._len)

    def _resize(self, capacity: int, wide: bool) -> None:
        n = self._len
        buf = bytearray(capacity * self._dtype(wide).itemsize)
        if n:
            old = self._rows()
            np.frombuffer(buf, dtype=self._dtype(wide), count=n)[:] = (
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
            row = self._lay.wide_row
            start, end, count, mean, *q, lo, hi = row.unpack_from(self._buf, i * row.size)  # type: ignore[arg-type]
        else:
            row = self._lay.narrow_row
            w, count, mean, *q, lo, hi = row.unpack_from(self._buf, i * row.size)  # type: ignore[arg-type]
            w += self._w0
            start, end = w * self.interval, (w + 1) * self.interval  # type: ignore[operator]
        return Snapshot(self.key, start, end, count, mean, tuple(q), lo, hi, self.names)

    def __iter__(self) -> Iterator[Snapshot]:
        for i in range(len(self)):
            yield self[i]

    def column(self, name: str) -> list[float]:
        rows = self._rows()
        fields_ = ("mean", *self.names, "min", "max")
        if name in fields_:
            return rows["v"][:, fields_.index(name)].tolist()
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
        n = self._len * self._dtype(self._wide).itemsize
        cols = self._lay.n
        head = _HEAD.pack(int(self._wide) + (2 if cols != 6 else 0), self.interval or 0.0, self._w0, self._len)
        if cols != 6:
            head += bytes([cols])
        return head + (bytes(self._buf[:n]) if self._buf is not None else b"")

    def restore(self, data: bytes) -> None:
        """Replace the contents with ``to_bytes`` output; ``ValueError`` if malformed."""
        if len(data) < _HEAD.size:
            raise ValueError("snapshot history record too short")
        layout, interval, w0, n = _HEAD.unpack_from(data)
        if layout not in (0, 1, 2, 3):
            raise ValueError(f"unknown snapshot history layout {layout}")
        start = _HEAD.size + (layout >= 2)
        cols = data[_HEAD.size] if layout >= 2 and len(data) > _HEAD.size else 6
        layout &= 1
        if cols != self._lay.n:
            # Written with another quantile set: the page's history starts afresh.
            self._w0, self._wide, self._buf, self._len = 0, False, None, 0
            return
        dtype = self._dtype(bool(layout))
        if n > _MAX_ROWS or len(data) != start + n * dtype.itemsize:
            raise ValueError("snapshot history rows do not match their bytes")
        rows = np.frombuffer(data, dtype=dtype, count=n, offset=start)
        if layout == 0 and n and interval != self.interval:
            # Written with another snapshot interval: keep the times it implied.
            if not 0 < interval < math.inf:
                raise ValueError("snapshot history on a grid, but no interval")
            rows, dtype = _widen(rows, w0, interval), self._lay.wide
        if n > self.maxlen:
            rows = rows[n - self.maxlen :]
            n = self.maxlen
        self._w0, self._wide, self._buf, self._len = w0, dtype == self._lay.wide, None, 0
        if n:
            buf = bytearray(max(n, min(8, self.maxlen)) * dtype.itemsize)
            np.frombuffer(buf, dtype=dtype, count=n)[:] = rows
            self._buf, self._len = buf, n
