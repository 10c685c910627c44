"""The block Rice code of bucket counts (format v4): exact size, round trip, hostile bytes."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sketches import SketchDecodeError  # noqa: E402
from sketches._blockrice import BLOCK, ESCAPE, decode, encode, payload_bits  # noqa: E402

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
MAX_COUNT = 1 << 60

small = st.integers(0, 3)
medium = st.integers(0, 5000)
huge = st.one_of(st.integers(0, MAX_COUNT), st.sampled_from([MAX_COUNT, MAX_COUNT - 1, 1 << 59, (1 << 53) + 1]))
count_lists = st.lists(st.one_of(small, small, medium, huge), min_size=1, max_size=300)
indices = st.integers(-(1 << 40) + 1000, (1 << 40) - 1000)


def _trim(counts: list[int]) -> np.ndarray:
    """A store's span: first and last count non-zero."""
    c = [x for x in counts]
    c[0] = c[0] or 1
    c[-1] = c[-1] or 1
    return np.array(c, dtype=np.int64)


def _bits(s: str) -> bytes:
    """A bit string, zero-padded to bytes."""
    s += "0" * (-len(s) % 8)
    return int(s, 2).to_bytes(len(s) // 8, "big") if s else b""


def _round_trip(lo: int, c: np.ndarray) -> bytes:
    data = encode(lo, c)
    bits = payload_bits(lo, c)
    assert len(data) == (bits + 7) // 8  # the size is exact, computed without packing
    back = decode(lo, c.size, data)
    assert back.dtype == np.int64
    np.testing.assert_array_equal(back, c)
    return data


@SETTINGS
@given(count_lists, indices)
def test_round_trip_and_exact_size(counts, lo):
    _round_trip(lo, _trim(counts))


@SETTINGS
@given(st.lists(st.integers(0, 40), min_size=1, max_size=200), st.integers(0, 8), indices)
def test_round_trip_sparse_with_gaps(counts, gap, lo):
    # zeros in runs longer than a block: empty blocks, raw and delta blocks next to them
    c = []
    for x in counts:
        c.append(x)
        c.extend([0] * (gap * (x % 5)))
    _round_trip(lo, _trim(c))


@pytest.mark.parametrize("c", [[1], [MAX_COUNT], [MAX_COUNT, 1, MAX_COUNT], [1, 0, MAX_COUNT], [MAX_COUNT, 0, 0, 1]])
@pytest.mark.parametrize("lo", [-17, -16, -1, 0, 1, 15, 16, 31])
def test_single_buckets_and_extremes(c, lo):
    _round_trip(lo, np.array(c, dtype=np.int64))


def test_escapes_outliers_and_long_spans():
    rng = np.random.default_rng(4)
    c = rng.poisson(3, 5000).astype(np.int64)
    c[[0, -1]] = 1
    c[rng.integers(0, 5000, 30)] = rng.integers(1, 1 << 50, 30)  # spikes: escaped
    data = _round_trip(7, c)
    assert len(data) < 5000  # escapes keep spikes from costing every neighbour


def test_same_counts_same_bytes():
    c = np.random.default_rng(1).poisson(5, 1000).astype(np.int64) + 1
    assert encode(3, c) == encode(3, c.copy()) == encode(3, c.astype(np.uint16))


def test_empty_blocks_cost_about_a_bit():
    c = np.zeros(160 * BLOCK, dtype=np.int64)
    c[0] = c[-1] = 1
    # parameter steps +1, -1, 157 x 0, +1; two mode bits; two blocks of raw 1 + 15 zeros
    assert payload_bits(0, c) == (3 + 2 + 157 + 3) + 2 + 2 * (2 + BLOCK - 1)


def test_smooth_counts_cost_few_bits_per_bucket():
    x = np.linspace(-3, 3, 2000)
    c = np.rint(50 * np.exp(-x * x)).astype(np.int64) + 1
    assert payload_bits(0, c) < 3 * c.size


@SETTINGS
@given(st.binary(max_size=96), st.integers(1, 800), st.integers(-40, 40))
def test_garbage_never_raises_anything_else(data, n, lo):
    try:
        out = decode(lo, n, data)
    except SketchDecodeError:
        return
    assert out.size == n and out[0] > 0 and out[-1] > 0
    assert (out >= 0).all() and (out <= MAX_COUNT).all()


@SETTINGS
@given(count_lists, indices, st.data())
def test_corrupted_payload_rejected_or_valid(counts, lo, data):
    c = _trim(counts)
    good = bytearray(encode(lo, c))
    mode = data.draw(st.sampled_from(["flip", "truncate", "extend", "span"]))
    n = c.size
    if mode == "flip":
        i = data.draw(st.integers(0, len(good) - 1))
        good[i] ^= data.draw(st.integers(1, 255))
    elif mode == "truncate":
        del good[data.draw(st.integers(0, len(good) - 1)) :]
    elif mode == "extend":
        good += data.draw(st.binary(min_size=1, max_size=4))
    else:
        n = data.draw(st.integers(1, n + 40).filter(lambda m: m != c.size))
    try:
        out = decode(lo, n, bytes(good))
    except SketchDecodeError:
        return
    # whatever decodes is a valid span that encodes to a stream of the same length
    assert out.size == n and out[0] > 0 and out[-1] > 0 and (out >= 0).all() and (out <= MAX_COUNT).all()


def test_specific_malformations():
    c = np.array([3, 1, 4, 1, 5, 9, 2, 6] * 5, dtype=np.int64)
    good = encode(0, c)
    with pytest.raises(SketchDecodeError):
        decode(0, c.size, good + b"\0")  # a whole spare byte
    with pytest.raises(SketchDecodeError):
        decode(0, c.size, good[:-1])
    with pytest.raises(SketchDecodeError):
        decode(0, c.size, b"")
    with pytest.raises(SketchDecodeError):
        decode(0, 10_000, good)  # more blocks than bits
    with pytest.raises(SketchDecodeError):
        decode(0, 1, b"\xff" * 64)  # unary runs without an end
    with pytest.raises(SketchDecodeError):
        decode(0, 1, b"\x00")  # one empty block: its span is not trimmed
    # one bucket (lo = 0, one block): parameter step, value code, mode bit, remainders
    k0 = "110"  # unary(zigzag(+1)): p = 1, so k = 0
    assert decode(0, 1, _bits(k0 + "11110" + "1")).tolist() == [4]  # raw 4
    assert decode(0, 1, _bits(k0 + "11110" + "0")).tolist() == [2]  # zig-zag 4 = +2
    with pytest.raises(SketchDecodeError, match="out of range"):
        decode(0, 1, _bits(k0 + "1110" + "0"))  # zig-zag 3 = -2: a negative count
    with pytest.raises(SketchDecodeError, match="padding"):
        decode(0, 1, _bits(k0 + "11110" + "1" + "1"))
    with pytest.raises(SketchDecodeError, match="escape"):
        decode(0, 1, _bits(k0 + "1" * (ESCAPE + 1) + "0" + "1"))
    # escapes: ESCAPE ones, then a 6-bit length and the excess in exactly that many bits
    esc = k0 + "1" * ESCAPE + "0" + "1"
    assert decode(0, 1, _bits(esc + "000001" + "1")).tolist() == [ESCAPE + 1]
    assert decode(0, 1, _bits(esc + "000000")).tolist() == [ESCAPE]
    with pytest.raises(SketchDecodeError, match="non-minimal"):
        decode(0, 1, _bits(esc + "000010" + "01"))
    # k = 61 (p = 62, zig-zag 124) with quotient 15: 15 << 61 would wrap int64
    with pytest.raises(SketchDecodeError, match="out of range"):
        decode(0, 1, _bits("1" * 124 + "0" + "1" * 15 + "0" + "1" + "0" * 61))
    with pytest.raises(SketchDecodeError, match="parameter"):
        decode(0, 1, _bits("1" * 126 + "0" + "0" + "1"))  # p = 63: k = 62 is past the largest


def test_block_alignment_is_absolute():
    # blocks start at multiples of BLOCK whatever lo is: the first and last are partial
    for lo in (-1, 0, 5, BLOCK - 1):
        c = np.zeros(BLOCK + 2, dtype=np.int64)
        c[0], c[-1] = 5, 7
        _round_trip(lo, c)
    c = np.array([2] + [0] * (3 * BLOCK) + [2], dtype=np.int64)
    assert payload_bits(BLOCK - 1, c) < payload_bits(0, c) + 2 * BLOCK


def test_one_huge_parameter_among_small_ones():
    # one block needs k ~ 50, thousands need k = 0: the planes are coded plane by plane
    c = np.ones(8000, dtype=np.int64)
    c[4000:4016] = np.arange(16, dtype=np.int64) * (1 << 50) + (1 << 55)
    _round_trip(3, c)


def test_hostile_large_parameter_cannot_force_a_huge_matrix():
    # 1,999 blocks at k = 0 and one at k = 61: the remainders are read plane by plane
    # (a 61 x 32,000 matrix would take 15 MB for a 5 KB payload)
    blocks = 2000
    steps = "110" + "0" * (blocks - 2) + "1" * 122 + "0"  # p: 1, 1, ..., 1, then +61: 62
    values = "10" + "0" * (BLOCK * blocks - 1)  # quotients: 1, then zeros
    modes = "1" * blocks  # raw
    planes = "0" * (BLOCK - 1) + "1" + "0" * (60 * BLOCK)  # bit 0 of the last value
    out = decode(0, blocks * BLOCK, _bits(steps + values + modes + planes))
    assert out[0] == 1 and out[-1] == 1 and out.sum() == 2
