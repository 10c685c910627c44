"""Hostile OTLP records: mutated SDK requests never raise, and every reject carries a known
reason (never the catch-all ``otlp_decode_error``, which would mean a bug)."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.trace import SpanKind

from stream.events import REASONS
from stream.otlp import OTLP_REASONS, OtlpDecoder
from test_otlp_common import T0, MetricMaker, SpanMaker, collector_json

KNOWN = (set(REASONS) | set(OTLP_REASONS)) - {"otlp_decode_error"}


def _trace_req():
    m = SpanMaker("cart")
    for j in range(20):
        m.span(f"op{j % 3}", T0 + j * 1000, 5000 + j, SpanKind.SERVER if j % 2 else SpanKind.CLIENT, error=j == 4, k=j)
    return m.request()


def _metric_req(exponential: bool):
    m = MetricMaker(instance="a", exponential=exponential, bounds=None if exponential else [0.01, 0.1, 1.0])
    m.record([0.005, 0.02, 0.2, 3.0], route="/x")
    req = m.request()
    m.shutdown()
    return req


TRACE = _trace_req()
SEEDS = {
    ("otlp_proto", "traces"): TRACE.SerializeToString(),
    ("otlp_json", "traces"): collector_json(TRACE),
    ("otlp_proto", "metrics"): _metric_req(False).SerializeToString(),
    ("otlp_proto", "metrics_exp"): _metric_req(True).SerializeToString(),
    ("otlp_json", "metrics"): collector_json(_metric_req(True)),
}


def _check(fmt: str, signal: str, raw: bytes) -> None:
    dec = OtlpDecoder(fmt, signal="metrics" if signal.startswith("metrics") else "traces")
    for _ in range(2):  # a second pass exercises the differencer's baselines
        out = dec.decode(raw)
        assert {d.reason for d in out.dead} <= KNOWN, [(d.reason, d.error) for d in out.dead]
        for p in out.hists:
            assert p.count == p.sketch.count and p.count > 0


@given(st.sampled_from(sorted(SEEDS)), st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), min_size=1, max_size=6))
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_byte_mutations_never_raise(which, edits):
    raw = bytearray(SEEDS[which])
    for pos, val in edits:
        raw[pos % len(raw)] = val
    _check(which[0], which[1], bytes(raw))


_JSON_VALUES = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=True), st.text(max_size=5),
                         st.just("-1"), st.just("18446744073709551615"), st.lists(st.integers(-3, 3), max_size=3), st.builds(dict))


def _paths(node, path=()):
    if isinstance(node, dict):
        for k, v in node.items():
            yield path + (k,)
            yield from _paths(v, path + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield path + (i,)
            yield from _paths(v, path + (i,))


@given(st.sampled_from([k for k in sorted(SEEDS) if k[0] == "otlp_json"]), st.data())
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_json_field_replacements_never_raise(which, data):
    doc = json.loads(SEEDS[which])
    paths = list(_paths(doc))
    for _ in range(data.draw(st.integers(1, 3))):
        path = data.draw(st.sampled_from(paths))
        node = doc
        try:
            for p in path[:-1]:
                node = node[p]
            node[path[-1]] = data.draw(_JSON_VALUES)
        except (KeyError, IndexError, TypeError):
            continue
    _check(which[0], which[1], json.dumps(doc).encode())
