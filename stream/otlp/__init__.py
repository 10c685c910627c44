"""OpenTelemetry (OTLP) input: the Collector's Kafka exporter records -> ``Decoded``.

Spans become latency samples (one per span); histogram points become pre-aggregated
``HistPoint`` deltas (cumulative points differenced per stream). See ``decoder``.
"""

from .cumulative import CumulativeDifferencer
from .decoder import FORMATS, OTLP_REASONS, SIGNALS, OtlpDecoder, OtlpStats
from .metrics import TIME_UNITS
from .spans import SPAN_KINDS

__all__ = ["CumulativeDifferencer", "FORMATS", "OTLP_REASONS", "SIGNALS", "OtlpDecoder", "OtlpStats", "SPAN_KINDS", "TIME_UNITS"]
