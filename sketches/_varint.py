"""The one varint codec of the code base (LEB128, zig-zag for signed values).

Every serialized state (sketches, moments, and the stream's checkpoints) reads and
writes its integers here, so there is one bounds-checked reader to get right.
``Reader`` takes the exception class to raise, so a caller with its own error type
(``stream.checkpoint.CheckpointError``, say) reuses it unchanged.
"""

from __future__ import annotations

import struct

__all__ = [
    "put_uvarint",
    "put_svarint",
    "uvarint_bytes",
    "uvarint_len",
    "zigzag",
    "unzigzag",
    "Reader",
    "SketchDecodeError",
]

_BITS = 64  # default: a varint holds at most a 64-bit value
_F64 = struct.Struct("<d")


class SketchDecodeError(ValueError):
    """Bytes that are not a valid serialized sketch."""


def zigzag(n: int) -> int:
    """Signed → unsigned, small magnitudes first (0, -1, 1, -2 → 0, 1, 2, 3)."""
    return (n << 1) if n >= 0 else ((-n) << 1) - 1


def unzigzag(u: int) -> int:
    return (u >> 1) if not u & 1 else -((u + 1) >> 1)


def put_uvarint(out: bytearray, n: int) -> None:
    if n < 0:
        raise ValueError("uvarint of a negative number")
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)


def put_svarint(out: bytearray, n: int) -> None:
    put_uvarint(out, zigzag(n))


def uvarint_bytes(n: int) -> bytes:
    out = bytearray()
    put_uvarint(out, n)
    return bytes(out)


def uvarint_len(n: int) -> int:
    """Length of :func:`put_uvarint`'s output for ``n`` (no bytes built)."""
    k = 1
    while n >= 0x80:
        n >>= 7
        k += 1
    return k


class Reader:
    """Bounds-checked reader: every read fails cleanly (``error``) past the end or
    past a limit, so hostile bytes never crash, hang or allocate without bound."""

    __slots__ = ("buf", "pos", "error")

    def __init__(self, buf: bytes, error: type[Exception] = SketchDecodeError) -> None:
        self.error = error
        if not isinstance(buf, (bytes, bytearray, memoryview)):
            raise error(f"expected bytes, got {type(buf).__name__}")
        self.buf = bytes(buf)
        self.pos = 0

    def byte(self) -> int:
        if self.pos >= len(self.buf):
            raise self.error("truncated")
        b = self.buf[self.pos]
        self.pos += 1
        return b

    def uvarint(self, limit: int = (1 << 63), bits: int = _BITS) -> int:
        """An unsigned varint of at most ``bits`` bits and at most ``limit``."""
        n = shift = 0
        buf, pos, end = self.buf, self.pos, len(self.buf)
        while True:
            if pos >= end:
                self.pos = pos
                raise self.error("truncated varint")
            b = buf[pos]
            pos += 1
            n |= (b & 0x7F) << shift
            if not b & 0x80:
                break
            shift += 7
            if shift >= bits:
                self.pos = pos
                raise self.error("varint too long")
        self.pos = pos
        if n > limit:
            raise self.error(f"value {n} exceeds {limit}")
        return n

    def svarint(self, bits: int = _BITS) -> int:
        return unzigzag(self.uvarint(limit=1 << (bits - 1), bits=bits))

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.buf):
            raise self.error(f"{n} bytes run past the end")
        b = self.buf[self.pos : self.pos + n]
        self.pos += n
        return b

    def f64(self) -> float:
        """A little-endian float64."""
        return _F64.unpack(self.take(8))[0]

    def blob(self, limit: int | None = None) -> bytes:
        """A length-prefixed byte string (length at most ``limit`` and what is left)."""
        left = len(self.buf) - self.pos
        return self.take(self.uvarint(limit=left if limit is None else min(limit, left)))

    def end(self) -> None:
        if self.pos != len(self.buf):
            raise self.error(f"{len(self.buf) - self.pos} trailing bytes")
