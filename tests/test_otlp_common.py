"""Helpers for the OTLP tests (no tests here): spans and histograms made with the real
opentelemetry-sdk, encoded by opentelemetry-exporter-otlp-proto-common exactly as an SDK
exporter sends them to a Collector (which forwards them unchanged to Kafka)."""

from __future__ import annotations

import base64
import json
from typing import Any, Iterable, Sequence

from google.protobuf import json_format
from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.metrics.view import ExponentialBucketHistogramAggregation, ExplicitBucketHistogramAggregation, View
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode

T0 = 1_763_800_000_000_000_000  # ns


class SpanMaker:
    """One SDK tracer provider (one process of ``service``) capturing finished spans."""

    def __init__(self, service: str | None = "cart", **resource: Any) -> None:
        attrs = dict(resource)
        if service is not None:
            attrs["service.name"] = service
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider(resource=Resource.create(attrs))
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.tracer = self.provider.get_tracer("shiftwatch.tests", "1.0")

    def span(self, name: str, start_ns: int, dur_ns: int, kind: SpanKind = SpanKind.SERVER, error: bool = False, **attrs: Any) -> None:
        s = self.tracer.start_span(name, kind=kind, start_time=start_ns, attributes=attrs or None)
        if error:
            s.set_status(Status(StatusCode.ERROR, "boom"))
        s.end(end_time=start_ns + dur_ns)

    def request(self):
        """The finished spans as one ExportTraceServiceRequest (and clear them)."""
        req = encode_spans(self.exporter.get_finished_spans())
        self.exporter.clear()
        return req


def trace_request(makers: Iterable[SpanMaker]):
    """Several processes' spans in one export request (the Collector batches resources)."""
    reqs = [m.request() for m in makers]
    out = reqs[0]
    for r in reqs[1:]:
        out.resource_spans.extend(r.resource_spans)
    return out


class MetricMaker:
    """One SDK meter provider (one replica) with an in-memory reader; cumulative by default."""

    def __init__(self, service: str = "cart", instance: str | None = None, exponential: bool = False, max_size: int = 160,
                 bounds: Sequence[float] | None = None, temporality_delta: bool = False) -> None:
        attrs: dict[str, Any] = {"service.name": service}
        if instance is not None:
            attrs["service.instance.id"] = instance
        agg = ExponentialBucketHistogramAggregation(max_size=max_size) if exponential else ExplicitBucketHistogramAggregation(bounds) if bounds else None
        views = [View(instrument_name="*", aggregation=agg)] if agg is not None else []
        kwargs: dict[str, Any] = {}
        if temporality_delta:
            from opentelemetry.sdk.metrics import Histogram
            from opentelemetry.sdk.metrics.export import AggregationTemporality
            kwargs["preferred_temporality"] = {Histogram: AggregationTemporality.DELTA}
        self.reader = InMemoryMetricReader(**kwargs)
        self.provider = MeterProvider(resource=Resource.create(attrs), metric_readers=[self.reader], views=views)
        self.meter = self.provider.get_meter("shiftwatch.tests", "1.0")
        self.hist = self.meter.create_histogram("http.server.request.duration", unit="s")

    def record(self, values: Iterable[float], **attrs: Any) -> None:
        for v in values:
            self.hist.record(v, attributes=attrs or None)

    def request(self):
        return encode_metrics(self.reader.get_metrics_data())

    def shutdown(self) -> None:
        self.provider.shutdown()


def collector_json(req) -> bytes:
    """The Collector's ``otlp_json``: protobuf JSON with integer enums, int64 as strings,
    and trace/span ids as lowercase hex instead of base64."""
    doc = json_format.MessageToDict(req, use_integers_for_enums=True)
    _hexify(doc)
    return json.dumps(doc).encode()


def _hexify(node: Any) -> None:
    if isinstance(node, dict):
        for k, v in node.items():
            if k in ("traceId", "spanId", "parentSpanId") and isinstance(v, str):
                node[k] = base64.b64decode(v).hex()
            else:
                _hexify(v)
    elif isinstance(node, list):
        for v in node:
            _hexify(v)
