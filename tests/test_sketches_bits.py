"""The adaptive Rice code of format v3 (still read: older checkpoints), and the varint reader."""

from __future__ import annotations

import struct
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sketches import SketchDecodeError  # noqa: E402
from sketches._bits import rice_bits, rice_decode, rice_encode  # noqa: E402
from sketches._varint import Reader, put_svarint, put_uvarint, unzigzag, uvarint_bytes, uvarint_len, zigzag  # noqa: E402

SETTINGS = settings(max_examples=200, deadline=None)


@SETTINGS
@given(st.lists(st.one_of(st.integers(0, 3), st.integers(0, 5000), st.integers(0, 2**64)), max_size=200))
def test_rice_round_trip_and_exact_size(values):
    data = rice_encode(values)
    assert len(data) == (rice_bits(values) + 7) // 8
    assert rice_decode(data, len(values), 2**64) == values


@SETTINGS
@given(st.integers(-(2**62), 2**62))
def test_zigzag(n):
    assert unzigzag(zigzag(n)) == n and zigzag(n) >= 0


def test_small_smooth_deltas_cost_few_bits():
    assert rice_bits([1, 0, 2, 1, 0, 1] * 50) < 3 * 300


@SETTINGS
@given(st.binary(max_size=64), st.integers(0, 600))
def test_rice_decode_rejects_garbage_cleanly(data, count):
    try:
        out = rice_decode(data, count, 2**64)
    except SketchDecodeError:
        return
    assert len(out) == count and rice_encode(out) == data


def test_reader_limits():
    with pytest.raises(SketchDecodeError):
        Reader(b"\xff" * 20).uvarint()
    with pytest.raises(SketchDecodeError):
        Reader(b"\x05").uvarint(limit=4)
    with pytest.raises(SketchDecodeError):
        Reader(b"ab").take(3)


@SETTINGS
@given(st.integers(0, 2**64 - 1))
def test_uvarint_round_trip_and_length(n):
    out = bytearray()
    put_uvarint(out, n)
    assert bytes(out) == uvarint_bytes(n) and len(out) == uvarint_len(n)
    r = Reader(bytes(out))
    assert r.uvarint(limit=2**64) == n
    r.end()


@SETTINGS
@given(st.integers(-(2**300), 2**300))
def test_wide_svarint_round_trip(n):
    out = bytearray()
    put_svarint(out, n)
    assert Reader(bytes(out)).svarint(bits=320) == n


def test_reader_bounds_wide_varints_and_uses_the_callers_error():
    class MyError(ValueError):
        pass

    long = bytes([0xFF] * 40 + [0x01])
    with pytest.raises(MyError, match="too long"):
        Reader(long, error=MyError).uvarint(bits=256)
    assert Reader(long).uvarint(limit=2**400, bits=320) == 2**281 - 1
    with pytest.raises(MyError, match="truncated"):
        Reader(b"\x80", error=MyError).uvarint()
    with pytest.raises(MyError):
        Reader("not bytes", error=MyError)  # type: ignore[arg-type]
    r = Reader(b"\x03abc" + struct.pack("<d", 2.5) + b"X", error=MyError)
    assert r.blob() == b"abc" and r.f64() == 2.5
    with pytest.raises(MyError, match="trailing"):
        r.end()
    with pytest.raises(MyError):
        Reader(b"\x09abc", error=MyError).blob()  # length past the end
