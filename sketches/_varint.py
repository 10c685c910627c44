"""Compact integer encoding shared by the sketches' ``to_bytes``/``from_bytes``."""

from __future__ import annotations

__all__ = ["put_uvarint", "put_svarint", "Reader", "SketchDecodeError"]


class SketchDecodeError(ValueError):
    """Bytes that are not a valid serialized sketch."""


def put_uvarint(out: bytearray, n: int) -> None:
    if n < 0:
        raise ValueError("uvarint of a negative number")
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)


def put_svarint(out: bytearray, n: int) -> None:
    put_uvarint(out, (n << 1) if n >= 0 else ((-n) << 1) - 1)


class Reader:
    """Bounds-checked reader: every read fails cleanly past the end."""

    __slots__ = ("buf", "pos")

    def __init__(self, buf: bytes) -> None:
        if not isinstance(buf, (bytes, bytearray, memoryview)):
            raise SketchDecodeError(f"expected bytes, got {type(buf).__name__}")
        self.buf = bytes(buf)
        self.pos = 0

    def byte(self) -> int:
        if self.pos >= len(self.buf):
            raise SketchDecodeError("truncated")
        b = self.buf[self.pos]
        self.pos += 1
        return b

    def uvarint(self, limit: int = 1 << 63) -> int:
        n = shift = 0
        while True:
            b = self.byte()
            n |= (b & 0x7F) << shift
            if not b & 0x80:
                break
            shift += 7
            if shift > 63:
                raise SketchDecodeError("varint too long")
        if n > limit:
            raise SketchDecodeError(f"value {n} exceeds {limit}")
        return n

    def svarint(self) -> int:
        u = self.uvarint()
        return (u >> 1) if not u & 1 else -((u + 1) >> 1)

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.buf):
            raise SketchDecodeError("truncated")
        b = self.buf[self.pos : self.pos + n]
        self.pos += n
        return b

    def end(self) -> None:
        if self.pos != len(self.buf):
            raise SketchDecodeError(f"{len(self.buf) - self.pos} trailing bytes")
