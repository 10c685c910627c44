"""The decoder: every message yields events or dead letters with a reason, never an exception."""

from __future__ import annotations

import base64
import json
import math

import pytest
from hypothesis import given, settings, strategies as st

from stream.events import REASONS, DecodeLimits, Decoded, Decoder, Source


def dec(**kw):
    return Decoder(**kw)


def test_single_event_in_ms_becomes_seconds():
    out = dec().decode(b'{"key": "checkout", "value": 12.5, "ts": 1763800000.25}')
    assert out.keys == ["checkout"] and out.values == [0.0125] and out.ts == [1763800000.25]
    assert out.dead == []


@pytest.mark.parametrize("unit,expected", [("s", 12.5), ("ms", 0.0125), ("us", 12.5e-6), ("ns", 12.5e-9)])
def test_input_units(unit, expected):
    out = dec(unit=unit).decode(b'{"key": "k", "value": 12.5, "ts": 1}')
    assert out.values == [pytest.approx(expected)]


def test_rfc3339_timestamps():
    out = dec().decode(b'[{"key":"a","value":1,"ts":"2025-11-22T08:00:00Z"},{"key":"a","value":1,"ts":"2025-11-22T09:00:00.5+01:00"}]')
    assert out.ts == [1763798400.0, 1763798400.5]


def test_array_keeps_good_events_and_dead_letters_bad_ones_with_index():
    raw = json.dumps([
        {"key": "a", "value": 1, "ts": 10},
        {"key": "a", "value": "fast", "ts": 10},
        {"key": "a", "value": -3, "ts": 10},
        {"value": 1, "ts": 10},
        {"key": "b", "value": 2, "ts": 11},
    ]).encode()
    out = dec().decode(raw, Source("events", 2, 41))
    assert out.keys == ["a", "b"]
    assert [(d.reason, d.index) for d in out.dead] == [("bad_value", 1), ("negative_value", 2), ("missing_field", 3)]
    d = out.dead[0].to_json()
    assert d["source"] == {"topic": "events", "partition": 2, "offset": 41}
    assert json.loads(base64.b64decode(d["raw_base64"])) == {"key": "a", "value": "fast", "ts": 10}
    assert "value must be a number" in d["error"]


def test_columnar_form():
    out = dec().decode(b'{"key": "k", "values": [1, 2, "x", 4], "ts": [1, 2, 3, 4]}')
    assert out.values == [0.001, 0.002, 0.004] and out.ts == [1.0, 2.0, 4.0]
    assert [(d.reason, d.index) for d in out.dead] == [("bad_value", 2)]
    out = dec().decode(b'{"key": "k", "values": [1, 2], "ts": 5}')
    assert out.ts == [5.0, 5.0]


@pytest.mark.parametrize(
    "raw,reason",
    [
        (b"\xff\xfe{", "invalid_utf8"),
        (b'{"key": "a", "value": 1', "invalid_json"),
        (b"42", "not_an_object"),
        (b'{"key": "a", "ts": 1}', "missing_field"),
        (b'{"key": 7, "value": 1, "ts": 1}', "bad_key"),
        (b'{"key": "", "value": 1, "ts": 1}', "bad_key"),
        (b'{"key": "a", "value": true, "ts": 1}', "bad_value"),
        (b'{"key": "a", "value": NaN, "ts": 1}', "non_finite_value"),
        (b'{"key": "a", "value": Infinity, "ts": 1}', "non_finite_value"),
        (b'{"key": "a", "value": 1e400, "ts": 1}', "non_finite_value"),
        (b'{"key": "a", "value": -1, "ts": 1}', "negative_value"),
        (b'{"key": "a", "value": 1e12, "ts": 1}', "bad_value"),
        (b'{"key": "a", "value": 1, "ts": "yesterday"}', "bad_timestamp"),
        (b'{"key": "a", "value": 1, "ts": "2025-11-22T08:00:00"}', "bad_timestamp"),
        (b'{"key": "a", "value": 1, "ts": 1763800000250}', "bad_timestamp"),
        (b'{"key": "a", "value": 1}', "missing_field"),
        (b"[" * 100_000 + b"]" * 100_000, "too_deep"),
    ],
)
def test_each_bad_input_has_its_reason(raw, reason):
    out = dec().decode(raw)
    assert out.keys == []
    assert [d.reason for d in out.dead] == [reason]
    assert out.dead[0].error
    assert reason in REASONS


def test_limits():
    d = Decoder(limits=DecodeLimits(max_message_bytes=100, max_key_chars=8))
    assert d.decode(b" " * 101).dead[0].reason == "too_large"
    assert d.decode(b'{"key": "123456789", "value": 1, "ts": 1}').dead[0].reason == "bad_key"


def test_missing_ts_falls_back_to_the_message_timestamp():
    out = dec().decode(b'{"key": "a", "value": 1}', default_ts=1234.5)
    assert out.ts == [1234.5]


json_values = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=True) | st.integers() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=5),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_never_raise_and_always_reconcile(raw):
    out = dec().decode(raw)
    assert len(out.keys) + len(out.dead) >= 1
    assert all(d.reason in REASONS for d in out.dead)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.fixed_dictionaries({"key": json_values, "value": json_values, "ts": json_values}), max_size=8))
def test_arrays_of_arbitrary_events_reconcile_exactly(items):
    out = dec().decode(json.dumps(items).encode())
    assert len(out.keys) + len(out.dead) == len(items)
    for v in out.values:
        assert math.isfinite(v) and v >= 0


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.fixed_dictionaries(
            {
                "key": st.text(min_size=1, max_size=5),
                "value": st.one_of(st.integers(0, 10**6), st.floats(0, 1e6)),
                "ts": st.one_of(st.integers(0, 2 * 10**9), st.floats(0, 2e9)),
            }
        ),
        min_size=8,
        max_size=40,
    )
)
def test_the_vectorised_path_equals_the_per_event_path(items):
    fast = dec().decode(json.dumps(items).encode())
    slow = Decoded()
    d = dec()
    for item in items:
        slow.extend(d.decode(json.dumps(item).encode()))
    assert fast.keys == slow.keys and fast.values == slow.values and fast.ts == slow.ts
    assert fast.dead == slow.dead == []


def test_one_bad_element_sends_the_array_down_the_exact_path():
    items = [{"key": "a", "value": i, "ts": 1763800000 + i} for i in range(20)]
    items[7]["value"] = -1
    out = dec().decode(json.dumps(items).encode())
    assert len(out.keys) == 19 and [(d.reason, d.index) for d in out.dead] == [("negative_value", 7)]


_scalar = st.one_of(
    st.none(), st.booleans(), st.integers(-(10**30), 10**30), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8), st.sampled_from(["2025-11-22T10:00:00Z", "2025-11-22T10:00:00", "1763800000"]),
)
_key = st.one_of(st.text(min_size=1, max_size=6), st.text(min_size=250, max_size=260), _scalar)
_value = st.one_of(st.floats(0, 1e6), st.integers(0, 10**6), st.floats(6e8, 7e8), _scalar)
_ts = st.one_of(st.floats(1.7e9, 1.8e9), st.integers(0, 2 * 10**9), st.floats(1e12, 2e12), _scalar)
_valid = st.fixed_dictionaries(
    {"key": st.text(min_size=1, max_size=6), "value": st.one_of(st.floats(0, 1e6), st.integers(0, 10**6))},
    optional={"ts": st.one_of(st.floats(1.7e9, 1.8e9), st.integers(0, 2 * 10**9))},
)
_mixed = st.fixed_dictionaries({}, optional={"key": _key, "value": _value, "ts": _ts, "extra": _scalar})
_columnar = st.fixed_dictionaries(
    {"key": st.one_of(st.text(min_size=1, max_size=6), _key), "values": st.one_of(st.lists(st.one_of(st.floats(0, 1e6), _value), max_size=12), _scalar)},
    optional={"ts": st.one_of(st.floats(1.7e9, 1.8e9), st.lists(st.one_of(st.floats(1.7e9, 1.8e9), _ts), max_size=12), _ts), "value": _value},
)
_event = st.one_of(_valid, _valid, _mixed, _columnar)
_message = st.one_of(_event, st.lists(_valid, max_size=20), st.lists(_event, max_size=20), _scalar)


@settings(max_examples=1000, deadline=None)
@given(_message, st.sampled_from([None, 1763800000.5]), st.sampled_from(["ms", "s"]))
def test_the_fast_path_never_changes_a_result(doc, default_ts, unit):
    """msgspec + batch checks must accept exactly what the exact path accepts, with the
    same values, and leave every reject (with its reason) to the exact path."""
    raw = json.dumps(doc, allow_nan=True).encode()
    d = Decoder(unit=unit, limits=DecodeLimits(max_key_chars=256))
    fast = d.decode(raw, default_ts=default_ts)
    exact = d._decode(raw, None, default_ts, fast=False)
    assert (fast.keys, fast.values, fast.ts) == (exact.keys, exact.values, exact.ts)
    assert [(x.reason, x.error, x.index) for x in fast.dead] == [(x.reason, x.error, x.index) for x in exact.dead]


def test_a_batch_of_records_decodes_like_its_records_one_by_one():
    d = Decoder()
    good = [json.dumps({"key": f"k{i % 3}", "value": i, "ts": 1763800000 + i}).encode() for i in range(20)]
    raws = good[:5] + [b"\xff", b'{"key":"a","value":-1,"ts":1}', None, b"[]"] + good[5:] + [b'[{"key":"a","value":1}]']
    items = [(raw, 100 + i, 1763800000.5 if i % 2 else None) for i, raw in enumerate(raws)]
    batch = d.decode_batch(items, "in", 3)
    one = Decoded()
    for raw, off, ts in items:
        one.extend(d.decode(raw, Source("in", 3, off), default_ts=ts))
    assert (batch.keys, batch.values, batch.ts, batch.key_runs()) == (one.keys, one.values, one.ts, one.key_runs())
    assert batch.dead == one.dead and len(batch.dead) == 4
    # The packed copies the pipeline reads cover every event, in order.
    v, t = batch.arrays()
    assert len(batch.vbuf) == len(batch.values) > 0
    assert v.tolist() == batch.values and t.tolist() == batch.ts
    lists_only = Decoded(keys=list(batch.keys), values=list(batch.values), ts=list(batch.ts))
    assert [a.tolist() for a in lists_only.arrays()] == [batch.values, batch.ts]
    assert {x.source.offset for x in batch.dead} == {105, 106, 107, 124}
