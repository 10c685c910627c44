"""Change-point detectors (numpy/scipy only, no I/O).

Configure once, then ``detect(values)`` (batch) or ``update(...)`` (streaming).
Pick one by name with ``make_batch`` / ``make_streaming`` (``detectors/base.py``).
"""

from .base import (
    BATCH_DETECTORS,
    DEFAULT_METRICS,
    STREAMING_DETECTORS,
    BatchDetector,
    Decision,
    StreamingDetector,
    make_batch,
    make_streaming,
    streaming_names,
)
from .edivisive import EDivisive
from .records import ChangePoint, MetricChange, ShiftDecision, StreamEvent
from .snapshot import SnapshotShiftDetector
from .streaming import StreamingEDivisive

__all__ = [
    "BATCH_DETECTORS",
    "DEFAULT_METRICS",
    "STREAMING_DETECTORS",
    "BatchDetector",
    "ChangePoint",
    "Decision",
    "EDivisive",
    "MetricChange",
    "ShiftDecision",
    "SnapshotShiftDetector",
    "StreamEvent",
    "StreamingDetector",
    "StreamingEDivisive",
    "make_batch",
    "make_streaming",
    "streaming_names",
]
