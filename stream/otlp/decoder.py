"""OtlpDecoder: Kafka records of the Collector's Kafka exporter -> ``Decoded`` batches.

One record is one whole ``ExportTraceServiceRequest`` or ``ExportMetricsServiceRequest``
(``otlp_proto``: protobuf bytes; ``otlp_json``: the Collector's JSON, hex ids). Parsing
uses the official ``opentelemetry-proto`` classes; a record that does not parse is one
dead letter, a bad span, resource or point inside a good record is its own dead letter
and the rest of the record is kept.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Iterable

import numpy as np
from google.protobuf import json_format
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from ..events import UNIT_SCALE, DeadLetter, DecodeLimits, Decoded, Source
from .cumulative import CumulativeDifferencer
from .jsonfix import JsonReject, fix_ids
from .metrics import MetricConfig, decode_metrics
from .spans import SPAN_KINDS, SpanConfig, SpanKeys, decode_spans
from .spans_json import fast_json_spans

__all__ = ["OtlpDecoder", "OtlpStats", "OTLP_REASONS", "FORMATS", "SIGNALS"]

#: Dead-letter reason codes added by OTLP input (beside ``stream.events.REASONS``).
OTLP_REASONS: tuple[str, ...] = (
    "invalid_protobuf",
    "invalid_otlp_json",
    "missing_service_name",
    "bad_span",
    "negative_count",
    "bounds_not_increasing",
    "bad_histogram",
    "otlp_decode_error",
)
FORMATS = ("otlp_proto", "otlp_json")
SIGNALS = ("auto", "traces", "metrics")
#: OTLP requests are larger than single events: the Collector batches thousands of spans.
DEFAULT_LIMITS = DecodeLimits(max_message_bytes=16 << 20)


@dataclass(slots=True)
class OtlpStats:
    """Counts a worker may export: what was decoded, and what was skipped on purpose."""

    records: int = 0
    spans: int = 0
    spans_filtered: int = 0  # not of a kept span kind
    points: int = 0  # histogram deltas emitted
    metrics_ignored: int = 0  # not a latency histogram (gauges, sums, byte sizes, other names)


class OtlpDecoder:
    """Decode OTLP records; never raises for bad input.

    ``unit``: the unit of histograms whose metric has no ``unit`` (spans are always ns).
    ``signal``: ``auto`` tells traces from metrics by the JSON's top-level field, or for
    protobuf by the topic name (``metric``: metrics; ``span``/``trace``: traces), else by
    the content (see :func:`_sniff`).
    """

    def __init__(self, format: str = "otlp_proto", span_kinds: frozenset[str] | None = None, unit: str = "s", *,
                 signal: str = "auto", error_spans: str = "separate", metric_names: frozenset[str] | None = None,
                 limits: DecodeLimits | None = None, sketch_bytes: int = 1024,
                 differencer: CumulativeDifferencer | None = None) -> None:
        if format not in FORMATS:
            raise ValueError(f"unknown OTLP format {format!r}; choose one of {', '.join(FORMATS)}")
        if signal not in SIGNALS:
            raise ValueError(f"unknown signal {signal!r}; choose one of {', '.join(SIGNALS)}")
        if unit not in UNIT_SCALE:
            raise ValueError(f"unknown unit {unit!r}; choose one of {sorted(UNIT_SCALE)}")
        if error_spans not in ("separate", "same"):
            raise ValueError("error_spans must be 'separate' or 'same'")
        bad = sorted(set(span_kinds or ()) - set(SPAN_KINDS))
        if bad:
            raise ValueError(f"unknown span kind(s) {', '.join(bad)}; choose from {', '.join(SPAN_KINDS)}")
        self.format, self.signal, self.unit = format, signal, unit
        self.limits = limits or DEFAULT_LIMITS
        kinds = np.array(sorted(SPAN_KINDS[k] for k in span_kinds), dtype=np.int64) if span_kinds else None
        self._spans = SpanConfig(kinds, error_spans == "separate", self.limits)
        self._metrics = MetricConfig(UNIT_SCALE[unit], metric_names, sketch_bytes, self.limits)
        self._keys = SpanKeys()
        self.differencer = differencer if differencer is not None else CumulativeDifferencer()
        self.stats = OtlpStats()

    def decode(self, raw: bytes, source: Source | None = None, default_ts: float | None = None) -> Decoded:
        """One record (one export request)."""
        out = Decoded()
        self._record(raw, source, default_ts, out)
        return out

    def decode_batch(self, items: Iterable[tuple[bytes | None, int, float | None]], topic: str, partition: int) -> Decoded:
        """Records ``(value, offset, default_ts)`` of one partition, into one batch."""
        out = Decoded()
        for raw, offset, default_ts in items:
            self._record(raw, Source(topic, partition, offset), default_ts, out)  # type: ignore[arg-type]
        return out

    def _record(self, raw: Any, source: Source | None, default_ts: float | None, out: Decoded) -> None:
        self.stats.records += 1
        parse_reason = "invalid_protobuf" if self.format == "otlp_proto" else "invalid_otlp_json"
        if not isinstance(raw, (bytes, bytearray, memoryview)):
            out.dead.append(DeadLetter(parse_reason, f"record value is {type(raw).__name__}, not bytes", b"", source=source))
            return
        raw = bytes(raw)
        if len(raw) > self.limits.max_message_bytes:
            out.dead.append(DeadLetter("too_large", f"record is {len(raw)} bytes, the limit is {self.limits.max_message_bytes}", raw, source=source))
            return
        if self.format == "otlp_json" and self.signal != "metrics" and self._fast_json(raw, out):
            return
        mark = len(out.dead)
        try:
            req = self._parse(raw, source)
        except _Refused as r:
            out.dead.append(DeadLetter(r.reason, r.error, raw, source=source))
            return
        try:
            self._extract(req, out, default_ts, source)
        except Exception as e:  # a bug must not stop the worker: the record is dead-lettered
            del out.dead[mark:]
            out.dead.append(DeadLetter("otlp_decode_error", f"{type(e).__name__}: {e}", raw, source=source))

    def _fast_json(self, raw: bytes, out: Decoded) -> bool:
        n0 = len(out.keys)
        filtered = fast_json_spans(raw, self._spans, self._keys, out)
        if filtered is None:
            return False
        self.stats.spans_filtered += filtered
        self.stats.spans += len(out.keys) - n0
        return True

    def _extract(self, req: Any, out: Decoded, default_ts: float | None, source: Source | None) -> None:
        def dead(reason: str, error: str, raw: bytes, index: int | None) -> None:
            out.dead.append(DeadLetter(reason, error, raw, index, source))

        if isinstance(req, ExportTraceServiceRequest):
            n0 = len(out.keys)
            self.stats.spans_filtered += decode_spans(req, self._spans, self._keys, out, dead)
            self.stats.spans += len(out.keys) - n0
        else:
            p0 = len(out.hists)
            self.stats.metrics_ignored += decode_metrics(req, self._metrics, self.differencer, out, dead, default_ts)
            self.stats.points += len(out.hists) - p0

    # -- parsing -----------------------------------------------------------
    def _parse(self, raw: bytes, source: Source | None) -> Any:
        if self.format == "otlp_json":
            return self._parse_json(raw)
        cls = self._proto_class(source)
        if cls is None:
            sniffed = _sniff(raw)
            if sniffed is not None:
                return sniffed
            cls = ExportTraceServiceRequest  # not plausible as either: say why as traces
        req = cls()
        try:
            req.ParseFromString(raw)
        except (DecodeError, RuntimeError, ValueError) as e:
            raise _Refused("invalid_protobuf", f"not a protobuf {cls.__name__}: {e}") from None
        top = req.resource_spans if cls is ExportTraceServiceRequest else req.resource_metrics
        if raw and not top:
            raise _Refused("invalid_protobuf", f"{len(raw)} bytes hold no {'resource_spans' if cls is ExportTraceServiceRequest else 'resource_metrics'} (another signal, or not OTLP)")
        return req

    def _proto_class(self, source: Source | None) -> type | None:
        """The request type: by ``signal``, else by a topic name that says it, else None (sniff)."""
        if self.signal != "auto":
            return ExportMetricsServiceRequest if self.signal == "metrics" else ExportTraceServiceRequest
        topic = source.topic.lower() if source is not None else ""
        if "metric" in topic:
            return ExportMetricsServiceRequest
        if "span" in topic or "trace" in topic:
            return ExportTraceServiceRequest
        return None

    def _parse_json(self, raw: bytes) -> Any:
        try:
            doc = json.loads(raw)
        except RecursionError:
            raise _Refused("too_deep", "JSON nesting is too deep") from None
        except ValueError as e:  # also UnicodeDecodeError
            raise _Refused("invalid_otlp_json", f"invalid JSON: {e}") from None
        if not isinstance(doc, dict):
            raise _Refused("invalid_otlp_json", "an OTLP/JSON record must be an object")
        cls = self._json_class(doc)
        try:
            fix_ids(doc)
            return json_format.ParseDict(doc, cls(), ignore_unknown_fields=True)
        except JsonReject as r:
            raise _Refused(r.reason, r.error) from None
        except (json_format.ParseError, ValueError, TypeError, RecursionError) as e:
            raise _Refused("invalid_otlp_json", f"not an OTLP/JSON {cls.__name__}: {e}") from None

    def _json_class(self, doc: dict[str, Any]) -> type:
        has_spans = "resourceSpans" in doc or "resource_spans" in doc
        has_metrics = "resourceMetrics" in doc or "resource_metrics" in doc
        want = self.signal
        if want == "auto":
            if has_spans == has_metrics:
                raise _Refused("invalid_otlp_json", "expected exactly one of resourceSpans / resourceMetrics")
            want = "traces" if has_spans else "metrics"
        if (want == "traces" and not has_spans) or (want == "metrics" and not has_metrics):
            raise _Refused("invalid_otlp_json", f"expected {'resourceSpans' if want == 'traces' else 'resourceMetrics'}")
        return ExportTraceServiceRequest if want == "traces" else ExportMetricsServiceRequest


def _sniff(raw: bytes) -> Any:
    """Protobuf bytes do not say which request they are; the field numbers overlap. A
    metrics request read as traces leaves its "spans" without end times (a Metric has no
    fixed64 field 8), so: traces if the first span has an end time, else metrics if a
    metric carries data, else None."""
    for cls in (ExportTraceServiceRequest, ExportMetricsServiceRequest):
        req = cls()
        try:
            req.ParseFromString(raw)
        except (DecodeError, RuntimeError, ValueError):
            continue
        if cls is ExportTraceServiceRequest:
            first = next((ss.spans[0] for rs in req.resource_spans for ss in rs.scope_spans if ss.spans), None)
            if first is not None and first.end_time_unix_nano:
                return req
        elif any(m.WhichOneof("data") for rm in req.resource_metrics for sm in rm.scope_metrics for m in sm.metrics):
            return req
    return None


class _Refused(Exception):
    def __init__(self, reason: str, error: str) -> None:
        super().__init__(error)
        self.reason, self.error = reason, error
