"""The adaptive Rice code of format v3 (still read: older checkpoints), and the varint reader."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sketches import SketchDecodeError  # noqa: E402
from sketches._bits import rice_bits, rice_decode, rice_encode, unzigzag, zigzag  # noqa: E402
from sketches._varint import Reader  # noqa: E402

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
