"""OTLP decoding speed: spans/s of ``OtlpDecoder.decode_batch`` on the Collector's records.

Input: records as the Collector's Kafka exporter writes them, each one whole
``ExportTraceServiceRequest`` of ~500 spans (opentelemetry-sdk spans, encoded by
opentelemetry-exporter-otlp-proto-common; 3 resources per request, 12 span names,
5 attributes per span, 5 % error spans, mixed kinds). Anchors in the same run:

  parse        bare ``ExportTraceServiceRequest.ParseFromString`` of every record
  parse+read   parse, then read name/start/end/kind/status of every span in Python
               (the least any protobuf-based decoder must do)

Repetitions are interleaved; medians are printed. Target: >= 150,000 spans/s per
worker for otlp_proto. Histogram points/s (cumulative, differenced) are shown too.

    .venv/bin/python benchmarks/otlp_bench.py [--records 40] [--repeat 7]

Last line: ``spans_per_s=<n> ratio_vs_parse=<x> ratio_vs_parse_read=<y> target_met=<bool>``.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest  # noqa: E402
from opentelemetry.trace import SpanKind  # noqa: E402

from stream.otlp import OtlpDecoder  # noqa: E402
from test_otlp_common import T0, MetricMaker, SpanMaker, collector_json, trace_request  # noqa: E402

TARGET = 150_000
KINDS = [SpanKind.SERVER, SpanKind.SERVER, SpanKind.CLIENT, SpanKind.INTERNAL, SpanKind.CONSUMER]


def make_records(n: int, spans: int = 500, seed: int = 7) -> list[bytes]:
    rng = random.Random(seed)
    makers = [SpanMaker(svc) for svc in ("cart", "checkout", "search")]
    out = []
    t = T0
    for _ in range(n):
        for i in range(spans):
            m = makers[i % 3]
            name = f"GET /api/{['cart', 'items', 'pay', 'find'][i % 4]}/{i % 3}"
            t += rng.randint(10_000, 2_000_000)
            m.span(name, t, rng.randint(500_000, 80_000_000), KINDS[i % 5], error=rng.random() < 0.05,
                   **{"http.route": name, "http.method": "GET", "http.status_code": 200, "net.peer.name": "10.0.0.1", "user_agent": "bench"})
        out.append(trace_request(makers).SerializeToString())
    return out


def make_metric_records(n: int) -> list[bytes]:
    makers = [MetricMaker("cart", instance=f"pod-{i}", exponential=True) for i in range(4)]
    rng = random.Random(3)
    out = []
    for _ in range(n):
        for m in makers:
            for r in range(8):
                m.record([rng.lognormvariate(-3, 0.5) for _ in range(50)], **{"http.route": f"/r{r}"})
            out.append(m.request().SerializeToString())
    for m in makers:
        m.shutdown()
    return out


#: OpenTelemetry's advised bounds for http.server.request.duration (seconds).
SEMCONV_BOUNDS = [0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0]


def accuracy(n: int = 20_000, seed: int = 5) -> list[str]:
    """Quantile error of histogram points against the exact values they summarise:
    exponential points (merged exactly) vs explicit bounds (spread within buckets)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    rows = []
    for label, vals in (("lognormal median 40 ms", 0.040 * np.exp(0.4 * rng.standard_normal(n))),
                        ("lognormal median 180 ms, sigma 1", 0.180 * np.exp(rng.standard_normal(n)))):
        exact = np.quantile(vals, [0.5, 0.9, 0.99])
        for name, kw in (("exponential (160 buckets)", {"exponential": True}), ("explicit semconv bounds", {"bounds": SEMCONV_BOUNDS})):
            m = MetricMaker(instance="x", temporality_delta=True, **kw)
            m.record(vals.tolist())
            (p,) = OtlpDecoder(signal="metrics").decode(m.request().SerializeToString()).hists
            m.shutdown()
            got = p.sketch.quantiles([0.5, 0.9, 0.99])
            err = " ".join(f"{q}: {100 * (g / e - 1):+6.2f}%" for q, g, e in zip(("p50", "p90", "p99"), got, exact))
            rows.append(f"  {label:34s} {name:27s} {err}")
    return rows


def median_rate(fn: Callable[[], int], reps: list[float]) -> None:
    t = time.perf_counter()
    n = fn()
    reps.append(n / (time.perf_counter() - t))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--records", type=int, default=40)
    ap.add_argument("--repeat", type=int, default=7)
    a = ap.parse_args(argv)
    recs = make_records(a.records)
    items = [(r, i, None) for i, r in enumerate(recs)]
    js_items = [(collector_json(_parse(r)), i, None) for i, r in enumerate(recs)]
    mrecs = make_metric_records(max(a.records // 4, 2))
    n_spans = sum(len(ss.spans) for r in recs for rs in _parse(r).resource_spans for ss in rs.scope_spans)

    def parse() -> int:
        for r in recs:
            _parse(r)
        return n_spans

    def parse_read() -> int:
        for r in recs:
            for rs in _parse(r).resource_spans:
                for ss in rs.scope_spans:
                    [(s.name, s.start_time_unix_nano, s.end_time_unix_nano, s.kind, s.status.code) for s in ss.spans]
        return n_spans

    def proto() -> int:
        d = OtlpDecoder("otlp_proto").decode_batch(items, "otlp_spans", 0)
        assert not d.dead
        return len(d)

    def js() -> int:
        d = OtlpDecoder("otlp_json").decode_batch(js_items, "otlp_spans", 0)
        assert not d.dead
        return len(d)

    def hist() -> int:
        d = OtlpDecoder("otlp_proto", signal="metrics").decode_batch([(r, i, None) for i, r in enumerate(mrecs)], "otlp_metrics", 0)
        assert not d.dead
        return len(d.hists)

    cases = {"parse (anchor)": parse, "parse+read (anchor)": parse_read, "otlp_proto decode_batch": proto,
             "otlp_json decode_batch": js, "histogram points (cumulative, exponential)": hist}
    rates: dict[str, list[float]] = {k: [] for k in cases}
    for _ in range(a.repeat):
        for k, fn in cases.items():
            median_rate(fn, rates[k])
    med = {k: statistics.median(v) for k, v in rates.items()}
    print(f"{len(recs)} records, {n_spans} spans ({n_spans / len(recs):.0f} per record), {sum(map(len, recs)) / len(recs) / 1024:.0f} KiB each; medians of {a.repeat}")
    for k, v in med.items():
        unit = "points/s" if k.startswith("histogram") else "spans/s"
        print(f"  {k:45s} {v:12,.0f} {unit}   x{v / med['parse (anchor)']:.3f} of parse")
    print("quantile error of histogram points vs the exact values (relative):")
    for row in accuracy():
        print(row)
    sp = med["otlp_proto decode_batch"]
    print(f"spans_per_s={sp:.0f} ratio_vs_parse={sp / med['parse (anchor)']:.3f} "
          f"ratio_vs_parse_read={sp / med['parse+read (anchor)']:.3f} target_met={sp >= TARGET}")
    return 0


def _parse(raw: bytes) -> ExportTraceServiceRequest:
    m = ExportTraceServiceRequest()
    m.ParseFromString(raw)
    return m


if __name__ == "__main__":
    raise SystemExit(main())
