"""The decoder: every message yields events or dead letters with a reason, never an exception."""

from __future__ import annotations

import base64
import json
import math
from datetime import datetime

import pytest
from hypothesis import given, settings, strategies as st

from stream.events import REASONS, DecodeLimits, Decoded, Decoder, Source
from stream.labels import compose_key


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


# -- poison: lone surrogates and deep nesting ---------------------------------------------


def _both_paths(d: Decoder, raw: bytes, default_ts=None):
    """The fast path, the exact path and a one-record batch: all must agree."""
    fast = d.decode(raw, default_ts=default_ts)
    exact = d._decode(raw, None, default_ts, fast=False)
    batch = d.decode_batch([(raw, 0, default_ts)], "t", 0)
    for other in (exact, batch):
        assert (other.keys, other.values, other.ts, other.labels) == (fast.keys, fast.values, fast.ts, fast.labels)
        assert [(x.reason, x.error, x.index) for x in other.dead] == [(x.reason, x.error, x.index) for x in fast.dead]
    return fast


@pytest.mark.parametrize(
    "raw",
    [
        rb'{"key": "\ud800", "value": 1, "ts": 1763800000}',
        rb'{"key": "a\udfff", "value": 1, "ts": 1763800000}',
        rb'{"key": "\ud800\ud800", "value": 1, "ts": 1763800000}',
        rb'{"key": "\udc00\ud800", "value": 1, "ts": 1763800000}',
        rb'{"key": "\ud800", "values": [1, 2], "ts": 1763800000}',
    ],
)
def test_a_key_with_a_lone_surrogate_is_dead_lettered(raw):
    out = _both_paths(Decoder(), raw)
    assert out.keys == [] and [d.reason for d in out.dead] == ["bad_key"]
    assert "not valid Unicode" in out.dead[0].error
    # The dead letter itself is encodable (it goes to Kafka and to replay's stdout).
    json.dumps(out.dead[0].to_json(), ensure_ascii=False).encode("utf-8")


def test_a_surrogate_pair_is_a_valid_key_and_a_lone_one_elsewhere_is_harmless():
    out = _both_paths(Decoder(), rb'{"key": "\ud83d\ude00", "value": 1, "ts": 1763800000, "note": "\ud800"}')
    assert out.keys == ["\U0001F600"] and out.dead == []
    out = _both_paths(Decoder(), rb'[{"key": "ok", "value": 1, "ts": 1763800000}, {"key": "\udc00", "value": 2, "ts": 1763800000}]')
    assert out.keys == ["ok"] and [(d.reason, d.index) for d in out.dead] == [("bad_key", 1)]


def test_a_lone_surrogate_in_a_mapped_key_field_names_the_field():
    d = Decoder(key_fields=("service.name", "http.route"))
    out = _both_paths(d, rb'{"service": {"name": "cart"}, "http": {"route": "/\ud800"}, "value": 1, "ts": 1763800000}')
    assert [d.reason for d in out.dead] == ["bad_key"] and out.dead[0].error.startswith("http.route: not valid Unicode")


def _nested_object(depth: int) -> bytes:
    return b'{"a":' * (depth - 1) + b"{}" + b"}" * (depth - 1)


@pytest.mark.parametrize(
    "raw",
    [
        _nested_object(5000),
        b"[" * 5000 + b"]" * 5000,
        b'{"key": "a", "value": 1, "ts": 1763800000, "x": ' + b"[" * 3000 + b"]" * 3000 + b"}",
        b'[{"key": "a", "value": 1, "ts": 1763800000, "x": ' + _nested_object(200) + b"}]",
        b'{"key": "a", "values": [1], "ts": 1763800000, "x": ' + _nested_object(900) + b"}",
    ],
)
def test_deep_nesting_is_too_deep_on_every_path(raw):
    out = _both_paths(Decoder(), raw)
    assert out.keys == [] and [d.reason for d in out.dead] == ["too_deep"]


def test_the_depth_limit_is_exact_and_does_not_depend_on_the_callers_stack():
    d = Decoder(limits=DecodeLimits(max_depth=64))
    ok = b'{"key": "a", "value": 1, "ts": 1763800000, "x": ' + _nested_object(63) + b"}"  # 64 levels
    deep = b'{"key": "a", "value": 1, "ts": 1763800000, "x": ' + _nested_object(64) + b"}"  # 65 levels
    assert _both_paths(d, ok).keys == ["a"]
    assert [x.reason for x in _both_paths(d, deep).dead] == ["too_deep"]
    # An array's events are one level down: the deep element alone is dead-lettered.
    arr = b'[{"key": "a", "value": 1, "ts": 1763800000}, ' + deep + b"]"
    out = _both_paths(d, arr)
    assert out.keys == ["a"] and [(x.reason, x.index) for x in out.dead] == [("too_deep", 1)]

    def at_depth(n):  # the same answers from deep inside a call stack
        if n:
            return at_depth(n - 1)
        return d.decode(ok).keys, [x.reason for x in d.decode(deep).dead], [x.reason for x in d.decode(b"[" * 950 + b"]" * 950).dead]

    import sys

    assert at_depth(sys.getrecursionlimit() - 120) == (["a"], ["too_deep"], ["too_deep"])


# -- timestamps in a unit -----------------------------------------------------------------


@pytest.mark.parametrize("unit,ts", [("s", 1763800000.25), ("ms", 1763800000250), ("us", 1763800000250000), ("ns", 1763800000250000000)])
def test_numeric_ts_in_each_unit(unit, ts):
    raw = json.dumps({"key": "k", "value": 1, "ts": ts}).encode()
    out = _both_paths(Decoder(ts_unit=unit), raw)
    assert out.ts == [1763800000.25]
    # RFC 3339 strings are read the same whatever the unit.
    out = _both_paths(Decoder(ts_unit=unit), b'{"key": "k", "value": 1, "ts": "2025-11-22T08:26:40.25Z"}')
    assert out.ts == [1763800000.25]


@pytest.mark.parametrize(
    "unit,ts,likely",
    [
        ("s", 1763800000250, "milliseconds"),
        ("s", 1763800000250000, "microseconds"),
        ("s", 1763800000250000000, "nanoseconds"),
        ("ms", 1763800000, "seconds"),
        ("ms", 1763800000250000, "microseconds"),
        ("us", 1763800000250, "milliseconds"),
        ("ns", 1763800000250000, "microseconds"),
        ("ns", 1763800000, "seconds"),
    ],
)
def test_a_ts_in_another_unit_is_dead_lettered_naming_the_likely_unit(unit, ts, likely):
    for raw in (
        json.dumps({"key": "k", "value": 1, "ts": ts}).encode(),
        json.dumps([{"key": "k", "value": 1, "ts": 1763800000 * {"s": 1, "ms": 1000, "us": 10**6, "ns": 10**9}[unit]}, {"key": "k", "value": 1, "ts": ts}]).encode(),
    ):
        out = _both_paths(Decoder(ts_unit=unit), raw)
        assert out.dead and out.dead[-1].reason == "bad_timestamp"
        assert f"looks like epoch {likely}" in out.dead[-1].error, out.dead[-1].error
    assert len(out.keys) == 1  # the good one of the pair is kept


def test_the_message_timestamp_is_seconds_whatever_the_ts_unit():
    out = _both_paths(Decoder(ts_unit="ms"), b'{"key": "k", "value": 1}', default_ts=1763800000.5)
    assert out.ts == [1763800000.5]
    out = _both_paths(Decoder(ts_unit="ms"), b'{"key": "k", "values": [1, 2]}', default_ts=1763800000.5)
    assert out.ts == [1763800000.5, 1763800000.5]


def test_unknown_ts_unit_is_an_error():
    with pytest.raises(ValueError, match="ts unit"):
        Decoder(ts_unit="min")


# -- field mapping ------------------------------------------------------------------------

ACCESS_LOG = {"service": {"name": "cart"}, "http": {"route": "/api/cart", "status": 200}, "duration_ms": 12.5, "@timestamp": "2026-01-05T10:00:00.5Z"}


def access_decoder(**kw) -> Decoder:
    return Decoder(key_fields=("service.name", "http.route"), value_field="duration_ms", ts_field="@timestamp", **kw)


def test_access_log_by_field_mapping():
    out = _both_paths(access_decoder(), json.dumps(ACCESS_LOG).encode())
    assert out.keys == ["cart|/api/cart"] and out.values == [0.0125] and out.ts == [1767607200.5]
    assert out.labels == {"cart|/api/cart": {"service.name": "cart", "http.route": "/api/cart"}}
    arr = json.dumps([ACCESS_LOG, {**ACCESS_LOG, "service": {"name": "a|b"}}]).encode()
    out = _both_paths(access_decoder(), arr)
    assert out.keys == ["cart|/api/cart", "a\\|b|/api/cart"] and out.labels["a\\|b|/api/cart"]["service.name"] == "a|b"


def test_flattened_dotted_names_and_key_field_types():
    flat = {"service.name": "cart", "http.route": "/x", "duration_ms": 3, "@timestamp": 1767607200}
    out = _both_paths(access_decoder(), json.dumps(flat).encode())
    assert out.keys == ["cart|/x"]
    d = Decoder(key_fields=("svc", "http.status", "error"), value_field="ms", ts_field="t")
    out = _both_paths(d, b'{"svc": "cart", "http": {"status": 503}, "error": true, "ms": 5, "t": 1767607200}')
    assert out.keys == ["cart|503|true"] and out.labels["cart|503|true"] == {"svc": "cart", "http.status": "503", "error": "true"}
    for bad, reason in [(1.5, "bad_key"), (None, "bad_key"), ([], "bad_key"), ({}, "bad_key"), ("", "bad_key")]:
        doc = {"svc": "cart", "http": {"status": bad}, "error": False, "ms": 5, "t": 1767607200}
        out = _both_paths(d, json.dumps(doc).encode())
        assert [x.reason for x in out.dead] == [reason] and out.dead[0].error.startswith("http.status:"), out.dead[0].error


@pytest.mark.parametrize(
    "change,reason,path",
    [
        ({"service": {}}, "missing_field", "service.name"),
        ({"service": "cart"}, "missing_field", "service.name"),
        ({"duration_ms": "12"}, "bad_value", "duration_ms"),
        ({"duration_ms": -1}, "negative_value", "duration_ms"),
        ({"duration_ms": None}, "bad_value", "duration_ms"),
        ({"@timestamp": "yesterday"}, "bad_timestamp", "@timestamp"),
        ({"@timestamp": 1767607200000}, "bad_timestamp", "@timestamp"),
        ({"@timestamp": None}, "bad_timestamp", "@timestamp"),
    ],
)
def test_mapped_rejects_name_the_field(change, reason, path):
    out = _both_paths(access_decoder(), json.dumps({**ACCESS_LOG, **change}).encode())
    assert out.keys == [] and [x.reason for x in out.dead] == [reason]
    assert path in out.dead[0].error
    missing = {k: v for k, v in ACCESS_LOG.items() if k != "duration_ms"}
    out = _both_paths(access_decoder(), json.dumps(missing).encode())
    assert [x.reason for x in out.dead] == ["missing_field"] and "'duration_ms'" in out.dead[0].error


def test_mapped_ts_missing_uses_the_message_timestamp_and_ts_unit_applies():
    doc = {k: v for k, v in ACCESS_LOG.items() if k != "@timestamp"}
    assert _both_paths(access_decoder(), json.dumps(doc).encode(), default_ts=1767607200.0).ts == [1767607200.0]
    assert [x.reason for x in _both_paths(access_decoder(), json.dumps(doc).encode()).dead] == ["missing_field"]
    out = _both_paths(access_decoder(ts_unit="ms"), json.dumps({**ACCESS_LOG, "@timestamp": 1767607200500}).encode())
    assert out.ts == [1767607200.5]


def test_labels_only_when_key_fields_are_given():
    assert Decoder().decode(b'{"key": "a", "value": 1, "ts": 1}').labels == {}
    out = _both_paths(Decoder(key_fields="key"), b'{"key": "a", "value": 1, "ts": 1}')
    assert out.keys == ["a"] and out.labels == {"a": {"key": "a"}}
    out = _both_paths(Decoder(value_field="ms"), b'{"key": "a", "ms": 1, "ts": 1}')
    assert out.keys == ["a"] and out.labels == {}


def test_overlapping_paths_use_the_exact_path_alone():
    d = Decoder(key_fields=("a", "a.b"))
    out = _both_paths(d, b'{"a": "x", "a.b": "y", "value": 1, "ts": 1}')
    assert out.keys == ["x|y"]


def test_bad_field_paths_are_errors():
    for bad in ("", "a..b", ".a"):
        with pytest.raises(ValueError, match="field path"):
            Decoder(value_field=bad)
    with pytest.raises(ValueError, match="repeat"):
        Decoder(key_fields=("a", "a"))
    with pytest.raises(ValueError, match="UTF-8"):  # e.g. argv bytes that were not UTF-8
        Decoder(key_fields=("service.\udcff",))


_name = st.sampled_from(["cart", "api", "", "a|b", "x\\", "é", "\U0001F600"])
_leaf = st.one_of(_name, st.integers(-5, 5), st.booleans(), st.none(), st.floats(allow_nan=True), st.just([]), st.just({}))
_mapped_doc = st.fixed_dictionaries(
    {},
    optional={
        "service": st.one_of(st.fixed_dictionaries({}, optional={"name": _leaf}), _leaf),
        "service.name": _leaf,
        "http": st.fixed_dictionaries({}, optional={"route": _leaf, "x": _leaf}),
        "duration_ms": st.one_of(st.floats(0, 1e6), st.integers(0, 10**6), _leaf),
        "@timestamp": st.one_of(st.floats(1.7e9, 1.8e9), st.integers(1.7e12, 1.8e12), st.sampled_from(["2026-01-05T10:00:00Z", "2026-01-05T10:00:00", "x"]), _leaf),
    },
)


@settings(max_examples=500, deadline=None)
@given(st.one_of(_mapped_doc, st.lists(_mapped_doc, max_size=6)), st.sampled_from([None, 1767607200.0]), st.sampled_from(["s", "ms"]))
def test_mapped_fast_path_never_changes_a_result(doc, default_ts, ts_unit):
    raw = json.dumps(doc, allow_nan=True).encode()
    out = _both_paths(access_decoder(ts_unit=ts_unit), raw, default_ts)
    n = len(doc) if isinstance(doc, list) else 1
    assert len(out.keys) + len(out.dead) == n
    assert set(out.labels) == set(out.keys)
    for k, lab in out.labels.items():
        assert compose_key([lab["service.name"], lab["http.route"]]) == k


# -- JSON-level grammar fuzzing -----------------------------------------------------------
# Messages are written as JSON *text*, so they hold what json.dumps never writes: escapes
# (lone surrogates included), literals NaN/Infinity, numbers at the edges of float64,
# duplicate keys, deep nesting, a byte-order mark, odd whitespace.

_escape = st.sampled_from(
    ['\\"', "\\\\", "\\/", "\\b", "\\f", "\\n", "\\r", "\\t", "\\u0000", "\\u00e9", "\\u2028", "\\ud800", "\\udbff", "\\udc00",
     "\\udfff", "\\ud83d\\ude00", "\\udbff\\udfff", "\\ud800\\u0041"]
)
_bad_escape = st.sampled_from(["\\x41", "\\u12", "\\U0001", "\\ud8", "\t"])  # invalid JSON (a raw tab too)
_plain = st.text(st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters='"\\'), max_size=4)
_jstring = st.one_of(
    *[st.lists(st.one_of(_plain, _plain, _escape), max_size=3)] * 8, st.lists(st.one_of(_plain, _bad_escape), min_size=1, max_size=2)
).map(lambda parts: '"' + "".join(parts) + '"')
_valid_number = st.one_of(
    st.sampled_from(
        ["0", "-0", "-0.0", "1", "12.5", "1e308", "-1e308", "1.7976931348623157e308", "1.7976931348623159e308", "1e309", "1e-400",
         "4.9e-324", "2.2250738585072014e-308", "1" + "0" * 30, "9" * 400, "-" + "9" * 40, "1763800000", "1763800000.25",
         "1763800000250", "1763800000250000", "1763800000250000000", "17638000002500000000000", "NaN", "Infinity", "-Infinity", "1E+2", "1e-2"]
    ),
    st.integers(-(10**20), 10**20).map(str),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
)
_jnumber = st.one_of(*[_valid_number] * 8, st.sampled_from(["-NaN", "01", "1.", ".5", "1e", "+1", "0x10", "--1"]))
_jscalar = st.one_of(_jnumber, _jstring, st.sampled_from(["true", "false", "null", '"2025-11-22T08:26:40Z"', '"2025-11-22T08:26:40"']))
_ws = st.sampled_from(["", " ", "\n", "\t", "\r\n  "])


def _jobject(members):
    return members.map(lambda kv: "{" + ",".join(f"{k}:{v}" for k, v in kv) + "}")


_field = st.one_of(st.sampled_from(['"key"', '"value"', '"ts"', '"values"', '"x"', '"k\\u0065y"']), _jstring)
_jvalue = st.recursive(
    _jscalar,
    lambda c: st.lists(c, max_size=4).map(lambda xs: "[" + ",".join(xs) + "]") | _jobject(st.lists(st.tuples(_field, c), max_size=4)),
    max_leaves=12,
)
_good_key = st.one_of(st.sampled_from(['"a"', '"b"', '"\\u00e9t\\u00e9"', '"\\ud83d\\ude00"', '"\\ud800"']), _jstring)
_good_value = st.sampled_from(["12.5", "0", "3", "-0", "1e-400", "4.9e-324", "1E+2"])
_good_ts = st.sampled_from(["1763800000", "1763800000.5", '"2025-11-22T08:26:40Z"', "1763800000250", "1763800000250000000"])


def _assemble(parts):
    key, value, ts, extra, drop, dup = parts
    members = [m for i, m in enumerate([key, value, ts]) if i not in drop] + extra
    if dup and members:
        members.insert(0, (members[-1][0], "null"))  # a duplicate key: the last one wins
    return "{" + ",".join(f"{k}:{v}" for k, v in members) + "}"


_jevent = st.tuples(
    st.tuples(st.just('"key"'), st.one_of(_good_key, _good_key, _jscalar)),
    st.tuples(st.just('"value"'), st.one_of(_good_value, _good_value, _jnumber, _jscalar)),
    st.tuples(st.just('"ts"'), st.one_of(_good_ts, _good_ts, _jnumber, _jscalar)),
    st.lists(st.one_of(st.tuples(_field, _jvalue), st.tuples(st.just('"values"'), st.lists(_jnumber, max_size=3).map(lambda xs: "[" + ",".join(xs) + "]"))), max_size=2),
    st.sets(st.integers(0, 5), max_size=1),
    st.booleans(),
).map(_assemble)
_ok_string = st.lists(st.one_of(_plain, _escape), max_size=3).map(lambda parts: '"' + "".join(parts) + '"')
_ok_value = st.recursive(
    st.one_of(_valid_number, _ok_string, st.sampled_from(["true", "false", "null"])),
    lambda c: st.lists(c, max_size=3).map(lambda xs: "[" + ",".join(xs) + "]") | _jobject(st.lists(st.tuples(_ok_string, c), max_size=3)),
    max_leaves=8,
)
_ok_event = st.tuples(
    st.tuples(st.just('"key"'), _good_key),
    st.tuples(st.just('"value"'), st.one_of(_good_value, _valid_number)),
    st.tuples(st.just('"ts"'), st.one_of(_good_ts, _valid_number)),
    st.lists(st.tuples(st.sampled_from(['"x"', '"y"', '"\\u0078"']), _ok_value), max_size=2),
    st.sets(st.integers(0, 8), max_size=1),
    st.booleans(),
).map(_assemble)
_deep = st.integers(1, 3000).flatmap(
    lambda d: st.sampled_from(["[" * d + "]" * d, '{"a":' * d + "1" + "}" * d, '{"key":"a","value":1,"ts":1763800000,"x":' + "[" * d + "]" * d + "}"])
)
_jmessage = st.tuples(
    st.sampled_from([""] * 9 + ["\ufeff"]),
    _ws,
    st.one_of(
        _ok_event, st.lists(_ok_event, min_size=1, max_size=6).map(lambda xs: "[" + ",".join(xs) + "]"),
        _jevent, st.lists(_jevent, max_size=6).map(lambda xs: "[" + ",".join(xs) + "]"), _jvalue, _deep,
    ),
    _ws,
).map(lambda parts: "".join(parts).encode("utf-8"))

_DECODERS = [Decoder(), Decoder(ts_unit="ms"), Decoder(unit="s", ts_unit="ns"), Decoder(key_fields="key"), Decoder(key_fields=("key", "x"), ts_unit="ns")]


@settings(max_examples=1000, deadline=None)
@given(_jmessage, st.sampled_from(range(len(_DECODERS))), st.sampled_from([None, 1763800000.5]))
def test_json_grammar_messages_end_as_events_or_dead_letters(raw, which, default_ts):
    d = _DECODERS[which]
    out = _both_paths(d, raw, default_ts)  # fast path == exact path == batch
    for k in out.keys:
        k.encode("utf-8")  # never a lone surrogate: it would crash a checkpoint or replay
    for lab in out.labels.values():
        for v in lab.values():
            v.encode("utf-8")
    for v, t in zip(out.values, out.ts):
        assert math.isfinite(v) and v >= 0 and math.isfinite(t)
    assert all(x.reason in REASONS and x.error for x in out.dead)
    for x in out.dead:
        json.dumps(x.to_json(), ensure_ascii=False).encode("utf-8")
    try:
        doc = json.loads(raw.decode("utf-8"))  # a BOM is invalid_json, as in the decoder
    except (ValueError, RecursionError):
        assert len(out.dead) == 1 and out.keys == []
        return
    if isinstance(doc, list) and not any(isinstance(x, dict) and "values" in x for x in doc):
        assert len(out.keys) + len(out.dead) == len(doc) or [x.reason for x in out.dead] == ["too_deep"]
    elif not (isinstance(doc, dict) and doc.get("values") == []):
        assert len(out.keys) + len(out.dead) >= 1


def test_bad_calendar_times_are_rejected():
    for text in ["2026-02-30T10:00:00Z", "2026-13-01T10:00:00Z", "2026-01-01T24:00:00Z", "2026-01-01T10:60:00Z", "2026-01-01T10:00:60Z"]:
        out = Decoder().decode(json.dumps({"key": "k", "value": 1, "ts": text}).encode())
        assert [d.reason for d in out.dead] == ["bad_timestamp"], text


def _per_record(d: Decoder, items):
    one = Decoded()
    for raw, off, ts in items:
        one.extend(d.decode(raw, Source("in", 0, off), default_ts=ts))
    return one


def _same_batch(d: Decoder, items):
    batch = d.decode_batch(items, "in", 0)
    one = _per_record(d, items)
    assert (batch.keys, batch.values, batch.ts, batch.runs, batch.labels) == (one.keys, one.values, one.ts, one.runs, one.labels)
    assert list(batch.vbuf) == list(one.vbuf) and list(batch.tbuf) == list(one.tbuf)
    assert batch.dead == one.dead
    return batch


def test_joined_parsing_of_single_event_records_cannot_be_fooled_across_records():
    """decode_batch parses runs of records in one go; records that only make sense glued
    together must still be decoded (and rejected) one by one."""
    ev = b'{"key":"a","value":1,"ts":1763800000}'
    tricky = [
        [b'{"x":[{}', b'{}],"key":"a","value":1,"ts":1763800000}', ev + b"," + ev],  # 1 + 0 + 2 values = 3 records
        [ev + b" " + ev, b"{}"],
        [ev + b"\n" + ev, b" "],
        [b'{"key":"a","value":1,"ts":1763800000,"s":"}', b'{"}'],
        [ev, b'{"key":"a","value":1}', ev],  # no ts, no message timestamp
        [ev, b'{"key":"a","value":1}'],
    ]
    d = Decoder()
    for raws in tricky:
        items = [(r, i, None) for i, r in enumerate(raws)]
        batch = _same_batch(d, items)
        assert batch.dead, raws
    good = [(ev, i, None) for i in range(300)] + [(b'{"key":"b","value":2}', 300, 1763800001.0)]
    assert len(_same_batch(d, good)) == 301


_valid_record = st.fixed_dictionaries(
    {"key": st.text(min_size=1, max_size=6), "value": st.one_of(st.floats(0, 1e6), st.integers(0, 10**6)), "x": st.sampled_from(["p"] * 20 + [1, True]),
     "ts": st.one_of(st.floats(1.7e9, 1.8e9), st.integers(1_700_000_000, 1_800_000_000), st.just("2025-11-22T08:26:40.5Z"))},
)
_UNIT_FACTOR = {"s": 1, "ms": 1000, "us": 10**6, "ns": 10**9}


@settings(max_examples=300, deadline=None)
@given(
    st.lists(_valid_record, min_size=1, max_size=300),
    st.lists(st.tuples(st.integers(0, 299), _jmessage), max_size=2),
    st.sampled_from(range(len(_DECODERS))),
    st.sampled_from([None, 1763800000.5]),
)
def test_a_batch_of_grammar_records_decodes_like_its_records_one_by_one(docs, poison, which, default_ts):
    d = _DECODERS[which]
    raws = []
    for doc in docs:
        if default_ts is not None and doc["ts"] == "2025-11-22T08:26:40.5Z":
            del doc["ts"]  # the message timestamp stands in
        elif type(doc["ts"]) is int:
            doc["ts"] *= _UNIT_FACTOR[d.ts_unit]
        raws.append(json.dumps(doc, separators=(",", ":")).encode())
    for i, bad in poison:
        raws[i % len(raws)] = bad
    _same_batch(d, [(r, i, default_ts) for i, r in enumerate(raws)])


def _rfc3339_reference(ts: str):
    """The general rule, written out: strip, a trailing Z/z is +00:00, an offset is required."""
    text = ts.strip()
    try:
        dt = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text)
    except ValueError:
        return None
    return dt.timestamp() if dt.tzinfo is not None else None


@settings(max_examples=1500, deadline=None)
@given(
    st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(2286, 1, 1)),
    st.sampled_from(["%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dt%H:%M", "%Y-%m-%dT%H", "%Y%m%dT%H%M%S", "%Y-%m-%d"]),
    st.sampled_from(["", ".5", ".05", ".123", ".123456", ".1234567", ",5"]),
    st.sampled_from(["Z", "z", "+00:00", "-05:30", "+0100", "ZZ", "+01:00Z", ""]),
    st.sampled_from(["", " ", "\t"]),
)
def test_rfc3339_strings_parse_by_the_general_rule(dt, fmt, frac, off, pad):
    text = pad + dt.strftime(fmt) + frac + off + pad
    ref = _rfc3339_reference(text)
    out = _both_paths(Decoder(), json.dumps({"key": "k", "value": 1, "ts": text}).encode())
    if ref is not None and 0 <= ref <= 1e10:
        assert out.ts == [ref] and not out.dead, text
    else:
        assert out.ts == [] and [d.reason for d in out.dead] == ["bad_timestamp"], text
