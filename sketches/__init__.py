"""Percentile estimators and moments in bounded memory (numpy only, no I/O)."""

from ._varint import SketchDecodeError
from .logbuckets import LogBuckets
from .mapping import LogMapping
from .moments import Moments
from .otel import (
    ExponentialHistogramDataPoint,
    OtelBuckets,
    PromNativeHistogram,
    from_otel,
    from_prometheus,
    to_otel,
    to_prometheus,
)
from .p2 import P2Quantiles
from .reservoir import Reservoir
from .store import BucketStore

__all__ = [
    "ExponentialHistogramDataPoint",
    "OtelBuckets",
    "PromNativeHistogram",
    "from_otel",
    "from_prometheus",
    "to_otel",
    "to_prometheus",
    "BucketStore", "LogBuckets", "LogMapping", "Moments", "P2Quantiles", "Reservoir", "SketchDecodeError"]
