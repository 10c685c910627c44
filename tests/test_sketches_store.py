"""The mapping and the store on their own, and the package's import boundary."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sketches import BucketStore, LogMapping  # noqa: E402

SETTINGS = settings(max_examples=200, deadline=None)


@SETTINGS
@given(st.floats(min_value=1e-300, max_value=1e300), st.integers(-10, 12))
def test_mapping_puts_a_value_inside_its_bucket(x, scale):
    m = LogMapping(scale)
    i = m.index(x)
    lo, hi = m.lower(i), m.upper(i)
    assert lo <= x * (1 + 1e-12) and x <= hi * (1 + 1e-12)
    assert m.indices(np.array([x]))[0] == i or abs(x / hi - 1) < 1e-12 or abs(x / lo - 1) < 1e-12


def test_mapping_is_upper_inclusive_at_exact_powers_of_two():
    m = LogMapping(0)
    assert [m.index(x) for x in (1.0, 2.0, 2.5, 4.0)] == [-1, 0, 1, 1]
    with pytest.raises(ValueError):
        LogMapping(13)


@SETTINGS
@given(st.lists(st.integers(-5000, 5000), min_size=1, max_size=300), st.integers(1, 6))
def test_downscale_equals_counting_at_the_coarser_scale(idx, by):
    fine = BucketStore()
    fine.add_indices(np.array(idx, dtype=np.int64))
    fine.downscale(by)
    coarse = BucketStore()
    coarse.add_indices(np.array(idx, dtype=np.int64) >> by)
    assert fine == coarse and fine.total() == len(idx)


@SETTINGS
@given(st.lists(st.integers(-3000, 3000), max_size=200), st.lists(st.integers(-3000, 3000), max_size=200), st.integers(0, 4))
def test_store_merge_with_shift(a, b, shift):
    sa, sb, whole = BucketStore(), BucketStore(), BucketStore()
    sa.add_indices(np.array(a, dtype=np.int64) >> shift)
    sb.add_indices(np.array(b, dtype=np.int64))
    sa.merge(sb, shift)
    whole.add_indices(np.array(a + b, dtype=np.int64) >> shift)
    assert sa == whole


def test_sketches_do_not_import_the_stream_or_its_dependencies():
    code = (
        "import sys; import sketches; "
        "bad = [m for m in sys.modules if m.split('.')[0] in "
        "('stream', 'faust', 'aiokafka', 'prometheus_client', 'detectors', 'scipy')]; "
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_counts_use_the_narrowest_dtype_and_widen_exactly():
    s = BucketStore()
    s.add_indices(np.arange(100, dtype=np.int64))
    assert s.arr.dtype == np.uint8 and s.arr.nbytes < 200  # one byte per bucket
    s.add_indices(np.full(255, 7, dtype=np.int64))  # 256 in one bucket: past uint8
    assert s.arr.dtype == np.uint16 and s.to_dict()[7] == 256 and s.total() == 355
    s.add(3, 70_000)
    assert s.arr.dtype == np.uint32 and s.to_dict()[3] == 70_001
    s.add(3, 2**61)
    s.add(3, 2**61)
    assert s.arr.dtype == np.int64 and s.to_dict()[3] == 2**62 + 70_001
    other = BucketStore()
    other.add_dense(5, np.array([1, 2**40, 3], dtype=np.int64))
    s.merge(other)
    assert s.to_dict()[6] == 2**40 + 1 and s.to_dict()[7] == 259


@SETTINGS
@given(st.lists(st.tuples(st.integers(-300, 300), st.integers(1, 2**20)), min_size=1, max_size=80), st.integers(0, 5))
def test_widening_and_downscale_keep_exact_counts(adds, by):
    s = BucketStore()
    ref: dict[int, int] = {}
    for i, n in adds:
        s.add(i, n)
        ref[i] = ref.get(i, 0) + n
    assert s.to_dict() == ref
    s.downscale(by)
    coarse: dict[int, int] = {}
    for i, n in ref.items():
        coarse[i >> by] = coarse.get(i >> by, 0) + n
    assert s.to_dict() == coarse
    assert s.arr.dtype.itemsize <= 8 and int(s.arr.max()) <= np.iinfo(s.arr.dtype).max


def test_downscale_narrows_and_empty_stores_share_no_memory():
    s = BucketStore()
    s.add_indices(np.repeat(np.arange(0, 64, dtype=np.int64), 200))  # 200 per bucket: uint8
    assert s.arr.dtype == np.uint8
    s.downscale(1)  # 400 per bucket
    assert s.arr.dtype == np.uint16 and set(s.to_dict().values()) == {400}
    a, b = BucketStore(), BucketStore()
    assert a.arr.nbytes == 0 and a.bounds() is None and not a and len(a) == 0
    a.add(5)
    assert b.arr.size == 0 and a.to_dict() == {5: 1}  # the shared empty array was never written


@SETTINGS
@given(
    st.dictionaries(
        st.integers(-5000, 5000),
        st.one_of(st.integers(1, 3), st.integers(1, 10**6), st.integers(1, 2**60), st.just(2**60)),
        max_size=60,
    ),
    st.integers(-(2**30), 2**30),
)
def test_store_bytes_round_trip_with_huge_counts_and_single_buckets(counts, shift):
    from sketches._varint import Reader

    s = BucketStore()
    for i, n in counts.items():
        s.add(i + shift, n)
    out = bytearray()
    s.encode(out)
    assert len(out) == s.encoded_size()
    r = Reader(bytes(out))
    back = BucketStore.decode(r, max_span=1 << 20)
    r.end()
    assert back == s and back.to_dict() == {i + shift: n for i, n in counts.items()}
