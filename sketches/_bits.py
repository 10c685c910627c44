"""Adaptive Rice coding of small non-negative integers: the bucket payload of format v3.

Kept to read version 3 sketches (checkpoints written before v4) and, for tests and
the benchmark's before/after comparison, to write them; v4 uses ``_blockrice``.
Why v3 was replaced: its parameter adapts to a running mean (as in LOCO-I), so each
code depends on all earlier values and coding runs as a pure-Python loop per bucket
(0.5-2 ms per 1 KiB sketch), paid on every size check, checkpoint and thaw.

Neighbouring bucket counts of a smooth distribution differ by little, so their
zig-zagged differences are small; the code spends about ``log2(typical difference)
+ 2`` bits on each, and no side information is stored: the decoder mirrors the
encoder exactly."""

from __future__ import annotations

from typing import Iterable, Sequence

from ._varint import SketchDecodeError

__all__ = ["rice_encode", "rice_decode", "rice_bits"]

_ESCAPE_Q = 20  # unary run after which a value is stored raw (bounds every code)
_RAW_LEN_BITS = 7  # raw values carry a 7-bit length, so at most 127 bits
_RESET = 16


def _k(a: int, n: int) -> int:
    k = 0
    while (n << k) < a:
        k += 1
    return k


def rice_bits(values: Iterable[int]) -> int:
    """Exact number of bits :func:`rice_encode` would produce (no string building)."""
    a, n, total = 2, 1, 0
    for v in values:
        k = 0
        while (n << k) < a:
            k += 1
        q = v >> k
        if q < _ESCAPE_Q:
            total += q + 1 + k
        else:
            total += _ESCAPE_Q + _RAW_LEN_BITS + v.bit_length()
        a += v
        n += 1
        if n >= _RESET:
            a >>= 1
            n >>= 1
    return total


def rice_encode(values: Sequence[int]) -> bytes:
    parts: list[str] = []
    a, n = 2, 1
    for v in values:
        if v < 0:
            raise ValueError("rice_encode takes non-negative integers")
        k = _k(a, n)
        q = v >> k
        if q < _ESCAPE_Q:
            parts.append("1" * q + "0")
            if k:
                parts.append(format(v & ((1 << k) - 1), f"0{k}b"))
        else:
            L = v.bit_length()
            if L >= 1 << _RAW_LEN_BITS:
                raise ValueError("value too large for the rice code")
            parts.append("1" * _ESCAPE_Q + format(L, f"0{_RAW_LEN_BITS}b") + format(v, f"0{L}b"))
        a += v
        n += 1
        if n >= _RESET:
            a >>= 1
            n >>= 1
    bits = "".join(parts)
    nbytes = (len(bits) + 7) // 8
    if not nbytes:
        return b""
    bits += "0" * (nbytes * 8 - len(bits))
    return int(bits, 2).to_bytes(nbytes, "big")


def rice_decode(data: bytes, count: int, limit: int) -> list[int]:
    """Decode exactly ``count`` values, each at most ``limit``; fail cleanly otherwise."""
    if count > len(data) * 8:
        raise SketchDecodeError("more values than bits")
    nbits = len(data) * 8
    s = format(int.from_bytes(data, "big"), f"0{nbits}b") if data else ""
    out: list[int] = []
    pos = 0
    a, n = 2, 1
    for _ in range(count):
        k = _k(a, n)
        end = s.find("0", pos, pos + _ESCAPE_Q)
        if end >= 0:
            q = end - pos
            pos = end + 1
            if pos + k > nbits:
                raise SketchDecodeError("truncated bit stream")
            v = (q << k) | (int(s[pos : pos + k], 2) if k else 0)
            pos += k
        else:
            pos += _ESCAPE_Q
            if pos + _RAW_LEN_BITS > nbits:
                raise SketchDecodeError("truncated bit stream")
            L = int(s[pos : pos + _RAW_LEN_BITS], 2)
            pos += _RAW_LEN_BITS
            if pos + L > nbits or L == 0:
                raise SketchDecodeError("bad raw value in bit stream")
            v = int(s[pos : pos + L], 2)
            pos += L
            if v >> k < _ESCAPE_Q:
                raise SketchDecodeError("non-canonical raw value")
        if v > limit:
            raise SketchDecodeError(f"value {v} exceeds {limit}")
        out.append(v)
        a += v
        n += 1
        if n >= _RESET:
            a >>= 1
            n >>= 1
    if pos > nbits or (nbits - pos >= 8) or (pos < nbits and "1" in s[pos:]):
        raise SketchDecodeError("bad padding in bit stream")
    return out
