"""LogBuckets: properties (hypothesis), budget, exact merge, serialization, hostile bytes."""

from __future__ import annotations

import math
import struct
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sketches import LogBuckets, SketchDecodeError  # noqa: E402
from sketches._varint import put_svarint, put_uvarint  # noqa: E402

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

finite = st.floats(allow_nan=False, allow_infinity=False, width=64)
latencies = st.floats(min_value=0.0, max_value=1e4, allow_nan=False)
values_lists = st.lists(st.one_of(finite, latencies, st.sampled_from([0.0, 0.001, 0.002, 1.0, -1.0])), min_size=0, max_size=300)
budgets = st.sampled_from([64, 100, 256, 1024])


def _sketch(values, max_bytes=1024, scalar=False) -> LogBuckets:
    s = LogBuckets(max_bytes)
    if scalar:
        for x in values:
            s.update(x)
    else:
        s.update_many(np.asarray(values, dtype=np.float64))
    return s


@SETTINGS
@given(values_lists, budgets, st.lists(st.floats(0.0, 1.0), min_size=1, max_size=12))
def test_quantiles_monotone_and_inside_min_max(values, max_bytes, qs):
    s = _sketch(values, max_bytes)
    qs = sorted(qs)
    est = s.quantiles(qs)
    if not values:
        assert np.isnan(est).all()
        return
    assert (np.diff(est) >= 0).all(), est
    assert (est >= min(values)).all() and (est <= max(values)).all()
    assert s.quantile(0.0) == min(values) and s.quantile(1.0) == max(values)


@SETTINGS
@given(values_lists, budgets, st.integers(0, 300), st.booleans())
def test_merge_of_parts_equals_sketch_of_whole(values, max_bytes, cut, scalar):
    cut = min(cut, len(values))
    whole = _sketch(values, max_bytes, scalar)
    a = _sketch(values[:cut], max_bytes, scalar)
    b = _sketch(values[cut:], max_bytes, scalar)
    merged = a + b
    assert merged == whole
    assert merged.to_bytes() == whole.to_bytes() or not math.isfinite(whole.sum) or merged.sum != whole.sum
    a.merge(b)
    assert a == whole


@SETTINGS
@given(values_lists, budgets)
def test_serialization_round_trip_within_budget(values, max_bytes):
    s = _sketch(values, max_bytes)
    data = s.to_bytes()
    assert len(data) <= max_bytes or s.scale == -10
    t = LogBuckets.from_bytes(data)
    assert t == s
    assert t.to_bytes() == data
    np.testing.assert_array_equal(t.quantiles([0.1, 0.5, 0.99]), s.quantiles([0.1, 0.5, 0.99]))


@SETTINGS
@given(st.binary(max_size=200))
def test_random_bytes_rejected_cleanly(data):
    try:
        s = LogBuckets.from_bytes(data)
    except ValueError:
        return
    assert s.to_bytes()  # whatever decoded must be a usable sketch


@SETTINGS
@given(values_lists, st.data())
def test_corrupted_bytes_rejected_cleanly(values, data):
    good = bytearray(_sketch(values, 256).to_bytes())
    mode = data.draw(st.sampled_from(["flip", "truncate", "extend"]))
    if mode == "flip":
        i = data.draw(st.integers(0, len(good) - 1))
        good[i] ^= data.draw(st.integers(1, 255))
    elif mode == "truncate":
        del good[data.draw(st.integers(0, len(good) - 1)) :]
    else:
        good += data.draw(st.binary(min_size=1, max_size=8))
    try:
        s = LogBuckets.from_bytes(bytes(good))
    except ValueError:
        return
    assert s.count == s.zero + s.pos.total() + s.neg.total()


def test_hostile_header_cannot_force_a_huge_allocation():
    out = bytearray([2])
    put_uvarint(out, 1024)
    put_svarint(out, 0)
    put_uvarint(out, 10**15)
    put_uvarint(out, 0)
    out += b"\0" * 24
    put_uvarint(out, 1 << 40)  # claims a 2^40-bucket span with no payload
    with pytest.raises(SketchDecodeError):
        LogBuckets.from_bytes(bytes(out))
    with pytest.raises(SketchDecodeError, match="version"):
        LogBuckets.from_bytes(b"\x07")
    with pytest.raises(ValueError):
        LogBuckets.from_bytes(b"")
    with pytest.raises(ValueError):
        LogBuckets.from_bytes("not bytes")  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_rejected(bad):
    s = LogBuckets()
    with pytest.raises(ValueError, match="finite"):
        s.update(bad)
    with pytest.raises(ValueError, match="finite"):
        s.update_many([1.0, bad])
    assert s.count == 0


def test_empty_and_bad_quantiles():
    s = LogBuckets()
    assert math.isnan(s.quantile(0.5))
    s.update(1.0)
    with pytest.raises(ValueError):
        s.quantile(1.5)
    assert s.quantile(0.5) == 1.0


def test_scalar_and_batched_updates_agree():
    v = np.random.default_rng(3).lognormal(-3, 1.5, 20000)
    a, b = LogBuckets(), LogBuckets()
    for x in v.tolist():
        a.update(x)
    b.update_many(v)
    assert a == b


def test_negative_zero_and_positive_values():
    v = np.concatenate([-np.arange(1, 101, dtype=float), np.zeros(50), np.arange(1, 101, dtype=float)])
    s = _sketch(v, 4096)
    assert s.zero == 50 and s.count == 250
    est = s.quantiles([0.0, 0.1, 0.5, 0.9, 1.0])
    true = np.quantile(v, [0.0, 0.1, 0.5, 0.9, 1.0])
    assert est[0] == -100 and est[-1] == 100 and est[2] == 0.0
    np.testing.assert_allclose(est, true, rtol=0.01)


def test_accuracy_within_one_kib():
    rng = np.random.default_rng(7)
    for v in (rng.lognormal(np.log(0.05), 1.0, 200_000), (rng.pareto(1.5, 200_000) + 1) * 0.01):
        s = _sketch(v, 1024)
        assert len(s.to_bytes()) <= 1024
        qs = [0.5, 0.9, 0.99, 0.999]
        rel = np.abs(s.quantiles(qs) / np.quantile(v, qs) - 1)
        assert rel.max() < 0.01, rel


def test_budget_lowers_scale_and_keeps_it_within_max_bytes():
    v = np.random.default_rng(1).lognormal(0, 3, 100_000)
    small, big = _sketch(v, 128), _sketch(v, 16384)
    assert small.scale < big.scale
    assert len(small.to_bytes()) <= 128 and len(big.to_bytes()) <= 16384
    assert len(big.to_bytes()) > 1024  # the budget is used, not just respected


def test_merge_of_different_scales_is_exact():
    rng = np.random.default_rng(5)
    narrow = rng.uniform(1.0, 1.1, 5000)  # stays fine-grained
    wide = rng.lognormal(0, 4, 5000)  # forces a coarse scale
    a, b = _sketch(narrow, 512), _sketch(wide, 512)
    assert a.scale > b.scale
    assert a + b == _sketch(np.concatenate([narrow, wide]), 512)
    with pytest.raises(TypeError):
        a.merge(object())  # type: ignore[arg-type]


def test_memory_stays_bounded_under_scalar_updates_of_wide_data():
    rng = np.random.default_rng(2)
    s = LogBuckets(1024)
    for x in (rng.lognormal(0, 20, 50_000) * rng.choice([-1.0, 1.0], 50_000)).tolist():
        s.update(x)
    # in-memory arrays never exceed a small multiple of the budget's bits
    assert s.pos.arr.size + s.neg.arr.size <= 4 * 8 * 1024
    assert len(s.to_bytes()) <= 1024 and s.count == 50_000


def test_buffered_scalar_updates_are_visible_immediately():
    s = LogBuckets()
    s.update(3.0)
    s.update(0.0)
    s.update(-2.0)
    assert (s.count, s.zero, s.min, s.max) == (3, 1, -2.0, 3.0)
    assert s.sum == pytest.approx(1.0)
    assert s.quantile(1.0) == 3.0 and s.quantile(0.0) == -2.0
    t = LogBuckets.from_bytes(s.to_bytes())
    assert t == s


def test_integer_millisecond_data_with_zeros_and_repeats():
    rng = np.random.default_rng(9)
    ms = np.round(rng.lognormal(np.log(20.0), 1.0, 200_000))
    ms[rng.random(ms.size) < 0.3] = 0.0
    ms[rng.random(ms.size) < 0.05] = 250.0
    v = ms / 1000.0
    s = _sketch(v, 1024)
    qs = [0.5, 0.9, 0.99, 0.999]
    rel = np.abs(s.quantiles(qs) / np.quantile(v, qs) - 1)
    assert rel.max() < 0.01, rel


def test_decimal_lattice_detected_merged_and_lost_on_continuous_data():
    ms = _sketch(np.array([0.0, 0.012, 0.25, 1.5]))
    assert ms.quantum == pytest.approx(0.001)
    whole_s = _sketch(np.array([2.0, 30.0]))
    assert whole_s.quantum == pytest.approx(1.0)
    assert (ms + whole_s).quantum == pytest.approx(0.001)
    cont = _sketch(np.array([0.0123456789123]))
    assert cont.quantum is None and (ms + cont).quantum is None
    assert LogBuckets.from_bytes(ms.to_bytes()).quantum == ms.quantum


def test_lattice_snapping_returns_exact_repeated_values():
    # 5 distinct millisecond values in 2.2 %-wide buckets: interpolation alone misses
    # them, snapping to the millisecond lattice recovers each exactly
    v = np.repeat(np.array([3, 7, 12, 40, 250]) / 1000.0, [100, 300, 400, 150, 50])
    s = LogBuckets(4096, scale=5)
    s.update_many(v)
    qs = [0.05, 0.2, 0.5, 0.9, 0.999]
    np.testing.assert_array_equal(s.quantiles(qs), np.quantile(v, qs))
    off = LogBuckets(4096, scale=5)
    off.update_many(v)
    off._qexp = -128  # the same sketch without the lattice is not exact
    assert not np.array_equal(off.quantiles(qs), np.quantile(v, qs))


def test_oversized_input_rejected_before_decoding():
    with pytest.raises(SketchDecodeError):
        LogBuckets.from_bytes(b"\x03" + b"\xff" * (1 << 20))
    with pytest.raises(SketchDecodeError):
        LogBuckets.from_bytes(b"\x04" + b"\xff" * (1 << 20))


# -- format versions ---------------------------------------------------------------------
def _v3_values(name: str) -> list[float]:
    """Deterministic value lists (no rng) behind the v3 golden bytes below."""
    if name == "A":  # latencies with zeros, negatives and repeats
        return [((i * 7919) % 997) / 1000.0 * (1 + (i % 13) / 3.0) for i in range(600)] + [0.0] * 7 + [-0.5, -1.25, -3.0]
    if name == "B":  # a narrow range at the finest scale
        return [1.0 + ((i * 104729) % 10007) / 10007.0 * 0.35 + (i % 3) * 1e-4 for i in range(2000)]
    return {"C": [42.0], "D": []}[name]


# Version 3 bytes written by the previous encoder (adaptive Rice), from the values of
# _v3_values(name); (name, max_bytes, scale, count, hex).
V3_GOLDEN = [
    ("A", 256, 6, 610, (
        "0380020ce20408ff0100000000000008c03d0ad7a370bd13400965f4b6ac548c409f049506ab01880000000000000034"
        "0007b80f7340068000034d01a069b76800190d0d1a35a3dc640069a1ac991a66e1ea4403269a7ede506244cb022c631f"
        "3a046429c9468b4454a2912931078d3181619b1c0e28e59f374c8a316827c6d8420d45d09d283a01c130183414c4d224"
        "2262613c1ba6900d61cd0704d6555c045e00cf0e030224278163058d6e00a8240252700318974a5040a2a7041c5e2e8c"
        "014c55c2950d02044a86204d025340a0c480a7018101178800000000000000000000340000000000000000000300"
    )),
    ("B", 1024, 12, 2000, (
        "03800818d00f00ff01000000000000f03f3791a11a8d96f53ffceb9c3dbc5aa240ec0d01d2058724807052078c904c68"
        "192a0667409868139680cc9201c540f2d038540e1509cb40c950333a0130d0199a4126740263409c920493404e5a0393"
        "a0131a04e690493404e5a0933a0261a066740249a033348261a032340f2d0192a078c90666904c3409cd2124d0325427"
        "2d01c2a07ce900c95098d0933a0191a0794a192a131a12674032340f29432542634261a070a84e5a124d032540f9d201"
        "e1900cc9209c6c03c6c011160084580f92c04a2c0109904e4904c340e150ccd209c9201e36098680ccd20cc9204e4901"
        "e360493407052199a4191a07cb2024a403c64838ac0382a13cc8015490153602a6c0983403c6c01c1201c148727401c0"
        "c8333a00c4c864a8664903134272b04c684c684f3a409c6c09c6c0985826342796409c6c09c6c05524055240c8920644"
        "90222481099070a86658038ac0186485024098580f96409c6c09e5902224814490665803c3200d4b0153602a9202c640"
        "14ac01864854d80a0b02724832521e3244e3604e3604f320088b0060c80a9b021160645802848138d8191240a0c83c6c"
        "0985832521c9d04c3413cc80222c0186c08892050641e190272481c2489c6c0c892064490a0b064a4933a02e36044490"
        "929027248111602a6c088921252042641c1a04e36050644e36062641e36070320f0c8111240f1b0154903064058b2052"
        "b01549028480aa4818320444903064058c8092902224854d8141903e590222c058b2052b022248186c088b01536052b0"
        "22248186c088b0141607158111240d4b0222c055242a6c0a5602a6c0a12042642f2c81832044490aa48186c0a5604449"
        "0352c0a12042640f9640c1902224858b2061b0284814ac058b2153605090222c0889206a5850240a1202c64058b206a5"
        "8183205090163202a9206a5850240a56044580aa4858b21536060c81424088b0222488892153606ac849481832052b02"
        "9581116042642a92162c854d81a961416061b0a0481832052b0284814240a56052b02224888b021300"
    )),
    ("C", 64, 12, 1, (
        "034018010000000000000000454000000000000045400000000000004540018cd902018000"
    )),
    ("D", 64, 12, 0, (
        "0340180000060000"
    )),
]


@pytest.mark.parametrize("name,max_bytes,scale,count,hexes", V3_GOLDEN, ids=[g[0] for g in V3_GOLDEN])
def test_version_3_bytes_still_decode_to_the_same_sketch(name, max_bytes, scale, count, hexes):
    data = bytes.fromhex("".join(hexes))
    assert data[0] == 3
    t = LogBuckets.from_bytes(data)
    values = np.array(_v3_values(name), dtype=np.float64)
    expect = LogBuckets(max_bytes, scale=scale)  # the same values, bucketed at that scale
    expect.update_many(values)
    assert (t.scale, t.count) == (scale, count)
    assert t == expect and t.pos.items() == expect.pos.items() and t.neg.items() == expect.neg.items()
    assert t.sum == pytest.approx(float(values.sum())) if count else t.sum == 0.0
    np.testing.assert_array_equal(t.quantiles([0.0, 0.1, 0.5, 0.99, 1.0]), expect.quantiles([0.0, 0.1, 0.5, 0.99, 1.0]))
    v4 = t.to_bytes()  # re-written in the current format, same sketch
    assert v4[0] == 4 and len(v4) <= len(data) and LogBuckets.from_bytes(v4) == t


@SETTINGS
@given(values_lists, budgets)
def test_version_3_writer_round_trips_through_the_reader(values, max_bytes):
    s = _sketch(values, max_bytes)
    old = s._to_bytes_v3()
    assert old[0] == 3
    t = LogBuckets.from_bytes(old)
    assert t == s


@SETTINGS
@given(values_lists, budgets)
def test_encoded_size_is_the_length_of_to_bytes(values, max_bytes):
    s = _sketch(values, max_bytes)
    assert s.encoded_size() == len(s.to_bytes())
    s.update(1.5)  # buffered, unfitted: still exact at the current scale
    size, scale = s.encoded_size(), s.scale
    data = s.to_bytes()
    assert len(data) == size or s.scale < scale  # unless to_bytes had to coarsen first
    assert s.to_bytes()[0] == 4


def test_same_values_same_bytes_whatever_the_update_path():
    v = np.random.default_rng(11).lognormal(np.log(0.04), 0.5, 5000)
    a, b, c = LogBuckets(), LogBuckets(), LogBuckets()
    a.update_many(v)
    for x in v.tolist():
        b.update(x)
    for part in np.array_split(v, 7):
        c.update_many(part)
        c.quantiles([0.5])
    assert b.count == c.count == a.count  # (reading it flushes b's buffered values)
    b.sum = c.sum = a.sum  # float-rounded in a different order per path: not compared
    assert a.to_bytes() == b.to_bytes() == c.to_bytes()


@SETTINGS
@given(values_lists, st.data())
def test_corrupted_v4_stores_rejected_cleanly(values, data):
    s = _sketch(values, 1024)
    good = bytearray(s.to_bytes())
    head = len(s._header())
    if len(good) <= head + 2:
        return
    # damage the store part only (after the header), where the block codes are
    i = data.draw(st.integers(head, len(good) - 1))
    good[i] ^= data.draw(st.integers(1, 255))
    try:
        t = LogBuckets.from_bytes(bytes(good))
    except SketchDecodeError:
        return
    assert t.count == t.zero + t.pos.total() + t.neg.total()
    assert LogBuckets.from_bytes(t.to_bytes()) == t


def test_v4_span_limit_enforced():
    # a store claiming more buckets than the budget's 8 per byte is rejected before decoding
    out = bytearray([4])
    put_uvarint(out, 64)
    put_svarint(out, 0)
    put_uvarint(out, 1)
    put_uvarint(out, 0)
    put_svarint(out, -128)
    out += struct.pack("<3d", 1.0, 1.0, 1.0)
    put_uvarint(out, 8 * 64 + 1)
    with pytest.raises(SketchDecodeError):
        LogBuckets.from_bytes(bytes(out))


@pytest.mark.parametrize("values,field,bad", [
    ([0.0, 1.0], 1, 0.0),  # max 0 although a positive bucket is occupied
    ([-1.0, 0.0], 0, 0.0),  # min 0 although a negative bucket is occupied
    ([-2.0, 3.0], 1, -1.0),  # max negative although positives are occupied
])
def test_min_max_must_come_from_the_outermost_occupied_buckets(values, field, bad):
    s = _sketch(values)
    data = bytearray(s.to_bytes())
    at = len(s._header()) - 24 + 8 * field  # min, max, sum: the header's last 24 bytes
    data[at : at + 8] = struct.pack("<d", bad)
    with pytest.raises(SketchDecodeError, match="min/max"):
        LogBuckets.from_bytes(bytes(data))


@SETTINGS
@given(st.lists(st.tuples(st.one_of(finite, latencies), st.integers(0, 50)), max_size=60), budgets)
def test_update_weighted_equals_repeating_the_values(pairs, max_bytes):
    vals = [v for v, _ in pairs]
    ws = [w for _, w in pairs]
    a = LogBuckets(max_bytes)
    a.update_weighted(vals, ws)
    b = LogBuckets(max_bytes)
    b.update_many(np.repeat(np.asarray(vals, dtype=np.float64), ws))
    assert a == b
    assert a.count == sum(ws)


def test_update_weighted_validates():
    s = LogBuckets()
    with pytest.raises(ValueError, match="weights"):
        s.update_weighted([1.0, 2.0], [1])
    with pytest.raises(ValueError, match="non-negative"):
        s.update_weighted([1.0], [-1])
    with pytest.raises(ValueError, match="integers"):
        s.update_weighted([1.0], [0.5])
    with pytest.raises(ValueError, match="finite"):
        s.update_weighted([float("nan")], [1])
    with pytest.raises(ValueError, match="at most"):
        s.update_weighted([1.0] * 8, [2**60] * 8)
    assert s.count == 0
    s.update_weighted([0.25], [2**40])
    assert s.count == 2**40 and s.quantile(0.5) == 0.25
    assert LogBuckets.from_bytes(s.to_bytes()) == s
