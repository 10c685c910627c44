"""OTLP traces -> latency samples: SDK spans, encoded as the SDK's OTLP exporter does."""

from __future__ import annotations

import json

import pytest
from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.trace import SpanKind

from stream.events import Source
from stream.labels import compose_key
from stream.otlp import OTLP_REASONS, OtlpDecoder
from stream.otlp.jsonfix import fix_ids
from test_otlp_common import T0, SpanMaker, collector_json, trace_request

MS = 1_000_000


def _samples(d):
    return sorted(zip(d.keys, d.values, d.ts))


def _cart_request():
    m = SpanMaker("cart")
    m.span("GET /api/cart", T0, 12 * MS, SpanKind.SERVER)
    m.span("GET /api/cart", T0 + 100 * MS, 30 * MS, SpanKind.SERVER)
    m.span("SELECT carts", T0 + 1 * MS, 4 * MS, SpanKind.CLIENT)
    m.span("GET /api/cart", T0 + 200 * MS, 2 * MS, SpanKind.SERVER, error=True)
    m.span("cart.updated", T0 + 300 * MS, 7 * MS, SpanKind.CONSUMER)
    return m.request()


def test_one_sample_per_span_duration_at_end_time_with_labels():
    d = OtlpDecoder("otlp_proto").decode(_cart_request().SerializeToString())
    route = compose_key(["cart", "GET /api/cart"])
    got = _samples(d)
    assert got == sorted([
        (route, 0.012, (T0 + 12 * MS) / 1e9), (route, 0.030, (T0 + 130 * MS) / 1e9),
        (compose_key(["cart", "SELECT carts"]), 0.004, (T0 + 5 * MS) / 1e9),
        (compose_key(["cart", "GET /api/cart", "error"]), 0.002, (T0 + 202 * MS) / 1e9),
        (compose_key(["cart", "cart.updated"]), 0.007, (T0 + 307 * MS) / 1e9),
    ])
    assert d.labels[route] == {"service.name": "cart", "span.name": "GET /api/cart"}
    assert d.labels[compose_key(["cart", "GET /api/cart", "error"])] == {"service.name": "cart", "span.name": "GET /api/cart", "status.code": "error"}
    assert d.dead == []
    assert sum(n for _, n in d.key_runs()) == 5 and d.key_runs() == d.runs  # runs cover the batch


def test_span_kind_filter_and_errors_in_the_same_series():
    dec = OtlpDecoder("otlp_proto", span_kinds=frozenset({"server", "consumer"}), error_spans="same")
    d = dec.decode(_cart_request().SerializeToString())
    route = compose_key(["cart", "GET /api/cart"])
    assert sorted(set(d.keys)) == sorted({route, compose_key(["cart", "cart.updated"])})
    assert sorted(v for k, v in zip(d.keys, d.values) if k == route) == [0.002, 0.012, 0.030]
    assert dec.stats.spans_filtered == 1 and dec.stats.spans == 4


def test_unknown_span_kind_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown span kind"):
        OtlpDecoder(span_kinds=frozenset({"servre"}))


def test_collector_json_variant_gives_the_same_samples():
    req = _cart_request()
    proto = OtlpDecoder("otlp_proto").decode(req.SerializeToString())
    js = OtlpDecoder("otlp_json").decode(collector_json(req))
    assert js.dead == []
    assert _samples(js) == _samples(proto)
    assert js.labels == proto.labels


def test_hex_ids_are_read_as_the_original_bytes():
    """protobuf's own parser would take the 32 hex characters as base64 (24 bytes)."""
    req = _cart_request()
    doc = json.loads(collector_json(req))
    naive = json_format.ParseDict(json.loads(collector_json(req)), ExportTraceServiceRequest())
    assert len(naive.resource_spans[0].scope_spans[0].spans[0].trace_id) == 24  # the trap
    fix_ids(doc)
    fixed = json_format.ParseDict(doc, ExportTraceServiceRequest())
    assert fixed == req
    # standard base64 ids (protobuf's own JSON) still parse unchanged
    std = json_format.MessageToDict(req)
    fix_ids(std)
    assert json_format.ParseDict(std, ExportTraceServiceRequest()) == req


def test_several_resources_in_one_request_and_a_missing_service_name():
    a, b, anon = SpanMaker("cart"), SpanMaker("checkout"), SpanMaker("x")
    a.span("GET /a", T0, 3 * MS)
    b.span("POST /pay", T0, 9 * MS)
    anon.span("GET /anon", T0, 1 * MS)
    req = trace_request([a, anon, b])
    rs = req.resource_spans[1].resource
    keep = [kv for kv in rs.attributes if kv.key != "service.name"]
    del rs.attributes[:]
    rs.attributes.extend(keep)
    src = Source("otlp_spans", 0, 42)
    d = OtlpDecoder().decode(req.SerializeToString(), src)
    assert sorted(set(d.keys)) == [compose_key(["cart", "GET /a"]), compose_key(["checkout", "POST /pay"])]
    assert [(x.reason, x.index, x.source) for x in d.dead] == [("missing_service_name", 1, src)]
    assert "1 spans" in d.dead[0].error


def test_bad_spans_are_dead_lettered_one_by_one_and_the_rest_kept():
    m = SpanMaker("cart")
    m.span("ok", T0, 5 * MS)
    m.span("backwards", T0, 5 * MS)
    m.span("ok", T0 + MS, 6 * MS)
    req = m.request()
    bad = req.resource_spans[0].scope_spans[0].spans[1]
    bad.end_time_unix_nano = bad.start_time_unix_nano - 1
    d = OtlpDecoder().decode(req.SerializeToString())
    assert sorted(d.values) == [0.005, 0.006]
    assert [(x.reason, x.index) for x in d.dead] == [("bad_span", 1)]
    assert "ends before it starts" in d.dead[0].error
    assert d.dead[0].raw == bad.SerializeToString()


@pytest.mark.parametrize("fmt,raw,reason", [
    ("otlp_proto", b"\xff\xff\xff garbage", "invalid_protobuf"),
    ("otlp_proto", b'{"resourceSpans": []}', "invalid_protobuf"),
    ("otlp_json", b"{not json", "invalid_otlp_json"),
    ("otlp_json", b"[1, 2]", "invalid_otlp_json"),
    ("otlp_json", b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"startTimeUnixNano": "x"}]}]}]}', "invalid_otlp_json"),
    ("otlp_json", b"\xff\xfe", "invalid_otlp_json"),
    ("otlp_json", b"[" * 100_000 + b"]" * 100_000, "too_deep"),
])
def test_unparseable_records_are_one_dead_letter_with_the_raw_bytes(fmt, raw, reason):
    d = OtlpDecoder(fmt).decode(raw, Source("otlp_spans", 3, 7))
    assert len(d) == 0
    assert [(x.reason, x.raw, x.source.offset) for x in d.dead] == [(reason, raw, 7)]
    assert reason in OTLP_REASONS or reason == "too_deep"


def test_non_bytes_and_oversized_records():
    dec = OtlpDecoder()
    assert [x.reason for x in dec.decode(None).dead] == ["invalid_protobuf"]  # type: ignore[arg-type]
    big = OtlpDecoder(limits=__import__("stream.events", fromlist=["DecodeLimits"]).DecodeLimits(max_message_bytes=100))
    assert [x.reason for x in big.decode(_cart_request().SerializeToString()).dead] == ["too_large"]


def test_decode_batch_equals_decode_per_record_with_sources():
    reqs = []
    for i in range(3):
        m = SpanMaker(f"svc{i}")
        for j in range(50):
            m.span(f"op{j % 4}", T0 + j * MS, (j + 1) * MS)
        reqs.append(m.request().SerializeToString())
    items = [(reqs[0], 10, None), (b"junk\xff", 11, None), (reqs[1], 12, None), (reqs[2], 13, None)]
    dec = OtlpDecoder()
    batch = dec.decode_batch(items, "otlp_spans", 2)
    one = [dec.decode(r, Source("otlp_spans", 2, o), t) for r, o, t in items]
    assert batch.keys == [k for x in one for k in x.keys] and batch.values == [v for x in one for v in x.values]
    assert [(x.reason, x.source) for x in batch.dead] == [("invalid_protobuf", Source("otlp_spans", 2, 11))]
    v, t = batch.arrays()
    assert v.size == 150 and t.size == 150


def test_fast_json_path_takes_collector_records_and_defers_the_rest():
    """The msgspec path reads the Collector's JSON; anything else goes to json_format,
    with the same samples and dead letters as the protobuf record."""
    from stream.otlp.spans import SpanConfig, SpanKeys
    from stream.otlp.spans_json import fast_json_spans
    from stream.events import Decoded, DecodeLimits

    cfg = SpanConfig(None, True, DecodeLimits())
    req = _cart_request()
    doc = json.loads(collector_json(req))
    assert fast_json_spans(json.dumps(doc).encode(), cfg, SpanKeys(), Decoded()) == 0
    snake = json.loads(json.dumps(doc).replace('"startTimeUnixNano"', '"start_time_unix_nano"'))
    enum_names = json.loads(json.dumps(doc).replace('"kind": 2', '"kind": "SPAN_KIND_SERVER"'))
    bad = json.loads(json.dumps(doc))
    bad["resourceSpans"][0]["scopeSpans"][0]["spans"][1]["endTimeUnixNano"] = "5"
    want_bad = ExportTraceServiceRequest()
    want_bad.CopyFrom(req)
    want_bad.resource_spans[0].scope_spans[0].spans[1].end_time_unix_nano = 5
    proto = OtlpDecoder().decode(req.SerializeToString())
    for variant, want in ((snake, proto), (enum_names, proto), (bad, OtlpDecoder().decode(want_bad.SerializeToString()))):
        raw = json.dumps(variant).encode()
        assert fast_json_spans(raw, cfg, SpanKeys(), Decoded()) is None
        got = OtlpDecoder("otlp_json").decode(raw)
        assert _samples(got) == _samples(want)
        assert [(d.reason, d.index, d.raw) for d in got.dead] == [(d.reason, d.index, d.raw) for d in want.dead]
