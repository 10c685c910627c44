"""/metrics, parsed the way Prometheus parses it: histogram buckets that add up across
workers, true counters, the renamed snapshot gauges, content negotiation."""

from __future__ import annotations

import asyncio
import json
import math

import aiohttp
import numpy as np
import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families as om_families
from prometheus_client.parser import text_string_to_metric_families

from sketches import LogBuckets
from sketches.otel import from_prometheus, to_prometheus
from stream.metrics import (
    DEFAULT_BUCKETS,
    SketchBuckets,
    classic_counts,
    native_of,
    encode,
    make_registry,
    parse_histogram_buckets,
    render,
)
from stream.pipeline import Pipeline, PipelineConfig
from stream.web import make_web_app, serve

from datagen import as_messages, shift_stream

OM1 = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
OM2 = "application/openmetrics-text; version=2.0.0"


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def buckets_of(s: dict, key: str) -> dict[float, float]:
    return {float(dict(lbl)["le"]): v for (name, lbl), v in s.items() if name == "shiftwatch_latency_seconds_bucket" and dict(lbl)["key"] == key}


def fed(values_ms: np.ndarray, key: str = "A", t0: float = 1763800000.0) -> Pipeline:
    p = Pipeline(PipelineConfig(snapshot_interval_s=10))
    feed(p, values_ms, key, t0)
    return p


def feed(p: Pipeline, values_ms: np.ndarray, key: str, t0: float) -> None:
    ev = [{"key": key, "value": float(v), "ts": t0 + i * 0.01} for i, v in enumerate(values_ms)]
    for i in range(0, len(ev), 500):
        p.feed(json.dumps(ev[i : i + 500]).encode())


def test_histogram_buckets_are_exact_counts_and_sum_and_count_are_true_totals():
    values = np.random.default_rng(3).lognormal(3.0, 0.8, 20000)  # ms
    p = fed(values)
    text = render(make_registry(p)).decode()
    s = samples(text)
    exact = values / 1000
    b = buckets_of(s, "A")
    assert len(b) == len(DEFAULT_BUCKETS) + 1
    for le, got in b.items():
        assert got == np.count_nonzero(exact <= le), le  # the default layout sits on sketch bucket edges
    assert s[("shiftwatch_latency_seconds_count", (("key", "A"),))] == len(exact)
    assert s[("shiftwatch_latency_seconds_sum", (("key", "A"),))] == pytest.approx(exact.sum(), rel=1e-12)
    assert "# TYPE shiftwatch_latency_seconds histogram" in text


def test_count_and_sum_only_grow_as_events_arrive():
    rng = np.random.default_rng(4)
    p = fed(rng.lognormal(3.0, 0.5, 3000))
    reg = make_registry(p)
    before = samples(render(reg).decode())
    feed(p, rng.lognormal(1.0, 0.5, 3000), "A", 1763800100.0)  # smaller values: a mean*count sum could drop
    after = samples(render(reg).decode())
    for name in ("shiftwatch_latency_seconds_count", "shiftwatch_latency_seconds_sum"):
        assert after[(name, (("key", "A"),))] > before[(name, (("key", "A"),))]
    for le, v in buckets_of(before, "A").items():
        assert buckets_of(after, "A")[le] >= v


def test_buckets_of_two_workers_add_up_to_the_buckets_of_all_the_data():
    values = np.random.default_rng(5).lognormal(2.5, 1.0, 12000)
    whole = buckets_of(samples(render(make_registry(fed(values))).decode()), "A")
    a = buckets_of(samples(render(make_registry(fed(values[0::2]))).decode()), "A")
    b = buckets_of(samples(render(make_registry(fed(values[1::2]))).decode()), "A")
    assert {le: a[le] + b[le] for le in whole} == whole


def test_snapshot_gauges_use_percentile_not_the_reserved_quantile_label():
    events, values = shift_stream(snapshots=20, shift_snapshot=99, per_snapshot=200)
    p = Pipeline(PipelineConfig(snapshot_interval_s=10))
    for m in as_messages(events, 100):
        p.feed(m)
    p.feed(b"oops")
    p.feed(b'{"key":"A","value":-1,"ts":1763800000}')
    s = samples(render(make_registry(p)).decode())
    last = p.states["A"].recent[-1]
    got = {dict(lbl)["percentile"]: v for (name, lbl), v in s.items() if name == "shiftwatch_snapshot_latency_seconds" and dict(lbl)["key"] == "A"}
    assert set(got) == {"p50", "p90", "p99"}
    assert got["p50"] < got["p90"] < got["p99"]
    assert (got["p50"], got["p99"]) == pytest.approx((last.p50, last.p99))
    assert not [k for k in s if k[0].startswith("shiftwatch_") and "quantile" in dict(k[1])]
    assert s[("shiftwatch_events_accepted_total", ())] == 8000
    assert s[("shiftwatch_events_rejected_total", (("reason", "invalid_json"),))] == 1
    assert s[("shiftwatch_events_rejected_total", (("reason", "negative_value"),))] == 1
    assert s[("shiftwatch_messages_total", ())] == 82
    assert s[("shiftwatch_keys", ())] == 2


def test_process_metrics_and_build_info():
    s = samples(render(make_registry(fed(np.array([5.0, 6.0])))).decode())
    from stream.metrics import _version

    assert s[("shiftwatch_build_info", (("version", _version()),))] == 1
    assert _version() != "unknown"
    assert s[("process_resident_memory_bytes", ())] > 0
    assert ("process_cpu_seconds_total", ()) in s
    assert not [k for k in samples(render(make_registry(fed(np.array([5.0])), process=False)).decode()) if k[0].startswith("process_")]


def test_label_cap_exports_most_recent_keys_and_says_how_many_were_left_out():
    p = Pipeline(PipelineConfig(snapshot_interval_s=10))
    p.feed(json.dumps([{"key": f"k{i}", "value": 1, "ts": 1763800000 + i} for i in range(10)]).encode())
    s = samples(render(make_registry(p, max_label_keys=3)).decode())
    keys = {dict(lbl)["key"] for (name, lbl) in s if name == "shiftwatch_latency_seconds_count"}
    assert keys == {"k7", "k8", "k9"}
    assert s[("shiftwatch_keys_unexported", ())] == 7


def test_openmetrics_1_for_prometheus_and_native_histograms_only_in_openmetrics_2():
    values = np.random.default_rng(6).lognormal(3.0, 0.6, 5000)
    reg = make_registry(fed(values))
    body, ctype = encode(reg, OM1)
    assert ctype.startswith("application/openmetrics-text; version=1.0.0")
    fams = {f.name: f for f in om_families(body.decode())}
    assert fams["shiftwatch_latency_seconds"].type == "histogram"
    assert all(s.native_histogram is None for s in fams["shiftwatch_latency_seconds"].samples)
    assert fams["shiftwatch_events_accepted"].type == "counter"

    body, ctype = encode(reg, None)
    assert ctype.startswith("text/plain; version=0.0.4")
    assert "{count:" not in body.decode()

    body, ctype = encode(reg, OM2)
    assert ctype.startswith("application/openmetrics-text; version=2.0.0")
    line = next(ln for ln in body.decode().splitlines() if ln.startswith('shiftwatch_latency_seconds{key="A"} {'))
    assert f"count:{len(values)}," in line and "schema:4," in line


def test_native_histogram_is_the_sketch_coarsened_exactly():
    values = np.random.default_rng(7).lognormal(-3.0, 1.0, 8000)
    s = LogBuckets()
    s.update_many(values)
    want_h = to_prometheus(s)  # (fits the sketch's scale first)
    dp = SketchBuckets.of(s)
    assert dp.scale >= 4
    assert native_of(dp, 8) == want_h  # the sketches package's own conversion agrees
    for schema in (4, 2, 0):
        h = native_of(dp, schema)
        assert h.schema == schema and h.count == dp.count and h.sum == dp.sum
        coarse = from_prometheus(h)  # back to buckets: exact counts at this schema's boundaries
        bounds = np.exp2(np.arange(-40, 10) / 2.0**schema)
        want = [np.count_nonzero(values <= b) for b in bounds]
        assert classic_counts(SketchBuckets.of(coarse), bounds).tolist() == want
        assert classic_counts(dp, bounds).tolist() == want


def test_histogram_bucket_specs():
    assert len(DEFAULT_BUCKETS) == 63
    ratios = np.array(DEFAULT_BUCKETS[1:]) / np.array(DEFAULT_BUCKETS[:-1])
    assert np.allclose(ratios, 2**0.25)
    assert DEFAULT_BUCKETS[0] >= 0.001 and DEFAULT_BUCKETS[-1] <= 60
    assert parse_histogram_buckets("0.005, 0.01,0.1") == (0.005, 0.01, 0.1)
    assert parse_histogram_buckets("log2:1:0.25:4") == (0.25, 0.5, 1.0, 2.0, 4.0)
    for bad in ("", "log2:4:1", "log2:0:0.001:1", "log2:4:1:0.5", "0.1,0.1", "0.2,0.1", "-1,2", "1,nan", "x", "log2:256:1e-9:1e9"):
        with pytest.raises(ValueError, match="histogram buckets"):
            parse_histogram_buckets(bad)


def test_custom_layout_is_exported():
    bounds = parse_histogram_buckets("0.01,0.02,0.05")
    s = samples(render(make_registry(fed(np.array([5.0, 15.0, 30.0, 100.0])), buckets=bounds)).decode())
    assert buckets_of(s, "A") == {0.01: 1, 0.02: 2, 0.05: 3, math.inf: 4}


def test_web_endpoint_negotiates_the_format():
    async def go() -> list[tuple[str, str]]:
        p = fed(np.array([5.0, 15.0]))
        runner = await serve(make_web_app(p, make_registry(p)), "127.0.0.1", 0)
        port = runner.addresses[0][1]
        out = []
        try:
            async with aiohttp.ClientSession() as http:
                for accept in (OM1, "text/plain"):
                    async with http.get(f"http://127.0.0.1:{port}/metrics", headers={"Accept": accept}) as r:
                        out.append((r.headers["Content-Type"], await r.text()))
        finally:
            await runner.cleanup()
        return out

    (om_type, om_text), (txt_type, txt_text) = asyncio.run(go())
    assert om_type.startswith("application/openmetrics-text; version=1.0.0") and om_text.endswith("# EOF\n")
    assert txt_type.startswith("text/plain; version=0.0.4") and 'shiftwatch_latency_seconds_count{key="A"} 2.0' in txt_text


PROTO_ACCEPT = (
    "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited,"
    "application/openmetrics-text;version=1.0.0;q=0.8,application/openmetrics-text;version=0.0.1;q=0.75,"
    "text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)


def read_delimited(body: bytes) -> list:
    from stream.metrics import _proto

    out, i = [], 0
    while i < len(body):
        n = shift = 0
        while True:
            b = body[i]
            i += 1
            n |= (b & 0x7F) << shift
            shift += 7
            if b < 0x80:
                break
        out.append(_proto("MetricFamily").FromString(body[i : i + n]))
        i += n
    return out


def test_protobuf_only_when_the_scraper_prefers_it():
    from stream.metrics import wants_protobuf

    assert wants_protobuf(PROTO_ACCEPT)
    assert not wants_protobuf(OM1)
    assert not wants_protobuf("application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.5,text/plain;q=0.9")
    assert not wants_protobuf("application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=text")
    body, ctype = encode(make_registry(fed(np.array([5.0]))), PROTO_ACCEPT)
    assert ctype.startswith("application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited")


def test_protobuf_carries_native_and_classic_buckets_and_every_family():
    values = np.random.default_rng(8).lognormal(3.0, 0.6, 4000)
    p = fed(values)
    reg = make_registry(p)
    fams = {f.name: f for f in read_delimited(encode(reg, PROTO_ACCEPT)[0])}
    text_names = {f.name + ("_total" if f.type == "counter" else "") for f in text_string_to_metric_families(render(reg).decode())}
    assert set(fams) == text_names  # the same metrics as the text format
    assert fams["shiftwatch_events_accepted_total"].metric[0].counter.value == 4000
    (m,) = fams["shiftwatch_latency_seconds"].metric
    assert [(lp.name, lp.value) for lp in m.label] == [("key", "A")]
    h = m.histogram
    assert h.sample_count == 4000 and h.sample_sum == pytest.approx(values.sum() / 1000, rel=1e-12)
    assert [b.upper_bound for b in h.bucket] == list(DEFAULT_BUCKETS)
    assert [b.cumulative_count for b in h.bucket] == [np.count_nonzero(values / 1000 <= b) for b in DEFAULT_BUCKETS]
    assert h.schema == 4 and sum(s.length for s in h.positive_span) == len(h.positive_delta)
    assert int(np.cumsum(h.positive_delta).sum()) == 4000
    info = fams["shiftwatch_build_info"].metric[0]
    assert info.gauge.value == 1 and info.label[0].name == "version"
