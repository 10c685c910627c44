"""A key's recent snapshots, kept as packed floats rather than objects.

Sixty Snapshot objects cost ~20 KB per key; the same history as one float array
costs 72 bytes per snapshot. Reads build Snapshot records on demand.
"""

from __future__ import annotations

from array import array
from typing import Iterator

from .records import Snapshot

__all__ = ["SnapshotHistory"]

_FIELDS = 9  # start, end, count, mean, p50, p90, p99, min, max


class SnapshotHistory:
    __slots__ = ("key", "maxlen", "_data")

    def __init__(self, key: str, maxlen: int) -> None:
        self.key = key
        self.maxlen = maxlen
        self._data = array("d")

    def append(self, s: Snapshot) -> None:
        self._data.extend((s.start, s.end, float(s.count), s.mean, s.p50, s.p90, s.p99, s.min, s.max))
        excess = len(self._data) - self.maxlen * _FIELDS
        if excess > 0:
            del self._data[:excess]

    def __len__(self) -> int:
        return len(self._data) // _FIELDS

    def __bool__(self) -> bool:
        return len(self._data) > 0

    def __getitem__(self, i: int) -> Snapshot:
        n = len(self)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError("snapshot history index out of range")
        d = self._data[i * _FIELDS : (i + 1) * _FIELDS]
        return Snapshot(self.key, d[0], d[1], int(d[2]), d[3], d[4], d[5], d[6], d[7], d[8])

    def __iter__(self) -> Iterator[Snapshot]:
        for i in range(len(self)):
            yield self[i]

    def column(self, name: str) -> list[float]:
        j = ("start", "end", "count", "mean", "p50", "p90", "p99", "min", "max").index(name)
        return list(self._data[j::_FIELDS])
