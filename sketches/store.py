"""Bucket counts (index → count), kept apart from the value mapping.

In memory a dense array over the occupied span (a budgeted sketch's span is at most
``8 * max_bytes`` buckets), so a batch is one ``bincount`` and an exact downscale or
merge is one ``add.reduceat``. The array has the narrowest unsigned dtype that holds
its largest count (uint8, then uint16, uint32, int64), widened before an add could
overflow: a hot 1 KiB sketch of a few thousand values holds single-digit counts, and
int64 would spend 8 bytes on each of its thousands of buckets.

Serialized dense too: block Rice codes of the counts or of their zig-zagged
neighbour differences (``_blockrice``; format v4). The adaptive Rice code of v3
(``_bits``) is still read, and written only for comparisons and tests.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np

from . import _blockrice
from ._bits import rice_bits, rice_decode, rice_encode
from ._varint import Reader, SketchDecodeError, put_svarint, put_uvarint, unzigzag, uvarint_len, zigzag

__all__ = ["BucketStore"]

_MAX_INDEX = 1 << 40
_MAX_COUNT = 1 << 60  # zig-zagged deltas must stay inside int64
_DTYPES = tuple((np.dtype(t), int(np.iinfo(t).max)) for t in (np.uint8, np.uint16, np.uint32, np.int64))
_CAP = dict(_DTYPES)
_EMPTY = np.zeros(0, dtype=np.uint8)  # shared by every empty store (never written to)


def _dtype_for(m: int) -> np.dtype:
    for dt, cap in _DTYPES:
        if m <= cap:
            return dt
    raise OverflowError(f"bucket count {m} does not fit in int64")


def _narrow(a: np.ndarray) -> np.ndarray:
    """``a`` (non-negative counts) in the narrowest dtype that holds its maximum."""
    if a.size == 0:
        return _EMPTY
    dt = _dtype_for(int(a.max()))
    return a if a.dtype == dt else a.astype(dt)


class BucketStore:
    """Dense counts from ``offset`` (with slack at the ends for cheap growth)."""

    __slots__ = ("offset", "arr")

    def __init__(self) -> None:
        self.offset = 0
        self.arr = _EMPTY

    def _reserve(self, lo: int, hi: int) -> None:
        a = self.arr
        if a.size == 0:
            pad = 16
            self.offset = lo - pad
            self.arr = np.zeros(hi - lo + 1 + 2 * pad, dtype=a.dtype)
            return
        cur_lo, cur_hi = self.offset, self.offset + a.size - 1
        if lo >= cur_lo and hi <= cur_hi:
            return
        pad = max(16, a.size // 4)
        new_lo = min(lo - pad, cur_lo) if lo < cur_lo else cur_lo
        new_hi = max(hi + pad, cur_hi) if hi > cur_hi else cur_hi
        new = np.zeros(new_hi - new_lo + 1, dtype=a.dtype)
        new[cur_lo - new_lo : cur_lo - new_lo + a.size] = a
        self.offset, self.arr = new_lo, new

    def _add_at(self, start: int, counts: np.ndarray) -> None:
        """``arr[start:start + len(counts)] += counts``, widening the dtype first if a
        sum could overflow it (counts themselves must be non-negative)."""
        a = self.arr
        end = start + counts.size
        if a.dtype != np.int64:
            need = int(a[start:end].max()) + int(counts.max())
            if need > _CAP[a.dtype]:
                a = self.arr = a.astype(_dtype_for(need))
        view = a[start:end]
        np.add(view, counts, out=view, casting="unsafe")

    def add(self, idx: int, n: int = 1) -> None:
        self._reserve(idx, idx)
        j = idx - self.offset
        m = int(self.arr[j]) + n
        if m > _CAP[self.arr.dtype]:
            self.arr = self.arr.astype(_dtype_for(m))
        self.arr[j] = m

    def add_indices(self, idx: np.ndarray, lo: int | None = None, hi: int | None = None) -> None:
        """Add one count per index (one bincount over the batch's span); ``lo``/``hi``:
        the indices' min and max, if the caller has them."""
        if idx.size == 0:
            return
        if lo is None or hi is None:
            lo, hi = int(idx.min()), int(idx.max())
        self._reserve(lo, hi)
        self._add_at(lo - self.offset, np.bincount(idx - lo))

    def add_dense(self, lo: int, counts: np.ndarray) -> None:
        if counts.size == 0:
            return
        self._reserve(lo, lo + counts.size - 1)
        self._add_at(lo - self.offset, counts)

    def _shifted(self, by: int) -> tuple[int, np.ndarray]:
        """(offset, counts) of this store at ``by`` scales coarser (exact int64 sums;
        at ``by <= 0`` a copy in the store's own dtype)."""
        b = self.bounds()
        if b is None:
            return 0, np.zeros(0, dtype=np.int64)
        lo, hi = b
        a = self.arr[lo - self.offset : hi - self.offset + 1]
        if by <= 0:
            return lo, a.copy()
        idx = np.arange(lo, hi + 1, dtype=np.int64) >> by
        starts = np.flatnonzero(np.diff(idx, prepend=idx[0] - 1))
        out = np.zeros(int(idx[-1] - idx[0]) + 1, dtype=np.int64)
        out[idx[starts] - idx[0]] = np.add.reduceat(a, starts, dtype=np.int64)
        return int(idx[0]), out

    def merge(self, other: "BucketStore", shift: int = 0) -> None:
        lo, counts = other._shifted(shift)
        self.add_dense(lo, counts)

    def downscale(self, by: int) -> None:
        if by <= 0:
            return
        off, out = self._shifted(by)
        self.offset, self.arr = off, _narrow(out)

    def bounds(self) -> tuple[int, int] | None:
        """First and last occupied index (two argmax scans: no index array built)."""
        a = self.arr
        if a.size == 0:
            return None
        i = int((a != 0).argmax())
        if not a[i]:
            return None
        return self.offset + i, self.offset + a.size - 1 - int((a[::-1] != 0).argmax())

    def __len__(self) -> int:
        return int(np.count_nonzero(self.arr))

    def __bool__(self) -> bool:
        return bool(self.arr.any())

    def total(self) -> int:
        return int(self.arr.sum())

    def span(self) -> int:
        b = self.bounds()
        return 0 if b is None else b[1] - b[0] + 1

    def items(self) -> list[tuple[int, int]]:
        """Occupied buckets as (index, count), in index order."""
        nz = np.flatnonzero(self.arr)
        return list(zip((nz + self.offset).tolist(), self.arr[nz].tolist()))

    def to_dict(self) -> dict[int, int]:
        return dict(self.items())

    def update(self, counts: dict[int, int]) -> None:
        for i, n in counts.items():
            if n:
                self.add(i, n)

    def dense(self) -> tuple[int, list[int]]:
        """(offset, counts over the occupied span) — the OpenTelemetry form."""
        lo, a = self._shifted(0)
        return lo, a.tolist()

    # -- bytes (v4) ---------------------------------------------------------------
    def plan(self, b: "tuple[int, int] | None | bool" = False) -> "tuple[int, int, _blockrice.Plan] | None":
        """The encoder's choices (span, first index, block plan); None when empty.
        Computed once, it gives both :meth:`encoded_size` and :meth:`encode`. ``b``:
        :meth:`bounds`, if the caller has them."""
        if b is False:
            b = self.bounds()
        if b is None:
            return None
        lo, hi = b
        return hi - lo + 1, lo, _blockrice.Plan(lo, self.arr[lo - self.offset : hi - self.offset + 1])

    def encoded_size(self, plan: "tuple[int, int, _blockrice.Plan] | None | bool" = False) -> int:
        if plan is False:
            plan = self.plan()
        if plan is None:
            return 1
        n, lo, p = plan
        nbytes = (p.bits + 7) // 8
        return uvarint_len(n) + uvarint_len(zigzag(lo)) + uvarint_len(nbytes) + nbytes

    def encode(self, out: bytearray, plan: "tuple[int, int, _blockrice.Plan] | None | bool" = False) -> None:
        """Span, first index, payload length, then the block Rice payload (v4)."""
        if plan is False:
            plan = self.plan()
        if plan is None:
            put_uvarint(out, 0)
            return
        n, lo, p = plan
        put_uvarint(out, n)
        put_svarint(out, lo)
        payload = p.pack()
        put_uvarint(out, len(payload))
        out += payload

    @staticmethod
    def _read_header(r: Reader, max_span: int) -> tuple[int, int, bytes] | None:
        """(first index, span, payload) of a stored store, None for an empty one (v3 and v4)."""
        span = r.uvarint(limit=max_span)
        if span == 0:
            return None
        lo = r.svarint()
        if abs(lo) > _MAX_INDEX or abs(lo + span) > _MAX_INDEX:
            raise SketchDecodeError("bucket index out of range")
        nbytes = r.uvarint(limit=len(r.buf))
        return lo, span, r.take(nbytes)

    @classmethod
    def decode(cls, r: Reader, max_span: int) -> "BucketStore":
        s = cls()
        head = cls._read_header(r, max_span)
        if head is not None:
            lo, span, payload = head
            s.offset, s.arr = lo, _narrow(_blockrice.decode(lo, span, payload))
        return s

    # -- bytes (v3: read for old checkpoints; written only to compare) -------------
    def _deltas(self) -> tuple[int, list[int]]:
        lo, a = self._shifted(0)
        d = np.diff(a.astype(np.int64), prepend=0)
        z = np.where(d >= 0, 2 * d, -2 * d - 1)
        return lo, z.tolist()

    def encoded_size_v3(self) -> int:
        lo, d = self._deltas()
        if not d:
            return 1
        nbytes = (rice_bits(d) + 7) // 8
        return uvarint_len(zigzag(lo)) + uvarint_len(len(d)) + uvarint_len(nbytes) + nbytes

    def encode_v3(self, out: bytearray) -> None:
        lo, d = self._deltas()
        put_uvarint(out, len(d))
        if not d:
            return
        put_svarint(out, lo)
        payload = rice_encode(d)
        put_uvarint(out, len(payload))
        out += payload

    @classmethod
    def decode_v3(cls, r: Reader) -> "BucketStore":
        s = cls()
        head = cls._read_header(r, 8 * len(r.buf))  # every bucket costs at least one bit
        if head is None:
            return s
        lo, span, payload = head
        deltas = rice_decode(payload, span, 2 * _MAX_COUNT)
        prev = 0
        counts = []
        for z in deltas:
            prev += unzigzag(z)
            if prev < 0 or prev > _MAX_COUNT:
                raise SketchDecodeError("bucket count out of range")
            counts.append(prev)
        if not counts[0] or not counts[-1]:
            raise SketchDecodeError("bucket span not trimmed")
        s.offset, s.arr = lo, _narrow(np.array(counts, dtype=np.int64))
        return s

    def __eq__(self, other: object) -> bool:
        return isinstance(other, BucketStore) and self.items() == other.items()

    __hash__ = None  # type: ignore[assignment]
